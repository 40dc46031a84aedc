//! `rap dataset build | validate | stats`: RAP training data (see the `rap-dataset` crate).
//!
//! `build` writes the texts with the configured generator (`rap ask`'s: the local GGUF model or
//! an OpenAI-compatible server) when one is configured - `DATA_DIR/config.toml` exists or
//! `RAP_GENERATOR` is set - or when `--generator config` asks for it; otherwise, or with
//! `--generator none`, the deterministic fallbacks from the annotations are used.

use crate::context::Context;
use crate::output;
use anyhow::{bail, Context as _, Result};
use clap::{ArgGroup, Subcommand, ValueEnum};
use rap_core::{GenerationParams, Generator};
use rap_dataset::{BuildOptions, Input, TextGenerator, ValidateOptions, Writer};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Build a RAP training set (train.json, crops, images, a Hugging Face export) from COCO
    /// annotations or a folder of photo folders.
    Build(BuildArgs),
    /// Check a training file: images and crops decode, names, boxes, ids, schema.
    Validate(ValidateArgs),
    /// Describe a training file: samples by type, concepts per sample, noise, answer lengths,
    /// and an SVG chart.
    Stats(StatsArgs),
}

/// Who writes info, captions, descriptions and QA.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GeneratorChoice {
    /// The configured generator when DATA_DIR/config.toml exists or RAP_GENERATOR is set, else none
    Auto,
    /// Deterministic fallbacks from the annotations
    None,
    /// The configured generator (as `rap ask` uses it)
    Config,
}

#[derive(clap::Args)]
#[command(group(ArgGroup::new("input").required(true).args(["coco", "folders"])))]
pub struct BuildArgs {
    /// COCO annotation file (images, annotations with bbox, categories; optional track_id)
    #[arg(long, value_name = "ANNOTATIONS.json", requires = "images")]
    pub coco: Option<PathBuf>,
    /// The folder the COCO file_names are relative to
    #[arg(long, value_name = "DIR", requires = "coco")]
    pub images: Option<PathBuf>,
    /// A folder with one folder of photos per subject (like dreambooth-dev)
    #[arg(long, value_name = "DIR")]
    pub folders: Option<PathBuf>,
    /// Output folder (must not exist or be empty, unless --force)
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Seed for every random choice: the same seed gives the same bytes
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most concepts supplied with a sample (the trainer drops samples with more): 2 for
    /// RAP-LLaVA, 3 for RAP-Phi3-V
    #[arg(long, default_value_t = 2)]
    pub max_concepts: usize,
    /// Share of samples given noise concepts (not in the image, answer unchanged)
    #[arg(long, default_value_t = 0.5)]
    pub noise_rate: f64,
    /// Most noise concepts per sample (K)
    #[arg(long, default_value_t = 2)]
    pub noise_max: usize,
    /// Augmented views (flips, rotations) written per concept crop
    #[arg(long, default_value_t = 1)]
    pub augment: usize,
    /// Margin around a box before cropping, as a share of its size
    #[arg(long, default_value_t = 0.1)]
    pub margin: f64,
    /// Skip boxes whose shorter side is under this many pixels
    #[arg(long, default_value_t = 32.0)]
    pub min_box: f64,
    /// Collages of two subjects (photo folders only) [default: one per subject]
    #[arg(long)]
    pub collages: Option<usize>,
    /// Names for the concepts, one per line [default: made-up names]
    #[arg(long, value_name = "FILE")]
    pub names: Option<PathBuf>,
    /// Who writes info, captions, descriptions and QA
    #[arg(long, value_enum, default_value = "auto")]
    pub generator: GeneratorChoice,
    /// Replace OUT when it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The training file (train.json)
    pub file: PathBuf,
    /// Folder the image and crop paths are relative to [default: the file's folder]
    #[arg(long, value_name = "DIR")]
    pub image_folder: Option<PathBuf>,
    /// Faults listed in the text output (all are in --json)
    #[arg(long, default_value_t = 20)]
    pub show: usize,
}

#[derive(clap::Args)]
pub struct StatsArgs {
    /// The training file (train.json)
    pub file: PathBuf,
    /// Where to write the SVG chart [default: FILE's name with .stats.svg, beside it]
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
}

