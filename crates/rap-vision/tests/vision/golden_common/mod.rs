//! What the EfficientNet-Lite0 golden test and its input dumper (`examples/golden_inputs.rs`)
//! share: the fixed images.

use std::path::PathBuf;

/// The shared datasets folder (next to the repository).
pub fn datasets_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
}

/// The fixed images: (name, decoded RGB image).
pub fn golden_images() -> Vec<(String, image::RgbImage)> {
    let mut out = Vec::new();
    for rel in ["dreambooth-dev/dog/00.jpg", "dreambooth-dev/candle/00.jpg"] {
        let path = datasets_dir().join(rel);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (the shared datasets are needed)", path.display()));
        let img = rap_image::decode(&bytes, &rap_image::Limits::default()).unwrap();
        out.push((rel.to_string(), img));
    }
    out.push(("synthetic".to_string(), synthetic()));
    out
}

/// 320 x 240: red rises left to right, green top to bottom, blue in a 20-pixel checkerboard.
pub fn synthetic() -> image::RgbImage {
    image::RgbImage::from_fn(320, 240, |x, y| {
        let b = if (x / 20 + y / 20) % 2 == 0 { 230 } else { 20 };
        image::Rgb([(x * 255 / 319) as u8, (y * 255 / 239) as u8, b])
    })
}
