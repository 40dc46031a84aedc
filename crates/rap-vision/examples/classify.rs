//! Prints EfficientNet-Lite0's top-5 ImageNet-1k classes (index, probability) for images: a
//! quick check that the installed weights work (scikit-image's coffee photo: 967, espresso).
//!
//! `cargo run -p rap-vision --example classify -- WEIGHTS.pth IMAGE...`

use rap_vision::EfficientNetLite0Encoder;

fn main() {
    let mut args = std::env::args().skip(1);
    let weights = args.next().expect("usage: classify WEIGHTS.pth IMAGE...");
    let enc = EfficientNetLite0Encoder::load(std::path::Path::new(&weights)).expect("load");
    for path in args {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let img = rap_image::decode(&bytes, &rap_image::Limits::default()).expect("decode");
        let top = enc.classify(&[img], 5).expect("classify");
        println!("{path}: {:?}", top[0]);
    }
}
