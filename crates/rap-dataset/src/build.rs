//! Building a data set: from a [`Source`] to `OUT/train.json`, the images and crops it names,
//! the Hugging Face export and a build record, all written into a temporary folder beside `OUT`
//! and renamed into place at the end, so a failed build leaves nothing half-written.
//!
//! Output layout (every path in the files is relative to `OUT`, the trainer's `--image_folder`):
//!
//! ```text
//! OUT/train.json          the samples, reference training format
//! OUT/train_hf.jsonl      the same samples in the Hugging Face chat format
//! OUT/build.json          seed, options and counts (no time stamps: same seed, same bytes)
//! OUT/images/...          the scenes: input photos (copied byte for byte unless their EXIF
//!                         orientation must be applied) and, for photo folders, collages
//! OUT/crops/NNNN_name.jpg each concept's reference crop; NNNN_name_augK.jpg its augmented views
//! ```
//!
//! What is made, per scene (a photo with named concepts; at most `max_concepts` are named):
//! - recognition: for every named concept, a positive ("Yes") with the concept supplied, and a
//!   negative ("No") supplying a concept that is not in the photo: balanced;
//! - grounding: for every named concept with a box, its normalised box, two decimals;
//! - caption and description: the scene's concepts supplied, the text naming them;
//! - qa: one question and answer about one of them.
//!
//! Then noise: with probability `noise_rate` a sample gets 1..=`noise_max` extra concepts that are
//! not in the photo (never more than `max_concepts` in all), the answer unchanged, and the order
//! of `extra` is shuffled. Each supplied concept shows one of its views (the crop or an augmented
//! view), chosen with the seed. Photo folders have no boxes, so their grounding samples come from
//! collages: two subjects' photos side by side on one canvas, each box being the tile that holds
//! the subject's photo (not a tight box around the subject).

use crate::augment::View;
use crate::format::{
    to_hf_jsonl, to_json, Extra, ExtraConcept, Sample, SampleId, SampleType, Turn,
};
use crate::names;
use crate::rng::Rng;
use crate::source::{self, Source, SourceKind};
use crate::text::{self, SceneObject, Writer};
use image::{ImageDecoder, Rgb, RgbImage};
use rap_core::{BoundingBox, Error, ImageData, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the photos and concepts come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A COCO annotation file and the folder its `file_name`s are relative to.
    Coco {
        annotations: PathBuf,
        images: PathBuf,
    },
    /// A folder with one folder of photos per subject.
    Folders(PathBuf),
}

/// Build settings. `Default` gives the documented defaults.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildOptions {
    pub seed: u64,
    /// Most concepts supplied with a sample (the trainer drops samples with more): 2 for
    /// RAP-LLaVA, 3 for RAP-Phi3-V.
    pub max_concepts: usize,
    /// Share of samples that get noise concepts.
    pub noise_rate: f64,
    /// Most noise concepts added to one sample.
    pub noise_max: usize,
    /// Augmented views written per concept.
    pub augment: usize,
    /// Margin added around a box before cropping, as a share of the box's width and height.
    pub margin: f64,
    /// Boxes whose shorter side is smaller (pixels) are skipped.
    pub min_box: f64,
    /// Crops are scaled down to at most this many pixels on their longer side.
    pub crop_max_side: u32,
    /// Collages made from photo folders (None: one per subject).
    pub collages: Option<usize>,
    /// Names to give concepts (None: made-up names).
    #[serde(skip)]
    pub names: Option<Vec<String>>,
    /// Replace `OUT` when it exists (not recorded in `build.json`: it does not change the data).
    #[serde(skip)]
    pub force: bool,
    #[serde(skip)]
    pub limits: rap_image::Limits,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            seed: 0,
            max_concepts: 2,
            noise_rate: 0.5,
            noise_max: 2,
            augment: 1,
            margin: 0.1,
            min_box: 32.0,
            crop_max_side: 512,
            collages: None,
            names: None,
            force: false,
            limits: rap_image::Limits::default(),
        }
    }
}

