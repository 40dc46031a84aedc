//! `rap bench llava`: what a RAP LLaVA checkpoint costs on this machine, measured on its
//! architecture at full size with zero weights ([`rap_llm_local::llava::bench`]), so it runs
//! before (or without) the gigabytes of the checkpoint.

use anyhow::{anyhow, Result};
use rap_llm_local::llava::bench::{self, BenchSpec};
use rap_llm_local::llava::Quantize;

#[derive(clap::Args)]
pub struct LlavaArgs {
    /// The architecture: rap-phi3-mini or rap-llava-13b
    #[arg(long, default_value = "rap-phi3-mini")]
    model: String,
    /// The language model's weights: none (f32), q8_0 or q4k
    #[arg(long, default_value = "q8_0", value_name = "none|q8_0|q4k")]
    quantize: String,
    /// Images in the prompt: the query and one per retrieved concept
    #[arg(long, default_value_t = 4)]
    images: usize,
    /// Text tokens around the images
    #[arg(long, default_value_t = 150)]
    text_tokens: usize,
    /// Tokens to generate
    #[arg(long, default_value_t = 16)]
    gen_tokens: usize,
}

pub fn run(json: bool, args: LlavaArgs) -> Result<()> {
    let (text, vision) = bench::preset(&args.model).ok_or_else(|| {
        anyhow!(
            "--model {}: use one of {}",
            args.model,
            bench::PRESETS.join(", ")
        )
    })?;
    let quantize: Quantize = args
        .quantize
        .parse()
        .map_err(|e: rap_core::Error| anyhow!("--quantize: {}", e.report()))?;
    let spec = BenchSpec {
        text,
        vision,
        quantize,
        dtype: candle_core::DType::F32,
        images: args.images,
        text_tokens: args.text_tokens,
        generate: args.gen_tokens,
    };
    let r = bench::run(&spec, &candle_core::Device::Cpu)?;
    if json {
        return crate::output::print_json(&r);
    }
    let gib = |b: Option<u64>| match b {
        Some(b) => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        None => "n/a".to_string(),
    };
    println!(
        "{} ({:.2} B LM weights) at {}, zero weights, CPU",
        args.model,
        r.lm_parameters as f64 / 1e9,
        r.quantize
    );
    println!("load:     {:.1} s", r.load_secs);
    println!(
        "memory:   {} resident after load, {} peak",
        gib(r.rss_after_load_bytes),
        gib(r.peak_rss_bytes)
    );
    println!("images:   {} in {:.1} s", r.images, r.image_secs);
    println!(
        "prompt:   {} tokens in {:.1} s = {:.1} tokens/s",
        r.prompt_tokens, r.prefill_secs, r.prompt_tokens_per_sec
    );
    println!(
        "generate: {} tokens in {:.1} s = {:.2} tokens/s",
        r.generated_tokens, r.generate_secs, r.generated_tokens_per_sec
    );
    Ok(())
}
