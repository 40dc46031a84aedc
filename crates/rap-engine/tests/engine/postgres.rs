//! The engine over the shared PostgreSQL memory (a `PgStore`, a real server on
//! loopback): two engines on one database act as two `rap serve` replicas. A concept added
//! through one is retrieved through the other on its very next request, and a removal through
//! either is seen by both: search runs in the database, so no process holds a stale index.

use rap_core::{EncoderInfo, ImageEncoder, NewConcept, Tenant};
use rap_engine::{Engine, EngineConfig, RetrieveOptions};
use rap_memory::ConceptStore;
use rap_memory_postgres::{testing::TestDb, PgStore};
use std::sync::Arc;

use crate::common;
use common::MeanColour;

fn png(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(24, 24, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// An engine ("replica") with its own data dir, on the shared database.
fn replica(db: &TestDb) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let encoder: Arc<dyn ImageEncoder> = Arc::new(MeanColour(EncoderInfo {
        id: "mean-colour@test".into(),
        dim: 3,
    }));
    let config = EngineConfig::new(dir.path());
    let store: Arc<dyn ConceptStore> = Arc::new(PgStore::connect(&db.url).unwrap());
    let engine = Engine::with_store(config, store, Box::new(move || Ok(Some(encoder.clone()))));
    (dir, engine)
}

fn options() -> RetrieveOptions {
    RetrieveOptions {
        top_k: 1,
        window_scales: Vec::new(),
        ..RetrieveOptions::default()
    }
}

fn found(engine: &Engine, tenant: &Tenant, colour: [u8; 3]) -> Vec<String> {
    engine
        .retrieve(tenant, Some(&png(colour)), None, &options())
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.name)
        .collect()
}

#[test]
fn two_engines_on_one_database_agree_on_every_add_and_remove() {
    let db = TestDb::new();
    let (_d1, one) = replica(&db);
    let (_d2, two) = replica(&db);
    let t = Tenant::new("t").unwrap();
    let add = |engine: &Engine, name: &str, colour| {
        let new = NewConcept {
            name: name.into(),
            info: format!("<{name}> is a dog."),
            category: "dog".into(),
            ..Default::default()
        };
        let image = engine.image_from_bytes(png(colour)).unwrap();
        engine.add_concept(&t, &new, vec![image]).unwrap();
    };
    add(&one, "bo", [200, 30, 30]);
    assert_eq!(found(&two, &t, [210, 20, 20]), vec!["bo"]);
    add(&two, "dug", [30, 30, 200]);
    assert_eq!(found(&one, &t, [20, 20, 220]), vec!["dug"]);
    assert_eq!(found(&two, &t, [20, 20, 220]), vec!["dug"]);

    // Removed through one: gone from both on the next request.
    one.remove_concept(&t, "dug").unwrap();
    assert!(found(&two, &t, [20, 20, 220]).is_empty());
    assert_eq!(found(&two, &t, [210, 20, 20]), vec!["bo"]);
    two.remove_concept(&t, "bo").unwrap();
    assert!(found(&one, &t, [210, 20, 20]).is_empty());

    // Another tenant on the same database sees none of it.
    let other = Tenant::new("other").unwrap();
    add(&one, "bo", [200, 30, 30]);
    assert!(two
        .retrieve(&other, Some(&png([200, 30, 30])), None, &options())
        .unwrap()
        .hits
        .is_empty());
    assert_eq!(two.stats(&t).unwrap().concepts, 1);

    // A rename and a negative example made through one count at two's very next query (its
    // in-memory catalog follows the memory's version).
    assert_eq!(found(&two, &t, [210, 20, 20]), vec!["bo"]);
    let rename = rap_engine::ConceptEdit {
        rename: Some("Bo the Red".into()),
        ..Default::default()
    };
    one.edit_concept(&t, "bo", rename).unwrap();
    assert_eq!(found(&two, &t, [210, 20, 20]), vec!["Bo the Red"]);
    let not_bo = rap_engine::ConceptEdit {
        add_negatives: vec![one.image_from_bytes(png([210, 20, 20])).unwrap()],
        ..Default::default()
    };
    one.edit_concept(&t, "bo the red", not_bo).unwrap();
    assert!(found(&two, &t, [210, 20, 20]).is_empty());
}
