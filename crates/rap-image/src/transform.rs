//! Geometry on decoded RGB images: SIMD resizing (fast_image_resize), cropping a box, padding to
//! a square. Everything here works on 8-bit RGB, the form [`crate::decode`] returns.

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use rap_core::{BoundingBox, Error, Result};

/// Resampling filter. The convolution filters match Pillow's resize of the same name
/// (antialiased when downscaling), which is what the Python reference implementations use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    Nearest,
    /// Pillow `BILINEAR` (triangle filter, antialiased).
    #[default]
    Bilinear,
    /// Pillow `BICUBIC` (Catmull-Rom, a = -0.5).
    Bicubic,
    /// Pillow `LANCZOS` (Lanczos3).
    Lanczos3,
}

impl Filter {
    fn alg(self) -> ResizeAlg {
        match self {
            Filter::Nearest => ResizeAlg::Nearest,
            Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            Filter::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
            Filter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
        }
    }
}

/// Resizes `img` to exactly `width` x `height` (aspect ratio not kept).
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> Result<RgbImage> {
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "cannot resize to an empty size ({width}x{height})"
        )));
    }
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::invalid("cannot resize an empty image"));
    }
    if img.dimensions() == (width, height) {
        return Ok(img.clone());
    }
    let failed = |e: &dyn std::fmt::Display| {
        Error::invalid(format!("resize to {width}x{height} failed: {e}"))
    };
    // Typed as RGB8: the untyped `Resizer::resize` dispatches on the pixel type at run time,
    // which builds every pixel type's kernels into this crate (213 s of a clean build's 20
    // minutes on 2 cores, `cargo build --timings`), where only this one is ever used.
    let src = TypedImageRef::<U8x3>::from_buffer(img.width(), img.height(), img.as_raw())
        .map_err(|e| failed(&e))?;
    let mut dst = RgbImage::new(width, height);
    let mut dst_view =
        TypedImage::<U8x3>::from_buffer(width, height, &mut dst).map_err(|e| failed(&e))?;
    let options = ResizeOptions::new().resize_alg(filter.alg());
    Resizer::new()
        .resize_typed(&src, &mut dst_view, &options)
        .map_err(|e| failed(&e))?;
    Ok(dst)
}

/// The size that makes the shorter edge of a `width` x `height` image equal to `size`, keeping
/// the aspect ratio; the longer edge is truncated as torchvision's `Resize(int)` does.
pub fn shortest_edge_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    if width <= height {
        let h = ((size as u64 * height as u64) / width.max(1) as u64).max(1) as u32;
        (size, h)
    } else {
        let w = ((size as u64 * width as u64) / height.max(1) as u64).max(1) as u32;
        (w, size)
    }
}

/// Resizes so that the shorter edge is `size`, keeping the aspect ratio.
pub fn resize_shortest_edge(img: &RgbImage, size: u32, filter: Filter) -> Result<RgbImage> {
    let (w, h) = shortest_edge_size(img.width(), img.height(), size);
    resize(img, w, h, filter)
}

/// Cuts the centred `width` x `height` window out of `img` (torchvision's `CenterCrop`
/// rounding). Fails when the image is smaller than the window.
pub fn center_crop(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    if width > w || height > h || width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "cannot centre-crop {width}x{height} out of a {w}x{h} image"
        )));
    }
    let left = ((w - width) as f64 / 2.0).round() as u32;
    let top = ((h - height) as f64 / 2.0).round() as u32;
    Ok(image::imageops::crop_imm(img, left, top, width, height).to_image())
}

/// The pixel window a box covers in a `width` x `height` image: the box is clamped to the image
/// and rounded outwards to whole pixels. Fails when nothing of it is inside the image.
pub fn box_window(bbox: &BoundingBox, width: u32, height: u32) -> Result<(u32, u32, u32, u32)> {
    let finite = [bbox.x1, bbox.y1, bbox.x2, bbox.y2]
        .iter()
        .all(|v| v.is_finite());
    if !finite {
        return Err(Error::invalid(format!("box {bbox:?} is not finite")));
    }
    let x1 = bbox.x1.max(0.0).floor().min(width as f32) as u32;
    let y1 = bbox.y1.max(0.0).floor().min(height as f32) as u32;
    let x2 = bbox.x2.max(0.0).ceil().min(width as f32) as u32;
    let y2 = bbox.y2.max(0.0).ceil().min(height as f32) as u32;
    if x2 <= x1 || y2 <= y1 {
        return Err(Error::invalid(format!(
            "box [{}, {}, {}, {}] has no pixels inside the {width}x{height} image",
            bbox.x1, bbox.y1, bbox.x2, bbox.y2
        )));
    }
    Ok((x1, y1, x2 - x1, y2 - y1))
}

