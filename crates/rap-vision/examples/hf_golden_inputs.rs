//! Writes the photos of the Hugging Face golden tests as `rap-image` decodes them (EXIF
//! orientation applied) to lossless PNGs, so that `tools/golden/hf_encoders_golden.py`
//! preprocesses exactly the pixels the Rust test starts from (JPEG decoders differ slightly).
//!
//! `cargo run -p rap-vision --example hf_golden_inputs -- /tmp/hf-golden-inputs`

use std::path::PathBuf;

/// The photos, relative to the shared datasets folder (as listed in the golden script).
const PHOTOS: &[&str] = &[
    "dreambooth-dev/dog/00.jpg",
    "dreambooth-dev/candle/00.jpg",
    "rap-example/example_database/bo.png",
];

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: hf_golden_inputs OUT_DIR"),
    );
    std::fs::create_dir_all(&out).expect("create the output folder");
    let datasets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
    for rel in PHOTOS {
        let path = datasets.join(rel);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let img = rap_image::decode(&bytes, &rap_image::Limits::default()).expect("decode");
        let name = rel.replace('/', "__") + ".png";
        img.save(out.join(&name)).expect("write png");
        println!("{rel} -> {name} ({}x{})", img.width(), img.height());
    }
}
