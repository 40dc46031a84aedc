//! The cascade (`rap_engine::cascade`): a query stops after the whole image and the coarse
//! windows when they decide every concept, and goes on to the fine windows when they do not
//! (a concept small in the photo). Shown with an encoder whose embedding is the mean colour,
//! which records the size of every region it is given.

use crate::common::{png, MeanColour};
use rap_core::{EncoderInfo, ImageEncoder, NewConcept, Result, Tenant, Via};
use rap_engine::retrieve::Timings;
use rap_engine::{Engine, EngineConfig, RetrieveOptions};
use std::sync::{Arc, Mutex};

/// [`MeanColour`] that writes down the width of every image it embeds.
struct Recording {
    inner: MeanColour,
    widths: Mutex<Vec<u32>>,
}

impl ImageEncoder for Recording {
    fn info(&self) -> &EncoderInfo {
        self.inner.info()
    }
    fn embed(&self, images: &[image::RgbImage]) -> Result<Vec<rap_core::Embedding>> {
        self.widths
            .lock()
            .unwrap()
            .extend(images.iter().map(|i| i.width()));
        self.inner.embed(images)
    }
}

impl Recording {
    /// The widths recorded since the last call, sorted.
    fn take(&self) -> Vec<u32> {
        let mut w = std::mem::take(&mut *self.widths.lock().unwrap());
        w.sort_unstable();
        w
    }
}

const RED: [u8; 3] = [230, 5, 5];
const GREEN: [u8; 3] = [5, 230, 5];
const BLUE: [u8; 3] = [5, 5, 230];
const GREY: [u8; 3] = [128, 128, 128];

/// An engine on a [`Recording`] encoder whose memory holds red, green and blue.
fn setup(dir: &std::path::Path) -> (Engine, Arc<Recording>, Tenant) {
    let encoder = Arc::new(Recording {
        inner: MeanColour(EncoderInfo {
            id: "mean-colour".into(),
            dim: 3,
        }),
        widths: Mutex::new(Vec::new()),
    });
    let shared: Arc<dyn ImageEncoder> = encoder.clone();
    let engine = Engine::open(
        EngineConfig::new(dir),
        Box::new(move || Ok(Some(shared.clone()))),
    )
    .unwrap();
    let tenant = Tenant::new("t").unwrap();
    for (name, rgb) in [("red", RED), ("green", GREEN), ("blue", BLUE)] {
        let new = NewConcept {
            name: name.into(),
            ..Default::default()
        };
        let photo = png(&image::RgbImage::from_pixel(64, 64, image::Rgb(rgb)));
        let image = engine.image_from_bytes(photo).unwrap();
        engine.add_concept(&tenant, &new, vec![image]).unwrap();
    }
    encoder.take(); // the references' keys
    (engine, encoder, tenant)
}

/// A floor the mean colour of a mixed region stays under (so only a region filled by one
/// colour supports its concept), windows at 0.75 (coarse) and 0.5 (fine) of the shorter side.
fn options(cascade: bool) -> RetrieveOptions {
    RetrieveOptions {
        top_k: 10,
        threshold: 0.9,
        margin: 0.05,
        window_scales: vec![0.5, 0.75],
        // A safety margin the mean colour of a one-colour region clears (0.9 + 0.05 < 1).
        cascade: cascade.then_some(0.05),
        ..RetrieveOptions::default()
    }
}

/// (name, box) of the image hits, and the timings.
fn query(
    engine: &Engine,
    tenant: &Tenant,
    photo: &image::RgbImage,
    options: &RetrieveOptions,
) -> (Vec<(String, [f32; 4])>, Timings) {
    let r = engine
        .retrieve(tenant, Some(&png(photo)), None, options)
        .unwrap();
    let hits = r
        .hits
        .into_iter()
        .filter(|h| h.via == Via::Image)
        .map(|h| {
            let b = h.bbox.unwrap();
            (h.name, [b.x1, b.y1, b.x2, b.y2])
        })
        .collect();
    (hits, r.timings)
}

#[test]
fn a_photo_the_whole_image_decides_stops_after_the_coarse_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, encoder, tenant) = setup(dir.path());
    let photo = image::RgbImage::from_pixel(400, 400, image::Rgb(RED));

    let (hits, timings) = query(&engine, &tenant, &photo, &options(true));
    let names: Vec<&str> = hits.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["red"]);
    // Stage 1 only: the whole image and the four 300-px windows; the nine 200-px ones skipped.
    assert_eq!(encoder.take(), vec![300, 300, 300, 300, 400]);
    assert_eq!((timings.regions, timings.skipped), (5, 9));

    // Without the cascade every region is encoded, and the answer is the same.
    let (all, timings) = query(&engine, &tenant, &photo, &options(false));
    let all: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(all, names);
    assert_eq!(encoder.take().len(), 14);
    assert_eq!((timings.regions, timings.skipped), (14, 0));
}

#[test]
fn a_concept_only_the_fine_windows_find_makes_the_query_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, encoder, tenant) = setup(dir.path());
    // A green square filling one 200-px window of a grey photo: every coarse window mixes
    // it with grey, under the floor.
    let photo = image::RgbImage::from_fn(400, 400, |x, y| {
        image::Rgb(if x < 200 && y < 200 { GREEN } else { GREY })
    });
    let coarse_only = RetrieveOptions {
        window_scales: vec![0.75],
        ..options(false)
    };
    let (hits, _) = query(&engine, &tenant, &photo, &coarse_only);
    assert!(
        hits.is_empty(),
        "the coarse windows alone miss it: {hits:?}"
    );
    encoder.take();

    let (hits, timings) = query(&engine, &tenant, &photo, &options(true));
    assert_eq!(hits, vec![("green".to_string(), [0.0, 0.0, 200.0, 200.0])]);
    let mut expected = vec![200; 9];
    expected.extend([300, 300, 300, 300, 400]);
    assert_eq!(encoder.take(), expected, "stage 2 encoded the fine windows");
    assert_eq!((timings.regions, timings.skipped), (14, 0));
}

#[test]
fn a_photo_where_stage_one_finds_nothing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, encoder, tenant) = setup(dir.path());
    let photo = image::RgbImage::from_pixel(400, 400, image::Rgb(GREY));
    let (hits, timings) = query(&engine, &tenant, &photo, &options(true));
    assert!(hits.is_empty(), "{hits:?}");
    assert_eq!(encoder.take().len(), 14);
    assert_eq!((timings.regions, timings.skipped), (14, 0));
}
