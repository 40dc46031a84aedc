//! The cascade: which regions of a query image are encoded, in which stage.
//!
//! Retrieval looks at the whole image and at square windows of each window scale
//! ([`crate::retrieve::proposals`]). Most of a query's time is the encoder, and the windows of
//! the smallest scale are most of the regions (9 of 14 on a square photo with the default
//! scales 0.5 and 0.75), yet they matter only for a concept that is small in the photo. So:
//!
//! - **Stage 1** encodes the whole image, the windows of every scale but the smallest (the
//!   *coarse* windows) and a region proposer's boxes, and looks their keys up.
//! - If that evidence already **decides** every concept of the tenant with the safety margin
//!   `m` ([`RetrieveOptions::cascade`]), the query stops there. Otherwise **stage 2** encodes
//!   the windows of the smallest scale (the *fine* windows) and the decision is taken on the
//!   regions of both stages, exactly as without the cascade.
//!
//! # What "decides" means
//! With the query's floor `f`, margin `g` and negative margin `n`, stage 1 decides when all:
//! 1. every concept of the tenant is either reported *present* by the decision
//!    ([`Evidence::decide`]) under the stricter options `f + m`, `g + m`, `n + m`, or has its
//!    best raw score over the stage-1 regions below `f - m`: supported with room to spare,
//!    or far from the floor everywhere;
//! 2. no concept can hide outside the keys looked up: where a region's key search returned its
//!    whole quota of keys (so concepts further away were not seen), the last (lowest) score is
//!    below `f - m` too;
//! 3. at least one concept is present. A photo where stage 1 finds nothing is exactly the
//!    case the fine windows are for (a concept small in the photo), and the ranking of the
//!    raw scores below the floor (what top-1 and recall@5 measure) is not settled by it: on
//!    dreambooth-dev the fine windows moved the right subject to the top of such a ranking.
//!    With one concept present, it leads every other by at least `2m`.
//!
//! A concept is only ever added by more regions, never removed (each region supports at most
//! one concept, on its own evidence), so what stage 1 found stays found; what stopping early
//! risks is a concept only the fine windows would bring over the floor, or a better box and
//! score for a found one. The margin `m` bounds how much the fine windows may raise a
//! concept's best score and still change nothing; [`DEFAULT_CASCADE_MARGIN`] says how it was
//! calibrated.

use crate::catalog::Catalog;
use crate::retrieve::{ms, proposals, Evidence, Timings, MIN_REGION, NEIGHBOURS};
use crate::{Engine, RetrieveOptions};
use rap_core::{BoundingBox, Error, ImageEncoder, ProposalHints, Region, Result, Tenant};
use rap_image::ScaledImage;
use std::sync::Arc;
use std::time::Instant;

/// The cascade's safety margin `m` for the default decision (see [the module](self)).
///
/// Calibrated on dreambooth-dev with `rap eval retrieval --refs 1 --scenes 30 --seed 7`
/// (default floor 0.55, margin 0.05, windows 0.5 / 0.75; busy machine, 2026-12-07): all 20
/// subjects (86 queries), and the look-alikes alone (`--subjects dog,dog2,dog3,cat`, 18
/// queries); scene F1 by size 2 / 3 / 4, box hits in brackets:
///
/// | | top-1 | recall@5 | weighted | scenes F1 | regions per query / scene | stopped at stage 1 |
/// |---|---|---|---|---|---|---|
/// | all, no cascade | 0.988 | 1.000 | 0.993 | 0.983 / 0.920 / 0.953 | 14.0 / 22.0 | - |
/// | all, m = 0.05 | 0.988 | 1.000 | 0.993 | 0.983 / 0.920 / **0.949** | 8.3 / 20.2 | 63% / 12% |
/// | all, **m = 0.15** | 0.988 | 1.000 | 0.993 | 0.983 / 0.920 / 0.953 | 13.1 / 22.0 | 10% / 0% |
/// | look-alikes, no cascade | 1.000 | 1.000 | 0.963 | 0.939 / 0.954 / 0.938 (0.93 / 0.95 / 0.98) | 14.0 / 22.0 | - |
/// | look-alikes, m = 0.05 | 1.000 | 1.000 | 0.963 | 0.939 / **0.910 / 0.894** (0.91 / 0.74 / 0.89) | 7.0 / 16.5 | 78% / 37% |
/// | look-alikes, **m = 0.15** | 1.000 | 1.000 | 0.963 | 0.939 / 0.954 / 0.938 (0.93 / **0.93** / 0.98) | 11.0 / 21.8 | 33% / 1% |
///
/// So the safe margin saves little on these photos (7% of the regions of single-subject
/// queries, none on scenes): a concept must be supported 0.15 over the floor and the margin
/// by the whole image or a 0.75 window, and every other concept must stay under 0.40. What
/// would let it stop more often without losing scenes is open (e.g. a rule on how much of
/// the image the supporting region covers). At 0.05 the coarse windows of a scene (each mixing two pasted subjects) scored a subject
/// more than 0.1 under what one fine window gave it, so scenes lost subjects; 0.15 keeps every
/// figure (one box of a 3-subject scene less). A larger `m` only ever stops fewer queries
/// (each rule is stricter), so every query at 0.15 gives either its no-cascade answer or its
/// answer at 0.05. Rule 3 came from the first single-subject run at 0.05 without it: one dog3
/// photo where stage 1 found nothing stopped with dog3 second by raw score (top-1 0.977);
/// the fine windows put it first.
pub const DEFAULT_CASCADE_MARGIN: f32 = 0.15;

