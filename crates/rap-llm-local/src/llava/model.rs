//! The LLaVA-1.5 network: candle-transformers' CLIP vision transformer and a language model
//! ([`crate::llava::lm`]: Llama or Phi-3, optionally quantized at load), joined by a projector
//! written here.
//!
//! Written by hand, and why:
//! - the feature-layer choice: candle's `llava::ClipVisionTower` maps `-2` to the *last* layer's
//!   output (its hidden-state list has no embeddings entry but a pooled one at the end), while
//!   LLaVA / transformers take the penultimate layer; we index candle's
//!   `ClipVisionTransformer::output_hidden_states` ourselves;
//! - the projector: candle's `MMProjector` needs its whole `LLaVAConfig` and hard-codes the
//!   tensor prefixes; ours is two lines of GELU between linears, with the layout's names;
//! - candle's `llava::LLaVA` itself requires LLaVA-1.6's `image_newline` tensor, which 1.5
//!   checkpoints do not have, and splices one image; we splice each image's features at its
//!   own `<image>` ([`LlavaModel::embed`]).

use crate::gguf::no_panic;
use crate::llava::config::{Layout, LlavaConfig, LmFamily, Projector, TextConfig, VisionConfig};
use crate::llava::lm::{Lm, LmCache, QuantStats, Quantize};
use crate::llava::weights::{Checkpoint, View};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::vision_model::ClipVisionTransformer;
use rap_core::{Error, Result};
use std::sync::Arc;

/// Where each part's tensors are in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Prefix of the CLIP vision transformer (`...embeddings.patch_embedding.weight`).
    pub vision: String,
    /// Names of the projector's linear layers, in order (without `.weight`).
    pub projector: Vec<String>,
    /// Prefix of the language model's decoder (`...embed_tokens.weight`), with a trailing dot.
    pub lm: String,
    /// The LM head's name (without `.weight`).
    pub lm_head: String,
}

fn first_present(ck: &Checkpoint, candidates: &[&str], suffix: &str) -> Option<String> {
    candidates
        .iter()
        .find(|p| ck.has(&format!("{p}{suffix}")))
        .map(|p| p.to_string())
}

/// Finds the language model's and projector's names in the main checkpoint.
pub fn detect_names(
    ck: &Checkpoint,
    config: &LlavaConfig,
) -> Result<(String, String, Vec<String>)> {
    let lm = first_present(
        ck,
        &["model.language_model.", "language_model.model.", "model."],
        "embed_tokens.weight",
    )
    .ok_or_else(|| {
        Error::Model(format!(
            "{}: no language model embeddings (`model.language_model.embed_tokens.weight`, \
             `language_model.model.embed_tokens.weight` or `model.embed_tokens.weight`)",
            ck.dir().display()
        ))
    })?;
    let lm_head = if config.text.tie_word_embeddings {
        format!("{lm}embed_tokens")
    } else {
        first_present(ck, &["lm_head", "language_model.lm_head"], ".weight").ok_or_else(|| {
            Error::Model(format!(
                "{}: no `lm_head.weight` (nor `language_model.lm_head.weight`)",
                ck.dir().display()
            ))
        })?
    };
    let depth = match config.projector {
        Projector::Linear => 1,
        Projector::MlpGelu(d) => d,
    };
    let projector: Vec<String> = match config.layout {
        Layout::Hf => {
            let p = first_present(
                ck,
                &["model.multi_modal_projector", "multi_modal_projector"],
                ".linear_1.weight",
            )
            .ok_or_else(|| {
                Error::Model(format!(
                    "{}: no projector (`model.multi_modal_projector.linear_1.weight`)",
                    ck.dir().display()
                ))
            })?;
            (1..=depth).map(|i| format!("{p}.linear_{i}")).collect()
        }
        Layout::Original => (0..depth)
            .map(|i| format!("model.mm_projector.{}", 2 * i))
            .collect(),
    };
    Ok((lm, lm_head, projector))
}

