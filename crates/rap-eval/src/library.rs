//! The photo library evaluation (`rap eval library`): how well `rap library find` answers
//! "where is X?" on a folder-per-subject collection (like dreambooth-dev).
//!
//! Every photo under the dataset folder (and under `--distractors`, photos of none of the
//! subjects) is indexed into a fresh temporary library ([`Engine::library_add`]); then each
//! subject becomes a concept from its first `refs` photos, and [`Engine::library_find`] is
//! asked for it. The reference photos themselves are left out of the scoring (they are found
//! trivially). Per subject and in the mean over subjects:
//! - **precision**: of the photos found, the share that are the subject's;
//! - **recall**: of the subject's other photos, the share found;
//! - **precision@k**: of the first `k` photos listed, the share that are the subject's (a
//!   list shorter than `k` counts the missing places as wrong).
//!
//! Also measured (on whatever machine runs it): photos indexed per second, bytes of store per
//! photo, and the time of each `find`.

use rap_core::{Error, ImageEncoder, NewConcept, Result, Tenant};
use rap_engine::{Engine, EngineConfig, RetrieveOptions};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How to run it.
#[derive(Debug, Clone)]
pub struct LibraryEvalConfig {
    /// One folder of photos per subject.
    pub dataset: PathBuf,
    /// Photos per subject that become the concept's references.
    pub refs: usize,
    /// Folders of photos with none of the subjects, indexed too.
    pub distractors: Vec<PathBuf>,
    /// The `k` of precision@k.
    pub k: usize,
    /// Decoding threads while indexing.
    pub workers: usize,
    /// The decision (and the windows the library is indexed with).
    pub options: RetrieveOptions,
}

/// One subject's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubjectFigures {
    /// Its photos in the library, references left out.
    pub photos: usize,
    /// Photos `find` lists (references left out).
    pub found: usize,
    /// Of those, the subject's own.
    pub correct: usize,
    pub precision: f64,
    pub recall: f64,
    pub precision_at_k: f64,
    pub find_ms: f64,
}

/// The whole evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LibraryReport {
    pub encoder: String,
    pub refs: usize,
    pub k: usize,
    pub photos_indexed: usize,
    pub regions: usize,
    pub index_seconds: f64,
    pub photos_per_sec: f64,
    /// Store growth from indexing, per photo (the SQLite file and its log).
    pub bytes_per_photo: f64,
    pub mean_precision: f64,
    pub mean_recall: f64,
    pub mean_precision_at_k: f64,
    pub find_ms_median: f64,
    pub find_ms_max: f64,
    pub per_subject: BTreeMap<String, SubjectFigures>,
}

