//! DINOv2 (facebook/dinov2-small, -base, ... in the transformers `Dinov2Model` layout), written
//! here in candle with the checkpoint's own weight names.
//!
//! Why not candle-transformers' `dinov2`: it reads the original timm-style checkpoints
//! (`blocks.N.attn.qkv`, `pos_embed`), not the Hugging Face layout (`encoder.layer.N.attention.
//! attention.query`, `embeddings.position_embeddings`); its sizes are hard-coded (518 px input,
//! MLP ratio 4, layer-norm epsilon 1e-5 where the checkpoints use 1e-6); and it resizes the
//! position embeddings by nearest neighbour where the reference uses bicubic interpolation,
//! which changes every embedding (the real checkpoints have 37 x 37 positions, a 224 px input
//! has 16 x 16 patches). So the blocks are rebuilt from candle-nn's layers, reading
//! `config.json`, and the position embeddings are resized exactly as PyTorch's
//! `interpolate(mode="bicubic", align_corners=False)` does.
//!
//! Image embedding: the final layer norm's class token (transformers' `pooler_output`).
//! Checkpoints saved by transformers 5 under the new attention names (`attention.q_proj`,
//! `attention.o_proj`) load too.

use super::folder::{config_err, weights_err, HfFolder, HfModel};
use super::linear_rows;
use candle_core::{Device, IndexOp, Module, Tensor};
use candle_nn::{layer_norm, linear, linear_b, LayerNorm, Linear, VarBuilder};
use rap_core::Result;

fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_mlp_ratio() -> f64 {
    4.0
}
fn d_image() -> usize {
    224
}
fn d_patch() -> usize {
    14
}
fn d_channels() -> usize {
    3
}
fn d_eps() -> f64 {
    1e-6
}
fn d_act() -> String {
    "gelu".into()
}
fn d_true() -> bool {
    true
}

/// A DINOv2 `config.json` (transformers' defaults where a key is absent).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_mlp_ratio")]
    pub mlp_ratio: f64,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_true")]
    pub qkv_bias: bool,
    #[serde(default)]
    pub use_swiglu_ffn: bool,
}

#[derive(Debug, Clone, Copy)]
enum Act {
    GeluErf,
    GeluTanh,
    QuickGelu,
    Relu,
    Silu,
}

impl Act {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Act::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "quick_gelu" => Act::QuickGelu,
            "relu" => Act::Relu,
            "silu" | "swish" => Act::Silu,
            _ => return None,
        })
    }

    fn apply(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Act::GeluErf => xs.gelu_erf(),
            Act::GeluTanh => xs.gelu(),
            Act::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Act::Relu => xs.relu(),
            Act::Silu => xs.silu(),
        }
    }
}

/// `encoder.layer.N.attention`: self-attention with separate query, key and value.
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    heads: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let bias = cfg.qkv_bias;
        // The Hugging Face checkpoints' names, or transformers 5's.
        if vb.contains_tensor("attention.query.weight") {
            Ok(Attention {
                query: linear_b(h, h, bias, vb.pp("attention.query"))?,
                key: linear_b(h, h, bias, vb.pp("attention.key"))?,
                value: linear_b(h, h, bias, vb.pp("attention.value"))?,
                output: linear(h, h, vb.pp("output.dense"))?,
                heads: cfg.num_attention_heads,
            })
        } else {
            Ok(Attention {
                query: linear_b(h, h, bias, vb.pp("q_proj"))?,
                key: linear_b(h, h, bias, vb.pp("k_proj"))?,
                value: linear_b(h, h, bias, vb.pp("v_proj"))?,
                output: linear(h, h, vb.pp("o_proj"))?,
                heads: cfg.num_attention_heads,
            })
        }
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, c) = xs.dims3()?;
        let hd = c / self.heads;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, n, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(linear_rows(&self.query, xs)?)?;
        let k = split(linear_rows(&self.key, xs)?)?;
        let v = split(linear_rows(&self.value, xs)?)?;
        let scale = (hd as f64).powf(-0.5);
        let attn = (q.matmul(&k.t()?)? * scale)?;
        let attn = candle_nn::ops::softmax_last_dim(&attn)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        linear_rows(&self.output, &out)
    }
}

/// `encoder.layer.N`.
struct Layer {
    norm1: LayerNorm,
    attention: Attention,
    lambda1: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    lambda2: Tensor,
    act: Act,
}

