//! Does the COCO detector help retrieval? The retrieval evaluation of `rap eval retrieval`
//! (same protocol, same figures: `rap_eval::retrieval::{subjects, threshold_figures, best_threshold}`)
//! run twice over one memory: the default regions only (whole image + windows), then with
//! CenterNet's boxes added to each query's regions (`Engine::with_region_proposer`).
//!
//! ```sh
//! cargo run --release -p rap --example detector_retrieval -- \
//!     ../shared/datasets/dreambooth-dev MODELS_DIR [REFS]
//! ```
//! MODELS_DIR must hold `efficientnet-lite0` and `centernet` (`rap models install ...`).

use rap_core::{NewConcept, Tenant};
use rap_engine::{Engine, EngineConfig, RetrieveOptions};
use rap_eval::retrieval::{best_threshold, subjects, threshold_figures, QueryOutcome};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dataset = PathBuf::from(args.get(1).expect("DATASET"));
    let models = PathBuf::from(args.get(2).expect("MODELS_DIR"));
    let refs: usize = args.get(3).map_or(Ok(1), |r| r.parse())?;
    let device = rap_app::environment::device()?;
    let encoder: Arc<dyn rap_core::ImageEncoder> =
        Arc::from(rap_app::models::load_default_encoder(&models, &device)?);
    let detector = Arc::new(rap_app::models::load_centernet(&models, &device)?);
    let scratch = tempfile::tempdir()?;
    let open = || {
        let e = encoder.clone();
        Engine::open(
            EngineConfig::new(scratch.path()),
            Box::new(move || Ok(Some(e.clone()))),
        )
    };
    let plain = open()?;
    let tenant = Tenant::new("eval")?;
    let subjects = subjects(&dataset)?;
    let mut queries = Vec::new();
    for (name, photos) in &subjects {
        let images = photos[..refs]
            .iter()
            .map(|p| plain.read_image(p))
            .collect::<rap_core::Result<Vec<_>>>()?;
        let new = NewConcept {
            name: name.clone(),
            ..Default::default()
        };
        plain.add_concept(&tenant, &new, images)?;
        queries.extend(photos[refs..].iter().map(|p| (name.clone(), p.clone())));
    }
    drop(plain);
    let scales = RetrieveOptions::default().window_scales;
    for with_detector in [false, true] {
        let mut engine = open()?;
        if with_detector {
            engine = engine.with_region_proposer(detector.clone());
        }
        let mut outcomes = Vec::new();
        let mut regions = 0;
        let started = Instant::now();
        for (subject, photo) in &queries {
            let bytes = std::fs::read(photo)?;
            let mut t = rap_engine::retrieve::Timings::default();
            let scored = engine.score_image(&tenant, &bytes, &scales, &mut t)?;
            regions += t.regions;
            let names: Vec<String> = scored
                .iter()
                .map(|(id, ..)| engine.store().concept_by_id(&tenant, id).map(|c| c.name))
                .collect::<rap_core::Result<_>>()?;
            let score_of = |s: &str| {
                names
                    .iter()
                    .position(|n| n == s)
                    .map_or(f32::NEG_INFINITY, |p| scored[p].1)
            };
            outcomes.push(QueryOutcome {
                subject: subject.clone(),
                photo: photo.display().to_string(),
                rank: names.iter().position(|n| n == subject).map(|p| p + 1),
                positive_score: score_of(subject),
                negative_scores: subjects
                    .iter()
                    .filter(|(n, _)| n != subject)
                    .map(|(n, _)| score_of(n))
                    .collect(),
                // This example measures a plain threshold on raw scores (threshold_figures).
                reported: false,
                false_alarms: 0,
            });
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0 / queries.len() as f64;
        let all: Vec<&QueryOutcome> = outcomes.iter().collect();
        let f = threshold_figures(&all, rap_engine::DEFAULT_THRESHOLD);
        let (bt, bw) = best_threshold(&outcomes);
        println!(
            "detector {}: {} queries, {:.1} regions/query, top1 {:.3}, recall@5 {:.3}, MRR {:.3}, \
             weighted@0.5 {:.3} (pos {:.3}, neg {:.3}), best threshold {bt:.3} (weighted {bw:.3}), \
             {ms:.0} ms/query",
            if with_detector { "on " } else { "off" },
            f.queries,
            regions as f64 / queries.len() as f64,
            f.top1,
            f.recall_at_5,
            f.mrr,
            f.weighted,
            f.positive_accuracy,
            f.negative_accuracy,
        );
    }
    Ok(())
}
