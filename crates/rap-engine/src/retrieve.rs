//! Retrieve: which of the user's concepts are in this image, or named in this text.
//!
//! Unlike the reference, which only looks where a detector fired, every query image is looked
//! at whole *and* through multi-scale overlapping windows ([`proposals`]), so a small concept
//! in a big photo is still found, and a missed detection never means "nothing". Every
//! reference image of every concept is a key; so is every negative example ("that's not Bo").
//! Concepts named in the text (`<bo>`, `bo`, `Bo`, any alias, on word boundaries) come first,
//! as in the reference. The smallest windows are encoded only when the others do not already
//! decide every concept ([`crate::cascade`]).
//!
//! # The decision: is concept C in the image?
//! For each query region `r` and concept `C`, `s(r, C)` is the best cosine similarity between
//! the region and C's reference images, and `n(r, C)` the best one to C's negative examples.
//! A region *supports* the one concept it matches best, `C = argmax s(r, .)`, when all hold:
//! 1. `s(r, C) >= floor(C)` - the concept's own floor: the base floor
//!    ([`RetrieveOptions::threshold`]) shifted by how steady C's photos are,
//!    `floor(C) = threshold + stability_weight * (stability(C) - REFERENCE_STABILITY)`, where
//!    `stability(C)` is how alike C's reference photos stay to crops of themselves
//!    ([`crate::catalog::Catalog::stability`]): a concept whose embedding barely moves must
//!    match closely, one whose embedding drifts gets a lower bar. `--threshold` overrides it
//!    with one floor for every concept (`stability_weight` 0);
//! 2. `s(r, C) - s(r, C') >= margin` for the runner-up concept `C'` at the same region - the
//!    tenant's other concepts compete (a Shiba that is Bo's look-alike `Rex` in the memory
//!    supports Rex or nothing, never both);
//! 3. `s(r, C) - n(r, C) >= negative_margin` - closer to C than to what the user said is not C.
//!
//! C is reported when some region supports it, once, so each region counts for at most one
//! concept and a photo can hold several. All of C's supporting regions collapse into that one
//! hit, reported with the box of its best supporting region. (Growing that box to the union of
//! the supporting windows that overlap it was measured and dropped: on 2-4 subject scenes it
//! cut the share of boxes that overlap the true one by IoU >= 0.3 from 0.98/0.94/0.96 to
//! 0.65/0.51/0.50, since neighbouring windows overlap by half and each sees part of the
//! subject.) The hit's `confidence` is a logistic function of the evidence at its best
//! region, `score - floor(C)` and the smaller of the two margins ([`confidence`], fitted on
//! dreambooth-dev). [`ConceptScore`] keeps the raw
//! best score of every concept too (for ranking and evaluation).
//!
//! The floor and the margin ([`DEFAULT_THRESHOLD`], [`DEFAULT_MARGIN`]) were calibrated on
//! dreambooth-dev as their docs say; the negative margin ([`DEFAULT_NEGATIVE_MARGIN`]) is 0 -
//! simply closer to the references than to any negative - until there is data to tune it on.

use crate::catalog::{Catalog, Role};
use crate::Engine;
use rap_core::{BoundingBox, ConceptId, Hit, ImageId, Region, RegionSource, Result, Tenant, Via};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The decision's absolute floor on cosine similarity, for the default encoder
/// (EfficientNet-Lite0, average pooling, references keyed whole and by two centred crops) with
/// the default window scales. Another encoder needs its own calibration.
///
/// Calibrated together with [`DEFAULT_MARGIN`] on dreambooth-dev (`rap eval retrieval --refs 1`,
/// 20 subjects, 86 queries) and the harder sets built from it, trying floors 0.50/0.55/0.60 and
/// margins 0.02/0.05 (busy-machine runs, 2026-12-07):
///
/// | floor, margin | weighted | scenes F1 (2/3/4 subjects) | photo backgrounds F1 4 | look-alikes weighted | other dog (dog2) not called dog | photos without concepts |
/// |---|---|---|---|---|---|---|
/// | 0.50, 0.02 | 0.996 | 0.920 / 0.951 / 0.939 | - | 0.972 | 3 of 6 | - |
/// | 0.50, 0.05 | 0.998 | - | 0.908 | 0.981 | 3 of 6 | 3 of 10 |
/// | **0.55, 0.05** | 0.993 | 0.976 / 0.966 / 0.955 | 0.923 | 0.963 | 5 of 6 | 5 of 10 |
/// | 0.60, 0.05 | 0.982 | - | 0.889 | - | - | 10 of 10 |
///
/// The grid search on the single-subject queries alone ([`crate::Evidence::decide`] over
/// floor x margin, `best_decision` in the report) prefers 0.50 / 0.05; we take 0.55, which
/// gives up 0.005 there for photos that hold none of the concepts and for look-alikes outside
/// the memory, the cases a user meets most and the queries do not contain.
pub const DEFAULT_THRESHOLD: f32 = 0.55;

