//! CLIP, DINOv2 and SigLIP from Hugging Face folders against the transformers reference
//! (`tools/golden/hf_encoders_golden.py`): tiny random checkpoints in the standard layout
//! (`tests/fixtures/hf/{clip,dinov2,siglip}`), loaded through [`rap_vision::load_hf_encoder`]
//! exactly as a user's real checkpoint is. Checked within 1e-4: the model on a fixed synthetic
//! input, preprocessing + model on real photos (the processed pixels pinned by sha256), and the
//! text embeddings; plus the preprocessing of the real checkpoints' processor configs.

use crate::golden_common;

use candle_core::{Device, Tensor};
use rap_core::ImageEncoder;
use rap_vision::{load_hf_encoder, HfPreprocess};
use sha2::Digest;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn golden() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("golden.json")).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The script's `synthetic_pixels`.
fn synthetic(batch: usize, size: usize) -> Tensor {
    let mut v = Vec::with_capacity(batch * 3 * size * size);
    for b in 0..batch {
        for c in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    let a =
                        0.37 * (b + 1) as f64 + 0.11 * c as f64 + 0.05 * y as f64 - 0.07 * x as f64;
                    v.push((a.sin() * 1.5) as f32);
                }
            }
        }
    }
    Tensor::from_vec(v, (batch, 3, size, size), &Device::Cpu).unwrap()
}

fn photo(rel: &str) -> image::RgbImage {
    let path = golden_common::datasets_dir().join(rel);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared datasets are needed)", path.display()));
    rap_image::decode(&bytes, &rap_image::Limits::default()).unwrap()
}

fn check_model(name: &str) {
    let g = golden();
    let want = &g["models"][name];
    // RAP_DEVICE's device, so scripts/gpu-check.sh runs this on a GPU.
    let folder = rap_vision::HfFolder::open(&fixtures().join(name))
        .unwrap()
        .with_device(rap_device::testing::device());
    let enc = rap_vision::load_hf_folder(folder, None).unwrap();
    assert_eq!(enc.model_type(), want["model_type"].as_str().unwrap());
    let dim = want["dim"].as_u64().unwrap() as usize;
    assert_eq!(enc.info().dim, dim);
    assert!(
        enc.info()
            .id
            .starts_with(&format!("hf-{}@", enc.model_type())),
        "{}",
        enc.info().id
    );
    let mut worst = 0f32;

    // The model alone, on a fixed input (a batch of two).
    let s = &want["synthetic"];
    let input = synthetic(
        s["batch"].as_u64().unwrap() as usize,
        s["size"].as_u64().unwrap() as usize,
    );
    let got = enc.image_features(&input).unwrap();
    for (g_row, w_row) in got.iter().zip(s["embeddings"].as_array().unwrap()) {
        let w_row = floats(w_row);
        let d = max_abs_diff(g_row, &w_row);
        let dn = max_abs_diff(&normalised(g_row), &normalised(&w_row));
        eprintln!("{name} synthetic: raw {d:.2e}, normalised {dn:.2e}");
        assert!(
            d < 1e-4 && dn < 1e-4,
            "{name}: synthetic input differs by {d}"
        );
        worst = worst.max(d).max(dn);
    }

    // Preprocessing + model on real photos.
    for p in want["photos"].as_array().unwrap() {
        let rel = p["photo"].as_str().unwrap();
        let img = photo(rel);
        let px = enc.preprocess().geometry(&img).unwrap();
        let sha = hex::encode(sha2::Sha256::digest(px.as_raw()));
        assert_eq!(
            sha,
            p["pixels_sha256"].as_str().unwrap(),
            "{name} {rel}: pixels"
        );
        let (data, _) = enc.preprocess().tensor_data(&img).unwrap();
        let first = floats(&p["input_first_values"]);
        assert!(
            max_abs_diff(&data[..first.len()], &first) < 1e-5,
            "{name} {rel}"
        );
        let mean = data.iter().map(|x| *x as f64).sum::<f64>() / data.len() as f64;
        assert!((mean - p["input_mean"].as_f64().unwrap()).abs() < 1e-5);
        let e = enc.embed(std::slice::from_ref(&img)).unwrap();
        let d = max_abs_diff(e[0].as_slice(), &normalised(&floats(&p["embedding"])));
        eprintln!("{name} {rel}: normalised {d:.2e}");
        assert!(d < 1e-4, "{name} {rel}: embedding differs by {d}");
        worst = worst.max(d);
    }

    // Text embeddings.
    let texts = want["texts"].as_array().unwrap();
    assert_eq!(enc.has_text(), !texts.is_empty());
    for t in texts {
        let text = t["text"].as_str().unwrap();
        let got = enc.text_features(text).unwrap();
        let w = floats(&t["embedding"]);
        let d = max_abs_diff(&got, &w);
        let e = enc.embed_texts(&[text]).unwrap();
        let dn = max_abs_diff(e[0].as_slice(), &normalised(&w));
        eprintln!("{name} text {text:?}: raw {d:.2e}, normalised {dn:.2e}");
        assert!(d < 1e-4 && dn < 1e-4, "{name} {text:?}: differs by {d}");
        worst = worst.max(d).max(dn);
    }
    if texts.is_empty() {
        let err = enc.embed_texts(&["a dog"]).unwrap_err().to_string();
        assert!(err.contains("no text tower"), "{err}");
    }
    eprintln!("{name}: worst max abs diff {worst:.2e}");
}

