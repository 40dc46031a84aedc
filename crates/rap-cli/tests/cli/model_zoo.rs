//! The model zoo from the command line, on the tiny Hugging Face checkpoints of rap-vision's
//! golden tests: `rap models add/list/verify/rm/install`, `rap embed`, `rap reindex --encoder`
//! (the memory records its encoder; a changed encoder is an error), `rap retrieve --text-only`.

use crate::common;

use common::Rap;
use std::path::{Path, PathBuf};

/// A tiny Hugging Face checkpoint: the OWLv2 detector's beside rap-detect's tests, the
/// encoders' beside rap-vision's.
fn fixture(name: &str) -> PathBuf {
    let owner = if name == "owlv2" {
        "rap-detect"
    } else {
        "rap-vision"
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(owner)
        .join("tests/fixtures/hf")
        .join(name)
}

fn photo(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets/dreambooth-dev")
        .join(rel)
        .display()
        .to_string()
}

/// A copy of a fixture checkpoint that the test may change.
fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn add_list_embed_verify_rm() {
    let rap = Rap::new();
    let m = rap.json(&[
        "models",
        "add",
        "tiny-siglip",
        "--path",
        fixture("siglip").to_str().unwrap(),
    ]);
    assert_eq!(m["model_type"], "siglip");
    assert_eq!(m["has_text"], true);
    let list = rap.json(&["models", "list"]);
    assert_eq!(list["hugging_face"][0]["name"], "tiny-siglip");
    assert!(list["hugging_face_available"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["repo"] == "openai/clip-vit-large-patch14-336"));

    let e = rap.json(&[
        "embed",
        "--model",
        "tiny-siglip",
        &photo("dog/00.jpg"),
        &photo("candle/00.jpg"),
        "--text",
        "a dog",
    ]);
    assert_eq!(e["model"], m["encoder_id"]);
    assert_eq!(e["dim"], 16);
    let rows = e["embeddings"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        let v: Vec<f64> = r
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(v.len(), 16);
        let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    assert_ne!(rows[0], rows[1]);
    // By path: the same embedding space and the same numbers.
    let by_path = rap.json(&[
        "embed",
        "--model",
        fixture("siglip").to_str().unwrap(),
        &photo("dog/00.jpg"),
    ]);
    assert_eq!(by_path["model"], m["encoder_id"]);
    assert_eq!(by_path["embeddings"][0], rows[0]);

    let v = rap.json(&["models", "verify"]);
    assert_eq!(v["models"][0]["ok"], true);
    rap.ok(&["models", "rm", "tiny-siglip"]);
    assert!(fixture("siglip").join("model.safetensors").is_file());
    let err = rap.fails(&["embed", "--model", "tiny-siglip", &photo("dog/00.jpg")]);
    assert!(err.contains("tiny-siglip"), "{err}");
    // A corrupt image is named.
    let bad = rap.dir.path().join("bad.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff not really").unwrap();
    let err = rap.fails(&[
        "embed",
        "--model",
        fixture("dinov2").to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("bad.jpg"), "{err}");
    // DINOv2 has no text tower.
    let err = rap.fails(&[
        "embed",
        "--model",
        fixture("dinov2").to_str().unwrap(),
        "--text",
        "a dog",
    ]);
    assert!(err.contains("no text tower"), "{err}");
}

#[test]
fn installing_from_an_unreachable_hub_fails_clearly() {
    let rap = Rap::new();
    let err = rap.fails(&[
        "models",
        "install",
        "clip-vit-large-patch14-336",
        "--endpoint",
        "http://127.0.0.1:9",
    ]);
    assert!(
        err.contains("cannot reach the Hugging Face Hub")
            && err.contains("openai/clip-vit-large-patch14-336")
            && err.contains("rap models add"),
        "{err}"
    );
    let list = rap.json(&["models", "list"]);
    assert!(list["hugging_face"].as_array().unwrap().is_empty());
}

#[test]
fn a_memory_switches_encoder_and_refuses_a_changed_one() {
    let rap = Rap::new();
    let clip_dir = rap.dir.path().join("my-clip");
    copy_fixture("clip", &clip_dir);
    rap.ok(&[
        "models",
        "add",
        "tiny-clip",
        "--path",
        clip_dir.to_str().unwrap(),
    ]);
    rap.ok(&[
        "concept",
        "add",
        "dog",
        "--image",
        &photo("dog/00.jpg"),
        "--category",
        "dog",
    ]);
    rap.ok(&[
        "concept",
        "add",
        "candle",
        "--image",
        &photo("candle/00.jpg"),
        "--category",
        "candle",
    ]);
    // No default encoder installed, no recorded encoder: words cannot be searched.
    let err = rap.fails(&["retrieve", "--text-only", "--text", "dog"]);
    assert!(err.contains("rap models install"), "{err}");

    let r = rap.json(&["reindex", "--encoder", "tiny-clip"]);
    assert_eq!(r["embedded"], 2);
    assert_eq!(r["active"], true);
    let st = rap.json(&["status"]);
    assert_eq!(st["memory_encoder"]["name"], "tiny-clip");
    assert!(st["pending_encoder"].is_null());
    // Resumable and idempotent: nothing left to embed.
    assert_eq!(
        rap.json(&["reindex", "--encoder", "tiny-clip"])["embedded"],
        0
    );

    // Search by words with the memory's encoder, and by image.
    let hits = rap.json(&[
        "retrieve",
        "--text-only",
        "--text",
        "a photo of a dog",
        "--top-k",
        "2",
    ]);
    let hits = hits["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits[0]["score"].as_f64().unwrap() >= hits[1]["score"].as_f64().unwrap());
    // A tiny random model finds everything alike: no floor, no margin.
    let img = rap.json(&[
        "retrieve",
        &photo("dog/00.jpg"),
        "--threshold",
        "-1",
        "--margin",
        "0",
    ]);
    assert_eq!(img["hits"][0]["name"], "dog");
    assert!((img["hits"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-3);

    // New concepts get keys from the memory's encoder.
    rap.ok(&[
        "concept",
        "add",
        "bowl",
        "--image",
        &photo("berry_bowl/00.jpg"),
    ]);
    let st = rap.json(&["status"]);
    let clip_keys: u64 = st["encoders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"].as_str().unwrap().starts_with("hf-clip@"))
        .map(|e| e["keys"].as_u64().unwrap())
        .sum();
    assert_eq!(clip_keys, 3);

    // The registered folder changes under the same name: queries refuse, never mis-score.
    let pre = clip_dir.join("preprocessor_config.json");
    let text = std::fs::read_to_string(&pre).unwrap();
    std::fs::write(&pre, text.replace("\"resample\": 3", "\"resample\": 2")).unwrap();
    let err = rap.fails(&["retrieve", &photo("dog/00.jpg")]);
    assert!(
        err.contains("changed") || err.contains("now loads as"),
        "{err}"
    );
    let err = rap.fails(&["retrieve", "--text-only", "--text", "dog"]);
    assert!(
        err.contains("changed") || err.contains("now loads as"),
        "{err}"
    );

    // Switching to an encoder without words: image retrieval works, words are refused.
    rap.ok(&[
        "models",
        "add",
        "tiny-dino",
        "--path",
        fixture("dinov2").to_str().unwrap(),
    ]);
    let r = rap.json(&["reindex", "--encoder", "tiny-dino"]);
    assert_eq!(r["embedded"], 3);
    assert_eq!(r["active"], true);
    let img = rap.json(&[
        "retrieve",
        &photo("candle/00.jpg"),
        "--threshold",
        "-1",
        "--margin",
        "0",
    ]);
    assert_eq!(img["hits"][0]["name"], "candle");
    let err = rap.fails(&["retrieve", "--text-only", "--text", "dog"]);
    assert!(err.contains("no text tower"), "{err}");
    let err = rap.fails(&["reindex", "--encoder", "nope"]);
    assert!(err.contains("nope"), "{err}");
    assert_eq!(rap.json(&["status"])["memory_encoder"]["name"], "tiny-dino");
}

/// `rap detect --model DIR --query TEXT...`: the tiny OWLv2 checkpoint (random weights, so only
/// the shape of the answer is checked here; its numbers are rap-vision's golden test).
#[test]
fn detect_with_an_owlv2_folder_and_text_queries() {
    let rap = Rap::new();
    let owl = fixture("owlv2").display().to_string();
    let img = photo("dog/00.jpg");
    let out = rap.json(&[
        "detect",
        &img,
        "--model",
        &owl,
        "--query",
        "a photo of a dog",
        "--query",
        "candle",
        "--min-score",
        "0",
        "--max",
        "4",
    ]);
    let dets = out["detections"].as_array().unwrap();
    assert_eq!(dets.len(), 4, "{out}");
    let mut last = f64::MAX;
    for d in dets {
        let q = d["query"].as_u64().unwrap() as usize;
        assert_eq!(d["label"], ["a photo of a dog", "candle"][q]);
        let score = d["score"].as_f64().unwrap();
        assert!(score > 0.0 && score < 1.0 && score <= last, "{out}");
        last = score;
        let b: Vec<f64> = d["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // dog/00.jpg is 780 x 780.
        assert!(
            b[0] >= 0.0
                && b[1] >= 0.0
                && b[0] < b[2]
                && b[1] < b[3]
                && b[2] <= 780.0
                && b[3] <= 780.0,
            "{b:?}"
        );
    }
    let out = rap.run(&["detect", &img, "--query", "dog"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--model"), "{err}");
    let clip = fixture("clip").display().to_string();
    let err = rap.fails(&["detect", &img, "--model", &clip, "--query", "dog"]);
    assert!(err.contains("not an OWLv2 detector"), "{err}");
}