/// How much a region's best concept must beat the runner-up concept at that region (see
/// [`DEFAULT_THRESHOLD`] for its calibration).
pub const DEFAULT_MARGIN: f32 = 0.05;

/// How much a region's best concept must beat that concept's own negative examples there
/// (not tuned: no data set with user negatives yet).
pub const DEFAULT_NEGATIVE_MARGIN: f32 = 0.0;

/// How much a concept's floor moves per unit of its stability above or below
/// [`REFERENCE_STABILITY`] (see the module docs). Calibrated with [`DEFAULT_THRESHOLD`] by the
/// grid of `rap eval retrieval --dataset dreambooth-dev --refs 1` (`best_by_stability_weight`:
/// the best floor and margin at each weight; busy machine, 2026-12-07): weighted recognition
/// 0.9985 at weight 0, 0.9979-0.9982 at -2, -1, -0.5, -0.25, 0.5, 1 and 2, 0.9985 at 0.25 - no
/// weight beats one floor for all on this data, so the default is 0 (off). On the reference's
/// example memory against dreambooth-dev look-alikes (`tools/study/lookalike_recognition.py`,
/// 780 "no" questions) a negative weight helps a little and a positive one hurts: negative
/// accuracy 0.986 at 0, 0.991 at -1 and -2, 0.980 at 1, 0.951 at 2. Set `[retrieval]
/// stability_weight` to try it.
pub const DEFAULT_STABILITY_WEIGHT: f32 = 0.0;

/// The stability at which a concept's floor is the base floor: the mean stability of the
/// dreambooth-dev subjects' reference photos under the default encoder.
pub const REFERENCE_STABILITY: f32 = 0.85;

/// Proposed boxes narrower or shorter than this (pixels) are not embedded.
pub(crate) const MIN_REGION: f32 = 32.0;

/// Images' worth of keys looked up per query region.
pub(crate) const NEIGHBOURS: usize = 16;

/// How retrieval runs.
#[derive(Debug, Clone)]
pub struct RetrieveOptions {
    /// At most this many concepts (text mentions count towards it but are never dropped).
    pub top_k: usize,
    /// The decision's absolute floor: a region supports no concept below it.
    pub threshold: f32,
    /// The decision's margin over the runner-up concept at the same region.
    pub margin: f32,
    /// The decision's margin over the concept's own negative examples.
    pub negative_margin: f32,
    /// How much each concept's floor follows its stability (0: one floor for all).
    pub stability_weight: f32,
    /// Window sizes as fractions of the image's shorter side; empty = whole image only.
    pub window_scales: Vec<f32>,
    /// The cascade ([`crate::cascade`]) and its safety margin: the windows of the smallest
    /// scale are encoded only when the whole image and the larger windows do not decide every
    /// concept by this much. `None`: every region is encoded (`--no-cascade`).
    pub cascade: Option<f32>,
}

impl RetrieveOptions {
    /// The floor of a concept of this `stability` (`None`: not measured, the base floor).
    pub fn floor(&self, stability: Option<f32>) -> f32 {
        match stability {
            Some(s) => self.threshold + self.stability_weight * (s - REFERENCE_STABILITY),
            None => self.threshold,
        }
    }

    /// One floor for every concept, `threshold` (what `--threshold` asks for).
    pub fn with_fixed_floor(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self.stability_weight = 0.0;
        self
    }
}

