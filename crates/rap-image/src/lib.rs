//! Image decoding for `rap`: every image a user hands us passes through here.
//!
//! [`inspect`] reads only the header (format and size) and refuses images over the pixel limit
//! before anything is decoded, so a decompression bomb never allocates its pixels. [`decode`]
//! then decodes fully under the same limits, applies the EXIF orientation and composites any
//! alpha channel onto a neutral grey, giving the RGB image every encoder starts from.
//! Supported: JPEG, PNG (8/16-bit, grey, palette, alpha), WebP, GIF (first frame), BMP, TIFF.
//!
//! [`decode_for`] decodes a big JPEG at a reduced scale when the caller needs no more pixels.
//!
//! [`transform`] resizes (SIMD, Pillow-compatible filters), crops boxes and pads to squares;
//! [`preprocess`] turns an image into the normalised CHW tensor data an encoder takes;
//! [`pillow`] is Pillow's own resize, bit for bit, for models whose golden outputs need it.

#![forbid(unsafe_code)]

pub mod pillow;
pub mod preprocess;
pub mod scaled;
/// Test inputs (hostile PNGs) for this crate's tests and other crates' (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transform;

pub use preprocess::{to_chw_f32, Fit, Preprocess, MAX_ASPECT, MAX_PAD_PIXELS};
pub use scaled::{decode_for, reduction_for, ScaledImage};
pub use transform::{
    box_window, center_crop, crop_box, encode_jpeg, pad_to_square, resize, resize_shortest_edge,
    resize_window, shortest_edge_size, Filter,
};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use rap_core::{Error, Result};
use std::io::Cursor;

/// The limits every image is checked against (the image ones: `max_image_bytes`, `max_pixels`,
/// `max_aspect_ratio`); one struct for all of `[limits]`.
pub use rap_core::limits::{Limits, DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_PIXELS};

/// Reads an image file for decoding: only a regular file (a FIFO or a device is refused before
/// it is opened), at most `limits.max_image_bytes` bytes (the read stops there).
pub fn read_file(path: &std::path::Path, limits: &Limits) -> Result<Vec<u8>> {
    rap_core::fs::read_limited(path, limits.max_image_bytes, "max_image_bytes")
}

/// What the header says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    /// Lowercase format name: `png`, `jpeg`, `webp`, `gif`, `bmp`, `tiff`.
    pub format: String,
    pub width: u32,
    pub height: u32,
}

/// The neutral grey that transparent pixels are composited onto.
const BACKGROUND: [u8; 3] = [128, 128, 128];

fn format_name(format: ImageFormat) -> String {
    format
        .extensions_str()
        .first()
        .map(|e| if *e == "jpg" { "jpeg" } else { e })
        .unwrap_or("unknown")
        .to_string()
}

fn reader(bytes: &[u8]) -> Result<(ImageReader<Cursor<&[u8]>>, ImageFormat)> {
    if bytes.is_empty() {
        return Err(Error::invalid("not an image: the file is empty"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::invalid(format!("not an image: {e}")))?;
    let format = reader.format().ok_or_else(|| {
        Error::invalid(
            "not an image: unrecognised format (supported: JPEG, PNG, WebP, GIF, BMP, TIFF)",
        )
    })?;
    Ok((reader, format))
}

/// The header checks: some pixels, at most `max_pixels` of them, and a long edge at most
/// `max_aspect_ratio` times the short one (so no accepted image has an edge longer than
/// `sqrt(max_pixels * max_aspect_ratio)`, which bounds every resize's buffers).
fn check_size(width: u32, height: u32, limits: &Limits) -> Result<()> {
    let pixels = width as u64 * height as u64;
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    if pixels > limits.max_pixels {
        return Err(Error::limit(
            "max_pixels",
            limits.max_pixels,
            format!(
                "image is {width}x{height} = {:.1} megapixels",
                pixels as f64 / 1e6
            ),
        ));
    }
    let (long, short) = (width.max(height) as u64, width.min(height) as u64);
    if long > short.saturating_mul(limits.max_aspect_ratio as u64) {
        return Err(Error::limit(
            "max_aspect_ratio",
            limits.max_aspect_ratio as u64,
            format!(
                "image is {width}x{height}, an aspect ratio of {:.0}:1",
                long as f64 / short as f64
            ),
        ));
    }
    Ok(())
}

/// Reads format and size from the header alone, and checks the pixel limit.
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<ImageMeta> {
    let (reader, format) = reader(bytes)?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| Error::invalid(format!("unreadable {} image: {e}", format_name(format))))?;
    check_size(width, height, limits)?;
    Ok(ImageMeta {
        format: format_name(format),
        width,
        height,
    })
}

/// Decodes an image to RGB: header and pixel limit first, then the pixels (under a matching
/// allocation limit), EXIF orientation applied, alpha composited onto neutral grey.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<RgbImage> {
    let meta = inspect(bytes, limits)?;
    let (mut reader, _) = reader(bytes)?;
    let mut decoder_limits = image::Limits::default();
    // Allow the decoded buffer (up to 16-bit RGBA) for the largest accepted image, no more.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(1 << 20));
    reader.limits(decoder_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| Error::invalid(format!("unreadable {} image: {e}", meta.format)))?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| Error::invalid(format!("unreadable {} image: {e}", meta.format)))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(to_rgb_on_background(img))
}

