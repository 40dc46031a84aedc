//! `rap eval caption|recognition|qa`: score a predictions file, or first produce it with our
//! pipeline from one of the reference's evaluation input files.
//!
//! A run asks each item through [`rap_engine::Engine::answer`] with the generator `rap ask`
//! uses ([`LoadedGenerator`], the same retrieval settings), or, for recognition with
//! `--retriever-only`, answers yes/no from the retriever's score against the threshold. Answers
//! go to the predictions file through a [`Journal`], so a run that is interrupted (Ctrl-C, a
//! kill, a crash) and started again asks only what is not answered yet. `--limit N` runs the
//! first N items (a later run with a larger limit, or none, carries on).

use crate::commands::ask::retrieve_options;

use crate::context::Context;
use crate::output;
use anyhow::{bail, Context as _, Result};
use rap_app::config::{Config, GeneratorKind};
use rap_core::{ConceptId, Message};
use rap_engine::Question;
use rap_eval::journal::Journal;
use rap_eval::tasks::{self, EvalItem, Task};
use rap_eval::{
    read_caption_predictions, read_open_predictions, read_qa_predictions,
    read_recognition_predictions, score_captions, score_open, score_qa, score_recognition,
    Vocabulary,
};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct TaskArgs {
    /// Predictions file: scored as it is, or with --file where the answers are written (and
    /// resumed from) [default with --file: ./STEM.TASK.predictions.json]
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// An evaluation input file in the reference's format: answer it with our pipeline, then
    /// score the answers
    #[arg(long)]
    file: Option<PathBuf>,
    /// Folder the eval file's image paths are relative to [default: the eval file's folder]
    #[arg(long, requires = "file")]
    images_root: Option<PathBuf>,
    /// Local model (catalogue name) [default: the configured generator]
    #[arg(long, requires = "file")]
    model: Option<String>,
    /// A local LLaVA model's weights: none, q8_0 or q4k, quantized while loading
    /// [default: the config's generator.llava.quantize]
    #[arg(long, requires = "file", value_name = "none|q8_0|q4k")]
    quantize: Option<String>,
    /// Concepts retrieved per question [default: the config's retrieval.top_k]
    #[arg(long, requires = "file")]
    top_k: Option<usize>,
    /// Give the model the item's own concepts instead of retrieving (perfect retrieval)
    #[arg(long, requires = "file")]
    skip_retrieval: bool,
    /// Answer only the first N items of the file
    #[arg(long, requires = "file")]
    limit: Option<usize>,
    /// QA: ask every multiple-choice question once per rotation of its options and count it
    /// right only if every rotation is (MMBench's CircularEval)
    #[arg(long, requires = "file")]
    circular: bool,
    /// Most tokens per answer (the reference's evaluation uses 128)
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy, so reruns agree
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Random seed for sampling
    #[arg(long)]
    seed: Option<u64>,
}

/// How answers are produced.
pub enum Mode {
    /// The configured (or `--model`) generator through the engine.
    Model,
    /// The retriever's score against a threshold (recognition only).
    Retriever {
        threshold: Option<f32>,
        scales: Vec<f32>,
    },
}

/// What a run did.
#[derive(serde::Serialize)]
struct RunSummary {
    eval_file: PathBuf,
    items: usize,
    asked: usize,
    already_answered: usize,
    /// The generator (or retriever) and settings that produced the answers.
    run: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    qa_kind: Option<tasks::QaKind>,
}

pub fn run(
    ctx: &Context,
    task: Task,
    args: TaskArgs,
    mode: Mode,
    targets_only: bool,
) -> Result<()> {
    let (path, summary) = match &args.file {
        Some(file) => {
            let path = args
                .predictions
                .clone()
                .unwrap_or_else(|| default_predictions(file, task, &mode, args.circular));
            let summary = answer_file(ctx, task, &args, file, &path, &mode)?;
            (path, Some(summary))
        }
        None => match &args.predictions {
            Some(p) => (p.clone(), None),
            None => bail!(
                "pass --predictions FILE to score saved answers, or --file EVAL_FILE to answer \
                 an evaluation file first"
            ),
        },
    };
    score(ctx, task, &path, summary, targets_only)
}

fn default_predictions(file: &Path, task: Task, mode: &Mode, circular: bool) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "eval".into());
    let how = match mode {
        Mode::Model => "",
        Mode::Retriever { .. } => "-retriever",
    };
    let circular = if circular { "-circular" } else { "" };
    PathBuf::from(format!(
        "{stem}.{}{how}{circular}.predictions.json",
        task.as_str()
    ))
}

