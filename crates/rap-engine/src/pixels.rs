//! How many pixels a query needs: retrieval embeds the whole image and square windows down to
//! the smallest window scale, and an encoder that shrinks its input to `n` pixels gains nothing
//! from a region larger than that, so a big JPEG is decoded at the reduced scale that still
//! gives the smallest window `n` pixels ([`rap_image::decode_for`]). Boxes stay in the full
//! image's pixels; [`rap_image::ScaledImage::to_image_box`] maps them onto the decoded one.

use rap_core::{ImageEncoder, Result};
use rap_image::{Limits, ScaledImage};

/// The shorter side a query image must keep for `encoder` to see every region with
/// `window_scales` at full detail: its input size over the smallest window scale. `None`
/// (decode at full size) when the encoder does not say what it needs.
pub fn query_short_side(encoder: &dyn ImageEncoder, window_scales: &[f32]) -> Option<u32> {
    let needed = encoder.pixels_needed()? as f32;
    // Scales of 1 or more (and non-finite ones) give no window; the whole image is scale 1.
    let smallest = window_scales
        .iter()
        .copied()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1.0)
        .fold(1.0f32, f32::min);
    Some((needed / smallest).ceil() as u32)
}

/// Decodes a query image for `encoder` with `window_scales`, reduced where that loses nothing
/// (see [`query_short_side`]); at full size when `full_size` (a region proposer looks at it).
pub fn decode_query(
    bytes: &[u8],
    limits: &Limits,
    encoder: &dyn ImageEncoder,
    window_scales: &[f32],
    full_size: bool,
) -> Result<ScaledImage> {
    let min_short_side = if full_size {
        None
    } else {
        query_short_side(encoder, window_scales)
    };
    rap_image::decode_for(bytes, limits, min_short_side)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rap_core::{Embedding, EncoderInfo};

    struct Needs(Option<u32>, EncoderInfo);

    impl ImageEncoder for Needs {
        fn info(&self) -> &EncoderInfo {
            &self.1
        }
        fn embed(&self, images: &[image::RgbImage]) -> Result<Vec<Embedding>> {
            images
                .iter()
                .map(|_| Embedding::normalized(vec![1.0, 0.0]))
                .collect()
        }
        fn pixels_needed(&self) -> Option<u32> {
            self.0
        }
    }

    fn encoder(needs: Option<u32>) -> Needs {
        Needs(
            needs,
            EncoderInfo {
                id: "test@1".into(),
                dim: 2,
            },
        )
    }

    #[test]
    fn the_smallest_window_decides() {
        let e = encoder(Some(224));
        assert_eq!(query_short_side(&e, &[0.5, 0.75]), Some(448));
        assert_eq!(query_short_side(&e, &[0.75]), Some(299));
        assert_eq!(query_short_side(&e, &[]), Some(224));
        assert_eq!(query_short_side(&e, &[1.5, f32::NAN, 0.0]), Some(224));
        assert_eq!(query_short_side(&encoder(None), &[0.5]), None);
    }

    #[test]
    fn a_big_jpeg_is_decoded_smaller_unless_full_size_is_asked_for() {
        let img = image::RgbImage::from_fn(1800, 1000, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 9])
        });
        let mut jpeg = std::io::Cursor::new(Vec::new());
        img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
        let jpeg = jpeg.into_inner();
        let e = encoder(Some(224));
        let limits = Limits::default();
        // The 500-pixel windows keep 250 pixels at half size; a quarter would leave 125.
        let q = decode_query(&jpeg, &limits, &e, &[0.5, 0.75], false).unwrap();
        assert_eq!(q.image.dimensions(), (900, 500));
        assert_eq!((q.full_width, q.full_height), (1800, 1000));
        let q = decode_query(&jpeg, &limits, &e, &[0.5], true).unwrap();
        assert_eq!(q.image.dimensions(), (1800, 1000));
        let q = decode_query(&jpeg, &limits, &encoder(None), &[0.5], false).unwrap();
        assert_eq!(q.reduction(), 1);
    }
}
