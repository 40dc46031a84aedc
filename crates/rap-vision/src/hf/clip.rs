//! CLIP (openai/clip-vit-base-patch32, clip-vit-large-patch14, clip-vit-large-patch14-336 and
//! any other checkpoint in the transformers `CLIPModel` / `CLIPVisionModel` layout), on
//! candle-transformers' CLIP towers.
//!
//! candle-transformers has the vision and text transformers but builds them from hard-coded
//! configurations, and its text pooling is always the argmax of the token ids; so this file
//! reads `config.json` into candle's configs (refusing what candle's towers cannot run: other
//! activations than quick_gelu, other layer-norm epsilons than 1e-5), adds the two projections,
//! and pools the text as transformers does (the first end-of-text token; the argmax of the ids
//! for the old configs whose `eos_token_id` is 2). Image embedding: `visual_projection` of the
//! post-layer-normed class token; text embedding: `text_projection` of the end-of-text token.

use super::folder::{config_err, encode_text, weights_err, HfFolder, HfModel};
use candle_core::{IndexOp, Module, Tensor};
use candle_nn::Linear;
use candle_transformers::models::clip::{
    text_model::{Activation, ClipTextConfig, ClipTextTransformer},
    vision_model::{ClipVisionConfig, ClipVisionTransformer},
};
use rap_core::{Error, Result};

fn d_hidden_vision() -> usize {
    768
}
fn d_inter_vision() -> usize {
    3072
}
fn d_layers() -> usize {
    12
}
fn d_heads_vision() -> usize {
    12
}
fn d_channels() -> usize {
    3
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    32
}
fn d_act() -> String {
    "quick_gelu".into()
}
fn d_eps() -> f64 {
    1e-5
}
fn d_projection() -> usize {
    512
}
fn d_vocab() -> usize {
    49408
}
fn d_hidden_text() -> usize {
    512
}
fn d_inter_text() -> usize {
    2048
}
fn d_heads_text() -> usize {
    8
}
fn d_max_pos() -> usize {
    77
}
fn d_eos() -> u32 {
    49407
}

/// `vision_config` of a CLIP `config.json` (transformers' defaults where a key is absent). Other
/// models with CLIP towers (OWLv2) read theirs with their own defaults through
/// [`tower_with_defaults`].
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct VisionConfig {
    #[serde(default = "d_hidden_vision")]
    pub hidden_size: usize,
    #[serde(default = "d_inter_vision")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads_vision")]
    pub num_attention_heads: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_projection")]
    pub projection_dim: usize,
}

/// `text_config` of a CLIP `config.json`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct TextConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden_text")]
    pub hidden_size: usize,
    #[serde(default = "d_inter_text")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads_text")]
    pub num_attention_heads: usize,
    #[serde(default = "d_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_eos")]
    pub eos_token_id: u32,
}

/// A CLIP `config.json` (`model_type` "clip"; "clip_vision_model" has the vision keys at the top).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub model_type: String,
    pub projection_dim: Option<usize>,
    pub vision_config: Option<VisionConfig>,
    pub text_config: Option<TextConfig>,
}

/// A tower section of a `config.json` over `defaults`: the keys the section gives win, the rest
/// come from `defaults` (another model's CLIP towers have other defaults: OWLv2's text takes 16
/// tokens, its vision 768-px images in 16-px patches). The error names the section.
pub fn tower_with_defaults<T>(
    folder: &HfFolder,
    section: &str,
    given: &serde_json::Value,
    defaults: &T,
) -> Result<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut merged = serde_json::to_value(defaults)
        .map_err(|e| config_err(folder, format!("{section}: {e}")))?;
    match (merged.as_object_mut(), given.as_object()) {
        (Some(m), Some(g)) => m.extend(g.iter().map(|(k, v)| (k.clone(), v.clone()))),
        _ => return Err(config_err(folder, format!("{section} is not an object"))),
    }
    serde_json::from_value(merged).map_err(|e| config_err(folder, format!("{section}: {e}")))
}

/// What candle's CLIP layers run: quick_gelu, layer norm eps 1e-5, whole heads.
fn check_tower(
    folder: &HfFolder,
    tower: &str,
    act: &str,
    eps: f64,
    hidden: usize,
    heads: usize,
) -> Result<()> {
    if act != "quick_gelu" {
        return Err(config_err(
            folder,
            format!("{tower}: hidden_act \"{act}\" is not supported (candle's CLIP runs quick_gelu, as OpenAI's checkpoints use)"),
        ));
    }
    if (eps - 1e-5).abs() > 1e-12 {
        return Err(config_err(
            folder,
            format!("{tower}: layer_norm_eps {eps} is not supported (candle's CLIP uses 1e-5)"),
        ));
    }
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(config_err(
            folder,
            format!(
                "{tower}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            ),
        ));
    }
    Ok(())
}

impl VisionConfig {
    /// Checks that candle's CLIP vision layers can run it (`section` names it in errors).
    pub fn check(&self, folder: &HfFolder, section: &str) -> Result<()> {
        check_tower(
            folder,
            section,
            &self.hidden_act,
            self.layer_norm_eps,
            self.hidden_size,
            self.num_attention_heads,
        )?;
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(config_err(
                folder,
                format!(
                    "image_size {} is not a multiple of patch_size {}",
                    self.image_size, self.patch_size
                ),
            ));
        }
        Ok(())
    }

    /// candle's configuration of this tower, projecting to `projection_dim`.
    pub fn to_candle(&self, projection_dim: usize) -> ClipVisionConfig {
        ClipVisionConfig {
            embed_dim: self.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            projection_dim,
            num_channels: self.num_channels,
            image_size: self.image_size,
            patch_size: self.patch_size,
        }
    }
}