impl Default for RetrieveOptions {
    fn default() -> Self {
        RetrieveOptions {
            top_k: 2,
            threshold: DEFAULT_THRESHOLD,
            margin: DEFAULT_MARGIN,
            negative_margin: DEFAULT_NEGATIVE_MARGIN,
            stability_weight: DEFAULT_STABILITY_WEIGHT,
            window_scales: vec![0.5, 0.75],
            cascade: Some(crate::cascade::DEFAULT_CASCADE_MARGIN),
        }
    }
}

/// Where the time of one retrieval went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub decode_ms: f64,
    pub embed_ms: f64,
    pub search_ms: f64,
    /// Regions encoded.
    pub regions: usize,
    /// Regions the cascade did not encode (0: it went on to every region, or was off).
    pub skipped: usize,
}

/// Retrieved concepts, best first, and how long it took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Retrieval {
    pub hits: Vec<Hit>,
    pub timings: Timings,
    /// The region proposer's (detector's) boxes in the query image, as it proposed them (those
    /// under 32 px were not embedded); empty without a proposer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub detections: Vec<Region>,
}

/// One concept's evidence in one query image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConceptScore {
    pub id: ConceptId,
    pub name: String,
    /// The best cosine similarity of any region to any of its reference images (no decision).
    pub score: f32,
    /// Whether the decision says it is in the image.
    pub present: bool,
    /// Where: its best supporting region when present, else the region of `score`.
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
    /// When present, the smaller of its two margins at that region (over the runner-up
    /// concept and over its own negatives); otherwise 0.
    pub margin: f32,
    /// How sure the decision is that it is present (0..1; see [`confidence`]).
    pub confidence: f32,
    /// The concept's floor under the options the decision ran with (see the module docs).
    pub floor: f32,
}

/// A concept's evidence at one region that supports it.
#[derive(Debug, Clone, Copy)]
struct Support {
    score: f32,
    margin: f32,
    region: usize,
}

/// The hit's confidence that concept C is in the image: a logistic function of how far the
/// evidence at its best supporting region clears C's floor and the margin,
/// `1 / (1 + exp(-(b0 + b1 * (score - floor) + b2 * (margin - options.margin))))`.
///
/// The coefficients were fitted by logistic regression ([`fit_logistic`]) on every hit the
/// default decision reports on dreambooth-dev (single-subject queries and 2-4 subject scenes,
/// `rap eval retrieval --fit-confidence`), with "the concept is really there" as the label, so
/// a confidence of 0.8 means about 8 in 10 such hits are right on that data.
pub fn confidence(score: f32, margin: f32, floor: f32, options: &RetrieveOptions) -> f32 {
    let [b0, b1, b2] = CONFIDENCE_COEFFICIENTS;
    let z = b0 + b1 * (score - floor) + b2 * (margin - options.margin);
    1.0 / (1.0 + (-z).exp())
}

/// `[b0, b1, b2]` of [`confidence`] (see its docs for how they were fitted).
///
/// Fitted on 957 hits (932 right) of `rap eval retrieval --dataset dreambooth-dev --refs 1
/// --scenes 100 --seed 18` at the default decision: expected calibration error 0.008 there
/// (the hand-set slopes before it: 0.016).
pub const CONFIDENCE_COEFFICIENTS: [f32; 3] = [-1.170, 36.33, 24.63];

/// Fits `P(y | x) = 1 / (1 + exp(-(b0 + b . x)))` to `(x, y)` samples by Newton's method on the
/// log-likelihood with a small ridge penalty (so separable data still gives finite
/// coefficients). Two features and a few thousand samples: a linear-algebra or ML crate would
/// be a large dependency for a 3x3 solve, so it is written out here.
pub fn fit_logistic(samples: &[([f32; 2], bool)]) -> [f32; 3] {
    const RIDGE: f64 = 1e-3;
    let mut b = [0.0f64; 3];
    for _ in 0..50 {
        let mut grad = [0.0f64; 3];
        let mut hess = [[0.0f64; 3]; 3];
        for (x, y) in samples {
            let v = [1.0, x[0] as f64, x[1] as f64];
            let z: f64 = (0..3).map(|i| b[i] * v[i]).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let w = (p * (1.0 - p)).max(1e-9);
            for i in 0..3 {
                grad[i] += (if *y { 1.0 } else { 0.0 } - p) * v[i];
                for j in 0..3 {
                    hess[i][j] += w * v[i] * v[j];
                }
            }
        }
        for i in 0..3 {
            grad[i] -= RIDGE * b[i];
            hess[i][i] += RIDGE;
        }
        let Some(step) = solve3(hess, grad) else {
            break;
        };
        for i in 0..3 {
            b[i] += step[i];
        }
        if step.iter().all(|s| s.abs() < 1e-9) {
            break;
        }
    }
    [b[0] as f32, b[1] as f32, b[2] as f32]
}

