//! `rap bench generate`: tokens per second of the local GGUF backend, prompt processing and
//! generation measured separately, the way `tools/golden/bench_llamacpp.py` measures llama.cpp
//! on the same file (same prompt text, same token counts, greedy, median of the runs):
//! - prompt: the whole prompt in one call and a single sampled token;
//! - generation: `--gen-tokens` tokens one at a time after a one-token prompt (end-of-sequence
//!   does not stop it early: the figure divides the tokens actually produced by the time).

use crate::Progress;
use rap_core::{Error, GenerationParams, Generator, Result};
use rap_llm_local::{GgufFile, GgufGenerator};
use std::path::PathBuf;
use std::time::Instant;

/// Finds the GGUF file to measure; called once, after the options are checked (so a bad
/// option is reported before a missing model).
pub type GgufLocator = Box<dyn FnOnce() -> Result<PathBuf>>;

/// What [`run`] measures.
pub struct GenerateOptions {
    /// The model file (`rap` finds an installed model's in the models folder, or takes a path).
    pub gguf: GgufLocator,
    /// Prompt length in tokens (`rap`'s default: 128).
    pub prompt_tokens: usize,
    /// Tokens to generate (`rap`'s default: 64).
    pub gen_tokens: usize,
    /// Timed runs; the median is reported (`rap`'s default: 3).
    pub runs: usize,
    /// The CPU threads candle runs with, for the report. The caller sets them up (candle reads
    /// `CANDLE_NUM_THREADS` and `RAYON_NUM_THREADS` when the model first runs): this library
    /// does not touch the process's environment.
    pub threads: usize,
    /// Where the model runs (`rap` passes `RAP_DEVICE`'s).
    pub device: candle_core::Device,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Loads the model, warms it up and times prompt processing and generation; returns the
/// report. No progress is shown: the runs are few and short.
pub fn run(options: GenerateOptions, _progress: &dyn Progress) -> Result<serde_json::Value> {
    let args = options;
    if args.prompt_tokens == 0 || args.gen_tokens == 0 || args.runs == 0 {
        return Err(Error::invalid(
            "--prompt-tokens, --gen-tokens and --runs must be at least 1",
        ));
    }
    if args.threads == 0 {
        return Err(Error::invalid("--threads must be at least 1"));
    }
    let path = (args.gguf)()?;
    let weight_types = GgufFile::open(&path)?.weights_by_type();
    let t = Instant::now();
    let gen = GgufGenerator::load_with_template(&path, &args.device, |_| {
        Ok(Box::new(|_: &[rap_core::Message]| Ok(String::new())) as rap_llm_local::PromptRenderer)
    })
    .map_err(|e| e.context(path.display()))?;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;

    let text = "The quick brown fox jumps over the lazy dog. ".repeat(args.prompt_tokens);
    let mut prompt = gen.tokenizer().encode(&text, false)?;
    prompt.truncate(args.prompt_tokens);
    if prompt.len() + 1 >= gen.context_length() || args.gen_tokens + 1 >= gen.context_length() {
        return Err(Error::invalid(format!(
            "{} has a context of {} tokens: ask for fewer",
            gen.info().model,
            gen.context_length()
        )));
    }
    let greedy = |max_tokens| GenerationParams {
        max_tokens,
        temperature: 0.0,
        ..GenerationParams::default()
    };
    // Warm-up: first-call allocations, page-in of the weights, thread start.
    gen.generate_from_tokens(&prompt[..prompt.len().min(8)], &greedy(2), &mut |_| true)?;

    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let t = Instant::now();
        gen.generate_from_tokens(&prompt, &greedy(1), &mut |_| true)?;
        pp.push(prompt.len() as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let out =
            gen.generate_from_tokens(&prompt[..1], &greedy(args.gen_tokens), &mut |_| true)?;
        tg.push(out.tokens.len() as f64 / t.elapsed().as_secs_f64());
    }
    let threads = args.threads;
    Ok(serde_json::json!({
        "implementation": "rap-llm-local (candle)",
        "model": gen.info().model,
        "file": path,
        "architecture": gen.architecture().gguf_name(),
        "weights_by_type": weight_types,
        "requantized_to_q8_0": "Q4_1, Q5_0, Q5_1 weights (candle has no SIMD kernel for them)",
        "threads": threads,
        "load_ms": load_ms,
        "prompt_tokens": prompt.len(),
        "prompt_tokens_per_s": median(pp.clone()),
        "generated_tokens": args.gen_tokens,
        "generated_tokens_per_s": median(tg.clone()),
        "runs": args.runs,
        "samples": { "prompt_tokens_per_s": pp, "generated_tokens_per_s": tg },
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    }))
}
