//! Multi-concept retrieval on synthetic scenes (`rap eval retrieval --scenes N`).
//!
//! For each scene size (2, 3 and 4 subjects, as far as the memory has subjects), `N` scenes
//! from [`rap_dataset::scenes`] paste that many distinct subjects, cut from their *query*
//! photos, on a background. Each scene (as JPEG, quality 90) goes through [`Engine::retrieve`]
//! and is judged by what it reports as image hits ([`rap_core::Via::seen`]): a reported concept that is
//! not pasted is a false positive, a pasted one not reported a false negative. Precision,
//! recall and F1 are micro-averaged over the scenes of a size. A true positive's box is a hit
//! when its intersection over union with the pasted box is at least [`BOX_IOU`].

use crate::ratio;
use crate::retrieval::{RegionFigures, RegionTally};
use rap_core::{BoundingBox, Error, Result, Tenant};
use rap_dataset::scenes::{self, SceneLabel, SceneOptions};
use rap_engine::{Engine, RetrieveOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The scene sizes evaluated (those with at most as many subjects as the memory).
pub const SIZES: [usize; 3] = [2, 3, 4];

/// A reported box "hits" the pasted one at this intersection over union or more.
pub const BOX_IOU: f32 = 0.3;

/// How to make the scenes.
#[derive(Debug, Clone)]
pub struct ScenesConfig {
    /// Scenes per size.
    pub count: usize,
    pub options: SceneOptions,
    /// Background photos (empty = procedural backgrounds).
    pub backgrounds: Vec<PathBuf>,
    /// Where to write the scenes (JPEG) and `labels.json`.
    pub save_dir: Option<PathBuf>,
}

/// Counts over some scenes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    /// True positives whose reported box overlaps the pasted box (IoU >= [`BOX_IOU`]).
    pub box_hits: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.true_positives += o.true_positives;
        self.false_positives += o.false_positives;
        self.false_negatives += o.false_negatives;
        self.box_hits += o.box_hits;
    }
}

/// Figures of the scenes of one size.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SceneFigures {
    pub scenes: usize,
    pub pasted: usize,
    pub reported: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    /// `None` when nothing was reported.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// `None` only when nothing was pasted or reported.
    pub f1: Option<f64>,
    pub box_hits: usize,
    /// Share of true positives with a box hit.
    pub box_hit_rate: Option<f64>,
}

impl SceneFigures {
    /// Micro-averaged figures of `scenes` scenes with these summed counts.
    pub fn new(scenes: usize, t: Tally) -> Self {
        let precision = ratio(t.true_positives, t.true_positives + t.false_positives);
        let recall = ratio(t.true_positives, t.true_positives + t.false_negatives);
        SceneFigures {
            scenes,
            pasted: t.true_positives + t.false_negatives,
            reported: t.true_positives + t.false_positives,
            true_positives: t.true_positives,
            false_positives: t.false_positives,
            false_negatives: t.false_negatives,
            precision,
            recall,
            // The harmonic mean of precision and recall, written so that it is 0 (not
            // undefined) when nothing was reported but something was pasted.
            f1: ratio(
                2 * t.true_positives,
                2 * t.true_positives + t.false_positives + t.false_negatives,
            ),
            box_hits: t.box_hits,
            box_hit_rate: ratio(t.box_hits, t.true_positives),
        }
    }
}

/// One image hit as the evaluation sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reported {
    pub name: String,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: Option<BoundingBox>,
}

/// A scene's labels and what retrieval reported on it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SceneOutcome {
    /// The file name when the scenes are saved.
    pub file: String,
    #[serde(flatten)]
    pub label: SceneLabel,
    pub reported: Vec<Reported>,
}