/// Bytes of the store files in `dir` (the database and its write-ahead log).
fn store_bytes(dir: &Path) -> u64 {
    ["memory.sqlite", "memory.sqlite-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Scores one subject's list: `found` (photo paths, best first) against its own photos.
pub fn score(found: &[String], relevant: &HashSet<String>, k: usize) -> (usize, f64, f64, f64) {
    let correct = found.iter().filter(|p| relevant.contains(*p)).count();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let at_k = found
        .iter()
        .take(k)
        .filter(|p| relevant.contains(*p))
        .count();
    (
        correct,
        ratio(correct, found.len()),
        ratio(correct, relevant.len()),
        ratio(at_k, k),
    )
}

/// Runs the evaluation with `encoder` (see [the module](self)). `progress(done, total)`
/// follows the indexing.
pub fn run(
    config: &LibraryEvalConfig,
    encoder: Arc<dyn ImageEncoder>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LibraryReport> {
    if config.refs == 0 || config.k == 0 {
        return Err(Error::invalid("--refs and --k must be at least 1"));
    }
    let subjects = crate::retrieval::subjects(&config.dataset)?;
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let encoder_id = encoder.info().id.clone();
    let engine = Engine::open(
        EngineConfig::new(scratch.path()),
        Box::new(move || Ok(Some(encoder.clone()))),
    )?;
    let tenant = Tenant::new("eval")?;
    // The library first (with no concept yet), then the concepts: `find` must work for
    // concepts added after the indexing.
    let before = store_bytes(scratch.path());
    let mut dirs = vec![config.dataset.clone()];
    dirs.extend(config.distractors.iter().cloned());
    let scan = engine.library_add(&tenant, &dirs, &config.options, config.workers, &mut |p| {
        progress(p.done, p.total)
    })?;
    let bytes_per_photo = if scan.indexed > 0 {
        store_bytes(scratch.path()).saturating_sub(before) as f64 / scan.indexed as f64
    } else {
        0.0
    };
    let canonical = |p: &Path| {
        std::fs::canonicalize(p)
            .map_err(|e| Error::io(p, e))
            .map(|c| c.to_string_lossy().into_owned())
    };
    let mut references = HashSet::new();
    for (name, photos) in &subjects {
        let refs = &photos[..config.refs.min(photos.len())];
        let images = refs
            .iter()
            .map(|p| engine.read_image(p))
            .collect::<Result<Vec<_>>>()?;
        for p in refs {
            references.insert(canonical(p)?);
        }
        let new = NewConcept {
            name: name.clone(),
            ..Default::default()
        };
        engine.add_concept(&tenant, &new, images)?;
    }
    // One untimed find first: the key index and the catalog are built there.
    if let Some((name, _)) = subjects.first() {
        engine.library_find(&tenant, name, 1, &config.options)?;
    }
    let mut per_subject = BTreeMap::new();
    let mut times = Vec::new();
    for (name, photos) in &subjects {
        let relevant: HashSet<String> = photos
            .iter()
            .map(|p| canonical(p))
            .collect::<Result<HashSet<_>>>()?
            .difference(&references)
            .cloned()
            .collect();
        let start = Instant::now();
        let found = engine.library_find(&tenant, name, usize::MAX, &config.options)?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        times.push(ms);
        let listed: Vec<String> = found
            .photos
            .into_iter()
            .map(|h| h.path)
            .filter(|p| !references.contains(p))
            .collect();
        let (correct, precision, recall, precision_at_k) = score(&listed, &relevant, config.k);
        per_subject.insert(
            name.clone(),
            SubjectFigures {
                photos: relevant.len(),
                found: listed.len(),
                correct,
                precision,
                recall,
                precision_at_k,
                find_ms: ms,
            },
        );
    }
    let n = per_subject.len().max(1) as f64;
    let mean = |f: fn(&SubjectFigures) -> f64| per_subject.values().map(f).sum::<f64>() / n;
    times.sort_by(f64::total_cmp);
    Ok(LibraryReport {
        encoder: encoder_id,
        refs: config.refs,
        k: config.k,
        photos_indexed: scan.indexed,
        regions: scan.regions,
        index_seconds: scan.seconds,
        photos_per_sec: scan.photos_per_sec,
        bytes_per_photo,
        mean_precision: mean(|s| s.precision),
        mean_recall: mean(|s| s.recall),
        mean_precision_at_k: mean(|s| s.precision_at_k),
        find_ms_median: times.get(times.len() / 2).copied().unwrap_or(0.0),
        find_ms_max: times.last().copied().unwrap_or(0.0),
        per_subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_precision_at_k_count_what_they_say() {
        let relevant: HashSet<String> =
            ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let found: Vec<String> = ["a", "x", "b"].iter().map(|s| s.to_string()).collect();
        let (correct, p, r, pk) = score(&found, &relevant, 2);
        assert_eq!(correct, 2);
        assert!((p - 2.0 / 3.0).abs() < 1e-9);
        assert!((r - 0.5).abs() < 1e-9);
        assert!((pk - 0.5).abs() < 1e-9);
        // A list shorter than k counts the empty places as wrong; nothing found: all zero.
        assert!((score(&found[..1], &relevant, 3).3 - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(score(&[], &relevant, 3), (0, 0.0, 0.0, 0.0));
    }
}
