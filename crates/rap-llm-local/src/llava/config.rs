//! LLaVA-1.5 configuration, read from either checkpoint layout into one form.
//!
//! - llava-hf (`LlavaForConditionalGeneration`): `config.json` with `text_config` and
//!   `vision_config` (missing keys take transformers' `LlamaConfig` / `Phi3Config` /
//!   `CLIPVisionConfig` defaults, as the published llava-hf configs rely on),
//!   `vision_feature_layer`, `vision_feature_select_strategy`, `projector_hidden_act`.
//! - original LLaVA (`LlavaLlamaForCausalLM`, llava-v1.5; `LlavaPhiForCausalLM`, LLaVA-pp's
//!   Phi-3 variant that RAP-Phi3-mini uses): a flat Llama or Phi-3 config plus `mm_*` keys; the
//!   CLIP tower's own config comes from its folder (`mm_vision_tower`), see
//!   [`crate::llava::weights`].
//!
//! The language model's family ([`LmFamily`]) comes from `model_type` (`text_config.model_type`
//! for llava-hf: `llama` or `phi3`; `llava_llama` or `llava_phi` for the original layout).
//!
//! Everything is read from `serde_json::Value` with errors that name the file and the key.

use candle_transformers::models::clip::text_model::Activation;
use candle_transformers::models::clip::vision_model::ClipVisionConfig;
use rap_core::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Which checkpoint layout a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// llava-hf: `LlavaForConditionalGeneration`.
    Hf,
    /// The original LLaVA repository's `LlavaLlamaForCausalLM` (llava-v1.5).
    Original,
}

/// The multimodal projector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projector {
    /// One linear layer (`linear`).
    Linear,
    /// `mlp{depth}x_gelu`: linear, then (GELU, linear) `depth - 1` times.
    MlpGelu(usize),
}

/// Which decoder family the language model is (from the config's `model_type`, never from
/// the folder's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmFamily {
    /// Llama / Vicuna (`llama`, `llava_llama`, `llava`): RAP-LLaVA-13b.
    Llama,
    /// Phi-3 (`phi3`, `llava_phi`): fused `qkv_proj` and `gate_up_proj`; RAP-Phi3-mini.
    Phi3,
}

/// The RoPE variant.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE with `rope_theta`.
    None,
    /// Phi-3's LongRoPE (`longrope`, `su`): per-frequency factors and an attention factor.
    /// Only the short factors are used: the context is capped at
    /// `original_max_position_embeddings`, where transformers uses them too.
    LongRope {
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        original_max_position_embeddings: usize,
        /// The configured (long) context, which sets the attention factor.
        max_position_embeddings: usize,
    },
}

/// The language model's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub family: LmFamily,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// The usable context (for LongRoPE: `original_max_position_embeddings`).
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    /// Keys a position attends to at most (Phi-3-mini: 2047), as transformers' masks.
    pub sliding_window: Option<usize>,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl TextConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Weights in the language model (embeddings and LM head included).
    pub fn parameter_count(&self) -> u64 {
        let (h, i, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let kv = (self.head_dim() * self.num_key_value_heads) as u64;
        let layer = h * (h + 2 * kv) + h * h + 3 * h * i + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + head + h + self.num_hidden_layers as u64 * layer
    }

    /// Phi-3-mini-4k-instruct's language model (RAP-Phi3-mini's).
    pub fn phi3_mini_4k() -> Self {
        TextConfig {
            family: LmFamily::Phi3,
            hidden_size: 3072,
            intermediate_size: 8192,
            vocab_size: 32064,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 32,
            max_position_embeddings: 4096,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            sliding_window: Some(2047),
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![32000, 32007],
        }
    }

    /// Vicuna-13B v1.5's (RAP-LLaVA-13b's).
    pub fn vicuna_13b() -> Self {
        TextConfig {
            family: LmFamily::Llama,
            hidden_size: 5120,
            intermediate_size: 13824,
            vocab_size: 32000,
            num_hidden_layers: 40,
            num_attention_heads: 40,
            num_key_value_heads: 40,
            max_position_embeddings: 4096,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            sliding_window: None,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }
}

/// The CLIP vision tower's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
}

