//! Image decoding for `rap`: every image a user hands us passes through here.
//!
//! [`inspect`] reads only the header (format and size) and refuses images over the pixel limit
//! before anything is decoded, so a decompression bomb never allocates its pixels. [`decode`]
//! then decodes fully under the same limits, applies the EXIF orientation and composites any
//! alpha channel onto a neutral grey, giving the RGB image every encoder starts from.

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use rap_core::{Error, Result};
use std::io::Cursor;

/// The default pixel limit: 100 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// Limits applied to every image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted width x height.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
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

fn check_size(width: u32, height: u32, limits: &Limits) -> Result<()> {
    let pixels = width as u64 * height as u64;
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    if pixels > limits.max_pixels {
        return Err(Error::invalid(format!(
            "image is {width}x{height} = {:.1} megapixels, over the limit of {:.1} megapixels",
            pixels as f64 / 1e6,
            limits.max_pixels as f64 / 1e6
        )));
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
