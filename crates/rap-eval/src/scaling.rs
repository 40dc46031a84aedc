//! Retrieval as the memory grows: recall@1 and recall@5 of a folder-per-subject collection with
//! more and more distractor concepts in the memory (the paper reports top-5 recall above 0.90
//! at 500 concepts).
//!
//! The subjects' first `refs` photos become one concept each, as in [`crate::retrieval`]; the
//! other photos are the queries. Distractors are added in steps, each one concept with one
//! photo, taken either from another folder of photos (every photo under it) or from the
//! subjects' own query photos ("other subjects' extra photos"). In the second case a query
//! never competes with distractors made from its own subject's photos (they show the very same
//! object): those are left out of its ranking, every other distractor counts. Pool order is
//! round-robin over the subjects (or file order for a folder), so each step draws evenly.
//!
//! Every step runs every query through the engine's real retrieval ([`Engine::score_image`]) on
//! the memory as it is at that step.

use crate::retrieval::subjects;
use rap_core::{ConceptId, Error, ImageEncoder, NewConcept, Result, Tenant};
use rap_engine::{Engine, EngineConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How to run the curve.
#[derive(Debug, Clone)]
pub struct ScalingConfig {
    pub dataset: PathBuf,
    pub refs: usize,
    /// Distractor concepts at the last step.
    pub distractors: usize,
    /// A folder of photos to draw distractors from; `None`: the subjects' query photos.
    pub distractor_dir: Option<PathBuf>,
    /// Distractor counts to measure at; empty: [`default_steps`].
    pub steps: Vec<usize>,
    pub window_scales: Vec<f32>,
}

/// One point of the curve.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScalingPoint {
    pub distractors: usize,
    /// Concepts in the memory (subjects + distractors).
    pub concepts: usize,
    pub queries: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub mrr: f64,
}

/// The whole curve.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScalingReport {
    pub encoder: String,
    pub dataset: PathBuf,
    pub subjects: usize,
    pub refs: usize,
    pub queries: usize,
    /// Where the distractors came from.
    pub distractor_source: String,
    /// Distractors available in that source.
    pub pool: usize,
    pub window_scales: Vec<f32>,
    pub points: Vec<ScalingPoint>,
    pub ms_per_query: f64,
}

/// 0, then `m` halved down to 1 (`m`, `m/2`, `m/4`, ... at most 6 points), ascending.
pub fn default_steps(m: usize) -> Vec<usize> {
    let mut steps: Vec<usize> = (0..5).map(|k| m >> k).filter(|&s| s > 0).collect();
    steps.push(0);
    steps.sort_unstable();
    steps.dedup();
    steps
}