impl Layer {
    fn new(cfg: &Config, act: Act, vb: VarBuilder) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let inner = (h as f64 * cfg.mlp_ratio) as usize;
        Ok(Layer {
            norm1: layer_norm(h, cfg.layer_norm_eps, vb.pp("norm1"))?,
            attention: Attention::new(cfg, vb.pp("attention"))?,
            lambda1: vb.get(h, "layer_scale1.lambda1")?,
            norm2: layer_norm(h, cfg.layer_norm_eps, vb.pp("norm2"))?,
            fc1: linear(h, inner, vb.pp("mlp.fc1"))?,
            fc2: linear(inner, h, vb.pp("mlp.fc2"))?,
            lambda2: vb.get(h, "layer_scale2.lambda1")?,
            act,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let h = self
            .attention
            .forward(&self.norm1.forward(xs)?)?
            .broadcast_mul(&self.lambda1)?;
        let xs = (h + xs)?;
        let h = linear_rows(&self.fc1, &self.norm2.forward(&xs)?)?;
        let h = linear_rows(&self.fc2, &self.act.apply(&h)?)?.broadcast_mul(&self.lambda2)?;
        h + xs
    }
}

/// A DINOv2 checkpoint.
pub struct Dinov2 {
    patch_embedding: candle_nn::Conv2d,
    cls_token: Tensor,
    /// (1, 1 + grid * grid, hidden), as stored.
    position_embeddings: Tensor,
    grid: usize,
    patch_size: usize,
    layers: Vec<Layer>,
    layernorm: LayerNorm,
    hidden: usize,
    device: Device,
}

impl Dinov2 {
    pub fn load(folder: &HfFolder) -> Result<Self> {
        let cfg: Config = folder.json(super::folder::CONFIG)?;
        if cfg.use_swiglu_ffn {
            return Err(config_err(
                folder,
                "use_swiglu_ffn (DINOv2 giant) is not supported",
            ));
        }
        let act = Act::parse(&cfg.hidden_act).ok_or_else(|| {
            config_err(
                folder,
                format!("hidden_act \"{}\" is not supported", cfg.hidden_act),
            )
        })?;
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            return Err(config_err(
                folder,
                "hidden_size is not a multiple of num_attention_heads",
            ));
        }
        if cfg.patch_size == 0 || cfg.image_size < cfg.patch_size {
            return Err(config_err(folder, "image_size/patch_size make no patches"));
        }
        let vb = folder.weights()?;
        let err = |e| weights_err(folder, e);
        let h = cfg.hidden_size;
        let grid = cfg.image_size / cfg.patch_size;
        let emb = vb.pp("embeddings");
        let patch_embedding = candle_nn::conv2d(
            cfg.num_channels,
            h,
            cfg.patch_size,
            candle_nn::Conv2dConfig {
                stride: cfg.patch_size,
                ..Default::default()
            },
            emb.pp("patch_embeddings.projection"),
        )
        .map_err(err)?;
        let cls_token = emb.get((1, 1, h), "cls_token").map_err(err)?;
        let position_embeddings = emb
            .get((1, grid * grid + 1, h), "position_embeddings")
            .map_err(err)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(&cfg, act, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(err)?;
        let layernorm = layer_norm(h, cfg.layer_norm_eps, vb.pp("layernorm")).map_err(err)?;
        Ok(Dinov2 {
            patch_embedding,
            cls_token,
            position_embeddings,
            grid,
            patch_size: cfg.patch_size,
            layers,
            layernorm,
            hidden: h,
            device: vb.device().clone(),
        })
    }

    /// The position embeddings for an `rows` x `cols` patch grid (transformers'
    /// `interpolate_pos_encoding`: unchanged for the stored square grid, else bicubic, on the
    /// CPU, moved back to the model's device).
    fn positions(&self, rows: usize, cols: usize) -> candle_core::Result<Tensor> {
        if rows == self.grid && cols == self.grid {
            return Ok(self.position_embeddings.clone());
        }
        let cls = self.position_embeddings.i((.., 0..1, ..))?;
        let patch: Vec<f32> = self
            .position_embeddings
            .i((0, 1.., ..))?
            .flatten_all()?
            .to_vec1()?;
        let resized = bicubic_resize_grid(&patch, self.grid, self.hidden, rows, cols);
        let resized = Tensor::from_vec(resized, (1, rows * cols, self.hidden), &Device::Cpu)?
            .to_device(&self.device)?;
        Tensor::cat(&[&cls, &resized], 1)
    }
}

/// PyTorch's bicubic weights (A = -0.75, align_corners = False, no antialiasing) for resizing
/// `from` samples to `to`: `to` rows of (first source index, 4 weights), indices clamped later.
fn bicubic_weights(from: usize, to: usize) -> Vec<(i64, [f64; 4])> {
    const A: f64 = -0.75;
    let cc1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let cc2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|i| {
            let src = scale * (i as f64 + 0.5) - 0.5;
            let x0 = src.floor();
            let t = src - x0;
            (
                x0 as i64 - 1,
                [cc2(t + 1.0), cc1(t), cc1(1.0 - t), cc2(2.0 - t)],
            )
        })
        .collect()
}

