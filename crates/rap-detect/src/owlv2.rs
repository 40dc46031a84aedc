//! OWLv2, the open-vocabulary detector (google/owlv2-base-patch16 and any other checkpoint in
//! the transformers `Owlv2ForObjectDetection` layout): boxes for free-text queries, so a
//! concept's category ("dog", "mug") can point at the region to retrieve, as in the paper.
//!
//! The model is CLIP with detection heads. The two towers are candle-transformers' CLIP
//! transformer stacks (`ClipEncoder`, `ClipTextTransformer`); the vision embeddings and layer
//! norms are built here because OWLv2 names its pre-norm `pre_layernorm` (CLIP's is
//! `pre_layrnorm`) and detection needs every token, not only the pooled one. Then, following
//! transformers' `Owlv2ForObjectDetection`:
//! - every token goes through `post_layernorm`; each patch token is multiplied by the class
//!   token and layer-normed again (`layer_norm`): the image features, one per patch;
//! - class head: `dense0` of the features, L2-normalised (+1e-6), dotted with the normalised
//!   projected text embeddings of the queries (pooled at the end-of-text token), then
//!   `(logit + logit_shift(f)) * (elu(logit_scale(f)) + 1)`;
//! - box head: a 3-layer MLP (exact GELU) plus the box bias of the patch's grid position
//!   (inverse sigmoid of its corner and of the patch size), through a sigmoid: (cx, cy, w, h)
//!   relative to the padded square;
//! - objectness head: the same MLP shape with one output.
//!
//! Preprocessing is `Owlv2ImageProcessor`'s (the PIL/scipy backend, which follows the original
//! implementation): rescale to [0, 1], pad to a square with zeros at the bottom and right, a
//! Gaussian blur with sigma (factor - 1) / 2 (scipy `gaussian_filter`, mirror edges, truncated
//! at 4 sigma), a bilinear zoom with pixel-centre alignment (scipy `zoom`, order 1,
//! `grid_mode`), clipped to the input's range, then normalised. scipy has no Rust counterpart
//! (image resizers use other kernels and edge rules), so the two steps are written here, in
//! f64 with f32 results between the passes as scipy stores them.

use candle_core::{DType, Device, IndexOp, Module, Tensor, D};
use candle_nn::{Conv2d, Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::clip::{
    text_model::{ClipEncoder, ClipTextTransformer},
    EncoderConfig,
};
use image::RgbImage;
use rap_core::{BoundingBox, Error, Result};
use rap_vision::clip::{tower_with_defaults, TextConfig, VisionConfig};
use rap_vision::hf::{config_err, encode_text, weights_err, HfFolder, CONFIG, PREPROCESSOR_CONFIG};
use rayon::prelude::*;
use std::path::Path;

/// OWLv2's text tower (a CLIP text tower) with transformers' `Owlv2TextConfig` defaults for
/// absent keys: 16 positions (CLIP's is 77).
fn text_defaults() -> TextConfig {
    TextConfig {
        vocab_size: 49408,
        hidden_size: 512,
        intermediate_size: 2048,
        num_hidden_layers: 12,
        num_attention_heads: 8,
        max_position_embeddings: 16,
        hidden_act: "quick_gelu".into(),
        layer_norm_eps: 1e-5,
        eos_token_id: 49407,
    }
}

/// OWLv2's vision tower (a CLIP vision tower) with transformers' `Owlv2VisionConfig`
/// defaults: 768-px images in 16-px patches (CLIP's: 224 and 32).
fn vision_defaults() -> VisionConfig {
    VisionConfig {
        hidden_size: 768,
        intermediate_size: 3072,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        num_channels: 3,
        image_size: 768,
        patch_size: 16,
        hidden_act: "quick_gelu".into(),
        layer_norm_eps: 1e-5,
        projection_dim: 512,
    }
}

fn d_projection() -> usize {
    512
}

/// An OWLv2 `config.json` (`model_type` "owlv2"); its two towers are read as CLIP's
/// ([`rap_vision::clip::TextConfig`], [`rap_vision::clip::VisionConfig`]) with OWLv2's
/// defaults.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub model_type: String,
    #[serde(default = "d_projection")]
    pub projection_dim: usize,
    pub text_config: Option<serde_json::Value>,
    pub vision_config: Option<serde_json::Value>,
}

// ---- preprocessing ----

/// Longest image edge preprocessed at full size (see [`Owlv2Preprocess::tensor_data`]).
const MAX_PADDED_SIDE: u32 = 4096;