/// The scene evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenesReport {
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    /// `procedural`, or `photos` (the --negatives photos).
    pub backgrounds: &'static str,
    /// How a box counts as found.
    pub box_rule: String,
    /// Figures per scene size (number of pasted subjects).
    pub per_size: BTreeMap<usize, SceneFigures>,
    pub ms_per_scene: f64,
    /// Regions encoded per scene, and the share of scenes the cascade stopped at stage 1.
    pub regions: RegionFigures,
    #[serde(skip)]
    pub outcomes: Vec<SceneOutcome>,
    /// Every reported hit's confidence features and whether it was pasted (see
    /// [`rap_engine::Evidence::confidence_features`]).
    #[serde(skip)]
    pub confidence_samples: Vec<([f32; 2], bool)>,
}

/// Scores one scene: `pasted` (subject, box) against `reported` image hits. A concept reported
/// twice counts once (its first, best, box is judged).
pub fn tally(pasted: &[(&str, BoundingBox)], reported: &[Reported]) -> Tally {
    let mut t = Tally::default();
    let mut seen: Vec<&str> = Vec::new();
    for r in reported {
        if seen.contains(&r.name.as_str()) {
            continue;
        }
        seen.push(&r.name);
        match pasted.iter().find(|(s, _)| *s == r.name) {
            Some((_, truth)) => {
                t.true_positives += 1;
                if r.bbox.is_some_and(|b| b.iou(truth) >= BOX_IOU) {
                    t.box_hits += 1;
                }
            }
            None => t.false_positives += 1,
        }
    }
    t.false_negatives = pasted.iter().filter(|(s, _)| !seen.contains(s)).count();
    t
}

