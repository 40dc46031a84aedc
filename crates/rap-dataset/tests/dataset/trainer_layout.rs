//! The fine-tuning path: our training files, put through a replica of the reference trainer's
//! data preparation (`prepare_dataset`, as `rap-reference.md` describes it), become exactly the
//! RAP prompt layout that `rap_llm` builds for the released models, and the exact conversation
//! the `vicuna_v1` template (RAP-LLaVA) and `phi3_instruct` (RAP-Phi3-V) train on.
//!
//! The replica, step by step (the reference's own description, written here in Rust):
//! 1. a sample with an `image` starts its image list with it and its prompt with `<image>\n`;
//!    one without starts both empty;
//! 2. the first turn loses every `<image>\n` and then every `<image>`;
//! 3. with a non-empty `extra`, each entry in order adds `"{n}.<image>\n Name: <{name}>, Info:
//!    {info}\n"` where `n` is the number of images so far, and its crop path to the image list;
//!    the first turn becomes `prefix + "[" + entries + "]" + turn`; with none, `prefix + turn`;
//! 4. samples with more `extra` entries than the model takes (2 or 3) are dropped;
//! 5. a turn holding `<image>` is stripped of surrounding white space before tokenising.

use crate::common;

use common::*;
use rap_core::{Message, Part, Role};
use rap_dataset::format::{first_turn_parts, PATH_MIME};
use rap_dataset::{build, from_json, BuildOptions, Input, Sample, Speaker, Writer};
use rap_llm::{render_parts, Template};
use std::path::Path;

/// The reference's preparation of one sample: (first turn text, image paths in order).
fn reference_prepare(sample: &Sample) -> (String, Vec<String>) {
    let (mut images, prefix) = match &sample.image {
        Some(img) => (vec![img.clone()], "<image>\n"),
        None => (Vec::new(), ""),
    };
    let turn = sample.conversations[0]
        .value
        .replace("<image>\n", "")
        .replace("<image>", "");
    let first = if !sample.extra.is_empty() {
        let mut info = String::new();
        for (path, c) in sample.extra.iter() {
            info.push_str(&format!(
                "{}.<image>\n Name: <{}>, Info: {}\n",
                images.len(),
                c.name,
                c.info
            ));
            images.push(path.clone());
        }
        format!("{prefix}[{info}]{turn}")
    } else {
        format!("{prefix}{turn}")
    };
    let first = if first.contains("<image>") {
        first.trim().to_string()
    } else {
        first
    };
    (first, images)
}

/// The reference trainer's filter.
fn reference_keep(sample: &Sample, max_concepts: usize) -> bool {
    sample.extra.len() <= max_concepts
}

fn build_both(dir: &Path, max_concepts: usize) -> Vec<Sample> {
    let mut all = Vec::new();
    let photos = subset(dir, SUBJECTS);
    let inputs = [
        Input::Folders(photos),
        Input::Coco {
            annotations: coco_fixture(),
            images: shared("dreambooth-dev"),
        },
    ];
    for (i, input) in inputs.iter().enumerate() {
        let out = dir.join(format!("out{i}"));
        let opts = BuildOptions {
            seed: 21,
            max_concepts,
            noise_rate: 0.7,
            ..BuildOptions::default()
        };
        let mut writer = Writer::new(None);
        build(input, &out, &opts, &mut writer, None, &mut |_, _, _| {}).unwrap();
        all.extend(from_json(&std::fs::read_to_string(out.join("train.json")).unwrap()).unwrap());
    }
    all
}