impl VisionConfig {
    /// openai/clip-vit-large-patch14-336, LLaVA-1.5's tower.
    pub fn clip_vit_large_patch14_336() -> Self {
        VisionConfig {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            image_size: 336,
            patch_size: 14,
        }
    }

    /// Image tokens per image (the CLS token dropped).
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    pub(crate) fn to_candle(&self) -> ClipVisionConfig {
        ClipVisionConfig {
            embed_dim: self.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            projection_dim: self.hidden_size,
            num_channels: 3,
            image_size: self.image_size,
            patch_size: self.patch_size,
        }
    }

    /// Reads a CLIP vision config: a `CLIPConfig` (its `vision_config`), a `CLIPVisionConfig`
    /// file, or llava-hf's `vision_config` object.
    pub(crate) fn from_value(v: &Value, file: &Path) -> Result<Self> {
        match v.get("vision_config") {
            Some(inner) => Self::read(inner, file, "vision_config."),
            None => Self::read(v, file, ""),
        }
    }

    fn read(v: &Value, file: &Path, prefix: &str) -> Result<Self> {
        let r = Reader { v, file, prefix };
        if let Some(mt) = r.opt_str("model_type")? {
            if !mt.starts_with("clip") {
                return Err(r.bad(
                    "model_type",
                    &format!("is `{mt}`; only CLIP vision towers are supported"),
                ));
            }
        }
        let act = r.opt_str("hidden_act")?.unwrap_or("quick_gelu");
        if act != "quick_gelu" {
            return Err(r.bad(
                "hidden_act",
                &format!("is `{act}`; candle's CLIP tower implements only quick_gelu"),
            ));
        }
        if r.usize_or("num_channels", 3)? != 3 {
            return Err(r.bad("num_channels", "is not 3 (RGB)"));
        }
        let c = VisionConfig {
            hidden_size: r.usize_or("hidden_size", 768)?,
            intermediate_size: r.usize_or("intermediate_size", 3072)?,
            num_hidden_layers: r.usize_or("num_hidden_layers", 12)?,
            num_attention_heads: r.usize_or("num_attention_heads", 12)?,
            image_size: r.usize_or("image_size", 224)?,
            patch_size: r.usize_or("patch_size", 32)?,
        };
        let eps = r.f64_or("layer_norm_eps", 1e-5)?;
        if (eps - 1e-5).abs() > 1e-12 {
            return Err(r.bad(
                "layer_norm_eps",
                "is not 1e-5, the value candle's CLIP tower uses",
            ));
        }
        if !c.hidden_size.is_multiple_of(c.num_attention_heads)
            || c.patch_size == 0
            || !c.image_size.is_multiple_of(c.patch_size)
            || c.num_hidden_layers < 2
        {
            return Err(Error::Model(format!(
                "{}: inconsistent vision config {c:?}",
                file.display()
            )));
        }
        Ok(c)
    }
}

/// Everything needed to build the model, from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaConfig {
    pub layout: Layout,
    pub text: TextConfig,
    /// `None` for the original layout until the tower's folder is found.
    pub vision: Option<VisionConfig>,
    /// Index into the tower's hidden states (embeddings output first), e.g. -2.
    pub select_layer: isize,
    /// Keep the CLS token's feature (`full` / `cls_patch`); LLaVA-1.5 drops it.
    pub keep_cls: bool,
    pub projector: Projector,
    /// Whether images are padded to a square with the mean colour first (`expand2square`).
    pub pad_to_square: bool,
    /// The original layout's `mm_vision_tower` (a hub name or a path).
    pub mm_vision_tower: Option<String>,
    /// The original layout's `mm_hidden_size` (checked against the tower).
    pub mm_hidden_size: Option<usize>,
    /// Whether the projector's linear layers have biases.
    pub projector_bias: bool,
}

pub(crate) struct Reader<'a> {
    pub v: &'a Value,
    pub file: &'a Path,
    pub prefix: &'a str,
}

