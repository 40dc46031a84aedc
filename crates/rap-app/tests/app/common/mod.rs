//! What the engine's integration tests share: a deterministic test encoder.

use rap_core::{EncoderInfo, ImageEncoder, Result};

/// A test encoder: the mean colour of an image (so a photo of a red thing is found by a red
/// reference). The `rap` binary never ships anything like it.
pub struct MeanColour(pub EncoderInfo);

impl ImageEncoder for MeanColour {
    fn info(&self) -> &EncoderInfo {
        &self.0
    }
    fn embed(&self, images: &[image::RgbImage]) -> Result<Vec<rap_core::Embedding>> {
        images
            .iter()
            .map(|img| {
                let mut sum = [0f32; 3];
                for p in img.pixels() {
                    for c in 0..3 {
                        sum[c] += p[c] as f32 + 1.0;
                    }
                }
                rap_core::Embedding::normalized(sum.to_vec())
            })
            .collect()
    }
}

/// The shared datasets folder (next to the repository).
pub fn datasets_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
}

/// A tiny random Hugging Face checkpoint of the golden tests: the OWLv2 detector's (beside
/// rap-detect's tests), or an encoder's (`clip`, `dinov2`, `siglip`, beside rap-vision's).
pub fn fixture(name: &str) -> std::path::PathBuf {
    let owner = if name == "owlv2" {
        "rap-detect"
    } else {
        "rap-vision"
    };
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(owner)
        .join("tests/fixtures/hf")
        .join(name)
}
