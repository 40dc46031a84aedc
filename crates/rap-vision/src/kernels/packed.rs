//! A 1x1 convolution whose weight is packed once, at load time, for our own AVX2/FMA and
//! AVX-512 matrix products: `out (m x n) = x (m x k) * w (k x n) + bias (+ residual)`, then
//! ReLU6 if asked, everything row-major (NHWC activations: `m` pixels of `k` channels).
//!
//! Why our own product rather than the `gemm` crate's ([`super::pointwise`], still the
//! portable path): a general GEMM packs both operands on every call and applies the bias,
//! residual and ReLU6 in passes of its own, and for these shapes (k and n of 16 to 1280, m
//! of 49 to 12544 rows) that overhead is a large part of the work. Here the weight sits in
//! panels of `NR` (16) columns in the exact order the micro-kernels read them (packed once),
//! the activations are read where they are (no packing: each row of a tile is read once per
//! panel, broadcast one value at a time), and the bias, residual and ReLU6 are applied to
//! the tile's registers just before its one store.
//!
//! The AVX2 micro-kernel keeps a 6 x 16 tile of the output in twelve accumulators over the
//! whole `k` (at most a few thousand, so no k-blocking: a panel of weights is at most
//! `k * 64` bytes and stays in L1/L2 while every row tile of a chunk passes over it). The
//! AVX-512 one reads the same panels two at a time: an 8 x 32 tile in 16 of its 32 vector
//! registers (one panel where only one is left), the partial last panel written with a
//! masked store. (A 12 x 32 tile measured no faster on a busy 2-core machine, and it wastes
//! more of the 49 rows of a 7 x 7 layer at batch 1.) Work is split into chunks of rows (sized so the chunk's activations stay in
//! L2) times groups of column blocks (so a small layer at batch 1 still feeds every thread).

use super::{checked, pointwise::pointwise, Isa};
use rayon::prelude::*;
use std::ops::Range;

/// Output columns per panel (two AVX2 vectors, one AVX-512 vector).
const NR: usize = 16;
/// Output rows per register tile of the AVX2 kernel.
const MR: usize = 6;

/// A 1x1 convolution's weight and bias, laid out for the kernels of one [`Isa`].
#[derive(Debug, Clone)]
pub struct PackedPointwise {
    k: usize,
    n: usize,
    isa: Isa,
    /// Avx2Fma and Avx512: `ceil(n / NR)` panels, each `k` rows of `NR` weights (panel `p`, row `l`,
    /// column `j` = `w[l][p * NR + j]`, zero past `n`), starting at `weight[offset]` (64-byte
    /// aligned, so a row of a panel is one cache line). Portable: `w` as given, (k, n).
    weight: Vec<f32>,
    offset: usize,
    /// Avx2Fma and Avx512: padded with zeros to a whole number of panels. Portable: `n` values.
    bias: Vec<f32>,
}

impl PackedPointwise {
    /// Packs `w` (k x n, row-major) and `bias` (n) for this CPU's best [`Isa`].
    ///
    /// # Panics
    /// When `w` is not `k * n` long or `bias` not `n`.
    pub fn new(w: &[f32], k: usize, n: usize, bias: &[f32]) -> Self {
        Self::with_isa(super::isa(), w, k, n, bias)
    }

    /// [`PackedPointwise::new`] for the kernels of `isa` (one the CPU lacks falls back to
    /// the portable code).
    pub(crate) fn with_isa(isa: Isa, w: &[f32], k: usize, n: usize, bias: &[f32]) -> Self {
        assert_eq!(w.len(), k * n, "pointwise: weight length");
        assert_eq!(bias.len(), n, "pointwise: bias length");
        match checked(isa) {
            Isa::Portable => PackedPointwise {
                k,
                n,
                isa: Isa::Portable,
                weight: w.to_vec(),
                offset: 0,
                bias: bias.to_vec(),
            },
            #[cfg(target_arch = "x86_64")]
            isa @ (Isa::Avx2Fma | Isa::Avx512) => {
                let panels = n.div_ceil(NR);
                // 15 spare values let the panels start on a 64-byte boundary.
                let mut weight = vec![0f32; panels * k * NR + 15];
                let offset = weight.as_ptr().align_offset(64).min(15);
                for p in 0..panels {
                    let cols = (n - p * NR).min(NR);
                    for l in 0..k {
                        let dst = offset + (p * k + l) * NR;
                        weight[dst..dst + cols]
                            .copy_from_slice(&w[l * n + p * NR..l * n + p * NR + cols]);
                    }
                }
                let mut padded = vec![0f32; panels * NR];
                padded[..n].copy_from_slice(bias);
                PackedPointwise {
                    k,
                    n,
                    isa,
                    weight,
                    offset,
                    bias: padded,
                }
            }
        }
    }

