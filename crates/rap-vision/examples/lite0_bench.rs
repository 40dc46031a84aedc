//! Times EfficientNet-Lite0 on this machine's CPU: the work of `rap models bench
//! efficientnet-lite0` (the synthetic 640x480 photo, preprocessed and embedded) at batch 1 and
//! 8, and the network alone (`pooled_features` on a prepared 224x224 input), in images/s.
//! A quick loop for kernel work without building the `rap` binary; run it optimised:
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p rap-vision --example lite0_bench -- WEIGHTS.pth [SECONDS]`

use rap_core::ImageEncoder;
use rap_vision::{EfficientNetLite0Encoder, Pooling};
use std::time::Instant;

/// Images per second of `f` run on `batch` images: one warm-up, then runs until `seconds`
/// have passed (at least two), as `rap models bench` times it.
fn rate(batch: usize, seconds: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut runs = 0;
    while runs < 2 || start.elapsed().as_secs_f64() < seconds {
        f();
        runs += 1;
    }
    (runs * batch) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let weights = args
        .next()
        .expect("usage: lite0_bench WEIGHTS.pth [SECONDS]");
    let seconds: f64 = args.next().map_or(3.0, |s| s.parse().expect("SECONDS"));
    let enc = EfficientNetLite0Encoder::load(std::path::Path::new(&weights)).expect("load");
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
    });
    println!("{:<22}{:>10}{:>10}", "images/s", "batch 1", "batch 8");
    let mut embed = Vec::new();
    let mut net = Vec::new();
    for batch in [1usize, 8] {
        let images = vec![image.clone(); batch];
        embed.push(rate(batch, seconds, || {
            enc.embed(&images).expect("embed");
        }));
        let input = enc.input_tensor(&images).expect("input");
        net.push(rate(batch, seconds, || {
            enc.pooled_features(&input, Pooling::Average)
                .expect("forward");
        }));
    }
    println!(
        "{:<22}{:>10.1}{:>10.1}",
        "embed (models bench)", embed[0], embed[1]
    );
    println!("{:<22}{:>10.1}{:>10.1}", "network only", net[0], net[1]);
}
