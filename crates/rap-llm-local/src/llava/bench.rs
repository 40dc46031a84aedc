//! Speed and memory of a LLaVA model at a real size, with zero weights: the checkpoints are
//! gigabytes that a test machine may not have, and a matrix product costs the same whatever
//! the values. `rap bench llava` prints what [`run`] measures: load time (building and, if
//! asked, quantizing the weights; reading a checkpoint from disk adds its read time), resident
//! memory, the images' encoding, the prompt's tokens per second and generated tokens per second.

use crate::llava::config::{Layout, LlavaConfig, Projector, TextConfig, VisionConfig};
use crate::llava::lm::Quantize;
use crate::llava::model::LlavaModel;
use crate::llava::PREFILL_CHUNK;
use candle_core::{DType, Device, Tensor};
use rap_core::{Error, Result};
use std::time::Instant;

/// The RAP checkpoints' sizes by name (`rap-phi3-mini`, `rap-llava-13b`).
pub fn preset(name: &str) -> Option<(TextConfig, VisionConfig)> {
    let vision = VisionConfig::clip_vit_large_patch14_336();
    match name {
        "rap-phi3-mini" | "phi3-mini" => Some((TextConfig::phi3_mini_4k(), vision)),
        "rap-llava-13b" | "llava-13b" => Some((TextConfig::vicuna_13b(), vision)),
        _ => None,
    }
}

/// Names [`preset`] knows.
pub const PRESETS: &[&str] = &["rap-phi3-mini", "rap-llava-13b"];

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub quantize: Quantize,
    pub dtype: DType,
    /// Images in the prompt (RAP: the query image and one per retrieved concept).
    pub images: usize,
    /// Text tokens around them.
    pub text_tokens: usize,
    /// Tokens to generate.
    pub generate: usize,
}