/// Converts any colour type to 8-bit RGB, compositing alpha onto [`BACKGROUND`].
fn to_rgb_on_background(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3] as u32;
        let mix = |c: u8, bg: u8| ((c as u32 * a + bg as u32 * (255 - a) + 127) / 255) as u8;
        image::Rgb([
            mix(p[0], BACKGROUND[0]),
            mix(p[1], BACKGROUND[1]),
            mix(p[2], BACKGROUND[2]),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::png_chunk;
    use image::{ImageEncoder as _, Rgb, Rgba};
    use std::time::Instant;

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// Left half red, right half blue.
    fn two_tone(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, _| {
            if x < w / 2 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        })
    }

    fn close(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
        a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tol)
    }

    fn ihdr(w: u32, h: u32, depth: u8, colour_type: u8) -> Vec<u8> {
        let mut d = w.to_be_bytes().to_vec();
        d.extend(h.to_be_bytes());
        d.extend([depth, colour_type, 0, 0, 0]);
        d
    }

    /// A zlib stream of one stored (uncompressed) deflate block.
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let mut z = vec![0x78, 0x01, 0x01];
        let len = data.len() as u16;
        z.extend(len.to_le_bytes());
        z.extend((!len).to_le_bytes());
        z.extend(data);
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        z.extend(((b << 16) | a).to_be_bytes());
        z
    }

    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

    #[test]
    fn jpeg_decodes_to_rgb() {
        let bytes = encode(
            &DynamicImage::ImageRgb8(two_tone(64, 32)),
            ImageFormat::Jpeg,
        );
        assert_eq!(inspect(&bytes, &Limits::default()).unwrap().format, "jpeg");
        let img = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(img.dimensions(), (64, 32));
        assert!(close(img.get_pixel(5, 16).0, [255, 0, 0], 8));
        assert!(close(img.get_pixel(58, 16).0, [0, 0, 255], 8));
    }

    #[test]
    fn png_bit_depths_and_colour_types() {
        let rgb16 = image::ImageBuffer::<Rgb<u16>, _>::from_fn(4, 2, |x, _| {
            Rgb([if x < 2 { 65535 } else { 0 }, 32896, 0])
        });
        let grey8 = image::GrayImage::from_pixel(3, 3, image::Luma([77]));
        let grey16 =
            image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(3, 3, image::Luma([0xFFFF]));
        let cases: Vec<(DynamicImage, [u8; 3])> = vec![
            (DynamicImage::ImageRgb16(rgb16), [255, 128, 0]),
            (DynamicImage::ImageLuma8(grey8), [77, 77, 77]),
            (DynamicImage::ImageLuma16(grey16), [255, 255, 255]),
            (DynamicImage::ImageRgb8(two_tone(4, 2)), [255, 0, 0]),
        ];
        for (img, first) in cases {
            let bytes = encode(&img, ImageFormat::Png);
            let out = decode(&bytes, &Limits::default()).unwrap();
            assert_eq!(out.dimensions(), (img.width(), img.height()));
            assert_eq!(out.get_pixel(0, 0).0, first, "{:?}", img.color());
        }
    }

    #[test]
    fn png_palette_is_expanded() {
        let mut png = PNG_SIGNATURE.to_vec();
        png_chunk(&mut png, b"IHDR", &ihdr(2, 1, 8, 3));
        png_chunk(&mut png, b"PLTE", &[10, 20, 30, 200, 100, 50]);
        png_chunk(&mut png, b"IDAT", &zlib_stored(&[0, 1, 0]));
        png_chunk(&mut png, b"IEND", &[]);
        let img = decode(&png, &Limits::default()).unwrap();
        assert_eq!(img.dimensions(), (2, 1));
        assert_eq!(img.get_pixel(0, 0).0, [200, 100, 50]);
        assert_eq!(img.get_pixel(1, 0).0, [10, 20, 30]);
    }

    #[test]
    fn alpha_is_composited_on_neutral_grey() {
        let mut rgba = image::RgbaImage::new(3, 1);
        rgba.put_pixel(0, 0, Rgba([255, 0, 0, 255]));
        rgba.put_pixel(1, 0, Rgba([255, 0, 0, 0]));
        rgba.put_pixel(2, 0, Rgba([0, 0, 0, 128]));
        let bytes = encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
        let img = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, BACKGROUND);
        assert_eq!(img.get_pixel(2, 0).0, [64, 64, 64]);
    }

    #[test]
    fn webp_lossless_decodes() {
        let src = two_tone(10, 6);
        let mut bytes = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut bytes)
            .write_image(src.as_raw(), 10, 6, image::ExtendedColorType::Rgb8)
            .unwrap();
        assert_eq!(inspect(&bytes, &Limits::default()).unwrap().format, "webp");
        assert_eq!(decode(&bytes, &Limits::default()).unwrap(), src);
    }

    #[test]
    fn gif_gives_its_first_frame() {
        let mut bytes = Vec::new();
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut bytes);
            for colour in [[0u8, 255, 0, 255], [255, 0, 255, 255]] {
                let frame = image::Frame::new(image::RgbaImage::from_pixel(5, 4, Rgba(colour)));
                enc.encode_frame(frame).unwrap();
            }
        }
        assert_eq!(inspect(&bytes, &Limits::default()).unwrap().format, "gif");
        let img = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(img.dimensions(), (5, 4));
        assert!(
            close(img.get_pixel(2, 2).0, [0, 255, 0], 4),
            "{:?}",
            img.get_pixel(2, 2)
        );
    }

    /// A JPEG with an EXIF APP1 segment saying orientation 6 (display rotated 90 degrees
    /// clockwise) comes out rotated: the left (red) half of the stored image ends up on top.
    #[test]
    fn exif_orientation_is_applied() {
        let jpeg = encode(
            &DynamicImage::ImageRgb8(two_tone(32, 16)),
            ImageFormat::Jpeg,
        );
        let bytes = crate::testing::exif_orientation_jpeg(&jpeg, 6);
        let img = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(img.dimensions(), (16, 32));
        assert!(
            close(img.get_pixel(8, 4).0, [255, 0, 0], 8),
            "{:?}",
            img.get_pixel(8, 4)
        );
        assert!(
            close(img.get_pixel(8, 28).0, [0, 0, 255], 8),
            "{:?}",
            img.get_pixel(8, 28)
        );
    }

    /// A PNG whose header claims 50000 x 50000 pixels (2.5 gigapixels, 7.5 GB as RGB) is
    /// refused from the header alone: no pixel buffer is allocated, so it is fast.
    #[test]
    fn oversized_header_is_refused_before_decoding() {
        let mut png = PNG_SIGNATURE.to_vec();
        png_chunk(&mut png, b"IHDR", &ihdr(50_000, 50_000, 8, 2));
        png_chunk(&mut png, b"IDAT", &zlib_stored(&[0; 16]));
        png_chunk(&mut png, b"IEND", &[]);
        let start = Instant::now();
        let err = decode(&png, &Limits::default()).unwrap_err().to_string();
        assert!(
            err.contains("50000x50000") && err.contains("over the limit"),
            "{err}"
        );
        assert!(start.elapsed().as_millis() < 500);
        // A lower limit applies to ordinary images too.
        let small = encode(
            &DynamicImage::ImageRgb8(two_tone(100, 100)),
            ImageFormat::Png,
        );
        let limit = |max_pixels| Limits {
            max_pixels,
            ..Limits::default()
        };
        assert!(decode(&small, &limit(9_999)).is_err());
        assert!(decode(&small, &limit(10_000)).is_ok());
    }

    /// The issue-20 strips (1x40000, 1x100000, 100000x1) are refused from the header by the
    /// default aspect limit, with an error naming the limit; `decode_for` too.
    #[test]
    fn strips_over_the_aspect_limit_are_refused_from_the_header() {
        for (w, h) in [(1, 40_000), (1, 100_000), (100_000, 1)] {
            let png = crate::testing::strip_png(w, h);
            let err = decode(&png, &Limits::default()).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::LimitExceeded {
                        limit: "max_aspect_ratio",
                        value: 50,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains(&format!("{w}x{h}")), "{err}");
            assert!(decode_for(&png, &Limits::default(), Some(224)).is_err());
        }
        let ok = crate::testing::strip_png(1, 50);
        assert_eq!(
            decode(&ok, &Limits::default()).unwrap().dimensions(),
            (1, 50)
        );
        assert!(decode(&crate::testing::strip_png(1, 51), &Limits::default()).is_err());
    }

    #[test]
    fn garbage_and_truncated_input_give_errors() {
        assert!(decode(&[], &Limits::default()).is_err());
        assert!(decode(b"hello, not an image", &Limits::default()).is_err());
        let png = encode(&DynamicImage::ImageRgb8(two_tone(64, 64)), ImageFormat::Png);
        let jpeg = encode(
            &DynamicImage::ImageRgb8(two_tone(64, 64)),
            ImageFormat::Jpeg,
        );
        for bytes in [&png[..png.len() / 2], &png[..40], &jpeg[..jpeg.len() / 3]] {
            // Truncated files either fail or (JPEG) decode partially; they never panic.
            let _ = decode(bytes, &Limits::default());
        }
        assert!(decode(&png[..40], &Limits::default()).is_err());
    }
}
