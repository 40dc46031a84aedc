//! `rap eval ...`: the paper's metrics on saved predictions, runners that produce predictions
//! with our pipeline, and the retrieval evaluation (with its scaling curve).

mod plot;
mod runner;

use crate::context::Context;
use crate::output;
use anyhow::{bail, Result};
use clap::Subcommand;
use rap_eval::retrieval::{self, RetrievalEvalConfig};
use rap_eval::scaling::{self, ScalingConfig};
use rap_eval::tasks::Task;
use std::path::{Path, PathBuf};

pub use runner::TaskArgs;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Captions: concept recall, precision and F1. Scores `--predictions FILE`
    /// (`[image, [concepts], caption]` rows), or runs `--file` (`{image: [concepts]}`) first.
    Caption {
        #[command(flatten)]
        args: TaskArgs,
        /// Count only the file's target concepts as names (default: the memory's names and
        /// aliases, when the data dir has a memory)
        #[arg(long)]
        targets_only: bool,
    },
    /// Recognition ("Is <c> in this image?"): positive, negative and weighted accuracy by
    /// `correct_answer`. Scores `--predictions FILE`, or runs `--file` (the reference's rows).
    Recognition {
        #[command(flatten)]
        args: TaskArgs,
        /// Answer from the retriever alone: yes when retrieval's decision reports the concept
        /// in the image (its floor, margins and negatives; no language model)
        #[arg(long)]
        retriever_only: bool,
        /// The decision's floor for --retriever-only [default: the config's retrieval threshold]
        #[arg(long, requires = "retriever_only")]
        threshold: Option<f32>,
        /// Window scales for --retriever-only (comma-separated fractions; `none` = whole image)
        #[arg(long, value_delimiter = ',', requires = "retriever_only")]
        scales: Option<Vec<String>>,
    },
    /// Multiple-choice QA (visual or text-only): accuracy. Scores `--predictions FILE`, or
    /// runs `--file` (`{concept: {image: {question, options, correct_answer}}}`).
    Qa {
        #[command(flatten)]
        args: TaskArgs,
    },
    /// Retrieval on a folder of subject folders: top-1, recall@5, MRR, recognition; with
    /// `--distractors M`, recall@1/@5 as M distractor concepts fill the memory (JSON + SVG).
    Retrieval {
        /// A folder with one folder of photos per subject (like dreambooth-dev)
        #[arg(long)]
        dataset: PathBuf,
        /// Photos per subject used as the concept's reference images
        #[arg(long, default_value_t = 1)]
        refs: usize,
        /// The decision's floor [default: the calibrated one]
        #[arg(long)]
        threshold: Option<f32>,
        /// The decision's margin over the runner-up concept [default: the calibrated one]
        #[arg(long)]
        margin: Option<f32>,
        /// Window sizes for region proposals, as fractions of the shorter side
        /// (comma-separated; `none` = the whole image only) [default: as `rap retrieve`]
        #[arg(long, value_delimiter = ',')]
        scales: Option<Vec<String>>,
        /// Scaling curve: add up to M distractor concepts, measuring at each step
        #[arg(long, value_name = "M")]
        distractors: Option<usize>,
        /// Draw distractors from every photo under this folder [default: the other subjects'
        /// query photos]
        #[arg(long, requires = "distractors")]
        distractor_dir: Option<PathBuf>,
        /// Distractor counts to measure at (comma-separated) [default: 0 and M halved down]
        #[arg(long, value_delimiter = ',', requires = "distractors")]
        steps: Option<Vec<usize>>,
        /// Where to write the curve as JSON
        #[arg(
            long,
            default_value = "retrieval-scaling.json",
            requires = "distractors"
        )]
        curve: PathBuf,
        /// Where to draw the curve as SVG
        #[arg(
            long,
            default_value = "retrieval-scaling.svg",
            requires = "distractors"
        )]
        plot: PathBuf,
    },
}