/// What [`run`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Weights in the language model.
    pub lm_parameters: u64,
    pub quantize: String,
    pub load_secs: f64,
    /// Resident memory after loading (Linux; `None` elsewhere).
    pub rss_after_load_bytes: Option<u64>,
    /// Peak resident memory of the process so far.
    pub peak_rss_bytes: Option<u64>,
    pub images: usize,
    /// Vision tower and projector for all images.
    pub image_secs: f64,
    pub prompt_tokens: usize,
    /// The language model over the whole prompt.
    pub prefill_secs: f64,
    pub prompt_tokens_per_sec: f64,
    pub generated_tokens: usize,
    pub generate_secs: f64,
    pub generated_tokens_per_sec: f64,
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
pub fn rss() -> (Option<u64>, Option<u64>) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Builds the zero-weight model and times one prompt and its answer.
pub fn run(spec: &BenchSpec, device: &Device) -> Result<BenchReport> {
    let err = |e: candle_core::Error| Error::Model(format!("bench: {e}"));
    let config = LlavaConfig {
        layout: Layout::Hf,
        text: spec.text.clone(),
        vision: Some(spec.vision.clone()),
        select_layer: -2,
        keep_cls: false,
        projector: Projector::MlpGelu(2),
        pad_to_square: true,
        mm_vision_tower: None,
        mm_hidden_size: None,
        projector_bias: true,
    };
    let t0 = Instant::now();
    let model = LlavaModel::zero_weights(&config, &spec.vision, spec.dtype, spec.quantize, device)?;
    let load_secs = t0.elapsed().as_secs_f64();
    let (rss_after_load_bytes, _) = rss();

    let s = spec.vision.image_size;
    let t1 = Instant::now();
    let features = if spec.images > 0 {
        let pixels = Tensor::zeros((spec.images, 3, s, s), DType::F32, device).map_err(err)?;
        Some(model.encode_images(&pixels).map_err(err)?)
    } else {
        None
    };
    let image_secs = t1.elapsed().as_secs_f64();

    // Text tokens spread over the pieces around the images (ids inside any vocabulary).
    let pieces = spec.images + 1;
    let chunks: Vec<Vec<u32>> = (0..pieces)
        .map(|i| {
            let n = spec.text_tokens / pieces + usize::from(i < spec.text_tokens % pieces);
            (0..n).map(|j| 3 + (j % 100) as u32).collect()
        })
        .collect();
    let embeds = model.embed(&chunks, features.as_ref()).map_err(err)?;
    let prompt_tokens = embeds.dim(1).map_err(err)?;
    let ctx = spec.text.max_position_embeddings;
    if prompt_tokens + spec.generate > ctx {
        return Err(Error::invalid(format!(
            "{prompt_tokens} prompt tokens and {} to generate exceed the context of {ctx}",
            spec.generate
        )));
    }
    let mut cache = model.cache();
    let t2 = Instant::now();
    let mut pos = 0;
    while pos < prompt_tokens {
        let n = PREFILL_CHUNK.min(prompt_tokens - pos);
        let piece = embeds.narrow(1, pos, n).map_err(err)?;
        model.forward(&piece, pos, &mut cache).map_err(err)?;
        pos += n;
    }
    let prefill_secs = t2.elapsed().as_secs_f64();

    let t3 = Instant::now();
    for _ in 0..spec.generate {
        let emb = model.embed(&[vec![3]], None).map_err(err)?;
        let logits = model.forward(&emb, pos, &mut cache).map_err(err)?;
        // Reading the logits back is part of each step (sampling needs them).
        logits.to_vec2::<f32>().map_err(err)?;
        pos += 1;
    }
    let generate_secs = t3.elapsed().as_secs_f64();
    let (_, peak_rss_bytes) = rss();
    let per_sec = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    Ok(BenchReport {
        lm_parameters: spec.text.parameter_count(),
        quantize: spec.quantize.to_string(),
        load_secs,
        rss_after_load_bytes,
        peak_rss_bytes,
        images: spec.images,
        image_secs,
        prompt_tokens,
        prefill_secs,
        prompt_tokens_per_sec: per_sec(prompt_tokens, prefill_secs),
        generated_tokens: spec.generate,
        generate_secs,
        generated_tokens_per_sec: per_sec(spec.generate, generate_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_published_sizes() {
        let (phi3, v) = preset("rap-phi3-mini").unwrap();
        // Phi-3-mini: 3.82 B weights.
        let p = phi3.parameter_count() as f64 / 1e9;
        assert!((3.7..3.9).contains(&p), "{p}");
        assert_eq!(v.num_patches(), 576);
        let (vicuna, _) = preset("rap-llava-13b").unwrap();
        let p = vicuna.parameter_count() as f64 / 1e9;
        assert!((12.9..13.1).contains(&p), "{p}");
        assert!(preset("nope").is_none());
    }

    #[test]
    fn a_tiny_zero_model_runs_and_reports() {
        let mut text = TextConfig::phi3_mini_4k();
        text.hidden_size = 64;
        text.intermediate_size = 128;
        text.num_hidden_layers = 2;
        text.num_attention_heads = 4;
        text.num_key_value_heads = 4;
        text.vocab_size = 300;
        let vision = VisionConfig {
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            image_size: 28,
            patch_size: 14,
        };
        let spec = BenchSpec {
            text,
            vision,
            quantize: Quantize::Q8_0,
            dtype: DType::F32,
            images: 2,
            text_tokens: 7,
            generate: 3,
        };
        let r = run(&spec, &Device::Cpu).unwrap();
        assert_eq!(r.prompt_tokens, 2 * 4 + 7);
        assert_eq!(r.generated_tokens, 3);
        assert!(r.prompt_tokens_per_sec > 0.0 && r.generated_tokens_per_sec > 0.0);
        if cfg!(target_os = "linux") {
            assert!(r.peak_rss_bytes.unwrap() >= r.rss_after_load_bytes.unwrap());
        }
    }
}
