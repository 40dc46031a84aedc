//! A region proposer (a detector) adds its boxes to the regions retrieval embeds: a small
//! concept that the whole image and the windows dilute is found at full strength, with the
//! proposed box; boxes under 32 px are not embedded; a failing proposer fails the retrieval.

use rap_core::{
    BoundingBox, EncoderInfo, Error, ImageEncoder, NewConcept, Region, RegionProposer,
    RegionSource, Result, Tenant,
};
use rap_engine::{Engine, EngineConfig, ImageInput, RetrieveOptions};
use std::sync::Arc;

use crate::common;
use common::MeanColour;

/// Proposes fixed boxes (the real detector, CenterNet, is tested in rap-vision and the CLI).
struct Fixed(Result<Vec<BoundingBox>>);

impl RegionProposer for Fixed {
    fn propose(&self, _: &image::RgbImage) -> Result<Vec<Region>> {
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

fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn engine(dir: &std::path::Path) -> Engine {
    let encoder: Arc<dyn ImageEncoder> = Arc::new(MeanColour(EncoderInfo {
        id: "mean-colour".into(),
        dim: 3,
    }));
    Engine::open(
        EngineConfig::new(dir),
        Box::new(move || Ok(Some(encoder.clone()))),
    )
    .unwrap()
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
