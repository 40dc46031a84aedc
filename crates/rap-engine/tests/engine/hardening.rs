//! Issue 20: no stored image can make a tenant's searches fail, and the input limits hold.
//! The keys of a new image are computed before the concept commits, so an image the encoder
//! cannot key is refused with nothing stored; an image stored anyway (before the checks
//! existed) is skipped by searches, with a warning, instead of failing every one of them.

use rap_core::{EncoderInfo, Error, ImageEncoder, Limits, NewConcept, Result, Tenant};
use rap_engine::{Engine, EngineConfig, RetrieveOptions};
use rap_memory::{ConceptEdit, ImageInput};
use std::sync::Arc;

use crate::common::{png, MeanColour};

/// The mean-colour encoder, refusing images wider than 100 pixels (as an encoder refuses
/// what it cannot take).
struct Picky(MeanColour);

impl ImageEncoder for Picky {
    fn info(&self) -> &EncoderInfo {
        self.0.info()
    }
    fn embed(&self, images: &[image::RgbImage]) -> Result<Vec<rap_core::Embedding>> {
        if let Some(img) = images.iter().find(|i| i.width() > 100) {
            return Err(Error::invalid(format!(
                "{} pixels wide is too wide",
                img.width()
            )));
        }
        self.0.embed(images)
    }
}

fn picky_engine(dir: &std::path::Path, limits: Limits) -> Engine {
    let encoder: Arc<dyn ImageEncoder> = Arc::new(Picky(MeanColour(EncoderInfo {
        id: "picky".into(),
        dim: 3,
    })));
    let mut config = EngineConfig::new(dir);
    config.limits = limits;
    Engine::open(config, Box::new(move || Ok(Some(encoder.clone())))).unwrap()
}

fn flat(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    png(&image::RgbImage::from_pixel(w, h, image::Rgb(rgb)))
}

fn named(name: &str) -> NewConcept {
    NewConcept {
        name: name.into(),
        ..Default::default()
    }
}

fn search(engine: &Engine, tenant: &Tenant, query: &[u8]) -> Vec<String> {
    let options = RetrieveOptions {
        window_scales: Vec::new(),
        threshold: -1.0,
        ..Default::default()
    };
    let found = engine
        .retrieve(tenant, Some(query), None, &options)
        .unwrap();
    found.hits.into_iter().map(|h| h.name).collect()
}

#[test]
fn an_image_that_cannot_be_keyed_is_refused_before_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = picky_engine(dir.path(), Limits::default());
    let t = Tenant::new("t").unwrap();
    let red = engine
        .image_from_bytes(flat(40, 40, [220, 20, 20]))
        .unwrap();
    engine.add_concept(&t, &named("bo"), vec![red]).unwrap();

    let wide = engine
        .image_from_bytes(flat(200, 40, [20, 20, 220]))
        .unwrap();
    let err = engine
        .add_concept(&t, &named("dug"), vec![wide.clone()])
        .unwrap_err();
    assert!(err.to_string().contains("too wide"), "{err}");
    assert_eq!(engine.concepts(&t).unwrap().len(), 1, "nothing committed");
    let edit = ConceptEdit {
        add_images: vec![wide.clone()],
        ..Default::default()
    };
    assert!(engine.edit_concept(&t, "bo", edit).is_err());
    assert_eq!(engine.concept(&t, "bo").unwrap().images.len(), 1);
    let import = vec![(named("x"), vec![wide])];
    assert!(engine.add_concepts(&t, import).is_err());
    assert_eq!(engine.concepts(&t).unwrap().len(), 1);
    // The tenant still searches.
    assert_eq!(search(&engine, &t, &flat(30, 30, [220, 20, 20]))[0], "bo");
}

