//! The transformer of a GGUF model: candle-transformers' quantized Llama, Qwen2 and Gemma 3,
//! chosen by `general.architecture`, behind one small interface.
//!
//! On the CPU, weights of the types candle has only a scalar dot product for (Q4_1, Q5_0,
//! Q5_1: most of SmolLM2-135M's Q4_1 file) are requantized to Q8_0 at load time, which candle
//! runs with SIMD kernels (AVX2 detected at run time, NEON). Q8_0 has 8-bit steps on a 32-value
//! block, so the rounding it adds is several times smaller than the 4- or 5-bit rounding
//! already in the weights, but it still moves logits (by up to about 0.2 on SmolLM2-135M):
//! the golden tests against llama.cpp (`tests/smollm2.rs`) hold the requantized model to the
//! same greedy tokens and the file's own types to llama.cpp's logits.
//! [`crate::GgufOptions::requantize`] turns it off.

use crate::gguf::{no_panic, GgufFile};
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_qwen2};
use rap_core::{Error, Result};
use std::io::{Read, Seek, SeekFrom};

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
pub(crate) fn load(
    file: &mut GgufFile,
    device: &Device,
    requantize: bool,
) -> Result<(Architecture, Weights, usize)> {
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
    let (content, converted) = if requantize && device.is_cpu() {
        requantize_slow_types(content, &mut file.reader, &path)?
    } else {
        (content, Vec::new())
    };
    let file_len = file
        .reader
        .get_ref()
        .metadata()
        .map_err(|e| Error::io(file.path(), e))?
        .len();
    let reader = &mut Overlay {
        file: &mut file.reader,
        file_len,
        extra: converted,
        pos: 0,
    };
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

/// Whether candle's CPU dot product for `dtype` is scalar code only (no x86 or ARM SIMD path in
/// candle 0.11), so that Q8_0, which has both, is several times faster.
pub(crate) fn requantize_on_cpu(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// Requantizes the tensors of types [`requantize_on_cpu`] picks to Q8_0. Returns the header
/// pointing those tensors past the end of the file, and their new bytes, which [`Overlay`]
/// serves there.
fn requantize_slow_types<R: Read + Seek>(
    mut content: Content,
    reader: &mut R,
    path: &str,
) -> Result<(Content, Vec<u8>)> {
    let file_len = reader
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::Model(format!("{path}: {e}")))?;
    let mut names: Vec<String> = content
        .tensor_infos
        .iter()
        .filter(|(_, info)| requantize_on_cpu(info.ggml_dtype))
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    let mut extra = Vec::new();
    let err = |name: &str, e: candle_core::Error| {
        Error::Model(format!("{path}: requantizing `{name}` to Q8_0: {e}"))
    };
    for name in &names {
        let q = content
            .tensor(reader, name, &Device::Cpu)
            .map_err(|e| err(name, e))?;
        // Q8_0 blocks are 32 values along the last dimension, as Q4_1/Q5_x blocks are.
        let q8 = q
            .dequantize(&Device::Cpu)
            .and_then(|f| QTensor::quantize(&f, GgmlDType::Q8_0))
            .map_err(|e| err(name, e))?;
        let bytes = q8.data().map_err(|e| err(name, e))?;
        let info = content
            .tensor_infos
            .get_mut(name)
            .expect("the name was listed from this map");
        // Offsets are relative to the tensor data section.
        info.offset = file_len + extra.len() as u64 - content.tensor_data_offset;
        info.ggml_dtype = GgmlDType::Q8_0;
        extra.extend_from_slice(&bytes);
    }
    if !names.is_empty() {
        tracing::debug!(
            tensors = names.len(),
            bytes = extra.len(),
            "requantized to Q8_0 for candle's SIMD kernels"
        );
    }
    Ok((content, extra))
}

/// The GGUF file with extra bytes after its end: what candle's loader reads a header from
/// [`requantize_slow_types`] through. Positions below `file_len` read the file, the rest
/// `extra`. (No library offers this: a chained reader cannot seek back.)
struct Overlay<'a, R> {
    file: &'a mut R,
    file_len: u64,
    extra: Vec<u8>,
    pos: u64,
}