/// Copies the part of `img` under `bbox` (see [`box_window`] for the rounding).
pub fn crop_box(img: &RgbImage, bbox: &BoundingBox) -> Result<RgbImage> {
    let (x, y, w, h) = box_window(bbox, img.width(), img.height())?;
    Ok(image::imageops::crop_imm(img, x, y, w, h).to_image())
}

/// Pads `img` to a square of side `max(width, height)` filled with `colour`, the image centred
/// (LLaVA's `expand2square`: the offset is `(side - edge) / 2`, rounded down).
pub fn pad_to_square(img: &RgbImage, colour: [u8; 3]) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img.clone();
    }
    let side = w.max(h);
    let mut out = RgbImage::from_pixel(side, side, image::Rgb(colour));
    let (x, y) = ((side - w) / 2, (side - h) / 2);
    image::imageops::replace(&mut out, img, x as i64, y as i64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_tone(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, _| {
            if x < w / 2 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        })
    }

    #[test]
    fn resize_keeps_colours_of_flat_regions() {
        let img = two_tone(400, 200);
        for f in [
            Filter::Nearest,
            Filter::Bilinear,
            Filter::Bicubic,
            Filter::Lanczos3,
        ] {
            let out = resize(&img, 40, 20, f).unwrap();
            assert_eq!(out.dimensions(), (40, 20));
            assert_eq!(out.get_pixel(2, 10).0, [255, 0, 0], "{f:?}");
            assert_eq!(out.get_pixel(37, 10).0, [0, 0, 255], "{f:?}");
        }
        assert!(resize(&img, 0, 10, Filter::Bilinear).is_err());
    }

    #[test]
    fn shortest_edge_then_centre_crop() {
        assert_eq!(shortest_edge_size(640, 480, 224), (298, 224));
        assert_eq!(shortest_edge_size(480, 640, 224), (224, 298));
        let img = resize_shortest_edge(&two_tone(640, 480), 224, Filter::Bilinear).unwrap();
        assert_eq!(img.dimensions(), (298, 224));
        let c = center_crop(&img, 224, 224).unwrap();
        assert_eq!(c.dimensions(), (224, 224));
        // The crop drops 37 columns on each side: the colour edge stays in the middle.
        assert_eq!(c.get_pixel(100, 5).0, [255, 0, 0]);
        assert_eq!(c.get_pixel(124, 5).0, [0, 0, 255]);
        assert!(center_crop(&img, 300, 224).is_err());
    }

    #[test]
    fn crop_box_clamps_and_rejects_empty_boxes() {
        let img = two_tone(100, 50);
        let c = crop_box(&img, &BoundingBox::new(40.5, -10.0, 60.2, 20.0)).unwrap();
        assert_eq!(c.dimensions(), (21, 20));
        assert_eq!(c.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(c.get_pixel(20, 0).0, [0, 0, 255]);
        let whole = crop_box(&img, &BoundingBox::new(-5.0, -5.0, 500.0, 500.0)).unwrap();
        assert_eq!(whole.dimensions(), (100, 50));
        assert!(crop_box(&img, &BoundingBox::new(120.0, 0.0, 130.0, 10.0)).is_err());
        assert!(crop_box(&img, &BoundingBox::new(10.0, 10.0, 10.0, 20.0)).is_err());
        assert!(crop_box(&img, &BoundingBox::new(f32::NAN, 0.0, 10.0, 10.0)).is_err());
    }

    #[test]
    fn pad_to_square_centres_the_image() {
        let img = RgbImage::from_pixel(10, 4, image::Rgb([9, 9, 9]));
        let sq = pad_to_square(&img, [1, 2, 3]);
        assert_eq!(sq.dimensions(), (10, 10));
        assert_eq!(sq.get_pixel(0, 0).0, [1, 2, 3]);
        assert_eq!(sq.get_pixel(0, 2).0, [1, 2, 3]);
        assert_eq!(sq.get_pixel(0, 3).0, [9, 9, 9]);
        assert_eq!(sq.get_pixel(9, 6).0, [9, 9, 9]);
        assert_eq!(sq.get_pixel(9, 7).0, [1, 2, 3]);
    }
}

/// Encodes `img` as a JPEG of the given quality (1-100): how a crop the user marked (a negative
/// example's box) is stored.
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode_image(img)
        .map_err(|e| Error::invalid(format!("could not encode the image as JPEG: {e}")))?;
    Ok(out)
}
