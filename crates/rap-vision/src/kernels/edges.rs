//! Edge tests of the kernels' unsafe code (SIMD intrinsics, raw pointers into tiles, `gemm`):
//! every instruction set this CPU runs ([`available_isas`]: AVX-512, AVX2/FMA, portable)
//! against the portable path (itself checked against the definition by each kernel's own
//! tests, and here against a scalar product), on the sizes where pointer arithmetic goes
//! wrong: 1x1 and tiny images, channel and column counts on either side of each vector width
//! (tails, masked lanes, a partial last panel), row counts around the micro-tiles, stride 2,
//! and kernel sizes 1, 3, 5 (specialised) and 7 (the generic loop).
//!
//! Every buffer a kernel reads or writes lies between guard bands in one allocation: a read
//! past either end of an input meets a huge value that saturates the output (the bias keeps
//! correct outputs well inside ReLU6's range, so a saturated one is caught), and a write past
//! either end of the output changes the guard, which is checked afterwards.

use super::depthwise::{depthwise_relu6_with, DwShape};
use super::packed::PackedPointwise;
use super::{available_isas, test_values, Isa};

/// Guard elements on each side of a buffer: more than a 16-lane vector and a row of taps.
const GUARD: usize = 64;
/// What an input's guard holds: any read of it swamps the sum.
const POISON: f32 = 1.0e30;
/// What an output's guard holds: any write of it is seen.
const UNTOUCHED: f32 = -12345.0;

/// `data` placed between guards of `fill`; the buffer and the range `data` occupies.
fn guarded(data: &[f32], fill: f32) -> (Vec<f32>, std::ops::Range<usize>) {
    let mut buf = vec![fill; GUARD + data.len() + GUARD];
    buf[GUARD..GUARD + data.len()].copy_from_slice(data);
    (buf, GUARD..GUARD + data.len())
}

fn assert_guards_intact(buf: &[f32], what: &str) {
    let (head, tail) = (&buf[..GUARD], &buf[buf.len() - GUARD..]);
    assert!(
        head.iter().chain(tail).all(|&v| v == UNTOUCHED),
        "{what}: a write landed outside the output"
    );
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &dyn Fn() -> String) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * (1.0 + w.abs()),
            "{} at {i}: {g} vs {w}",
            what()
        );
    }
}

/// The depthwise convolution with every buffer guarded; checks the output's guards.
fn depthwise_guarded(isa: Isa, s: DwShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (xb, xr) = guarded(x, POISON);
    let (wb, wr) = guarded(weight, POISON);
    let (bb, br) = guarded(bias, POISON);
    let (mut ob, or) = guarded(&vec![f32::NAN; s.output_len()], UNTOUCHED);
    depthwise_relu6_with(isa, &xb[xr], s, &wb[wr], &bb[br], &mut ob[or.clone()]);
    assert_guards_intact(&ob, &format!("depthwise {isa:?} {s:?}"));
    ob[or].to_vec()
}

#[test]
fn depthwise_paths_agree_at_every_edge_and_stay_in_their_buffers() {
    let isas = available_isas();
    for k in [1, 3, 5, 7] {
        for stride in [1, 2] {
            for (h, w) in [
                (1, 1),
                (1, 2),
                (2, 1),
                (2, 2),
                (3, 1),
                (1, 5),
                (4, 3),
                (5, 7),
            ] {
                if h + 2 * (k / 2) < k || w + 2 * (k / 2) < k {
                    continue;
                }
                for c in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33] {
                    for n in [1, 2] {
                        let s = DwShape {
                            n,
                            h,
                            w,
                            c,
                            k,
                            stride,
                        };
                        // Small activations and a bias of 3: outputs stay inside (0, 6).
                        let x: Vec<f32> = test_values(s.input_len(), 11)
                            .iter()
                            .map(|v| v * 0.1)
                            .collect();
                        let weight = test_values(k * k * c, 12);
                        let bias: Vec<f32> = test_values(c, 13).iter().map(|v| 3.0 + v).collect();
                        let want = depthwise_guarded(Isa::Portable, s, &x, &weight, &bias);
                        assert!(want.iter().all(|v| *v > 0.0 && *v < 6.0), "{s:?}");
                        for &isa in &isas {
                            let got = depthwise_guarded(isa, s, &x, &weight, &bias);
                            assert_close(&got, &want, 1e-5, &|| format!("depthwise {isa:?} {s:?}"));
                        }
                    }
                }
            }
        }
    }
}

/// `x * w + bias (+ residual)` by the definition, in f64.
#[allow(clippy::too_many_arguments)]
fn product(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: &[f32],
    residual: Option<&[f32]>,
    relu6: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = bias[j] as f64 + residual.map_or(0.0, |r| r[i * n + j] as f64);
            for l in 0..k {
                acc += x[i * k + l] as f64 * w[l * n + j] as f64;
            }
            out[i * n + j] = if relu6 { acc.clamp(0.0, 6.0) } else { acc } as f32;
        }
    }
    out
}

#[test]
fn pointwise_paths_agree_at_every_edge_and_stay_in_their_buffers() {
    let isas = available_isas();
    for m in [0, 1, 2, 3, 5, 6, 7, 11, 12, 13, 25] {
        for k in [1, 2, 3, 7, 16, 17] {
            for n in [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 49] {
                let x: Vec<f32> = test_values(m * k, 21).iter().map(|v| v * 0.1).collect();
                let w = test_values(k * n, 22);
                let bias: Vec<f32> = test_values(n, 23).iter().map(|v| 3.0 + v).collect();
                let res: Vec<f32> = test_values(m * n, 24).iter().map(|v| v * 0.1).collect();
                for &isa in &isas {
                    let packed = PackedPointwise::with_isa(isa, &w, k, n, &bias);
                    for residual in [None, Some(&res[..])] {
                        for relu6 in [false, true] {
                            let want = product(&x, m, k, &w, n, &bias, residual, relu6);
                            let (xb, xr) = guarded(&x, POISON);
                            let (rb, rr) = guarded(&res, POISON);
                            let (mut ob, or) = guarded(&vec![f32::NAN; m * n], UNTOUCHED);
                            let residual = residual.map(|_| &rb[rr.clone()]);
                            packed.run(&xb[xr], m, residual, relu6, &mut ob[or.clone()]);
                            let what = || {
                                format!(
                                    "pointwise {isa:?} {m}x{k}x{n} residual {} relu6 {relu6}",
                                    residual.is_some()
                                )
                            };
                            assert_guards_intact(&ob, &what());
                            assert_close(&ob[or], &want, 1e-5 * (k as f32).sqrt(), &what);
                        }
                    }
                }
            }
        }
    }
}