/// Solves the 3x3 system `a x = r` (Cramer's rule); `None` when `a` is singular.
fn solve3(a: [[f64; 3]; 3], r: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    if d.abs() < 1e-12 {
        return None;
    }
    let mut x = [0.0; 3];
    for (col, out) in x.iter_mut().enumerate() {
        let mut m = a;
        for row in 0..3 {
            m[row][col] = r[row];
        }
        *out = det(m) / d;
    }
    Some(x)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The regions of a `width` x `height` image that retrieval embeds: the whole image, then
/// square windows of each scale (a fraction of the shorter side) overlapping by half.
pub fn proposals(width: u32, height: u32, scales: &[f32]) -> Vec<Region> {
    let mut out = vec![Region::whole(width, height)];
    let short = width.min(height) as f32;
    for &scale in scales {
        let side = (short * scale).round();
        // (Written so that a scale that is not a number gives no window either.)
        if !(side >= 32.0 && scale < 1.0) {
            continue;
        }
        let stride = side / 2.0;
        let starts = |len: f32| {
            let n = ((len - side) / stride).ceil().max(0.0) as usize + 1;
            // Spread the windows evenly so the last one ends at the image's edge.
            (0..n)
                .map(move |i| {
                    if n == 1 {
                        0.0
                    } else {
                        (len - side) * i as f32 / (n - 1) as f32
                    }
                })
                .collect::<Vec<_>>()
        };
        for y in starts(height as f32) {
            for x in starts(width as f32) {
                out.push(Region {
                    bbox: BoundingBox::new(x, y, x + side, y + side),
                    source: RegionSource::Proposal,
                });
            }
        }
    }
    out
}

/// Finds the concepts whose name or an alias is mentioned in `text`: case-insensitive, with
/// or without angle brackets, on word boundaries (`bo` is not found in `bonus`). In order of
/// first mention.
pub fn mentions(text: &str, names: &[(ConceptId, String, Vec<String>)]) -> Vec<ConceptId> {
    let haystack = text.to_lowercase();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut found: Vec<(usize, ConceptId)> = Vec::new();
    for (id, name, aliases) in names {
        let first = std::iter::once(name)
            .chain(aliases)
            .filter_map(|n| {
                let needle = n.to_lowercase();
                if needle.is_empty() {
                    return None;
                }
                haystack.match_indices(&needle).map(|(i, _)| i).find(|&i| {
                    let before = haystack[..i].chars().next_back();
                    let after = haystack[i + needle.len()..].chars().next();
                    !before.is_some_and(is_word) && !after.is_some_and(is_word)
                })
            })
            .min();
        if let Some(pos) = first {
            found.push((pos, id.clone()));
        }
    }
    found.sort_by_key(|(pos, _)| *pos);
    found.into_iter().map(|(_, id)| id).collect()
}

impl Engine {
    /// Retrieves the tenant's concepts for an image (encoded bytes) and/or a text.
    pub fn retrieve(
        &self,
        tenant: &Tenant,
        image: Option<&[u8]>,
        text: Option<&str>,
        options: &RetrieveOptions,
    ) -> Result<Retrieval> {
        let mut hits: Vec<Hit> = Vec::new();
        let mut timings = Timings::default();
        let mut detections = Vec::new();
        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            let catalog = self.catalog(tenant)?;
            for id in mentions(text, &catalog.names()) {
                if let Some(c) = catalog.concepts.iter().find(|c| c.id == id) {
                    hits.push(Hit {
                        id,
                        name: c.name.clone(),
                        score: 1.0,
                        via: Via::Text,
                        bbox: None,
                        confidence: None,
                    });
                }
            }
        }
        if let Some(bytes) = image {
            let scored = self.recognize(tenant, bytes, options, &mut timings, &mut detections)?;
            let mut room = options.top_k.saturating_sub(hits.len());
            for c in scored.into_iter().filter(|c| c.present) {
                // A concept named in the text and seen in the image is one hit with both
                // facts: where it is and how well it matched (it keeps the text's place).
                if let Some(named) = hits.iter_mut().find(|h| h.id == c.id) {
                    named.via = Via::TextAndImage;
                    named.score = c.score;
                    named.bbox = Some(c.bbox);
                    named.confidence = Some(c.confidence);
                } else if room > 0 {
                    room -= 1;
                    hits.push(Hit {
                        id: c.id,
                        name: c.name,
                        score: c.score,
                        via: Via::Image,
                        bbox: Some(c.bbox),
                        confidence: Some(c.confidence),
                    });
                }
            }
        }
        Ok(Retrieval {
            hits,
            timings,
            detections,
        })
    }

    /// Every concept that matched any region of the image, with its best score, best first (no
    /// decision, no top-k): [`Engine::recognize`]'s raw scores. The box is that of the
    /// concept's best supporting region when the decision finds it present, else of its score.
    pub fn score_image(
        &self,
        tenant: &Tenant,
        bytes: &[u8],
        window_scales: &[f32],
        timings: &mut Timings,
    ) -> Result<Vec<(ConceptId, f32, BoundingBox)>> {
        // Raw scores of every region: the cascade would leave out regions that can raise them.
        let options = RetrieveOptions {
            window_scales: window_scales.to_vec(),
            cascade: None,
            ..RetrieveOptions::default()
        };
        let mut scored = self.recognize(tenant, bytes, &options, timings, &mut Vec::new())?;
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(scored
            .into_iter()
            .map(|c| {
                let bbox = c.bbox;
                (c.id, c.score, bbox)
            })
            .collect())
    }

    /// The evidence for every concept that matched any region of the image, and the decision
    /// (see [the module](self)): concepts found present first (by score), then the rest (by
    /// score). Also gives the region proposer's boxes (`detections`).
    pub fn recognize(
        &self,
        tenant: &Tenant,
        bytes: &[u8],
        options: &RetrieveOptions,
        timings: &mut Timings,
        detections: &mut Vec<Region>,
    ) -> Result<Vec<ConceptScore>> {
        let evidence = self.evidence_with(tenant, bytes, options, timings, detections)?;
        let start = Instant::now();
        let decided = evidence.decide(options);
        timings.search_ms += ms(start.elapsed());
        Ok(decided)
    }

    /// What every region of the image (no cascade) matches among the tenant's concepts,
    /// before any decision: the input of [`Evidence::decide`], kept by evaluations that try
    /// several decisions on the same queries. [`Engine::evidence_with`] is the same with
    /// every option, the cascade included.
    pub fn evidence(
        &self,
        tenant: &Tenant,
        bytes: &[u8],
        window_scales: &[f32],
        timings: &mut Timings,
        detections: &mut Vec<Region>,
    ) -> Result<Evidence> {
        let options = RetrieveOptions {
            window_scales: window_scales.to_vec(),
            cascade: None,
            ..RetrieveOptions::default()
        };
        self.evidence_with(tenant, bytes, &options, timings, detections)
    }
}