impl BuildOptions {
    fn check(&self) -> Result<()> {
        if self.max_concepts == 0 {
            return Err(Error::invalid("max concepts must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.noise_rate) {
            return Err(Error::invalid(format!(
                "noise rate {} is not between 0 and 1",
                self.noise_rate
            )));
        }
        if !(0.0..=1.0).contains(&self.margin) {
            return Err(Error::invalid(format!(
                "margin {} is not between 0 and 1",
                self.margin
            )));
        }
        if self.crop_max_side < 16 {
            return Err(Error::invalid("crops must be allowed at least 16 pixels"));
        }
        if !self.min_box.is_finite() || self.min_box < 1.0 {
            return Err(Error::invalid(
                "the minimum box size must be at least 1 pixel",
            ));
        }
        Ok(())
    }
}

/// What a build made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub out: PathBuf,
    pub source: SourceKind,
    pub seed: u64,
    pub samples: usize,
    pub by_type: BTreeMap<String, usize>,
    pub concepts: usize,
    pub scenes: usize,
    pub collages: usize,
    pub crops: usize,
    pub augmented_views: usize,
    /// Share of samples with at least one noise concept.
    pub noise_rate: f64,
    /// Noise concepts added, over all samples.
    pub noise_concepts: usize,
    /// Samples dropped because they supplied more than `max_concepts` concepts.
    pub dropped_max_concepts: usize,
    /// Annotations or folders left out, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Where the texts came from.
    pub text: text::TextCounts,
    /// The generator's model, when one wrote texts.
    pub generator: Option<String>,
    /// For each sample (by id), the names of the noise concepts it was given.
    #[serde(skip)]
    pub sample_noise: Vec<Vec<String>>,
}

/// Progress: (stage, done, total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// A concept as built: name, info and its crop files.
#[derive(Debug, Clone)]
struct Built {
    name: String,
    category: String,
    info: String,
    /// Crop paths (relative to OUT): the reference crop first, then the augmented views.
    views: Vec<String>,
}

/// A scene as samples see it.
struct Scene {
    /// Path relative to OUT.
    image: String,
    width: u32,
    height: u32,
    /// The scene's bytes, for the generator.
    data: ImageData,
    /// Named concepts with their boxes in pixels.
    objects: Vec<(usize, Option<BoundingBox>)>,
    /// Every concept in the photo (named or not): never a negative or noise here.
    present: BTreeSet<usize>,
}

fn jpeg(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .map_err(|e| Error::invalid(format!("cannot encode JPEG: {e}")))?;
    Ok(out)
}

fn image_data(bytes: Vec<u8>, path: &str) -> ImageData {
    let mime = match path
        .rsplit('.')
        .next()
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("bmp") => "image/bmp",
        Some("tif" | "tiff") => "image/tiff",
        _ => "image/jpeg",
    };
    ImageData {
        bytes: Arc::new(bytes),
        mime: mime.to_string(),
    }
}

/// Whether the file's EXIF orientation turns it: then it is re-encoded upright, because the
/// reference trainer (PIL's `Image.open`) does not apply the orientation and boxes would miss.
fn is_turned(bytes: &[u8]) -> bool {
    let Ok(reader) = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()
    else {
        return false;
    };
    let Ok(mut decoder) = reader.into_decoder() else {
        return false;
    };
    !matches!(
        decoder.orientation(),
        Ok(image::metadata::Orientation::NoTransforms) | Err(_)
    )
}

/// Scales down so the longer side is at most `max` (image's own Triangle filter: plain scalar
/// code, the same result on every machine).
fn fit(img: RgbImage, max: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w.max(h) <= max {
        return img;
    }
    let scale = max as f64 / w.max(h) as f64;
    let nw = ((w as f64 * scale).round() as u32).max(1);
    let nh = ((h as f64 * scale).round() as u32).max(1);
    image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
}

/// `box` grown by `margin` of its size on each side, clamped to the image.
fn with_margin(b: BoundingBox, margin: f64, w: u32, h: u32) -> BoundingBox {
    let mx = b.width() as f64 * margin;
    let my = b.height() as f64 * margin;
    BoundingBox::new(
        (b.x1 as f64 - mx).max(0.0) as f32,
        (b.y1 as f64 - my).max(0.0) as f32,
        (b.x2 as f64 + mx).min(w as f64) as f32,
        (b.y2 as f64 + my).min(h as f64) as f32,
    )
}

