//! Retrieval evaluation on a folder-per-subject photo collection (like dreambooth-dev).
//!
//! For each subject the first `refs` photos (sorted by file name) become one concept in a
//! fresh temporary memory; every other photo is a query against the memory of all subjects.
//! Reported: top-1 accuracy, recall@5, MRR (by raw score), and recognition by retrieval's
//! decision (`rap_engine::retrieve`: floor, margin over the runner-up concept, one concept per
//! region) - positive accuracy (the right subject is reported), negative accuracy (each wrong
//! subject is not), weighted = their mean - in total and per subject, plus time per query.
//! Each query's evidence is kept so the decision can be calibrated on the same queries and on
//! the photos of nothing in the memory (`--holdout`, `--negatives`): [`best_decision`] counts
//! every (photo, concept) question as the reference's recognition task does
//! ([`recognition_accuracy`]; [`best_threshold`] does it for a plain threshold on raw scores,
//! queries only); with
//! the cascade on ([`rap_engine::cascade`], the default), a query it stopped at stage 1 keeps
//! only those regions' evidence, so calibrate with it off (`--no-cascade`). The regions
//! encoded per query and the share of queries stopped at stage 1 are reported.
//!
//! Harder evaluations judge what [`Engine::retrieve`] reports (its image hits), with the
//! options of [`retrieve_options`]: `--scenes N` (several subjects pasted in one photo,
//! [`crate::scenes`]), `--negatives DIR` (photos with none of the concepts,
//! [`crate::negatives`]); `--subjects` restricts the memory and the queries to some subject
//! folders, and `--holdout` keeps subjects out of the memory and makes their photos negatives
//! ([`select_subjects`]).

use crate::negatives::{self, NegativeFigures};
use crate::scenes::{self, ScenesConfig, ScenesReport};
use rap_core::{Error, ImageEncoder, NewConcept, Result, Tenant};
use rap_engine::{ConceptScore, Engine, EngineConfig, Evidence, RetrieveOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How to run the evaluation.
#[derive(Debug, Clone)]
pub struct RetrievalEvalConfig {
    pub dataset: PathBuf,
    /// Photos per subject that become the concept's reference images.
    pub refs: usize,
    /// The decision's floor.
    pub threshold: f32,
    /// The decision's margin over the runner-up concept.
    pub margin: f32,
    /// How much each concept's floor follows its stability.
    pub stability_weight: f32,
    pub window_scales: Vec<f32>,
    /// The cascade's safety margin (`None`: every region of every query is encoded).
    pub cascade: Option<f32>,
    /// Only these subject folders make the memory and the queries (empty = all).
    pub subjects: Vec<String>,
    /// Subject folders kept out of the memory; all their photos become negatives.
    pub holdout: Vec<String>,
    /// A folder of photos (searched recursively) that hold none of the concepts; with
    /// `scenes`, they are also the scenes' backgrounds.
    pub negatives: Option<PathBuf>,
    /// Synthetic multi-subject scenes per scene size (0 = none), their seed and geometry,
    /// and where to save them.
    pub scenes: usize,
    pub scene_options: rap_dataset::scenes::SceneOptions,
    pub save_scenes: Option<PathBuf>,
}

impl RetrievalEvalConfig {
    /// The single-subject evaluation of `dataset` with `refs` references per subject, at the
    /// default threshold and window scales, without the harder evaluations.
    pub fn new(dataset: impl Into<PathBuf>, refs: usize) -> Self {
        RetrievalEvalConfig {
            dataset: dataset.into(),
            refs,
            threshold: rap_engine::DEFAULT_THRESHOLD,
            margin: rap_engine::DEFAULT_MARGIN,
            stability_weight: rap_engine::DEFAULT_STABILITY_WEIGHT,
            window_scales: RetrieveOptions::default().window_scales,
            cascade: RetrieveOptions::default().cascade,
            subjects: Vec::new(),
            holdout: Vec::new(),
            negatives: None,
            scenes: 0,
            scene_options: Default::default(),
            save_scenes: None,
        }
    }
}

/// The options of every query of the evaluation: the evaluation's decision (floor, margin),
/// window scales and cascade, and room for every concept of a memory of `concepts` (nothing is cut by
/// top-k).
pub fn retrieve_options(config: &RetrievalEvalConfig, concepts: usize) -> RetrieveOptions {
    RetrieveOptions {
        top_k: concepts.max(1),
        threshold: config.threshold,
        margin: config.margin,
        stability_weight: config.stability_weight,
        window_scales: config.window_scales.clone(),
        cascade: config.cascade,
        ..RetrieveOptions::default()
    }
}

/// Counts of the regions encoded over some queries (see [`rap_engine::cascade`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionTally {
    pub queries: usize,
    /// Queries the cascade stopped at stage 1.
    pub stopped: usize,
    pub encoded: usize,
}

