//! OWLv2 (`Owlv2ForObjectDetection`) from a Hugging Face folder against the transformers
//! reference (`tools/golden/hf_encoders_golden.py`): a tiny random checkpoint in the standard
//! layout (`tests/fixtures/hf/owlv2`), loaded through [`rap_detect::owlv2::Owlv2::load`] exactly
//! as a user's real checkpoint is, run on two real photos cut to non-square windows (so the
//! pad-to-square is exercised, once at the bottom and once on the right) with three text
//! queries. Checked: the token ids, the preprocessed pixels (a sample of every 97th value and
//! two statistics, within 1e-5), and within 1e-4 the class logits, objectness logits,
//! predicted boxes and the post-processed detections in image pixels.

#[allow(dead_code)]
use crate::golden_common;

use rap_detect::owlv2::{post_process, DetectOptions, Owlv2};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn golden() -> serde_json::Value {
    let g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("owlv2_golden.json")).unwrap())
            .unwrap();
    g["owlv2"].clone()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn photo(rel: &str, crop: &[u32]) -> image::RgbImage {
    let path = golden_common::datasets_dir().join(rel);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared datasets are needed)", path.display()));
    let img = rap_image::decode(&bytes, &rap_image::Limits::default()).unwrap();
    image::imageops::crop_imm(&img, crop[0], crop[1], crop[2], crop[3]).to_image()
}

#[test]
fn owlv2_matches_transformers() {
    let g = golden();
    let model = Owlv2::load_on(&fixtures().join("owlv2"), &rap_device::testing::device()).unwrap();
    let queries: Vec<&str> = g["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q.as_str().unwrap())
        .collect();
    for (q, want) in queries.iter().zip(g["query_ids"].as_array().unwrap()) {
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(model.query_ids(q).unwrap(), want, "{q}");
    }
    let q = model.query_embeddings(&queries).unwrap();
    let mut worst = 0f32;
    for p in g["photos"].as_array().unwrap() {
        let rel = p["photo"].as_str().unwrap();
        let crop: Vec<u32> = floats(&p["crop"]).iter().map(|v| *v as u32).collect();
        let img = photo(rel, &crop);

        // Preprocessing.
        let (data, (w, h)) = model.preprocess().tensor_data(&img).unwrap();
        let shape: Vec<usize> = floats(&p["input_shape"])
            .iter()
            .map(|v| *v as usize)
            .collect();
        assert_eq!(vec![3, h as usize, w as usize], shape, "{rel}");
        let sample: Vec<f32> = data.iter().step_by(97).copied().collect();
        let d = max_abs_diff(&sample, &floats(&p["input_every_97th"]));
        let mean = data.iter().map(|x| *x as f64).sum::<f64>() / data.len() as f64;
        let abs_mean = data.iter().map(|x| x.abs() as f64).sum::<f64>() / data.len() as f64;
        eprintln!(
            "{rel}: pixels {d:.2e}, mean {:.2e}, abs mean {:.2e}",
            mean - p["input_mean"].as_f64().unwrap(),
            abs_mean - p["input_abs_mean"].as_f64().unwrap()
        );
        assert!(d < 1e-5, "{rel}: preprocessed pixels differ by {d}");
        assert!((mean - p["input_mean"].as_f64().unwrap()).abs() < 1e-6);
        assert!((abs_mean - p["input_abs_mean"].as_f64().unwrap()).abs() < 1e-6);

        // The model.
        let input = model.preprocess().tensor(&img).unwrap();
        let out = model.forward(&input, &q).unwrap().remove(0);
        let want_logits = p["logits"].as_array().unwrap();
        assert_eq!(
            out.logits.len(),
            g["num_patches"].as_u64().unwrap() as usize
        );
        assert_eq!(out.logits.len(), want_logits.len());
        let mut dl = 0f32;
        for (row, want) in out.logits.iter().zip(want_logits) {
            dl = dl.max(max_abs_diff(row, &floats(want)));
        }
        let dobj = max_abs_diff(&out.objectness_logits, &floats(&p["objectness_logits"]));
        let mut db = 0f32;
        for (b, want) in out
            .pred_boxes
            .iter()
            .zip(p["pred_boxes"].as_array().unwrap())
        {
            db = db.max(max_abs_diff(b, &floats(want)));
        }
        eprintln!("{rel}: logits {dl:.2e}, objectness {dobj:.2e}, boxes {db:.2e}");
        assert!(dl < 1e-4, "{rel}: logits differ by {dl}");
        assert!(dobj < 1e-4, "{rel}: objectness differs by {dobj}");
        assert!(db < 1e-4, "{rel}: boxes differ by {db}");
        worst = worst.max(dl).max(dobj).max(db);

        // Post-processing: every patch (threshold 0), boxes in the photo's pixels.
        let dets = post_process(&out, img.width(), img.height(), 0.0);
        let labels: Vec<usize> = p["post_labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            dets.iter().map(|d| d.query).collect::<Vec<_>>(),
            labels,
            "{rel}"
        );
        let scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
        assert!(max_abs_diff(&scores, &floats(&p["post_scores"])) < 1e-4);
        let side = img.width().max(img.height()) as f32;
        for (d, want) in dets.iter().zip(p["post_boxes"].as_array().unwrap()) {
            let b: [f32; 4] = d.bbox.into();
            // Pixels: 1e-4 of the box coordinates relative to the padded side.
            let diff = max_abs_diff(&b, &floats(want)) / side;
            assert!(diff < 1e-4, "{rel}: post-processed box differs by {diff}");
        }

        // The library call: the same scores, best first, clipped to the photo.
        let found = model
            .detect(
                &img,
                &queries,
                &DetectOptions {
                    threshold: 0.0,
                    nms_iou: None,
                    max_detections: 1000,
                },
            )
            .unwrap();
        // Boxes wholly in the padding are dropped; the rest keep their scores.
        let (w, h) = (img.width() as f32, img.height() as f32);
        let inside: Vec<f32> = dets
            .iter()
            .filter(|d| {
                let b = d.bbox;
                b.x1.max(0.0) < b.x2.min(w) && b.y1.max(0.0) < b.y2.min(h)
            })
            .map(|d| d.score)
            .collect();
        assert!(!inside.is_empty() && inside.len() <= dets.len());
        assert_eq!(found.len(), inside.len(), "{rel}");
        let best = inside.iter().copied().fold(f32::MIN, f32::max);
        assert!((found[0].score - best).abs() < 1e-6);
        assert!(found.windows(2).all(|w| w[0].score >= w[1].score));
        for d in &found {
            let b = d.bbox;
            assert!(
                b.x1 >= 0.0
                    && b.y1 >= 0.0
                    && b.x2 <= img.width() as f32
                    && b.y2 <= img.height() as f32
            );
        }
    }
    eprintln!("owlv2: worst max abs diff {worst:.2e}");
}

#[test]
fn owlv2_refuses_bad_folders_and_queries() {
    let model = Owlv2::load_on(&fixtures().join("owlv2"), &rap_device::testing::device()).unwrap();
    let err = model.query_embeddings(&[]).unwrap_err().to_string();
    assert!(err.contains("at least one"), "{err}");
    let err = model
        .query_embeddings(&["dog", "  "])
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    let bad = candle_core::Tensor::zeros(
        (1, 3, 32, 32),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let q = model.query_embeddings(&["dog"]).unwrap();
    let err = model.forward(&bad, &q).unwrap_err().to_string();
    assert!(err.contains("(N, 3, 96, 96)"), "{err}");

    // An encoder folder (rap-vision's tiny CLIP) is not a detector.
    let clip =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rap-vision/tests/fixtures/hf/clip");
    let err = Owlv2::load(&clip).unwrap_err().to_string();
    assert!(
        err.contains("\"clip\"") && err.contains("config.json"),
        "{err}"
    );
    // A preprocessor config that does not give the model's input size.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("owlv2").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("preprocessor_config.json"),
        br#"{"size": {"height": 960, "width": 960}}"#,
    )
    .unwrap();
    let err = Owlv2::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("preprocessor_config.json") && err.contains("96x96"),
        "{err}"
    );
    // Weights of another shape than config.json says.
    let cfg = std::fs::read_to_string(fixtures().join("owlv2/config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        cfg.replace("\"intermediate_size\": 40", "\"intermediate_size\": 48"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("owlv2/preprocessor_config.json"),
        dir.path().join("preprocessor_config.json"),
    )
    .unwrap();
    let err = Owlv2::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("does not match"),
        "{err}"
    );
}

