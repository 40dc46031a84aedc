//! The image encoder seam: anything that turns RGB images into embeddings.

use crate::{BoundingBox, Embedding, Error, Region, Result};

/// What identifies an encoder's embedding space. Keys computed by different encoders (or
/// different versions of one) are never compared: the memory stores embeddings per encoder id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncoderInfo {
    /// Stable id of the embedding space, e.g. `efficientnet-lite0@1`.
    pub id: String,
    /// Embedding dimension.
    pub dim: usize,
}

/// Turns images into unit-length embeddings. Implementations do their own preprocessing
/// (resize, crop, normalise) from a decoded, orientation-corrected RGB image.
pub trait ImageEncoder: Send + Sync {
    fn info(&self) -> &EncoderInfo;

    /// Embeds a batch of images; the output has one embedding per input, in order.
    fn embed(&self, images: &[image::RgbImage]) -> Result<Vec<Embedding>>;

    /// The regions of a `width` x `height` reference image that are keyed, one embedding
    /// each (a concept then scores its best key): by default the whole image. An encoder that
    /// keys more (crops of the reference) says so in its [`EncoderInfo::id`], so memories
    /// keyed the other way are re-keyed rather than mixed.
    fn key_regions(&self, width: u32, height: u32) -> Vec<Region> {
        vec![Region::whole(width, height)]
    }

    /// Embeds boxes of one image, each exactly as if it were cut out (see
    /// [`BoundingBox::pixel_window`] for the rounding) and given to [`ImageEncoder::embed`].
    /// Encoders that can resize straight from the box override this to skip the copies.
    fn embed_regions(
        &self,
        image: &image::RgbImage,
        boxes: &[BoundingBox],
    ) -> Result<Vec<Embedding>> {
        let crops = boxes
            .iter()
            .map(|b| {
                let (x, y, w, h) = b.pixel_window(image.width(), image.height())?;
                Ok(image::imageops::crop_imm(image, x, y, w, h).to_image())
            })
            .collect::<Result<Vec<_>>>()?;
        self.embed(&crops)
    }

    /// The shorter side, in pixels, at which an image gives this encoder all the detail it
    /// can use: its preprocessing shrinks anything larger to this, so an image (or a region of
    /// one) may be decoded smaller down to this size. `None` (the default): unknown, always
    /// give the full image.
    fn pixels_needed(&self) -> Option<u32> {
        None
    }

    /// Whether [`ImageEncoder::embed_texts`] works: the model has a text tower that embeds
    /// words into the same space as images (CLIP, SigLIP), so the memory can be searched by words.
    fn has_text(&self) -> bool {
        false
    }

    /// Embeds texts into the image embedding space, one unit vector per text, in order.
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        let _ = texts;
        Err(Error::Model(format!(
            "encoder {} has no text tower: searching by words needs a CLIP or SigLIP encoder",
            self.info().id
        )))
    }
}
