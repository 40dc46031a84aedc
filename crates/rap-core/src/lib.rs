//! Domain types and the traits at the seams of `rap`.
//!
//! Everything else in the workspace speaks these types: the memory stores [`Concept`]s for a
//! [`Tenant`], keyed by [`Embedding`]s that an [`ImageEncoder`] computes from the concept's
//! reference images (or from [`Region`]s of them); retrieval turns a query into [`Hit`]s.
//! This crate has no heavy dependencies on purpose: model code, storage and servers live in
//! their own crates and meet here.

#![forbid(unsafe_code)]

mod concept;
pub mod digest;
mod embedding;
mod encoder;
pub mod error;
pub mod fs;
mod generate;
pub mod limits;
mod region;
mod tenant;

pub use concept::{
    normalize_name_key, strip_brackets, Concept, ConceptId, ConceptImage, ImageId, NewConcept,
};
pub use embedding::{dot, Embedding};
pub use encoder::{EncoderInfo, ImageEncoder};
pub use error::{report, BoxError, Error, Result};
pub use generate::{
    FinishReason, Generation, GenerationParams, Generator, GeneratorInfo, ImageData, Message, Part,
    Role, REPEAT_WINDOW,
};
pub use limits::Limits;
pub use region::{BoundingBox, ProposalHints, Region, RegionProposer, RegionSource};
pub use tenant::Tenant;

/// How a concept was found by retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Its name or an alias was mentioned in the user's text.
    Text,
    /// One of its reference images matched a region of the query image.
    Image,
    /// Both: named in the text and seen in the image (the hit has the image's score and box).
    #[serde(rename = "text+image")]
    TextAndImage,
}

impl Via {
    /// Whether the concept was seen in the image (its hit has a box and a confidence).
    pub fn seen(self) -> bool {
        matches!(self, Via::Image | Via::TextAndImage)
    }

    /// Whether the concept was named in the text.
    pub fn named(self) -> bool {
        matches!(self, Via::Text | Via::TextAndImage)
    }
}

/// One retrieved concept.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    pub id: ConceptId,
    pub name: String,
    /// Cosine similarity of the best (region, reference image) pair; 1.0 for a concept only
    /// named in the text.
    pub score: f32,
    pub via: Via,
    /// The query-image region that matched, in pixels of the (orientation-corrected) query.
    #[serde(rename = "box")]
    pub bbox: Option<BoundingBox>,
    /// For an image hit, how sure retrieval's decision is (0..1, calibrated; see
    /// `rap_engine::retrieve`); none for a text mention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}
