//! Synthetic keys for the benchmarks, the same on every machine (each vector comes from its
//! number alone): uniform random unit vectors, which have no neighbourhood structure and are
//! the hardest case for a graph index, or keys clustered like real embeddings (a cluster
//! centre plus noise), and queries made from a stored key plus noise, as a new photo of a
//! remembered object is.

use rap_core::{Embedding, Result};

/// splitmix64: a tiny, fast, well-mixed deterministic generator (no crate needed for noise).
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-0.5, 0.5).
    pub fn centred(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Noise added to a cluster centre to make a key (norm; cosine about 0.6 between two keys of
/// a cluster, about 0 across clusters).
pub const KEY_NOISE: f32 = 0.8;
/// Noise added to a key to make a query (norm; cosine about 0.94 to the key).
pub const QUERY_NOISE: f32 = 0.35;

/// `v` plus noise of norm about `norm`, normalised.
pub fn noisy(v: &[f32], norm: f32, rng: &mut SplitMix) -> Embedding {
    // Uniform noise in [-0.5, 0.5) has a standard deviation of 1/sqrt(12) per dimension.
    let scale = norm * (12.0 / v.len() as f32).sqrt();
    let out: Vec<f32> = v.iter().map(|x| x + scale * rng.centred()).collect();
    Embedding::normalized(out).unwrap_or_else(|_| Embedding::from_unit(v.to_vec()))
}

/// The `n`th uniform random unit vector.
pub fn uniform(n: u64, dim: usize) -> Embedding {
    let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let v = (0..dim)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) as f64 / u64::MAX as f64 - 0.5) as f32
        })
        .collect();
    Embedding::normalized(v).unwrap_or_else(|_| Embedding::from_unit(vec![1.0; 1]))
}

/// Cluster centres that clustered keys gather around.
pub struct Clusters {
    centres: Vec<Embedding>,
}

impl Clusters {
    pub fn new(dim: usize, clusters: usize) -> Result<Self> {
        let centres = (0..clusters)
            .map(|c| {
                let mut rng = SplitMix::new((1 << 62) + c as u64);
                let v = (0..dim).map(|_| rng.centred()).collect();
                Embedding::normalized(v)
            })
            .collect::<Result<_>>()?;
        Ok(Clusters { centres })
    }

    pub fn len(&self) -> usize {
        self.centres.len()
    }

    pub fn is_empty(&self) -> bool {
        self.centres.is_empty()
    }

    /// Key number `n`, near centre `cluster`.
    pub fn key(&self, cluster: usize, n: u64) -> Embedding {
        let mut rng = SplitMix::new((1 << 61) + n);
        noisy(self.centres[cluster].as_slice(), KEY_NOISE, &mut rng)
    }
}
