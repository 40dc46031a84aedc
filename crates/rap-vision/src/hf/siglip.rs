//! SigLIP (google/siglip-base-patch16-224 and other checkpoints in the transformers
//! `SiglipModel` / `SiglipVisionModel` layout), on candle-transformers' SigLIP towers, which
//! read `config.json` and the checkpoint's weight names as they are.
//!
//! What this file adds: the checks candle leaves out (a vision tower without its attention
//! pooling head, a text head of another width, an input size other than the config's, which
//! candle would resize by nearest neighbour) and the text input as SigLIP was trained: the
//! tokenizer's ids, truncated and padded with `pad_token_id` to `max_position_embeddings`
//! (transformers' `padding="max_length"`); the text embedding is the head of the last position.
//! Image embedding: the attention-pooling head's output (transformers' `pooler_output`).

use super::folder::{config_err, encode_text, weights_err, HfFolder, HfModel};
use candle_core::{Module, Tensor};
use candle_transformers::models::siglip::{TextConfig, TextModel, VisionConfig, VisionModel};
use rap_core::{Error, Result};

#[derive(Debug, Clone, serde::Deserialize)]
struct Head {
    model_type: String,
    vision_config: Option<serde_json::Value>,
    text_config: Option<serde_json::Value>,
    #[serde(default)]
    vision_use_head: Option<bool>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct TextExtra {
    projection_size: Option<usize>,
    hidden_size: Option<usize>,
}

struct Text {
    model: TextModel,
    tokenizer: tokenizers::Tokenizer,
    max_len: usize,
    pad: u32,
}

/// A SigLIP checkpoint.
pub struct Siglip {
    vision: VisionModel,
    text: Option<Text>,
    dim: usize,
    image_size: usize,
    device: candle_core::Device,
}

fn parse<T: serde::de::DeserializeOwned>(
    folder: &HfFolder,
    what: &str,
    v: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(v).map_err(|e| config_err(folder, format!("{what}: {e}")))
}

impl Siglip {
    pub fn load(folder: &HfFolder) -> Result<Self> {
        let head: Head = folder.json(super::folder::CONFIG)?;
        let full = head.model_type == "siglip";
        let vjson = if full {
            head.vision_config.clone().ok_or_else(|| {
                config_err(folder, "model_type \"siglip\" without a \"vision_config\"")
            })?
        } else {
            serde_json::from_slice(&folder.read(super::folder::CONFIG)?)
                .map_err(|e| config_err(folder, e))?
        };
        let use_head = vjson
            .get("vision_use_head")
            .and_then(|v| v.as_bool())
            .or(head.vision_use_head)
            .unwrap_or(true);
        if !use_head {
            return Err(config_err(
                folder,
                "vision_use_head is false: the model has no pooled image embedding",
            ));
        }
        let vcfg: VisionConfig = parse(folder, "vision_config", vjson)?;
        if vcfg.num_attention_heads == 0
            || !vcfg.hidden_size.is_multiple_of(vcfg.num_attention_heads)
        {
            return Err(config_err(
                folder,
                "vision_config: hidden_size is not a multiple of num_attention_heads",
            ));
        }
        if vcfg.patch_size == 0 || !vcfg.image_size.is_multiple_of(vcfg.patch_size) {
            return Err(config_err(
                folder,
                "vision_config: image_size is not a multiple of patch_size",
            ));
        }
        let vb = folder.weights()?;
        if !vb.contains_tensor("vision_model.head.probe") {
            return Err(Error::Model(format!(
                "{}: has no tensor vision_model.head.probe (not a SigLIP checkpoint with its pooling head?)",
                folder.path(super::folder::WEIGHTS).display()
            )));
        }
        let vision = VisionModel::new(&vcfg, true, vb.pp("vision_model"))
            .map_err(|e| weights_err(folder, e))?;
        let text = match (head.text_config, full) {
            (Some(tjson), true) if folder.path(super::folder::TOKENIZER).is_file() => {
                let extra: TextExtra = parse(folder, "text_config", tjson.clone())?;
                let tcfg: TextConfig = parse(folder, "text_config", tjson)?;
                if let (Some(p), Some(h)) = (extra.projection_size, extra.hidden_size) {
                    if p != h {
                        return Err(config_err(
                            folder,
                            format!("text_config: projection_size {p} differs from hidden_size {h} (not supported by candle's SigLIP)"),
                        ));
                    }
                }
                if tcfg.hidden_size != vcfg.hidden_size {
                    return Err(config_err(
                        folder,
                        "text and vision hidden sizes differ: the embeddings would not share a space",
                    ));
                }
                let tokenizer = folder.tokenizer()?;
                let model = TextModel::new(&tcfg, vb.pp("text_model"))
                    .map_err(|e| weights_err(folder, e))?;
                Some(Text {
                    model,
                    tokenizer,
                    max_len: tcfg.max_position_embeddings,
                    pad: tcfg.pad_token_id,
                })
            }
            _ => None,
        };
        Ok(Siglip {
            vision,
            text,
            dim: vcfg.hidden_size,
            image_size: vcfg.image_size,
            device: vb.device().clone(),
        })
    }
}

impl HfModel for Siglip {
    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.vision.forward(pixels)
    }

    fn has_text(&self) -> bool {
        self.text.is_some()
    }

    fn text_features(&self, text: &str) -> Option<Result<Vec<f32>>> {
        let t = self.text.as_ref()?;
        Some((|| {
            let mut ids = encode_text(&t.tokenizer, text, t.max_len)?;
            ids.resize(t.max_len, t.pad);
            let err = |e: candle_core::Error| Error::Model(format!("siglip text tower: {e}"));
            let input = Tensor::new(ids.as_slice(), &self.device)
                .and_then(|x| x.unsqueeze(0))
                .map_err(err)?;
            t.model
                .forward(&input)
                .and_then(|h| h.squeeze(0))
                .and_then(|h| h.to_vec1::<f32>())
                .map_err(err)
        })())
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn input_size(&self) -> Option<(u32, u32)> {
        Some((self.image_size as u32, self.image_size as u32))
    }

    fn device(&self) -> &candle_core::Device {
        &self.device
    }
}