impl Reader<'_> {
    pub fn bad(&self, key: &str, what: &str) -> Error {
        Error::Model(format!(
            "{}: `{}{key}` {what}",
            self.file.display(),
            self.prefix
        ))
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.v.get(key).filter(|v| !v.is_null())
    }
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.bad(key, "is not a non-negative integer")),
        }
    }
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        let n = self.opt_usize(key)?.unwrap_or(default);
        if n == 0 {
            return Err(self.bad(key, "is zero"));
        }
        Ok(n)
    }
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.bad(key, "is not an integer")),
        }
    }
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| self.bad(key, "is not a positive number")),
        }
    }
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(key, "is not a string")),
        }
    }
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(key, "is not a boolean")),
        }
    }
    /// An id or a list of ids (`eos_token_id`).
    pub fn ids(&self, key: &str) -> Result<Vec<u32>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| self.bad(key, "holds a non-id"))
                })
                .collect(),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| vec![n])
                .ok_or_else(|| self.bad(key, "is not a token id")),
        }
    }
}

/// Reads and parses a JSON file, naming it in errors.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Model(format!("{}: not valid JSON: {e}", path.display())))
}

/// Language-model hyper-parameters; missing keys take transformers' `LlamaConfig` or
/// `Phi3Config` defaults. `default_family` applies when the config has no `model_type`.
fn text_config(r: &Reader, default_family: LmFamily) -> Result<TextConfig> {
    let family = match r.opt_str("model_type")? {
        None => default_family,
        Some("llama" | "llava_llama" | "llava") => LmFamily::Llama,
        Some("phi3" | "llava_phi" | "llava_phi3") => LmFamily::Phi3,
        Some(mt) => {
            return Err(r.bad(
                "model_type",
                &format!("is `{mt}`; supported language models: Llama (Vicuna) and Phi-3"),
            ))
        }
    };
    let phi3 = family == LmFamily::Phi3;
    if let Some(act) = r.opt_str("hidden_act")? {
        if act != "silu" {
            return Err(r.bad("hidden_act", &format!("is `{act}`, not silu")));
        }
    }
    for key in ["attention_bias", "mlp_bias"] {
        if r.opt_bool(key)? == Some(true) {
            return Err(r.bad(
                key,
                "is true; linear biases in the language model are not supported",
            ));
        }
    }
    if let Some(f) = r.get("partial_rotary_factor").and_then(Value::as_f64) {
        if f != 1.0 {
            return Err(r.bad(
                "partial_rotary_factor",
                "is not 1; partial RoPE is not supported",
            ));
        }
    }
    let max_pos = r.usize_or("max_position_embeddings", if phi3 { 4096 } else { 2048 })?;
    let rope_params = r.get("rope_parameters").or_else(|| r.get("rope_scaling"));
    let mut rope_theta = r.f64_or("rope_theta", 10000.0)?;
    let mut rope_scaling = RopeScaling::None;
    let mut context = max_pos;
    if let Some(p) = rope_params {
        let kind = p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        if let Some(t) = p.get("rope_theta").and_then(Value::as_f64) {
            rope_theta = t;
        }
        if let Some(f) = p.get("partial_rotary_factor").and_then(Value::as_f64) {
            if f != 1.0 {
                return Err(r.bad(
                    "rope_parameters.partial_rotary_factor",
                    "is not 1; partial RoPE is not supported",
                ));
            }
        }
        match kind {
            "default" => {}
            "longrope" | "su" if phi3 => {
                let orig = r.usize_or("original_max_position_embeddings", 4096)?;
                let factors = |key: &str| -> Result<Vec<f64>> {
                    p.get(key)
                        .and_then(Value::as_array)
                        .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                        .filter(|f| f.iter().all(|x| x.is_finite() && *x > 0.0))
                        .ok_or_else(|| {
                            r.bad(
                                &format!("rope_scaling.{key}"),
                                "is not a list of positive numbers",
                            )
                        })
                };
                rope_scaling = RopeScaling::LongRope {
                    short_factor: factors("short_factor")?,
                    long_factor: factors("long_factor")?,
                    original_max_position_embeddings: orig,
                    max_position_embeddings: max_pos,
                };
                context = context.min(orig);
            }
            other => {
                return Err(r.bad(
                    "rope_scaling",
                    &format!("is `{other}`; supported: plain RoPE, and LongRoPE for Phi-3"),
                ))
            }
        }
    }
    let hidden_size = r.usize_or("hidden_size", if phi3 { 3072 } else { 4096 })?;
    let heads = r.usize_or("num_attention_heads", 32)?;
    let kv = r.usize_or("num_key_value_heads", heads)?;
    if hidden_size % heads != 0 || heads % kv != 0 || (hidden_size / heads) % 2 != 0 {
        return Err(r.bad(
            "num_attention_heads",
            &format!("({heads}) does not divide hidden_size {hidden_size} into even heads, or into {kv} KV heads"),
        ));
    }
    if let Some(hd) = r.opt_usize("head_dim")? {
        if hd != hidden_size / heads {
            return Err(r.bad(
                "head_dim",
                &format!("is {hd}, not hidden_size / num_attention_heads"),
            ));
        }
    }
    if let RopeScaling::LongRope {
        short_factor,
        long_factor,
        ..
    } = &rope_scaling
    {
        let half = hidden_size / heads / 2;
        if short_factor.len() != half || long_factor.len() != half {
            return Err(r.bad(
                "rope_scaling",
                &format!("factors are not {half} long (half a head)"),
            ));
        }
    }
    let sliding_window = match r.opt_usize("sliding_window")? {
        Some(0) => return Err(r.bad("sliding_window", "is zero")),
        w => w,
    };
    let mut eos = r.ids("eos_token_id")?;
    if eos.is_empty() {
        eos.push(if phi3 { 32000 } else { 2 });
    }
    Ok(TextConfig {
        family,
        hidden_size,
        intermediate_size: r.usize_or("intermediate_size", if phi3 { 8192 } else { 11008 })?,
        vocab_size: r.usize_or("vocab_size", if phi3 { 32064 } else { 32000 })?,
        num_hidden_layers: r.usize_or("num_hidden_layers", 32)?,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        max_position_embeddings: context,
        rms_norm_eps: r.f64_or("rms_norm_eps", if phi3 { 1e-5 } else { 1e-6 })?,
        rope_theta: rope_theta as f32,
        rope_scaling,
        sliding_window,
        tie_word_embeddings: r.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        bos_token_id: r.ids("bos_token_id")?.first().copied().or(Some(1)),
        eos_token_ids: eos,
    })
}