/// `Owlv2ImageProcessor` of a `preprocessor_config.json`: rescale, pad to square, resize
/// (Gaussian anti-aliasing + bilinear zoom), normalise.
#[derive(Debug, Clone, PartialEq)]
pub struct Owlv2Preprocess {
    /// Output (width, height) when resizing.
    pub size: Option<(u32, u32)>,
    pub pad: bool,
    pub rescale: Option<f64>,
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum SizeField {
    Int(u32),
    Dict { height: u32, width: u32 },
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Triple {
    One(f32),
    Three([f32; 3]),
}

impl Triple {
    fn get(&self) -> [f32; 3] {
        match self {
            Triple::One(v) => [*v; 3],
            Triple::Three(v) => *v,
        }
    }
}

#[derive(serde::Deserialize)]
struct RawPreprocess {
    do_resize: Option<bool>,
    size: Option<SizeField>,
    do_pad: Option<bool>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Triple>,
    image_std: Option<Triple>,
}

/// transformers' `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`, the processor's defaults.
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl Owlv2Preprocess {
    /// Parses a `preprocessor_config.json` (transformers' defaults for absent keys: 960 x 960,
    /// padding, 1/255, CLIP's mean and std); the error says what is wrong.
    pub fn from_json(bytes: &[u8]) -> std::result::Result<Self, String> {
        let raw: RawPreprocess = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let size = if raw.do_resize.unwrap_or(true) {
            let (w, h) = match raw.size {
                None => (960, 960),
                Some(SizeField::Int(s)) => (s, s),
                Some(SizeField::Dict { height, width }) => (width, height),
            };
            if w == 0 || h == 0 || w > 4096 || h > 4096 {
                return Err(format!("a size of {w}x{h} is not usable"));
            }
            Some((w, h))
        } else {
            None
        };
        let rescale = if raw.do_rescale.unwrap_or(true) {
            let factor = raw.rescale_factor.unwrap_or(1.0 / 255.0);
            // A negative, zero or overflowing factor has no meaning (and inverted the range
            // the resized planes are clipped to).
            if !(factor > 0.0 && (255.0 * factor) < f32::MAX as f64) {
                return Err(format!(
                    "\"rescale_factor\" must be a positive finite number, not {factor}"
                ));
            }
            Some(factor)
        } else {
            None
        };
        let normalize = if raw.do_normalize.unwrap_or(true) {
            let m = raw.image_mean.map(|t| t.get()).unwrap_or(CLIP_MEAN);
            let s = raw.image_std.map(|t| t.get()).unwrap_or(CLIP_STD);
            if s.iter().any(|v| *v == 0.0 || !v.is_finite()) {
                return Err("\"image_std\" must be finite and non-zero".into());
            }
            Some((m, s))
        } else {
            None
        };
        Ok(Owlv2Preprocess {
            size,
            pad: raw.do_pad.unwrap_or(true),
            rescale,
            normalize,
        })
    }

    /// Reads the folder's `preprocessor_config.json`.
    pub fn from_folder(folder: &HfFolder) -> Result<Self> {
        let bytes = folder.read(PREPROCESSOR_CONFIG)?;
        Self::from_json(&bytes).map_err(|e| {
            Error::Model(format!(
                "{}: {e}",
                folder.path(PREPROCESSOR_CONFIG).display()
            ))
        })
    }

    /// The whole preprocessing: planar (CHW) f32 data and its (width, height).
    pub fn tensor_data(&self, img: &RgbImage) -> Result<(Vec<f32>, (u32, u32))> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(Error::invalid("the image is empty (0 pixels)"));
        }
        // The planes below are 12 bytes per pixel of the padded square: for a long thin image
        // that square is huge (a 1 x 70000 strip: 59 GB). Shrink such an image first so its
        // long edge is MAX_PADDED_SIDE; results differ from transformers' only for those.
        let long = w.max(h);
        if long > MAX_PADDED_SIDE {
            let scaled = |e: u32| ((e as u64 * MAX_PADDED_SIDE as u64) / long as u64).max(1) as u32;
            let shrunk = rap_image::resize(img, scaled(w), scaled(h), rap_image::Filter::Bilinear)?;
            return self.tensor_data(&shrunk);
        }
        // Rescale: float64 product stored as float32 (transformers' `rescale`).
        let scale = self.rescale.unwrap_or(1.0);
        let (pw, ph) = if self.pad {
            (w.max(h) as usize, w.max(h) as usize)
        } else {
            (w as usize, h as usize)
        };
        let mut planes: Vec<Vec<f32>> = (0..3)
            .map(|c| {
                let mut p = vec![0f32; pw * ph];
                for (x, y, px) in img.enumerate_pixels() {
                    p[y as usize * pw + x as usize] = (px.0[c] as f64 * scale) as f32;
                }
                p
            })
            .collect();
        let (mut ow, mut oh) = (pw, ph);
        if let Some((tw, th)) = self.size {
            let (tw, th) = (tw as usize, th as usize);
            planes = planes
                .into_par_iter()
                .map(|p| resize_plane(&p, pw, ph, tw, th))
                .collect();
            // `_clip_warp_output`: clipped to the range of the (padded) input, over all channels.
            let (lo, hi) = range_of(
                img,
                scale,
                self.pad && (pw != w as usize || ph != h as usize),
            );
            for p in &mut planes {
                for v in p.iter_mut() {
                    *v = v.clamp(lo, hi);
                }
            }
            (ow, oh) = (tw, th);
        }
        let mut out = Vec::with_capacity(3 * ow * oh);
        for (c, p) in planes.iter().enumerate() {
            match self.normalize {
                Some((m, s)) => out.extend(p.iter().map(|v| (v - m[c]) / s[c])),
                None => out.extend_from_slice(p),
            }
        }
        Ok((out, (ow as u32, oh as u32)))
    }

