//! `rap bench`: performance figures, each with its unit, measured on this machine. Without a
//! subcommand it runs the whole suite ([`suite`]): every benchmark below, one after another.

mod generate;
mod memory;
mod retrieval;
mod scale;
mod suite;
mod synthetic;
mod vectors;

use crate::context::Context;
use anyhow::Result;
use clap::Subcommand;

/// `rap bench [SUBCOMMAND]`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    suite: suite::SuiteArgs,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Store open time, index build and reopen, add/remove and search latency at N concepts.
    Memory(memory::MemoryArgs),
    /// Retrieve on real photos: add-concept and query latency, where the time goes,
    /// encoder images/s, 12-megapixel decode.
    Retrieval(retrieval::RetrievalArgs),
    /// Local GGUF model: prompt and generation tokens/s (compare tools/golden/bench_llamacpp.py).
    Generate(generate::GenerateArgs),
    /// The key index alone on synthetic unit vectors at several sizes: build time, QPS,
    /// latency, recall@10 against exact search, memory (exact scan and HNSW).
    Vectors(vectors::VectorsArgs),
    /// A service-sized memory (1M concepts, 10,000 tenants) in the embedded store or
    /// PostgreSQL: insert rate, per-tenant top-k latency, recall against exact, size on disk.
    Scale(scale::ScaleArgs),
}

pub fn run(ctx: &Context, args: BenchArgs) -> Result<()> {
    match args.command {
        None => suite::run(ctx, args.suite),
        Some(BenchCommand::Memory(args)) => memory::run(ctx.json, args),
        Some(BenchCommand::Retrieval(args)) => retrieval::run(ctx, args),
        Some(BenchCommand::Generate(args)) => generate::run(ctx, args),
        Some(BenchCommand::Vectors(args)) => vectors::run(ctx.json, args),
        Some(BenchCommand::Scale(args)) => scale::run(ctx.json, args),
    }
}

/// What the figures were measured on: CPU, cores, memory, load when measured, build.
fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let load: Vec<f64> = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory_gib": mem_kib as f64 / (1024.0 * 1024.0),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "load_average_1_5_15_min": load,
        "build": if cfg!(debug_assertions) { "debug (dependencies optimised)" } else { "release" },
    })
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    sorted_ms[((sorted_ms.len() - 1) as f64 * p).round() as usize]
}

/// p50, p95 and p99 of some durations in milliseconds.
fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    serde_json::json!({
        "p50_ms": percentile(&ms, 0.5),
        "p95_ms": percentile(&ms, 0.95),
        "p99_ms": percentile(&ms, 0.99),
        "samples": ms.len(),
    })
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