    /// Input channels.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `out = x * w + bias (+ residual)`, clamped to [0, 6] when `relu6`: `x` is (m, k),
    /// `residual` and `out` (m, n).
    ///
    /// # Panics
    /// When a buffer's length does not match `m`, `k` and `n`.
    pub fn run(&self, x: &[f32], m: usize, residual: Option<&[f32]>, relu6: bool, out: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        assert_eq!(x.len(), m * k, "pointwise: input length");
        assert_eq!(out.len(), m * n, "pointwise: output length");
        if let Some(r) = residual {
            assert_eq!(r.len(), m * n, "pointwise: residual length");
        }
        match self.isa {
            Isa::Portable => pointwise(x, m, k, &self.weight, n, &self.bias, residual, relu6, out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                let panels = self.n.div_ceil(NR);
                self.run_tiles(
                    m,
                    MR,
                    panels,
                    |rows, panels, out| {
                        // SAFETY: the CPU has AVX2 and FMA (`checked` chose Avx2Fma at packing).
                        // The lengths were checked above: x is m * k, residual and out m * n,
                        // the packed weight holds every panel from `offset` and the bias
                        // `panels * NR` values; `run_tiles` gives rows inside 0..m and panels
                        // inside 0..panels, each (rows, panels) to one thread only.
                        unsafe {
                            avx2::block(
                                x,
                                self.k,
                                &self.weight[self.offset..],
                                &self.bias,
                                residual,
                                relu6,
                                out,
                                self.n,
                                rows,
                                panels,
                            )
                        }
                    },
                    out,
                )
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                let pairs = self.n.div_ceil(2 * NR);
                self.run_tiles(
                    m,
                    avx512::MR,
                    pairs,
                    |rows, pairs, out| {
                        // SAFETY: the CPU has AVX-512F, AVX2 and FMA (`checked` chose Avx512 at
                        // packing). As above, with pairs of panels inside 0..ceil(panels / 2).
                        unsafe {
                            avx512::block(
                                x,
                                self.k,
                                &self.weight[self.offset..],
                                &self.bias,
                                residual,
                                relu6,
                                out,
                                self.n,
                                rows,
                                pairs,
                            )
                        }
                    },
                    out,
                )
            }
        }
    }

    /// Runs `block(rows, columns, out)` over `m` rows (in tiles of `mr`) x `units` blocks of
    /// columns, on rayon's threads where the product is large enough. Each call gets rows and
    /// column blocks that no other call gets, and `out`'s pointer.
    #[cfg(target_arch = "x86_64")]
    fn run_tiles(
        &self,
        m: usize,
        mr: usize,
        units: usize,
        block: impl Fn(Range<usize>, Range<usize>, *mut f32) + Sync,
        out: &mut [f32],
    ) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        let threads = rayon::current_num_threads();
        // At least four items per thread (the threads take them as they finish, so a thread
        // ends at most about a quarter of its share late), from chunks of rows of at most
        // about 64 KiB of input, split into groups of column blocks where the rows alone are
        // too few.
        let target = 4 * threads;
        let tiles = m.div_ceil(mr);
        let chunk_tiles = ((16 * 1024) / (k.max(1) * mr)).clamp(1, 1024 / mr);
        let mut chunks = tiles.div_ceil(chunk_tiles);
        let groups = if chunks >= target {
            1
        } else {
            target.div_ceil(chunks).min(units)
        };
        let per_group = units.div_ceil(groups);
        let groups = units.div_ceil(per_group);
        if chunks * groups < target {
            chunks = target.div_ceil(groups).min(tiles);
        }
        let mc = tiles.div_ceil(chunks) * mr;
        let chunks = m.div_ceil(mc);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let job = |item: usize| {
            let (chunk, group) = (item / groups, item % groups);
            let rows = chunk * mc..((chunk + 1) * mc).min(m);
            let cols = group * per_group..((group + 1) * per_group).min(units);
            block(rows, cols, out_ptr.get());
        };
        let items = chunks * groups;
        // Below about 100k multiply-adds, handing out work costs more than it saves.
        if items == 1 || m * k * n < 100_000 {
            (0..items).for_each(job);
        } else {
            (0..items).into_par_iter().with_min_len(1).for_each(job);
        }
    }
}