    /// One image as a (1, 3, H, W) tensor, on the CPU (the model moves it to its device).
    pub fn tensor(&self, img: &RgbImage) -> Result<Tensor> {
        let (data, (w, h)) = self.tensor_data(img)?;
        Tensor::from_vec(data, (1, 3, h as usize, w as usize), &Device::Cpu)
            .map_err(|e| Error::Model(format!("input tensor: {e}")))
    }
}

/// (min, max) of the rescaled image, with the padding's zero when there is padding.
fn range_of(img: &RgbImage, scale: f64, padded: bool) -> (f32, f32) {
    let (mut lo, mut hi) = (u8::MAX, u8::MIN);
    for v in img.as_raw() {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    let (mut lo, hi) = ((lo as f64 * scale) as f32, (hi as f64 * scale) as f32);
    if padded {
        lo = lo.min(0.0);
    }
    (lo, hi)
}

/// scipy.ndimage's "mirror" extension: d c b | a b c d | c b a.
fn mirror(i: i64, len: usize) -> usize {
    let n = len as i64;
    if n <= 1 {
        return 0;
    }
    let period = 2 * n - 2;
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

/// scikit-image's `resize` as transformers' Owlv2 processor calls it: Gaussian anti-aliasing
/// (when shrinking) then a bilinear zoom, for one channel of `w` x `h` to `tw` x `th`.
fn resize_plane(p: &[f32], w: usize, h: usize, tw: usize, th: usize) -> Vec<f32> {
    let fy = h as f64 / th as f64;
    let fx = w as f64 / tw as f64;
    // gaussian_filter: axis 0 (rows) then axis 1 (columns), each pass stored as f32.
    let mut p = p.to_vec();
    let sy = ((fy - 1.0) / 2.0).max(0.0);
    if sy > 1e-15 {
        p = gaussian_axis(&p, w, h, sy, true);
    }
    let sx = ((fx - 1.0) / 2.0).max(0.0);
    if sx > 1e-15 {
        p = gaussian_axis(&p, w, h, sx, false);
    }
    // zoom, order 1, grid_mode: input coordinate (o + 0.5) * (in / out) - 0.5, mirrored.
    let taps = |o: usize, n_in: usize, n_out: usize| -> (usize, usize, f64) {
        let zoom = n_in as f64 / n_out as f64;
        let mut c = (o as f64 + 0.5) * zoom - 0.5;
        let n = n_in as f64;
        if n_in <= 1 {
            c = 0.0;
        } else if c < 0.0 {
            let s2 = 2.0 * n - 2.0;
            c += s2 * ((-c / s2) as i64) as f64;
            c = if c <= 1.0 - n { c + s2 } else { -c };
        } else if c > n - 1.0 {
            let s2 = 2.0 * n - 2.0;
            c -= s2 * ((c / s2) as i64) as f64;
            if c > n - 1.0 {
                c = s2 - c;
            }
        }
        let start = c.floor();
        let t = c - start;
        let s = start as i64;
        (mirror(s, n_in), mirror(s + 1, n_in), t)
    };
    let xs: Vec<_> = (0..tw).map(|o| taps(o, w, tw)).collect();
    let mut out = vec![0f32; tw * th];
    out.par_chunks_mut(tw).enumerate().for_each(|(oy, row)| {
        let (y0, y1, ty) = taps(oy, h, th);
        for (ox, v) in row.iter_mut().enumerate() {
            let (x0, x1, tx) = xs[ox];
            let a = p[y0 * w + x0] as f64;
            let b = p[y0 * w + x1] as f64;
            let c = p[y1 * w + x0] as f64;
            let d = p[y1 * w + x1] as f64;
            *v = (a * (1.0 - ty) * (1.0 - tx)
                + b * (1.0 - ty) * tx
                + c * ty * (1.0 - tx)
                + d * ty * tx) as f32;
        }
    });
    out
}

/// scipy's `gaussian_filter1d` (truncate 4.0, mode "mirror") along rows (`vertical`) or columns.
fn gaussian_axis(p: &[f32], w: usize, h: usize, sigma: f64, vertical: bool) -> Vec<f32> {
    let radius = (4.0 * sigma + 0.5) as i64;
    let mut k: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    for v in &mut k {
        *v /= sum;
    }
    let mut out = vec![0f32; w * h];
    out.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        for (x, o) in row.iter_mut().enumerate() {
            let mut acc = 0f64;
            for (j, kv) in k.iter().enumerate() {
                let off = j as i64 - radius;
                let v = if vertical {
                    p[mirror(y as i64 + off, h) * w + x]
                } else {
                    p[y * w + mirror(x as i64 + off, w)]
                };
                acc += v as f64 * kv;
            }
            *o = acc as f32;
        }
    });
    out
}