/// A query's regions by stage (boxes in the full image's pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    /// The whole image, then the windows of every scale but the smallest.
    pub first: Vec<Region>,
    /// The windows of the smallest scale (with one scale, stage 1 is the whole image alone
    /// and these are that scale's windows; with none, this is empty).
    pub second: Vec<Region>,
}

/// Splits the regions of a `width` x `height` image ([`proposals`]) into the cascade's stages:
/// the windows of the smallest window scale are stage 2, everything else stage 1. Together they
/// are exactly the regions of [`proposals`] (stage 1's first).
pub fn stages(width: u32, height: u32, window_scales: &[f32]) -> Stages {
    let usable = |s: &&f32| s.is_finite() && **s > 0.0 && **s < 1.0;
    let Some(smallest) = window_scales
        .iter()
        .filter(usable)
        .copied()
        .min_by(f32::total_cmp)
    else {
        return Stages {
            first: proposals(width, height, window_scales),
            second: Vec::new(),
        };
    };
    let coarse: Vec<f32> = window_scales
        .iter()
        .copied()
        .filter(|s| *s != smallest)
        .collect();
    let mut second = proposals(width, height, &[smallest]);
    second.remove(0); // the whole image, which stage 1 has
    Stages {
        first: proposals(width, height, &coarse),
        second,
    }
}

/// Whether stage 1's evidence decides every concept with the safety margin `m` (rules 1 and 2
/// of [the module](self)); `unseen` is the highest score a concept left out of some region's
/// key search could have had there (`-inf` when no search was cut short).
pub fn stage_one_decides(
    evidence: &Evidence,
    unseen: f32,
    options: &RetrieveOptions,
    m: f32,
) -> bool {
    let far = options.threshold - m;
    if unseen >= far {
        return false;
    }
    let strict = RetrieveOptions {
        threshold: options.threshold + m,
        margin: options.margin + m,
        negative_margin: options.negative_margin + m,
        ..options.clone()
    };
    let decided = evidence.decide(&strict);
    decided.iter().any(|c| c.present) && decided.iter().all(|c| c.present || c.score < far)
}

/// What one query needs of the tenant, resolved once for both stages.
struct Query<'a> {
    tenant: &'a Tenant,
    encoder: Arc<dyn ImageEncoder>,
    catalog: Arc<Catalog>,
    /// Keys looked up per region.
    k: usize,
}

