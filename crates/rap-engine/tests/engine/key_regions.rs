//! Reference images keyed by several regions (the whole image and crops, as the encoder's
//! `key_regions` says): every region gets a key, and a memory keyed the old way (whole images
//! only, under the encoder's previous id) is re-keyed by `reindex`.

use rap_core::{
    BoundingBox, EncoderInfo, ImageEncoder, NewConcept, Region, RegionSource, Result, Tenant,
};
use rap_engine::{Engine, EngineConfig, RetrieveOptions};
use std::path::Path;
use std::sync::Arc;

use crate::common::MeanColour;

/// The mean-colour encoder that also keys the centre half of each reference.
struct MeanColourWithCentre(MeanColour);

impl ImageEncoder for MeanColourWithCentre {
    fn info(&self) -> &EncoderInfo {
        self.0.info()
    }
    fn embed(&self, images: &[image::RgbImage]) -> Result<Vec<rap_core::Embedding>> {
        self.0.embed(images)
    }
    fn key_regions(&self, width: u32, height: u32) -> Vec<Region> {
        let (w, h) = (width as f32, height as f32);
        vec![
            Region::whole(width, height),
            Region {
                bbox: BoundingBox::new(w / 4.0, h / 4.0, w * 0.75, h * 0.75),
                source: RegionSource::Proposal,
            },
        ]
    }
}

fn info(id: &str) -> EncoderInfo {
    EncoderInfo {
        id: id.into(),
        dim: 3,
    }
}

fn open(dir: &Path, encoder: Arc<dyn ImageEncoder>) -> Engine {
    Engine::open(
        EngineConfig::new(dir),
        Box::new(move || Ok(Some(encoder.clone()))),
    )
    .unwrap()
}

fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A red square on a blue ground: the whole image's mean colour is purple, its centre red.
fn red_on_blue() -> image::RgbImage {
    image::RgbImage::from_fn(64, 64, |x, y| {
        if (16..48).contains(&x) && (16..48).contains(&y) {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    })
}

fn best_score(engine: &Engine, tenant: &Tenant, query: &image::RgbImage) -> f32 {
    let options = RetrieveOptions {
        window_scales: Vec::new(),
        threshold: -1.0,
        ..Default::default()
    };
    let found = engine
        .retrieve(tenant, Some(&png(query)), None, &options)
        .unwrap();
    assert_eq!(found.hits[0].name, "bo");
    found.hits[0].score
}

#[test]
fn a_memory_keyed_whole_is_rekeyed_with_the_new_regions() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("t").unwrap();
    let red = image::RgbImage::from_pixel(64, 64, image::Rgb([220, 20, 20]));

    // An "old" memory: the encoder keyed whole images only.
    let old = open(dir.path(), Arc::new(MeanColour(info("mean@1"))));
    let image = old.image_from_bytes(png(&red_on_blue())).unwrap();
    let new = NewConcept {
        name: "bo".into(),
        ..Default::default()
    };
    old.add_concept(&tenant, &new, vec![image]).unwrap();
    let old_keys = old.store().keys(&tenant, "mean@1").unwrap();
    assert_eq!(old_keys.len(), 1);
    assert_eq!(old_keys[0].region, Region::whole(64, 64));
    let before = best_score(&old, &tenant, &red);
    drop(old);

    // The encoder now keys a crop too, under another id: reindex computes the new keys.
    let enc = MeanColourWithCentre(MeanColour(info("mean+centre@1")));
    let engine = open(dir.path(), Arc::new(enc));
    assert!(engine
        .store()
        .keys(&tenant, "mean+centre@1")
        .unwrap()
        .is_empty());
    assert_eq!(engine.reindex(&tenant, &mut |_, _| {}).unwrap(), 1);
    let keys = engine.store().keys(&tenant, "mean+centre@1").unwrap();
    let mut regions: Vec<BoundingBox> = keys.iter().map(|k| k.region.bbox).collect();
    regions.sort_by(|a, b| a.x1.total_cmp(&b.x1));
    assert_eq!(
        regions,
        vec![
            BoundingBox::whole(64, 64),
            BoundingBox::new(16.0, 16.0, 48.0, 48.0)
        ]
    );
    assert!(keys.iter().all(|k| k.image == keys[0].image));
    assert_eq!(
        engine.reindex(&tenant, &mut |_, _| {}).unwrap(),
        0,
        "nothing left to key"
    );

    // A red photo now meets the reference's red centre.
    let after = best_score(&engine, &tenant, &red);
    assert!(after > 0.999, "crop key matches: {after}");
    assert!(before < 0.95, "the whole image alone is purple: {before}");
}

