//! A concept named in the text and seen in the image is one hit with both facts (via
//! `text+image`, the image's score, box and confidence), and the text-only prompt tells the
//! model where it is; a concept only named, or only seen, keeps its own kind of hit.

use rap_core::{NewConcept, Tenant, Via};
use rap_engine::{ConceptVia, Mode, Question, RetrieveOptions, Target};

use crate::common::{mean_colour_engine, png};

fn solid(rgb: [u8; 3]) -> Vec<u8> {
    png(&image::RgbImage::from_pixel(48, 48, image::Rgb(rgb)))
}

const RED: [u8; 3] = [200, 30, 30];
const BLUE: [u8; 3] = [30, 30, 200];

fn setup() -> (tempfile::TempDir, rap_engine::Engine, Tenant) {
    let dir = tempfile::tempdir().unwrap();
    let engine = mean_colour_engine(dir.path());
    let tenant = Tenant::new("t").unwrap();
    for (name, colour) in [("bo", RED), ("dug", BLUE)] {
        let new = NewConcept {
            name: name.into(),
            info: format!("<{name}> is a dog."),
            ..Default::default()
        };
        let image = engine.image_from_bytes(solid(colour)).unwrap();
        engine.add_concept(&tenant, &new, vec![image]).unwrap();
    }
    (dir, engine, tenant)
}

fn options() -> RetrieveOptions {
    RetrieveOptions {
        top_k: 2,
        window_scales: Vec::new(),
        ..RetrieveOptions::default()
    }
}

#[test]
fn a_concept_named_and_seen_is_one_hit_with_both_facts() {
    let (_dir, engine, tenant) = setup();
    let query = solid([190, 40, 35]);
    let r = engine
        .retrieve(
            &tenant,
            Some(&query),
            Some("What is <bo> doing?"),
            &options(),
        )
        .unwrap();
    assert_eq!(r.hits.len(), 1, "{:?}", r.hits);
    let bo = &r.hits[0];
    assert_eq!(bo.name, "bo");
    assert_eq!(bo.via, Via::TextAndImage);
    assert!(bo.via.named() && bo.via.seen());
    assert!(bo.score > 0.9 && bo.score < 1.0, "{}", bo.score);
    assert!(bo.bbox.is_some() && bo.confidence.is_some());
    let json = serde_json::to_value(bo).unwrap();
    assert_eq!(json["via"], "text+image");

    // Named but not seen, next to one seen but not named: two hits of their own kinds.
    let r = engine
        .retrieve(&tenant, Some(&query), Some("and dug?"), &options())
        .unwrap();
    let kinds: Vec<(&str, Via)> = r.hits.iter().map(|h| (h.name.as_str(), h.via)).collect();
    assert_eq!(kinds, [("dug", Via::Text), ("bo", Via::Image)]);
    assert_eq!(r.hits[0].score, 1.0);
    assert!(r.hits[0].bbox.is_none());
}

#[test]
fn the_text_only_prompt_says_where_the_named_concept_is() {
    let (_dir, engine, tenant) = setup();
    let query = solid([190, 40, 35]);
    let conv = engine
        .conversation(
            &tenant,
            &Question {
                text: "What is <bo> doing?",
                image: Some(&query),
                concepts: Vec::new(),
                retrieve: options(),
            },
            &Target {
                accepts_images: false,
                context_length: None,
                reserve: 64,
                count_tokens: None,
            },
        )
        .unwrap();
    assert_eq!(conv.mode, Mode::TextOnly);
    assert_eq!(conv.concepts.len(), 1);
    assert_eq!(conv.concepts[0].via, ConceptVia::TextAndImage);
    assert!(conv.concepts[0].bbox.is_some());
    let text: String = conv
        .messages
        .iter()
        .flat_map(|m| m.parts.iter())
        .filter_map(|p| match p {
            rap_core::Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let similarity = format!("(similarity {:.2}, ", conv.concepts[0].score);
    assert!(
        text.contains(&format!("The image shows <bo> {similarity}")),
        "{text}"
    );
    assert!(text.contains(", region [0, 0, 48, 48])."), "{text}");
    assert!(!text.contains("none of their saved concepts"), "{text}");
    assert!(text.contains("<bo> is a dog."), "{text}");
}