// ---- the model ----

/// A 3-layer MLP head (`box_head`, `objectness_head`): dense, GELU, dense, GELU, dense.
struct Mlp {
    dense0: Linear,
    dense1: Linear,
    dense2: Linear,
}

impl Mlp {
    fn new(vb: VarBuilder, width: usize, out: usize) -> candle_core::Result<Self> {
        Ok(Mlp {
            dense0: candle_nn::linear(width, width, vb.pp("dense0"))?,
            dense1: candle_nn::linear(width, width, vb.pp("dense1"))?,
            dense2: candle_nn::linear(width, out, vb.pp("dense2"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.dense0.forward(xs)?.gelu_erf()?;
        let xs = self.dense1.forward(&xs)?.gelu_erf()?;
        self.dense2.forward(&xs)
    }
}

/// The raw outputs for one image (transformers' `Owlv2ObjectDetectionOutput`).
#[derive(Debug, Clone)]
pub struct Owlv2Output {
    /// Class logits, one row per patch (row-major over the grid), one column per query.
    pub logits: Vec<Vec<f32>>,
    /// Objectness logit per patch.
    pub objectness_logits: Vec<f32>,
    /// (cx, cy, w, h) per patch, relative to the padded square input.
    pub pred_boxes: Vec<[f32; 4]>,
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detection {
    /// The query it answers (index into the queries given).
    pub query: usize,
    /// sigmoid of the best class logit.
    pub score: f32,
    /// `[x1, y1, x2, y2]` in pixels of the original image.
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
}

/// Post-processing settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Boxes scoring at or below this are dropped (transformers' default threshold is 0.1).
    pub threshold: f32,
    /// A box overlapping a better kept box for the same query by more than this IoU is
    /// dropped; `None`: no suppression (transformers' post-processing has none).
    pub nms_iou: Option<f32>,
    /// At most this many detections.
    pub max_detections: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            threshold: 0.1,
            nms_iou: Some(0.3),
            max_detections: 20,
        }
    }
}

/// An OWLv2 checkpoint.
pub struct Owlv2 {
    preprocess: Owlv2Preprocess,
    tokenizer: tokenizers::Tokenizer,
    // vision tower
    patch_embedding: Conv2d,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layernorm: LayerNorm,
    vision_encoder: ClipEncoder,
    post_layernorm: LayerNorm,
    // text tower
    text: ClipTextTransformer,
    text_projection: Linear,
    max_text_len: usize,
    // heads
    layer_norm: LayerNorm,
    class_dense0: Linear,
    logit_shift: Linear,
    logit_scale: Linear,
    box_head: Mlp,
    objectness_head: Mlp,
    box_bias: Tensor,
    image_size: usize,
    grid: usize,
    device: Device,
}

impl std::fmt::Debug for Owlv2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owlv2")
            .field("image_size", &self.image_size)
            .field("grid", &self.grid)
            .finish()
    }
}

/// transformers' `compute_box_bias`: inverse sigmoid of each patch's bottom-right grid corner
/// (x, y) and of the patch size (w, h), in f32 as torch computes it. (grid*grid, 4).
fn box_bias(grid: usize) -> Vec<f32> {
    let inv = |v: f32| (v + 1e-4).ln() - (-v + 1e-4).ln_1p();
    let size = inv(1.0 / grid as f32);
    let mut out = Vec::with_capacity(grid * grid * 4);
    for y in 1..=grid {
        for x in 1..=grid {
            let cx = (x as f32 / grid as f32).clamp(0.0, 1.0);
            let cy = (y as f32 / grid as f32).clamp(0.0, 1.0);
            out.extend([inv(cx), inv(cy), size, size]);
        }
    }
    out
}

