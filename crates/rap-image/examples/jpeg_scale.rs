//! Times JPEG decoding at full and reduced scale, for choosing `rap_image::decode_for`'s path:
//! `image`'s decoder (zune-jpeg, full size only, what `rap_image::decode` uses) against
//! jpeg-decoder at 1/1, 1/2, 1/4 and 1/8 (`Decoder::scale`).
//!
//! `cargo run --release -p rap-image --example jpeg_scale -- PHOTO.jpg [PHOTO.jpg ...]`
//! Each photo is timed as it is and upscaled to 4000 x 3000 (re-encoded at quality 90).

use std::time::Instant;

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut ms: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn report(label: &str, bytes: &[u8]) {
    let limits = rap_image::Limits::default();
    let full = rap_image::decode(bytes, &limits).expect("decodable");
    println!("{label}: {}x{}", full.width(), full.height());
    let t = median_ms(|| {
        rap_image::decode(bytes, &limits).unwrap();
    });
    println!("  zune-jpeg (rap_image::decode) 1/1: {t:8.1} ms");
    for reduction in [1u16, 2, 4, 8] {
        let mut size = (0, 0);
        let t = median_ms(|| {
            let mut d = jpeg_decoder::Decoder::new(bytes);
            d.read_info().unwrap();
            let info = d.info().unwrap();
            size = d
                .scale(
                    info.width.div_ceil(reduction),
                    info.height.div_ceil(reduction),
                )
                .unwrap();
            d.decode().unwrap();
        });
        println!(
            "  jpeg-decoder 1/{reduction} ({}x{}): {t:8.1} ms",
            size.0, size.1
        );
    }
    for min_short in [448u32, 224] {
        let t = median_ms(|| {
            rap_image::decode_for(bytes, &limits, Some(min_short)).unwrap();
        });
        let s = rap_image::decode_for(bytes, &limits, Some(min_short)).unwrap();
        println!(
            "  rap_image::decode_for(min short side {min_short}) -> 1/{}: {t:8.1} ms",
            s.reduction()
        );
    }
}

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: jpeg_scale PHOTO.jpg [PHOTO.jpg ...]");
        std::process::exit(2);
    }
    for path in paths {
        let bytes = std::fs::read(&path).expect("readable file");
        report(&path, &bytes);
        let img = rap_image::decode(&bytes, &rap_image::Limits::default()).unwrap();
        let big = image::imageops::resize(&img, 4000, 3000, image::imageops::FilterType::Triangle);
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&big)
            .unwrap();
        report(&format!("{path} upscaled"), &jpeg);
    }
}
