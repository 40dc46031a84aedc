//! A 1x1 convolution on NHWC activations as one matrix product over the whole batch:
//! `out (m x n) = x (m x k) * w (k x n) + bias (+ residual)`, then ReLU6 if asked, with
//! `m = images * height * width`, `k` input and `n` output channels, everything row-major.
//!
//! The product is the `gemm` crate's (the one candle runs on the CPU; it picks AVX2, AVX-512 or
//! NEON at run time). The rows are cut into tiles of a few hundred that the rayon threads share;
//! each tile's output starts as the bias (plus the residual), the product is accumulated into
//! it, and ReLU6 clamps it while it is still in cache: no separate passes over the whole
//! activation. A product too small to cut into tiles runs on gemm's own threads instead.

use gemm::Parallelism;
use rayon::prelude::*;

/// `out = x * w + bias (+ residual)`, clamped to [0, 6] when `relu6`. `x` is (m, k), `w`
/// (k, n), `bias` (n), `residual` and `out` (m, n).
///
/// # Panics
/// When a buffer's length does not match `m`, `k` and `n`.
#[allow(clippy::too_many_arguments)]
pub fn pointwise(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: &[f32],
    residual: Option<&[f32]>,
    relu6: bool,
    out: &mut [f32],
) {
    assert_eq!(x.len(), m * k, "pointwise: input length");
    assert_eq!(w.len(), k * n, "pointwise: weight length");
    assert_eq!(bias.len(), n, "pointwise: bias length");
    assert_eq!(out.len(), m * n, "pointwise: output length");
    if let Some(r) = residual {
        assert_eq!(r.len(), m * n, "pointwise: residual length");
    }
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    // Tiles of about 128 KiB of input and output, a multiple of 16 rows, at least two per
    // thread.
    let rows = ((32 * 1024) / (k + n)).clamp(16, 1024) / 16 * 16;
    let rows = rows.min(m.div_ceil(2 * threads).div_ceil(16) * 16);
    if threads == 1 || m < 2 * rows {
        let par = if threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        tile(x, k, w, n, bias, residual, relu6, out, par);
        return;
    }
    out.par_chunks_mut(rows * n).enumerate().for_each(|(t, o)| {
        let (r0, r1) = (t * rows, t * rows + o.len() / n);
        let res = residual.map(|r| &r[r0 * n..r1 * n]);
        tile(
            &x[r0 * k..r1 * k],
            k,
            w,
            n,
            bias,
            res,
            relu6,
            o,
            Parallelism::None,
        );
    });
}

/// One tile: rows of `x` (`x.len() / k` of them) into the same rows of `out`.
#[allow(clippy::too_many_arguments)]
fn tile(
    x: &[f32],
    k: usize,
    w: &[f32],
    n: usize,
    bias: &[f32],
    residual: Option<&[f32]>,
    relu6: bool,
    out: &mut [f32],
    par: Parallelism,
) {
    let m = out.len() / n;
    debug_assert_eq!(x.len(), m * k);
    match residual {
        Some(r) => {
            for (o, r) in out.chunks_exact_mut(n).zip(r.chunks_exact(n)) {
                for ((o, r), b) in o.iter_mut().zip(r).zip(bias) {
                    *o = r + b;
                }
            }
        }
        None => {
            for o in out.chunks_exact_mut(n) {
                for (o, b) in o.iter_mut().zip(bias) {
                    *o = *b;
                }
            }
        }
    }
    if k > 0 {
        // SAFETY: gemm reads the m x k matrix at x (row stride k, column stride 1), the
        // k x n matrix at w (row stride n) and reads and writes the m x n matrix at out (row
        // stride n): x.len() == m * k (checked by the caller, or a tile of it), w.len() ==
        // k * n, out.len() == m * n, so every access is in bounds; `out` is a unique borrow,
        // so it overlaps neither input. dst = 1 * dst + 1 * x * w.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                1,
                n as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            )
        }
    }
    if relu6 {
        for v in out.iter_mut() {
            *v = v.clamp(0.0, 6.0);
        }
    }
}