pub fn run(ctx: &Context, cmd: DatasetCommand) -> Result<()> {
    let limits = *ctx.limits();
    match cmd {
        DatasetCommand::Build(args) => build(ctx, limits, args),
        DatasetCommand::Validate(args) => validate(ctx, limits, args),
        DatasetCommand::Stats(args) => stats(ctx, args),
    }
}

/// A progress callback over stages, on one bar.
fn stage_progress(json: bool) -> (indicatif::ProgressBar, impl FnMut(&str, usize, usize)) {
    let bar = output::progress(0, json, "building");
    let b = bar.clone();
    let mut current = String::new();
    let f = move |stage: &str, done: usize, total: usize| {
        if stage != current {
            current = stage.to_string();
            b.set_message(current.clone());
            b.reset();
        }
        b.set_length(total as u64);
        b.set_position(done as u64);
    };
    (bar, f)
}

fn build(ctx: &Context, limits: rap_image::Limits, args: BuildArgs) -> Result<()> {
    let input = match (&args.coco, &args.images, &args.folders) {
        (Some(a), Some(i), None) => Input::Coco {
            annotations: a.clone(),
            images: i.clone(),
        },
        (None, None, Some(f)) => Input::Folders(f.clone()),
        _ => bail!("give either --coco FILE --images DIR, or --folders DIR"),
    };
    let names = match &args.names {
        Some(p) => Some(rap_dataset::names::read_names(p)?),
        None => None,
    };
    let opts = BuildOptions {
        seed: args.seed,
        max_concepts: args.max_concepts,
        noise_rate: args.noise_rate,
        noise_max: args.noise_max,
        augment: args.augment,
        margin: args.margin,
        min_box: args.min_box,
        collages: args.collages,
        names,
        force: args.force,
        crop_max_side: BuildOptions::default().crop_max_side,
        limits,
    };
    let use_generator = match args.generator {
        GeneratorChoice::None => false,
        GeneratorChoice::Config => true,
        GeneratorChoice::Auto => {
            ctx.data_dir.join(rap_app::config::FILE_NAME).exists()
                || std::env::var_os("RAP_GENERATOR").is_some()
        }
    };
    // The generator lives for the whole build.
    let loaded = if use_generator {
        Some(ctx.app().generator(&ctx.config()?, None)?)
    } else {
        None
    };
    let generator: Option<&dyn Generator> = loaded.as_ref().map(|l| l.generator());
    let stop = loaded.as_ref().map(|l| l.stop()).unwrap_or_default();
    let model = generator.map(|g| g.info().model.clone());
    let mut writer = Writer::new(generator.map(|g| TextGenerator {
        generator: g,
        params: GenerationParams {
            max_tokens: 256,
            temperature: 0.0,
            seed: Some(args.seed),
            stop: stop.clone(),
            ..GenerationParams::default()
        },
    }));
    let (bar, mut progress) = stage_progress(ctx.json);
    let started = std::time::Instant::now();
    let report = rap_dataset::build(&input, &args.out, &opts, &mut writer, model, &mut progress)?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if ctx.json {
        let mut v = serde_json::to_value(&report)?;
        v["seconds"] = serde_json::json!((seconds * 1000.0).round() / 1000.0);
        return output::print_json(&v);
    }
    println!(
        "wrote {} samples to {} in {seconds:.1}s (seed {})",
        report.samples,
        report.out.join("train.json").display(),
        report.seed
    );
    let mut t = output::table(&["type", "samples"]);
    for (k, v) in &report.by_type {
        t.add_row(vec![k.clone(), v.to_string()]);
    }
    println!("{t}");
    println!(
        "{} concepts, {} scenes ({} collages), {} crops ({} augmented views)",
        report.concepts, report.scenes, report.collages, report.crops, report.augmented_views
    );
    println!(
        "noise: {:.1}% of samples, {} noise concepts; dropped over --max-concepts: {}",
        report.noise_rate * 100.0,
        report.noise_concepts,
        report.dropped_max_concepts
    );
    match &report.generator {
        Some(m) => println!(
            "texts: {} by {m}, {} refused by the checks, {} fallbacks",
            report.text.generated, report.text.rejected, report.text.fallback
        ),
        None => println!(
            "texts: {} from the annotations (no generator)",
            report.text.fallback
        ),
    }
    for (why, n) in &report.skipped {
        println!("skipped: {n} ({why})");
    }
    println!(
        "also: {} (Hugging Face chat format), {}",
        report.out.join("train_hf.jsonl").display(),
        report.out.join("build.json").display()
    );
    Ok(())
}

