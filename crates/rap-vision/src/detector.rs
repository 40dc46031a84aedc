//! Detectors as retrieval region proposers ([`rap_core::RegionProposer`]), chosen by the
//! product's `[retrieval] detector` setting: `centernet` (the COCO detector, `rap models
//! install centernet`), or an OWLv2 checkpoint (a name registered with `rap models add NAME
//! --path DIR`, or the folder's path) queried with the tenant's concept categories, as the
//! reference queries its open-vocabulary detector with them.
//!
//! [`resolve_detector`] checks the setting at once (so a wrong one is an error when the engine
//! opens) but loads the weights at the first proposal, so commands that never retrieve by
//! image do not pay for them.

use crate::centernet::{self, CenterNet};
use crate::owlv2::{self, Owlv2};
use rap_core::{Error, ProposalHints, Region, RegionProposer, RegionSource, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Settings of the proposer; `None` keeps the detector's own default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DetectorSettings {
    /// Boxes scoring below this (0-1) are not proposed.
    pub threshold: Option<f32>,
    /// At most this many boxes per image.
    pub max_boxes: Option<usize>,
}

/// OWLv2 as a region proposer: one text query per concept category (the bare category, as the
/// reference gives its detector the categories as class names), boxes scoring above the
/// threshold, per-query non-maximum suppression, best first, at most `max_detections`; each
/// box labelled with its category. No categories: nothing to look for, no boxes.
pub struct Owlv2Proposer {
    model: Owlv2,
    opts: owlv2::DetectOptions,
}

impl Owlv2Proposer {
    pub fn new(model: Owlv2, opts: owlv2::DetectOptions) -> Self {
        Owlv2Proposer { model, opts }
    }

    pub fn model(&self) -> &Owlv2 {
        &self.model
    }
}

fn owlv2_regions(
    model: &Owlv2,
    image: &image::RgbImage,
    hints: &ProposalHints,
    opts: &owlv2::DetectOptions,
) -> Result<Vec<Region>> {
    if hints.categories.is_empty() {
        return Ok(Vec::new());
    }
    let queries: Vec<&str> = hints.categories.iter().map(String::as_str).collect();
    Ok(model
        .detect(image, &queries, opts)?
        .into_iter()
        .map(|d| Region {
            bbox: d.bbox,
            source: RegionSource::Detector {
                label: queries[d.query].to_string(),
                score: d.score,
            },
        })
        .collect())
}

impl RegionProposer for Owlv2Proposer {
    fn propose(&self, image: &image::RgbImage, hints: &ProposalHints) -> Result<Vec<Region>> {
        owlv2_regions(&self.model, image, hints, &self.opts)
    }
}

/// OWLv2 with its default post-processing (threshold 0.1, the reference detector's
/// confidence; suppression at IoU 0.3; at most 20 boxes).
impl RegionProposer for Owlv2 {
    fn propose(&self, image: &image::RgbImage, hints: &ProposalHints) -> Result<Vec<Region>> {
        owlv2_regions(self, image, hints, &owlv2::DetectOptions::default())
    }
}

/// CenterNet with settings other than its defaults (it ignores the categories: its 80 COCO
/// classes are fixed).
struct CenterNetProposer {
    net: CenterNet,
    opts: centernet::DetectOptions,
}

impl RegionProposer for CenterNetProposer {
    fn propose(&self, image: &image::RgbImage, _hints: &ProposalHints) -> Result<Vec<Region>> {
        Ok(self
            .net
            .detect(image, &self.opts)?
            .into_iter()
            .map(|d| Region {
                bbox: d.bbox,
                source: RegionSource::Detector {
                    label: d.label.to_string(),
                    score: d.score,
                },
            })
            .collect())
    }
}

type Loader = Box<dyn Fn() -> Result<Arc<dyn RegionProposer>> + Send + Sync>;

/// A proposer loaded at its first use (a failed load is retried at the next one).
struct Lazy {
    load: Loader,
    loaded: Mutex<Option<Arc<dyn RegionProposer>>>,
}

