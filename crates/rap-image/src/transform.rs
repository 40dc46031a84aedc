//! Geometry on decoded RGB images: SIMD resizing (fast_image_resize), cropping a box, padding to
//! a square. Everything here works on 8-bit RGB, the form [`crate::decode`] returns.

use fast_image_resize::images::{TypedCroppedImage, TypedImage, TypedImageRef};
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
    resize_window(
        img,
        (0, 0, img.width(), img.height()),
        width,
        height,
        filter,
    )
}

/// Resizes the pixel window `(x, y, w, h)` of `img` (as [`box_window`] gives it) to exactly
/// `width` x `height`, reading the window in place: the same pixels as cropping the window out
/// and resizing the copy (the filter sees only the window, its edges clamped as an image's
/// are), without the copy.
pub fn resize_window(
    img: &RgbImage,
    window: (u32, u32, u32, u32),
    width: u32,
    height: u32,
    filter: Filter,
) -> Result<RgbImage> {
    let (x, y, w, h) = window;
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "cannot resize to an empty size ({width}x{height})"
        )));
    }
    if w == 0 || h == 0 {
        return Err(Error::invalid("cannot resize an empty image"));
    }
    if (w, h) == (width, height) {
        return Ok(image::imageops::crop_imm(img, x, y, w, h).to_image());
    }
    let failed = |e: &dyn std::fmt::Display| {
        Error::invalid(format!("resize to {width}x{height} failed: {e}"))
    };
    // Typed as RGB8: the untyped `Resizer::resize` dispatches on the pixel type at run time,
    // which builds every pixel type's kernels into this crate (213 s of a clean build's 20
    // minutes on 2 cores, `cargo build --timings`), where only this one is ever used.
    let src = TypedImageRef::<U8x3>::from_buffer(img.width(), img.height(), img.as_raw())
        .map_err(|e| failed(&e))?;
    let src = TypedCroppedImage::new(src, x, y, w, h).map_err(|e| failed(&e))?;
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
/// (The same as [`BoundingBox::pixel_window`].)
pub fn box_window(bbox: &BoundingBox, width: u32, height: u32) -> Result<(u32, u32, u32, u32)> {
    bbox.pixel_window(width, height)
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

/// Encodes `img` as a JPEG of the given quality (1-100): how a crop the user marked (a negative
/// example's box) is stored.
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode_image(img)
        .map_err(|e| Error::invalid(format!("could not encode the image as JPEG: {e}")))?;
    Ok(out)
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

    /// Resizing a window in place gives exactly the pixels of resizing a copy of it, with every
    /// filter, shrinking and enlarging, at the image's edges and inside.
    #[test]
    fn resize_window_equals_crop_then_resize() {
        let img = RgbImage::from_fn(97, 61, |x, y| {
            image::Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, ((x ^ y) * 5) as u8])
        });
        for filter in [
            Filter::Nearest,
            Filter::Bilinear,
            Filter::Bicubic,
            Filter::Lanczos3,
        ] {
            for window in [
                (0, 0, 97, 61),
                (10, 5, 40, 40),
                (50, 20, 47, 41),
                (3, 7, 9, 5),
            ] {
                let (x, y, w, h) = window;
                let copy = image::imageops::crop_imm(&img, x, y, w, h).to_image();
                for (tw, th) in [(16, 16), (30, 11), (w, h), (120, 90)] {
                    assert_eq!(
                        resize_window(&img, window, tw, th, filter).unwrap(),
                        resize(&copy, tw, th, filter).unwrap(),
                        "{filter:?} {window:?} -> {tw}x{th}"
                    );
                }
            }
        }
        assert!(resize_window(&img, (90, 0, 10, 10), 5, 5, Filter::Bilinear).is_err());
        assert!(resize_window(&img, (0, 0, 0, 10), 5, 5, Filter::Bilinear).is_err());
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