/// A box in pixels as normalised `[x1, y1, x2, y2]`, clamped to [0, 1].
fn normalised(b: BoundingBox, w: u32, h: u32) -> [f64; 4] {
    let c = |v: f32, d: u32| (v as f64 / d as f64).clamp(0.0, 1.0);
    [c(b.x1, w), c(b.y1, h), c(b.x2, w), c(b.y2, h)]
}

/// A file name part from a concept name: lowercase letters, digits, `-` and `_`.
fn file_stem(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.chars().take(40).collect()
}

struct Out {
    root: PathBuf,
    files: BTreeSet<String>,
}

impl Out {
    fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        if !self.files.insert(rel.to_string()) {
            return Err(Error::invalid(format!(
                "two inputs would both be written to {rel}"
            )));
        }
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn decode(path: &Path, bytes: &[u8], limits: &rap_image::Limits) -> Result<RgbImage> {
    rap_image::decode(bytes, limits).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// Checks that `out` can be written: it must not exist (or be empty), unless `force`.
fn check_out(out: &Path, force: bool) -> Result<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::invalid(format!(
            "{}: the folder to write into does not exist",
            parent.display()
        )));
    }
    if out.exists() {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .map_err(|e| Error::io(out, e))?
                .next()
                .is_none();
        if !out.is_dir() {
            return Err(Error::invalid(format!(
                "{} exists and is not a folder",
                out.display()
            )));
        }
        if !empty && !force {
            return Err(Error::invalid(format!(
                "{} exists and is not empty: pass --force to replace it",
                out.display()
            )));
        }
    }
    Ok(parent)
}

