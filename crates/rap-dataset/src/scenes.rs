//! Synthetic multi-subject scenes for evaluating retrieval: a few subjects cut from their photos
//! and pasted side by side on a background, with labels saying which subject is where.
//!
//! A scene of `size` subjects is drawn from its own random stream
//! ([`Rng::stream`]`(seed, "scene", "SIZE/INDEX")`), so a seed gives the same scenes whatever
//! else is generated, and scene 7 of size 3 does not change when more scenes are asked for.
//! The draws, in order:
//! - `size` distinct subjects, and one photo of each (the caller passes only photos that may be
//!   shown, e.g. never a concept's reference photos);
//! - the layout: a grid of `ceil(sqrt(size))` columns and as many rows as needed, the subjects in
//!   randomly chosen cells, so pasted subjects never overlap;
//! - the background: one of `backgrounds` (photos, scaled to cover the scene and centre-cropped)
//!   when any are given, otherwise a procedural texture (a two-colour gradient, smooth value
//!   noise, grain and a few translucent rectangles and discs);
//! - per subject, the cut: a square of 60-80 % of the photo's shorter side, centred on the
//!   photo's centre moved by up to 10 % of the shorter side (dreambooth-style photos are
//!   centred on their subject), then the paste: a square of 60-95 % of the cell's shorter side
//!   at a random place inside the cell. The cut is resized (bilinear, antialiased) and copied
//!   over the background unblended, so the labelled box holds exactly the resized cut.

use crate::rng::Rng;
use image::{Rgb, RgbImage};
use rap_core::{BoundingBox, Error, Result};
use rap_image::Filter;
use std::path::{Path, PathBuf};

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 18;

/// Scene geometry and seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneOptions {
    pub width: u32,
    pub height: u32,
    pub seed: u64,
}

impl Default for SceneOptions {
    fn default() -> Self {
        SceneOptions {
            width: 1024,
            height: 768,
            seed: DEFAULT_SEED,
        }
    }
}

/// One subject pasted into a scene.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pasted {
    pub subject: String,
    /// The photo it was cut from.
    pub photo: PathBuf,
    /// The cut, in the photo's pixels (whole pixels).
    pub crop: BoundingBox,
    /// Where it is in the scene, in the scene's pixels (whole pixels).
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
}

/// What a scene shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SceneLabel {
    /// `s{size}-{index:03}`, also the file stem when scenes are saved.
    pub name: String,
    pub size: usize,
    pub index: usize,
    /// The background photo; `None` for a procedural background.
    pub background: Option<PathBuf>,
    pub pasted: Vec<Pasted>,
}

/// A generated scene: its labels and its pixels.
#[derive(Debug, Clone)]
pub struct Scene {
    pub label: SceneLabel,
    pub image: RgbImage,
}

/// Generates scene `index` of `size` subjects.
///
/// `subjects` are (name, photos that may be cut from); `backgrounds` are photos to use as
/// backgrounds (empty = procedural); `load` decodes a photo (the caller applies its limits).
pub fn generate(
    subjects: &[(String, Vec<PathBuf>)],
    backgrounds: &[PathBuf],
    size: usize,
    index: usize,
    options: &SceneOptions,
    load: &mut dyn FnMut(&Path) -> Result<RgbImage>,
) -> Result<Scene> {
    let (width, height) = (options.width, options.height);
    if width < 64 || height < 64 {
        return Err(Error::invalid(format!(
            "a scene of {width}x{height} is too small (at least 64x64)"
        )));
    }
    if size == 0 || size > subjects.len() {
        return Err(Error::invalid(format!(
            "a scene of {size} subjects needs at least {size} subjects (have {})",
            subjects.len()
        )));
    }
    if let Some((name, _)) = subjects.iter().find(|(_, photos)| photos.is_empty()) {
        return Err(Error::invalid(format!(
            "subject {name} has no photos to cut from"
        )));
    }
    let mut rng = Rng::stream(options.seed, "scene", &format!("{size}/{index}"));

    let chosen: Vec<usize> = rng.sample(&(0..subjects.len()).collect::<Vec<_>>(), size);
    let photos: Vec<&PathBuf> = chosen
        .iter()
        .map(|&s| &subjects[s].1[rng.below(subjects[s].1.len())])
        .collect();

    let cols = (size as f64).sqrt().ceil() as u32;
    let rows = (size as u32).div_ceil(cols);
    let mut cells: Vec<u32> = (0..cols * rows).collect();
    rng.shuffle(&mut cells);

    let (mut image, background) = if backgrounds.is_empty() {
        (procedural(width, height, &mut rng), None)
    } else {
        let path = &backgrounds[rng.below(backgrounds.len())];
        (cover(&load(path)?, width, height)?, Some(path.clone()))
    };

    let (cell_w, cell_h) = (width / cols, height / rows);
    let mut pasted = Vec::with_capacity(size);
    for (i, (&s, photo)) in chosen.iter().zip(&photos).enumerate() {
        let source = load(photo)?;
        let crop = centre_cut(source.width(), source.height(), &mut rng)?;
        let cell = cells[i];
        let (cx, cy) = ((cell % cols) * cell_w, (cell / cols) * cell_h);
        let side = ((cell_w.min(cell_h) as f64) * (0.6 + 0.35 * rng.next_f64())).round() as u32;
        let side = side.max(1);
        let x = cx + ((cell_w - side) as f64 * rng.next_f64()).round() as u32;
        let y = cy + ((cell_h - side) as f64 * rng.next_f64()).round() as u32;
        let cut = rap_image::crop_box(&source, &crop)?;
        let resized = rap_image::resize(&cut, side, side, Filter::Bilinear)?;
        image::imageops::replace(&mut image, &resized, x as i64, y as i64);
        pasted.push(Pasted {
            subject: subjects[s].0.clone(),
            photo: (*photo).clone(),
            crop,
            bbox: BoundingBox::new(x as f32, y as f32, (x + side) as f32, (y + side) as f32),
        });
    }
    Ok(Scene {
        label: SceneLabel {
            name: format!("s{size}-{index:03}"),
            size,
            index,
            background,
            pasted,
        },
        image,
    })
}