/// Resizes a (grid, grid, dim) row-major grid of vectors to (rows, cols, dim), bicubically as
/// PyTorch does (border samples repeated).
fn bicubic_resize_grid(
    data: &[f32],
    grid: usize,
    dim: usize,
    rows: usize,
    cols: usize,
) -> Vec<f32> {
    let wy = bicubic_weights(grid, rows);
    let wx = bicubic_weights(grid, cols);
    let clamp = |i: i64| i.clamp(0, grid as i64 - 1) as usize;
    // Along x first: (grid, cols, dim).
    let mut tmp = vec![0f64; grid * cols * dim];
    for y in 0..grid {
        for (j, (x0, w)) in wx.iter().enumerate() {
            let out = &mut tmp[(y * cols + j) * dim..(y * cols + j + 1) * dim];
            for (k, wk) in w.iter().enumerate() {
                let src = &data[(y * grid + clamp(x0 + k as i64)) * dim..][..dim];
                for (o, s) in out.iter_mut().zip(src) {
                    *o += wk * *s as f64;
                }
            }
        }
    }
    let mut out = vec![0f32; rows * cols * dim];
    for (i, (y0, w)) in wy.iter().enumerate() {
        for j in 0..cols {
            let dst = &mut out[(i * cols + j) * dim..(i * cols + j + 1) * dim];
            for (d, o) in dst.iter_mut().enumerate() {
                let mut acc = 0f64;
                for (k, wk) in w.iter().enumerate() {
                    acc += wk * tmp[(clamp(y0 + k as i64) * cols + j) * dim + d];
                }
                *o = acc as f32;
            }
        }
    }
    out
}

impl HfModel for Dinov2 {
    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let (b, _, height, width) = pixels.dims4()?;
        let patches = self
            .patch_embedding
            .forward(pixels)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let cls = self.cls_token.broadcast_as((b, 1, self.hidden))?;
        let xs = Tensor::cat(&[&cls, &patches], 1)?;
        let pos = self.positions(height / self.patch_size, width / self.patch_size)?;
        let mut xs = xs.broadcast_add(&pos)?;
        for layer in &self.layers {
            xs = layer.forward(&xs)?;
        }
        self.layernorm.forward(&xs)?.i((.., 0, ..))?.contiguous()
    }

    fn has_text(&self) -> bool {
        false
    }

    fn text_features(&self, _text: &str) -> Option<Result<Vec<f32>>> {
        None
    }

    fn dim(&self) -> usize {
        self.hidden
    }

    fn input_size(&self) -> Option<(u32, u32)> {
        // Any multiple of the patch size: the position embeddings are resized to fit.
        None
    }

    fn device(&self) -> &Device {
        &self.device
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_weights_match_pytorch_on_known_cases() {
        // Same size: the identity (weights 0, 1, 0, 0 around each sample).
        for (x0, w) in bicubic_weights(5, 5) {
            assert!(x0 >= -1);
            assert!((w[1] - 1.0).abs() < 1e-12 && w[0].abs() < 1e-12 && w[2].abs() < 1e-12);
        }
        // Weights always sum to one.
        for (_, w) in bicubic_weights(37, 16)
            .into_iter()
            .chain(bicubic_weights(4, 9))
        {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // torch.nn.functional.interpolate(torch.tensor([[[[0.,1,2,3]]]]), size=(1,2),
        // mode="bicubic", align_corners=False) on a 1 x 4 row gives [0.40625, 2.59375].
        let row = [0f32, 1.0, 2.0, 3.0];
        // a 4 x 4 grid with every row equal, dim 1
        let grid: Vec<f32> = (0..4).flat_map(|_| row).collect();
        let out = bicubic_resize_grid(&grid, 4, 1, 4, 2);
        assert!(
            (out[0] - 0.40625).abs() < 1e-6 && (out[1] - 2.59375).abs() < 1e-6,
            "{out:?}"
        );
    }
}
