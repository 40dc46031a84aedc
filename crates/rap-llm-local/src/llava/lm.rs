//! The LLaVA generator's language model: one decoder for the two families RAP ships, Llama /
//! Vicuna (RAP-LLaVA-13b) and Phi-3 (RAP-Phi3-mini), with each linear weight either kept in
//! the checkpoint's float type or quantized to candle's Q8_0 / Q4K while loading.
//!
//! Written here rather than taken from candle-transformers, and why: candle's `llama::Llama`
//! and `phi3::Model` hold plain `candle_nn::Linear` weights only (no quantized variant), its
//! quantized Llama / Phi-3 read GGUF files only, `phi3::Model` takes no input embeddings (the
//! image features must go in as embeddings) and ignores `sliding_window`, and its LongRoPE
//! multiplies the frequencies by the factors where transformers divides. The building blocks
//! are candle's: `quantized_nn::Linear` over a `QTensor`, `candle_nn::RmsNorm`, `rope`,
//! `KvCache`, `repeat_kv`.
//!
//! The two families differ only in how weights are stored: Phi-3 fuses `qkv_proj` and
//! `gate_up_proj`, Llama has `q_proj` / `k_proj` / `v_proj` and `gate_proj` / `up_proj`.
//! Everything is transformers' arithmetic: RMSNorm, RoPE over the first half / second half of
//! each head (`rotate_half`), grouped KV heads, SiLU-gated MLP, causal attention limited to the
//! last `sliding_window` keys when the config has one (Phi-3-mini's 2047).

use crate::llava::config::{LmFamily, RopeScaling, TextConfig};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::kv_cache::KvCache;
use candle_nn::VarBuilder;
use rap_core::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// How the language model's linear weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantize {
    /// The checkpoint's values in the model's dtype (f32 on the CPU).
    #[default]
    None,
    /// 8-bit blocks of 32 (about 1.06 bytes per weight).
    Q8_0,
    /// 4-bit K-quant super-blocks of 256 (about 0.56 bytes per weight). A weight whose input
    /// width is not a multiple of 256 is stored as Q8_0 instead (and one not a multiple of 32
    /// stays unquantized): real checkpoints' widths all are, tiny test models' are not.
    Q4K,
}

impl Quantize {
    /// The config / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantize::None => "none",
            Quantize::Q8_0 => "q8_0",
            Quantize::Q4K => "q4k",
        }
    }

    /// Every accepted spelling, for messages.
    pub const CHOICES: &'static str = "none, q8_0, q4k";
}

impl fmt::Display for Quantize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quantize {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "f32" | "f16" | "" => Ok(Quantize::None),
            "q8_0" | "q8" => Ok(Quantize::Q8_0),
            "q4k" | "q4_k" => Ok(Quantize::Q4K),
            other => Err(Error::invalid(format!(
                "unknown quantization `{other}`; expected one of {}",
                Quantize::CHOICES
            ))),
        }
    }
}

/// A linear layer without bias: plain or quantized.
#[derive(Debug, Clone)]
enum Lin {
    Plain(candle_nn::Linear),
    Quant(candle_transformers::quantized_nn::Linear),
}

impl Module for Lin {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Lin::Plain(l) => l.forward(x),
            Lin::Quant(l) => l.forward(x),
        }
    }
}

/// What was made of the linear weights, for the load log and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuantStats {
    /// Weights stored in the requested type.
    pub requested: usize,
    /// Q4K weights stored as Q8_0 because their width is not a multiple of 256.
    pub fell_back_q8_0: usize,
    /// Weights left unquantized because their width is not a multiple of 32.
    pub unquantized: usize,
}

