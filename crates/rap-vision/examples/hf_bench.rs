//! Times a catalogued Hugging Face image tower at its real size with zero weights
//! ([`rap_vision::reference::reference_architecture`]) on the CPU: the network alone on a
//! prepared batch of the synthetic 640x480 photo of `rap models bench`, in images/s (over all
//! runs, and from the fastest run). For profiling one model at one batch size; run it
//! optimised:
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p rap-vision --example hf_bench -- NAME [BATCH] [SECONDS]`

use candle_core::Device;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().expect("usage: hf_bench NAME [BATCH] [SECONDS]");
    let batch: usize = args.next().map_or(1, |s| s.parse().expect("BATCH"));
    let seconds: f64 = args.next().map_or(3.0, |s| s.parse().expect("SECONDS"));
    let enc = rap_vision::reference::reference_architecture(&name, &Device::Cpu).expect("model");
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
    });
    let input = enc
        .preprocess()
        .batch(&vec![image; batch])
        .expect("preprocess");
    enc.image_features(&input).expect("forward"); // warm-up
    let start = Instant::now();
    let (mut runs, mut best) = (0, f64::INFINITY);
    while runs < 2 || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        enc.image_features(&input).expect("forward");
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    let mean = (runs * batch) as f64 / start.elapsed().as_secs_f64();
    println!(
        "{name} batch {batch}: {mean:.2} images/s ({:.2} from the fastest run)",
        batch as f64 / best
    );
}