fn projector_kind(r: &Reader, key: &str, name: &str) -> Result<Projector> {
    if name == "linear" {
        return Ok(Projector::Linear);
    }
    if let Some(depth) = name
        .strip_prefix("mlp")
        .and_then(|s| s.strip_suffix("x_gelu"))
        .and_then(|d| d.parse::<usize>().ok())
        .filter(|d| (1..=8).contains(d))
    {
        return Ok(Projector::MlpGelu(depth));
    }
    Err(r.bad(
        key,
        &format!("is `{name}`; supported: linear, mlpNx_gelu (LLaVA-1.5: mlp2x_gelu)"),
    ))
}

impl LlavaConfig {
    /// Reads `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let file: PathBuf = dir.join("config.json");
        if !file.is_file() {
            return Err(Error::Model(format!(
                "{}: no config.json; expected a LLaVA checkpoint folder (llava-hf or original LLaVA layout)",
                dir.display()
            )));
        }
        let v = read_json(&file)?;
        if !v.is_object() {
            return Err(Error::Model(format!(
                "{}: not a JSON object",
                file.display()
            )));
        }
        Self::from_value(&v, &file)
    }

    /// Reads a parsed `config.json`; `file` names it in errors.
    pub fn from_value(v: &Value, file: &Path) -> Result<Self> {
        let top = Reader {
            v,
            file,
            prefix: "",
        };
        let model_type = top.opt_str("model_type")?.unwrap_or("");
        if v.get("text_config").is_some() || model_type == "llava" {
            let tv = v
                .get("text_config")
                .ok_or_else(|| top.bad("text_config", "is missing"))?;
            let text = text_config(
                &Reader {
                    v: tv,
                    file,
                    prefix: "text_config.",
                },
                LmFamily::Llama,
            )?;
            let vv = v
                .get("vision_config")
                .ok_or_else(|| top.bad("vision_config", "is missing"))?;
            let vision = VisionConfig::read(vv, file, "vision_config.")?;
            let select_layer = match v.get("vision_feature_layer") {
                None | Some(Value::Null) => -2,
                Some(x) => x.as_i64().ok_or_else(|| {
                    top.bad(
                        "vision_feature_layer",
                        "is not one integer (several layers are not supported)",
                    )
                })? as isize,
            };
            let strategy = top
                .opt_str("vision_feature_select_strategy")?
                .unwrap_or("default");
            let keep_cls = match strategy {
                "default" => false,
                "full" => true,
                other => {
                    return Err(top.bad(
                        "vision_feature_select_strategy",
                        &format!("is `{other}`; expected default or full"),
                    ))
                }
            };
            let act = top.opt_str("projector_hidden_act")?.unwrap_or("gelu");
            if act != "gelu" {
                return Err(top.bad(
                    "projector_hidden_act",
                    &format!("is `{act}`; LLaVA-1.5's projector uses gelu"),
                ));
            }
            if v.get("image_grid_pinpoints").is_some() || model_type == "llava_next" {
                return Err(top.bad(
                    "image_grid_pinpoints",
                    "is set: LLaVA-NeXT (any-resolution) checkpoints are not supported, only LLaVA-1.5",
                ));
            }
            Ok(LlavaConfig {
                layout: Layout::Hf,
                text,
                vision: Some(vision),
                select_layer,
                keep_cls,
                projector: Projector::MlpGelu(2),
                // llava-hf configs do not record LLaVA-1.5's `image_aspect_ratio: pad`;
                // RAP-LLaVA was trained and evaluated with it.
                pad_to_square: true,
                mm_vision_tower: None,
                mm_hidden_size: None,
                projector_bias: top.opt_bool("multimodal_projector_bias")?.unwrap_or(true),
            })
        } else if v.get("mm_projector_type").is_some()
            || v.get("mm_vision_tower").is_some()
            || model_type.starts_with("llava")
        {
            let phi_arch = v
                .get("architectures")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("LlavaPhiForCausalLM")));
            let family = if phi_arch {
                LmFamily::Phi3
            } else {
                LmFamily::Llama
            };
            let text = text_config(&top, family)?;
            let projector_name = top.opt_str("mm_projector_type")?.unwrap_or("linear");
            let projector = projector_kind(&top, "mm_projector_type", projector_name)?;
            let feature = top.opt_str("mm_vision_select_feature")?.unwrap_or("patch");
            let keep_cls = match feature {
                "patch" => false,
                "cls_patch" => true,
                other => {
                    return Err(top.bad(
                        "mm_vision_select_feature",
                        &format!("is `{other}`; expected patch or cls_patch"),
                    ))
                }
            };
            if top.opt_bool("mm_use_im_start_end")? == Some(true) {
                return Err(top.bad(
                    "mm_use_im_start_end",
                    "is true; image start/end tokens are not supported (LLaVA-1.5 has none)",
                ));
            }
            let aspect = top.opt_str("image_aspect_ratio")?;
            if let Some(a) = aspect {
                if a.starts_with("anyres") {
                    return Err(top.bad(
                        "image_aspect_ratio",
                        "is anyres: LLaVA-NeXT checkpoints are not supported, only LLaVA-1.5",
                    ));
                }
            }
            Ok(LlavaConfig {
                layout: Layout::Original,
                text,
                vision: None,
                select_layer: top.opt_i64("mm_vision_select_layer")?.unwrap_or(-2) as isize,
                keep_cls,
                projector,
                pad_to_square: aspect == Some("pad"),
                mm_vision_tower: top.opt_str("mm_vision_tower")?.map(str::to_owned),
                mm_hidden_size: top.opt_usize("mm_hidden_size")?,
                projector_bias: true,
            })
        } else {
            Err(Error::Model(format!(
                "{}: neither a llava-hf config (LlavaForConditionalGeneration, with text_config and \
                 vision_config) nor an original LLaVA config (LlavaLlamaForCausalLM, with mm_* keys)",
                file.display()
            )))
        }
    }

    /// Which of the tower's outputs feeds the projector, as an index into candle's
    /// `output_hidden_states` (which, unlike transformers, has no embeddings entry).
    pub(crate) fn candle_layer_index(&self, vision: &VisionConfig) -> Result<usize> {
        let n = vision.num_hidden_layers as isize;
        // transformers' hidden_states: [embeddings, layer 1, ..., layer n].
        let h = if self.select_layer < 0 {
            n + 1 + self.select_layer
        } else {
            self.select_layer
        };
        if h < 1 || h > n {
            return Err(Error::Model(format!(
                "vision feature layer {} is outside the tower's {n} layers (the embeddings output is not supported)",
                self.select_layer
            )));
        }
        Ok(h as usize - 1)
    }
}