#[test]
fn a_stored_image_that_cannot_be_keyed_does_not_poison_searches() {
    let dir = tempfile::tempdir().unwrap();
    let engine = picky_engine(dir.path(), Limits::default());
    let t = Tenant::new("t").unwrap();
    let red = engine
        .image_from_bytes(flat(40, 40, [220, 20, 20]))
        .unwrap();
    engine.add_concept(&t, &named("bo"), vec![red]).unwrap();
    // Written straight to the store, as an older version did before computing keys.
    let wide = ImageInput::from_bytes(flat(200, 40, [20, 20, 220]), &Limits::default()).unwrap();
    engine
        .store()
        .add_concept(&t, &named("poison"), vec![wide])
        .unwrap();
    for _ in 0..2 {
        assert_eq!(search(&engine, &t, &flat(30, 30, [220, 20, 20])), ["bo"]);
    }
}

/// The issue-20 input (a valid 1 x 40000 PNG, a few hundred bytes) is refused by the aspect
/// limit before anything is stored or decoded at size; so is a 1 x 100000 one as a query.
#[test]
fn the_hostile_strip_is_refused_by_a_named_limit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::common::mean_colour_engine(dir.path());
    let t = Tenant::new("t").unwrap();
    for (w, h) in [(1, 40_000), (1, 100_000), (100_000, 1)] {
        let strip = rap_image::testing::strip_png(w, h);
        let err = engine.image_from_bytes(strip.clone()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    limit: "max_aspect_ratio",
                    ..
                }
            ),
            "{err}"
        );
        let options = RetrieveOptions::default();
        let err = engine
            .retrieve(&t, Some(&strip), None, &options)
            .unwrap_err();
        assert!(err.to_string().contains("max_aspect_ratio"), "{err}");
    }
    assert!(engine.concepts(&t).unwrap().is_empty());
}

#[test]
fn concept_texts_and_counts_are_limited_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_info_bytes: 20,
        max_aliases: 1,
        max_images_per_concept: 2,
        max_concepts_per_import: 2,
        ..Limits::default()
    };
    let engine = picky_engine(dir.path(), limits);
    let t = Tenant::new("t").unwrap();
    let img = |c: u8| engine.image_from_bytes(flat(8, 8, [c, 0, 0])).unwrap();
    let limit_of = |e: Error| match e {
        Error::LimitExceeded { limit, value, .. } => (limit, value),
        other => panic!("not a limit error: {other}"),
    };
    let long_info = NewConcept {
        info: "x".repeat(21),
        ..named("bo")
    };
    let e = engine
        .add_concept(&t, &long_info, vec![img(1)])
        .unwrap_err();
    assert_eq!(limit_of(e), ("max_info_bytes", 20));
    let aliased = NewConcept {
        aliases: vec!["a".into(), "b".into()],
        ..named("bo")
    };
    let e = engine.add_concept(&t, &aliased, vec![img(1)]).unwrap_err();
    assert_eq!(limit_of(e), ("max_aliases", 1));
    let e = engine
        .add_concept(&t, &named("bo"), vec![img(1), img(2), img(3)])
        .unwrap_err();
    assert_eq!(limit_of(e), ("max_images_per_concept", 2));
    engine
        .add_concept(&t, &named("bo"), vec![img(1), img(2)])
        .unwrap();
    let more = ConceptEdit {
        add_images: vec![img(3)],
        ..Default::default()
    };
    let e = engine.edit_concept(&t, "bo", more).unwrap_err();
    assert_eq!(limit_of(e), ("max_images_per_concept", 2));
    let swap = ConceptEdit {
        add_images: vec![img(3)],
        remove_images: vec![engine.concept(&t, "bo").unwrap().images[0].id.0.clone()],
        ..Default::default()
    };
    engine.edit_concept(&t, "bo", swap).unwrap();
    let three: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| (named(n), vec![img(9)]))
        .collect();
    let e = engine.add_concepts(&t, three).unwrap_err();
    assert_eq!(limit_of(e), ("max_concepts_per_import", 2));
    assert_eq!(engine.concepts(&t).unwrap().len(), 1);
}