/// Checks the file's images and concepts before anything is asked.
fn check_items(ctx: &Context, items: &[EvalItem], root: &Path) -> Result<()> {
    let mut missing: Vec<PathBuf> = items
        .iter()
        .filter_map(|i| i.image.as_deref())
        .map(|im| tasks::image_path(root, im))
        .filter(|p| !p.is_file())
        .collect();
    missing.sort();
    missing.dedup();
    if let Some(first) = missing.first() {
        bail!(
            "{} of the eval file's images are missing, e.g. {} (pass --images-root: the folder \
             the file's image paths are relative to)",
            missing.len(),
            first.display()
        );
    }
    let engine = ctx.engine()?;
    let mut known = BTreeSet::new();
    for c in engine.concepts(&ctx.tenant)? {
        known.insert(c.name.to_lowercase());
        known.extend(c.aliases.iter().map(|a| a.to_lowercase()));
    }
    let unknown: BTreeSet<&str> = items
        .iter()
        .flat_map(|i| i.concepts.iter())
        .filter(|c| !known.contains(&c.to_lowercase()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let list: Vec<&str> = unknown.iter().take(8).copied().collect();
        bail!(
            "the memory (tenant {}) has no concept {}{}: add them first (`rap import` a \
             database.json or `rap concept add`)",
            ctx.tenant,
            list.join(", "),
            if unknown.len() > list.len() {
                format!(" and {} more", unknown.len() - list.len())
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn answer_file(
    ctx: &Context,
    task: Task,
    args: &TaskArgs,
    file: &Path,
    path: &Path,
    mode: &Mode,
) -> Result<RunSummary> {
    if matches!(mode, Mode::Retriever { .. }) && task != Task::Recognition {
        bail!("--retriever-only answers recognition only");
    }
    if args.top_k == Some(0) {
        bail!("--top-k must be at least 1");
    }
    let (mut items, qa_kind) = tasks::read_eval_file(task, file)?;
    if let Some(n) = args.limit {
        items.truncate(n);
    }
    if args.circular {
        if task != Task::Qa {
            bail!("--circular is for multiple-choice QA (rap eval qa)");
        }
        items = tasks::circular_qa_items(items);
    }
    if items.is_empty() {
        bail!("{}: no items to answer", file.display());
    }
    let root = match &args.images_root {
        Some(r) => r.clone(),
        None => file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    check_items(ctx, &items, &root)?;
    let mut journal = Journal::open(path, task)?;
    let pending: Vec<&EvalItem> = items.iter().filter(|i| !journal.contains(&i.key)).collect();
    let mut config = ctx.config()?;
    crate::context::apply_quantize(&mut config, args.quantize.as_deref())?;
    // The retriever's decision: the config's, with one floor for every concept where
    // --threshold gives it.
    let decision = {
        let options = rap_app::generator::retrieve_options(&config);
        match mode {
            Mode::Retriever {
                threshold: Some(t), ..
            } => options.with_fixed_floor(*t),
            _ => options,
        }
    };
    // What produces the answers; rows already there must come from the same.
    let run = match mode {
        Mode::Model => format!(
            "{}; {}; temperature {}",
            generator_name(&config, args.model.as_deref()),
            if args.skip_retrieval {
                "skip-retrieval".to_string()
            } else {
                format!("top-k {}", args.top_k.unwrap_or(config.retrieval.top_k))
            },
            args.temperature
        ),
        Mode::Retriever { scales, .. } => {
            format!(
                "retriever; floor {} (stability weight {}); margin {}; scales {scales:?}",
                decision.threshold, decision.stability_weight, decision.margin
            )
        }
    };
    journal.check_run(&run)?;
    let summary = RunSummary {
        eval_file: file.to_path_buf(),
        items: items.len(),
        asked: pending.len(),
        already_answered: items.len() - pending.len(),
        run: run.clone(),
        qa_kind,
    };
    if !pending.is_empty() {
        match mode {
            Mode::Model => ask_model(ctx, &config, args, &run, &root, &pending, &mut journal)?,
            Mode::Retriever { scales, .. } => {
                retriever_answers(ctx, &decision, scales, &run, &root, &pending, &mut journal)?
            }
        }
    }
    let order: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
    journal.finish(&order)?;
    Ok(summary)
}

fn read_image(root: &Path, item: &EvalItem) -> Result<Option<Vec<u8>>> {
    match &item.image {
        Some(im) => {
            let p = tasks::image_path(root, im);
            Ok(Some(
                std::fs::read(&p).with_context(|| p.display().to_string())?,
            ))
        }
        None => Ok(None),
    }
}

/// The generator a run uses, as the config (or `--model`) names it.
fn generator_name(config: &Config, model: Option<&str>) -> String {
    match (config.generator.kind, model) {
        (_, Some(m)) => m.to_string(),
        (GeneratorKind::Local, None) => match &config.generator.path {
            Some(p) => format!("llava {}", p.display()),
            None => config.generator.model.clone(),
        },
        (GeneratorKind::Openai, None) => match &config.generator.openai {
            Some(o) => format!("openai {} at {}", o.model, o.base_url),
            None => "openai".to_string(),
        },
    }
}

fn ask_model(
    ctx: &Context,
    config: &Config,
    args: &TaskArgs,
    run: &str,
    root: &Path,
    pending: &[&EvalItem],
    journal: &mut Journal,
) -> Result<()> {
    let loaded = ctx.generator(config, args.model.as_deref())?;
    let params = loaded.params(config, args.max_tokens, Some(args.temperature), args.seed);
    let mut retrieve = retrieve_options(config);
    if let Some(k) = args.top_k {
        retrieve.top_k = k;
    }
    let engine = ctx.engine()?;
    let count = |m: &[Message]| loaded.count_tokens(m);
    let bar = output::progress(pending.len() as u64, ctx.json, "asking");
    for item in pending {
        let image = read_image(root, item)?;
        let question = Question {
            text: &item.prompt,
            image: image.as_deref(),
            concepts: if args.skip_retrieval {
                item.concepts.clone()
            } else {
                Vec::new()
            },
            retrieve: retrieve.clone(),
        };
        let answer = engine
            .answer(
                &ctx.tenant,
                &question,
                loaded.generator(),
                Some(&count),
                &params,
                &mut |_| true,
            )
            .with_context(|| format!("item {}", item.key))?;
        let used: Vec<String> = answer.concepts.iter().map(|c| c.name.clone()).collect();
        let row = tasks::prediction(item, answer.text.trim(), &used, run);
        journal.record(&item.key, row, run)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Yes when retrieval's `decision` finds the row's concept in the image. Rows of one image are
/// scored once.
fn retriever_answers(
    ctx: &Context,
    decision: &rap_engine::RetrieveOptions,
    scales: &[f32],
    run: &str,
    root: &Path,
    pending: &[&EvalItem],
    journal: &mut Journal,
) -> Result<()> {
    let engine = ctx.engine()?;
    let mut names: HashMap<ConceptId, Vec<String>> = HashMap::new();
    for c in engine.concepts(&ctx.tenant)? {
        let mut all = vec![c.name.to_lowercase()];
        all.extend(c.aliases.iter().map(|a| a.to_lowercase()));
        names.insert(c.id, all);
    }
    let bar = output::progress(pending.len() as u64, ctx.json, "retrieving");
    // Yes when retrieval's decision (floor, margins, one concept per region) reports the
    // concept, as `rap retrieve` would.
    let options = rap_engine::RetrieveOptions {
        window_scales: scales.to_vec(),
        ..decision.clone()
    };
    let mut cached: Option<(String, Vec<rap_engine::ConceptScore>)> = None;
    for item in pending {
        let image = item.image.clone().unwrap_or_default();
        if cached.as_ref().is_none_or(|(im, _)| *im != image) {
            let bytes = read_image(root, item)?.unwrap_or_default();
            let mut timings = rap_engine::retrieve::Timings::default();
            let scored = engine
                .recognize(&ctx.tenant, &bytes, &options, &mut timings, &mut Vec::new())
                .with_context(|| image.clone())?;
            cached = Some((image.clone(), scored));
        }
        let scored = cached.as_ref().map(|(_, s)| s.as_slice()).unwrap_or(&[]);
        let concept = item.concepts.first().map(|c| c.to_lowercase());
        let found = scored.iter().find(|c| {
            names
                .get(&c.id)
                .is_some_and(|ns| concept.as_ref().is_some_and(|c| ns.contains(c)))
        });
        let score = found.map(|c| c.score);
        let yes = found.is_some_and(|c| c.present);
        let used: Vec<String> = if yes {
            item.concepts.clone()
        } else {
            Vec::new()
        };
        let mut row = tasks::prediction(item, if yes { "Yes" } else { "No" }, &used, run);
        row["score"] = serde_json::json!(score);
        journal.record(&item.key, row, run)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.4}"))
}

fn score(
    ctx: &Context,
    task: Task,
    path: &Path,
    summary: Option<RunSummary>,
    targets_only: bool,
) -> Result<()> {
    let report = match task {
        Task::Caption => {
            let items = read_caption_predictions(path)?;
            // The memory's names and aliases, when this data dir has a memory.
            let has_memory = rap_engine::EngineConfig::new(&ctx.data_dir)
                .store_path()
                .exists();
            let vocab = if !targets_only && has_memory {
                let concepts = ctx.engine()?.concepts(&ctx.tenant)?;
                (!concepts.is_empty()).then(|| Vocabulary::from_concepts(&concepts))
            } else {
                None
            };
            let r = score_captions(&items, vocab.as_ref());
            if !ctx.json {
                println!(
                    "{} captions, {} target concepts, {} names found ({} names known, from {}), \
                     {} correct",
                    r.images,
                    r.targets,
                    r.found,
                    vocab.as_ref().map_or(
                        rap_eval::caption::all_targets(&items).len(),
                        Vocabulary::len
                    ),
                    if vocab.is_some() {
                        "the memory"
                    } else {
                        "the targets"
                    },
                    r.correct
                );
                println!(
                    "recall {}  precision {}  F1 {}",
                    pct(r.recall),
                    pct(r.precision),
                    pct(r.f1)
                );
            }
            serde_json::to_value(&r)?
        }
        Task::Recognition => {
            let r = score_recognition(&read_recognition_predictions(path)?);
            if !ctx.json {
                println!(
                    "{} rows: {} with correct_answer true, {} false",
                    r.total, r.positives, r.negatives
                );
                println!(
                    "positive accuracy {}  negative accuracy {}  weighted {}",
                    pct(r.positive_accuracy),
                    pct(r.negative_accuracy),
                    pct(r.weighted)
                );
                if !r.unparsed.is_empty() {
                    println!(
                        "{} answers were neither yes nor no (counted wrong)",
                        r.unparsed.len()
                    );
                }
                if r.type_mismatches > 0 {
                    println!(
                        "{} rows have a `type` that disagrees with correct_answer (scored by \
                         correct_answer)",
                        r.type_mismatches
                    );
                }
            }
            serde_json::to_value(&r)?
        }
        Task::Qa => {
            let r = score_qa(&read_qa_predictions(path)?);
            if !ctx.json {
                // A circular run's rows are answers, one per rotation of each question.
                let rows = if r.circular.is_some() {
                    "answers"
                } else {
                    "questions"
                };
                println!(
                    "{} {rows}, {} correct: accuracy {}",
                    r.total,
                    r.correct,
                    pct(r.accuracy)
                );
                if let Some(c) = &r.circular {
                    println!(
                        "circular: {} of {} questions right in every rotation of their options: \
                         accuracy {}",
                        c.correct,
                        c.questions,
                        pct(c.accuracy)
                    );
                }
                if let Some(letter) = r.majority_letter {
                    println!(
                        "majority-letter baseline (always answering {letter}): {}",
                        pct(r.majority_baseline)
                    );
                }
            }
            serde_json::to_value(&r)?
        }
        Task::Open => {
            let r = score_open(&read_open_predictions(path)?);
            if !ctx.json {
                println!(
                    "{} answers: {} name their concept, {} contradict its info; correct (named, \
                     no contradiction) {}: accuracy {}",
                    r.total,
                    r.named,
                    r.contradicted,
                    r.correct,
                    pct(r.accuracy)
                );
                println!(
                    "informative (correct and stating an expected fact): {}: {}",
                    r.informative,
                    pct(r.informative_rate)
                );
            }
            serde_json::to_value(&r)?
        }
    };
    if ctx.json {
        let mut out = serde_json::json!({
            "task": task.as_str(),
            "predictions": path,
            "scores": report,
        });
        if let Some(s) = &summary {
            out["run"] = serde_json::to_value(s)?;
        }
        return output::print_json(&out);
    }
    match summary {
        Some(s) => println!(
            "predictions: {} ({} asked now, {} already answered)",
            path.display(),
            s.asked,
            s.already_answered
        ),
        None => println!("predictions: {}", path.display()),
    }
    Ok(())
}
