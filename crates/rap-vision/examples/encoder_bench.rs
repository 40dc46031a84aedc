//! Times the EfficientNet-Lite0 encoder: ms per image at batch 1 and batch 8 (224 x 224
//! inputs already prepared), after a warm-up.
//!
//! `cargo run --release -p rap-vision --example encoder_bench -- WEIGHTS.pth [ROUNDS]`

use rap_vision::{EfficientNetLite0Encoder, Pooling};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let weights = args
        .next()
        .expect("usage: encoder_bench WEIGHTS.pth [ROUNDS]");
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let t = Instant::now();
    let enc = EfficientNetLite0Encoder::load(std::path::Path::new(&weights)).expect("load");
    println!("load: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let img = image::RgbImage::from_fn(224, 224, |x, y| image::Rgb([x as u8, y as u8, 77]));
    for batch in [1usize, 8] {
        let imgs = vec![img.clone(); batch];
        let input = enc.input_tensor(&imgs).expect("input");
        enc.pooled_features(&input, Pooling::Average)
            .expect("warm-up");
        let t = Instant::now();
        for _ in 0..rounds {
            enc.pooled_features(&input, Pooling::Average)
                .expect("forward");
        }
        let per = t.elapsed().as_secs_f64() * 1e3 / (rounds * batch) as f64;
        println!("batch {batch}: {per:.1} ms per image ({rounds} rounds)");
    }
}
