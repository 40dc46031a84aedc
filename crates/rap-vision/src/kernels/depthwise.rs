//! Depthwise k x k convolution on NHWC activations, with bias and ReLU6 fused.
//!
//! Input (n, h, w, c), weights (k, k, c) (tap-major, channels contiguous), bias (c), output
//! (n, oh, ow, c) with padding `k / 2` on every side (zeros) and stride 1 or more:
//! `oh = (h + 2 * (k / 2) - k) / stride + 1`, the same for `ow`.
//!
//! Each output row is one task (rows are shared among the rayon threads). Within a row, the
//! taps that fall outside the image are not visited at all: the valid `ky` range is fixed per
//! row and the valid `kx` range per pixel, so there are no per-tap branches. Interior pixels
//! (every `kx` valid) go several at a time, each tap's weight vector loaded once for all of
//! them. With AVX2 + FMA, channels go eight at a time, four pixels at a time, the channels
//! past the last multiple of eight through the portable code; with AVX-512, channels go
//! sixteen at a time (the last partial group through masked loads and stores), interior
//! pixels eight, four, two or one at a time.

use super::{checked, Isa};
use rayon::prelude::*;

/// The shape of one depthwise convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DwShape {
    /// Images.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Kernel size (k x k).
    pub k: usize,
    /// Stride (both directions).
    pub stride: usize,
}

