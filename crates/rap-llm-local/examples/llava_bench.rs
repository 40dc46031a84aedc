//! Speed and memory of a RAP checkpoint's architecture at full size with zero weights
//! (`rap_llm_local::llava::bench`), as one JSON line:
//!
//! ```sh
//! cargo run -p rap-llm-local --example llava_bench -- rap-phi3-mini q4k [IMAGES TEXT_TOKENS GENERATE]
//! ```
//!
//! Defaults: 4 images (the query and three concepts, RAP-Phi3-mini's most), 150 text tokens,
//! 16 generated tokens. `rap bench llava` is the same for users.

use candle_core::{DType, Device};
use rap_llm_local::llava::bench::{self, BenchSpec};
use rap_llm_local::llava::Quantize;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        format!(
            "usage: llava_bench MODEL QUANTIZE [IMAGES TEXT_TOKENS GENERATE]; MODEL: {}; QUANTIZE: {}",
            bench::PRESETS.join(", "),
            Quantize::CHOICES
        )
    };
    let (Some(model), Some(q)) = (args.first(), args.get(1)) else {
        return Err(usage().into());
    };
    let (text, vision) = bench::preset(model).ok_or_else(usage)?;
    let num = |i: usize, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(match args.get(i) {
            Some(s) => s.parse()?,
            None => default,
        })
    };
    let spec = BenchSpec {
        text,
        vision,
        quantize: q.parse()?,
        dtype: DType::F32,
        images: num(2, 4)?,
        text_tokens: num(3, 150)?,
        generate: num(4, 16)?,
    };
    let report = bench::run(&spec, &Device::Cpu)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
