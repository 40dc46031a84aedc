//! Keys are computed before a query for images another process added (one without an
//! encoder, or a replica), even though a query asks the store for images without keys only
//! when the tenant's memory version moved (`Engine::ensure_keys`).

use crate::common::{mean_colour_engine, png};
use rap_core::{NewConcept, Tenant, Via};
use rap_engine::{Engine, EngineConfig, RetrieveOptions};

fn add(engine: &Engine, tenant: &Tenant, name: &str, rgb: [u8; 3]) {
    let new = NewConcept {
        name: name.into(),
        ..Default::default()
    };
    let photo = png(&image::RgbImage::from_pixel(64, 64, image::Rgb(rgb)));
    let image = engine.image_from_bytes(photo).unwrap();
    engine.add_concept(tenant, &new, vec![image]).unwrap();
}

fn found(engine: &Engine, tenant: &Tenant, rgb: [u8; 3]) -> Vec<String> {
    let photo = png(&image::RgbImage::from_pixel(64, 64, image::Rgb(rgb)));
    let options = RetrieveOptions {
        window_scales: vec![],
        ..RetrieveOptions::default()
    };
    engine
        .retrieve(tenant, Some(&photo), None, &options)
        .unwrap()
        .hits
        .into_iter()
        .filter(|h| h.via == Via::Image)
        .map(|h| h.name)
        .collect()
}

#[test]
fn images_another_process_added_are_keyed_before_the_next_query() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("t").unwrap();
    let querying = mean_colour_engine(dir.path());
    add(&querying, &tenant, "red", [230, 5, 5]);
    assert_eq!(found(&querying, &tenant, [230, 5, 5]), vec!["red"]);
    // Another process on the same memory, with no encoder: it stores the image, no key.
    let other = Engine::open(EngineConfig::new(dir.path()), Box::new(|| Ok(None))).unwrap();
    add(&other, &tenant, "blue", [5, 5, 230]);
    assert_eq!(found(&querying, &tenant, [5, 5, 230]), vec!["blue"]);
    assert_eq!(querying.stats(&tenant).unwrap().embeddings, 2);
}
