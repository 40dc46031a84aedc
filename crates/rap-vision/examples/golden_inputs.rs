//! Writes the 224 x 224 RGB inputs that EfficientNet-Lite0 sees for the golden images, as raw
//! bytes, for `tools/golden/efficientnet_lite0_golden.py` to run the PyTorch reference on
//! exactly the same pixels.
//!
//! `cargo run -p rap-vision --example golden_inputs -- OUT_DIR`

#[path = "../tests/vision/golden_common/mod.rs"]
mod golden_common;

fn main() {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: golden_inputs OUT_DIR"),
    );
    std::fs::create_dir_all(&out).expect("create OUT_DIR");
    let pre = rap_vision::EFFICIENTNET_LITE0_PREPROCESS;
    let mut index = Vec::new();
    for (i, (name, img)) in golden_common::golden_images().into_iter().enumerate() {
        let sq = pre.square(&img).expect("preprocess");
        let file = format!("input{i}.rgb");
        std::fs::write(out.join(&file), sq.as_raw()).expect("write");
        index.push(serde_json::json!({"name": name, "file": file, "size": pre.size}));
    }
    std::fs::write(
        out.join("index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
    println!("wrote {} inputs to {}", index.len(), out.display());
}