/// The square cut around a `width` x `height` photo's centre: 60-80 % of the shorter side,
/// the centre moved by up to 10 % of it, kept inside the photo.
fn centre_cut(width: u32, height: u32, rng: &mut Rng) -> Result<BoundingBox> {
    let short = width.min(height) as f64;
    if short < 2.0 {
        return Err(Error::invalid(format!(
            "a {width}x{height} photo is too small to cut from"
        )));
    }
    let side = (short * (0.6 + 0.2 * rng.next_f64())).round().max(1.0);
    let jitter = 0.1 * short;
    let mut place = |len: u32| {
        let centre = len as f64 / 2.0 + jitter * (2.0 * rng.next_f64() - 1.0);
        (centre - side / 2.0).round().clamp(0.0, len as f64 - side)
    };
    let x = place(width);
    let y = place(height);
    Ok(BoundingBox::new(
        x as f32,
        y as f32,
        (x + side) as f32,
        (y + side) as f32,
    ))
}

/// `img` scaled (keeping its aspect) to cover `width` x `height`, then centre-cropped to it.
fn cover(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    let (w, h) = (img.width().max(1) as f64, img.height().max(1) as f64);
    let scale = (width as f64 / w).max(height as f64 / h);
    let (sw, sh) = (
        ((w * scale).ceil() as u32).max(width),
        ((h * scale).ceil() as u32).max(height),
    );
    let scaled = rap_image::resize(img, sw, sh, Filter::Bilinear)?;
    rap_image::center_crop(&scaled, width, height)
}