impl Engine {
    /// What the image's regions match among the tenant's concepts, before any decision: the
    /// input of [`Evidence::decide`]. Encodes the regions in the cascade's stages (see [the
    /// module](self)) when `options.cascade` is set, else every region in one batch; the
    /// regions encoded and skipped are counted in `timings`. Also gives the region
    /// proposer's boxes (`detections`).
    ///
    /// The proposer is told the tenant's concept categories as they are now (read from the
    /// store at each call, so an edited category counts at the next query).
    pub fn evidence_with(
        &self,
        tenant: &Tenant,
        bytes: &[u8],
        options: &RetrieveOptions,
        timings: &mut Timings,
        detections: &mut Vec<Region>,
    ) -> Result<Evidence> {
        let start = Instant::now();
        let encoder = self.encoder_for(tenant)?;
        self.ensure_keys(tenant, encoder.as_ref())?;
        // Each reference has as many keys as the encoder keys regions of it: NEIGHBOURS
        // images' worth, so more keys per image do not crowd out images.
        let k = NEIGHBOURS * encoder.key_regions(1024, 1024).len().max(1);
        let query = Query {
            tenant,
            catalog: self.catalog(tenant)?,
            encoder,
            k,
        };
        timings.search_ms += ms(start.elapsed());

        let start = Instant::now();
        // Decoded at a reduced scale where that loses nothing for the smallest windows (see
        // `crate::pixels`); regions and hits stay in the full image's pixels. A proposer gets
        // the full image.
        let decoded = crate::pixels::decode_query(
            bytes,
            self.limits(),
            query.encoder.as_ref(),
            &options.window_scales,
            self.proposer.is_some(),
        )?;
        timings.decode_ms += ms(start.elapsed());

        let start = Instant::now();
        let Stages {
            mut first,
            mut second,
        } = stages(
            decoded.full_width,
            decoded.full_height,
            &options.window_scales,
        );
        if let Some(p) = &self.proposer {
            let categories = self.store().categories(tenant)?;
            let hints = ProposalHints::from_categories(categories.iter().map(String::as_str));
            let proposed = p.propose(&decoded.image, &hints)?;
            // A detector's boxes join stage 1 (tiny boxes say little to the encoder).
            first.extend(
                proposed
                    .iter()
                    .filter(|r| r.bbox.width() >= MIN_REGION && r.bbox.height() >= MIN_REGION)
                    .cloned(),
            );
            *detections = proposed;
        }
        timings.embed_ms += ms(start.elapsed());
        let Some(m) = options.cascade else {
            first.append(&mut second);
            return Ok(self.look(&query, &decoded, &first, timings)?.0);
        };
        let (mut evidence, unseen) = self.look(&query, &decoded, &first, timings)?;
        if second.is_empty() {
            return Ok(evidence);
        }
        let start = Instant::now();
        let decided = stage_one_decides(&evidence, unseen, options, m);
        timings.search_ms += ms(start.elapsed());
        if decided {
            timings.skipped += second.len();
        } else {
            evidence.append(self.look(&query, &decoded, &second, timings)?.0);
        }
        Ok(evidence)
    }

    /// Encodes `regions` of the decoded query (resized straight from it, in one batch) and
    /// looks up their nearest keys: their evidence, and the highest score a concept missing
    /// from a region's cut-short key list could have had (`-inf` when none was cut short).
    fn look(
        &self,
        query: &Query,
        decoded: &ScaledImage,
        regions: &[Region],
        timings: &mut Timings,
    ) -> Result<(Evidence, f32)> {
        let start = Instant::now();
        let boxes: Vec<BoundingBox> = regions
            .iter()
            .map(|r| decoded.to_image_box(&r.bbox))
            .collect();
        let embeddings = query.encoder.embed_regions(&decoded.image, &boxes)?;
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
        let found =
            self.search_nearest(query.tenant, query.encoder.as_ref(), &embeddings, query.k)?;
        let unseen = found
            .iter()
            .filter(|hits| hits.len() >= query.k)
            .filter_map(|hits| hits.last().map(|(score, _)| *score))
            .fold(f32::NEG_INFINITY, f32::max);
        let evidence = Evidence::from_neighbours(
            query.catalog.clone(),
            regions.iter().map(|r| r.bbox).collect(),
            &found,
        );
        timings.search_ms += ms(start.elapsed());
        Ok((evidence, unseen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_scale_is_stage_two_and_together_they_are_every_region() {
        let s = stages(1000, 1000, &[0.5, 0.75]);
        let all = proposals(1000, 1000, &[0.5, 0.75]);
        assert_eq!(s.first.len() + s.second.len(), all.len());
        assert_eq!(s.first.len(), 1 + 4, "whole + four 750-px windows");
        assert_eq!(s.second.len(), 9, "nine 500-px windows");
        assert!(s.second.iter().all(|r| r.bbox.width() == 500.0));
        assert!(s.first[1..].iter().all(|r| r.bbox.width() == 750.0));
        for r in &all {
            assert!(s.first.contains(r) || s.second.contains(r), "{r:?}");
        }
        // One scale: the whole image alone, then its windows; none: one stage.
        let s = stages(1000, 1000, &[0.5]);
        assert_eq!((s.first.len(), s.second.len()), (1, 9));
        let s = stages(1000, 1000, &[]);
        assert_eq!((s.first.len(), s.second.len()), (1, 0));
        let s = stages(1000, 1000, &[1.5, f32::NAN]);
        assert_eq!((s.first.len(), s.second.len()), (1, 0));
    }
}
