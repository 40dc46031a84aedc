//! `rap bench`: performance figures, each with its unit, measured on this machine.

mod memory;
mod retrieval;

use crate::context::Context;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Store open time, index build and reopen, add/remove and search latency at N concepts.
    Memory(memory::MemoryArgs),
    /// Retrieve on real photos: add-concept and query latency, where the time goes,
    /// encoder images/s, 12-megapixel decode.
    Retrieval(retrieval::RetrievalArgs),
}

pub fn run(ctx: &Context, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Memory(args) => memory::run(ctx.json, args),
        BenchCommand::Retrieval(args) => retrieval::run(ctx, args),
    }
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    sorted_ms[((sorted_ms.len() - 1) as f64 * p).round() as usize]
}

/// p50 and p95 of some durations in milliseconds.
fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    serde_json::json!({ "p50_ms": percentile(&ms, 0.5), "p95_ms": percentile(&ms, 0.95), "samples": ms.len() })
}

/// Prints a report: JSON with `--json`, pretty JSON otherwise (every figure carries its unit
/// in its name).
fn print(json: bool, report: &serde_json::Value) -> Result<()> {
    if json {
        return crate::output::print_json(report);
    }
    println!("{}", serde_json::to_string_pretty(report)?);
    Ok(())
}
