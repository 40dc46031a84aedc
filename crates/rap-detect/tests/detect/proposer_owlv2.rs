//! OWLv2 as retrieval's region proposer, on the tiny random checkpoint of the golden test: one
//! query per concept category, boxes in the image's pixels exactly as `Owlv2::detect` finds
//! them for those queries (labelled with the category), threshold and cap honoured, nothing
//! without categories. (Resolving the `[retrieval] detector` setting is rap-app's.)

use crate::golden_common;
use rap_core::{ProposalHints, RegionProposer, RegionSource};
use rap_detect::detector::Owlv2Proposer;
use rap_detect::owlv2::{DetectOptions, Owlv2};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

/// A real photo, cut to 700 x 500 so the padding to a square matters.
fn photo() -> image::RgbImage {
    let path = golden_common::datasets_dir().join("dreambooth-dev/dog/00.jpg");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared datasets are needed)", path.display()));
    let img = rap_image::decode(&bytes, &rap_image::Limits::default()).unwrap();
    image::imageops::crop_imm(&img, 40, 100, 700, 500).to_image()
}

/// (label, score, box) of proposed regions.
fn rows(regions: &[rap_core::Region]) -> Vec<(String, f32, [f32; 4])> {
    regions
        .iter()
        .map(|r| match &r.source {
            RegionSource::Detector { label, score } => (label.clone(), *score, r.bbox.into()),
            s => panic!("not a detector region: {s:?}"),
        })
        .collect()
}

#[test]
fn owlv2_proposes_detect_boxes_for_the_categories() {
    let model = Owlv2::load(&fixture("owlv2")).unwrap();
    let img = photo();
    let hints = ProposalHints::from_categories(["mug", "dog", "Dog"]);
    assert_eq!(hints.categories, vec!["dog", "mug"]);
    let queries = ["dog", "mug"];
    let opts = DetectOptions {
        threshold: 0.0,
        nms_iou: Some(0.3),
        max_detections: 6,
    };
    let expected = model.detect(&img, &queries, &opts).unwrap();
    let proposer = Owlv2Proposer::new(Owlv2::load(&fixture("owlv2")).unwrap(), opts);
    let got = rows(&proposer.propose(&img, &hints).unwrap());
    assert_eq!(got.len(), 6, "capped at max_detections: {got:?}");
    assert_eq!(got.len(), expected.len());
    for ((label, score, b), d) in got.iter().zip(&expected) {
        assert_eq!(label, queries[d.query]);
        assert_eq!(*score, d.score);
        assert_eq!(*b, <[f32; 4]>::from(d.bbox));
        // In the photo's pixels (not the padded square's).
        assert!(
            b[0] >= 0.0 && b[1] >= 0.0 && b[0] < b[2] && b[1] < b[3],
            "{b:?}"
        );
        assert!(b[2] <= 700.0 && b[3] <= 500.0, "{b:?}");
    }
    assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "best first");

    // The threshold: only boxes scoring above it, the same ones detect keeps.
    let all = model
        .detect(
            &img,
            &queries,
            &DetectOptions {
                max_detections: 1000,
                ..opts
            },
        )
        .unwrap();
    let cut = all[all.len() / 2].score;
    let opts = DetectOptions {
        threshold: cut,
        max_detections: 1000,
        ..opts
    };
    let above = rows(
        &Owlv2Proposer::new(Owlv2::load(&fixture("owlv2")).unwrap(), opts)
            .propose(&img, &hints)
            .unwrap(),
    );
    assert!(!above.is_empty() && above.len() < all.len());
    assert!(above.iter().all(|r| r.1 > cut));
    assert_eq!(
        above.len(),
        model.detect(&img, &queries, &opts).unwrap().len()
    );

    // No categories: nothing to look for.
    assert!(proposer
        .propose(&img, &ProposalHints::default())
        .unwrap()
        .is_empty());
    // Owlv2 itself proposes with detect's default post-processing.
    let default = rows(&model.propose(&img, &hints).unwrap());
    let d = model
        .detect(&img, &queries, &DetectOptions::default())
        .unwrap();
    assert_eq!(default.len(), d.len());
    assert!(default
        .iter()
        .zip(&d)
        .all(|(r, d)| r.1 == d.score && r.0 == queries[d.query]));
}
