//! Retrieval's decision (see `rap_engine::retrieve`): each region supports at most the one
//! concept it matches best, so a photo can hold several concepts, each reported once with its
//! own box; a look-alike in the memory competes; a negative example ("that's not it") counts
//! against its concept at once. Shown with an encoder whose embedding is the mean colour.

use crate::common::png;
use rap_core::{NewConcept, Tenant, Via};
use rap_engine::{ConceptEdit, Engine, RetrieveOptions};

fn plain(rgb: [u8; 3]) -> Vec<u8> {
    png(&image::RgbImage::from_pixel(64, 64, image::Rgb(rgb)))
}

fn engine(dir: &std::path::Path) -> Engine {
    crate::common::mean_colour_engine(dir)
}

fn add(engine: &Engine, tenant: &Tenant, name: &str, rgb: [u8; 3]) {
    let new = NewConcept {
        name: name.into(),
        ..Default::default()
    };
    let image = engine.image_from_bytes(plain(rgb)).unwrap();
    engine.add_concept(tenant, &new, vec![image]).unwrap();
}

fn options() -> RetrieveOptions {
    RetrieveOptions {
        top_k: 10,
        window_scales: vec![0.5],
        ..RetrieveOptions::default()
    }
}

/// (name, box) of the image hits.
fn found(engine: &Engine, tenant: &Tenant, query: &[u8]) -> Vec<(String, [f32; 4])> {
    let retrieval = engine
        .retrieve(tenant, Some(query), None, &options())
        .unwrap();
    retrieval
        .hits
        .into_iter()
        .filter(|h| h.via == Via::Image)
        .map(|h| {
            let b = h.bbox.unwrap();
            let confidence = h.confidence.unwrap();
            assert!((0.0..=1.0).contains(&confidence), "{confidence}");
            (h.name, [b.x1, b.y1, b.x2, b.y2])
        })
        .collect()
}

#[test]
fn several_concepts_in_one_photo_each_once_with_its_own_box() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("t").unwrap();
    let engine = engine(dir.path());
    add(&engine, &tenant, "red", [230, 5, 5]);
    add(&engine, &tenant, "blue", [5, 5, 230]);
    add(&engine, &tenant, "green", [5, 230, 5]);
    // Left half red, right half blue: the whole image (purple) is nobody's; the windows are.
    let query = image::RgbImage::from_fn(400, 200, |x, _| {
        image::Rgb(if x < 200 { [230, 5, 5] } else { [5, 5, 230] })
    });
    let mut hits = found(&engine, &tenant, &png(&query));
    hits.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = hits.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["blue", "red"], "{hits:?}");
    let (blue, red) = (hits[0].1, hits[1].1);
    assert!(red[2] <= 200.0, "red's box lies in the red half: {red:?}");
    assert!(
        blue[0] >= 200.0,
        "blue's box lies in the blue half: {blue:?}"
    );
}

#[test]
fn a_look_alike_in_the_memory_competes_for_the_region() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("t").unwrap();
    let engine = engine(dir.path());
    add(&engine, &tenant, "bo", [230, 60, 20]);
    let query = plain([180, 150, 60]);
    assert_eq!(
        found(&engine, &tenant, &query).len(),
        1,
        "bo alone is found"
    );
    // A look-alike much closer to the query takes the region: bo is no longer reported.
    add(&engine, &tenant, "rex", [185, 150, 60]);
    let hits = found(&engine, &tenant, &query);
    let names: Vec<&str> = hits.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["rex"]);
    // Two look-alikes too close to tell apart under the margin: neither is claimed...
    add(&engine, &tenant, "max", [178, 152, 62]);
    assert!(found(&engine, &tenant, &query).is_empty());
    // ...and with no margin asked, still only one concept for the region.
    let no_margin = RetrieveOptions {
        margin: 0.0,
        ..options()
    };
    let retrieval = engine
        .retrieve(&tenant, Some(&query), None, &no_margin)
        .unwrap();
    assert_eq!(retrieval.hits.len(), 1, "{:?}", retrieval.hits);
}

#[test]
fn a_negative_example_counts_against_its_concept_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = Tenant::new("t").unwrap();
    let engine = engine(dir.path());
    add(&engine, &tenant, "bo", [220, 20, 20]);
    let look_alike = plain([220, 95, 15]);
    let bo_again = plain([215, 25, 25]);
    assert_eq!(
        found(&engine, &tenant, &look_alike).len(),
        1,
        "mistaken for bo"
    );

    // "That's not Bo": a box of another photo of the look-alike.
    let mut photo = image::RgbImage::from_pixel(200, 100, image::Rgb([0, 0, 255]));
    for y in 10..90 {
        for x in 110..190 {
            photo.put_pixel(x, y, image::Rgb([222, 100, 18]));
        }
    }
    let bbox = rap_core::BoundingBox::new(110.0, 10.0, 190.0, 90.0);
    let negative = engine.negative_example(png(&photo), Some(&bbox)).unwrap();
    assert_eq!((negative.meta.width, negative.meta.height), (80, 80));
    let concept = engine
        .edit_concept(
            &tenant,
            "bo",
            ConceptEdit {
                add_negatives: vec![negative],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(concept.negatives.len(), 1);
    assert!(found(&engine, &tenant, &look_alike).is_empty());
    assert_eq!(
        found(&engine, &tenant, &bo_again).len(),
        1,
        "bo is still bo"
    );

    // A box outside the photo is refused, naming the problem.
    let outside = rap_core::BoundingBox::new(300.0, 0.0, 400.0, 50.0);
    let err = engine
        .negative_example(png(&photo), Some(&outside))
        .unwrap_err();
    assert!(err.to_string().contains("no pixels inside"), "{err}");

    // Removing the negative restores the old decision.
    let id = concept.negatives[0].id.0.clone();
    engine
        .edit_concept(
            &tenant,
            "bo",
            ConceptEdit {
                remove_negatives: vec![id],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(found(&engine, &tenant, &look_alike).len(), 1);
}