fn to_lin(w: Tensor, q: Quantize, stats: &mut QuantStats) -> candle_core::Result<Lin> {
    let in_dim = w.dim(1)?;
    let ty = match q {
        Quantize::None => return Ok(Lin::Plain(candle_nn::Linear::new(w, None))),
        Quantize::Q4K if in_dim.is_multiple_of(GgmlDType::Q4K.block_size()) => {
            stats.requested += 1;
            GgmlDType::Q4K
        }
        Quantize::Q8_0 if in_dim.is_multiple_of(GgmlDType::Q8_0.block_size()) => {
            stats.requested += 1;
            GgmlDType::Q8_0
        }
        Quantize::Q4K if in_dim.is_multiple_of(GgmlDType::Q8_0.block_size()) => {
            stats.fell_back_q8_0 += 1;
            GgmlDType::Q8_0
        }
        _ => {
            stats.unquantized += 1;
            return Ok(Lin::Plain(candle_nn::Linear::new(
                w.to_dtype(DType::F32)?,
                None,
            )));
        }
    };
    let qt = QTensor::quantize(&w.to_dtype(DType::F32)?, ty)?;
    drop(w);
    Ok(Lin::Quant(
        candle_transformers::quantized_nn::Linear::from_arc(std::sync::Arc::new(qt), None)?,
    ))
}

/// The rotary tables (`[positions, head_dim / 2]` cos and sin), already scaled by LongRoPE's
/// attention factor.
#[derive(Debug, Clone)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(t: &TextConfig, dtype: DType, dev: &Device) -> candle_core::Result<Self> {
        let dim = t.head_dim();
        let half = dim / 2;
        let base = t.rope_theta as f64;
        let (factors, scale): (Vec<f64>, f64) = match &t.rope_scaling {
            RopeScaling::None => (vec![1.0; half], 1.0),
            // transformers' `_compute_longrope_parameters`: inv_freq = 1 / (factor * base^(2i/d)),
            // cos and sin scaled by sqrt(1 + ln(max / original) / ln(original)). The context is
            // capped at original_max_position_embeddings (see config), so the short factors.
            RopeScaling::LongRope {
                short_factor,
                original_max_position_embeddings: orig,
                max_position_embeddings: max,
                ..
            } => {
                let f = *max as f64 / *orig as f64;
                let s = if f <= 1.0 {
                    1.0
                } else {
                    (1.0 + f.ln() / (*orig as f64).ln()).sqrt()
                };
                (short_factor.clone(), s)
            }
        };
        let inv: Vec<f32> = (0..half)
            .map(|i| (1.0 / (factors[i] * base.powf((2 * i) as f64 / dim as f64))) as f32)
            .collect();
        let n = t.max_position_embeddings;
        let inv = Tensor::from_vec(inv, (1, half), dev)?;
        let pos = Tensor::arange(0u32, n as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((n, 1))?;
        let freqs = pos.matmul(&inv)?;
        Ok(Rope {
            cos: (freqs.cos()? * scale)?.to_dtype(dtype)?,
            sin: (freqs.sin()? * scale)?.to_dtype(dtype)?,
        })
    }

    fn apply(&self, x: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        let n = x.dim(2)?;
        let cos = self.cos.narrow(0, pos, n)?;
        let sin = self.sin.narrow(0, pos, n)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }
}

#[derive(Debug, Clone)]
enum Qkv {
    Split { q: Lin, k: Lin, v: Lin },
    Fused(Lin),
}

#[derive(Debug, Clone)]
enum GateUp {
    Split { gate: Lin, up: Lin },
    Fused(Lin),
}

#[derive(Debug, Clone)]
struct Layer {
    input_norm: candle_nn::RmsNorm,
    post_norm: candle_nn::RmsNorm,
    qkv: Qkv,
    o: Lin,
    gate_up: GateUp,
    down: Lin,
}

/// The per-generation state: each layer's keys and values so far.
#[derive(Debug, Clone)]
pub struct LmCache {
    layers: Vec<KvCache>,
}

/// The decoder-only language model.
#[derive(Debug, Clone)]
pub struct Lm {
    embed: candle_nn::Embedding,
    layers: Vec<Layer>,
    norm: candle_nn::RmsNorm,
    lm_head: Lin,
    rope: Rope,
    cfg: TextConfig,
    dtype: DType,
    device: Device,
    stats: QuantStats,
}

/// KV cache rows allocated at first, grown by as many when full.
const CACHE_STEP: usize = 512;