impl TextConfig {
    /// Checks that candle's CLIP text layers can run it (`section` names it in errors).
    pub fn check(&self, folder: &HfFolder, section: &str) -> Result<()> {
        check_tower(
            folder,
            section,
            &self.hidden_act,
            self.layer_norm_eps,
            self.hidden_size,
            self.num_attention_heads,
        )
    }

    /// candle's configuration of this tower, projecting to `projection_dim`.
    pub fn to_candle(&self, projection_dim: usize) -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: self.vocab_size,
            embed_dim: self.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: self.intermediate_size,
            max_position_embeddings: self.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            projection_dim,
        }
    }
}

/// CLIP's text tower with its tokenizer and projection.
struct Text {
    model: ClipTextTransformer,
    projection: Linear,
    tokenizer: tokenizers::Tokenizer,
    max_len: usize,
    eos_token_id: u32,
}

/// A CLIP checkpoint.
pub struct Clip {
    vision: ClipVisionTransformer,
    visual_projection: Option<Linear>,
    text: Option<Text>,
    dim: usize,
    image_size: usize,
    device: candle_core::Device,
}

impl Clip {
    /// Loads a CLIP folder. The text tower is loaded when the checkpoint has one and the folder
    /// has its `tokenizer.json`; without the tokenizer the model embeds images only.
    pub fn load(folder: &HfFolder) -> Result<Self> {
        let cfg: Config = folder.json(super::folder::CONFIG)?;
        let full = cfg.model_type == "clip";
        let vcfg: VisionConfig = if full {
            cfg.vision_config.clone().ok_or_else(|| {
                config_err(folder, "model_type \"clip\" without a \"vision_config\"")
            })?
        } else {
            folder.json(super::folder::CONFIG)?
        };
        vcfg.check(folder, "vision_config")?;
        let projection_dim = cfg.projection_dim.unwrap_or(vcfg.projection_dim);
        let vb = folder.weights()?;
        // candle draws a random class embedding when the tensor is missing; refuse instead.
        for name in [
            "vision_model.embeddings.class_embedding",
            "vision_model.embeddings.patch_embedding.weight",
        ] {
            if !vb.contains_tensor(name) {
                return Err(Error::Model(format!(
                    "{}: has no tensor {name} (not a CLIP checkpoint?)",
                    folder.path(super::folder::WEIGHTS).display()
                )));
            }
        }
        let candle_vision = vcfg.to_candle(projection_dim);
        let vision = ClipVisionTransformer::new(vb.pp("vision_model"), &candle_vision)
            .map_err(|e| weights_err(folder, e))?;
        // CLIPModel and CLIPVisionModelWithProjection have the projection; CLIPVisionModel not.
        let visual_projection = if full || vb.contains_tensor("visual_projection.weight") {
            Some(
                candle_nn::linear_no_bias(
                    vcfg.hidden_size,
                    projection_dim,
                    vb.pp("visual_projection"),
                )
                .map_err(|e| weights_err(folder, e))?,
            )
        } else {
            None
        };
        let dim = if visual_projection.is_some() {
            projection_dim
        } else {
            vcfg.hidden_size
        };

        let text = match (&cfg.text_config, full) {
            (Some(t), true) if folder.path(super::folder::TOKENIZER).is_file() => {
                t.check(folder, "text_config")?;
                let tokenizer = folder.tokenizer()?;
                let candle_text = t.to_candle(projection_dim);
                let model = ClipTextTransformer::new(vb.pp("text_model"), &candle_text)
                    .map_err(|e| weights_err(folder, e))?;
                let projection = candle_nn::linear_no_bias(
                    t.hidden_size,
                    projection_dim,
                    vb.pp("text_projection"),
                )
                .map_err(|e| weights_err(folder, e))?;
                Some(Text {
                    model,
                    projection,
                    tokenizer,
                    max_len: t.max_position_embeddings,
                    eos_token_id: t.eos_token_id,
                })
            }
            _ => None,
        };
        Ok(Clip {
            vision,
            visual_projection,
            text,
            dim,
            image_size: vcfg.image_size,
            device: vb.device().clone(),
        })
    }
}

impl HfModel for Clip {
    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let pooled = self.vision.forward(pixels)?;
        match &self.visual_projection {
            Some(p) => p.forward(&pooled),
            None => Ok(pooled),
        }
    }

    fn has_text(&self) -> bool {
        self.text.is_some()
    }

    fn text_features(&self, text: &str) -> Option<Result<Vec<f32>>> {
        let t = self.text.as_ref()?;
        Some((|| {
            let ids = encode_text(&t.tokenizer, text, t.max_len)?;
            if ids.is_empty() {
                return Err(Error::invalid("the text has no tokens"));
            }
            // transformers: the first end-of-text token; for old configs (eos_token_id 2) the
            // largest id, which is CLIP's end-of-text token.
            let pos = if t.eos_token_id == 2 {
                let max = ids.iter().copied().max().unwrap_or(0);
                ids.iter().position(|&i| i == max).unwrap_or(0)
            } else {
                ids.iter().position(|&i| i == t.eos_token_id).unwrap_or(0)
            };
            let err = |e: candle_core::Error| Error::Model(format!("clip text tower: {e}"));
            let input = Tensor::new(ids.as_slice(), &self.device)
                .and_then(|x| x.unsqueeze(0))
                .map_err(err)?;
            let hidden = t.model.forward_with_mask(&input, usize::MAX).map_err(err)?;
            hidden
                .i((.., pos, ..))
                .and_then(|h| t.projection.forward(&h))
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
