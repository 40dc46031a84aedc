//! The transformer of a GGUF model: candle-transformers' quantized Llama, Qwen2 and Gemma 3,
//! chosen by `general.architecture`, behind one small interface.

use crate::gguf::{no_panic, GgufFile};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_qwen2};
use rap_core::{Error, Result};

/// The architectures this crate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `llama` (Llama 1-3, SmolLM, Mistral-style models).
    Llama,
    /// `qwen2` (Qwen2, Qwen2.5).
    Qwen2,
    /// `gemma3`.
    Gemma3,
}

impl Architecture {
    /// Maps `general.architecture` to a supported architecture.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "qwen2" => Some(Architecture::Qwen2),
            "gemma3" => Some(Architecture::Gemma3),
            _ => None,
        }
    }

    /// The name as written in GGUF metadata.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Gemma3 => "gemma3",
        }
    }

    /// The longest sequence candle's implementation can run (its rotary tables), if bounded
    /// by something other than the metadata's context length.
    fn implementation_limit(self) -> Option<usize> {
        match self {
            Architecture::Llama => Some(quantized_llama::MAX_SEQ_LEN),
            Architecture::Qwen2 => None,
            Architecture::Gemma3 => Some(quantized_gemma3::MAX_SEQ_LEN),
        }
    }

    /// Whether a prompt may be fed in several chunks (candle's Gemma 3 builds a wrong mask
    /// when a multi-token chunk follows cached tokens, so its prompt goes in one piece).
    pub(crate) fn chunked_prefill(self) -> bool {
        !matches!(self, Architecture::Gemma3)
    }
}

/// Loaded weights with their KV cache (one generation at a time uses them).
pub(crate) enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
}

impl Weights {
    /// Runs `tokens` (shape `[1, n]`) at position `pos`; returns the last position's logits.
    pub(crate) fn forward(&mut self, tokens: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Llama(m) => m.forward(tokens, pos),
            Weights::Qwen2(m) => m.forward(tokens, pos),
            Weights::Gemma3(m) => m.forward(tokens, pos),
        }
    }

    /// Forgets the KV cache of the previous generation.
    pub(crate) fn clear_kv_cache(&mut self) {
        match self {
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
            // candle's Gemma 3 has no such method; it drops its cache at position 0.
            Weights::Gemma3(_) => {}
        }
    }
}

/// Hyper-parameters checked before candle sees them (candle divides by some of them).
fn check_hparams(file: &GgufFile, arch: Architecture) -> Result<usize> {
    let p = arch.gguf_name();
    let need = |k: &str| -> Result<u64> {
        let key = format!("{p}.{k}");
        match file.opt_u64(&key)? {
            Some(v) if v > 0 => Ok(v),
            Some(_) => Err(Error::Model(format!(
                "{}: metadata `{key}` is zero",
                file.path().display()
            ))),
            None => Err(Error::Model(format!(
                "{}: metadata `{key}` is missing",
                file.path().display()
            ))),
        }
    };
    let heads = need("attention.head_count")?;
    let kv_heads = need("attention.head_count_kv")?;
    let embd = need("embedding_length")?;
    need("block_count")?;
    if heads % kv_heads != 0 || embd % heads != 0 {
        return Err(Error::Model(format!(
            "{}: {heads} attention heads do not divide into {kv_heads} KV heads / {embd} dimensions",
            file.path().display()
        )));
    }
    let ctx = file
        .opt_u64(&format!("{p}.context_length"))?
        .unwrap_or(2048) as usize;
    let limit = arch.implementation_limit().unwrap_or(usize::MAX);
    if ctx > limit {
        tracing::info!(
            metadata = ctx,
            limit,
            "context length capped at what candle's {} implementation supports",
            p
        );
    }
    Ok(ctx.min(limit).max(1))
}

/// Loads the weights of `file`; returns them with the usable context length.
pub(crate) fn load(file: &mut GgufFile, device: &Device) -> Result<(Architecture, Weights, usize)> {
    let arch_name = file.architecture()?.to_owned();
    let arch = Architecture::from_gguf_name(&arch_name).ok_or_else(|| {
        Error::Model(format!(
            "{}: architecture `{arch_name}` is not supported (llama, qwen2 and gemma3 are)",
            file.path().display()
        ))
    })?;
    let ctx = check_hparams(file, arch)?;
    file.check_tensor_extents()?;
    let path = file.path().display().to_string();
    // candle's loaders take the header by value; re-read it (cheap) to keep ours.
    let content = {
        use std::io::Seek;
        file.reader
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| Error::io(file.path(), e))?;
        candle_core::quantized::gguf_file::Content::read(&mut file.reader)
            .map_err(|e| Error::Model(format!("{path}: {e}")))?
    };
    let reader = &mut file.reader;
    let weights = no_panic(
        || format!("{path}: loading the {arch_name} weights failed"),
        || {
            let w = match arch {
                Architecture::Llama => {
                    quantized_llama::ModelWeights::from_gguf(content, reader, device)
                        .map(Weights::Llama)
                }
                Architecture::Qwen2 => {
                    quantized_qwen2::ModelWeights::from_gguf(content, reader, device)
                        .map(Weights::Qwen2)
                }
                Architecture::Gemma3 => {
                    quantized_gemma3::ModelWeights::from_gguf(content, reader, device)
                        .map(Weights::Gemma3)
                }
            };
            w.map_err(|e| Error::Model(format!("{path}: loading the {arch_name} weights: {e}")))
        },
    )?;
    Ok((arch, weights, ctx))
}
