//! The blob store seam: where a shared memory keeps image bytes outside its database.
//!
//! A [`BlobStore`] holds content-addressed bytes per tenant (`TENANT/SHA256`); the database
//! keeps the metadata and the reference counts (its `blobs` rows), and is the truth about which
//! objects are in use. The PostgreSQL backend writes an object before the transaction that adds
//! its row commits, and deletes it only after the transaction that dropped its last reference
//! committed, so a crash in between leaves at worst an orphan object (swept by the backend's
//! garbage collection), never a row without its bytes. The embedded store keeps its bytes in
//! its SQLite file and uses none.

use rap_core::{Result, Tenant};

/// Content-addressed image bytes per tenant (an S3 bucket and prefix, say).
///
/// Every method is synchronous, like the store traits; implementations over async clients run
/// them on a runtime of their own, so they may be called from any thread.
pub trait BlobStore: Send + Sync {
    /// Where the objects are, for messages (e.g. `s3://bucket/prefix`; never a secret).
    fn location(&self) -> String;

    /// Stores `bytes` as the object `sha256` of `tenant`. Content-addressed, so writing the
    /// same object twice is harmless.
    fn put(&self, tenant: &Tenant, sha256: &str, bytes: &[u8]) -> Result<()>;

    /// The bytes of an object; a missing one is [`rap_core::Error::NotFound`].
    fn get(&self, tenant: &Tenant, sha256: &str) -> Result<Vec<u8>>;

    /// Deletes an object; deleting one that is not there is not an error.
    fn delete(&self, tenant: &Tenant, sha256: &str) -> Result<()>;

    /// Every object of every tenant, as (tenant, sha256), for the orphan sweep. Objects under
    /// the store's prefix that do not have the `TENANT/SHA256` layout are not listed (they are
    /// not ours to delete).
    fn list(&self) -> Result<Vec<(Tenant, String)>>;
}

/// Whether `s` has the shape of a content address (64 lowercase hex digits).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
