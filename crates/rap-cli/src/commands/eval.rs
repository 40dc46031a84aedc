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
        /// One decision floor for every concept, for --retriever-only [default: each concept's
        /// floor, from the config's retrieval threshold and its stability]
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
    /// Open questions about concepts, scored by a rule: an answer is correct when it names the
    /// concept and states none of the entry's `contradict` phrases (facts its info rules out).
    /// Scores `--predictions FILE`, or runs `--file` (`{concept: {id: {question, expect,
    /// contradict}}}`, e.g. crates/rap-eval/data/example-open-questions.json).
    Open {
        #[command(flatten)]
        args: TaskArgs,
    },
    /// The photo library: index every photo of a folder-per-subject collection (plus
    /// distractors), add each subject from its first photo(s), and score `rap library find`
    /// per subject (precision, recall, precision@k), with indexing speed, disk per photo and
    /// find latency.
    Library {
        /// A folder with one folder of photos per subject (like dreambooth-dev)
        #[arg(long)]
        dataset: PathBuf,
        /// Photos per subject that become the concept's reference images
        #[arg(long, default_value_t = 1)]
        refs: usize,
        /// Folders of photos with none of the subjects, indexed too (repeatable)
        #[arg(long)]
        distractors: Vec<PathBuf>,
        /// The k of precision@k
        #[arg(long, default_value_t = 3)]
        k: usize,
        /// Decoding threads while indexing [default: the number of CPUs]
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Retrieval on a folder of subject folders: top-1, recall@5, MRR, recognition; with
    /// `--scenes N`, multi-concept precision/recall/F1 on synthetic scenes; with `--negatives
    /// DIR` or `--holdout`, negative accuracy; with `--distractors M`, recall@1/@5 as M
    /// distractor concepts fill the memory (JSON + SVG).
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
        /// How much each concept's floor follows its stability (0 = one floor for all)
        /// [default: the calibrated one]
        #[arg(long)]
        stability_weight: Option<f32>,
        /// Window sizes for region proposals, as fractions of the shorter side
        /// (comma-separated; `none` = the whole image only) [default: as `rap retrieve`]
        #[arg(long, value_delimiter = ',')]
        scales: Option<Vec<String>>,
        /// Encode every region of every query: no cascade (the smallest windows are otherwise
        /// skipped when the others already decide every concept)
        #[arg(long)]
        no_cascade: bool,
        /// The cascade's safety margin [default: the calibrated one]
        #[arg(long, conflicts_with = "no_cascade")]
        cascade_margin: Option<f32>,
        /// Only these subject folders make the memory and the queries (comma-separated)
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        subjects: Vec<String>,
        /// Subject folders kept out of the memory; their photos become negatives
        /// (comma-separated)
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        holdout: Vec<String>,
        /// Photos (searched recursively) that hold none of the concepts: negative accuracy;
        /// with --scenes, also the scenes' backgrounds
        #[arg(long, value_name = "DIR")]
        negatives: Option<PathBuf>,
        /// Synthetic scenes per size (2, 3 and 4 subjects pasted from their query photos):
        /// multi-concept precision, recall, F1 and box hits
        #[arg(long, value_name = "N", default_value_t = 0)]
        scenes: usize,
        /// Seed of the scenes
        #[arg(long, default_value_t = rap_dataset::scenes::DEFAULT_SEED, requires = "scenes")]
        seed: u64,
        /// Write the scenes (JPEG) and their labels.json to this folder
        #[arg(long, value_name = "DIR")]
        save_scenes: Option<PathBuf>,
        /// Scaling curve: add up to M distractor concepts, measuring at each step
        #[arg(
            long,
            value_name = "M",
            conflicts_with_all = ["subjects", "holdout", "negatives", "scenes", "save_scenes"]
        )]
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
        EvalCommand::Library {
            dataset,
            refs,
            distractors,
            k,
            workers,
        } => run_library(ctx, dataset, refs, distractors, k, workers),
        EvalCommand::Open { args } => {
            runner::run(ctx, Task::Open, args, runner::Mode::Model, false)
        }
        EvalCommand::Retrieval {
            dataset,
            refs,
            threshold,
            margin,
            stability_weight,
            scales,
            no_cascade,
            cascade_margin,
            subjects,
            holdout,
            negatives,
            scenes,
            seed,
            save_scenes,
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
                    if save_scenes.is_some() && scenes == 0 {
                        bail!("--save-scenes needs --scenes N");
                    }
                    let config = RetrievalEvalConfig {
                        threshold: threshold.unwrap_or(rap_engine::DEFAULT_THRESHOLD),
                        margin: margin.unwrap_or(rap_engine::DEFAULT_MARGIN),
                        stability_weight: stability_weight
                            .unwrap_or(rap_engine::DEFAULT_STABILITY_WEIGHT),
                        window_scales,
                        cascade: (!no_cascade)
                            .then(|| cascade_margin.unwrap_or(rap_engine::DEFAULT_CASCADE_MARGIN)),
                        subjects,
                        holdout,
                        negatives,
                        scenes,
                        scene_options: rap_dataset::scenes::SceneOptions {
                            seed,
                            ..Default::default()
                        },
                        save_scenes,
                        ..RetrievalEvalConfig::new(dataset, refs)
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

/// "N regions encoded per query (cascade ...)".
fn regions_line(cascade: Option<f32>, f: &retrieval::RegionFigures, per: &str) -> String {
    let how = match cascade {
        Some(m) => format!(
            "cascade margin {m:.3}: {:.1}% stopped at stage 1",
            f.stopped_at_stage_1 * 100.0
        ),
        None => "no cascade".to_string(),
    };
    format!("{:.2} regions encoded per {per} ({how})", f.per_query)
}

fn run_library(
    ctx: &Context,
    dataset: PathBuf,
    refs: usize,
    distractors: Vec<PathBuf>,
    k: usize,
    workers: Option<usize>,
) -> Result<()> {
    let encoder = ctx.engine()?.require_encoder()?;
    let config = rap_eval::library::LibraryEvalConfig {
        dataset,
        refs,
        distractors,
        k,
        workers: workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1),
        options: rap_app::generator::retrieve_options(&ctx.config()?),
    };
    let bar = output::progress(0, ctx.json, "indexing");
    let report = rap_eval::library::run(&config, encoder, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if ctx.json {
        return output::print_json(&report);
    }
    println!(
        "{} photos indexed ({} regions) in {:.1} s: {:.2} photos/s, {:.0} KB of store per photo; \
         encoder {}, refs {}",
        report.photos_indexed,
        report.regions,
        report.index_seconds,
        report.photos_per_sec,
        report.bytes_per_photo / 1024.0,
        report.encoder,
        report.refs
    );
    let pk = format!("precision@{}", report.k);
    let mut t = output::table(&[
        "subject",
        "photos",
        "found",
        "correct",
        "precision",
        "recall",
        &pk,
        "find ms",
    ]);
    for (name, s) in &report.per_subject {
        t.add_row(vec![
            name.clone(),
            s.photos.to_string(),
            s.found.to_string(),
            s.correct.to_string(),
            format!("{:.3}", s.precision),
            format!("{:.3}", s.recall),
            format!("{:.3}", s.precision_at_k),
            format!("{:.0}", s.find_ms),
        ]);
    }
    println!("{t}");
    println!(
        "mean over subjects: precision {:.3}, recall {:.3}, {pk} {:.3}; find {:.0} ms median, {:.0} ms max",
        report.mean_precision,
        report.mean_recall,
        report.mean_precision_at_k,
        report.find_ms_median,
        report.find_ms_max
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
        "{} subjects, {} queries, encoder {}, refs {}, decision: floor {:.3}, margin {:.3}, stability weight {:.2} (mean stability {})",
        report.subjects,
        report.totals.queries,
        report.encoder,
        report.refs,
        report.threshold,
        report.margin,
        config.stability_weight,
        report
            .mean_stability
            .map_or("-".to_string(), |s| format!("{s:.4}"))
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
        "{:.0} ms per query; best on this data: decision floor {:.3} margin {:.3} stability weight {:.2} (weighted {:.3}), plain threshold {:.3} (weighted {:.3})",
        report.ms_per_query,
        report.best_decision.floor,
        report.best_decision.margin,
        report.best_decision.stability_weight,
        report.best_decision.weighted,
        report.best_threshold.0,
        report.best_threshold.1
    );
    let fit = &report.confidence;
    let ece = |e: Option<f64>| e.map_or("-".to_string(), |e| format!("{e:.3}"));
    println!(
        "confidence on {} reported hits ({} right): calibration error {} as shipped, {} refitted here (b = [{:.3}, {:.3}, {:.3}])",
        fit.samples,
        fit.right,
        ece(fit.ece_shipped),
        ece(fit.ece_refitted),
        fit.coefficients[0],
        fit.coefficients[1],
        fit.coefficients[2]
    );
    println!("{}", regions_line(report.cascade, &report.regions, "query"));
    if let Some(scenes) = &report.scenes {
        println!("{}", regions_line(report.cascade, &scenes.regions, "scene"));
        print_scenes(scenes, config.save_scenes.as_deref());
    }
    let mut negatives: Vec<(String, &rap_eval::negatives::NegativeFigures)> = Vec::new();
    if let (Some(dir), Some(f)) = (&config.negatives, &report.negatives) {
        negatives.push((format!("--negatives {}", dir.display()), f));
    }
    for (name, f) in &report.holdout {
        negatives.push((format!("held-out {name}"), f));
    }
    if !negatives.is_empty() {
        println!();
        println!("Negatives (right = no image hit)");
        let mut t = output::table(&["photos of", "photos", "no hit", "neg acc", "fired most"]);
        for (what, f) in negatives {
            let fired: Vec<String> = f
                .fired
                .iter()
                .take(3)
                .map(|x| format!("{} ({})", x.concept, x.photos))
                .collect();
            t.add_row(vec![
                what,
                f.photos.to_string(),
                f.clean.to_string(),
                fixed(f.accuracy),
                fired.join(", "),
            ]);
        }
        println!("{t}");
    }
    Ok(())
}

/// A figure with 3 decimals, `-` when undefined.
fn fixed(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

fn print_scenes(report: &rap_eval::scenes::ScenesReport, saved: Option<&Path>) {
    println!();
    println!(
        "Scenes ({}x{}, {} backgrounds, seed {}; box hit = {})",
        report.width, report.height, report.backgrounds, report.seed, report.box_rule
    );
    let mut t = output::table(&[
        "subjects",
        "scenes",
        "pasted",
        "reported",
        "precision",
        "recall",
        "F1",
        "box hits",
    ]);
    for (size, f) in &report.per_size {
        t.add_row(vec![
            size.to_string(),
            f.scenes.to_string(),
            f.pasted.to_string(),
            f.reported.to_string(),
            fixed(f.precision),
            fixed(f.recall),
            fixed(f.f1),
            fixed(f.box_hit_rate),
        ]);
    }
    println!("{t}");
    print!("{:.0} ms per scene", report.ms_per_scene);
    match saved {
        Some(dir) => println!("; scenes and labels.json in {}", dir.display()),
        None => println!(),
    }
}