impl RegionTally {
    /// Counts one query by its timings.
    pub fn add(&mut self, timings: &rap_engine::retrieve::Timings) {
        self.queries += 1;
        self.stopped += usize::from(timings.skipped > 0);
        self.encoded += timings.regions;
    }

    pub fn figures(&self) -> RegionFigures {
        let per_query = |n: usize| n as f64 / self.queries.max(1) as f64;
        RegionFigures {
            per_query: per_query(self.encoded),
            stopped_at_stage_1: per_query(self.stopped),
        }
    }
}

/// Regions encoded per query, and the share of queries the cascade stopped at stage 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RegionFigures {
    pub per_query: f64,
    pub stopped_at_stage_1: f64,
}

/// Figures over a set of queries.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Figures {
    pub queries: usize,
    pub top1: f64,
    pub recall_at_5: f64,
    pub mrr: f64,
    pub positive_accuracy: f64,
    pub negative_accuracy: f64,
    pub weighted: f64,
}

/// One query's outcome: the rank of the true subject (1-based; `None` if never retrieved),
/// its score, the scores of the other subjects, and what the decision reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueryOutcome {
    pub subject: String,
    pub photo: String,
    pub rank: Option<usize>,
    pub positive_score: f32,
    pub negative_scores: Vec<f32>,
    /// Whether the decision reported the true subject.
    pub reported: bool,
    /// How many other subjects the decision reported.
    pub false_alarms: usize,
}

/// The whole evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetrievalReport {
    pub encoder: String,
    pub subjects: usize,
    pub refs: usize,
    pub threshold: f32,
    pub margin: f32,
    /// The cascade's safety margin, if it was on.
    pub cascade: Option<f32>,
    #[serde(flatten)]
    pub totals: Figures,
    pub ms_per_query: f64,
    /// Regions encoded per query, and the share of queries stopped at stage 1.
    pub regions: RegionFigures,
    /// The plain threshold on raw scores that maximises the weighted recognition accuracy on
    /// this data, and that accuracy (for comparison; not used for the figures above).
    pub best_threshold: (f32, f64),
    /// The decision (floor, margin, stability weight) that maximises the weighted accuracy
    /// on this data (for calibration; not used for the figures above).
    pub best_decision: BestDecision,
    /// The best (floor, margin) at each stability weight tried.
    pub best_by_stability_weight: Vec<BestDecision>,
    /// The mean stability of the memory's concepts (what
    /// [`rap_engine::retrieve::REFERENCE_STABILITY`] is set from), over those measured.
    pub mean_stability: Option<f32>,
    /// The confidence, refitted on this data's reported hits, and how well the shipped one
    /// and the refitted one are calibrated here.
    pub confidence: ConfidenceFit,
    pub per_subject: BTreeMap<String, Figures>,
    #[serde(skip)]
    pub outcomes: Vec<QueryOutcome>,
    /// Multi-subject scenes (`--scenes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenes: Option<ScenesReport>,
    /// The `--negatives` photos.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negatives: Option<NegativeFigures>,
    /// The photos of each `--holdout` subject, as negatives.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub holdout: BTreeMap<String, NegativeFigures>,
}

const PHOTO_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// Whether `path` names a photo (by its extension).
pub fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| PHOTO_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
}

/// The subjects of a dataset folder: (name, photos sorted by file name).
pub fn subjects(dataset: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dataset).map_err(|e| Error::io(dataset, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dataset, e))?.path();
        if !path.is_dir() {
            continue;
        }
        let mut photos: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| Error::io(&path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_photo(p))
            .collect();
        photos.sort();
        if !photos.is_empty() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, photos));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "{} has no subject folders with photos",
            dataset.display()
        )));
    }
    Ok(out)
}

/// A subject folder's name and its photos.
pub type Subject = (String, Vec<PathBuf>);

