//! Times OWLv2 at the real size of google/owlv2-base-patch16 (ViT-B/16 at 960 x 960: 3,600
//! patches; 12-layer text tower) with zero weights (the real ones cannot be downloaded here;
//! the arithmetic is the same): preprocessing of a real photo, the query embeddings, and the
//! detection forward, each the median of a few runs.
//!
//! `cargo run --release -p rap-vision --example owlv2_bench -- PHOTO [RUNS]`

use rap_detect::owlv2::Owlv2;
use rap_vision::hf::HfFolder;
use std::path::PathBuf;
use std::time::Instant;

/// config.json of google/owlv2-base-patch16 (the keys that matter).
const CONFIG: &str = r#"{"model_type": "owlv2", "projection_dim": 512,
 "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
   "num_hidden_layers": 12, "max_position_embeddings": 16, "vocab_size": 49408},
 "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
   "num_hidden_layers": 12, "image_size": 960, "patch_size": 16}}"#;
const PREPROCESSOR: &str = r#"{"do_normalize": true, "do_pad": true, "do_rescale": true,
 "do_resize": true, "image_processor_type": "Owlv2ImageProcessor",
 "rescale_factor": 0.00392156862745098, "size": {"height": 960, "width": 960}}"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let photo = PathBuf::from(args.next().expect("usage: owlv2_bench PHOTO [RUNS]"));
    let runs: usize = args.next().map(|r| r.parse().expect("RUNS")).unwrap_or(3);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.json"), CONFIG).unwrap();
    std::fs::write(dir.path().join("preprocessor_config.json"), PREPROCESSOR).unwrap();
    // Any CLIP-style tokenizer file does for timing; the tiny fixture's.
    let tok =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/owlv2/tokenizer.json");
    std::fs::copy(tok, dir.path().join("tokenizer.json")).unwrap();
    let zeros = candle_nn::VarBuilder::zeros(candle_core::DType::F32, &candle_core::Device::Cpu);
    let folder = HfFolder::open(dir.path()).unwrap().with_weights(zeros);
    let model = Owlv2::load_folder(&folder).expect("load");
    let bytes = std::fs::read(&photo).expect("read the photo");
    let img = rap_image::decode(&bytes, &rap_image::Limits::default()).expect("decode");
    let queries = ["a photo of a dog", "a red mug", "candle"];
    let (mut pre, mut text, mut fwd) = (vec![], vec![], vec![]);
    for _ in 0..runs {
        let t = Instant::now();
        let input = model.preprocess().tensor(&img).unwrap();
        pre.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let q = model.query_embeddings(&queries).unwrap();
        text.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let out = model.forward(&input, &q).unwrap();
        fwd.push(t.elapsed().as_secs_f64());
        assert_eq!(out[0].logits.len(), 3600);
    }
    let (p, t, f) = (median(pre), median(text), median(fwd));
    println!(
        "owlv2-base-patch16 shape, {}x{} photo, {} queries, {runs} runs (median): \
         preprocess {p:.3} s, text {t:.3} s, image + heads {f:.3} s, total {:.3} s \
         ({:.3} images/s)",
        img.width(),
        img.height(),
        queries.len(),
        p + t + f,
        1.0 / (p + t + f)
    );
}
