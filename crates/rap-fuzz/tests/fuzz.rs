//! The fuzz targets, each a test: every parser and decoder that reads bytes from outside gets
//! its committed seeds and then mutations of them for `RAP_FUZZ_SECONDS` (see `rap_fuzz`).
//! A target may return any error; it must not panic, hang or take unbounded memory.
//! (The server's multipart and chat JSON parsers are fuzzed in rap-server's tests, over HTTP.)

use image::RgbImage;
use rap_core::BoundingBox;
use rap_fuzz::{fuzz, seeds};
use rap_image::Limits;
use std::path::Path;

/// Smaller than the defaults so that each input stays quick (a fuzzer easily writes a header
/// that declares the full 100 megapixels); the limits themselves are what is exercised.
fn limits() -> Limits {
    Limits {
        max_pixels: 4_000_000,
        max_image_bytes: 2 << 20,
        ..Limits::default()
    }
}

/// The preprocessing of every encoder and detector, read from their committed configs.
fn preprocessors() -> (
    Vec<rap_vision::HfPreprocess>,
    rap_detect::owlv2::Owlv2Preprocess,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/hf_preprocess");
    let hf = ["clip.json", "siglip.json", "dinov2.json"]
        .iter()
        .map(|f| rap_vision::HfPreprocess::from_json(&std::fs::read(dir.join(f)).unwrap()).unwrap())
        .collect();
    let owl = rap_detect::owlv2::Owlv2Preprocess::from_json(
        &std::fs::read(dir.join("owlv2.json")).unwrap(),
    )
    .unwrap();
    (hf, owl)
}

/// Every encoder's and detector's resize of a decoded image, whole and in a box.
fn preprocess_all(
    img: &RgbImage,
    hf: &[rap_vision::HfPreprocess],
    owl: &rap_detect::owlv2::Owlv2Preprocess,
) {
    let effnet = rap_vision::encoder::EFFICIENTNET_LITE0_PREPROCESS;
    let _ = effnet.tensor_data(img);
    let (w, h) = (img.width() as f32, img.height() as f32);
    for bbox in [
        BoundingBox::new(0.0, 0.0, w, h),
        BoundingBox::new(w * 0.25, h * 0.1, w * 0.5, h * 0.9),
        BoundingBox::new(w - 1.0, h - 1.0, w + 5.0, h + 5.0),
    ] {
        let _ = effnet.tensor_data_in_box(img, &bbox);
    }
    for p in hf {
        let _ = p.tensor_data(img);
    }
    let _ = owl.tensor_data(img);
}

#[test]
fn image_decode_and_preprocess() {
    let (hf, owl) = preprocessors();
    let limits = limits();
    fuzz("image", &seeds("image"), |bytes| {
        let _ = rap_image::inspect(bytes, &limits);
        if let Ok(img) = rap_image::decode(bytes, &limits) {
            preprocess_all(&img, &hf, &owl);
        }
        // The reduced-scale JPEG path retrieval takes for a large photo.
        if let Ok(scaled) = rap_image::decode_for(bytes, &limits, Some(16)) {
            let _ = scaled.reduction();
        }
    });
}

/// Preprocessing configs as a model folder brings them, each then applied to small images of
/// extreme shapes.
#[test]
fn hf_preprocess_config() {
    let images = [
        RgbImage::from_pixel(1, 1, image::Rgb([1, 2, 3])),
        RgbImage::from_pixel(1, 300, image::Rgb([9, 9, 9])),
        RgbImage::from_pixel(300, 2, image::Rgb([200, 0, 50])),
        RgbImage::from_fn(17, 13, |x, y| image::Rgb([x as u8, y as u8, 7])),
    ];
    fuzz("hf_preprocess", &seeds("hf_preprocess"), |bytes| {
        if let Ok(p) = rap_vision::HfPreprocess::from_json(bytes) {
            for img in &images {
                let _ = p.tensor_data(img);
            }
        }
        if let Ok(p) = rap_detect::owlv2::Owlv2Preprocess::from_json(bytes) {
            for img in &images {
                let _ = p.tensor_data(img);
            }
        }
    });
}

/// A reference `database.json` in `ROOT/db/`, with two small images beside it.
#[test]
fn reference_database_json() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let images = seeds("image");
    std::fs::write(db.join("a.png"), &images[0]).unwrap();
    std::fs::write(db.join("b.png"), &images[1]).unwrap();
    let json = db.join("database.json");
    let limits = limits();
    fuzz("reference_json", &seeds("reference_json"), |bytes| {
        std::fs::write(&json, bytes).unwrap();
        let _ = rap_memory::reference::read_reference(&db, &limits);
    });
}