/// Builds the data set into `out`.
pub fn build(
    input: &Input,
    out: &Path,
    opts: &BuildOptions,
    writer: &mut Writer<'_>,
    generator_model: Option<String>,
    progress: Progress<'_>,
) -> Result<BuildReport> {
    opts.check()?;
    let parent = check_out(out, opts.force)?;
    let src = match input {
        Input::Coco {
            annotations,
            images,
        } => {
            if !images.is_dir() {
                return Err(Error::invalid(format!(
                    "{}: not a folder of images",
                    images.display()
                )));
            }
            source::read_coco(annotations, images, opts.min_box)?
        }
        Input::Folders(dir) => {
            if !dir.is_dir() {
                return Err(Error::invalid(format!("{}: not a folder", dir.display())));
            }
            source::read_folders(dir, opts.seed)?
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix(".rap-dataset-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    let mut o = Out {
        root: tmp.path().to_path_buf(),
        files: BTreeSet::new(),
    };
    let mut report = make(&src, &mut o, opts, writer, progress)?;
    report.out = out.to_path_buf();
    report.generator = generator_model.filter(|_| report.text.generated + report.text.rejected > 0);
    let record = serde_json::json!({
        "builder": concat!("rap-dataset ", env!("CARGO_PKG_VERSION")),
        "options": opts,
        "counts": {
            "samples": report.samples, "by_type": report.by_type, "concepts": report.concepts,
            "scenes": report.scenes, "collages": report.collages, "crops": report.crops,
            "augmented_views": report.augmented_views, "noise_rate": report.noise_rate,
            "noise_concepts": report.noise_concepts, "skipped": report.skipped, "text": report.text,
        },
        "generator": report.generator,
    });
    let mut record = serde_json::to_string_pretty(&record)
        .map_err(|e| Error::invalid(format!("cannot serialise the build record: {e}")))?;
    record.push('\n');
    o.write("build.json", record.as_bytes())?;
    // Move into place: the old OUT (when replaced) is removed only once the new one is there.
    let built = tmp.keep();
    let old = if out.exists() {
        let old = parent.join(format!(
            ".rap-dataset-old-{}",
            built.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        ));
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        Some(old)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(&built, out) {
        if let Some(old) = &old {
            let _ = std::fs::rename(old, out);
        }
        let _ = std::fs::remove_dir_all(&built);
        return Err(Error::io(out, e));
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(report)
}

fn make(
    src: &Source,
    o: &mut Out,
    opts: &BuildOptions,
    writer: &mut Writer<'_>,
    progress: Progress<'_>,
) -> Result<BuildReport> {
    let seed = opts.seed;
    let keys: Vec<String> = src.concepts.iter().map(|c| c.key.clone()).collect();
    let names = names::assign(&keys, opts.names.as_deref(), seed)?;

    // Concepts: reference crop, augmented views, info.
    let mut built: Vec<Built> = Vec::with_capacity(src.concepts.len());
    let mut cache: Option<(usize, Vec<u8>, RgbImage)> = None;
    let mut augmented_views = 0;
    let total = src.concepts.len();
    for (i, (c, name)) in src.concepts.iter().zip(&names).enumerate() {
        progress("concepts", i, total);
        let img_index = c.reference_image;
        if cache.as_ref().map(|(k, _, _)| *k) != Some(img_index) {
            let path = &src.images[img_index].path;
            let bytes = read(path)?;
            let img = decode(path, &bytes, &opts.limits)?;
            check_declared(src, img_index, &img)?;
            cache = Some((img_index, bytes, img));
        }
        let (_, _, img) = cache.as_ref().expect("filled above");
        let crop = match c.reference_box {
            Some(b) => {
                let b = with_margin(b, opts.margin, img.width(), img.height());
                rap_image::crop_box(img, &b).map_err(|e| {
                    Error::invalid(format!(
                        "{}: concept {}: {e}",
                        src.images[img_index].path.display(),
                        c.key
                    ))
                })?
            }
            None => img.clone(),
        };
        let crop = fit(crop, opts.crop_max_side);
        let stem = format!("crops/{i:04}_{}", file_stem(name));
        let crop_rel = format!("{stem}.jpg");
        let crop_bytes = jpeg(&crop)?;
        o.write(&crop_rel, &crop_bytes)?;
        let mut views = vec![crop_rel.clone()];
        let mut rng = Rng::stream(seed, "augment", &c.key);
        for k in 1..=opts.augment {
            let view = View::draw(&mut rng);
            let rel = format!("{stem}_aug{k}.jpg");
            o.write(&rel, &jpeg(&view.apply(&crop))?)?;
            views.push(rel);
            augmented_views += 1;
        }
        let info = writer.info(
            name,
            &c.category,
            &image_data(crop_bytes, &crop_rel),
            &format!("the info of <{name}> ({crop_rel})"),
        )?;
        built.push(Built {
            name: name.clone(),
            category: c.category.clone(),
            info,
            views,
        });
    }
    drop(cache);
    progress("concepts", total, total);

    // Scenes: the photos, then (for folders) the collages.
    let mut scenes = Vec::new();
    let scene_images: Vec<usize> = (0..src.images.len())
        .filter(|&i| src.images[i].scene && !src.images[i].objects.is_empty())
        .collect();
    for (n, &i) in scene_images.iter().enumerate() {
        progress("photos", n, scene_images.len());
        let si = &src.images[i];
        let bytes = read(&si.path)?;
        let img = decode(&si.path, &bytes, &opts.limits)?;
        check_declared(src, i, &img)?;
        let (rel, data) = if is_turned(&bytes) {
            let rel = format!("{}.upright.jpg", si.out_rel);
            let b = jpeg(&img)?;
            o.write(&rel, &b)?;
            (rel.clone(), image_data(b, &rel))
        } else {
            o.write(&si.out_rel, &bytes)?;
            (si.out_rel.clone(), image_data(bytes, &si.out_rel))
        };
        let present: BTreeSet<usize> = si.objects.iter().map(|ob| ob.concept).collect();
        // One entry per concept (a track may appear twice in a photo: keep the first), then at
        // most max_concepts of them, chosen with the seed.
        let mut seen = BTreeSet::new();
        let mut objects: Vec<(usize, Option<BoundingBox>)> = si
            .objects
            .iter()
            .filter(|ob| seen.insert(ob.concept))
            .map(|ob| (ob.concept, ob.bbox))
            .collect();
        if objects.len() > opts.max_concepts {
            objects = Rng::stream(seed, "named", &rel).sample(&objects, opts.max_concepts);
            objects.sort_by_key(|(c, _)| *c);
        }
        scenes.push(Scene {
            image: rel,
            width: img.width(),
            height: img.height(),
            data,
            objects,
            present,
        });
    }
    progress("photos", scene_images.len(), scene_images.len());
    let mut collages = 0;
    if src.kind == SourceKind::Folders && opts.max_concepts >= 2 {
        let want = opts.collages.unwrap_or(src.concepts.len());
        // Photos per subject that are scenes.
        let mut by_concept: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &scene_images {
            by_concept
                .entry(src.images[i].objects[0].concept)
                .or_default()
                .push(i);
        }
        let subjects: Vec<usize> = by_concept.keys().copied().collect();
        if subjects.len() >= 2 {
            for k in 0..want {
                progress("collages", k, want);
                let mut rng = Rng::stream(seed, "collage", &k.to_string());
                let pair = rng.sample(&subjects, 2);
                let photos: Vec<usize> = pair
                    .iter()
                    .map(|c| {
                        let list = &by_concept[c];
                        list[rng.below(list.len())]
                    })
                    .collect();
                scenes.push(collage(src, o, opts, k, &pair, &photos, &mut rng)?);
                collages += 1;
            }
            progress("collages", want, want);
        }
    }

    // Samples.
    let all_categories: Vec<String> = {
        let set: BTreeSet<&String> = built.iter().map(|b| &b.category).collect();
        set.into_iter().cloned().collect()
    };
    // Each sample with the names of its noise concepts.
    let mut samples: Vec<(Sample, Vec<String>)> = Vec::new();
    for (n, scene) in scenes.iter().enumerate() {
        progress("samples", n, scenes.len());
        let mut rng = Rng::stream(seed, "scene", &scene.image);
        let objects: Vec<SceneObject> = scene
            .objects
            .iter()
            .map(|&(c, b)| SceneObject {
                name: built[c].name.clone(),
                category: built[c].category.clone(),
                info: built[c].info.clone(),
                bbox: b.map(|b| normalised(b, scene.width, scene.height)),
            })
            .collect();
        let crops: Vec<ImageData> = scene
            .objects
            .iter()
            .map(|&(c, _)| {
                let rel = &built[c].views[0];
                let bytes = std::fs::read(o.root.join(rel)).map_err(|e| Error::io(rel, e))?;
                Ok(image_data(bytes, rel))
            })
            .collect::<Result<_>>()?;
        let named: Vec<usize> = scene.objects.iter().map(|(c, _)| *c).collect();
        let absent: Vec<usize> = (0..built.len())
            .filter(|c| !scene.present.contains(c))
            .collect();
        let mut push = |kind: SampleType,
                        concepts: &[usize],
                        question: String,
                        answer: String,
                        rng: &mut Rng| {
            let (extra, noise) = extra_for(&built, concepts, &absent, opts, rng);
            samples.push((
                Sample {
                    id: SampleId::Int(0),
                    image: Some(scene.image.clone()),
                    conversations: vec![
                        Turn::human(format!("<image>\n{question}")),
                        Turn::gpt(answer),
                    ],
                    extra,
                    kind,
                },
                noise,
            ));
        };
        let what = |task: &str| format!("the {task} of {}", scene.image);
        // recognition: balanced positives and negatives
        for &c in &named {
            let q = text::fill(text::RECOGNITION_QUESTION, &[("name", &built[c].name)]);
            push(SampleType::Recognition, &[c], q, "Yes".into(), &mut rng);
            if !absent.is_empty() {
                let neg = absent[rng.below(absent.len())];
                let q = text::fill(text::RECOGNITION_QUESTION, &[("name", &built[neg].name)]);
                push(SampleType::Recognition, &[neg], q, "No".into(), &mut rng);
            }
        }
        // grounding
        for (&(c, _), obj) in scene.objects.iter().zip(&objects) {
            if let Some(b) = obj.bbox {
                let q = text::fill(text::GROUNDING_QUESTION, &[("name", &built[c].name)]);
                push(
                    SampleType::Grounding,
                    &[c],
                    q,
                    text::format_box(b),
                    &mut rng,
                );
            }
        }
        // caption, description, qa
        let caption = writer.caption(&scene.data, &objects, &crops, &what("caption"))?;
        push(
            SampleType::Caption,
            &named,
            text::CAPTION_QUESTION.to_string(),
            caption,
            &mut rng,
        );
        let description =
            writer.description(&scene.data, &objects, &crops, &what("description"))?;
        push(
            SampleType::Description,
            &named,
            text::DESCRIPTION_QUESTION.to_string(),
            description,
            &mut rng,
        );
        let target = rng.below(objects.len());
        let (q, a) = writer.qa(
            &scene.data,
            &objects,
            &crops,
            target,
            &all_categories,
            &mut rng,
            &what("question and answer"),
        )?;
        // A QA sample supplies the concepts it talks about (the rest of the photo's are not
        // needed to answer, and unnamed they would read as noise).
        let talked: BTreeSet<String> = text::mentioned_names(&q)
            .into_iter()
            .chain(text::mentioned_names(&a))
            .collect();
        let supplied: Vec<usize> = named
            .iter()
            .enumerate()
            .filter(|(i, c)| *i == target || talked.contains(&built[**c].name))
            .map(|(_, c)| *c)
            .collect();
        push(SampleType::Qa, &supplied, q, a, &mut rng);
    }
    progress("samples", scenes.len(), scenes.len());

    // The trainer's rule, kept here too: samples with more concepts than the model takes go.
    let before = samples.len();
    samples.retain(|(s, _)| s.extra.len() <= opts.max_concepts);
    let dropped = before - samples.len();
    let noise_samples = samples.iter().filter(|(_, n)| !n.is_empty()).count();
    let noise_concepts = samples.iter().map(|(_, n)| n.len()).sum();
    let sample_noise: Vec<Vec<String>> = samples.iter().map(|(_, n)| n.clone()).collect();
    let samples: Vec<Sample> = samples
        .into_iter()
        .enumerate()
        .map(|(i, (mut s, _))| {
            s.id = SampleId::Int(i as u64);
            s
        })
        .collect();
    o.write("train.json", to_json(&samples)?.as_bytes())?;
    o.write("train_hf.jsonl", to_hf_jsonl(&samples)?.as_bytes())?;
    let mut by_type = BTreeMap::new();
    for t in SampleType::ALL {
        by_type.insert(t.as_str().to_string(), 0);
    }
    for s in &samples {
        *by_type.entry(s.kind.as_str().to_string()).or_default() += 1;
    }
    let crops = built.iter().map(|b| b.views.len()).sum();
    Ok(BuildReport {
        out: PathBuf::new(),
        source: src.kind,
        seed,
        samples: samples.len(),
        by_type,
        concepts: built.len(),
        scenes: scenes.len(),
        collages,
        crops,
        augmented_views,
        noise_rate: if samples.is_empty() {
            0.0
        } else {
            noise_samples as f64 / samples.len() as f64
        },
        noise_concepts,
        dropped_max_concepts: dropped,
        skipped: src.skipped.clone(),
        text: writer.counts.clone(),
        generator: None,
        sample_noise,
    })
}

fn check_declared(src: &Source, i: usize, img: &RgbImage) -> Result<()> {
    if let Some((w, h)) = src.images[i].declared_size {
        if (w, h) != img.dimensions() {
            return Err(Error::invalid(format!(
                "{}: the annotations say {w}x{h} but the image is {}x{} (after EXIF orientation)",
                src.images[i].path.display(),
                img.width(),
                img.height()
            )));
        }
    }
    Ok(())
}

/// `extra` for a sample supplying `concepts` (in a shuffled order, with noise drawn from
/// `absent`); returns it and the names of the noise concepts.
fn extra_for(
    built: &[Built],
    concepts: &[usize],
    absent: &[usize],
    opts: &BuildOptions,
    rng: &mut Rng,
) -> (Extra, Vec<String>) {
    let mut chosen: Vec<usize> = concepts.to_vec();
    let room = opts.max_concepts.saturating_sub(chosen.len());
    let candidates: Vec<usize> = absent
        .iter()
        .copied()
        .filter(|c| !chosen.contains(c))
        .collect();
    let mut noise = Vec::new();
    if opts.noise_max > 0 && room > 0 && !candidates.is_empty() && rng.chance(opts.noise_rate) {
        let n = rng.range(1, opts.noise_max).min(room).min(candidates.len());
        let picked = rng.sample(&candidates, n);
        noise = picked.iter().map(|&c| built[c].name.clone()).collect();
        chosen.extend(picked);
    }
    rng.shuffle(&mut chosen);
    let extra = chosen
        .into_iter()
        .map(|c| {
            let b = &built[c];
            let view = b.views[rng.below(b.views.len())].clone();
            (
                view,
                ExtraConcept {
                    name: b.name.clone(),
                    info: b.info.clone(),
                    category: b.category.clone(),
                },
            )
        })
        .collect();
    (Extra(extra), noise)
}

/// Two subjects' photos side by side on one canvas; each box is the tile holding a photo.
fn collage(
    src: &Source,
    o: &mut Out,
    opts: &BuildOptions,
    k: usize,
    concepts: &[usize],
    photos: &[usize],
    rng: &mut Rng,
) -> Result<Scene> {
    const HEIGHT: u32 = 448;
    const BACKGROUND: [u8; 3] = [200, 200, 200];
    let mut tiles = Vec::new();
    for &p in photos {
        let path = &src.images[p].path;
        let img = decode(path, &read(path)?, &opts.limits)?;
        let th = (HEIGHT as f64 * (0.6 + 0.4 * rng.next_f64())).round() as u32;
        let tw = ((img.width() as f64 * th as f64 / img.height() as f64).round() as u32)
            .clamp(16, 2 * HEIGHT);
        tiles.push(image::imageops::resize(
            &img,
            tw,
            th,
            image::imageops::FilterType::Triangle,
        ));
    }
    let gaps: Vec<u32> = (0..=tiles.len())
        .map(|_| rng.range(16, 48) as u32)
        .collect();
    let width = tiles.iter().map(|t| t.width()).sum::<u32>() + gaps.iter().sum::<u32>();
    let mut canvas = RgbImage::from_pixel(width, HEIGHT, Rgb(BACKGROUND));
    let mut x = 0;
    let mut objects = Vec::new();
    for ((tile, gap), &c) in tiles.iter().zip(&gaps).zip(concepts) {
        x += gap;
        let y = rng.range(0, (HEIGHT - tile.height()) as usize) as u32;
        image::imageops::replace(&mut canvas, tile, x as i64, y as i64);
        let b = BoundingBox::new(
            x as f32,
            y as f32,
            (x + tile.width()) as f32,
            (y + tile.height()) as f32,
        );
        objects.push((c, Some(b)));
        x += tile.width();
    }
    let rel = format!("images/collages/{k:04}.jpg");
    let bytes = jpeg(&canvas)?;
    o.write(&rel, &bytes)?;
    Ok(Scene {
        image: rel.clone(),
        width,
        height: HEIGHT,
        data: image_data(bytes, &rel),
        objects,
        present: concepts.iter().copied().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_and_normalisation_stay_inside() {
        let b = with_margin(BoundingBox::new(10.0, 10.0, 90.0, 50.0), 0.1, 95, 60);
        assert_eq!(b, BoundingBox::new(2.0, 6.0, 95.0, 54.0));
        assert_eq!(
            normalised(BoundingBox::new(-5.0, 0.0, 50.0, 120.0), 100, 100),
            [0.0, 0.0, 0.5, 1.0]
        );
        assert_eq!(file_stem("Mr. Bo Jr"), "mr__bo_jr");
    }
}
