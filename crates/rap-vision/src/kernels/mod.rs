//! CPU kernels for the convolutional encoders, on activations laid out NHWC (channels
//! contiguous) in plain `f32` buffers that the caller owns and reuses between layers.
//!
//! - [`depthwise`]: a k x k depthwise convolution (stride 1 or 2, padding k/2) with bias and
//!   ReLU6 fused, vectorised over channels; the borders are handled by clipping the taps, so
//!   the interior runs branch-free, several output pixels at a time.
//! - [`pointwise`]: a 1x1 convolution as one matrix product (N*H*W, Cin) x (Cin, Cout) over
//!   the whole batch (the `gemm` crate, the one candle itself uses), in row tiles that each
//!   start from the bias (plus the residual) and end with ReLU6 while the tile is in cache;
//!   [`pointwise::im2col_nchw`] turns a dense stem convolution into the same product. It is
//!   the portable path of [`packed`].
//! - [`packed`]: the same 1x1 convolution on our own AVX-512 or AVX2/FMA micro-kernels, with
//!   the weight packed once at load time and the bias, residual and ReLU6 applied in the
//!   tile's registers before its one store (the network's path where the CPU has them).
//!
//! SIMD is chosen at run time, once ([`isa`]): the one binary uses AVX-512 where the CPU has
//! it (16 lanes, masked loads and stores for the channels past the last multiple of 16),
//! else AVX2 and FMA (no `-C target-cpu` needed), else a portable loop written so that the
//! compiler vectorises it for the baseline (SSE2 on x86-64, NEON on aarch64); the portable
//! 1x1 path is the `gemm` crate, which dispatches on its own (AVX2, AVX-512 or NEON).
//! `RAP_KERNEL_ISA=avx2` or `portable` picks a lesser path, to test or time it on a CPU
//! that has more. (The AVX-512 intrinsics are stable since Rust 1.89, the workspace's
//! minimum.)
//!
//! Every unsafe block states why it is sound; the tests compare each kernel with a
//! straightforward scalar reference on odd widths, borders, stride 2 and channel counts that
//! are not a multiple of the vector width.

pub mod depthwise;
#[cfg(test)]
mod edges;
pub mod packed;
pub mod pointwise;

use std::sync::OnceLock;

/// The instruction set the hand-written kernels use on this CPU, from the least to the most
/// capable (so `a <= b` when `b`'s CPUs run `a`'s code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable code (auto-vectorised for the target's baseline).
    Portable,
    /// x86-64 with AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// x86-64 with AVX-512 (foundation) as well as AVX2 and FMA: 16-lane vectors and masked
    /// loads and stores.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The name `RAP_KERNEL_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
        }
    }

    fn from_name(name: &str) -> Option<Isa> {
        [
            Isa::Portable,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512,
        ]
        .into_iter()
        .find(|isa| isa.name() == name)
    }
}

/// The [`Isa`] the kernels use, chosen once: the best this CPU supports, or a lesser one
/// named by the environment variable `RAP_KERNEL_ISA` (`portable`, `avx2` or `avx512`; to
/// time or test the other paths on one machine). A name this build does not know is ignored,
/// and one the CPU cannot run gives the best it can.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let wanted = std::env::var("RAP_KERNEL_ISA")
            .ok()
            .and_then(|name| Isa::from_name(name.trim()));
        match wanted {
            Some(isa) => checked(isa),
            None => isa_detected(),
        }
    })
}

fn isa_detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        return Isa::Avx2Fma;
    }
    Isa::Portable
}

/// `isa` if this CPU runs it, else the best one below it that it does: keeps a caller's
/// [`Isa`] from reaching code the CPU cannot run.
pub(crate) fn checked(isa: Isa) -> Isa {
    isa.min(isa_detected())
}

/// Every [`Isa`] this CPU can run (the portable one first), for tests.
#[cfg(test)]
pub(crate) fn available_isas() -> Vec<Isa> {
    let best = isa_detected();
    [
        Isa::Portable,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512,
    ]
    .into_iter()
    .filter(|isa| *isa <= best)
    .collect()
}

/// Deterministic pseudo-random values in [-1, 1) for tests.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isa_names_round_trip_and_are_ordered() {
        for isa in available_isas() {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
            assert_eq!(checked(isa), isa, "the CPU runs every available ISA");
            assert!(isa <= isa_detected());
        }
        assert_eq!(Isa::from_name("sse9"), None);
        assert_eq!(checked(Isa::Portable), Isa::Portable);
        assert!(available_isas().contains(&isa()));
    }
}
