//! Pillow's resampling (`Image.resize` with BILINEAR, BICUBIC or LANCZOS, no `reducing_gap`),
//! reproduced bit for bit: transformers' image processors resize with Pillow, and a golden
//! test of a whole checkpoint (preprocessing included) needs the very same pixels.
//!
//! `rap-image`'s SIMD resize (fast_image_resize) uses the same filters but rounds differently,
//! which moves some pixels by one level; here the algorithm of Pillow's `Resample.c` is
//! followed exactly: per-axis coefficients normalised to sum one, converted to fixed point
//! with 22 fractional bits, a horizontal pass over the rows the vertical pass needs, rounding
//! to 8 bits in between, then the vertical pass.
//!
//! Known gap: Pillow 13 sometimes runs the vertical pass first when both axes shrink (the rule
//! is not reproduced yet), and then a pixel can differ by a level or two. Shortest-edge resizes
//! (CLIP, DINOv2) of the golden photos and fixed-size resizes of square photos agree exactly
//! (`tests/vision/golden_hf.rs`).

use crate::Filter;
use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Per output sample: (first input index, fixed-point weights).
fn coefficients(
    in_size: u32,
    out_size: u32,
    filter: fn(f64) -> f64,
    support: f64,
) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let n = (xmax - xmin).max(0) as usize;
            let mut w: Vec<f64> = (0..n)
                .map(|x| filter((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            let fixed = w
                .iter()
                .map(|&v| {
                    let s = v * (1u32 << PRECISION_BITS) as f64;
                    if v < 0.0 {
                        (s - 0.5) as i32
                    } else {
                        (s + 0.5) as i32
                    }
                })
                .collect();
            (xmin as usize, fixed)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `img.resize((width, height), filter)` as Pillow does it. Nearest neighbour is not Pillow's
/// convolution path: it is delegated to `rap-image`.
pub fn resize(
    img: &RgbImage,
    width: u32,
    height: u32,
    filter: Filter,
) -> rap_core::Result<RgbImage> {
    let (f, support): (fn(f64) -> f64, f64) = match filter {
        Filter::Bilinear => (bilinear, 1.0),
        Filter::Bicubic => (bicubic, 2.0),
        Filter::Lanczos3 => (lanczos, 3.0),
        Filter::Nearest => return crate::resize(img, width, height, filter),
    };
    let (w, h) = img.dimensions();
    if width == 0 || height == 0 || w == 0 || h == 0 {
        return Err(rap_core::Error::invalid(format!(
            "cannot resize {w}x{h} to {width}x{height}"
        )));
    }
    if (w, h) == (width, height) {
        return Ok(img.clone());
    }
    let src = img.as_raw();
    // Horizontal pass over the rows the vertical pass reads.
    let vert = coefficients(h, height, f, support);
    let (rows_from, rows_to) = if h != height {
        let last = vert.last().map(|(s, k)| s + k.len()).unwrap_or(h as usize);
        (vert[0].0, last)
    } else {
        (0, h as usize)
    };
    let (tmp, tw) = if w != width {
        let horiz = coefficients(w, width, f, support);
        let mut tmp = vec![0u8; (rows_to - rows_from) * width as usize * 3];
        for y in rows_from..rows_to {
            let row = &src[y * w as usize * 3..(y + 1) * w as usize * 3];
            let out = &mut tmp[(y - rows_from) * width as usize * 3..][..width as usize * 3];
            for (xx, (xmin, k)) in horiz.iter().enumerate() {
                let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
                for (i, &kv) in k.iter().enumerate() {
                    let p = &row[(xmin + i) * 3..(xmin + i) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += p[c] as i64 * kv as i64;
                    }
                }
                for c in 0..3 {
                    out[xx * 3 + c] = clip8(ss[c]);
                }
            }
        }
        (tmp, width)
    } else {
        (
            src[rows_from * w as usize * 3..rows_to * w as usize * 3].to_vec(),
            w,
        )
    };
    if h == height {
        return Ok(RgbImage::from_raw(tw, height, tmp).expect("sized buffer"));
    }
    let stride = tw as usize * 3;
    let mut out = vec![0u8; height as usize * stride];
    for (yy, (ymin, k)) in vert.iter().enumerate() {
        let ymin = ymin - rows_from;
        for x in 0..stride {
            let mut ss = 1i64 << (PRECISION_BITS - 1);
            for (i, &kv) in k.iter().enumerate() {
                ss += tmp[(ymin + i) * stride + x] as i64 * kv as i64;
            }
            out[yy * stride + x] = clip8(ss);
        }
    }
    Ok(RgbImage::from_raw(tw, height, out).expect("sized buffer"))
}