/// The mean colour's embedding, as `MeanColour` makes it (a unit vector).
fn unit(rgb: [f32; 3]) -> [f32; 3] {
    let n = rgb.iter().map(|c| c * c).sum::<f32>().sqrt();
    rgb.map(|c| c / n)
}

fn add(engine: &Engine, tenant: &Tenant, name: &str, photo: &image::RgbImage) {
    let image = engine.image_from_bytes(png(photo)).unwrap();
    let new = NewConcept {
        name: name.into(),
        ..Default::default()
    };
    engine.add_concept(tenant, &new, vec![image]).unwrap();
}

#[test]
fn a_concepts_stability_is_how_alike_its_photo_stays_to_its_crops_and_sets_its_floor() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("t").unwrap();
    let enc = MeanColourWithCentre(MeanColour(info("mean+centre@1")));
    let engine = open(dir.path(), Arc::new(enc));
    let red = image::RgbImage::from_pixel(64, 64, image::Rgb([220, 20, 20]));
    add(&engine, &tenant, "steady", &red);
    // A green square on blue (not red: it must not compete with "steady" below).
    let green_on_blue = image::RgbImage::from_fn(64, 64, |x, y| {
        if (16..48).contains(&x) && (16..48).contains(&y) {
            image::Rgb([20, 220, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    });
    add(&engine, &tenant, "drifting", &green_on_blue);

    let stability = |name: &str| {
        engine
            .stabilities(&tenant)
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, s)| s)
    };
    // A plain photo is the same under its crop; the green square on blue is blue-green whole
    // and green in its centre (a quarter of the photo is green: mean (20, 70, 170)).
    assert!((stability("steady").unwrap() - 1.0).abs() < 1e-5);
    let (whole, centre) = (unit([20.0, 70.0, 170.0]), unit([20.0, 220.0, 20.0]));
    let expected: f32 = whole.iter().zip(centre).map(|(a, b)| a * b).sum();
    let drifting = stability("drifting").unwrap();
    // (Within resampling: regions are resized before they are embedded.)
    assert!(
        (drifting - expected).abs() < 0.02,
        "{drifting} vs {expected}"
    );

    // A concept added later is measured too, and the others are kept.
    add(&engine, &tenant, "late", &green_on_blue);
    assert!(stability("late").is_some() && stability("steady").is_some());

    // The floor follows the stability: a red photo matches "steady" perfectly, but a floor
    // raised above its score by the stability drops it; one floor for all keeps it.
    let query = png(&image::RgbImage::from_pixel(
        64,
        64,
        image::Rgb([200, 60, 20]),
    ));
    let decide = |options: &RetrieveOptions| {
        let mut timings = Default::default();
        engine
            .recognize(&tenant, &query, options, &mut timings, &mut Vec::new())
            .unwrap()
            .into_iter()
            .find(|c| c.name == "steady")
            .unwrap()
    };
    let plain = RetrieveOptions {
        window_scales: Vec::new(),
        ..Default::default()
    }
    .with_fixed_floor(0.0);
    let score = decide(&plain).score;
    let base = score - 0.01;
    let weight = 0.05 / (1.0 - rap_engine::retrieve::REFERENCE_STABILITY);
    let per_concept = RetrieveOptions {
        threshold: base,
        stability_weight: weight,
        margin: 0.0,
        ..plain.clone()
    };
    let steady = decide(&per_concept);
    assert!(
        (steady.floor - (base + 0.05)).abs() < 1e-4,
        "{}",
        steady.floor
    );
    assert!(!steady.present, "{steady:?}");
    let fixed = RetrieveOptions {
        margin: 0.0,
        ..plain
    }
    .with_fixed_floor(base);
    assert!(decide(&fixed).present);
}