impl<R: Read + Seek> Read for Overlay<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = if self.pos < self.file_len {
            let room = (self.file_len - self.pos).min(buf.len() as u64) as usize;
            self.file.seek(SeekFrom::Start(self.pos))?;
            self.file.read(&mut buf[..room])?
        } else {
            let at = (self.pos - self.file_len).min(self.extra.len() as u64) as usize;
            let rest = &self.extra[at..];
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Overlay<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let end = self.file_len + self.extra.len() as u64;
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => end.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::{requantize_slow_types, Overlay};
    use candle_core::quantized::gguf_file::{self, Content};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use std::io::{Cursor, Read, Seek, SeekFrom};

    #[test]
    fn slow_types_are_requantized_to_q8_0_within_its_rounding_and_others_kept() {
        let dev = Device::Cpu;
        // Values with an offset, as Q4_1's per-block minimum is there to store.
        let f = Tensor::rand(-0.5f32, 2.5f32, (8, 64), &dev).unwrap();
        let q41 = QTensor::quantize(&f, GgmlDType::Q4_1).unwrap();
        let q40 = QTensor::quantize(&f, GgmlDType::Q4_0).unwrap();
        let mut bytes = Cursor::new(Vec::new());
        gguf_file::write(&mut bytes, &[], &[("a", &q41), ("b", &q40)]).unwrap();
        bytes.set_position(0);
        let content = Content::read(&mut bytes).unwrap();
        let (content, extra) = requantize_slow_types(content, &mut bytes, "test.gguf").unwrap();
        assert_eq!(content.tensor_infos["a"].ggml_dtype, GgmlDType::Q8_0);
        assert_eq!(content.tensor_infos["b"].ggml_dtype, GgmlDType::Q4_0);
        assert_eq!(extra.len(), 8 * 64 / 32 * GgmlDType::Q8_0.type_size());
        let file_len = bytes.get_ref().len() as u64;
        let mut o = Overlay {
            file: &mut bytes,
            file_len,
            extra,
            pos: 0,
        };
        let a = content.tensor(&mut o, "a", &dev).unwrap();
        assert_eq!(a.dtype(), GgmlDType::Q8_0);
        let before: Vec<f32> = q41
            .dequantize(&dev)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let after: Vec<f32> = a
            .dequantize(&dev)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (block, (x, y)) in before.chunks(32).zip(after.chunks(32)).enumerate() {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (u, v) in x.iter().zip(y) {
                // Half a Q8_0 step (amax / 127 / 2), plus the f16 rounding of the step (2^-11
                // relative) times at most 127 steps.
                let tol = amax * (1.0 / 254.0 + 1.0 / 2048.0) + 1e-6;
                assert!((u - v).abs() <= tol, "block {block}: {u} -> {v}");
            }
        }
        let b = content.tensor(&mut o, "b", &dev).unwrap();
        assert_eq!(b.data().unwrap(), q40.data().unwrap());
    }

    #[test]
    fn overlay_reads_the_file_then_the_extra_bytes_across_the_seam() {
        let mut file = Cursor::new(b"abcdef".to_vec());
        let mut o = Overlay {
            file: &mut file,
            file_len: 6,
            extra: b"XYZ".to_vec(),
            pos: 0,
        };
        o.seek(SeekFrom::Start(4)).unwrap();
        let mut all = Vec::new();
        o.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"efXYZ");
        o.seek(SeekFrom::End(-2)).unwrap();
        let mut two = [0u8; 2];
        o.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"YZ");
        o.seek(SeekFrom::Start(1)).unwrap();
        o.seek(SeekFrom::Current(6)).unwrap();
        let mut one = [0u8; 1];
        o.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"Y");
        assert!(o.seek(SeekFrom::Current(-100)).is_err());
    }
}