/// Makes the scenes from `pool` (subject name, photos that may be shown: never reference
/// photos) and evaluates the memory of `tenant` on them.
pub fn run(
    engine: &Engine,
    tenant: &Tenant,
    options: &RetrieveOptions,
    pool: &[(String, Vec<PathBuf>)],
    config: &ScenesConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ScenesReport> {
    let sizes: Vec<usize> = SIZES.into_iter().filter(|&s| s <= pool.len()).collect();
    if sizes.is_empty() {
        return Err(Error::invalid(format!(
            "--scenes needs at least {} subjects in the memory (have {})",
            SIZES[0],
            pool.len()
        )));
    }
    if let Some(dir) = &config.save_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let limits = *engine.limits();
    let mut load = |path: &Path| -> Result<image::RgbImage> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        rap_image::decode(&bytes, &limits)
    };
    let total = sizes.len() * config.count;
    let mut outcomes = Vec::with_capacity(total);
    let mut per_size = BTreeMap::new();
    let mut retrieving = std::time::Duration::ZERO;
    let mut confidence_samples = Vec::new();
    let mut regions = RegionTally::default();
    for &size in &sizes {
        let mut sum = Tally::default();
        for index in 0..config.count {
            let scene = scenes::generate(
                pool,
                &config.backgrounds,
                size,
                index,
                &config.options,
                &mut load,
            )?;
            let bytes = scenes::encode_jpeg(&scene.image)?;
            let file = format!("{}.jpg", scene.label.name);
            if let Some(dir) = &config.save_dir {
                let path = dir.join(&file);
                std::fs::write(&path, &bytes).map_err(|e| Error::io(path, e))?;
            }
            let started = Instant::now();
            // The decision over the scene's evidence: what `Engine::retrieve` reports as
            // image hits (no top-k cut: room for every concept), plus what the confidence is
            // fitted on.
            let mut timings = Default::default();
            let evidence =
                engine.evidence_with(tenant, &bytes, options, &mut timings, &mut Vec::new())?;
            regions.add(&timings);
            let reported: Vec<Reported> = evidence
                .decide(options)
                .into_iter()
                .filter(|c| c.present)
                .map(|c| Reported {
                    name: c.name,
                    score: c.score,
                    bbox: Some(c.bbox),
                })
                .collect();
            retrieving += started.elapsed();
            let pasted: Vec<(&str, BoundingBox)> = scene
                .label
                .pasted
                .iter()
                .map(|p| (p.subject.as_str(), p.bbox))
                .collect();
            for (name, features) in evidence.confidence_features(options) {
                let right = pasted.iter().any(|(s, _)| *s == name);
                confidence_samples.push((features, right));
            }
            sum += tally(&pasted, &reported);
            outcomes.push(SceneOutcome {
                file,
                label: scene.label,
                reported,
            });
            progress(outcomes.len(), total);
        }
        per_size.insert(size, SceneFigures::new(config.count, sum));
    }
    let report = ScenesReport {
        seed: config.options.seed,
        width: config.options.width,
        height: config.options.height,
        backgrounds: if config.backgrounds.is_empty() {
            "procedural"
        } else {
            "photos"
        },
        box_rule: format!("IoU >= {BOX_IOU} with the pasted box"),
        per_size,
        ms_per_scene: retrieving.as_secs_f64() * 1000.0 / total.max(1) as f64,
        regions: regions.figures(),
        outcomes,
        confidence_samples,
    };
    if let Some(dir) = &config.save_dir {
        let labels = serde_json::json!({
            "seed": report.seed,
            "width": report.width,
            "height": report.height,
            "box_rule": report.box_rule,
            "scenes": report.outcomes,
        });
        let path = dir.join("labels.json");
        let text = serde_json::to_string_pretty(&labels)
            .map_err(|e| Error::invalid(format!("cannot write labels: {e}")))?;
        std::fs::write(&path, text).map_err(|e| Error::io(path, e))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox::new(x1, y1, x2, y2)
    }

    fn hit(name: &str, bbox: Option<BoundingBox>) -> Reported {
        Reported {
            name: name.into(),
            score: 0.6,
            bbox,
        }
    }

    #[test]
    fn tally_and_figures_by_hand() {
        // Scene 1: dog and cat pasted; dog reported with a good box, cat with a box elsewhere,
        // clock reported though absent.
        let s1 = tally(
            &[
                ("dog", b(0., 0., 100., 100.)),
                ("cat", b(200., 0., 300., 100.)),
            ],
            &[
                hit("dog", Some(b(10., 10., 110., 110.))), // IoU 8100/11900 = 0.68
                hit("cat", Some(b(0., 0., 1024., 768.))),  // IoU 10000/786432: a miss
                hit("clock", Some(b(0., 0., 50., 50.))),
            ],
        );
        assert_eq!(
            s1,
            Tally {
                true_positives: 2,
                false_positives: 1,
                false_negatives: 0,
                box_hits: 1
            }
        );
        // Scene 2: dog, cat, can pasted; only can reported (twice: counted once), no box.
        let s2 = tally(
            &[
                ("dog", b(0., 0., 10., 10.)),
                ("cat", b(20., 0., 30., 10.)),
                ("can", b(40., 0., 50., 10.)),
            ],
            &[hit("can", None), hit("can", None)],
        );
        assert_eq!(
            s2,
            Tally {
                true_positives: 1,
                false_positives: 0,
                false_negatives: 2,
                box_hits: 0
            }
        );
        let mut sum = s1;
        sum += s2;
        let f = SceneFigures::new(2, sum);
        // tp 3, fp 1, fn 2: precision 3/4, recall 3/5, F1 = 2 * 0.75 * 0.6 / 1.35 = 2/3.
        assert_eq!((f.pasted, f.reported), (5, 4));
        assert_eq!(f.precision, Some(0.75));
        assert_eq!(f.recall, Some(0.6));
        assert!((f.f1.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(f.box_hit_rate, Some(1.0 / 3.0));

        let nothing = SceneFigures::new(1, tally(&[("dog", b(0., 0., 1., 1.))], &[]));
        assert_eq!(nothing.precision, None, "nothing reported: no precision");
        assert_eq!(nothing.recall, Some(0.0));
        assert_eq!(nothing.f1, Some(0.0));
    }
}
