//! Decoding no more pixels than the caller will use: a big JPEG decoded at 1/2, 1/4 or 1/8 of
//! its size straight from its DCT coefficients (libjpeg's "DCT scaling"), when even the
//! smallest part the caller looks at keeps enough pixels.
//!
//! A query photo of 4000 x 3000 whose smallest retrieval window is half its shorter side (1500
//! pixels) gives an encoder that looks at 224 x 224 nothing more at 1000 x 750 (windows of 375)
//! than at full size, and decoding that costs about a tenth: the reduced inverse DCT
//! skips the high frequencies the encoder's own downscale would have filtered out anyway.
//!
//! The scaled decode is `jpeg-decoder`'s (`Decoder::scale`, pure Rust): `zune-jpeg`, which
//! [`crate::decode`] uses through `image`, has no reduced-size decode, and libjpeg-turbo would
//! need a C library (or CMake and NASM) wherever `rap` is built. Measured with `cargo run -p
//! rap-image --example jpeg_scale` on a 4000 x 3000 JPEG (2 busy cores): zune-jpeg at full size
//! 85-130 ms, jpeg-decoder at 1/4 37-60 ms (at full size it is slower than zune-jpeg, 115-190
//! ms, so full-size decodes stay with zune-jpeg); libjpeg-turbo 3.2 at 1/4 (Pillow's `draft`)
//! 26 ms. Entropy decoding, which no scale skips, is most of what is left. Images that need no
//! reduction, other formats, and CMYK/YCCK JPEGs go through [`crate::decode`] unchanged.

use crate::{check_size, decode, inspect, Limits};
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};
use rap_core::{BoundingBox, Error, Result};
use std::io::Cursor;

/// An image decoded at a reduced scale, and the size of the full image its boxes are given in.
#[derive(Debug, Clone)]
pub struct ScaledImage {
    /// The decoded pixels, EXIF orientation applied.
    pub image: RgbImage,
    /// The full image's width (orientation applied): the coordinates boxes are given in.
    pub full_width: u32,
    /// The full image's height (orientation applied).
    pub full_height: u32,
}

impl ScaledImage {
    /// An image decoded at full size.
    pub fn full(image: RgbImage) -> Self {
        let (full_width, full_height) = image.dimensions();
        ScaledImage {
            image,
            full_width,
            full_height,
        }
    }

    /// How many times smaller than the full image [`ScaledImage::image`] is (1, 2, 4 or 8;
    /// JPEG rounds the reduced size up, so it is this up to a pixel).
    pub fn reduction(&self) -> u32 {
        (self.full_width as f32 / self.image.width() as f32).round() as u32
    }

    /// A box in the full image's pixels, in [`ScaledImage::image`]'s pixels.
    pub fn to_image_box(&self, bbox: &BoundingBox) -> BoundingBox {
        bbox.scaled(
            self.image.width() as f32 / self.full_width as f32,
            self.image.height() as f32 / self.full_height as f32,
        )
    }
}

/// The largest reduction (8, 4, 2 or 1) that leaves an image whose shorter side is `short`
/// with a shorter side of at least `min_short_side`.
pub fn reduction_for(short: u32, min_short_side: u32) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|&r| short / r >= min_short_side.max(1))
        .unwrap_or(1)
}

/// Decodes an image as [`crate::decode`] does (pixel limit from the header first, EXIF
/// orientation, alpha on grey), but a JPEG at the smallest DCT scale (1/8, 1/4, 1/2) whose
/// shorter side is still at least `min_short_side` pixels. `None` decodes at full size.
pub fn decode_for(
    bytes: &[u8],
    limits: &Limits,
    min_short_side: Option<u32>,
) -> Result<ScaledImage> {
    let meta = inspect(bytes, limits)?;
    let reduction = match min_short_side {
        Some(min) if meta.format == "jpeg" => reduction_for(meta.width.min(meta.height), min),
        _ => 1,
    };
    if reduction > 1 {
        if let Some(scaled) = decode_jpeg_reduced(bytes, limits, reduction)? {
            return Ok(scaled);
        }
    }
    decode(bytes, limits).map(ScaledImage::full)
}

/// The number of colour components in a JPEG's frame header (as `image`'s decoder reads it).
fn jpeg_components(bytes: &[u8]) -> Option<u8> {
    let mut header = zune_jpeg::JpegDecoder::new(Cursor::new(bytes));
    header.decode_headers().ok()?;
    header.info().map(|i| i.components)
}