/// The vision tower's prefix in `ck`, if it holds one.
pub fn detect_vision(ck: &Checkpoint) -> Option<String> {
    first_present(
        ck,
        &[
            "model.vision_tower.vision_model",
            "model.vision_tower",
            "vision_tower.vision_model",
            "model.vision_tower.vision_tower.vision_model",
            "vision_model",
        ],
        ".embeddings.patch_embedding.weight",
    )
}

/// The loaded model. Stateless between calls: each generation brings its own [`LmCache`].
pub struct LlavaModel {
    pub(crate) tower: ClipVisionTransformer,
    pub(crate) projector: Vec<candle_nn::Linear>,
    pub(crate) lm: Lm,
    pub(crate) vision: VisionConfig,
    layer_index: usize,
    keep_cls: bool,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
}

pub(crate) fn check_lm(ck: &Checkpoint, lm: &str, lm_head: &str, t: &TextConfig) -> Result<()> {
    let h = t.hidden_size;
    let kv = t.head_dim() * t.num_key_value_heads;
    let i = t.intermediate_size;
    ck.expect(&format!("{lm}embed_tokens.weight"), &[t.vocab_size, h])?;
    ck.expect(&format!("{lm}norm.weight"), &[h])?;
    ck.expect(&format!("{lm_head}.weight"), &[t.vocab_size, h])?;
    let linears: Vec<(&str, [usize; 2])> = match t.family {
        LmFamily::Llama => vec![
            ("self_attn.q_proj", [h, h]),
            ("self_attn.k_proj", [kv, h]),
            ("self_attn.v_proj", [kv, h]),
            ("self_attn.o_proj", [h, h]),
            ("mlp.gate_proj", [i, h]),
            ("mlp.up_proj", [i, h]),
            ("mlp.down_proj", [h, i]),
        ],
        LmFamily::Phi3 => vec![
            ("self_attn.qkv_proj", [h + 2 * kv, h]),
            ("self_attn.o_proj", [h, h]),
            ("mlp.gate_up_proj", [2 * i, h]),
            ("mlp.down_proj", [h, i]),
        ],
    };
    for l in 0..t.num_hidden_layers {
        let p = format!("{lm}layers.{l}.");
        for (n, dims) in &linears {
            ck.expect(&format!("{p}{n}.weight"), dims)?;
        }
        ck.expect(&format!("{p}input_layernorm.weight"), &[h])?;
        ck.expect(&format!("{p}post_attention_layernorm.weight"), &[h])?;
    }
    if ck.has(&format!(
        "{lm}layers.{}.input_layernorm.weight",
        t.num_hidden_layers
    )) {
        return Err(Error::Model(format!(
            "{}: the weights have more than the configured {} layers",
            ck.dir().display(),
            t.num_hidden_layers
        )));
    }
    Ok(())
}

fn check_vision(ck: &Checkpoint, p: &str, v: &VisionConfig) -> Result<()> {
    let d = v.hidden_size;
    ck.expect(&format!("{p}.embeddings.class_embedding"), &[d])?;
    ck.expect(
        &format!("{p}.embeddings.patch_embedding.weight"),
        &[d, 3, v.patch_size, v.patch_size],
    )?;
    ck.expect(
        &format!("{p}.embeddings.position_embedding.weight"),
        &[v.num_patches() + 1, d],
    )?;
    for l in 0..v.num_hidden_layers {
        let q = format!("{p}.encoder.layers.{l}.");
        ck.expect(&format!("{q}self_attn.q_proj.weight"), &[d, d])?;
        ck.expect(&format!("{q}mlp.fc1.weight"), &[v.intermediate_size, d])?;
        ck.expect(&format!("{q}mlp.fc2.weight"), &[d, v.intermediate_size])?;
    }
    Ok(())
}

