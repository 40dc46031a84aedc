//! Tokens per second of the local GGUF backend: prompt processing and generation, separately.
//!
//! `cargo run --release -p rap-llm-local --example bench_gguf -- MODEL.gguf [PROMPT_TOKENS] [GEN_TOKENS] [RUNS]`
//! `tools/golden/bench_llamacpp.py` measures llama.cpp on the same file the same way; `rap bench
//! generate` is the same measurement from the CLI. Threads: `CANDLE_NUM_THREADS`.

use rap_core::GenerationParams;
use rap_llm_local::GgufGenerator;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: bench_gguf MODEL.gguf [PROMPT_TOKENS] [GEN_TOKENS] [RUNS]")?;
    let n_prompt: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let n_gen: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let runs: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(3);

    let gen = GgufGenerator::load(path, Box::new(|_| Ok(String::new())))?;
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(n_prompt);
    let mut prompt = gen.tokenizer().encode(&text, false)?;
    prompt.truncate(n_prompt);

    // Prompt processing: the prompt and a single sampled token.
    let one = GenerationParams {
        max_tokens: 1,
        temperature: 0.0,
        ..Default::default()
    };
    // Generation: n_gen tokens after a one-token prompt (EOS cannot stop a benchmark:
    // generation is measured by tokens actually produced).
    let many = GenerationParams {
        max_tokens: n_gen,
        temperature: 0.0,
        ..Default::default()
    };
    gen.generate_from_tokens(&prompt[..prompt.len().min(8)], &one, &mut |_| true)?; // warm-up

    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        gen.generate_from_tokens(&prompt, &one, &mut |_| true)?;
        pp.push(prompt.len() as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let out = gen.generate_from_tokens(&prompt[..1], &many, &mut |_| true)?;
        let secs = t.elapsed().as_secs_f64();
        tg.push(out.tokens.len() as f64 / secs);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "rap-llm-local (candle): prompt {} tokens: {:.1} tok/s; generation {} tokens: {:.1} tok/s (median of {runs}, {} threads)",
        prompt.len(),
        median(&mut pp),
        n_gen,
        median(&mut tg),
        rap_llm_local::cpu_threads()
    );
    Ok(())
}
