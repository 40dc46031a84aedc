//! A region proposer (a detector) adds its boxes to the regions retrieval embeds: a small
//! concept that the whole image and the windows dilute is found at full strength, with the
//! proposed box; boxes under 32 px are not embedded; a failing proposer fails the retrieval.
//! The proposer is told the tenant's concept categories as stored at each query.

use rap_core::{
    BoundingBox, Error, NewConcept, ProposalHints, Region, RegionProposer, RegionSource, Result,
    Tenant,
};
use rap_engine::{ConceptEdit, Engine, ImageInput, RetrieveOptions};
use std::sync::{Arc, Mutex};

use crate::common;
use common::png;

/// Proposes fixed boxes (the real detector, CenterNet, is tested in rap-vision and the CLI).
struct Fixed(Result<Vec<BoundingBox>>);

impl RegionProposer for Fixed {
    fn propose(&self, _: &image::RgbImage, _: &ProposalHints) -> Result<Vec<Region>> {
        match &self.0 {
            Ok(boxes) => Ok(boxes
                .iter()
                .map(|b| Region {
                    bbox: *b,
                    source: RegionSource::Detector {
                        label: "thing".into(),
                        score: 0.9,
                    },
                })
                .collect()),
            Err(e) => Err(Error::Model(e.to_string())),
        }
    }
}

fn engine(dir: &std::path::Path) -> Engine {
    crate::common::mean_colour_engine(dir)
}

#[test]
fn proposed_boxes_join_the_regions() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("t").unwrap();
    let plain = engine(dir.path());
    let red = image::RgbImage::from_pixel(64, 64, image::Rgb([220, 10, 10]));
    plain
        .add_concept(
            &tenant,
            &NewConcept {
                name: "red".into(),
                ..Default::default()
            },
            vec![ImageInput::from_bytes(png(&red), plain.limits()).unwrap()],
        )
        .unwrap();
    // A grey 400x400 photo with a 48x48 red square off the windows' grid.
    let mut query = image::RgbImage::from_pixel(400, 400, image::Rgb([128, 128, 128]));
    for y in 13..61 {
        for x in 317..365 {
            query.put_pixel(x, y, image::Rgb([220, 10, 10]));
        }
    }
    let bytes = png(&query);
    let scales = RetrieveOptions::default().window_scales;
    let mut t0 = rap_engine::retrieve::Timings::default();
    let without = plain
        .score_image(&tenant, &bytes, &scales, &mut t0)
        .unwrap();
    drop(plain);

    let square = BoundingBox::new(317.0, 13.0, 365.0, 61.0);
    let tiny = BoundingBox::new(0.0, 0.0, 20.0, 20.0);
    let with = engine(dir.path()).with_region_proposer(Arc::new(Fixed(Ok(vec![square, tiny]))));
    let mut t1 = rap_engine::retrieve::Timings::default();
    let found = with.score_image(&tenant, &bytes, &scales, &mut t1).unwrap();
    // One more region (the tiny box is not embedded).
    assert_eq!(t1.regions, t0.regions + 1);
    assert!(found[0].1 > 0.999, "{found:?}");
    assert!(without[0].1 < 0.99, "{without:?}");
    assert_eq!(found[0].2, square);

    let failing = engine(dir.path())
        .with_region_proposer(Arc::new(Fixed(Err(Error::Model("detector broke".into())))));
    let err = failing
        .score_image(&tenant, &bytes, &scales, &mut t1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("detector broke"), "{err}");
}

/// Records the hints of every call, and proposes one box per category (labelled with it).
#[derive(Default)]
struct Recording(Mutex<Vec<ProposalHints>>);

impl RegionProposer for Recording {
    fn propose(&self, image: &image::RgbImage, hints: &ProposalHints) -> Result<Vec<Region>> {
        self.0.lock().unwrap().push(hints.clone());
        let (w, h) = image.dimensions();
        Ok(hints
            .categories
            .iter()
            .map(|c| Region {
                bbox: BoundingBox::whole(w, h),
                source: RegionSource::Detector {
                    label: c.clone(),
                    score: 0.5,
                },
            })
            .collect())
    }
}

#[test]
fn the_proposer_is_told_the_tenants_categories_as_they_are_at_each_query() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("t").unwrap();
    let other = Tenant::new("other").unwrap();
    let recording = Arc::new(Recording::default());
    let engine = engine(dir.path()).with_region_proposer(recording.clone());
    let add = |t: &Tenant, name: &str, category: &str, colour: [u8; 3]| {
        let img = image::RgbImage::from_pixel(64, 64, image::Rgb(colour));
        engine
            .add_concept(
                t,
                &NewConcept {
                    name: name.into(),
                    category: category.into(),
                    ..Default::default()
                },
                vec![ImageInput::from_bytes(png(&img), engine.limits()).unwrap()],
            )
            .unwrap();
    };
    add(&tenant, "bo", "dog", [200, 120, 40]);
    add(&tenant, "rex", " Dog", [180, 100, 30]);
    add(&tenant, "cup", "mug", [20, 20, 200]);
    add(&tenant, "blank", "", [20, 200, 20]);
    add(&other, "kitty", "cat", [90, 90, 90]);
    let query = png(&image::RgbImage::from_pixel(
        100,
        80,
        image::Rgb([200, 120, 40]),
    ));
    let retrieval = engine
        .retrieve(&tenant, Some(&query), None, &RetrieveOptions::default())
        .unwrap();
    // The tenant's categories, distinct and non-empty; never another tenant's.
    let seen = recording.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].categories, vec!["dog", "mug"]);
    // The retrieval reports what the proposer proposed.
    let labels: Vec<_> = retrieval
        .detections
        .iter()
        .map(|r| match &r.source {
            RegionSource::Detector { label, .. } => label.clone(),
            s => panic!("{s:?}"),
        })
        .collect();
    assert_eq!(labels, vec!["dog", "mug"]);
    assert_eq!(retrieval.detections[0].bbox, BoundingBox::whole(100, 80));

    // An edit counts at the next query (nothing cached).
    engine
        .edit_concept(
            &tenant,
            "cup",
            ConceptEdit {
                category: Some("teapot".into()),
                ..Default::default()
            },
        )
        .unwrap();
    engine
        .retrieve(&tenant, Some(&query), None, &RetrieveOptions::default())
        .unwrap();
    engine.remove_concept(&tenant, "bo").unwrap();
    engine.remove_concept(&tenant, "rex").unwrap();
    let mut t = rap_engine::retrieve::Timings::default();
    engine.score_image(&tenant, &query, &[], &mut t).unwrap();
    let seen = recording.0.lock().unwrap().clone();
    assert_eq!(seen[1].categories, vec!["dog", "teapot"]);
    assert_eq!(seen[2].categories, vec!["teapot"]);
    // The other tenant's proposer call sees only its own.
    engine.score_image(&other, &query, &[], &mut t).unwrap();
    assert_eq!(
        recording.0.lock().unwrap().last().unwrap().categories,
        vec!["cat"]
    );
}