impl LlavaModel {
    /// Builds the model. `main` holds the language model and projector; `tower` holds the
    /// vision tower under prefix `vision_prefix` (the same checkpoint, or a CLIP folder). With
    /// `quantize` the language model's linear weights are quantized as they are read and the
    /// language model runs in f32 (the tower and projector keep `dtype`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load(
        config: &LlavaConfig,
        vision: &VisionConfig,
        main: Arc<Checkpoint>,
        tower: Arc<Checkpoint>,
        vision_prefix: &str,
        dtype: DType,
        quantize: Quantize,
        device: &Device,
    ) -> Result<Self> {
        let (lm, lm_head, projector_names) = detect_names(&main, config)?;
        let text = &config.text;
        check_lm(&main, &lm, &lm_head, text)?;
        check_vision(&tower, vision_prefix, vision)?;
        if let Some(mm) = config.mm_hidden_size {
            if mm != vision.hidden_size {
                return Err(Error::Model(format!(
                    "{}: mm_hidden_size is {mm} but the vision tower's width is {}",
                    main.dir().display(),
                    vision.hidden_size
                )));
            }
        }
        let layer_index = config.candle_layer_index(vision)?;
        let dir = main.dir().display().to_string();

        // The projector: [vision width -> hidden], then [hidden -> hidden] per extra layer.
        let pvb = VarBuilder::from_backend(
            Box::new(View {
                ck: main.clone(),
                rewrites: vec![],
            }),
            dtype,
            device.clone(),
        );
        let mut projector = Vec::new();
        for (i, name) in projector_names.iter().enumerate() {
            let fan_in = if i == 0 {
                vision.hidden_size
            } else {
                text.hidden_size
            };
            main.expect(&format!("{name}.weight"), &[text.hidden_size, fan_in])?;
            let w = pvb
                .get((text.hidden_size, fan_in), &format!("{name}.weight"))
                .map_err(|e| Error::Model(format!("{dir}: {e}")))?;
            let b = if config.projector_bias {
                main.expect(&format!("{name}.bias"), &[text.hidden_size])?;
                Some(
                    pvb.get(text.hidden_size, &format!("{name}.bias"))
                        .map_err(|e| Error::Model(format!("{dir}: {e}")))?,
                )
            } else {
                None
            };
            projector.push(candle_nn::Linear::new(w, b));
        }

        let lm_dtype = if quantize == Quantize::None {
            dtype
        } else {
            DType::F32
        };
        let lm_vb = VarBuilder::from_backend(
            Box::new(View {
                ck: main.clone(),
                rewrites: vec![
                    ("model.".to_string(), lm.clone()),
                    ("lm_head".to_string(), lm_head.clone()),
                ],
            }),
            lm_dtype,
            device.clone(),
        );
        // The shapes were checked above; a panic inside candle that still happens (a corrupt
        // file) becomes an error.
        let lm = no_panic(
            || format!("{dir}: loading the language model failed"),
            || {
                Lm::load(text, lm_vb, quantize)
                    .map_err(|e| Error::Model(format!("{dir}: language model: {e}")))
            },
        )?;
        let tdir = tower.dir().display().to_string();
        let tvb = VarBuilder::from_backend(
            Box::new(View {
                ck: tower,
                rewrites: vec![],
            }),
            dtype,
            device.clone(),
        );
        let clip = vision.to_candle();
        let tower = no_panic(
            || format!("{tdir}: loading the vision tower failed"),
            || {
                ClipVisionTransformer::new(tvb.pp(vision_prefix), &clip)
                    .map_err(|e| Error::Model(format!("{tdir}: vision tower: {e}")))
            },
        )?;
        Ok(LlavaModel {
            tower,
            projector,
            lm,
            vision: vision.clone(),
            layer_index,
            keep_cls: config.keep_cls,
            dtype,
            device: device.clone(),
        })
    }

    /// Tokens each image becomes.
    pub fn tokens_per_image(&self) -> usize {
        self.vision.num_patches() + usize::from(self.keep_cls)
    }

    /// Projected image features: `[n, 3, S, S]` pixels -> `[n, tokens_per_image, hidden]`.
    pub fn encode_images(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let pixels = pixels.to_dtype(self.dtype)?;
        let states = self.tower.output_hidden_states(&pixels)?;
        let feats = states[self.layer_index].clone();
        let feats = if self.keep_cls {
            feats
        } else {
            feats.i((.., 1..))?
        };
        let mut x = self.projector[0].forward(&feats)?;
        for layer in &self.projector[1..] {
            x = layer.forward(&x.gelu_erf()?)?;
        }
        Ok(x)
    }

    /// The input embeddings of a prompt: `chunks[0]`, image 0's features, `chunks[1]`, ...
    /// (`chunks.len() == n_images + 1`). Returns `[1, len, hidden]`.
    pub fn embed(
        &self,
        chunks: &[Vec<u32>],
        images: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let mut parts = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 {
                let img = images
                    .ok_or_else(|| candle_core::Error::Msg("image features missing".into()))?
                    .get(i - 1)?;
                parts.push(img);
            }
            if !chunk.is_empty() {
                let ids = Tensor::new(chunk.as_slice(), &self.device)?;
                parts.push(self.lm.embed(&ids)?);
            }
        }
        let parts = parts
            .iter()
            .map(|p| p.to_dtype(self.lm_dtype()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)?.unsqueeze(0)
    }

    fn lm_dtype(&self) -> DType {
        self.lm.dtype()
    }

    /// What quantization made of the language model's linear weights.
    pub fn quant_stats(&self) -> QuantStats {
        self.lm.quant_stats()
    }

    /// A fresh KV cache.
    pub fn cache(&self) -> LmCache {
        self.lm.cache()
    }

    /// Runs `[1, n, hidden]` embeddings at position `pos`; the last position's logits (f32).
    pub fn forward(
        &self,
        embeds: &Tensor,
        pos: usize,
        cache: &mut LmCache,
    ) -> candle_core::Result<Tensor> {
        self.lm.forward(embeds, pos, cache)
    }
}