/// What one region matched: the best score of each concept's references and negatives, by
/// the concept's index in [`Evidence`].
#[derive(Debug, Clone, Default)]
struct RegionEvidence {
    positive: HashMap<usize, f32>,
    negative: HashMap<usize, f32>,
}

/// What a query image's regions matched ([`Engine::evidence`]), ready for [`Evidence::decide`].
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The tenant's concepts the indexes below refer to (shared, not copied per query).
    catalog: Arc<Catalog>,
    regions: Vec<BoundingBox>,
    per_region: Vec<RegionEvidence>,
}

impl Evidence {
    /// The evidence of `regions` (boxes in the full image's pixels) from the images of each
    /// one's nearest keys (`found[i]`: (cosine similarity, image) of region `i`).
    pub(crate) fn from_neighbours(
        catalog: Arc<Catalog>,
        regions: Vec<BoundingBox>,
        found: &[Vec<(f32, ImageId)>],
    ) -> Evidence {
        let mut per_region = Vec::with_capacity(found.len());
        for hits in found {
            let mut seen = RegionEvidence::default();
            for (score, image) in hits {
                for &(concept, role) in catalog.owners(image) {
                    let slot = match role {
                        Role::Reference => seen.positive.entry(concept),
                        Role::Negative => seen.negative.entry(concept),
                    }
                    .or_insert(f32::NEG_INFINITY);
                    *slot = slot.max(*score);
                }
            }
            per_region.push(seen);
        }
        Evidence {
            catalog,
            regions,
            per_region,
        }
    }