fn validate(ctx: &Context, limits: rap_image::Limits, args: ValidateArgs) -> Result<()> {
    let opts = ValidateOptions {
        image_folder: args.image_folder.clone(),
        limits,
    };
    let bar = output::progress(0, ctx.json, "checking");
    let report = rap_dataset::validate(&args.file, &opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    if ctx.json {
        output::print_json(&report)?;
        if !report.ok {
            // The report is the output; the exit status says it failed.
            std::process::exit(1);
        }
        return Ok(());
    }
    let mut t = output::table(&["type", "samples", "faulty"]);
    for (k, row) in &report.by_type {
        t.add_row(vec![
            k.clone(),
            row.samples.to_string(),
            row.faulty.to_string(),
        ]);
    }
    t.add_row(vec![
        "total".to_string(),
        report.samples.to_string(),
        report.faulty_samples.to_string(),
    ]);
    println!("{t}");
    println!(
        "{} image and crop files checked in {}",
        report.files_checked,
        report.image_folder.display()
    );
    if report.ok {
        println!("ok: no faults");
        return Ok(());
    }
    let mut t = output::table(&["sample", "id", "fault", "what"]);
    for f in report.faults.iter().take(args.show) {
        t.add_row(vec![
            f.index.to_string(),
            f.id.clone().unwrap_or_else(|| "-".into()),
            f.kind.as_str().to_string(),
            f.message.clone(),
        ]);
    }
    println!("{t}");
    if report.faults.len() > args.show {
        println!(
            "... and {} more (--json lists all)",
            report.faults.len() - args.show
        );
    }
    let counts: Vec<String> = report
        .fault_counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    bail!(
        "{}: {} faults in {} of {} samples ({})",
        args.file.display(),
        report.faults.len(),
        report.faulty_samples,
        report.samples,
        counts.join(", ")
    )
}

/// `train.json` -> `train.stats.svg` beside it.
fn default_svg(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    file.with_file_name(format!("{stem}.stats.svg"))
}

fn stats(ctx: &Context, args: StatsArgs) -> Result<()> {
    let s = rap_dataset::stats(&args.file)?;
    let svg_path = args.svg.clone().unwrap_or_else(|| default_svg(&args.file));
    // Written beside its final name, then renamed: never a half-written chart.
    let tmp = svg_path.with_extension("svg.tmp");
    std::fs::write(&tmp, rap_dataset::svg(&s)).with_context(|| tmp.display().to_string())?;
    std::fs::rename(&tmp, &svg_path).with_context(|| svg_path.display().to_string())?;
    if ctx.json {
        let mut v = serde_json::to_value(&s)?;
        v["svg"] = serde_json::json!(svg_path);
        return output::print_json(&v);
    }
    println!("{}: {} samples", args.file.display(), s.samples);
    if s.unreadable > 0 {
        println!("unreadable samples (skipped): {}", s.unreadable);
    }
    let mut t = output::table(&["type", "samples", "share"]);
    for (k, v) in &s.by_type {
        let share = if s.samples > 0 {
            *v as f64 / s.samples as f64
        } else {
            0.0
        };
        t.add_row(vec![
            k.clone(),
            v.to_string(),
            format!("{:.1}%", share * 100.0),
        ]);
    }
    println!("{t}");
    let mut t = output::table(&["concepts supplied", "samples"]);
    for (k, v) in &s.concepts_per_sample {
        t.add_row(vec![k.to_string(), v.to_string()]);
    }
    println!("{t}");
    println!(
        "mean {:.2} concepts per sample; noise (supplied, never named): {:.1}% of samples, {} concepts",
        s.mean_concepts,
        s.noise_rate * 100.0,
        s.noise_concepts
    );
    println!(
        "{} distinct concepts, {} images, {} crops",
        s.distinct_concepts, s.distinct_images, s.distinct_crops
    );
    let mut t = output::table(&["answer words", "answers"]);
    for b in &s.answer_words {
        t.add_row(vec![b.label.clone(), b.count.to_string()]);
    }
    println!("{t}");
    println!(
        "answers: {}, mean {:.1} words, longest {}",
        s.answers, s.mean_answer_words, s.max_answer_words
    );
    println!("chart: {}", svg_path.display());
    Ok(())
}