/// A weight source of negative zeros, for measuring speed and memory at a real model's size
/// without its checkpoint. `-0.0` rather than `0.0`: a zero-filled buffer comes from the
/// allocator as untouched zero pages that are not resident until written, which would hide the
/// memory a real model takes; `-0.0` has a non-zero bit pattern, so every page is written.
struct NegZeros;

impl candle_nn::var_builder::SimpleBackend for NegZeros {
    fn get(
        &self,
        s: candle_core::Shape,
        _: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = s.elem_count();
        Tensor::from_vec(vec![-0.0f32; n], s, dev)?.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("zero weights: `{name}` has no known shape")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

impl LlavaModel {
    /// A model of the given sizes with every weight zero (a benchmark's stand-in for a
    /// checkpoint that is not at hand): same tensors, same arithmetic, same memory.
    pub fn zero_weights(
        config: &LlavaConfig,
        vision: &VisionConfig,
        dtype: DType,
        quantize: Quantize,
        device: &Device,
    ) -> Result<Self> {
        let err = |e: candle_core::Error| Error::Model(format!("zero-weight model: {e}"));
        let vb = |dt| VarBuilder::from_backend(Box::new(NegZeros), dt, device.clone());
        let text = &config.text;
        let depth = match config.projector {
            Projector::Linear => 1,
            Projector::MlpGelu(d) => d,
        };
        let mut projector = Vec::new();
        for i in 0..depth {
            let fan_in = if i == 0 {
                vision.hidden_size
            } else {
                text.hidden_size
            };
            let p = vb(dtype);
            let w = p.get((text.hidden_size, fan_in), "w").map_err(err)?;
            let b = p.get(text.hidden_size, "b").map_err(err)?;
            projector.push(candle_nn::Linear::new(w, Some(b)));
        }
        let lm_dtype = if quantize == Quantize::None {
            dtype
        } else {
            DType::F32
        };
        let lm = Lm::load(text, vb(lm_dtype), quantize).map_err(err)?;
        let tower = ClipVisionTransformer::new(vb(dtype).pp("vision_model"), &vision.to_candle())
            .map_err(err)?;
        Ok(LlavaModel {
            tower,
            projector,
            lm,
            vision: vision.clone(),
            layer_index: config.candle_layer_index(vision)?,
            keep_cls: config.keep_cls,
            dtype,
            device: device.clone(),
        })
    }
}
