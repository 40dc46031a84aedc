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
        if bytes.len() % 4 != 0 || bytes.is_empty() {
            return Err(Error::Storage(format!(
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

/// Dot product of two equally long slices.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
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
}