/// The output's pointer, shared by the threads that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used in `run_tiles`, whose items write disjoint regions of the output buffer,
// which outlives them (the parallel loop returns before `run` does).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `SendPtr`, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MR, NR};
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// Rows `rows` x panels `panels` of the output: for each panel (its weights stay in
    /// cache), every tile of [`MR`] rows, then the rows left over.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `x` holds rows `rows` of `k` values, `residual`
    /// (when given) and `out` rows `rows` of `n` values, `w` the packed panels `panels`
    /// (`k * NR` values each) and `bias` `NR` values per panel; no other thread touches
    /// these rows x panel columns of `out`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block(
        x: &[f32],
        k: usize,
        w: &[f32],
        bias: &[f32],
        residual: Option<&[f32]>,
        relu6: bool,
        out: *mut f32,
        n: usize,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        debug_assert!(rows.end * k <= x.len() && panels.end * k * NR <= w.len());
        debug_assert!(panels.end * NR <= bias.len());
        for p in panels {
            let cols = (n - p * NR).min(NR);
            let t = Tile {
                w: w.as_ptr().add(p * k * NR),
                bias: bias.as_ptr().add(p * NR),
                k,
                n,
                cols,
                relu6,
            };
            let at = |r: usize| {
                (
                    x.as_ptr().add(r * k),
                    residual.map_or(std::ptr::null(), |res| res.as_ptr().add(r * n + p * NR)),
                    out.add(r * n + p * NR),
                )
            };
            let mut r = rows.start;
            while r + MR <= rows.end {
                let (xp, rp, op) = at(r);
                t.run::<MR>(xp, rp, op);
                r += MR;
            }
            if r == rows.end {
                continue;
            }
            let (xp, rp, op) = at(r);
            match rows.end - r {
                1 => t.run::<1>(xp, rp, op),
                2 => t.run::<2>(xp, rp, op),
                3 => t.run::<3>(xp, rp, op),
                4 => t.run::<4>(xp, rp, op),
                _ => t.run::<5>(xp, rp, op),
            }
        }
    }

    /// One panel's constants.
    struct Tile {
        /// The panel: `k` rows of `NR` weights.
        w: *const f32,
        /// `NR` bias values.
        bias: *const f32,
        k: usize,
        /// The output's (and residual's) row stride.
        n: usize,
        /// Valid columns of the panel (`NR` except in the last panel).
        cols: usize,
        relu6: bool,
    }

    impl Tile {
        /// `R` rows: `x` points at the first row's input (`k` values per row, rows `k`
        /// apart), `res` (or null) and `out` at the first row's first column of the panel
        /// (rows `n` apart).
        ///
        /// # Safety
        /// As [`block`]: AVX2 and FMA, and `R` rows of input, residual and output there.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run<const R: usize>(&self, x: *const f32, res: *const f32, out: *mut f32) {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            let mut w = self.w;
            for l in 0..self.k {
                // (The panels are 64-byte aligned: neither load splits a cache line.)
                let w0 = _mm256_loadu_ps(w);
                let w1 = _mm256_loadu_ps(w.add(8));
                for (i, a) in acc.iter_mut().enumerate() {
                    let v = _mm256_broadcast_ss(&*x.add(i * self.k + l));
                    a[0] = _mm256_fmadd_ps(v, w0, a[0]);
                    a[1] = _mm256_fmadd_ps(v, w1, a[1]);
                }
                w = w.add(NR);
            }
            let b0 = _mm256_loadu_ps(self.bias);
            let b1 = _mm256_loadu_ps(self.bias.add(8));
            let (zero, six) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
            for (i, a) in acc.iter().enumerate() {
                let mut v0 = _mm256_add_ps(a[0], b0);
                let mut v1 = _mm256_add_ps(a[1], b1);
                let o = out.add(i * self.n);
                if self.cols == NR {
                    if !res.is_null() {
                        let r = res.add(i * self.n);
                        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(r));
                        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(r.add(8)));
                    }
                    if self.relu6 {
                        v0 = _mm256_min_ps(_mm256_max_ps(v0, zero), six);
                        v1 = _mm256_min_ps(_mm256_max_ps(v1, zero), six);
                    }
                    _mm256_storeu_ps(o, v0);
                    _mm256_storeu_ps(o.add(8), v1);
                } else {
                    // The last panel of a layer whose width is not a multiple of NR.
                    let mut buf = [0f32; NR];
                    _mm256_storeu_ps(buf.as_mut_ptr(), v0);
                    _mm256_storeu_ps(buf.as_mut_ptr().add(8), v1);
                    for (j, v) in buf.iter().take(self.cols).enumerate() {
                        let mut v = *v;
                        if !res.is_null() {
                            v += *res.add(i * self.n + j);
                        }
                        if self.relu6 {
                            v = v.clamp(0.0, 6.0);
                        }
                        *o.add(j) = v;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::NR;
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// Output rows per register tile: 8 x 2 accumulators, 2 weight vectors and a broadcast
    /// in the 32 registers.
    pub(super) const MR: usize = 8;

    /// Rows `rows` x pairs of panels `pairs` of the output: for each pair (its weights stay
    /// in cache), every tile of [`MR`] rows, then the rows left over.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX2 and FMA; `x` holds rows `rows` of `k` values,
    /// `residual` (when given) and `out` rows `rows` of `n` values, `w` the packed panels
    /// (`k * NR` values each) of the pairs `pairs` (the last pair may have one panel) and
    /// `bias` `NR` values per panel; no other thread touches these rows x columns of `out`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn block(
        x: &[f32],
        k: usize,
        w: &[f32],
        bias: &[f32],
        residual: Option<&[f32]>,
        relu6: bool,
        out: *mut f32,
        n: usize,
        rows: Range<usize>,
        pairs: Range<usize>,
    ) {
        let panels = n.div_ceil(NR);
        debug_assert!(rows.end * k <= x.len() && panels * k * NR <= w.len());
        debug_assert!(panels * NR <= bias.len() && pairs.end * 2 <= panels + 1);
        // The columns of panel `p` that exist: all but in the last panel.
        let last = n - (panels - 1) * NR;
        let mask = |p: usize| -> __mmask16 {
            if p + 1 == panels && last < NR {
                (1u16 << last) - 1
            } else {
                u16::MAX
            }
        };
        for pair in pairs {
            let p = 2 * pair;
            let two = p + 1 < panels;
            let t = Tile {
                w: w.as_ptr().add(p * k * NR),
                bias: bias.as_ptr().add(p * NR),
                k,
                n,
                masks: [mask(p), if two { mask(p + 1) } else { 0 }],
                relu6,
            };
            let at = |r: usize| {
                (
                    x.as_ptr().add(r * k),
                    residual.map_or(std::ptr::null(), |res| res.as_ptr().add(r * n + p * NR)),
                    out.add(r * n + p * NR),
                )
            };
            if two {
                t.rows::<2>(rows.clone(), at);
            } else {
                t.rows::<1>(rows.clone(), at);
            }
        }
    }

    /// One pair of panels' constants.
    struct Tile {
        /// The first panel: `k` rows of `NR` weights; the second, if any, follows it.
        w: *const f32,
        /// `NR` bias values per panel.
        bias: *const f32,
        k: usize,
        /// The output's (and residual's) row stride.
        n: usize,
        /// The columns of each panel that exist.
        masks: [__mmask16; 2],
        relu6: bool,
    }

    impl Tile {
        /// Every row of `rows` for `P` panels, with `at(r)` the input, residual (or null) and
        /// output pointers of row `r`.
        ///
        /// # Safety
        /// As [`block`].
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn rows<const P: usize>(
            &self,
            rows: Range<usize>,
            at: impl Fn(usize) -> (*const f32, *const f32, *mut f32),
        ) {
            let mut r = rows.start;
            while r + MR <= rows.end {
                let (xp, rp, op) = at(r);
                self.run::<MR, P>(xp, rp, op);
                r += MR;
            }
            if r == rows.end {
                return;
            }
            let (xp, rp, op) = at(r);
            match rows.end - r {
                1 => self.run::<1, P>(xp, rp, op),
                2 => self.run::<2, P>(xp, rp, op),
                3 => self.run::<3, P>(xp, rp, op),
                4 => self.run::<4, P>(xp, rp, op),
                5 => self.run::<5, P>(xp, rp, op),
                6 => self.run::<6, P>(xp, rp, op),
                7 => self.run::<7, P>(xp, rp, op),
                8 => self.run::<8, P>(xp, rp, op),
                9 => self.run::<9, P>(xp, rp, op),
                10 => self.run::<10, P>(xp, rp, op),
                _ => self.run::<11, P>(xp, rp, op),
            }
        }

        /// `R` rows x `P` panels: `x` points at the first row's input (`k` values per row,
        /// rows `k` apart), `res` (or null) and `out` at the first row's first column of the
        /// pair (rows `n` apart).
        ///
        /// # Safety
        /// As [`block`]: AVX-512F, and `R` rows of input, residual and output there.
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn run<const R: usize, const P: usize>(
            &self,
            x: *const f32,
            res: *const f32,
            out: *mut f32,
        ) {
            let mut acc = [[_mm512_setzero_ps(); P]; R];
            let panel = self.k * NR;
            let mut w = self.w;
            for l in 0..self.k {
                // (The panels are 64-byte aligned: each load is one cache line.)
                let mut wv = [_mm512_setzero_ps(); P];
                for (j, v) in wv.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(w.add(j * panel));
                }
                for (i, a) in acc.iter_mut().enumerate() {
                    let v = _mm512_set1_ps(*x.add(i * self.k + l));
                    for (a, w) in a.iter_mut().zip(&wv) {
                        *a = _mm512_fmadd_ps(v, *w, *a);
                    }
                }
                w = w.add(NR);
            }
            let (zero, six) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
            for (i, a) in acc.iter().enumerate() {
                for (j, a) in a.iter().enumerate() {
                    let mask = self.masks[j];
                    let mut v = _mm512_add_ps(*a, _mm512_loadu_ps(self.bias.add(j * NR)));
                    let at = i * self.n + j * NR;
                    if !res.is_null() {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, res.add(at)));
                    }
                    if self.relu6 {
                        v = _mm512_min_ps(_mm512_max_ps(v, zero), six);
                    }
                    _mm512_mask_storeu_ps(out.add(at), mask, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{available_isas, test_values};

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

    /// Sizes that are not multiples of the tiles (rows left over after the 6- or 12-row
    /// tiles, a partial last panel, a last pair of panels with one panel), one row, one column, k = 1, and the network's shapes (which
    /// split into several row chunks, or into panel groups at few rows).
    #[test]
    fn matches_the_reference() {
        for isa in available_isas() {
            for (m, k, n) in [
                (1, 1, 1),
                (7, 3, 5),
                (25, 64, 48),
                (23, 9, 40),
                (12, 5, 16),
                (13, 40, 17),
                (49, 40, 33),
                (5, 320, 1280),
                (49, 1152, 24),
                (300, 24, 144),
                (1000, 16, 96),
                (2000, 27, 32),
            ] {
                let x: Vec<f32> = test_values(m * k, 1).iter().map(|v| v * 2.0).collect();
                let w = test_values(k * n, 2);
                let bias = test_values(n, 3);
                let res = test_values(m * n, 4);
                let packed = PackedPointwise::with_isa(isa, &w, k, n, &bias);
                assert_eq!((packed.k(), packed.n()), (k, n));
                for residual in [None, Some(&res[..])] {
                    for relu6 in [false, true] {
                        let want = reference(&x, m, k, &w, n, &bias, residual, relu6);
                        let mut got = vec![f32::NAN; m * n];
                        packed.run(&x, m, residual, relu6, &mut got);
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (g - w).abs() < 1e-4 * (1.0 + w.abs()) * (k as f32).sqrt(),
                                "{isa:?} {m}x{k}x{n} at {i}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn empty_products_are_fine() {
        for isa in available_isas() {
            let packed = PackedPointwise::with_isa(isa, &[], 0, 3, &[1.0, 2.0, 3.0]);
            let mut out = vec![0f32; 6];
            packed.run(&[], 2, None, false, &mut out);
            assert_eq!(out, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0], "{isa:?}");
            let packed = PackedPointwise::with_isa(isa, &[1.0; 4], 4, 1, &[0.0]);
            packed.run(&[], 0, None, true, &mut []);
        }
    }

    #[test]
    #[should_panic(expected = "output length")]
    fn a_wrong_output_length_panics() {
        let packed = PackedPointwise::new(&[1.0; 6], 2, 3, &[0.0; 3]);
        packed.run(&[1.0; 4], 2, None, false, &mut [0.0; 5]);
    }
}