/// Splits a dataset's subjects into (memory, holdout) by `--subjects` (empty = every subject)
/// and `--holdout`. Fails naming a subject that has no folder, or one that is in both lists,
/// or when nothing is left for the memory.
pub fn select_subjects(
    all: Vec<Subject>,
    only: &[String],
    holdout: &[String],
) -> Result<(Vec<Subject>, Vec<Subject>)> {
    for (flag, names) in [("--subjects", only), ("--holdout", holdout)] {
        let unknown: Vec<&str> = names
            .iter()
            .filter(|n| !all.iter().any(|(s, _)| s == *n))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            let have: Vec<&str> = all.iter().map(|(s, _)| s.as_str()).collect();
            return Err(Error::invalid(format!(
                "{flag}: no subject folder named {} (the dataset has {})",
                unknown.join(", "),
                have.join(", ")
            )));
        }
    }
    if let Some(both) = holdout.iter().find(|h| only.contains(h)) {
        return Err(Error::invalid(format!(
            "{both} is in both --subjects and --holdout"
        )));
    }
    let (held, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|(s, _)| holdout.contains(s));
    let memory: Vec<_> = rest
        .into_iter()
        .filter(|(s, _)| only.is_empty() || only.contains(s))
        .collect();
    if memory.is_empty() {
        return Err(Error::invalid(
            "no subjects left for the memory after --holdout",
        ));
    }
    Ok((memory, held))
}

/// Each subject's photos after its first `refs` (the references): what scenes may be cut from.
pub fn query_photos(
    subjects: &[(String, Vec<PathBuf>)],
    refs: usize,
) -> Vec<(String, Vec<PathBuf>)> {
    subjects
        .iter()
        .map(|(name, photos)| (name.clone(), photos.iter().skip(refs).cloned().collect()))
        .collect()
}

/// Figures of a set of outcomes, recognition by the decision they were made with.
pub fn figures(outcomes: &[&QueryOutcome]) -> Figures {
    recognition_figures(outcomes, &|o| o.reported, &|o| {
        (
            o.negative_scores.len() - o.false_alarms.min(o.negative_scores.len()),
            o.negative_scores.len(),
        )
    })
}

/// Figures of a set of outcomes, recognition by a plain threshold on raw scores (a concept is
/// reported when its score is at least `threshold`).
pub fn threshold_figures(outcomes: &[&QueryOutcome], threshold: f32) -> Figures {
    recognition_figures(outcomes, &|o| o.positive_score >= threshold, &|o| {
        (
            o.negative_scores.iter().filter(|s| **s < threshold).count(),
            o.negative_scores.len(),
        )
    })
}

/// Ranking figures, and recognition from `found` (the true subject reported) and `rejected`
/// (wrong subjects not reported, wrong subjects).
fn recognition_figures(
    outcomes: &[&QueryOutcome],
    found: &dyn Fn(&QueryOutcome) -> bool,
    rejected: &dyn Fn(&QueryOutcome) -> (usize, usize),
) -> Figures {
    let n = outcomes.len();
    if n == 0 {
        return Figures::default();
    }
    let mean =
        |f: &dyn Fn(&QueryOutcome) -> f64| outcomes.iter().map(|o| f(o)).sum::<f64>() / n as f64;
    let top1 = mean(&|o| (o.rank == Some(1)) as u8 as f64);
    let recall_at_5 = mean(&|o| o.rank.is_some_and(|r| r <= 5) as u8 as f64);
    let mrr = mean(&|o| o.rank.map_or(0.0, |r| 1.0 / r as f64));
    let positive_accuracy = mean(&|o| found(o) as u8 as f64);
    let (neg_right, neg_total) = outcomes.iter().fold((0usize, 0usize), |(r, t), o| {
        let (right, total) = rejected(o);
        (r + right, t + total)
    });
    let negative_accuracy = if neg_total == 0 {
        1.0
    } else {
        neg_right as f64 / neg_total as f64
    };
    Figures {
        queries: n,
        top1,
        recall_at_5,
        mrr,
        positive_accuracy,
        negative_accuracy,
        weighted: (positive_accuracy + negative_accuracy) / 2.0,
    }
}

/// The decision that [`best_decision`] finds best on some data.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BestDecision {
    pub floor: f32,
    pub margin: f32,
    pub stability_weight: f32,
    /// The weighted recognition accuracy it reaches.
    pub weighted: f64,
}

/// The stability weights [`best_decision`] tries.
pub const STABILITY_WEIGHTS: [f32; 9] = [0.0, -2.0, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 2.0];