/// A seeded texture: a gradient between two colours along a random direction, smooth value
/// noise (a coarse random grid, bilinearly interpolated), per-pixel grain, and 3-7
/// translucent rectangles or discs.
fn procedural(width: u32, height: u32, rng: &mut Rng) -> RgbImage {
    let mut colour = || -> [f64; 3] { std::array::from_fn(|_| 255.0 * rng.next_f64()) };
    let (from, to) = (colour(), colour());
    let angle = std::f64::consts::TAU * rng.next_f64();
    let (dx, dy) = (angle.cos(), angle.sin());
    let project = |x: f64, y: f64| x * dx + y * dy;
    let corners = [
        project(0.0, 0.0),
        project(width as f64, 0.0),
        project(0.0, height as f64),
        project(width as f64, height as f64),
    ];
    let lo = corners.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = corners.iter().copied().fold(f64::NEG_INFINITY, f64::max);

    const GRID: (usize, usize) = (9, 7);
    let noise: Vec<f64> = (0..GRID.0 * GRID.1)
        .map(|_| 2.0 * rng.next_f64() - 1.0)
        .collect();
    let amplitude = 20.0 + 40.0 * rng.next_f64();
    let smooth = |x: f64, y: f64| {
        let gx = x / width as f64 * (GRID.0 - 1) as f64;
        let gy = y / height as f64 * (GRID.1 - 1) as f64;
        let (x0, y0) = (
            (gx.floor() as usize).min(GRID.0 - 2),
            (gy.floor() as usize).min(GRID.1 - 2),
        );
        let (fx, fy) = (gx - x0 as f64, gy - y0 as f64);
        let at = |i: usize, j: usize| noise[j * GRID.0 + i];
        let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
        let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    };

    let mut img = RgbImage::new(width, height);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
        let t = (project(fx, fy) - lo) / (hi - lo).max(1e-9);
        let shade = amplitude * smooth(fx, fy);
        let grain = 16.0 * (rng.next_f64() - 0.5);
        *px = Rgb(std::array::from_fn(|c| {
            (from[c] * (1.0 - t) + to[c] * t + shade + grain)
                .round()
                .clamp(0.0, 255.0) as u8
        }));
    }

    let shapes = rng.range(3, 7);
    for _ in 0..shapes {
        let fill: [f64; 3] = std::array::from_fn(|_| 255.0 * rng.next_f64());
        let alpha = 0.3 + 0.4 * rng.next_f64();
        let disc = rng.chance(0.5);
        let (w, h) = (40.0 + 260.0 * rng.next_f64(), 40.0 + 260.0 * rng.next_f64());
        let (x0, y0) = (
            width as f64 * rng.next_f64() - w / 2.0,
            height as f64 * rng.next_f64() - h / 2.0,
        );
        let inside = |x: f64, y: f64| {
            if disc {
                let r = w.min(h) / 2.0;
                let (cx, cy) = (x0 + w / 2.0, y0 + h / 2.0);
                (x - cx).powi(2) + (y - cy).powi(2) <= r * r
            } else {
                x >= x0 && x < x0 + w && y >= y0 && y < y0 + h
            }
        };
        let xs = (x0.max(0.0) as u32)..((x0 + w).ceil().clamp(0.0, width as f64) as u32);
        let ys = (y0.max(0.0) as u32)..((y0 + h).ceil().clamp(0.0, height as f64) as u32);
        for y in ys {
            for x in xs.clone() {
                if inside(x as f64 + 0.5, y as f64 + 0.5) {
                    let px = img.get_pixel_mut(x, y);
                    px.0 = std::array::from_fn(|c| {
                        (px.0[c] as f64 * (1.0 - alpha) + fill[c] * alpha).round() as u8
                    });
                }
            }
        }
    }
    img
}