impl DwShape {
    pub fn pad(&self) -> usize {
        self.k / 2
    }

    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad() - self.k) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad() - self.k) / self.stride + 1
    }

    pub fn input_len(&self) -> usize {
        self.n * self.h * self.w * self.c
    }

    pub fn output_len(&self) -> usize {
        self.n * self.out_h() * self.out_w() * self.c
    }

    /// For output row `oy`: the top input row `iy0` of the window (may be negative) and the
    /// valid tap rows `ky_lo..ky_hi` (those with `0 <= iy0 + ky < h`).
    fn rows(&self, oy: usize) -> (isize, usize, usize) {
        let iy0 = (oy * self.stride) as isize - self.pad() as isize;
        let lo = (-iy0).max(0) as usize;
        let hi = (self.h as isize - iy0).clamp(0, self.k as isize) as usize;
        (iy0, lo.min(hi), hi)
    }

    /// The same for the columns of output pixel `ox`.
    fn cols(&self, ox: usize) -> (isize, usize, usize) {
        let ix0 = (ox * self.stride) as isize - self.pad() as isize;
        let lo = (-ix0).max(0) as usize;
        let hi = (self.w as isize - ix0).clamp(0, self.k as isize) as usize;
        (ix0, lo.min(hi), hi)
    }

    /// The output columns `ox_lo..ox_hi` whose every tap is inside the image.
    fn interior(&self) -> (usize, usize) {
        let pad = self.pad();
        let lo = pad.div_ceil(self.stride);
        let hi = if self.w + pad >= self.k {
            ((self.w + pad - self.k) / self.stride + 1).min(self.out_w())
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

/// The depthwise convolution, `out = min(max(conv(x) + bias, 0), 6)`, with the best kernels
/// this CPU has ([`super::isa`]).
///
/// # Panics
/// When a buffer's length does not match `shape` (input `n*h*w*c`, weights `k*k*c`, bias
/// `c`, output `n*oh*ow*c`), or the stride or kernel is 0, or the padded input is smaller
/// than the kernel.
pub fn depthwise_relu6(x: &[f32], shape: DwShape, weight: &[f32], bias: &[f32], out: &mut [f32]) {
    depthwise_relu6_with(super::isa(), x, shape, weight, bias, out)
}

/// [`depthwise_relu6`] with the kernels of `isa` (one the CPU lacks falls back to the
/// portable code).
pub(crate) fn depthwise_relu6_with(
    isa: Isa,
    x: &[f32],
    s: DwShape,
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    assert!(
        s.k > 0 && s.stride > 0,
        "depthwise: kernel and stride must be positive"
    );
    assert!(
        s.h + 2 * s.pad() >= s.k && s.w + 2 * s.pad() >= s.k,
        "depthwise: {}x{} input is smaller than the {}x{} kernel",
        s.h,
        s.w,
        s.k,
        s.k
    );
    assert_eq!(x.len(), s.input_len(), "depthwise: input length");
    assert_eq!(weight.len(), s.k * s.k * s.c, "depthwise: weight length");
    assert_eq!(bias.len(), s.c, "depthwise: bias length");
    assert_eq!(out.len(), s.output_len(), "depthwise: output length");
    let isa = checked(isa);
    let (oh, ow) = (s.out_h(), s.out_w());
    let row_len = ow * s.c;
    if row_len == 0 || oh == 0 {
        return;
    }
    let plane = s.h * s.w * s.c;
    // About 64k multiply-adds per task at least: rayon's overhead stays small.
    let min_rows = ((1 << 16) / (row_len * s.k * s.k)).max(1);
    out.par_chunks_mut(row_len)
        .with_min_len(min_rows)
        .enumerate()
        .for_each(|(r, o)| {
            let (img, oy) = (r / oh, r % oh);
            let xi = &x[img * plane..(img + 1) * plane];
            match isa {
                Isa::Portable => row_portable(xi, &s, oy, weight, bias, o),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `checked` returned Avx2Fma, so this CPU has AVX2 and FMA; the
                // slices' lengths were checked above (`row` checks them again).
                Isa::Avx2Fma => unsafe { avx2::row(xi, &s, oy, weight, bias, o) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `checked` returned Avx512, so this CPU has AVX-512F, AVX2 and FMA;
                // the slices' lengths were checked above (`row` checks them again).
                Isa::Avx512 => unsafe { avx512::row(xi, &s, oy, weight, bias, o) },
            }
        });
}

/// Channels `c0..c1` of one output pixel: the taps `ky_lo..ky_hi` x `kx_lo..kx_hi` of the
/// window at (`iy0`, `ix0`), all inside the image. Loops over contiguous channels, which the
/// compiler vectorises for the baseline target.
#[allow(clippy::too_many_arguments)]
#[inline]
fn pixel_portable(
    x: &[f32],
    s: &DwShape,
    (iy0, ky_lo, ky_hi): (isize, usize, usize),
    (ix0, kx_lo, kx_hi): (isize, usize, usize),
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
    channels: std::ops::Range<usize>,
) {
    let (w, c, k) = (s.w, s.c, s.k);
    let o = &mut out[channels.clone()];
    o.copy_from_slice(&bias[channels.clone()]);
    for ky in ky_lo..ky_hi {
        let iy = (iy0 + ky as isize) as usize;
        for kx in kx_lo..kx_hi {
            let ix = (ix0 + kx as isize) as usize;
            let base = (iy * w + ix) * c;
            let xin = &x[base + channels.start..base + channels.end];
            let tap = (ky * k + kx) * c;
            let wk = &weight[tap + channels.start..tap + channels.end];
            for ((o, a), b) in o.iter_mut().zip(xin).zip(wk) {
                *o += a * b;
            }
        }
    }
    for v in o.iter_mut() {
        *v = v.clamp(0.0, 6.0);
    }
}

/// One output row, portable code.
fn row_portable(x: &[f32], s: &DwShape, oy: usize, weight: &[f32], bias: &[f32], out: &mut [f32]) {
    let rows = s.rows(oy);
    let c = s.c;
    for (ox, o) in out.chunks_exact_mut(c).enumerate() {
        pixel_portable(x, s, rows, s.cols(ox), weight, bias, o, 0..c);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{pixel_portable, DwShape};
    use std::arch::x86_64::*;

    /// One output row (`oy`) of one image with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA. (The slices' lengths are checked here.)
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row(
        x: &[f32],
        s: &DwShape,
        oy: usize,
        weight: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        // The network's kernel sizes get their own copies, with the tap loops unrolled.
        match s.k {
            3 => row_k::<3>(x, s, oy, weight, bias, out),
            5 => row_k::<5>(x, s, oy, weight, bias, out),
            _ => row_k::<0>(x, s, oy, weight, bias, out),
        }
    }

    /// [`row`] for kernel size `K` (0: any, read from `s`).
    ///
    /// # Safety
    /// As [`row`]; `K` is 0 or `s.k`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_k<const K: usize>(
        x: &[f32],
        s: &DwShape,
        oy: usize,
        weight: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        assert!(K == 0 || K == s.k);
        let k = if K > 0 { K } else { s.k };
        let (w, c, stride) = (s.w, s.c, s.stride);
        let ow = s.out_w();
        assert!(x.len() >= s.h * w * c && weight.len() >= k * k * c && bias.len() >= c);
        assert!(out.len() >= ow * c);
        let rows @ (iy0, ky_lo, ky_hi) = s.rows(oy);
        let (ox_lo, ox_hi) = s.interior();
        // Channels done eight at a time; the rest (c % 8) by the portable code.
        let cv = c - c % 8;
        let (xp, wp, bp, op) = (x.as_ptr(), weight.as_ptr(), bias.as_ptr(), out.as_mut_ptr());
        let zero = _mm256_setzero_ps();
        let six = _mm256_set1_ps(6.0);
        macro_rules! relu6 {
            ($v:expr) => {
                _mm256_min_ps(_mm256_max_ps($v, zero), six)
            };
        }
        let step = stride * c;
        let mut ox = 0;
        while ox < ow {
            if ox >= ox_lo && ox + 4 <= ox_hi {
                // Four interior pixels: every kx is valid for each of them.
                let ix0 = ox * stride - s.pad();
                for cb in (0..cv).step_by(8) {
                    // SAFETY (all pointer arithmetic below): cb + 8 <= cv <= c; iy is in
                    // 0..h (ky in the row's valid range); for pixel ox + j (j < 4,
                    // ox + j < ox_hi) every column ix0 + j * stride + kx is in 0..w (the
                    // definition of the interior), so each load of 8 floats lies inside
                    // x[..h*w*c]; taps and outputs likewise inside weight and out.
                    let b = _mm256_loadu_ps(bp.add(cb));
                    let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
                    for ky in ky_lo..ky_hi {
                        let iy = (iy0 + ky as isize) as usize;
                        let xrow = xp.add((iy * w + ix0) * c + cb);
                        let wrow = wp.add(ky * k * c + cb);
                        for kx in 0..k {
                            let wv = _mm256_loadu_ps(wrow.add(kx * c));
                            let xv = xrow.add(kx * c);
                            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xv), wv, a0);
                            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xv.add(step)), wv, a1);
                            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xv.add(2 * step)), wv, a2);
                            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xv.add(3 * step)), wv, a3);
                        }
                    }
                    let o = op.add(ox * c + cb);
                    _mm256_storeu_ps(o, relu6!(a0));
                    _mm256_storeu_ps(o.add(c), relu6!(a1));
                    _mm256_storeu_ps(o.add(2 * c), relu6!(a2));
                    _mm256_storeu_ps(o.add(3 * c), relu6!(a3));
                }
                if cv < c {
                    for j in ox..ox + 4 {
                        let o = &mut out[j * c..(j + 1) * c];
                        pixel_portable(x, s, rows, s.cols(j), weight, bias, o, cv..c);
                    }
                }
                ox += 4;
            } else {
                // A border pixel (or one of the last interior ones): only the valid taps.
                let cols @ (ix0, kx_lo, kx_hi) = s.cols(ox);
                // 32 channels at a time: four independent chains of multiply-adds rather than
                // one (which would wait on each FMA's latency).
                let c32 = c - c % 32;
                for cb in (0..c32).step_by(32) {
                    // SAFETY: as below, with cb + 32 <= c32 <= c.
                    let b = bp.add(cb);
                    let mut a0 = _mm256_loadu_ps(b);
                    let mut a1 = _mm256_loadu_ps(b.add(8));
                    let mut a2 = _mm256_loadu_ps(b.add(16));
                    let mut a3 = _mm256_loadu_ps(b.add(24));
                    for ky in ky_lo..ky_hi {
                        let iy = (iy0 + ky as isize) as usize;
                        for kx in kx_lo..kx_hi {
                            let ix = (ix0 + kx as isize) as usize;
                            let xv = xp.add((iy * w + ix) * c + cb);
                            let wv = wp.add((ky * k + kx) * c + cb);
                            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xv), _mm256_loadu_ps(wv), a0);
                            a1 = _mm256_fmadd_ps(
                                _mm256_loadu_ps(xv.add(8)),
                                _mm256_loadu_ps(wv.add(8)),
                                a1,
                            );
                            a2 = _mm256_fmadd_ps(
                                _mm256_loadu_ps(xv.add(16)),
                                _mm256_loadu_ps(wv.add(16)),
                                a2,
                            );
                            a3 = _mm256_fmadd_ps(
                                _mm256_loadu_ps(xv.add(24)),
                                _mm256_loadu_ps(wv.add(24)),
                                a3,
                            );
                        }
                    }
                    let o = op.add(ox * c + cb);
                    _mm256_storeu_ps(o, relu6!(a0));
                    _mm256_storeu_ps(o.add(8), relu6!(a1));
                    _mm256_storeu_ps(o.add(16), relu6!(a2));
                    _mm256_storeu_ps(o.add(24), relu6!(a3));
                }
                for cb in (c32..cv).step_by(8) {
                    // SAFETY: as above, with kx restricted to the valid columns
                    // kx_lo..kx_hi, so 0 <= ix0 + kx < w.
                    let mut a = _mm256_loadu_ps(bp.add(cb));
                    for ky in ky_lo..ky_hi {
                        let iy = (iy0 + ky as isize) as usize;
                        for kx in kx_lo..kx_hi {
                            let ix = (ix0 + kx as isize) as usize;
                            let xv = _mm256_loadu_ps(xp.add((iy * w + ix) * c + cb));
                            let wv = _mm256_loadu_ps(wp.add((ky * k + kx) * c + cb));
                            a = _mm256_fmadd_ps(xv, wv, a);
                        }
                    }
                    _mm256_storeu_ps(op.add(ox * c + cb), relu6!(a));
                }
                if cv < c {
                    let o = &mut out[ox * c..(ox + 1) * c];
                    pixel_portable(x, s, rows, cols, weight, bias, o, cv..c);
                }
                ox += 1;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::DwShape;
    use std::arch::x86_64::*;

    /// One output row (`oy`) of one image with AVX-512.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX2 and FMA. (The slices' lengths are checked here.)
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn row(
        x: &[f32],
        s: &DwShape,
        oy: usize,
        weight: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        // The network's kernel sizes get their own copies, with the tap loops unrolled.
        match s.k {
            3 => row_k::<3>(x, s, oy, weight, bias, out),
            5 => row_k::<5>(x, s, oy, weight, bias, out),
            _ => row_k::<0>(x, s, oy, weight, bias, out),
        }
    }

    /// [`row`] for kernel size `K` (0: any, read from `s`). Channels go 16 at a time, the
    /// last (partial) group of 16 through masked loads and stores.
    ///
    /// # Safety
    /// As [`row`]; `K` is 0 or `s.k`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn row_k<const K: usize>(
        x: &[f32],
        s: &DwShape,
        oy: usize,
        weight: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        assert!(K == 0 || K == s.k);
        let k = if K > 0 { K } else { s.k };
        let (w, c, stride) = (s.w, s.c, s.stride);
        let ow = s.out_w();
        assert!(x.len() >= s.h * w * c && weight.len() >= k * k * c && bias.len() >= c);
        assert!(out.len() >= ow * c);
        let (iy0, ky_lo, ky_hi) = s.rows(oy);
        let (ox_lo, ox_hi) = s.interior();
        let (xp, wp, bp, op) = (x.as_ptr(), weight.as_ptr(), bias.as_ptr(), out.as_mut_ptr());
        let zero = _mm512_setzero_ps();
        let six = _mm512_set1_ps(6.0);
        // The channels of the group starting at `cb` that exist.
        let mask = |cb: usize| -> __mmask16 {
            if c - cb >= 16 {
                u16::MAX
            } else {
                (1u16 << (c - cb)) - 1
            }
        };
        let mut ox = 0;
        while ox < ow {
            // Interior pixels eight at a time (enough independent multiply-adds to hide their
            // latency), then four, two, one; each tap's weights loaded once for all of them.
            let interior = ox >= ox_lo && ox < ox_hi;
            let group = if interior {
                [8, 4, 2, 1]
                    .into_iter()
                    .find(|g| ox + g <= ox_hi)
                    .unwrap_or(1)
            } else {
                0
            };
            if group > 0 {
                let ix0 = ox * stride - s.pad();
                for cb in (0..c).step_by(16) {
                    // SAFETY: the CPU has AVX-512F (this function's contract); ox + group <=
                    // ox_hi, cb < c and ky_lo..ky_hi the row's valid taps, as `pixels` needs.
                    let at = (iy0, ky_lo, ky_hi, ix0, cb, mask(cb));
                    let o = op.add(ox * c + cb);
                    match group {
                        8 => pixels::<K, 8>(xp, s, k, at, wp, bp, o),
                        4 => pixels::<K, 4>(xp, s, k, at, wp, bp, o),
                        2 => pixels::<K, 2>(xp, s, k, at, wp, bp, o),
                        _ => pixels::<K, 1>(xp, s, k, at, wp, bp, o),
                    }
                }
                ox += group;
            } else {
                // A border pixel: only the valid taps,
                // 64 channels at a time (four independent chains of multiply-adds rather
                // than one, which would wait on each one's latency), then 16 at a time.
                let (ix0, kx_lo, kx_hi) = s.cols(ox);
                let c64 = c - c % 64;
                let mut cb = 0;
                while cb < c {
                    let lanes = if cb < c64 { 4 } else { 1 };
                    let m = mask(cb);
                    // SAFETY: iy is in 0..h (ky in the row's valid range) and ix in 0..w (kx
                    // in kx_lo..kx_hi), so every load lies inside x[..h*w*c]; the unmasked
                    // loads and stores touch 64 whole channels from cb (cb < c64), the
                    // masked ones only channels below c; taps and outputs likewise inside
                    // weight and out (checked above).
                    let mut a = [zero; 4];
                    if lanes == 4 {
                        for (j, a) in a.iter_mut().enumerate() {
                            *a = _mm512_loadu_ps(bp.add(cb + 16 * j));
                        }
                    } else {
                        a[0] = _mm512_maskz_loadu_ps(m, bp.add(cb));
                    }
                    for ky in ky_lo..ky_hi {
                        let iy = (iy0 + ky as isize) as usize;
                        for kx in kx_lo..kx_hi {
                            let ix = (ix0 + kx as isize) as usize;
                            let xv = xp.add((iy * w + ix) * c + cb);
                            let wv = wp.add((ky * k + kx) * c + cb);
                            if lanes == 4 {
                                for (j, a) in a.iter_mut().enumerate() {
                                    let (xj, wj) = (xv.add(16 * j), wv.add(16 * j));
                                    *a = _mm512_fmadd_ps(
                                        _mm512_loadu_ps(xj),
                                        _mm512_loadu_ps(wj),
                                        *a,
                                    );
                                }
                            } else {
                                a[0] = _mm512_fmadd_ps(
                                    _mm512_maskz_loadu_ps(m, xv),
                                    _mm512_maskz_loadu_ps(m, wv),
                                    a[0],
                                );
                            }
                        }
                    }
                    let o = op.add(ox * c + cb);
                    if lanes == 4 {
                        for (j, a) in a.iter().enumerate() {
                            let v = _mm512_min_ps(_mm512_max_ps(*a, zero), six);
                            _mm512_storeu_ps(o.add(16 * j), v);
                        }
                        cb += 64;
                    } else {
                        let v = _mm512_min_ps(_mm512_max_ps(a[0], zero), six);
                        _mm512_mask_storeu_ps(o, m, v);
                        cb += 16;
                    }
                }
                ox += 1;
            }
        }
    }

    /// `G` interior output pixels (every tap inside the image) in a row, starting at input
    /// column `ix0` (so input row `iy0`, the valid tap rows `ky_lo..ky_hi`), channels
    /// `cb..cb + 16` of which `m` exist: bias, taps and ReLU6, written from `o` (pixels `c`
    /// apart). Each tap's weights are loaded once for the `G` pixels.
    ///
    /// # Safety
    /// AVX-512F; `x` is the image's `h * w * c` input, `weight` the `k * k * c` taps, `bias`
    /// `c` values, `o` the output of the first pixel at channel `cb`, with `G` pixels there;
    /// every tap of the `G` pixels lies inside the image; `m` selects channels below `c`.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn pixels<const K: usize, const G: usize>(
        x: *const f32,
        s: &DwShape,
        k: usize,
        (iy0, ky_lo, ky_hi, ix0, cb, m): (isize, usize, usize, usize, usize, __mmask16),
        weight: *const f32,
        bias: *const f32,
        o: *mut f32,
    ) {
        let k = if K > 0 { K } else { k };
        let (w, c) = (s.w, s.c);
        let step = s.stride * c;
        let mut a = [_mm512_maskz_loadu_ps(m, bias.add(cb)); G];
        for ky in ky_lo..ky_hi {
            let iy = (iy0 + ky as isize) as usize;
            let xrow = x.add((iy * w + ix0) * c + cb);
            let wrow = weight.add(ky * k * c + cb);
            for kx in 0..k {
                let wv = _mm512_maskz_loadu_ps(m, wrow.add(kx * c));
                let xv = xrow.add(kx * c);
                for (j, a) in a.iter_mut().enumerate() {
                    let v = _mm512_maskz_loadu_ps(m, xv.add(j * step));
                    *a = _mm512_fmadd_ps(v, wv, *a);
                }
            }
        }
        let (zero, six) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
        for (j, a) in a.iter().enumerate() {
            let v = _mm512_min_ps(_mm512_max_ps(*a, zero), six);
            _mm512_mask_storeu_ps(o.add(j * c), m, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{available_isas, test_values};

    /// The definition, one tap at a time with bounds checks.
    fn reference(x: &[f32], s: DwShape, weight: &[f32], bias: &[f32]) -> Vec<f32> {
        let (oh, ow, pad) = (s.out_h(), s.out_w(), s.pad() as isize);
        let mut out = vec![0f32; s.output_len()];
        for img in 0..s.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..s.c {
                        let mut acc = bias[ch] as f64;
                        for ky in 0..s.k {
                            for kx in 0..s.k {
                                let iy = (oy * s.stride) as isize - pad + ky as isize;
                                let ix = (ox * s.stride) as isize - pad + kx as isize;
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                let xi = ((img * s.h + iy as usize) * s.w + ix as usize) * s.c;
                                acc +=
                                    x[xi + ch] as f64 * weight[(ky * s.k + kx) * s.c + ch] as f64;
                            }
                        }
                        out[((img * oh + oy) * ow + ox) * s.c + ch] = acc.clamp(0.0, 6.0) as f32;
                    }
                }
            }
        }
        out
    }

    fn check(s: DwShape) {
        let x: Vec<f32> = test_values(s.input_len(), 1)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let weight = test_values(s.k * s.k * s.c, 2);
        let bias = test_values(s.c, 3);
        let want = reference(&x, s, &weight, &bias);
        for isa in available_isas() {
            let mut got = vec![f32::NAN; s.output_len()];
            depthwise_relu6_with(isa, &x, s, &weight, &bias, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{isa:?} {s:?} at {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn matches_the_reference_on_edges() {
        for k in [1, 3, 5] {
            for stride in [1, 2] {
                for (h, w) in [
                    (1, 1),
                    (2, 3),
                    (5, 5),
                    (7, 9),
                    (8, 13),
                    (11, 4),
                    (14, 14),
                    (3, 23),
                ] {
                    if h + 2 * (k / 2) < k || w + 2 * (k / 2) < k {
                        continue;
                    }
                    for c in [1, 3, 8, 13, 16, 24, 35, 64, 77, 130] {
                        check(DwShape {
                            n: 2,
                            h,
                            w,
                            c,
                            k,
                            stride,
                        });
                    }
                }
            }
        }
    }

    #[test]
    fn matches_the_reference_at_network_sizes() {
        check(DwShape {
            n: 1,
            h: 28,
            w: 28,
            c: 144,
            k: 5,
            stride: 2,
        });
        check(DwShape {
            n: 2,
            h: 7,
            w: 7,
            c: 1152,
            k: 3,
            stride: 1,
        });
        check(DwShape {
            n: 1,
            h: 56,
            w: 56,
            c: 32,
            k: 3,
            stride: 1,
        });
    }

    #[test]
    #[should_panic(expected = "output length")]
    fn a_wrong_output_length_panics() {
        let s = DwShape {
            n: 1,
            h: 4,
            w: 4,
            c: 8,
            k: 3,
            stride: 2,
        };
        let mut out = vec![0f32; 3];
        depthwise_relu6(
            &vec![0.0; s.input_len()],
            s,
            &[0.0; 72],
            &[0.0; 8],
            &mut out,
        );
    }
}
