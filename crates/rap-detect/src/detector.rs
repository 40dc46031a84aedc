//! Detectors as retrieval region proposers ([`rap_core::RegionProposer`]): CenterNet (the COCO
//! detector), and OWLv2 queried with the tenant's concept categories, as the reference queries
//! its open-vocabulary detector with them.
//!
//! [`centernet_proposer`] and [`owlv2_proposer`] check their settings at once (so a wrong one
//! is an error when the engine opens) but load the weights at the first proposal, so commands
//! that never retrieve by image do not pay for them. Which folder a detector setting names is
//! the application's business (the models directory, `rap-models`).

use crate::centernet::{self, CenterNet};
use crate::owlv2::{self, Owlv2};
use candle_core::Device;
use rap_core::{Error, ProposalHints, Region, RegionProposer, RegionSource, Result};
use std::path::PathBuf;
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
pub struct CenterNetProposer {
    net: CenterNet,
    opts: centernet::DetectOptions,
}

impl CenterNetProposer {
    pub fn new(net: CenterNet, opts: centernet::DetectOptions) -> Self {
        CenterNetProposer { net, opts }
    }
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

impl DetectorSettings {
    /// A threshold in 0-1 and at least one box, or an error that names the setting.
    pub fn check(&self) -> Result<()> {
        check_settings(self)
    }
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

fn owlv2_loader(dir: PathBuf, settings: DetectorSettings, device: Device) -> Loader {
    Box::new(move || {
        let defaults = owlv2::DetectOptions::default();
        let opts = owlv2::DetectOptions {
            threshold: settings.threshold.unwrap_or(defaults.threshold),
            max_detections: settings.max_boxes.unwrap_or(defaults.max_detections),
            ..defaults
        };
        Ok(
            Arc::new(Owlv2Proposer::new(Owlv2::load_on(&dir, &device)?, opts))
                as Arc<dyn RegionProposer>,
        )
    })
}

/// CenterNet from the folder `dir` (`centernet.json` and its shards) as a region proposer
/// with `settings`: checked now, loaded at the first proposal onto `device`.
pub fn centernet_proposer(
    dir: PathBuf,
    settings: DetectorSettings,
    device: Device,
) -> Result<Arc<dyn RegionProposer>> {
    check_settings(&settings)?;
    Ok(lazy(Box::new(move || {
        let net = CenterNet::load_on(&dir, &device)?;
        let defaults = centernet::DetectOptions::default();
        let opts = centernet::DetectOptions {
            min_score: settings.threshold.unwrap_or(defaults.min_score),
            max_detections: settings.max_boxes.unwrap_or(defaults.max_detections),
            ..defaults
        };
        Ok(Arc::new(CenterNetProposer { net, opts }) as Arc<dyn RegionProposer>)
    })))
}

/// An OWLv2 checkpoint folder as a region proposer with `settings`: checked now, loaded at
/// the first proposal onto `device`.
pub fn owlv2_proposer(
    dir: PathBuf,
    settings: DetectorSettings,
    device: Device,
) -> Result<Arc<dyn RegionProposer>> {
    check_settings(&settings)?;
    Ok(lazy(owlv2_loader(dir, settings, device)))
}