/// `DATA_DIR/config.toml`, loaded and checked as every command does.
#[test]
fn config_toml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    fuzz("config_toml", &seeds("config_toml"), |bytes| {
        std::fs::write(&file, bytes).unwrap();
        let _ = rap_app::config::Config::load(dir.path());
    });
}

/// A GGUF file's header, its metadata as the loader reads it, and the tokenizer built from it.
#[test]
fn gguf_header_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.gguf");
    fuzz("gguf", &seeds("gguf"), |bytes| {
        std::fs::write(&file, bytes).unwrap();
        let Ok(gguf) = rap_llm_local::GgufFile::open(&file) else {
            return;
        };
        let _ = gguf.architecture();
        let _ = gguf.check_tensor_extents();
        let _ = gguf.weights_by_type();
        let _ = gguf.get_str_array("tokenizer.ggml.tokens");
        let _ = gguf.get_int_array("tokenizer.ggml.token_type");
        let _ = gguf.opt_u64("llama.context_length");
        if let Ok(tokenizer) = rap_llm_local::GgufTokenizer::from_gguf(&gguf) {
            let _ = tokenizer.encode("a b ab <s>", true);
        }
    });
}

/// A legacy (pickle, pre-zip) torch checkpoint.
#[test]
fn torch_legacy_checkpoint() {
    fuzz("torch_legacy", &seeds("torch_legacy"), |bytes| {
        let _ = rap_vision::torch_legacy::parse_legacy_pth(bytes, "fuzz.pth");
    });
}

/// A TF.js `model.json`, with two fixed weight shards beside it.
#[test]
fn tfjs_graph_loader() {
    let dir = tempfile::tempdir().unwrap();
    // 4 float16 weights (2x2 filter) + 2 int32 (a shape), split over the two shards.
    let mut bin = Vec::new();
    for v in [0x3c00u16, 0x4000, 0x4200, 0x4400] {
        bin.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1i32, 4] {
        bin.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(dir.path().join("a.bin"), &bin[..6]).unwrap();
    std::fs::write(dir.path().join("b.bin"), &bin[6..]).unwrap();
    let json = dir.path().join("model.json");
    fuzz("tfjs", &seeds("tfjs"), |bytes| {
        std::fs::write(&json, bytes).unwrap();
        if let Ok(graph) = rap_detect::tfjs::GraphModel::load(&json) {
            let _ = graph.unsupported_ops();
        }
    });
}

// ---- regressions: what the fuzzing found, each kept as a named test (and as a seed) ----

/// A tensor whose byte size overflows u64 (dims 0x40000000000 x 3 of F32) made
/// `check_tensor_extents` and `weights_by_type` panic on overflow; it is a corrupt file.
#[test]
fn gguf_tensor_size_overflow_is_a_clear_error() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus/gguf/regressions/tensor-bytes-overflow.gguf");
    let gguf = rap_llm_local::GgufFile::open(&file).unwrap();
    let err = gguf.check_tensor_extents().unwrap_err().to_string();
    assert!(err.contains("token_embd.weight"), "{err}");
    assert!(gguf.weights_by_type().values().any(|&n| n > 1 << 40));
}

/// `model.safetensors` of a checkpoint folder, memory-mapped (the `unsafe` mapping in
/// `HfFolder::weights`), then its tensors read by name and shape.
#[test]
fn safetensors_mapped_weights() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
    let file = dir.path().join("model.safetensors");
    fuzz("safetensors", &seeds("safetensors"), |bytes| {
        std::fs::write(&file, bytes).unwrap();
        let Ok(folder) = rap_vision::HfFolder::open(dir.path()) else {
            return;
        };
        if let Ok(weights) = folder.weights() {
            for (name, shape) in [("w", vec![2, 3]), ("b", vec![3]), ("e", vec![0])] {
                let _ = weights.get(shape, name);
            }
        }
    });
}

/// A negative `rescale_factor` inverted the range OWLv2's resized planes are clipped to, and
/// `f32::clamp` panicked (min > max); every processor now refuses such a factor.
#[test]
fn a_negative_rescale_factor_is_refused() {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus/hf_preprocess/regressions/negative-rescale.json"),
    )
    .unwrap();
    let err = rap_detect::owlv2::Owlv2Preprocess::from_json(&bytes).unwrap_err();
    assert!(err.contains("rescale_factor"), "{err}");
    let err = rap_vision::HfPreprocess::from_json(&bytes).unwrap_err();
    assert!(err.contains("rescale_factor"), "{err}");
    for factor in ["0", "-1", "1e39"] {
        let json = format!(r#"{{"size": 8, "rescale_factor": {factor}}}"#);
        assert!(rap_detect::owlv2::Owlv2Preprocess::from_json(json.as_bytes()).is_err());
        assert!(rap_vision::HfPreprocess::from_json(json.as_bytes()).is_err());
    }
}