/// The decision (floor, margin, stability weight) on a grid (floor 0.30..0.80 by 0.01, margin
/// 0..0.15 by 0.005, the [`STABILITY_WEIGHTS`]) that maximises the weighted recognition
/// accuracy ([`calibration_accuracy`]) over `queries` (each query's subject and evidence) and
/// `open_set` (the evidence of photos of nothing in the memory) in a memory of `subjects`
/// subjects; ties go to the weight listed first (0 first), then the lower floor, then the
/// lower margin.
pub fn best_decision(
    queries: &[(String, Evidence)],
    open_set: &[Evidence],
    subjects: usize,
    base: &RetrieveOptions,
) -> BestDecision {
    best_of(&best_decisions(queries, open_set, subjects, base), base)
}

/// The best of [`best_decisions`]' answers (ties to the earlier, lower weight).
pub fn best_of(by_weight: &[BestDecision], base: &RetrieveOptions) -> BestDecision {
    by_weight
        .iter()
        .copied()
        .fold(None::<BestDecision>, |best, d| match best {
            Some(b) if b.weighted + 1e-12 >= d.weighted => Some(b),
            _ => Some(d),
        })
        .unwrap_or(BestDecision {
            floor: base.threshold,
            margin: base.margin,
            stability_weight: base.stability_weight,
            weighted: f64::MIN,
        })
}

/// The weighted recognition accuracy of `options` on `queries` (each query's subject and
/// evidence) and `open_set` (photos of nothing in the memory): [`recognition_accuracy`] of
/// what the decision finds present in each.
pub fn calibration_accuracy(
    queries: &[(String, Evidence)],
    open_set: &[Evidence],
    subjects: usize,
    options: &RetrieveOptions,
) -> f64 {
    let decided: Vec<(&str, Vec<ConceptScore>)> = queries
        .iter()
        .map(|(subject, evidence)| (subject.as_str(), evidence.decide(options)))
        .collect();
    let open: Vec<Vec<ConceptScore>> = open_set.iter().map(|e| e.decide(options)).collect();
    recognition_accuracy(&decided, &open, subjects)
}

/// The weighted recognition accuracy as the reference's recognition task counts it, over
/// every (photo, concept) question in a memory of `subjects` subjects: the mean of the
/// accuracy on "yes" questions (each query photo and its own subject) and on "no" questions
/// (each query photo and every other subject; each `open_set` photo and every subject).
/// A concept counts as answered "yes" when the decision found it present.
pub fn recognition_accuracy(
    queries: &[(&str, Vec<ConceptScore>)],
    open_set: &[Vec<ConceptScore>],
    subjects: usize,
) -> f64 {
    let (mut found, mut rejected, mut noes) = (0usize, 0usize, 0usize);
    for (subject, decided) in queries {
        let outcome = decision_outcome(subject, subjects, decided);
        found += outcome.reported as usize;
        let others = subjects.saturating_sub(1);
        rejected += others - outcome.false_alarms.min(others);
        noes += others;
    }
    for decided in open_set {
        let present = decided.iter().filter(|c| c.present).count();
        rejected += subjects - present.min(subjects);
        noes += subjects;
    }
    let ratio = |right: usize, of: usize| {
        if of == 0 {
            1.0
        } else {
            right as f64 / of as f64
        }
    };
    (ratio(found, queries.len()) + ratio(rejected, noes)) / 2.0
}

/// For each of the [`STABILITY_WEIGHTS`], the (floor, margin) that [`best_decision`] would
/// pick at that weight: what the weight is worth on this data.
pub fn best_decisions(
    queries: &[(String, Evidence)],
    open_set: &[Evidence],
    subjects: usize,
    base: &RetrieveOptions,
) -> Vec<BestDecision> {
    let mut all = Vec::new();
    for w in STABILITY_WEIGHTS {
        let mut best = BestDecision {
            floor: base.threshold,
            margin: base.margin,
            stability_weight: w,
            weighted: f64::MIN,
        };
        for f in 30..=80 {
            for m in 0..=30 {
                let options = RetrieveOptions {
                    threshold: f as f32 / 100.0,
                    margin: m as f32 * 0.005,
                    stability_weight: w,
                    ..base.clone()
                };
                let weighted = calibration_accuracy(queries, open_set, subjects, &options);
                if weighted > best.weighted + 1e-12 {
                    best = BestDecision {
                        floor: options.threshold,
                        margin: options.margin,
                        stability_weight: w,
                        weighted,
                    };
                }
            }
        }
        all.push(best);
    }
    all
}

