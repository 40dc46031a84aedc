//! The LLaVA-1.5 generator against transformers on a tiny random model (fixtures from
//! `tools/golden/llava_tiny_golden.py`): the same weights in the llava-hf layout and in the
//! original LLaVA layout (CLIP tower in its own folder), and with a PEFT LoRA adapter merged.
//! A prompt with two images in RAP order; logits at prompt positions and at each of 16 greedy
//! steps within 1e-3, greedy tokens identical. Then the error paths and the generator contract.

use rap_core::{FinishReason, GenerationParams, Generator, ImageData, Message, Part, Role};
use rap_llm_local::llava::{Layout, LlavaGenerator, LlavaOptions};
use rap_llm_local::PromptRenderer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const TOL: f32 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llava_tiny")
}

fn golden() -> Value {
    let text = std::fs::read_to_string(fixtures().join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// vicuna_v1 for one user turn, images as `<image>`.
fn renderer(system: String) -> PromptRenderer {
    Box::new(move |msgs: &[Message]| {
        let mut s = format!("{system} ");
        for m in msgs {
            let content: String = m
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.as_str(),
                    Part::Image(_) => "<image>",
                })
                .collect();
            match m.role {
                Role::User => s.push_str(&format!("USER: {content} ")),
                Role::Assistant => s.push_str(&format!("ASSISTANT: {content}</s>")),
                Role::System => {}
            }
        }
        s.push_str("ASSISTANT:");
        Ok(s)
    })
}

fn image(i: usize) -> ImageData {
    let bytes = std::fs::read(fixtures().join(format!("images/image{i}.png"))).unwrap();
    ImageData {
        bytes: Arc::new(bytes),
        mime: "image/png".into(),
    }
}

/// The golden prompt's user turn: the query image, then concept 1's reference image.
fn messages() -> Vec<Message> {
    vec![Message {
        role: Role::User,
        parts: vec![
            Part::Image(image(0)),
            Part::Text("\n[1.".into()),
            Part::Image(image(1)),
            Part::Text(
                "\n Name: <bo>, Info: <bo> is a shiba inu with a black collar.\n]Is <bo> in this image?"
                    .into(),
            ),
        ],
    }]
}