/// The patches of a dense k x k convolution (padding `pad`, zeros outside) of NCHW images as
/// the rows of a matrix: row `(img, oy, ox)`, column `(ch, ky, kx)`, the order of a PyTorch
/// weight (out, in, k, k) flattened per output channel. Then [`pointwise`] with that weight
/// transposed is the convolution, with NHWC output. Returns the output size (oh, ow).
///
/// # Panics
/// When `x` is not `n * c * h * w` long or `out` not `n * oh * ow * c * k * k`.
#[allow(clippy::too_many_arguments)]
pub fn im2col_nchw(
    x: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    out: &mut [f32],
) -> (usize, usize) {
    assert!(k > 0 && stride > 0 && h + 2 * pad >= k && w + 2 * pad >= k);
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (w + 2 * pad - k) / stride + 1;
    let cols = c * k * k;
    assert_eq!(x.len(), n * c * h * w, "im2col: input length");
    assert_eq!(out.len(), n * oh * ow * cols, "im2col: output length");
    if out.is_empty() {
        return (oh, ow);
    }
    // The output columns whose patch lies inside the image's columns: there a patch row is a
    // plain copy of `k` input values, with no per-tap checks.
    let lo = pad.div_ceil(stride).min(ow);
    let hi = if w + pad >= k {
        ((w + pad - k) / stride + 1).min(ow)
    } else {
        0
    }
    .max(lo);
    out.par_chunks_mut(ow * cols)
        .enumerate()
        .for_each(|(r, row)| {
            let (img, oy) = (r / oh, r % oh);
            for ch in 0..c {
                let plane = &x[(img * c + ch) * h * w..(img * c + ch + 1) * h * w];
                for ky in 0..k {
                    let iy = (oy * stride + ky) as isize - pad as isize;
                    let at = (ch * k + ky) * k;
                    let patches = row.chunks_exact_mut(cols).map(|p| &mut p[at..at + k]);
                    if iy < 0 || iy >= h as isize {
                        patches.for_each(|d| d.fill(0.0));
                        continue;
                    }
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    for (ox, dst) in patches.enumerate() {
                        if (lo..hi).contains(&ox) {
                            let ix0 = ox * stride - pad;
                            copy_taps(dst, &src[ix0..ix0 + k]);
                            continue;
                        }
                        for (kx, d) in dst.iter_mut().enumerate() {
                            let ix = (ox * stride + kx) as isize - pad as isize;
                            *d = if ix < 0 || ix >= w as isize {
                                0.0
                            } else {
                                src[ix as usize]
                            };
                        }
                    }
                }
            }
        });
    (oh, ow)
}

/// `dst = src` for one patch row: three moves for the 3 x 3 stems (a slice copy of a length
/// known only at run time would be a call to memcpy per row).
#[inline]
fn copy_taps(dst: &mut [f32], src: &[f32]) {
    match (dst, src) {
        ([d0, d1, d2], [s0, s1, s2]) => (*d0, *d1, *d2) = (*s0, *s1, *s2),
        (dst, src) => dst.copy_from_slice(src),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    #[allow(clippy::too_many_arguments)]
    fn reference(
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
                let mut acc = bias[j] as f64;
                for l in 0..k {
                    acc += x[i * k + l] as f64 * w[l * n + j] as f64;
                }
                if let Some(r) = residual {
                    acc += r[i * n + j] as f64;
                }
                if relu6 {
                    acc = acc.clamp(0.0, 6.0);
                }
                out[i * n + j] = acc as f32;
            }
        }
        out
    }

    #[test]
    fn matches_the_reference() {
        for (m, k, n) in [
            (1, 1, 1),
            (7, 3, 5),
            (49, 40, 17),
            (300, 24, 144),
            (1000, 16, 96),
        ] {
            let x: Vec<f32> = test_values(m * k, 1).iter().map(|v| v * 2.0).collect();
            let w = test_values(k * n, 2);
            let bias = test_values(n, 3);
            let res = test_values(m * n, 4);
            for residual in [None, Some(&res[..])] {
                for relu6 in [false, true] {
                    let want = reference(&x, m, k, &w, n, &bias, residual, relu6);
                    let mut got = vec![f32::NAN; m * n];
                    pointwise(&x, m, k, &w, n, &bias, residual, relu6, &mut got);
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                            "{m}x{k}x{n}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// The stem's 3 x 3 stride 2, and other kernels, strides and paddings (the interior
    /// copies and the border taps), on odd sizes.
    #[test]
    fn im2col_then_product_is_the_convolution() {
        for (h, w, k, stride, pad) in [
            (9, 8, 3, 2, 1),
            (7, 11, 3, 1, 1),
            (10, 13, 5, 2, 2),
            (6, 9, 3, 2, 0),
            (2, 3, 3, 1, 1),
            (5, 4, 1, 1, 0),
        ] {
            im2col_matches(h, w, k, stride, pad);
        }
    }

    fn im2col_matches(h: usize, w: usize, k: usize, stride: usize, pad: usize) {
        let (n, c, cout) = (2, 3, 5);
        let x = test_values(n * c * h * w, 5);
        let wt = test_values(cout * c * k * k, 6);
        let (oh, ow) = (
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        let mut cols = vec![f32::NAN; n * oh * ow * c * k * k];
        assert_eq!(
            im2col_nchw(&x, n, c, h, w, k, stride, pad, &mut cols),
            (oh, ow)
        );
        // (cout, c*k*k) -> (c*k*k, cout)
        let mut wt_t = vec![0f32; wt.len()];
        for o in 0..cout {
            for i in 0..c * k * k {
                wt_t[i * cout + o] = wt[o * c * k * k + i];
            }
        }
        let mut got = vec![0f32; n * oh * ow * cout];
        let zero = vec![0f32; cout];
        pointwise(
            &cols,
            n * oh * ow,
            c * k * k,
            &wt_t,
            cout,
            &zero,
            None,
            false,
            &mut got,
        );
        for img in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..cout {
                        let mut acc = 0f32;
                        for ch in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * stride + ky) as isize - pad as isize;
                                    let ix = (ox * stride + kx) as isize - pad as isize;
                                    if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                                        acc += x
                                            [((img * c + ch) * h + iy as usize) * w + ix as usize]
                                            * wt[((o * c + ch) * k + ky) * k + kx];
                                    }
                                }
                            }
                        }
                        let g = got[((img * oh + oy) * ow + ox) * cout + o];
                        assert!(
                            (g - acc).abs() < 1e-4,
                            "{h}x{w} k{k} s{stride}: {g} vs {acc}"
                        );
                    }
                }
            }
        }
    }
}