    /// Adds the regions of `more` (evidence over the same catalog) after these.
    pub(crate) fn append(&mut self, more: Evidence) {
        self.regions.extend(more.regions);
        self.per_region.extend(more.per_region);
    }

    /// The boxes of the regions this evidence comes from (full image pixels), in order.
    pub fn regions(&self) -> &[BoundingBox] {
        &self.regions
    }

    /// The decision of [the module](self) under `options` (its floor and margins): every
    /// concept that matched any region, present ones first, each group by score.
    pub fn decide(&self, options: &RetrieveOptions) -> Vec<ConceptScore> {
        self.decisions(options)
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    }

    /// [`Evidence::decide`], with each present concept's best supporting region.
    fn decisions(&self, options: &RetrieveOptions) -> Vec<(ConceptScore, Option<Support>)> {
        let floor_of = |concept: usize| options.floor(self.catalog.concepts[concept].stability);
        // Best raw score of each concept over all regions (for ranking), and the regions
        // that support each concept.
        let mut best: HashMap<usize, (f32, usize)> = HashMap::new();
        let mut support: HashMap<usize, Vec<Support>> = HashMap::new();
        for (r, seen) in self.per_region.iter().enumerate() {
            for (&concept, &score) in &seen.positive {
                let entry = best.entry(concept).or_insert((f32::NEG_INFINITY, r));
                if score > entry.0 {
                    *entry = (score, r);
                }
            }
            if let Some((concept, score, margin)) =
                decide(&seen.positive, &seen.negative, options, floor_of)
            {
                support.entry(concept).or_default().push(Support {
                    score,
                    margin,
                    region: r,
                });
            }
        }
        let mut scored: Vec<(ConceptScore, Option<Support>)> = best
            .into_iter()
            .map(|(concept, (score, region))| {
                let entry = &self.catalog.concepts[concept];
                let floor = floor_of(concept);
                let top = support.get(&concept).and_then(|supports| {
                    supports
                        .iter()
                        .max_by(|a, b| a.score.total_cmp(&b.score))
                        .copied()
                });
                let (bbox, margin, confidence) = match top {
                    Some(top) => (
                        self.regions[top.region],
                        top.margin,
                        confidence(top.score, top.margin, floor, options),
                    ),
                    None => (self.regions[region], 0.0, 0.0),
                };
                let decided = ConceptScore {
                    id: entry.id.clone(),
                    name: entry.name.clone(),
                    score,
                    present: top.is_some(),
                    bbox,
                    margin,
                    confidence,
                    floor,
                };
                (decided, top)
            })
            .collect();
        scored.sort_by(|(a, _), (b, _)| {
            b.present
                .cmp(&a.present)
                .then(b.score.total_cmp(&a.score))
                .then(a.name.cmp(&b.name))
        });
        scored
    }

    /// The features [`confidence`] is a function of, for each concept the decision under
    /// `options` reports present: `(name, [score - floor, margin - options.margin])`. What
    /// [`fit_logistic`] is fitted on.
    pub fn confidence_features(&self, options: &RetrieveOptions) -> Vec<(String, [f32; 2])> {
        self.decisions(options)
            .into_iter()
            .filter_map(|(c, top)| {
                let top = top?;
                Some((c.name, [top.score - c.floor, top.margin - options.margin]))
            })
            .collect()
    }
}