/// A scene as JPEG bytes (quality 90), the form it is retrieved from and saved in.
pub fn encode_jpeg(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .map_err(|e| Error::invalid(format!("cannot encode JPEG: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    type Subjects = Vec<(String, Vec<PathBuf>)>;

    /// Four subjects with two photos each, of different sizes and distinct pixel patterns.
    fn photos() -> (Subjects, HashMap<PathBuf, RgbImage>) {
        let mut subjects = Vec::new();
        let mut images = HashMap::new();
        for (s, name) in ["a", "b", "c", "d"].iter().enumerate() {
            let mut paths = Vec::new();
            for p in 0..2u32 {
                let path = PathBuf::from(format!("{name}/{p}.png"));
                let (w, h) = (300 + 40 * s as u32, 260 + 50 * p);
                let img = RgbImage::from_fn(w, h, |x, y| {
                    Rgb([
                        (x * 7 + s as u32 * 50) as u8,
                        (y * 5 + p * 90) as u8,
                        ((x ^ y) + s as u32 * 30) as u8,
                    ])
                });
                images.insert(path.clone(), img);
                paths.push(path);
            }
            subjects.push((name.to_string(), paths));
        }
        (subjects, images)
    }

    fn loader(images: &HashMap<PathBuf, RgbImage>) -> impl FnMut(&Path) -> Result<RgbImage> + '_ {
        move |p: &Path| {
            images
                .get(p)
                .cloned()
                .ok_or_else(|| Error::invalid(format!("no photo {}", p.display())))
        }
    }

    #[test]
    fn same_seed_same_scene_other_seed_other_scene() {
        let (subjects, images) = photos();
        let options = SceneOptions::default();
        let mut load = loader(&images);
        let a = generate(&subjects, &[], 3, 5, &options, &mut load).unwrap();
        let b = generate(&subjects, &[], 3, 5, &options, &mut load).unwrap();
        assert_eq!(a.label, b.label);
        assert!(a.image == b.image);
        let other = SceneOptions {
            seed: options.seed + 1,
            ..options.clone()
        };
        let c = generate(&subjects, &[], 3, 5, &other, &mut load).unwrap();
        assert!(c.image != a.image);
        let d = generate(&subjects, &[], 3, 6, &options, &mut load).unwrap();
        assert!(d.image != a.image, "another index is another scene");
    }

    #[test]
    fn labels_match_the_pasted_pixels_and_boxes_do_not_overlap() {
        let (subjects, images) = photos();
        let options = SceneOptions::default();
        let mut load = loader(&images);
        for size in 1..=4 {
            for index in 0..6 {
                let scene = generate(&subjects, &[], size, index, &options, &mut load).unwrap();
                let label = &scene.label;
                assert_eq!(label.size, size);
                assert_eq!(label.pasted.len(), size);
                assert_eq!(scene.image.dimensions(), (1024, 768));
                let mut names: Vec<&str> =
                    label.pasted.iter().map(|p| p.subject.as_str()).collect();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), size, "distinct subjects: {label:?}");
                for (i, p) in label.pasted.iter().enumerate() {
                    // The photo belongs to the subject.
                    let (_, own) = subjects.iter().find(|(n, _)| *n == p.subject).unwrap();
                    assert!(own.contains(&p.photo));
                    // The box holds exactly the photo's cut, resized to the box.
                    let source = &images[&p.photo];
                    let cut = rap_image::crop_box(source, &p.crop).unwrap();
                    assert_eq!(cut.width(), cut.height(), "square cut");
                    let short = source.width().min(source.height()) as f32;
                    let frac = p.crop.width() / short;
                    assert!((0.59..=0.81).contains(&frac), "cut of {frac} of the photo");
                    let (w, h) = (p.bbox.width() as u32, p.bbox.height() as u32);
                    let expected = rap_image::resize(&cut, w, h, Filter::Bilinear).unwrap();
                    let shown = image::imageops::crop_imm(
                        &scene.image,
                        p.bbox.x1 as u32,
                        p.bbox.y1 as u32,
                        w,
                        h,
                    )
                    .to_image();
                    assert!(
                        shown == expected,
                        "{} pixels differ from its cut",
                        label.name
                    );
                    for q in &label.pasted[i + 1..] {
                        assert_eq!(p.bbox.iou(&q.bbox), 0.0, "{label:?} overlaps");
                    }
                    assert!(p.bbox.x2 <= 1024.0 && p.bbox.y2 <= 768.0);
                }
            }
        }
    }

    #[test]
    fn photo_backgrounds_and_bad_requests() {
        let (subjects, mut images) = photos();
        let bg = PathBuf::from("bg.png");
        images.insert(bg.clone(), RgbImage::from_pixel(400, 200, Rgb([0, 200, 0])));
        let mut load = loader(&images);
        let options = SceneOptions::default();
        let scene = generate(
            &subjects,
            std::slice::from_ref(&bg),
            2,
            0,
            &options,
            &mut load,
        )
        .unwrap();
        assert_eq!(scene.label.background, Some(bg));
        // A corner pixel not under a pasted subject is the background's green.
        let free = [(0, 0), (1023, 0), (0, 767), (1023, 767)]
            .into_iter()
            .find(|&(x, y)| {
                !scene.label.pasted.iter().any(|p| {
                    (x as f32) >= p.bbox.x1
                        && (x as f32) < p.bbox.x2
                        && (y as f32) >= p.bbox.y1
                        && (y as f32) < p.bbox.y2
                })
            })
            .unwrap();
        assert_eq!(scene.image.get_pixel(free.0, free.1).0, [0, 200, 0]);

        let e = generate(&subjects, &[], 5, 0, &options, &mut load).unwrap_err();
        assert!(e.to_string().contains("at least 5 subjects"), "{e}");
        let mut empty = subjects.clone();
        empty[2].1.clear();
        let e = generate(&empty, &[], 2, 0, &options, &mut load).unwrap_err();
        assert!(e.to_string().contains("subject c has no photos"), "{e}");
        let missing = vec![("z".to_string(), vec![PathBuf::from("nope.png")])];
        assert!(generate(&missing, &[], 1, 0, &options, &mut load).is_err());
    }

    #[test]
    fn jpeg_round_trips() {
        let img = RgbImage::from_pixel(32, 16, Rgb([10, 20, 30]));
        let bytes = encode_jpeg(&img).unwrap();
        let back = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (32, 16));
    }
}