impl Owlv2 {
    /// Loads an OWLv2 folder (config.json, preprocessor_config.json, model.safetensors,
    /// tokenizer.json) onto the CPU (`load_on` for another device).
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_folder(&HfFolder::open(dir)?)
    }

    /// [`Owlv2::load`] onto `device`.
    pub fn load_on(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_folder(&HfFolder::open(dir)?.with_device(device.clone()))
    }

    /// [`Owlv2::load`] on an opened folder (onto its [`HfFolder::device`]).
    pub fn load_folder(folder: &HfFolder) -> Result<Self> {
        // The device is resolved once, so every part of the model lands on the same one.
        let folder = &folder.clone().with_device(folder.device()?);
        let cfg: Config = folder.json(CONFIG)?;
        if cfg.model_type != "owlv2" {
            return Err(config_err(
                folder,
                format!(
                    "model_type \"{}\" is not an OWLv2 detector (\"owlv2\", Owlv2ForObjectDetection)",
                    cfg.model_type
                ),
            ));
        }
        let section = |value: &Option<serde_json::Value>, name: &str| {
            value
                .clone()
                .ok_or_else(|| config_err(folder, format!("has no \"{name}\"")))
        };
        let t: TextConfig = tower_with_defaults(
            folder,
            "text_config",
            &section(&cfg.text_config, "text_config")?,
            &text_defaults(),
        )?;
        let v: VisionConfig = tower_with_defaults(
            folder,
            "vision_config",
            &section(&cfg.vision_config, "vision_config")?,
            &vision_defaults(),
        )?;
        t.check(folder, "text_config")?;
        v.check(folder, "vision_config")?;
        if cfg.projection_dim != t.hidden_size {
            return Err(config_err(
                folder,
                format!(
                    "projection_dim {} differs from text_config.hidden_size {} (the class head \
                     compares the two)",
                    cfg.projection_dim, t.hidden_size
                ),
            ));
        }
        let preprocess = Owlv2Preprocess::from_folder(folder)?;
        let want = (v.image_size as u32, v.image_size as u32);
        if preprocess.size != Some(want) || !preprocess.pad {
            return Err(Error::Model(format!(
                "{}: must pad and resize to {}x{} (the image_size of {})",
                folder.path(PREPROCESSOR_CONFIG).display(),
                want.0,
                want.1,
                folder.path(CONFIG).display()
            )));
        }
        let tokenizer = folder.tokenizer()?;
        let vb = folder.weights()?;
        for name in [
            "owlv2.vision_model.embeddings.class_embedding",
            "box_head.dense0.weight",
            "class_head.logit_shift.weight",
        ] {
            if !vb.contains_tensor(name) {
                return Err(Error::Model(format!(
                    "{}: has no tensor {name} (not an Owlv2ForObjectDetection checkpoint?)",
                    folder.path(rap_vision::hf::WEIGHTS).display()
                )));
            }
        }
        let werr = |e| weights_err(folder, e);
        let grid = v.image_size / v.patch_size;
        let vis = vb.pp("owlv2.vision_model");
        let emb = vis.pp("embeddings");
        let patch_embedding = candle_nn::conv2d_no_bias(
            v.num_channels,
            v.hidden_size,
            v.patch_size,
            candle_nn::Conv2dConfig {
                stride: v.patch_size,
                ..Default::default()
            },
            emb.pp("patch_embedding"),
        )
        .map_err(werr)?;
        let class_embedding = emb.get(v.hidden_size, "class_embedding").map_err(werr)?;
        let position_embedding: Embedding =
            candle_nn::embedding(grid * grid + 1, v.hidden_size, emb.pp("position_embedding"))
                .map_err(werr)?;
        let position_embedding = position_embedding.embeddings().clone();
        let ln = |vb: VarBuilder, eps: f64| candle_nn::layer_norm(v.hidden_size, eps, vb);
        let pre_layernorm = ln(vis.pp("pre_layernorm"), v.layer_norm_eps).map_err(werr)?;
        let post_layernorm = ln(vis.pp("post_layernorm"), v.layer_norm_eps).map_err(werr)?;
        let vision_cfg = v.to_candle(cfg.projection_dim);
        let vision_encoder =
            ClipEncoder::new(vis.pp("encoder"), &EncoderConfig::Vision(vision_cfg))
                .map_err(werr)?;
        let text_cfg = t.to_candle(cfg.projection_dim);
        let text = ClipTextTransformer::new(vb.pp("owlv2.text_model"), &text_cfg).map_err(werr)?;
        let text_projection = candle_nn::linear_no_bias(
            t.hidden_size,
            cfg.projection_dim,
            vb.pp("owlv2.text_projection"),
        )
        .map_err(werr)?;
        let layer_norm = ln(vb.pp("layer_norm"), v.layer_norm_eps).map_err(werr)?;
        let ch = vb.pp("class_head");
        let class_dense0 =
            candle_nn::linear(v.hidden_size, t.hidden_size, ch.pp("dense0")).map_err(werr)?;
        let logit_shift =
            candle_nn::linear(v.hidden_size, 1, ch.pp("logit_shift")).map_err(werr)?;
        let logit_scale =
            candle_nn::linear(v.hidden_size, 1, ch.pp("logit_scale")).map_err(werr)?;
        let box_head = Mlp::new(vb.pp("box_head"), v.hidden_size, 4).map_err(werr)?;
        let objectness_head = Mlp::new(vb.pp("objectness_head"), v.hidden_size, 1).map_err(werr)?;
        let box_bias = Tensor::from_vec(box_bias(grid), (grid * grid, 4), vb.device())
            .map_err(|e| Error::Model(format!("box bias: {e}")))?;
        Ok(Owlv2 {
            preprocess,
            tokenizer,
            patch_embedding,
            class_embedding,
            position_embedding,
            pre_layernorm,
            vision_encoder,
            post_layernorm,
            text,
            text_projection,
            max_text_len: t.max_position_embeddings,
            layer_norm,
            class_dense0,
            logit_shift,
            logit_scale,
            box_head,
            objectness_head,
            box_bias,
            image_size: v.image_size,
            grid,
            device: vb.device().clone(),
        })
    }

    pub fn preprocess(&self) -> &Owlv2Preprocess {
        &self.preprocess
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The square input size (pixels).
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Token ids of one query (with the tokenizer's start and end tokens, truncated to the
    /// text tower's 16 positions).
    pub fn query_ids(&self, query: &str) -> Result<Vec<u32>> {
        let ids = encode_text(&self.tokenizer, query, self.max_text_len)?;
        if ids.is_empty() {
            return Err(Error::invalid(format!("the query {query:?} has no tokens")));
        }
        Ok(ids)
    }

    /// The queries' projected, L2-normalised text embeddings: (Q, projection_dim).
    pub fn query_embeddings(&self, queries: &[&str]) -> Result<Tensor> {
        if queries.is_empty() {
            return Err(Error::invalid("OWLv2 needs at least one text query"));
        }
        let err = |e: candle_core::Error| Error::Model(format!("owlv2 text tower: {e}"));
        let mut rows = Vec::with_capacity(queries.len());
        for q in queries {
            if q.trim().is_empty() {
                return Err(Error::invalid("a query is empty"));
            }
            let ids = self.query_ids(q)?;
            // transformers pools at the largest id: the end-of-text token.
            let max = ids.iter().copied().max().unwrap_or(0);
            let pos = ids.iter().position(|&i| i == max).unwrap_or(0);
            let input = Tensor::new(ids.as_slice(), &self.device)
                .and_then(|x| x.unsqueeze(0))
                .map_err(err)?;
            // Causal attention: the pooled token sees nothing after it, so the processor's
            // padding to 16 tokens changes nothing and is left out.
            let hidden = self
                .text
                .forward_with_mask(&input, usize::MAX)
                .map_err(err)?;
            let e = hidden
                .i((.., pos, ..))
                .and_then(|h| self.text_projection.forward(&h))
                .map_err(err)?;
            rows.push(e);
        }
        let e = Tensor::cat(&rows, 0).map_err(err)?;
        e.sqr()
            .and_then(|s| s.sum_keepdim(D::Minus1))
            .and_then(|s| s.sqrt())
            .and_then(|n| e.broadcast_div(&n))
            .map_err(err)
    }

    /// The image features of a preprocessed batch (B, 3, S, S): (B, patches, hidden).
    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let b = pixels.dim(0)?;
        let patches = self
            .patch_embedding
            .forward(pixels)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let d = self.class_embedding.dim(0)?;
        let class = self.class_embedding.reshape((1, 1, d))?.expand((b, 1, d))?;
        let xs = Tensor::cat(&[class, patches], 1)?
            .broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        let xs = self.pre_layernorm.forward(&xs)?;
        let xs = self.vision_encoder.forward(&xs, None)?;
        let xs = self.post_layernorm.forward(&xs)?;
        let n = xs.dim(1)? - 1;
        let class = xs.narrow(1, 0, 1)?;
        let patches = xs.narrow(1, 1, n)?.broadcast_mul(&class)?;
        self.layer_norm.forward(&patches)
    }

    /// The model on a preprocessed batch (B, 3, S, S) and query embeddings (Q, D) from
    /// [`Owlv2::query_embeddings`], on any device (moved to the model's once): one output per
    /// image.
    pub fn forward(&self, pixels: &Tensor, queries: &Tensor) -> Result<Vec<Owlv2Output>> {
        let dims = pixels.dims();
        if dims.len() != 4
            || dims[1] != 3
            || dims[2] != self.image_size
            || dims[3] != self.image_size
        {
            return Err(Error::invalid(format!(
                "OWLv2 input must be (N, 3, {s}, {s}), got {dims:?}",
                s = self.image_size
            )));
        }
        let err = |e: candle_core::Error| Error::Model(format!("owlv2 forward: {e}"));
        (|| -> candle_core::Result<Vec<Owlv2Output>> {
            let pixels = pixels.to_device(&self.device)?;
            let queries = queries.to_device(&self.device)?;
            let queries = &queries;
            let feats = self.image_features(&pixels)?;
            // Class head.
            let cls = self.class_dense0.forward(&feats)?;
            let cls = cls.broadcast_div(&(cls.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + 1e-6)?)?;
            let q =
                queries.broadcast_div(&(queries.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + 1e-6)?)?;
            let logits = cls.broadcast_matmul(&q.t()?)?;
            let shift = self.logit_shift.forward(&feats)?;
            let scale = (self.logit_scale.forward(&feats)?.elu(1.0)? + 1.0)?;
            let logits = logits.broadcast_add(&shift)?.broadcast_mul(&scale)?;
            // Objectness and boxes.
            let objectness = self.objectness_head.forward(&feats)?.squeeze(D::Minus1)?;
            let boxes = candle_nn::ops::sigmoid(
                &self
                    .box_head
                    .forward(&feats)?
                    .broadcast_add(&self.box_bias)?,
            )?;
            let (logits, objectness, boxes) = (
                logits.to_dtype(DType::F32)?.to_vec3::<f32>()?,
                objectness.to_vec2::<f32>()?,
                boxes.to_vec3::<f32>()?,
            );
            Ok(logits
                .into_iter()
                .zip(objectness)
                .zip(boxes)
                .map(|((logits, objectness_logits), boxes)| Owlv2Output {
                    logits,
                    objectness_logits,
                    pred_boxes: boxes
                        .into_iter()
                        .map(|b| [b[0], b[1], b[2], b[3]])
                        .collect(),
                })
                .collect())
        })()
        .map_err(err)
    }

    /// Boxes in `image` for the text `queries`, best first.
    pub fn detect(
        &self,
        image: &RgbImage,
        queries: &[&str],
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>> {
        let q = self.query_embeddings(queries)?;
        let input = self.preprocess.tensor(image)?;
        let out = self.forward(&input, &q)?.remove(0);
        let all = post_process(&out, image.width(), image.height(), opts.threshold);
        Ok(finish(all, image.width(), image.height(), opts))
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// transformers' `post_process_object_detection` for one image of `width` x `height`: per
/// patch, the best query (sigmoid of its logit) and the box in image pixels (the input was
/// padded to a square, so both axes scale by the longer side); kept when the score is above
/// `threshold`. In patch order, boxes not clipped.
pub fn post_process(out: &Owlv2Output, width: u32, height: u32, threshold: f32) -> Vec<Detection> {
    let side = width.max(height) as f32;
    let mut dets = Vec::new();
    for (row, b) in out.logits.iter().zip(&out.pred_boxes) {
        let (mut best, mut query) = (f32::NEG_INFINITY, 0);
        for (i, &l) in row.iter().enumerate() {
            if l > best {
                (best, query) = (l, i);
            }
        }
        let score = sigmoid(best);
        if score > threshold {
            let [cx, cy, w, h] = *b;
            dets.push(Detection {
                query,
                score,
                bbox: BoundingBox::new(
                    (cx - 0.5 * w) * side,
                    (cy - 0.5 * h) * side,
                    (cx + 0.5 * w) * side,
                    (cy + 0.5 * h) * side,
                ),
            });
        }
    }
    dets
}

/// Clips the boxes to the image (the padding holds nothing), sorts best first, suppresses
/// overlaps per query, and keeps at most `max_detections`.
fn finish(
    mut dets: Vec<Detection>,
    width: u32,
    height: u32,
    opts: &DetectOptions,
) -> Vec<Detection> {
    let (w, h) = (width as f32, height as f32);
    for d in &mut dets {
        let b = &mut d.bbox;
        *b = BoundingBox::new(
            b.x1.clamp(0.0, w),
            b.y1.clamp(0.0, h),
            b.x2.clamp(0.0, w),
            b.y2.clamp(0.0, h),
        );
    }
    dets.retain(|d| d.bbox.area() > 0.0);
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept.len() >= opts.max_detections {
            break;
        }
        let suppressed = opts.nms_iou.is_some_and(|t| {
            kept.iter()
                .any(|k| k.query == d.query && k.bbox.iou(&d.bbox) > t)
        });
        if !suppressed {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_extension_is_scipys() {
        // d c b | a b c d | c b a
        let got: Vec<usize> = (-3..7).map(|i| mirror(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(mirror(-5, 1), 0);
    }

    #[test]
    fn box_bias_puts_centres_on_the_grid() {
        let b = box_bias(4);
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        // Patch (row 1, column 2): corner (3/4, 2/4); size 1/4.
        let p = &b[(4 + 2) * 4..(4 + 3) * 4];
        assert!((sig(p[0]) - 0.75).abs() < 1e-3 && (sig(p[1]) - 0.5).abs() < 1e-3);
        assert!((sig(p[2]) - 0.25).abs() < 1e-3 && (sig(p[3]) - 0.25).abs() < 1e-3);
    }

    #[test]
    fn preprocessor_config_of_the_real_checkpoint() {
        // google/owlv2-base-patch16
        let json = br#"{"do_normalize": true, "do_pad": true, "do_rescale": true,
            "do_resize": true, "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_processor_type": "Owlv2ImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711], "processor_class": "Owlv2Processor",
            "resample": 2, "rescale_factor": 0.00392156862745098,
            "size": {"height": 960, "width": 960}}"#;
        let p = Owlv2Preprocess::from_json(json).unwrap();
        assert_eq!(p.size, Some((960, 960)));
        assert!(p.pad);
        // A wide image: padded at the bottom with zeros (normalised: -mean/std).
        let img = RgbImage::from_pixel(20, 10, image::Rgb([255, 255, 255]));
        let small = Owlv2Preprocess {
            size: Some((20, 20)),
            ..p.clone()
        };
        let (data, size) = small.tensor_data(&img).unwrap();
        assert_eq!(size, (20, 20));
        let white = (1.0 - CLIP_MEAN[0]) / CLIP_STD[0];
        let black = -CLIP_MEAN[0] / CLIP_STD[0];
        assert!((data[0] - white).abs() < 1e-5, "{}", data[0]);
        assert!((data[19 * 20] - black).abs() < 1e-5, "{}", data[19 * 20]);
        for (json, want) in [
            (&br#"{"size": {"height": 0, "width": 960}}"#[..], "960x0"),
            (br#"{"image_std": [0, 1, 1]}"#, "image_std"),
            (br#"{"size": "big"}"#, "did not match"),
        ] {
            let err = Owlv2Preprocess::from_json(json).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let err = small
            .tensor_data(&RgbImage::new(0, 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
    }

    /// A long strip (issue 20) is padded from a shrunk copy: without that, a 60000 x 2 image
    /// padded to 60000 x 60000 f32 planes would need 43 GB.
    #[test]
    fn long_strips_are_padded_in_bounded_memory() {
        // The real checkpoint's input size (a tiny one would make the anti-aliasing Gaussian
        // hundreds of taps wide, slow for reasons of its own).
        let p = Owlv2Preprocess {
            size: Some((960, 960)),
            pad: true,
            rescale: Some(1.0 / 255.0),
            normalize: None,
        };
        let img = RgbImage::from_pixel(60_000, 2, image::Rgb([255, 255, 255]));
        let start = std::time::Instant::now();
        let (data, size) = p.tensor_data(&img).unwrap();
        assert_eq!(size, (960, 960));
        assert_eq!(data.len(), 3 * 960 * 960);
        // The strip stays at the top, padded with zeros below (shrunk 62.5 times, the 2-pixel
        // strip is a thirtieth of the top row, its light spread over it by the anti-aliasing).
        assert!(data[0] > 0.05, "{}", data[0]);
        assert_eq!(data[960 * 960 - 1], 0.0);
        assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
    }

    #[test]
    fn post_processing_keeps_the_best_box_per_query() {
        let d = |query, score, b: [f32; 4]| Detection {
            query,
            score,
            bbox: b.into(),
        };
        let dets = vec![
            d(0, 0.5, [0.0, 0.0, 10.0, 10.0]),
            d(0, 0.9, [1.0, 1.0, 11.0, 11.0]),
            d(1, 0.8, [1.0, 1.0, 11.0, 11.0]),
            d(0, 0.7, [50.0, 50.0, 60.0, 60.0]),
            d(1, 0.6, [90.0, 90.0, 120.0, 120.0]), // clipped to the 100 x 100 image
            d(1, 0.95, [150.0, 0.0, 160.0, 10.0]), // wholly in the padding: dropped
        ];
        let got = finish(dets, 100, 100, &DetectOptions::default());
        let summary: Vec<(usize, f32)> = got.iter().map(|d| (d.query, d.score)).collect();
        assert_eq!(summary, vec![(0, 0.9), (1, 0.8), (0, 0.7), (1, 0.6)]);
        assert_eq!(got[3].bbox, BoundingBox::new(90.0, 90.0, 100.0, 100.0));
    }
}