impl Lm {
    /// Builds the model from `vb` (transformers' names: `model.embed_tokens`, `model.layers.N.*`,
    /// `model.norm`, `lm_head`). Linear weights are quantized one at a time as they are read,
    /// so the full-precision model is never in memory at once.
    pub fn load(t: &TextConfig, vb: VarBuilder, quantize: Quantize) -> candle_core::Result<Self> {
        let dtype = vb.dtype();
        let device = vb.device().clone();
        let (h, hd) = (t.hidden_size, t.head_dim());
        let (q_out, kv_out) = (t.num_attention_heads * hd, t.num_key_value_heads * hd);
        let i = t.intermediate_size;
        let mut stats = QuantStats::default();
        let mut lin = |vb: &VarBuilder, out: usize, inp: usize| -> candle_core::Result<Lin> {
            to_lin(vb.get((out, inp), "weight")?, quantize, &mut stats)
        };
        let m = vb.pp("model");
        let embed = candle_nn::embedding(t.vocab_size, h, m.pp("embed_tokens"))?;
        let mut layers = Vec::with_capacity(t.num_hidden_layers);
        for l in 0..t.num_hidden_layers {
            let p = m.pp("layers").pp(l);
            let a = p.pp("self_attn");
            let mlp = p.pp("mlp");
            let (qkv, gate_up) = match t.family {
                LmFamily::Llama => (
                    Qkv::Split {
                        q: lin(&a.pp("q_proj"), q_out, h)?,
                        k: lin(&a.pp("k_proj"), kv_out, h)?,
                        v: lin(&a.pp("v_proj"), kv_out, h)?,
                    },
                    GateUp::Split {
                        gate: lin(&mlp.pp("gate_proj"), i, h)?,
                        up: lin(&mlp.pp("up_proj"), i, h)?,
                    },
                ),
                LmFamily::Phi3 => (
                    Qkv::Fused(lin(&a.pp("qkv_proj"), q_out + 2 * kv_out, h)?),
                    GateUp::Fused(lin(&mlp.pp("gate_up_proj"), 2 * i, h)?),
                ),
            };
            layers.push(Layer {
                input_norm: candle_nn::rms_norm(h, t.rms_norm_eps, p.pp("input_layernorm"))?,
                post_norm: candle_nn::rms_norm(
                    h,
                    t.rms_norm_eps,
                    p.pp("post_attention_layernorm"),
                )?,
                o: lin(&a.pp("o_proj"), h, q_out)?,
                down: lin(&mlp.pp("down_proj"), h, i)?,
                qkv,
                gate_up,
            });
        }
        let norm = candle_nn::rms_norm(h, t.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if t.tie_word_embeddings {
            to_lin(embed.embeddings().clone(), quantize, &mut stats)?
        } else {
            lin(&vb.pp("lm_head"), t.vocab_size, h)?
        };
        Ok(Lm {
            rope: Rope::new(t, dtype, &device)?,
            embed,
            layers,
            norm,
            lm_head,
            cfg: t.clone(),
            dtype,
            device,
            stats,
        })
    }

    /// What quantization made of the linear weights.
    pub fn quant_stats(&self) -> QuantStats {
        self.stats
    }

    /// The dtype the model computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Token embeddings: `[n]` ids -> `[n, hidden]`.
    pub fn embed(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.embed.forward(ids)
    }

    /// A fresh cache.
    pub fn cache(&self) -> LmCache {
        LmCache {
            layers: (0..self.layers.len())
                .map(|_| KvCache::new(2, CACHE_STEP))
                .collect(),
        }
    }

    /// `[1, n, n + pos]` additive mask: causal, and within the sliding window if any.
    fn mask(&self, n: usize, pos: usize) -> candle_core::Result<Option<Tensor>> {
        let window = self.cfg.sliding_window;
        let total = n + pos;
        if n == 1 && window.is_none_or(|w| total <= w) {
            return Ok(None);
        }
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| {
                let qi = pos + i;
                (0..total).map(move |j| {
                    // transformers' masks: j <= i, and i - j < sliding_window.
                    let visible = j <= qi && window.is_none_or(|w| qi - j < w);
                    if visible {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        Tensor::from_vec(mask, (1, 1, n, total), &self.device)?
            .to_dtype(self.dtype)
            .map(Some)
    }

    /// Runs `[1, n, hidden]` embeddings at position `pos`; returns the last position's
    /// logits as `[1, vocab]` f32.
    pub fn forward(
        &self,
        embeds: &Tensor,
        pos: usize,
        cache: &mut LmCache,
    ) -> candle_core::Result<Tensor> {
        let (b, n, _) = embeds.dims3()?;
        let t = &self.cfg;
        let hd = t.head_dim();
        let (nh, nkv) = (t.num_attention_heads, t.num_key_value_heads);
        let mask = self.mask(n, pos)?;
        let mut x = embeds.to_dtype(self.dtype)?;
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let residual = x.clone();
            let hs = layer.input_norm.forward(&x)?;
            let (q, k, v) = match &layer.qkv {
                Qkv::Split { q, k, v } => (q.forward(&hs)?, k.forward(&hs)?, v.forward(&hs)?),
                Qkv::Fused(l) => {
                    let qkv = l.forward(&hs)?;
                    (
                        qkv.narrow(D::Minus1, 0, nh * hd)?,
                        qkv.narrow(D::Minus1, nh * hd, nkv * hd)?,
                        qkv.narrow(D::Minus1, (nh + nkv) * hd, nkv * hd)?,
                    )
                }
            };
            let q = q.reshape((b, n, nh, hd))?.transpose(1, 2)?;
            let k = k.reshape((b, n, nkv, hd))?.transpose(1, 2)?;
            let v = v.reshape((b, n, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let q = self.rope.apply(&q, pos)?;
            let k = self.rope.apply(&k, pos)?;
            let (k, v) = kv.append(&k, &v)?;
            let groups = nh / nkv;
            let k = candle_transformers::utils::repeat_kv(k.contiguous()?, groups)?;
            let v = candle_transformers::utils::repeat_kv(v.contiguous()?, groups)?;
            let scale = 1.0 / (hd as f64).sqrt();
            let att = (q.matmul(&k.t()?)? * scale)?;
            let att = match &mask {
                Some(m) => att.broadcast_add(m)?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att.to_dtype(DType::F32)?)?
                .to_dtype(self.dtype)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, n, nh * hd))?;
            x = (layer.o.forward(&y)? + residual)?;
            let residual = x.clone();
            let hs = layer.post_norm.forward(&x)?;
            let (gate, up) = match &layer.gate_up {
                GateUp::Split { gate, up } => (gate.forward(&hs)?, up.forward(&hs)?),
                GateUp::Fused(l) => {
                    let gu = l.forward(&hs)?;
                    let i = t.intermediate_size;
                    (gu.narrow(D::Minus1, 0, i)?, gu.narrow(D::Minus1, i, i)?)
                }
            };
            let hs = (candle_nn::ops::silu(&gate)? * up)?;
            x = (layer.down.forward(&hs)? + residual)?;
        }
        let last = x.narrow(1, n - 1, 1)?;
        let logits = self.lm_head.forward(&self.norm.forward(&last)?)?;
        logits.squeeze(1)?.to_dtype(DType::F32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_err(q: Quantize, in_dim: usize) -> (f32, QuantStats) {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (64, in_dim), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 5, in_dim), &dev).unwrap();
        let plain = to_lin(w.clone(), Quantize::None, &mut QuantStats::default()).unwrap();
        let mut stats = QuantStats::default();
        let quant = to_lin(w, q, &mut stats).unwrap();
        let a = plain.forward(&x).unwrap();
        let b = quant.forward(&x).unwrap();
        let err = (&a - &b).unwrap().sqr().unwrap().mean_all().unwrap();
        let norm = a.sqr().unwrap().mean_all().unwrap();
        let r = (err.to_scalar::<f32>().unwrap() / norm.to_scalar::<f32>().unwrap()).sqrt();
        (r, stats)
    }

    #[test]
    fn quantized_linears_stay_close_to_the_plain_ones() {
        // Relative RMS error of one product, weights and activations both quantized (candle's
        // Q8_0 / Q8K activation blocks).
        let (e, s) = rel_err(Quantize::Q8_0, 256);
        assert_eq!(s.requested, 1);
        assert!(e < 0.02, "q8_0: {e}");
        let (e, s) = rel_err(Quantize::Q4K, 256);
        assert_eq!(s.requested, 1);
        assert!(e < 0.12, "q4k: {e}");
        let (_, s) = rel_err(Quantize::Q4K, 64);
        assert_eq!(s.fell_back_q8_0, 1);
        let (_, s) = rel_err(Quantize::Q8_0, 48);
        assert_eq!(s.unquantized, 1);
    }
}