/// The hit confidence ([`rap_engine::retrieve::confidence`]) against what happened: refitted
/// on the reported hits of an evaluation, and the calibration of both.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConfidenceFit {
    /// Reported hits it was fitted on (single-subject queries and scenes), and how many of
    /// them were right.
    pub samples: usize,
    pub right: usize,
    /// `[b0, b1, b2]` fitted here.
    pub coefficients: [f32; 3],
    /// Expected calibration error (10 equal-width bins) of the shipped coefficients and of
    /// the refitted ones, on these hits.
    pub ece_shipped: Option<f64>,
    pub ece_refitted: Option<f64>,
}

impl ConfidenceFit {
    /// Fits and judges on `samples` (features, whether the hit was right).
    pub fn new(samples: &[([f32; 2], bool)]) -> Self {
        let coefficients = rap_engine::retrieve::fit_logistic(samples);
        let with = |b: [f32; 3]| {
            let predicted: Vec<(f64, bool)> = samples
                .iter()
                .map(|(x, y)| {
                    let z = b[0] + b[1] * x[0] + b[2] * x[1];
                    (1.0 / (1.0 + (-z as f64).exp()), *y)
                })
                .collect();
            expected_calibration_error(&predicted, 10)
        };
        ConfidenceFit {
            samples: samples.len(),
            right: samples.iter().filter(|(_, y)| *y).count(),
            coefficients,
            ece_shipped: with(rap_engine::retrieve::CONFIDENCE_COEFFICIENTS),
            ece_refitted: with(coefficients),
        }
    }
}

/// The expected calibration error of `(predicted probability, outcome)` pairs over `bins`
/// equal-width bins: the bins' mean |predicted - observed|, weighted by their share of the
/// samples. `None` without samples.
pub fn expected_calibration_error(predicted: &[(f64, bool)], bins: usize) -> Option<f64> {
    if predicted.is_empty() || bins == 0 {
        return None;
    }
    let mut sums = vec![(0.0f64, 0usize, 0usize); bins];
    for &(p, y) in predicted {
        let bin = ((p * bins as f64) as usize).min(bins - 1);
        sums[bin].0 += p;
        sums[bin].1 += 1;
        sums[bin].2 += usize::from(y);
    }
    let n = predicted.len() as f64;
    Some(
        sums.iter()
            .filter(|(_, count, _)| *count > 0)
            .map(|&(p, count, right)| {
                let c = count as f64;
                (c / n) * (p / c - right as f64 / c).abs()
            })
            .sum(),
    )
}

/// The recognition part of a query's outcome from a decision in a memory of `subjects`
/// subjects (ranks and scores left empty; every other subject counts as a negative, whether it
/// matched a region or not).
fn decision_outcome(subject: &str, subjects: usize, decided: &[ConceptScore]) -> QueryOutcome {
    let others = subjects.saturating_sub(1);
    QueryOutcome {
        subject: subject.to_string(),
        photo: String::new(),
        rank: None,
        positive_score: f32::NEG_INFINITY,
        negative_scores: vec![f32::NEG_INFINITY; others],
        reported: decided.iter().any(|c| c.present && c.name == subject),
        false_alarms: decided
            .iter()
            .filter(|c| c.present && c.name != subject)
            .count(),
    }
}

/// The threshold (midway between two observed scores) that maximises the weighted
/// recognition accuracy, with that accuracy.
pub fn best_threshold(outcomes: &[QueryOutcome]) -> (f32, f64) {
    let all: Vec<&QueryOutcome> = outcomes.iter().collect();
    let mut scores: Vec<f32> = outcomes
        .iter()
        .flat_map(|o| std::iter::once(o.positive_score).chain(o.negative_scores.iter().copied()))
        .filter(|s| s.is_finite())
        .collect();
    scores.sort_by(f32::total_cmp);
    scores.dedup();
    let mut best = (0.5, f64::MIN);
    for pair in scores.windows(2) {
        let t = (pair[0] + pair[1]) / 2.0;
        let w = threshold_figures(&all, t).weighted;
        if w > best.1 {
            best = (t, w);
        }
    }
    best
}