#[test]
fn clip_matches_transformers() {
    check_model("clip");
}

#[test]
fn dinov2_matches_transformers() {
    check_model("dinov2");
}

#[test]
fn siglip_matches_transformers() {
    check_model("siglip");
}

#[test]
fn real_checkpoints_preprocessing_matches_transformers() {
    let g = golden();
    for r in g["real_preprocessing"].as_array().unwrap() {
        let name = r["checkpoint"].as_str().unwrap();
        let rel = r["photo"].as_str().unwrap();
        let cfg = serde_json::to_vec(&r["preprocessor_config"]).unwrap();
        let p = HfPreprocess::from_json(&cfg).unwrap();
        let img = photo(rel);
        let px = p.geometry(&img).unwrap();
        let shape: Vec<u64> = r["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(
            (px.height() as u64, px.width() as u64),
            (shape[1], shape[2]),
            "{name}"
        );
        let sha = hex::encode(sha2::Sha256::digest(px.as_raw()));
        assert_eq!(sha, r["pixels_sha256"].as_str().unwrap(), "{name} {rel}");
        let (data, _) = p.tensor_data(&img).unwrap();
        let first = floats(&r["input_first_values"]);
        assert!(max_abs_diff(&data[..first.len()], &first) < 1e-5, "{name}");
    }
}

/// Broken folders fail with the file and the problem named, never a panic.
#[test]
fn broken_checkpoints_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("clip");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "preprocessor_config.json", "tokenizer.json"] {
        std::fs::copy(fixtures().join("clip").join(f), dir.join(f)).unwrap();
    }
    // Missing weights.
    let err = load_hf_encoder(&dir, None).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("missing"),
        "{err}"
    );
    // Truncated weights.
    let weights = std::fs::read(fixtures().join("clip/model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let err = load_hf_encoder(&dir, None).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    // Weights of another architecture.
    std::fs::copy(
        fixtures().join("dinov2/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let err = load_hf_encoder(&dir, None).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("class_embedding"),
        "{err}"
    );
    // Right weights, config with other shapes.
    std::fs::write(dir.join("model.safetensors"), &weights).unwrap();
    let cfg = std::fs::read_to_string(fixtures().join("clip/config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"intermediate_size\": 32", "\"intermediate_size\": 48"),
    )
    .unwrap();
    let err = load_hf_encoder(&dir, None).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("config.json") && err.contains("shape"),
        "{err}"
    );
    // An activation candle's CLIP cannot run.
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"quick_gelu\"", "\"gelu\""),
    )
    .unwrap();
    let err = load_hf_encoder(&dir, None).unwrap_err().to_string();
    assert!(
        err.contains("hidden_act") && err.contains("config.json"),
        "{err}"
    );
    // A preprocessor that disagrees with the model's input size.
    std::fs::write(dir.join("config.json"), &cfg).unwrap();
    let pre = std::fs::read_to_string(fixtures().join("clip/preprocessor_config.json")).unwrap();
    std::fs::write(
        dir.join("preprocessor_config.json"),
        pre.replace("\"height\": 64", "\"height\": 32")
            .replace("\"width\": 64", "\"width\": 32"),
    )
    .unwrap();
    let err = load_hf_encoder(&dir, None).unwrap_err().to_string();
    assert!(
        err.contains("preprocessor_config.json") && err.contains("32x32"),
        "{err}"
    );
    // A corrupt tokenizer.
    std::fs::write(dir.join("preprocessor_config.json"), &pre).unwrap();
    std::fs::write(dir.join("tokenizer.json"), b"{").unwrap();
    let err = load_hf_encoder(&dir, None).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    // Without tokenizer.json the model still embeds images.
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let enc = load_hf_encoder(&dir, None).unwrap();
    assert!(!enc.has_text());
    assert_eq!(enc.embed(&[golden_common::synthetic()]).unwrap().len(), 1);
}

/// The encoder id changes with the weights and with the preprocessing.
#[test]
fn encoder_id_names_the_checkpoint() {
    let a = load_hf_encoder(&fixtures().join("siglip"), None).unwrap();
    let b = load_hf_encoder(&fixtures().join("siglip"), Some(&"0".repeat(64))).unwrap();
    assert_ne!(a.info().id, b.info().id);
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("siglip").join(f), tmp.path().join(f)).unwrap();
    }
    let pre = std::fs::read_to_string(fixtures().join("siglip/preprocessor_config.json")).unwrap();
    std::fs::write(
        tmp.path().join("preprocessor_config.json"),
        pre.replace("\"resample\": 3", "\"resample\": 2"),
    )
    .unwrap();
    let c = load_hf_encoder(tmp.path(), None).unwrap();
    assert_ne!(a.info().id, c.info().id);
    std::fs::write(tmp.path().join("preprocessor_config.json"), &pre).unwrap();
    let d = load_hf_encoder(tmp.path(), None).unwrap();
    assert_eq!(a.info().id, d.info().id);
}
