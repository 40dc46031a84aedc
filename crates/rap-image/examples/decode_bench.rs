//! Times decoding and preprocessing a 12-megapixel JPEG: a dreambooth photo upscaled to
//! 4000 x 3000 (Lanczos3) and re-encoded at quality 90, then `decode` (header check, decode,
//! orientation) and the EfficientNet preprocessing (shortest-edge bilinear resize to 224 +
//! centre crop + CHW normalisation), each timed separately over several rounds.
//!
//! `cargo run -p rap-image --example decode_bench -- [PHOTO.jpg] [ROUNDS]`
//! (default photo: `../shared/datasets/dreambooth-dev/dog/00.jpg` next to the repository).

use rap_image::{decode, Filter, Fit, Limits, Preprocess};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let photo = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/datasets/dreambooth-dev/dog/00.jpg")
    });
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let src = std::fs::read(&photo).unwrap_or_else(|e| panic!("{}: {e}", photo.display()));
    let small = decode(&src, &Limits::default()).expect("decode the photo");
    let big = rap_image::resize(&small, 4000, 3000, Filter::Lanczos3).expect("upscale");
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&big)
        .expect("encode");
    let jpeg = jpeg.into_inner();
    println!(
        "{}: {}x{} upscaled to 4000x3000, JPEG q90 {:.1} MB",
        photo.display(),
        small.width(),
        small.height(),
        jpeg.len() as f64 / 1e6
    );
    let pre = Preprocess {
        size: 224,
        fit: Fit::ShortestEdgeCenterCrop,
        filter: Filter::Bilinear,
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    let (mut t_decode, mut t_resize, mut t_tensor) = (0.0, 0.0, 0.0);
    for _ in 0..rounds {
        let t = Instant::now();
        let img = decode(&jpeg, &Limits::default()).expect("decode");
        t_decode += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let sq = pre.square(&img).expect("resize");
        t_resize += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let data = rap_image::to_chw_f32(&sq, pre.mean, pre.std);
        t_tensor += t.elapsed().as_secs_f64();
        assert_eq!(data.len(), 3 * 224 * 224);
    }
    let ms = |s: f64| s * 1e3 / rounds as f64;
    println!(
        "per image over {rounds} rounds: decode {:.1} ms, resize+crop to 224 {:.1} ms, \
         to CHW f32 {:.2} ms, total {:.1} ms",
        ms(t_decode),
        ms(t_resize),
        ms(t_tensor),
        ms(t_decode + t_resize + t_tensor)
    );
}