/// Runs the evaluation with `encoder` in a temporary memory.
pub fn run(
    config: &RetrievalEvalConfig,
    encoder: Arc<dyn ImageEncoder>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RetrievalReport> {
    if config.refs == 0 {
        return Err(Error::invalid("--refs must be at least 1"));
    }
    let (subjects, held_out) = select_subjects(
        subjects(&config.dataset)?,
        &config.subjects,
        &config.holdout,
    )?;
    // Validate the scenes and the negatives before the long part of the run.
    if config.scenes > 0 && subjects.len() < scenes::SIZES[0] {
        return Err(Error::invalid(format!(
            "--scenes needs at least {} subjects in the memory (have {})",
            scenes::SIZES[0],
            subjects.len()
        )));
    }
    let negative_photos = match &config.negatives {
        Some(dir) => negatives::photos_under(dir)?,
        None => Vec::new(),
    };
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let loader_encoder = encoder.clone();
    let engine = Engine::open(
        EngineConfig::new(scratch.path()),
        Box::new(move || Ok(Some(loader_encoder.clone()))),
    )?;
    let tenant = Tenant::new("eval")?;
    let mut queries = Vec::new();
    for (name, photos) in &subjects {
        if photos.len() <= config.refs {
            return Err(Error::invalid(format!(
                "subject {name} has {} photos: nothing left to query with --refs {}",
                photos.len(),
                config.refs
            )));
        }
        let images = photos[..config.refs]
            .iter()
            .map(|p| engine.read_image(p))
            .collect::<Result<Vec<_>>>()?;
        let new = NewConcept {
            name: name.clone(),
            ..Default::default()
        };
        engine.add_concept(&tenant, &new, images)?;
        queries.extend(
            photos[config.refs..]
                .iter()
                .map(|p| (name.clone(), p.clone())),
        );
    }
    let total = queries.len();
    let mut outcomes = Vec::with_capacity(total);
    let mut evidence = Vec::with_capacity(total);
    let options = retrieve_options(config, subjects.len());
    let mut regions = RegionTally::default();
    let started = Instant::now();
    for (i, (subject, photo)) in queries.iter().enumerate() {
        let bytes = std::fs::read(photo).map_err(|e| Error::io(photo, e))?;
        let mut timings = rap_engine::retrieve::Timings::default();
        let seen =
            engine.evidence_with(&tenant, &bytes, &options, &mut timings, &mut Vec::new())?;
        regions.add(&timings);
        let decided = seen.decide(&options);
        evidence.push((subject.clone(), seen));
        let mut ranked: Vec<&ConceptScore> = decided.iter().collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        let names: Vec<&str> = ranked.iter().map(|c| c.name.as_str()).collect();
        let rank = names.iter().position(|n| n == subject).map(|p| p + 1);
        let score_of = |s: &str| {
            names
                .iter()
                .position(|n| *n == s)
                .map_or(f32::NEG_INFINITY, |p| ranked[p].score)
        };
        let recognition = decision_outcome(subject, subjects.len(), &decided);
        outcomes.push(QueryOutcome {
            subject: subject.clone(),
            photo: photo
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            rank,
            positive_score: score_of(subject),
            negative_scores: subjects
                .iter()
                .filter(|(n, _)| n != subject)
                .map(|(n, _)| score_of(n))
                .collect(),
            reported: recognition.reported,
            false_alarms: recognition.false_alarms,
        });
        progress(i + 1, total);
    }
    let ms_per_query = started.elapsed().as_secs_f64() * 1000.0 / total.max(1) as f64;

    let options = retrieve_options(config, subjects.len());
    let scenes = if config.scenes > 0 {
        let pool = query_photos(&subjects, config.refs);
        let scenes_config = ScenesConfig {
            count: config.scenes,
            options: config.scene_options.clone(),
            backgrounds: negative_photos.clone(),
            save_dir: config.save_scenes.clone(),
        };
        Some(scenes::run(
            &engine,
            &tenant,
            &options,
            &pool,
            &scenes_config,
            progress,
        )?)
    } else {
        None
    };
    // Photos of nothing in the memory: their figures, and their evidence for the calibration.
    let mut open_set = Vec::new();
    let negatives = if negative_photos.is_empty() {
        None
    } else {
        let (figures, seen) =
            negatives::run(&engine, &tenant, &options, &negative_photos, progress)?;
        open_set.extend(seen);
        Some(figures)
    };
    let mut holdout = BTreeMap::new();
    for (name, photos) in &held_out {
        let (figures, seen) = negatives::run(&engine, &tenant, &options, photos, progress)?;
        open_set.extend(seen);
        holdout.insert(name.clone(), figures);
    }
    let mut confidence_samples: Vec<([f32; 2], bool)> = evidence
        .iter()
        .flat_map(|(subject, seen)| {
            seen.confidence_features(&options)
                .into_iter()
                .map(move |(name, x)| (x, &name == subject))
        })
        .collect();
    if let Some(s) = &scenes {
        confidence_samples.extend(s.confidence_samples.iter().copied());
    }
    let measured: Vec<f32> = engine
        .stabilities(&tenant)?
        .into_iter()
        .filter_map(|(_, s)| s)
        .collect();
    let mean_stability =
        (!measured.is_empty()).then(|| measured.iter().sum::<f32>() / measured.len() as f32);
    let by_weight = best_decisions(&evidence, &open_set, subjects.len(), &options);
    let all: Vec<&QueryOutcome> = outcomes.iter().collect();
    let per_subject = subjects
        .iter()
        .map(|(name, _)| {
            let mine: Vec<&QueryOutcome> = outcomes.iter().filter(|o| &o.subject == name).collect();
            (name.clone(), figures(&mine))
        })
        .collect();
    Ok(RetrievalReport {
        encoder: encoder.info().id.clone(),
        subjects: subjects.len(),
        refs: config.refs,
        threshold: config.threshold,
        margin: config.margin,
        cascade: config.cascade,
        totals: figures(&all),
        ms_per_query,
        regions: regions.figures(),
        best_threshold: best_threshold(&outcomes),
        best_decision: best_of(&by_weight, &options),
        best_by_stability_weight: by_weight,
        mean_stability,
        confidence: ConfidenceFit::new(&confidence_samples),
        per_subject,
        outcomes,
        scenes,
        negatives,
        holdout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_error_by_hand() {
        // Bin 0.8-0.9 predicts 0.8 and is right 3 times of 4 (0.05 off); bin 0.2-0.3
        // predicts 0.2 and is right 0 times of 1 (0.2 off): (4 * 0.05 + 1 * 0.2) / 5.
        let p = [
            (0.8, true),
            (0.8, true),
            (0.8, true),
            (0.8, false),
            (0.2, false),
        ];
        let ece = expected_calibration_error(&p, 10).unwrap();
        assert!((ece - 0.08).abs() < 1e-9, "{ece}");
        assert_eq!(expected_calibration_error(&[], 10), None);
    }

    #[test]
    fn recognition_accuracy_counts_every_question_and_the_open_set_as_noes() {
        let hit = |name: &str, present: bool| ConceptScore {
            id: rap_core::ConceptId(name.to_string()),
            name: name.to_string(),
            score: 0.7,
            present,
            bbox: rap_core::BoundingBox {
                x1: 0.0,
                y1: 0.0,
                x2: 1.0,
                y2: 1.0,
            },
            margin: 0.0,
            confidence: 0.0,
            floor: 0.5,
        };
        // Three subjects. Query 1 (a): found, no false alarm. Query 2 (b): missed, and c
        // reported. Yes: 1 of 2. No: 2 + 1 of the queries' 4, plus 3 - 1 of the open photo's 3.
        let queries = vec![
            ("a", vec![hit("a", true), hit("b", false)]),
            ("b", vec![hit("b", false), hit("c", true)]),
        ];
        let open = vec![vec![hit("a", true), hit("c", false)]];
        let w = recognition_accuracy(&queries, &open, 3);
        assert!((w - (0.5 + 5.0 / 7.0) / 2.0).abs() < 1e-12, "{w}");
        // Without the open photo: no-accuracy 3 of 4.
        let w = recognition_accuracy(&queries, &[], 3);
        assert!((w - (0.5 + 0.75) / 2.0).abs() < 1e-12, "{w}");
    }

    fn outcome(rank: Option<usize>, pos: f32, neg: &[f32]) -> QueryOutcome {
        QueryOutcome {
            subject: "s".into(),
            photo: "p".into(),
            rank,
            positive_score: pos,
            negative_scores: neg.to_vec(),
            reported: pos >= 0.5,
            false_alarms: neg.iter().filter(|s| **s >= 0.5).count(),
        }
    }

    #[test]
    fn figures_by_hand() {
        let os = [
            outcome(Some(1), 0.9, &[0.3, 0.6]),
            outcome(Some(2), 0.55, &[0.7, 0.2]),
            outcome(None, f32::NEG_INFINITY, &[0.4, 0.1]),
            outcome(Some(6), 0.4, &[0.45, 0.5]),
        ];
        let refs: Vec<&QueryOutcome> = os.iter().collect();
        let f = threshold_figures(&refs, 0.5);
        assert_eq!(
            f,
            figures(&refs),
            "the outcomes' decisions were made at 0.5"
        );
        assert_eq!(f.queries, 4);
        assert_eq!(f.top1, 0.25);
        assert_eq!(f.recall_at_5, 0.5);
        assert!((f.mrr - (1.0 + 0.5 + 0.0 + 1.0 / 6.0) / 4.0).abs() < 1e-12);
        assert_eq!(f.positive_accuracy, 0.5); // 0.9 and 0.55
        assert_eq!(f.negative_accuracy, 5.0 / 8.0); // 0.6, 0.7 and 0.5 are not below 0.5
        assert_eq!(f.weighted, (0.5 + 0.625) / 2.0);
    }

    #[test]
    fn subjects_and_holdout_are_checked_and_split() {
        let all = || {
            ["cat", "dog", "dog2", "dog3"]
                .iter()
                .map(|s| (s.to_string(), vec![PathBuf::from(format!("{s}/00.jpg"))]))
                .collect::<Vec<_>>()
        };
        let names =
            |v: &[(String, Vec<PathBuf>)]| v.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        let (memory, held) = select_subjects(all(), &[], &[]).unwrap();
        assert_eq!(names(&memory), strings(&["cat", "dog", "dog2", "dog3"]));
        assert!(held.is_empty());

        let (memory, held) =
            select_subjects(all(), &strings(&["dog", "cat"]), &strings(&["dog3"])).unwrap();
        assert_eq!(names(&memory), strings(&["cat", "dog"]));
        assert_eq!(names(&held), strings(&["dog3"]));

        let (memory, held) = select_subjects(all(), &[], &strings(&["dog2", "dog3"])).unwrap();
        assert_eq!(names(&memory), strings(&["cat", "dog"]));
        assert_eq!(names(&held), strings(&["dog2", "dog3"]));

        let e = select_subjects(all(), &strings(&["dog", "bo"]), &[]).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)));
        assert!(
            e.to_string()
                .starts_with("--subjects: no subject folder named bo "),
            "{e}"
        );
        let e = select_subjects(all(), &[], &strings(&["dog4"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("--holdout: no subject folder named dog4"),
            "{e}"
        );
        let e = select_subjects(all(), &strings(&["dog"]), &strings(&["dog"])).unwrap_err();
        assert!(e.to_string().contains("dog is in both"), "{e}");
        let e = select_subjects(all(), &strings(&["dog"]), &strings(&["dog2"]));
        assert!(e.is_ok(), "memory dog, holdout dog2");
        let e = select_subjects(all(), &[], &strings(&["cat", "dog", "dog2", "dog3"])).unwrap_err();
        assert!(e.to_string().contains("no subjects left"), "{e}");
    }

    #[test]
    fn scenes_are_cut_from_query_photos_only() {
        let subjects: Vec<(String, Vec<PathBuf>)> = ["a", "b", "c"]
            .iter()
            .map(|s| {
                let photos = (0..4)
                    .map(|i| PathBuf::from(format!("{s}/{i}.jpg")))
                    .collect();
                (s.to_string(), photos)
            })
            .collect();
        let pool = query_photos(&subjects, 2);
        for ((name, photos), (pool_name, shown)) in subjects.iter().zip(&pool) {
            assert_eq!(name, pool_name);
            assert_eq!(shown, &photos[2..].to_vec());
        }
        // Every scene's pasted photo comes from the pool, never from the references.
        let mut load = |_: &Path| Ok(image::RgbImage::from_pixel(64, 64, image::Rgb([9, 9, 9])));
        let options = rap_dataset::scenes::SceneOptions::default();
        for index in 0..10 {
            let scene =
                rap_dataset::scenes::generate(&pool, &[], 3, index, &options, &mut load).unwrap();
            for p in &scene.label.pasted {
                let refs = &subjects.iter().find(|(n, _)| *n == p.subject).unwrap().1[..2];
                assert!(
                    !refs.contains(&p.photo),
                    "{} is a reference",
                    p.photo.display()
                );
            }
        }
    }

    #[test]
    fn best_threshold_separates_when_it_can() {
        let os = vec![
            outcome(Some(1), 0.8, &[0.3, 0.5]),
            outcome(Some(1), 0.7, &[0.6]),
        ];
        let (t, w) = best_threshold(&os);
        assert!(t > 0.6 && t < 0.7, "{t}");
        assert_eq!(w, 1.0);
    }
}
