//! Retrieve: which of the user's concepts are in this image, or named in this text.
//!
//! Unlike the reference, which only looks where a detector fired, every query image is looked
//! at whole *and* through multi-scale overlapping windows ([`proposals`]), so a small concept
//! in a big photo is still found, and a missed detection never means "nothing". Every
//! reference image of every concept is a key; a concept's score is its best cosine similarity
//! over (query regions x its keys). Concepts named in the text (`<bo>`, `bo`, `Bo`, any alias,
//! on word boundaries) come first, as in the reference. A calibrated threshold says "not here".

use crate::Engine;
use rap_core::{
    BoundingBox, ConceptId, Error, Hit, ImageId, ProposalHints, Region, RegionSource, Result,
    Tenant, Via,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The default "this concept is in the image" threshold on cosine similarity, for the default
/// encoder (EfficientNet-Lite0, average pooling) with the default window scales.
///
/// Calibrated on dreambooth-dev with `rap eval retrieval --refs 1` (20 subjects, 86 queries,
/// each query scored against every subject): the threshold that maximises weighted
/// recognition accuracy (mean of positive and negative accuracy) was 0.507 (weighted 0.976);
/// with the whole image only it was 0.490 (0.969). We round to 0.5 rather than fit the
/// 20 subjects more closely. Another encoder needs its own calibration.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// Proposed boxes narrower or shorter than this (pixels) are not embedded.
const MIN_REGION: f32 = 32.0;

/// How retrieval runs.
#[derive(Debug, Clone)]
pub struct RetrieveOptions {
    /// At most this many concepts (text mentions count towards it but are never dropped).
    pub top_k: usize,
    /// Image hits below this score are left out.
    pub threshold: f32,
    /// Window sizes as fractions of the image's shorter side; empty = whole image only.
    pub window_scales: Vec<f32>,
}

impl Default for RetrieveOptions {
    fn default() -> Self {
        RetrieveOptions {
            top_k: 2,
            threshold: DEFAULT_THRESHOLD,
            window_scales: vec![0.5, 0.75],
        }
    }
}

/// Where the time of one retrieval went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub decode_ms: f64,
    pub embed_ms: f64,
    pub search_ms: f64,
    pub regions: usize,
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The regions of a `width` x `height` image that retrieval embeds: the whole image, then
/// square windows of each scale (a fraction of the shorter side) overlapping by half.
pub fn proposals(width: u32, height: u32, scales: &[f32]) -> Vec<Region> {
    let mut out = vec![Region::whole(width, height)];
    let short = width.min(height) as f32;
    for &scale in scales {
        let side = (short * scale).round();
        if side < 32.0 || scale >= 1.0 {
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
            let concepts = self.concepts(tenant)?;
            let names: Vec<_> = concepts
                .iter()
                .map(|c| (c.id.clone(), c.name.clone(), c.aliases.clone()))
                .collect();
            for id in mentions(text, &names) {
                if let Some(c) = concepts.iter().find(|c| c.id == id) {
                    hits.push(Hit {
                        id,
                        name: c.name.clone(),
                        score: 1.0,
                        via: Via::Text,
                        bbox: None,
                    });
                }
            }
        }
        if let Some(bytes) = image {
            let scored = self.score_image_with_detections(
                tenant,
                bytes,
                &options.window_scales,
                &mut timings,
                &mut detections,
            )?;
            let room = options.top_k.saturating_sub(hits.len());
            let image_hits: Vec<_> = scored
                .into_iter()
                .filter(|(id, ..)| !hits.iter().any(|h| &h.id == id))
                .filter(|(_, score, _)| *score >= options.threshold)
                .take(room)
                .collect();
            for (id, score, bbox) in image_hits {
                let concept = self.store().concept_by_id(tenant, &id)?;
                hits.push(Hit {
                    id,
                    name: concept.name,
                    score,
                    via: Via::Image,
                    bbox: Some(bbox),
                });
            }
        }
        Ok(Retrieval {
            hits,
            timings,
            detections,
        })
    }

    /// Every concept that matched any region of the image, with its best score and the box
    /// of that region, best first (no threshold, no top-k). The basis of [`Engine::retrieve`]
    /// and of the retrieval evaluation.
    pub fn score_image(
        &self,
        tenant: &Tenant,
        bytes: &[u8],
        window_scales: &[f32],
        timings: &mut Timings,
    ) -> Result<Vec<(ConceptId, f32, BoundingBox)>> {
        self.score_image_with_detections(tenant, bytes, window_scales, timings, &mut Vec::new())
    }

    /// [`Engine::score_image`], also giving the region proposer's boxes (`detections`).
    ///
    /// The proposer is told the tenant's concept categories as they are now (read from the
    /// store at each call, so an edited category counts at the next query).
    pub fn score_image_with_detections(
        &self,
        tenant: &Tenant,
        bytes: &[u8],
        window_scales: &[f32],
        timings: &mut Timings,
        detections: &mut Vec<Region>,
    ) -> Result<Vec<(ConceptId, f32, BoundingBox)>> {
        let encoder = self.encoder_for(tenant)?;
        let start = Instant::now();
        // Decoded at a reduced scale where that loses nothing (see `crate::pixels`); regions
        // and hits stay in the full image's pixels. A proposer gets the full image.
        let decoded = crate::pixels::decode_query(
            bytes,
            self.limits(),
            encoder.as_ref(),
            window_scales,
            self.proposer.is_some(),
        )?;
        let rgb = &decoded.image;
        timings.decode_ms += ms(start.elapsed());

        let start = Instant::now();
        let mut regions = proposals(decoded.full_width, decoded.full_height, window_scales);
        if let Some(p) = &self.proposer {
            let categories = self.store().categories(tenant)?;
            let hints = ProposalHints::from_categories(categories.iter().map(String::as_str));
            let proposed = p.propose(rgb, &hints)?;
            // A detector's boxes join the windows (tiny boxes say little to the encoder).
            regions.extend(
                proposed
                    .iter()
                    .filter(|r| r.bbox.width() >= MIN_REGION && r.bbox.height() >= MIN_REGION)
                    .cloned(),
            );
            *detections = proposed;
        }
        // Every region resized straight from the one decoded image, all in one batch.
        let boxes: Vec<BoundingBox> = regions
            .iter()
            .map(|r| decoded.to_image_box(&r.bbox))
            .collect();
        let embeddings = encoder.embed_regions(rgb, &boxes)?;
        if embeddings.len() != regions.len() {
            return Err(Error::Model(format!(
                "encoder returned {} embeddings for {} regions",
                embeddings.len(),
                regions.len()
            )));
        }
        timings.embed_ms += ms(start.elapsed());
        timings.regions += regions.len();

        let start = Instant::now();
        let neighbours = 16;
        let mut best: HashMap<ImageId, (f32, BoundingBox)> = HashMap::new();
        let found = self.nearest_images(tenant, &embeddings, neighbours)?;
        for (region, hits) in regions.iter().zip(found) {
            for (score, image) in hits {
                let entry = best
                    .entry(image)
                    .or_insert((f32::NEG_INFINITY, region.bbox));
                if score > entry.0 {
                    *entry = (score, region.bbox);
                }
            }
        }
        let mut by_concept: HashMap<ConceptId, (f32, BoundingBox)> = HashMap::new();
        for (image, (score, bbox)) in best {
            for id in self.store().concepts_with_image(tenant, &image)? {
                let entry = by_concept.entry(id).or_insert((f32::NEG_INFINITY, bbox));
                if score > entry.0 {
                    *entry = (score, bbox);
                }
            }
        }
        let mut scored: Vec<_> = by_concept
            .into_iter()
            .map(|(id, (s, b))| (id, s, b))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        timings.search_ms += ms(start.elapsed());
        Ok(scored)
    }
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