/// A distractor to add: its photo and, when drawn from the subjects, whose photo it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Distractor {
    pub name: String,
    pub photo: PathBuf,
    pub subject: Option<String>,
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Photos under `dir` (recursively), sorted.
fn photos_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let p = entry.map_err(|e| Error::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if crate::retrieval::is_photo(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The distractor pool, in the order steps draw from it.
pub fn distractor_pool(
    subjects: &[(String, Vec<PathBuf>)],
    refs: usize,
    dir: Option<&Path>,
) -> Result<Vec<Distractor>> {
    if let Some(dir) = dir {
        return Ok(photos_under(dir)?
            .into_iter()
            .enumerate()
            .map(|(i, photo)| Distractor {
                name: format!("distractor-{i:05}"),
                photo,
                subject: None,
            })
            .collect());
    }
    let extra: Vec<(&String, &[PathBuf])> = subjects
        .iter()
        .map(|(n, ps)| (n, ps.get(refs..).unwrap_or(&[])))
        .collect();
    let longest = extra.iter().map(|(_, ps)| ps.len()).max().unwrap_or(0);
    let mut pool = Vec::new();
    for k in 0..longest {
        for (name, photos) in &extra {
            if let Some(photo) = photos.get(k) {
                let stem = photo
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                pool.push(Distractor {
                    name: format!("distractor-{}-{}", safe_name(name), safe_name(&stem)),
                    photo: photo.clone(),
                    subject: Some((*name).clone()),
                });
            }
        }
    }
    Ok(pool)
}

/// Rank (1-based) of `subject` among the scored concepts, leaving out the distractors made
/// from the subject's own photos; `None` when it was not retrieved.
pub fn rank_of(
    scored: &[(ConceptId, f32)],
    subject: &ConceptId,
    excluded: &[&ConceptId],
) -> Option<usize> {
    let mut rank = 0;
    for (id, _) in scored {
        if excluded.contains(&id) {
            continue;
        }
        rank += 1;
        if id == subject {
            return Some(rank);
        }
    }
    None
}

/// Runs the curve with `encoder` in a temporary memory. `progress(done, total)` counts queries
/// over all steps.
pub fn run(
    config: &ScalingConfig,
    encoder: Arc<dyn ImageEncoder>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ScalingReport> {
    if config.refs == 0 {
        return Err(Error::invalid("--refs must be at least 1"));
    }
    let subjects = subjects(&config.dataset)?;
    let pool = distractor_pool(&subjects, config.refs, config.distractor_dir.as_deref())?;
    let source = match &config.distractor_dir {
        Some(d) => format!("photos under {}", d.display()),
        None => "the other subjects' query photos".to_string(),
    };
    if config.distractors > pool.len() {
        return Err(Error::invalid(format!(
            "--distractors {}: only {} distractor photos in {source}; pass at most {} or \
             --distractor-dir with a bigger folder",
            config.distractors,
            pool.len(),
            pool.len()
        )));
    }
    let mut steps = if config.steps.is_empty() {
        default_steps(config.distractors)
    } else {
        config.steps.clone()
    };
    steps.sort_unstable();
    steps.dedup();
    if let Some(&over) = steps.iter().find(|&&s| s > config.distractors) {
        return Err(Error::invalid(format!(
            "--steps {over} is more than --distractors {}",
            config.distractors
        )));
    }

    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let loader_encoder = encoder.clone();
    let engine = Engine::open(
        EngineConfig::new(scratch.path()),
        Box::new(move || Ok(Some(loader_encoder.clone()))),
    )?;
    let tenant = Tenant::new("eval")?;
    let mut subject_ids: HashMap<String, ConceptId> = HashMap::new();
    let mut queries: Vec<(String, Vec<u8>)> = Vec::new();
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
        let c = engine.add_concept(&tenant, &new, images)?;
        subject_ids.insert(name.clone(), c.id);
        for p in &photos[config.refs..] {
            queries.push((name.clone(), std::fs::read(p).map_err(|e| Error::io(p, e))?));
        }
    }

    // Distractors of each subject (filled as they are added).
    let mut own: HashMap<String, Vec<ConceptId>> = HashMap::new();
    let total = queries.len() * steps.len();
    let mut done = 0;
    let mut added = 0;
    let mut points = Vec::new();
    let started = Instant::now();
    for &step in &steps {
        let batch = pool[added..step]
            .iter()
            .map(|d| {
                let new = NewConcept {
                    name: d.name.clone(),
                    ..Default::default()
                };
                Ok((new, vec![engine.read_image(&d.photo)?]))
            })
            .collect::<Result<Vec<_>>>()?;
        if !batch.is_empty() {
            let concepts = engine.add_concepts(&tenant, batch)?;
            for (d, c) in pool[added..step].iter().zip(concepts) {
                if let Some(s) = &d.subject {
                    own.entry(s.clone()).or_default().push(c.id);
                }
            }
        }
        added = step;
        let (mut r1, mut r5, mut rr) = (0usize, 0usize, 0f64);
        for (subject, bytes) in &queries {
            let mut timings = rap_engine::retrieve::Timings::default();
            let scored = engine.score_image(&tenant, bytes, &config.window_scales, &mut timings)?;
            let scored: Vec<(ConceptId, f32)> =
                scored.into_iter().map(|(id, s, _)| (id, s)).collect();
            let excluded: Vec<&ConceptId> = own.get(subject).into_iter().flatten().collect();
            let rank = rank_of(&scored, &subject_ids[subject], &excluded);
            r1 += usize::from(rank == Some(1));
            r5 += usize::from(rank.is_some_and(|r| r <= 5));
            rr += rank.map_or(0.0, |r| 1.0 / r as f64);
            done += 1;
            progress(done, total);
        }
        let n = queries.len().max(1) as f64;
        points.push(ScalingPoint {
            distractors: step,
            concepts: subjects.len() + step,
            queries: queries.len(),
            recall_at_1: r1 as f64 / n,
            recall_at_5: r5 as f64 / n,
            mrr: rr / n,
        });
    }
    Ok(ScalingReport {
        encoder: encoder.info().id.clone(),
        dataset: config.dataset.clone(),
        subjects: subjects.len(),
        refs: config.refs,
        queries: queries.len(),
        distractor_source: source,
        pool: pool.len(),
        window_scales: config.window_scales.clone(),
        points,
        ms_per_query: started.elapsed().as_secs_f64() * 1000.0 / total.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_halve_down_from_m() {
        assert_eq!(default_steps(86), vec![0, 5, 10, 21, 43, 86]);
        assert_eq!(default_steps(3), vec![0, 1, 3]);
        assert_eq!(default_steps(0), vec![0]);
    }

    #[test]
    fn pool_is_round_robin_over_subjects_extra_photos() {
        let s = |n: &str, k: usize| {
            (
                n.to_string(),
                (0..k)
                    .map(|i| PathBuf::from(format!("{n}/{i:02}.jpg")))
                    .collect::<Vec<_>>(),
            )
        };
        let subjects = vec![s("cat", 3), s("dog 2", 4)];
        let pool = distractor_pool(&subjects, 1, None).unwrap();
        let names: Vec<&str> = pool.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "distractor-cat-01",
                "distractor-dog-2-01",
                "distractor-cat-02",
                "distractor-dog-2-02",
                "distractor-dog-2-03"
            ]
        );
        assert_eq!(pool[1].subject.as_deref(), Some("dog 2"));
        for d in &pool {
            rap_core::normalize_name_key(&d.name).unwrap();
        }
    }

    #[test]
    fn own_distractors_do_not_count_against_a_query() {
        let id = |s: &str| ConceptId(s.into());
        let scored = vec![(id("own"), 0.9), (id("other"), 0.8), (id("subject"), 0.7)];
        let own = id("own");
        assert_eq!(rank_of(&scored, &id("subject"), &[&own]), Some(2));
        assert_eq!(rank_of(&scored, &id("subject"), &[]), Some(3));
        assert_eq!(rank_of(&scored, &id("missing"), &[]), None);
    }
}