#[test]
fn prepared_samples_are_the_rap_layout_and_the_training_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    for max in [2, 3] {
        let dir = tmp.path().join(format!("max{max}"));
        std::fs::create_dir_all(&dir).unwrap();
        let all = build_both(&dir, max);
        assert!(all.len() > 100, "{}", all.len());
        let mut with_two_or_more = 0;
        for s in &all {
            assert!(
                reference_keep(s, max),
                "the trainer would drop sample {}",
                s.id
            );
            let (prepared, images) = reference_prepare(s);
            // Our layout of the same sample, from rap_llm::layout.
            let parts = first_turn_parts(s);
            assert_eq!(render_parts(&parts), prepared, "sample {}", s.id);
            let ours: Vec<String> = parts
                .iter()
                .filter_map(|p| match p {
                    Part::Image(i) => {
                        assert_eq!(i.mime, PATH_MIME);
                        Some(String::from_utf8(i.bytes.to_vec()).unwrap())
                    }
                    Part::Text(_) => None,
                })
                .collect();
            assert_eq!(ours, images, "images in the same order, sample {}", s.id);
            assert_eq!(images.len(), 1 + s.extra.len());
            if s.extra.len() >= 2 {
                with_two_or_more += 1;
            }

            // The whole training conversation, as LLaVA's v1 template writes it for training
            // (system, " USER: ", turn, " ASSISTANT: ", answer, "</s>"), equals rap_llm's
            // vicuna_v1 rendering of our messages.
            let answer = &s.conversations[1].value;
            assert_eq!(s.conversations[1].from, Speaker::Gpt);
            let messages = vec![
                Message {
                    role: Role::User,
                    parts: parts.clone(),
                },
                Message::text(Role::Assistant, answer.clone()),
            ];
            let v1 = format!(
                "{} USER: {prepared} ASSISTANT: {answer}</s>",
                rap_llm::template::VICUNA_V1_SYSTEM
            );
            assert_eq!(Template::VicunaV1.render(&messages, false).unwrap(), v1);
            // RAP-Phi3-V: the documented turn markers around the same first turn and answer
            // (what follows the last `<|end|>` is the template's separator, not the data's).
            let phi3 = format!(
                "<|system|>\n{}<|end|>\n<|user|>\n{prepared}<|end|>\n<|assistant|>\n{answer}<|end|>",
                rap_llm::template::PHI3_SYSTEM
            );
            assert_eq!(
                Template::Phi3Instruct.render(&messages, false).unwrap(),
                phi3
            );
        }
        if max == 3 {
            assert!(with_two_or_more > 0);
        }
    }
}

#[test]
fn a_known_sample_prepares_to_the_documented_layout() {
    // The layout from rap-reference.md, written out by hand.
    let text = r#"[{"id": 0, "image": "images/a.jpg",
        "conversations": [{"from": "human", "value": "<image>\nGive a caption of the image."},
                          {"from": "gpt", "value": "<bo> and <dug> play."}],
        "extra": {"crops/0001_bo.jpg": {"name": "bo", "info": "<bo> is a Shiba Inu.", "category": "dog"},
                  "crops/0000_dug.jpg": {"name": "dug", "info": "<dug> is a golden retriever.", "category": "dog"}},
        "type": "caption"}]"#;
    let s = &from_json(text).unwrap()[0];
    let expected = "<image>\n[1.<image>\n Name: <bo>, Info: <bo> is a Shiba Inu.\n2.<image>\n Name: <dug>, Info: <dug> is a golden retriever.\n]Give a caption of the image.";
    let (prepared, images) = reference_prepare(s);
    assert_eq!(prepared, expected);
    assert_eq!(
        images,
        ["images/a.jpg", "crops/0001_bo.jpg", "crops/0000_dug.jpg"]
    );
    assert_eq!(render_parts(&first_turn_parts(s)), expected);
    // The HF export carries the same text and images.
    let hf = rap_dataset::hf_chat_record(s);
    let text: String = hf["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| match c["type"].as_str().unwrap() {
            "image" => "<image>".to_string(),
            _ => c["text"].as_str().unwrap().to_string(),
        })
        .collect();
    assert_eq!(text, expected);
    assert_eq!(hf["images"], serde_json::json!(images));
}
