//! Negative photos: photos that hold none of the memory's concepts (`rap eval retrieval
//! --negatives DIR`, and the photos of `--holdout` subjects kept out of the memory).
//!
//! Each photo goes through the decision of [`Engine::retrieve`] (its image part); it is right
//! when no concept is found present. Reported: negative accuracy (the share of right photos) and which concepts fired, most
//! first.

use crate::retrieval::is_photo;
use rap_core::{Error, Result, Tenant};
use rap_engine::{Engine, Evidence, RetrieveOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How often one concept was reported on negative photos.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fired {
    pub concept: String,
    /// Photos it was reported on.
    pub photos: usize,
}

/// Figures over a set of negative photos.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct NegativeFigures {
    pub photos: usize,
    /// Photos on which nothing was reported.
    pub clean: usize,
    /// `clean / photos`; `None` without photos.
    pub accuracy: Option<f64>,
    /// The concepts reported, most often first (ties by name).
    pub fired: Vec<Fired>,
}

impl NegativeFigures {
    /// Figures from the concept names reported on each photo.
    pub fn new(reported: &[Vec<String>]) -> Self {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for names in reported {
            let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
            names.sort();
            names.dedup();
            for n in names {
                *counts.entry(n).or_default() += 1;
            }
        }
        let mut fired: Vec<Fired> = counts
            .into_iter()
            .map(|(concept, photos)| Fired {
                concept: concept.to_string(),
                photos,
            })
            .collect();
        fired.sort_by(|a, b| b.photos.cmp(&a.photos).then(a.concept.cmp(&b.concept)));
        let clean = reported.iter().filter(|r| r.is_empty()).count();
        NegativeFigures {
            photos: reported.len(),
            clean,
            accuracy: crate::ratio(clean, reported.len()),
            fired,
        }
    }
}

/// Every photo under `dir`, recursively, sorted by path. Fails when there is none.
pub fn photos_under(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if is_photo(&path) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    out.sort();
    if out.is_empty() {
        return Err(Error::invalid(format!("{} has no photos", dir.display())));
    }
    Ok(out)
}

/// Retrieves on each photo and counts those with no image hit; also gives each photo's
/// evidence, so a calibration can count these photos as negatives.
pub fn run(
    engine: &Engine,
    tenant: &Tenant,
    options: &RetrieveOptions,
    photos: &[PathBuf],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(NegativeFigures, Vec<Evidence>)> {
    let mut reported = Vec::with_capacity(photos.len());
    let mut evidence = Vec::with_capacity(photos.len());
    for (i, photo) in photos.iter().enumerate() {
        let bytes = std::fs::read(photo).map_err(|e| Error::io(photo, e))?;
        // The image hits of `rap retrieve` without a text: what the decision finds present.
        let seen = engine.evidence_with(
            tenant,
            &bytes,
            options,
            &mut Default::default(),
            &mut Vec::new(),
        )?;
        reported.push(
            seen.decide(options)
                .into_iter()
                .filter(|c| c.present)
                .map(|c| c.name)
                .collect(),
        );
        evidence.push(seen);
        progress(i + 1, photos.len());
    }
    Ok((NegativeFigures::new(&reported), evidence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_fired_counts() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let f = NegativeFigures::new(&[
            s(&[]),
            s(&["dog", "cat"]),
            s(&["dog", "dog"]),
            s(&[]),
            s(&["cat", "can"]),
        ]);
        assert_eq!((f.photos, f.clean), (5, 2));
        assert_eq!(f.accuracy, Some(0.4));
        let order: Vec<(&str, usize)> = f
            .fired
            .iter()
            .map(|x| (x.concept.as_str(), x.photos))
            .collect();
        assert_eq!(order, vec![("cat", 2), ("dog", 2), ("can", 1)]);
        assert_eq!(NegativeFigures::new(&[]).accuracy, None);
    }

    #[test]
    fn photos_are_found_recursively() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        for f in ["x.jpg", "a/y.PNG", "a/b/z.webp", "a/notes.txt"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let found = photos_under(dir.path()).unwrap();
        let rel: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            rel,
            vec![
                PathBuf::from("a/b/z.webp"),
                PathBuf::from("a/y.PNG"),
                PathBuf::from("x.jpg")
            ]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(photos_under(empty.path())
            .unwrap_err()
            .to_string()
            .contains("has no photos"));
    }
}