fn load(dir: &Path, lora: Option<&Path>) -> rap_core::Result<LlavaGenerator> {
    let g = golden();
    // RAP_DEVICE's device and RAP_DTYPE, so scripts/gpu-check.sh runs this on a GPU.
    let opts = LlavaOptions {
        lora: lora.map(|p| vec![p.to_path_buf()]).unwrap_or_default(),
        device: Some(rap_device::testing::device()),
        dtype: rap_device::testing::dtype(),
        ..Default::default()
    };
    LlavaGenerator::load(
        dir,
        &opts,
        renderer(g["system"].as_str().unwrap().to_string()),
    )
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Checks one layout against one set of expectations; returns the largest logit difference.
fn check(name: &str, gen: &LlavaGenerator, expected: &Value) -> f32 {
    let g = golden();
    let msgs = messages();
    assert_eq!(
        gen.render_prompt(&msgs).unwrap(),
        g["prompt"].as_str().unwrap()
    );
    let input = gen.prompt_input(&msgs).unwrap();
    let chunks: Vec<Vec<u32>> = serde_json::from_value(g["prompt_chunks"].clone()).unwrap();
    assert_eq!(input.chunks, chunks, "{name}: prompt tokens");
    assert_eq!(
        gen.tokens_per_image(),
        g["image_tokens"].as_u64().unwrap() as usize
    );

    let pixels = gen.pixel_values(&input.images).unwrap();
    let pv: Vec<Vec<f32>> = pixels.flatten_from(1).unwrap().to_vec2().unwrap();
    for (i, exp) in g["pixel_values"].as_array().unwrap()[..2]
        .iter()
        .enumerate()
    {
        let d = max_diff(&pv[i], &floats(exp));
        assert!(d < 1e-4, "{name}: image {i} preprocessing differs by {d}");
    }

    let positions: Vec<usize> = serde_json::from_value(g["positions"].clone()).unwrap();
    let logits = gen.prompt_logits(&msgs, &positions).unwrap();
    let mut worst = 0f32;
    for (p, l) in positions.iter().zip(&logits) {
        let d = max_diff(l, &floats(&expected["prompt_logits"][p.to_string()]));
        worst = worst.max(d);
        assert!(
            d < TOL,
            "{name}: logits at prompt position {p} differ by {d}"
        );
    }

    let params = GenerationParams {
        max_tokens: 16,
        temperature: 0.0,
        ..Default::default()
    };
    let mut steps: Vec<Vec<f32>> = Vec::new();
    let mut streamed = String::new();
    let out = gen
        .generate_tokens(
            &msgs,
            &params,
            &mut |t| {
                streamed.push_str(t);
                true
            },
            Some(&mut |l: &[f32]| steps.push(l.to_vec())),
        )
        .unwrap();
    let want: Vec<u32> = serde_json::from_value(expected["greedy_tokens"].clone()).unwrap();
    assert_eq!(out.tokens, want, "{name}: greedy tokens");
    assert_eq!(out.generation.finish_reason, FinishReason::Length);
    assert_eq!(
        out.generation.text,
        expected["greedy_text"].as_str().unwrap()
    );
    assert_eq!(streamed, out.generation.text);
    assert_eq!(
        out.generation.prompt_tokens,
        g["sequence_length"].as_u64().unwrap() as usize
    );
    for (i, (l, e)) in steps
        .iter()
        .zip(expected["step_logits"].as_array().unwrap())
        .enumerate()
    {
        let d = max_diff(l, &floats(e));
        worst = worst.max(d);
        assert!(d < TOL, "{name}: logits of greedy step {i} differ by {d}");
    }
    assert_eq!(steps.len(), 16);
    eprintln!("{name}: max abs logit diff {worst:.2e} (prompt positions + 16 greedy steps)");
    worst
}

#[test]
fn hf_layout_matches_transformers() {
    let gen = load(&fixtures().join("hf"), None).unwrap();
    assert_eq!(gen.config().layout, Layout::Hf);
    assert!(gen.info().accepts_images);
    check("hf", &gen, &golden()["base"]);
}

#[test]
fn original_layout_matches_transformers() {
    let gen = load(&fixtures().join("original"), None).unwrap();
    assert_eq!(gen.config().layout, Layout::Original);
    assert!(gen.preprocess().pad_to_square);
    check("original", &gen, &golden()["base"]);
}

#[test]
fn hf_layout_with_lora_matches_transformers_with_the_merged_weights() {
    let gen = load(&fixtures().join("hf"), Some(&fixtures().join("lora"))).unwrap();
    check("hf+lora", &gen, &golden()["lora"]);
}

#[test]
fn lora_applies_to_the_original_layout_only_when_names_match() {
    // The fixture adapter was trained on the llava-hf names; the original layout has other
    // names, so it must be refused with the offending tensor named, not silently ignored.
    let err = load(&fixtures().join("original"), Some(&fixtures().join("lora")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the adapter targets `model.") && err.contains("does not have"),
        "{err}"
    );
}

#[test]
fn resized_image_matches_pillow() {
    // 48x36: padded to 48x48 with the mean colour, then Pillow's bicubic down to 32.
    let gen = load(&fixtures().join("hf"), None).unwrap();
    let pv: Vec<f32> = gen
        .pixel_values(&[image(2)])
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let d = max_diff(&pv, &floats(&golden()["pixel_values"][2]));
    assert!(
        d < 1e-4,
        "the resized image differs from transformers' by {d}"
    );
}

fn params(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        temperature: 0.0,
        ..Default::default()
    }
}

#[test]
fn placeholders_and_images_must_agree() {
    let gen = load(&fixtures().join("hf"), None).unwrap();
    let mut msgs = messages();
    msgs[0].parts.remove(2); // one image, two placeholders? no: the renderer writes one per part
    msgs[0].parts.insert(1, Part::Text("<image>".into()));
    let err = gen
        .generate(&msgs, &params(4), &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 `<image>` placeholder(s)") && err.contains("1 image(s)"),
        "{err}"
    );

    // An image the decoder cannot read is named by its position.
    let mut msgs = messages();
    msgs[0].parts[2] = Part::Image(ImageData {
        bytes: Arc::new(b"not an image".to_vec()),
        mime: "image/png".into(),
    });
    let err = gen
        .generate(&msgs, &params(4), &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("image 2"), "{err}");

    // Text only works too (no image features spliced).
    let out = gen
        .generate(&[Message::text(Role::User, "Hi")], &params(3), &mut |_| {
            true
        })
        .unwrap();
    assert_eq!(out.completion_tokens, 3);
}

#[test]
fn cancellation_stop_strings_and_seeded_sampling() {
    let gen = load(&fixtures().join("hf"), None).unwrap();
    let msgs = messages();
    let full = golden()["base"]["greedy_text"]
        .as_str()
        .unwrap()
        .to_string();

    let mut calls = 0;
    let out = gen
        .generate(&msgs, &params(16), &mut |_| {
            calls += 1;
            false
        })
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(calls, 1);
    assert!(out.completion_tokens < 16);

    // A stop string taken from the middle of the greedy answer cuts it there.
    let stop: String = full.chars().skip(40).take(6).collect();
    let cut = full.find(&stop).unwrap();
    let mut p = params(16);
    p.stop = vec![stop.clone()];
    let mut streamed = String::new();
    let out = gen
        .generate(&msgs, &p, &mut |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, full[..cut]);
    assert_eq!(streamed, out.text);

    let sample = |seed| {
        let p = GenerationParams {
            max_tokens: 8,
            temperature: 1.0,
            top_p: 0.9,
            seed: Some(seed),
            stop: vec![],
            ..Default::default()
        };
        gen.generate(&msgs, &p, &mut |_| true).unwrap().text
    };
    assert_eq!(sample(7), sample(7));

    let mut bad = params(4);
    bad.top_p = 0.0;
    assert!(gen.generate(&msgs, &bad, &mut |_| true).is_err());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

fn load_err(dir: &Path) -> String {
    load(dir, None).unwrap_err().to_string()
}

#[test]
fn broken_folders_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(load_err(&empty).contains("no config.json"));

    let d = tmp.path().join("corrupt");
    copy_dir(&fixtures().join("hf"), &d);
    std::fs::write(
        d.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{",
    )
    .unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("model.safetensors") || e.contains("safetensors"),
        "{e}"
    );

    // The memory-mapped read (the crate's one unsafe block) on a file cut short: the header
    // names bytes past the end of the file, which must be an error, not a read past the map.
    let d = tmp.path().join("truncated");
    copy_dir(&fixtures().join("hf"), &d);
    let full = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &full[..full.len() / 2]).unwrap();
    let e = load_err(&d);
    assert!(e.contains("safetensors"), "{e}");

    let d = tmp.path().join("badjson");
    copy_dir(&fixtures().join("hf"), &d);
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("not valid JSON"),
        "{e}"
    );

    let d = tmp.path().join("vocab");
    copy_dir(&fixtures().join("hf"), &d);
    edit_json(&d.join("config.json"), |v| {
        v["text_config"]["vocab_size"] = 500.into()
    });
    let e = load_err(&d);
    assert!(
        e.contains("embed_tokens.weight") && e.contains("shape"),
        "{e}"
    );

    let d = tmp.path().join("layers");
    copy_dir(&fixtures().join("hf"), &d);
    edit_json(&d.join("config.json"), |v| {
        v["text_config"]["num_hidden_layers"] = 3.into()
    });
    let e = load_err(&d);
    assert!(e.contains("layers.2") && e.contains("missing"), "{e}");

    let d = tmp.path().join("act");
    copy_dir(&fixtures().join("hf"), &d);
    edit_json(&d.join("config.json"), |v| {
        v["vision_config"]["hidden_act"] = "gelu".into()
    });
    let e = load_err(&d);
    assert!(e.contains("vision_config.hidden_act"), "{e}");

    let d = tmp.path().join("notok");
    copy_dir(&fixtures().join("hf"), &d);
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    assert!(load_err(&d).contains("no tokenizer.json"));

    let d = tmp.path().join("notower");
    copy_dir(&fixtures().join("original"), &d);
    std::fs::remove_dir_all(d.join("clip-tiny")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("no vision tower weights") && e.contains("clip-tiny"),
        "{e}"
    );

    let d = tmp.path().join("noweights");
    copy_dir(&fixtures().join("hf"), &d);
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    assert!(load_err(&d).contains("no *.safetensors"));

    // A LoRA adapter whose rank does not fit its matrices.
    let a = tmp.path().join("lora");
    copy_dir(&fixtures().join("lora"), &a);
    edit_json(&a.join("adapter_config.json"), |v| v["r"] = 8.into());
    let e = load(&fixtures().join("hf"), Some(&a))
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not fit"), "{e}");
}

/// transformers 4.x llava-hf checkpoints name the parts `language_model.model.*`,
/// `language_model.lm_head`, `vision_tower.vision_model.*` and `multi_modal_projector.*`.
#[test]
fn older_llava_hf_tensor_names_load_too() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("llava-hf-4x");
    copy_dir(&fixtures().join("hf"), &d);
    let tensors =
        candle_core::safetensors::load(d.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let renamed: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(k, t)| {
            let k = if let Some(r) = k.strip_prefix("model.language_model.") {
                format!("language_model.model.{r}")
            } else if k == "lm_head.weight" {
                "language_model.lm_head.weight".to_string()
            } else if let Some(r) = k.strip_prefix("model.vision_tower.") {
                format!("vision_tower.vision_model.{r}")
            } else if let Some(r) = k.strip_prefix("model.") {
                r.to_string()
            } else {
                panic!("unexpected tensor {k}")
            };
            (k, t)
        })
        .collect();
    assert!(renamed.contains_key("multi_modal_projector.linear_2.bias"));
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    candle_core::safetensors::save(&renamed, d.join("model.safetensors")).unwrap();
    let gen = load(&d, None).unwrap();
    let g = golden();
    let positions: Vec<usize> = serde_json::from_value(g["positions"].clone()).unwrap();
    let logits = gen.prompt_logits(&messages(), &positions).unwrap();
    for (p, l) in positions.iter().zip(&logits) {
        let d = max_diff(l, &floats(&g["base"]["prompt_logits"][p.to_string()]));
        assert!(d < TOL, "position {p}: {d}");
    }
}