impl RegionProposer for Lazy {
    fn propose(&self, image: &image::RgbImage, hints: &ProposalHints) -> Result<Vec<Region>> {
        let proposer = {
            let mut slot = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some(p) => p.clone(),
                None => {
                    let p = (self.load)()?;
                    *slot = Some(p.clone());
                    p
                }
            }
        };
        proposer.propose(image, hints)
    }
}

fn lazy(load: Loader) -> Arc<dyn RegionProposer> {
    Arc::new(Lazy {
        load,
        loaded: Mutex::new(None),
    })
}

fn check_settings(s: &DetectorSettings) -> Result<()> {
    if let Some(t) = s.threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::invalid(format!(
                "the detector threshold must be between 0 and 1, got {t}"
            )));
        }
    }
    if s.max_boxes == Some(0) {
        return Err(Error::invalid(
            "the detector's max boxes must be at least 1 (to turn the detector off, remove the \
             detector setting)",
        ));
    }
    Ok(())
}

fn owlv2_loader(dir: PathBuf, settings: DetectorSettings) -> Loader {
    Box::new(move || {
        let defaults = owlv2::DetectOptions::default();
        let opts = owlv2::DetectOptions {
            threshold: settings.threshold.unwrap_or(defaults.threshold),
            max_detections: settings.max_boxes.unwrap_or(defaults.max_detections),
            ..defaults
        };
        Ok(Arc::new(Owlv2Proposer::new(Owlv2::load(&dir)?, opts)) as Arc<dyn RegionProposer>)
    })
}

/// The detector `spec` names, as a region proposer: `centernet` (installed in `models_dir`),
/// a registered OWLv2 checkpoint's name, or an OWLv2 checkpoint folder's path. Checked now
/// (installed? a detector?), loaded at the first proposal.
pub fn resolve_detector(
    models_dir: &Path,
    spec: &str,
    settings: DetectorSettings,
) -> Result<Arc<dyn RegionProposer>> {
    check_settings(&settings)?;
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(Error::invalid(
            "the detector setting is empty: name one (\"centernet\", or an OWLv2 model or \
             folder), or remove it",
        ));
    }
    if let Some(entry) = crate::npm::find(spec) {
        if !crate::npm::is_installed(models_dir, entry) {
            return Err(Error::not_found(
                "detector",
                format!(
                    "{spec} is not installed in {}: run `rap models install {spec}`",
                    models_dir.display()
                ),
            ));
        }
        let models_dir = models_dir.to_path_buf();
        return Ok(lazy(Box::new(move || {
            let net = CenterNet::load_installed(&models_dir)?;
            let defaults = centernet::DetectOptions::default();
            let opts = centernet::DetectOptions {
                min_score: settings.threshold.unwrap_or(defaults.min_score),
                max_detections: settings.max_boxes.unwrap_or(defaults.max_detections),
                ..defaults
            };
            Ok(Arc::new(CenterNetProposer { net, opts }) as Arc<dyn RegionProposer>)
        })));
    }
    if let Some(m) = crate::hub::manifest(models_dir, spec)? {
        if m.kind != crate::hub::HfKind::Detector {
            return Err(Error::invalid(format!(
                "model {spec} is an image encoder ({}), not a detector: the detector is \
                 \"centernet\" or an OWLv2 checkpoint",
                m.model_type
            )));
        }
        return Ok(lazy(owlv2_loader(m.dir, settings)));
    }
    let path = Path::new(spec);
    if path.is_dir() {
        let model_type = crate::hf::HfFolder::open(path)?.model_type()?;
        if model_type != "owlv2" {
            return Err(Error::invalid(format!(
                "{spec} holds a {model_type} checkpoint, not a detector: the detector is \
                 \"centernet\" or an OWLv2 checkpoint"
            )));
        }
        return Ok(lazy(owlv2_loader(path.to_path_buf(), settings)));
    }
    Err(Error::not_found(
        "detector",
        format!(
            "{spec} (not installed in {}): use \"centernet\" (`rap models install centernet`), \
             or register an OWLv2 folder with `rap models add {spec} --path DIR`, or give the \
             folder's path",
            models_dir.display()
        ),
    ))
}