/// The real checkpoint's processor config (google/owlv2-base-patch16, 960 x 960) on real
/// sizes: a wide cut padded and enlarged, and a whole photo slightly shrunk.
#[test]
fn owlv2_preprocessing_at_the_real_size() {
    let g = golden();
    let entries = g["real_preprocessing"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for p in entries {
        let rel = p["photo"].as_str().unwrap();
        let crop: Vec<u32> = floats(&p["crop"]).iter().map(|v| *v as u32).collect();
        let img = photo(rel, &crop);
        let cfg = serde_json::to_vec(&p["preprocessor_config"]).unwrap();
        let pre = rap_detect::owlv2::Owlv2Preprocess::from_json(&cfg).unwrap();
        let (data, (w, h)) = pre.tensor_data(&img).unwrap();
        let shape: Vec<usize> = floats(&p["input_shape"])
            .iter()
            .map(|v| *v as usize)
            .collect();
        assert_eq!(vec![3, h as usize, w as usize], shape, "{rel}");
        let sample: Vec<f32> = data.iter().step_by(997).copied().collect();
        let d = max_abs_diff(&sample, &floats(&p["input_every_997th"]));
        let mean = data.iter().map(|x| *x as f64).sum::<f64>() / data.len() as f64;
        let abs_mean = data.iter().map(|x| x.abs() as f64).sum::<f64>() / data.len() as f64;
        let dm = (mean - p["input_mean"].as_f64().unwrap()).abs();
        let da = (abs_mean - p["input_abs_mean"].as_f64().unwrap()).abs();
        eprintln!("{rel} at {w}x{h}: pixels {d:.2e}, mean {dm:.2e}, abs mean {da:.2e}");
        assert!(d < 1e-5, "{rel}: preprocessed pixels differ by {d}");
        assert!(
            dm < 1e-6 && da < 1e-6,
            "{rel}: statistics differ by {dm}, {da}"
        );
    }
}
