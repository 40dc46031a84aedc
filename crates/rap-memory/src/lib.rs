//! The concept memory of `rap`: what the user has taught it, stored for real.
//!
//! - [`store`]: the [`ConceptStore`] trait (concepts, aliases, reference images, embeddings,
//!   per tenant, every call one transaction) and [`SqliteStore`], the embedded default.
//! - [`index`]: the [`VectorIndex`] trait with an exact index and an HNSW index.
//! - [`key_index`]: [`KeyIndex`], which keeps one up to date with the store incrementally
//!   (and keeps a large one saved beside the store, so a new process need not rebuild it).
//! - [`api_keys`]: server API keys ([`ApiKeyStore`]; only their hashes are stored).
//! - [`blobs`]: [`BlobStore`], the seam for image bytes kept outside the database (S3).
//! - [`library`]: the photo library ([`LibraryStore`]): photos on disk indexed once, by their
//!   regions' boxes and embeddings, and [`library::plan_scan`], what a walk of folders means.
//! - [`migrate`]: copying every tenant from one backend to another, verified by checksums.
//! - [`reference`]: import and export of the reference implementation's `database.json`.
//! - [`rules`]: what every backend enforces (names, aliases, images, edits, settings), as pure
//!   planning functions each backend carries out in its own SQL.
//! - [`testing`] (feature `testing`): the conformance suite every backend's tests run.
//!
//! The store is the source of truth; an index can always be rebuilt from it.

#![forbid(unsafe_code)]

pub mod api_keys;
pub mod blobs;
pub mod index;
pub mod key_index;
pub mod library;
pub mod migrate;
pub mod reference;
pub mod rules;
mod sqlite;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use api_keys::{ApiKeyInfo, ApiKeyStore, NewApiKey, StoredApiKey};
pub use blobs::BlobStore;
pub use index::{ExactIndex, HnswIndex, VectorIndex};
pub use key_index::{IndexOrigin, KeyIndex, HNSW_THRESHOLD};
pub use library::{
    LibraryPhoto, LibraryRegion, LibraryStats, LibraryStore, NewLibraryPhoto, PhotoFile,
};
pub use sqlite::SqliteStore;
pub use store::{
    ConceptEdit, ConceptStore, ImageInput, KeyChange, KeyEntry, KeyHit, KeyLocation, StoreStats,
    TenantDump,
};
