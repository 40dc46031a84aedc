//! What the engine's integration tests share: a deterministic test encoder, an engine on it,
//! and PNG bytes.

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

/// An embedded engine in `dir` whose encoder is [`MeanColour`] (3 dimensions).
pub fn mean_colour_engine(dir: &std::path::Path) -> rap_engine::Engine {
    let encoder: std::sync::Arc<dyn ImageEncoder> = std::sync::Arc::new(MeanColour(EncoderInfo {
        id: "mean-colour".into(),
        dim: 3,
    }));
    rap_engine::Engine::open(
        rap_engine::EngineConfig::new(dir),
        Box::new(move || Ok(Some(encoder.clone()))),
    )
    .unwrap()
}

/// `img` as PNG bytes.
pub fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}
