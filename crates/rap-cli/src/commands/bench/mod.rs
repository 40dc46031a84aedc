//! `rap bench`: performance figures, each with its unit, measured on this machine. Without a
//! subcommand it runs the whole suite ([`suite`]): every benchmark below, one after another.
//!
//! The workloads are `rap_bench`'s; this module turns the flags into their options ([`args`]),
//! resolves what they need from the application (the default encoder, an installed model, the
//! database URL), shows their progress on the terminal ([`Bars`]) and prints their reports.

mod args;
mod llava;
mod scale;
mod suite;

use crate::context::Context;
use crate::output;
use anyhow::Result;
use clap::Subcommand;
use std::sync::{Mutex, PoisonError};

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
    Memory(args::MemoryArgs),
    /// Retrieve on real photos: add-concept and query latency, where the time goes,
    /// encoder images/s, 12-megapixel decode.
    Retrieval(args::RetrievalArgs),
    /// Local GGUF model: prompt and generation tokens/s (compare tools/golden/bench_llamacpp.py).
    Generate(args::GenerateArgs),
    /// A RAP LLaVA checkpoint's architecture at full size with zero weights: load time,
    /// resident memory, prompt and generation tokens/s at none / q8_0 / q4k.
    Llava(llava::LlavaArgs),
    /// The key index alone on synthetic unit vectors at several sizes: build time, QPS,
    /// latency, recall@10 against exact search, memory (exact scan and HNSW).
    Vectors(args::VectorsArgs),
    /// A service-sized memory (1M concepts, 10,000 tenants) in the embedded store or
    /// PostgreSQL: insert rate, per-tenant top-k latency, recall against exact, size on disk.
    Scale(args::ScaleArgs),
}

pub fn run(ctx: &Context, args: BenchArgs) -> Result<()> {
    let bars = Bars::new(ctx.json);
    let report = match args.command {
        None => return suite::run(ctx, args.suite),
        Some(BenchCommand::Memory(args)) => rap_bench::memory::run(&args.into(), &bars)?,
        Some(BenchCommand::Retrieval(args)) => {
            let (options, _built_in_photos) = args.options(ctx)?;
            rap_bench::retrieval::run(options, &bars)?
        }
        Some(BenchCommand::Generate(args)) => rap_bench::generate::run(args.options(ctx)?, &bars)?,
        Some(BenchCommand::Vectors(args)) => rap_bench::vectors::run(&args.into(), &bars)?,
        Some(BenchCommand::Scale(args)) => return scale::run(ctx.json, args, &bars),
        Some(BenchCommand::Llava(args)) => return llava::run(ctx.json, args),
    };
    print(ctx.json, &report)
}

/// A workload's progress as `rap`'s progress bars: one bar per step, hidden with `--json` or
/// when stderr is not a terminal.
struct Bars {
    json: bool,
    bar: Mutex<indicatif::ProgressBar>,
}

impl Bars {
    fn new(json: bool) -> Self {
        Bars {
            json,
            bar: Mutex::new(indicatif::ProgressBar::hidden()),
        }
    }

    fn bar(&self) -> indicatif::ProgressBar {
        // A clone is the same bar (indicatif's bars are shared handles).
        self.bar
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl rap_bench::Progress for Bars {
    fn start(&self, len: u64, label: &'static str) {
        *self.bar.lock().unwrap_or_else(PoisonError::into_inner) =
            output::progress(len, self.json, label);
    }

    fn inc(&self, n: u64) {
        self.bar().inc(n);
    }

    fn finish(&self) {
        self.bar().finish_and_clear();
    }
}

/// Prints a report: JSON with `--json`, else the same figures as indented `key: value` lines
/// (every figure carries its unit in its name).
fn print(json: bool, report: &serde_json::Value) -> Result<()> {
    if json {
        return output::print_json(report);
    }
    output::print_report(report);
    Ok(())
}