/// A JPEG at 1/`reduction` of its size; `None` for what this path leaves to [`crate::decode`]:
/// anything but 8-bit grey or three-component colour (CMYK and YCCK are told apart from the
/// frame header, before any decoding).
fn decode_jpeg_reduced(
    bytes: &[u8],
    limits: &Limits,
    reduction: u32,
) -> Result<Option<ScaledImage>> {
    if !matches!(jpeg_components(bytes), Some(1 | 3)) {
        return Ok(None);
    }
    let unreadable = |e: jpeg_decoder::Error| Error::invalid(format!("unreadable jpeg image: {e}"));
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    // The full image passed the pixel limit from its header; its reduced pixels (up to 4 bytes
    // each) are a fraction of that.
    decoder.set_max_decoding_buffer_size(
        usize::try_from(limits.max_pixels.saturating_mul(4)).unwrap_or(usize::MAX),
    );
    decoder.read_info().map_err(unreadable)?;
    // (Not `Decoder::info`: it panics on frame types it does not know.)
    let (width, height) = match decoder.scale(u16::MAX, u16::MAX) {
        Ok((w, h)) => (u32::from(w), u32::from(h)),
        Err(e) => return Err(unreadable(e)),
    };
    check_size(width, height, limits)?;
    let wanted = |len: u32| len.div_ceil(reduction).min(u32::from(u16::MAX)) as u16;
    let (w, h) = decoder
        .scale(wanted(width), wanted(height))
        .map_err(unreadable)?;
    let pixels = decoder.decode().map_err(unreadable)?;
    let (w, h) = (u32::from(w), u32::from(h));
    let n = w as usize * h as usize;
    let rgb = if pixels.len() == 3 * n {
        RgbImage::from_raw(w, h, pixels)
    } else if pixels.len() == n {
        RgbImage::from_raw(w, h, pixels.iter().flat_map(|&g| [g, g, g]).collect())
    } else {
        // CMYK or 16-bit: `image`'s decoder converts those as it always has.
        return Ok(None);
    };
    let rgb = rgb.ok_or_else(|| Error::invalid("unreadable jpeg image: short pixel data"))?;
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let (full_width, full_height) = match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        _ => (width, height),
    };
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    Ok(Some(ScaledImage {
        image: img.into_rgb8(),
        full_width,
        full_height,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::exif_orientation_jpeg;
    use image::{ImageFormat, Rgb};

    /// A smooth 800 x 480 picture: red rising to the right, green downwards, a blue square.
    fn picture() -> RgbImage {
        RgbImage::from_fn(800, 480, |x, y| {
            let blue = if (300..500).contains(&x) && (140..340).contains(&y) {
                255
            } else {
                0
            };
            Rgb([(x * 255 / 799) as u8, (y * 255 / 479) as u8, blue])
        })
    }

    fn jpeg(img: &RgbImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    fn close(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
        a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tol)
    }

    #[test]
    fn reduction_keeps_the_short_side_asked_for() {
        assert_eq!(reduction_for(3000, 448), 4);
        assert_eq!(reduction_for(3000, 375), 8);
        assert_eq!(reduction_for(1024, 448), 2);
        assert_eq!(reduction_for(895, 448), 1);
        assert_eq!(reduction_for(100, 0), 8);
    }

    /// Decoded at a quarter: a quarter of the size, the same picture (against the full decode
    /// shrunk to the same size), and boxes map to the same place.
    #[test]
    fn a_jpeg_is_decoded_smaller_with_the_same_content() {
        let bytes = jpeg(&picture());
        let limits = Limits::default();
        let full = decode(&bytes, &limits).unwrap();
        let scaled = decode_for(&bytes, &limits, Some(120)).unwrap();
        assert_eq!(scaled.image.dimensions(), (200, 120));
        assert_eq!((scaled.full_width, scaled.full_height), (800, 480));
        assert_eq!(scaled.reduction(), 4);
        let shrunk = crate::resize(&full, 200, 120, crate::Filter::Bilinear).unwrap();
        let mut worst = 0u8;
        for (a, b) in scaled.image.pixels().zip(shrunk.pixels()) {
            for c in 0..3 {
                worst = worst.max(a.0[c].abs_diff(b.0[c]));
            }
        }
        // Only the blue square's edges differ by more than JPEG noise.
        assert!(
            close(scaled.image.get_pixel(100, 60).0, [127, 127, 255], 12),
            "{:?}",
            scaled.image.get_pixel(100, 60)
        );
        assert!(worst < 80, "{worst}");
        let b = scaled.to_image_box(&BoundingBox::new(300.0, 140.0, 500.0, 340.0));
        assert_eq!([b.x1, b.y1, b.x2, b.y2], [75.0, 35.0, 125.0, 85.0]);
        // Asking for more than a halving allows gives the full image.
        let same = decode_for(&bytes, &limits, Some(300)).unwrap();
        assert_eq!(same.image, full);
        assert_eq!(same.reduction(), 1);
        assert_eq!(decode_for(&bytes, &limits, None).unwrap().image, full);
    }

    #[test]
    fn other_formats_and_grey_jpegs() {
        let png = {
            let mut out = Cursor::new(Vec::new());
            picture().write_to(&mut out, ImageFormat::Png).unwrap();
            out.into_inner()
        };
        let limits = Limits::default();
        let decoded = decode_for(&png, &limits, Some(60)).unwrap();
        assert_eq!(decoded.image, picture());
        assert_eq!(decoded.reduction(), 1);

        let grey = image::GrayImage::from_fn(160, 96, |x, _| image::Luma([(x * 255 / 159) as u8]));
        let mut out = Cursor::new(Vec::new());
        grey.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        let decoded = decode_for(&out.into_inner(), &limits, Some(48)).unwrap();
        assert_eq!(decoded.image.dimensions(), (80, 48));
        let p = decoded.image.get_pixel(40, 20).0;
        assert!(
            p[0] == p[1] && p[1] == p[2] && p[0].abs_diff(128) < 12,
            "{p:?}"
        );
    }

    /// Frame headers with two components (which `jpeg_decoder::Decoder::info` would panic on)
    /// or four that do not match the scan give an error or a full-size image, never a panic.
    #[test]
    fn unusual_component_counts_are_left_to_the_full_decoder() {
        let grey = image::GrayImage::from_pixel(640, 480, image::Luma([90]));
        let mut out = Cursor::new(Vec::new());
        grey.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        let bytes = out.into_inner();
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        assert_eq!(bytes[sof + 9], 1, "one component");
        for components in [2u8, 4] {
            let mut patched = bytes[..sof + 2].to_vec();
            patched.extend((8 + 3 * u16::from(components)).to_be_bytes());
            patched.extend(&bytes[sof + 4..sof + 9]);
            patched.push(components);
            patched.extend(&bytes[sof + 10..sof + 13]);
            for id in 2..=components {
                patched.extend([id, 0x11, 0]);
            }
            patched.extend(&bytes[sof + 13..]);
            if let Ok(img) = decode_for(&patched, &Limits::default(), Some(60)) {
                assert_eq!(img.reduction(), 1);
            }
        }
    }

    /// EXIF orientation 6 (rotate 90 clockwise) applies to the reduced image too, and the full
    /// size is the rotated one.
    #[test]
    fn orientation_is_applied_when_reduced() {
        let bytes = exif_orientation_jpeg(&jpeg(&picture()), 6);
        let scaled = decode_for(&bytes, &Limits::default(), Some(100)).unwrap();
        assert_eq!((scaled.full_width, scaled.full_height), (480, 800));
        assert_eq!(scaled.image.dimensions(), (120, 200));
        let full = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(full.dimensions(), (480, 800));
        // The blue square is still in the middle, the red ramp now runs downwards.
        assert!(scaled.image.get_pixel(60, 100).0[2] > 200);
        assert!(scaled.image.get_pixel(60, 190).0[0] > 220);
        assert!(scaled.image.get_pixel(60, 10).0[0] < 30);
    }

    #[test]
    fn limits_and_corrupt_input_give_errors() {
        let bytes = jpeg(&picture());
        let small = Limits {
            max_pixels: 800 * 480 - 1,
            ..Limits::default()
        };
        let err = decode_for(&bytes, &small, Some(60))
            .unwrap_err()
            .to_string();
        assert!(err.contains("over the limit"), "{err}");
        let mut broken = bytes.clone();
        for b in &mut broken[bytes.len() / 3..bytes.len() / 3 + 64] {
            *b = 0xFF;
        }
        // Corrupt or truncated scan data either fails with a message or decodes partially;
        // it never panics.
        for input in [&broken[..], &bytes[..bytes.len() / 2], &bytes[..200]] {
            if let Err(e) = decode_for(input, &Limits::default(), Some(60)) {
                assert!(e.to_string().contains("jpeg"), "{e}");
            }
        }
        assert!(decode_for(&bytes[..200], &Limits::default(), Some(60)).is_err());
    }
}