/// What one region supports, from the best score of each concept's references (`positive`)
/// and negatives (`negative`) there: `(concept, score, margin)` where margin is the smaller
/// of the margins over the runner-up concept and over the concept's negatives, or `None`.
fn decide(
    positive: &HashMap<usize, f32>,
    negative: &HashMap<usize, f32>,
    options: &RetrieveOptions,
    floor_of: impl Fn(usize) -> f32,
) -> Option<(usize, f32, f32)> {
    let (&concept, &score) = positive
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))?;
    let runner_up = positive
        .iter()
        .filter(|(c, _)| **c != concept)
        .map(|(_, s)| *s)
        .fold(f32::NEG_INFINITY, f32::max);
    let over_others = score - runner_up;
    let over_negatives = score - negative.get(&concept).copied().unwrap_or(f32::NEG_INFINITY);
    let decisive = score >= floor_of(concept)
        && over_others >= options.margin
        && over_negatives >= options.negative_margin;
    // An unopposed concept's margin is capped so the confidence stays finite.
    let margin = over_others.min(over_negatives).min(1.0);
    decisive.then_some((concept, score, margin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_cover_the_image_with_the_whole_first() {
        let regions = proposals(1000, 600, &[0.5]);
        assert_eq!(regions[0].source, RegionSource::Whole);
        let windows = &regions[1..];
        // side 300, stride 150: 6 across, 3 down, ending exactly at the edges.
        assert_eq!(windows.len(), 6 * 3);
        assert!(windows
            .iter()
            .all(|r| r.bbox.width() == 300.0 && r.bbox.x2 <= 1000.0 && r.bbox.y2 <= 600.0));
        assert!(windows
            .iter()
            .any(|r| r.bbox.x2 == 1000.0 && r.bbox.y2 == 600.0));
        assert_eq!(proposals(20, 20, &[0.5]).len(), 1, "no windows under 32 px");
    }

    #[test]
    fn the_logistic_fit_recovers_the_coefficients_that_made_the_labels() {
        // Labels drawn from known coefficients with a fixed-seed generator.
        let truth = [-1.0f64, 30.0, 20.0];
        let mut state = 7u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let samples: Vec<([f32; 2], bool)> = (0..20_000)
            .map(|_| {
                let x = [uniform() * 0.3 - 0.1, uniform() * 0.2 - 0.05];
                let z = truth[0] + truth[1] * x[0] + truth[2] * x[1];
                let p = 1.0 / (1.0 + (-z).exp());
                ([x[0] as f32, x[1] as f32], uniform() < p)
            })
            .collect();
        let fitted = fit_logistic(&samples);
        for (f, t) in fitted.iter().zip(truth) {
            assert!(
                (*f as f64 - t).abs() <= 0.15 * t.abs().max(1.0),
                "{fitted:?} vs {truth:?}"
            );
        }
        // Separable data still gives finite coefficients (the ridge).
        let separable = [([0.1, 0.0], true), ([-0.1, 0.0], false)];
        assert!(fit_logistic(&separable).iter().all(|b| b.is_finite()));
    }

    #[test]
    fn a_concepts_floor_follows_its_stability_unless_one_floor_is_asked_for() {
        let options = RetrieveOptions {
            threshold: 0.5,
            stability_weight: 2.0,
            ..RetrieveOptions::default()
        };
        let above = options.floor(Some(REFERENCE_STABILITY + 0.05));
        assert!((above - 0.6).abs() < 1e-6, "{above}");
        assert_eq!(options.floor(None), 0.5);
        let fixed = options.clone().with_fixed_floor(0.7);
        assert_eq!(fixed.floor(Some(REFERENCE_STABILITY + 0.05)), 0.7);
    }

    #[test]
    fn mentions_respect_word_boundaries_case_brackets_and_aliases() {
        let id = |s: &str| ConceptId(s.into());
        let names = vec![
            (id("1"), "bo".to_string(), vec![]),
            (
                id("2"),
                "Mr Whiskers".to_string(),
                vec!["kitty".to_string()],
            ),
            (id("3"), "dug".to_string(), vec![]),
        ];
        assert_eq!(mentions("Is <bo> here?", &names), vec![id("1")]);
        assert_eq!(mentions("what a bonus", &names), Vec::<ConceptId>::new());
        assert_eq!(mentions("KITTY and Bo", &names), vec![id("2"), id("1")]);
        assert_eq!(
            mentions("mr whiskers, dug.", &names),
            vec![id("2"), id("3")]
        );
        assert_eq!(mentions("dugout", &names), Vec::<ConceptId>::new());
    }
}
