//! Embeddings: L2-normalised vectors, so that the dot product is the cosine similarity.

use crate::{Error, Result};

/// A unit-length embedding vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Normalises `v` to unit length. Fails on an empty, non-finite or all-zero vector.
    pub fn normalized(mut v: Vec<f32>) -> Result<Self> {
        if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
            return Err(Error::Model("embedding is empty or not finite".into()));
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            return Err(Error::Model("embedding is all zeros".into()));
        }
        v.iter_mut().for_each(|x| *x /= norm);
        Ok(Embedding(v))
    }

    /// Wraps a vector already known to be unit length (as read back from storage).
    pub fn from_unit(v: Vec<f32>) -> Self {
        Embedding(v)
    }

    pub fn dim(&self) -> usize {
        self.0.len()
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<f32> {
        self.0
    }

    /// Cosine similarity with another unit vector of the same dimension.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        dot(&self.0, &other.0)
    }

    /// Little-endian f32 bytes, the storage format.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Reads the storage format back; fails when the byte length is not a multiple of 4.
    pub fn from_le_bytes(bytes: &[u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(4) || bytes.is_empty() {
            return Err(Error::storage(format!(
                "stored embedding has {} bytes",
                bytes.len()
            )));
        }
        Ok(Embedding(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }
}

/// Dot product of two equally long slices: the inner loop of exact search.
///
/// Sixteen independent partial sums instead of one running sum: a plain `zip().sum()` is a
/// chain of dependent float additions the compiler may not reorder, so it runs one lane at a
/// time; with separate accumulators the loop becomes SIMD (SSE2 at least, no unsafe and no
/// target features needed). The result can differ from the sequential sum in the last bits.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_round_trips_bytes() {
        let e = Embedding::normalized(vec![3.0, 4.0]).unwrap();
        assert_eq!(e.as_slice(), &[0.6, 0.8]);
        assert_eq!(Embedding::from_le_bytes(&e.to_le_bytes()).unwrap(), e);
        assert!(Embedding::normalized(vec![0.0, 0.0]).is_err());
        assert!(Embedding::normalized(vec![f32::NAN]).is_err());
        assert!(Embedding::from_le_bytes(&[1, 2, 3]).is_err());
    }

    #[test]
    fn dot_matches_the_plain_sum_at_every_length() {
        for n in [0, 1, 15, 16, 17, 100, 1280, 1283] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
            let plain: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64) * (*y as f64))
                .sum();
            assert!((dot(&a, &b) as f64 - plain).abs() < 1e-4, "n = {n}");
        }
    }
}
