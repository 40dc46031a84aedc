//! Times EfficientNet-Lite0 on this machine's CPU: the work of `rap models bench
//! efficientnet-lite0` (the synthetic 640x480 photo, preprocessed and embedded) at batch 1 and
//! 8, and the network alone (`pooled_features` on a prepared 224x224 input), in images/s
//! (over all runs, and from the fastest run).
//! A quick loop for kernel work without building the `rap` binary; run it optimised:
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p rap-vision --example lite0_bench -- WEIGHTS.pth [SECONDS]`

use rap_core::ImageEncoder;
use rap_vision::{EfficientNetLite0Encoder, Pooling};
use std::time::Instant;

/// Images per second of `f` run on `batch` images: one warm-up, then runs until `seconds`
/// have passed (at least two), as `rap models bench` times it; and the same from the fastest
/// run alone (on a busy machine, the closer to what a quiet one gives).
fn rate(batch: usize, seconds: f64, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let start = Instant::now();
    let (mut runs, mut best) = (0, f64::INFINITY);
    while runs < 2 || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    let mean = (runs * batch) as f64 / start.elapsed().as_secs_f64();
    (mean, batch as f64 / best)
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
    for (name, r) in [("embed (models bench)", embed), ("network only", net)] {
        println!("{name:<22}{:>10.1}{:>10.1}", r[0].0, r[1].0);
        println!("{:<22}{:>10.1}{:>10.1}", "  fastest run", r[0].1, r[1].1);
    }
}