pub fn run(ctx: &Context, cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Caption { args, targets_only } => {
            runner::run(ctx, Task::Caption, args, runner::Mode::Model, targets_only)
        }
        EvalCommand::Recognition {
            args,
            retriever_only,
            threshold,
            scales,
        } => {
            let mode = if retriever_only {
                runner::Mode::Retriever {
                    threshold,
                    scales: super::window_scales(scales)?,
                }
            } else {
                runner::Mode::Model
            };
            runner::run(ctx, Task::Recognition, args, mode, false)
        }
        EvalCommand::Qa { args } => runner::run(ctx, Task::Qa, args, runner::Mode::Model, false),
        EvalCommand::Retrieval {
            dataset,
            refs,
            threshold,
            margin,
            scales,
            distractors,
            distractor_dir,
            steps,
            curve,
            plot,
        } => {
            let window_scales = super::window_scales(scales)?;
            match distractors {
                Some(m) => {
                    let config = ScalingConfig {
                        dataset,
                        refs,
                        distractors: m,
                        distractor_dir,
                        steps: steps.unwrap_or_default(),
                        window_scales,
                    };
                    run_scaling(ctx, &config, &curve, &plot)
                }
                None => {
                    let config = RetrievalEvalConfig {
                        dataset,
                        refs,
                        threshold: threshold.unwrap_or(rap_engine::DEFAULT_THRESHOLD),
                        margin: margin.unwrap_or(rap_engine::DEFAULT_MARGIN),
                        window_scales,
                    };
                    run_retrieval(ctx, &config)
                }
            }
        }
    }
}

fn run_scaling(ctx: &Context, config: &ScalingConfig, curve: &Path, plot: &Path) -> Result<()> {
    for out in [curve, plot] {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                bail!("{}: no such folder for {}", dir.display(), out.display());
            }
        }
    }
    let encoder = ctx.engine()?.require_encoder()?;
    let bar = output::progress(0, ctx.json, "querying");
    let report = scaling::run(config, encoder, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    std::fs::write(curve, serde_json::to_string_pretty(&report)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", curve.display()))?;
    plot::scaling_svg(&report, plot)?;
    if ctx.json {
        return output::print_json(&report);
    }
    println!(
        "{} subjects, {} queries, encoder {}, distractors from {} ({} available)",
        report.subjects, report.queries, report.encoder, report.distractor_source, report.pool
    );
    let mut t = output::table(&["concepts", "distractors", "recall@1", "recall@5", "mrr"]);
    for p in &report.points {
        t.add_row(vec![
            p.concepts.to_string(),
            p.distractors.to_string(),
            format!("{:.3}", p.recall_at_1),
            format!("{:.3}", p.recall_at_5),
            format!("{:.3}", p.mrr),
        ]);
    }
    println!("{t}");
    println!(
        "{:.0} ms per query; curve in {}, plot in {}",
        report.ms_per_query,
        curve.display(),
        plot.display()
    );
    Ok(())
}

fn run_retrieval(ctx: &Context, config: &RetrievalEvalConfig) -> Result<()> {
    let encoder = ctx.engine()?.require_encoder()?;
    let bar = output::progress(0, ctx.json, "querying");
    let report = retrieval::run(config, encoder, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if ctx.json {
        return output::print_json(&report);
    }
    println!(
        "{} subjects, {} queries, encoder {}, refs {}, decision: floor {:.3}, margin {:.3}",
        report.subjects,
        report.totals.queries,
        report.encoder,
        report.refs,
        report.threshold,
        report.margin
    );
    let mut t = output::table(&[
        "subject", "queries", "top-1", "recall@5", "mrr", "pos acc", "neg acc", "weighted",
    ]);
    let row = |name: &str, f: &retrieval::Figures| {
        vec![
            name.to_string(),
            f.queries.to_string(),
            format!("{:.3}", f.top1),
            format!("{:.3}", f.recall_at_5),
            format!("{:.3}", f.mrr),
            format!("{:.3}", f.positive_accuracy),
            format!("{:.3}", f.negative_accuracy),
            format!("{:.3}", f.weighted),
        ]
    };
    for (name, f) in &report.per_subject {
        t.add_row(row(name, f));
    }
    t.add_row(row("TOTAL", &report.totals));
    println!("{t}");
    println!(
        "{:.0} ms per query; best on this data: decision floor {:.3} margin {:.3} (weighted {:.3}), plain threshold {:.3} (weighted {:.3})",
        report.ms_per_query,
        report.best_decision.0,
        report.best_decision.1,
        report.best_decision.2,
        report.best_threshold.0,
        report.best_threshold.1
    );
    Ok(())
}
