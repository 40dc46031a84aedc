//! The store seam: what any backend of the concept memory (embedded SQLite now, PostgreSQL
//! later) must do, and the value types it speaks.

use rap_core::{Concept, ConceptId, Embedding, ImageId, NewConcept, Region, Result, Tenant};
use rap_image::{ImageMeta, Limits};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An image handed to the store: bytes already checked to decode, with their header facts.
/// The bytes are shared: an import where many concepts use one file holds it once.
#[derive(Debug, Clone)]
pub struct ImageInput {
    pub id: ImageId,
    pub bytes: std::sync::Arc<[u8]>,
    pub meta: ImageMeta,
}

impl ImageInput {
    /// Checks that `bytes` is an image within `limits` that decodes completely (a truncated
    /// or corrupt file is refused here, before anything is written), and content-addresses it.
    pub fn from_bytes(bytes: Vec<u8>, limits: &Limits) -> Result<Self> {
        Ok(Self::decoded_from_bytes(bytes, limits)?.0)
    }

    /// [`ImageInput::from_bytes`], also giving the decoded image (orientation applied, as
    /// [`rap_image::decode`] gives it) for a caller that needs its pixels next, so that they
    /// are not decoded twice.
    pub fn decoded_from_bytes(bytes: Vec<u8>, limits: &Limits) -> Result<(Self, image::RgbImage)> {
        let meta = rap_image::inspect(&bytes, limits)?;
        let rgb = rap_image::decode(&bytes, limits)?;
        let id = ImageId(hex::encode(Sha256::digest(&bytes)));
        Ok((
            ImageInput {
                id,
                bytes: bytes.into(),
                meta,
            },
            rgb,
        ))
    }

    /// Reads and checks an image file (a regular file of at most `limits.max_image_bytes`);
    /// errors name the file.
    pub fn from_path(path: &std::path::Path, limits: &Limits) -> Result<Self> {
        let bytes = rap_image::read_file(path, limits)?;
        Self::from_bytes(bytes, limits).map_err(|e| e.context(path.display()))
    }
}

/// A change to a concept; every field is optional and applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct ConceptEdit {
    pub rename: Option<String>,
    pub info: Option<String>,
    pub category: Option<String>,
    pub add_images: Vec<ImageInput>,
    /// Image ids or unique prefixes of them (at least 8 hex characters).
    pub remove_images: Vec<String>,
    pub add_aliases: Vec<String>,
    pub remove_aliases: Vec<String>,
    /// Negative examples to add ("that's not this concept"), e.g. a crop of a look-alike.
    pub add_negatives: Vec<ImageInput>,
    /// Negative examples to remove: image ids or unique prefixes (at least 8 hex characters).
    pub remove_negatives: Vec<String>,
}

/// One key of the vector index: an embedding of a region of a reference image.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The store's id for this embedding; stable until the embedding is deleted.
    pub key: u64,
    pub image: ImageId,
    pub region: Region,
    pub embedding: Embedding,
}

/// Where a key points: the image and region it is an embedding of.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLocation {
    pub key: u64,
    pub image: ImageId,
    pub region: Region,
}

/// A key found by a search done in the store itself ([`ConceptStore::search_keys`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHit {
    /// Cosine similarity to the query (higher is better).
    pub score: f32,
    pub location: KeyLocation,
}

/// A change to the keys of one (tenant, encoder), in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    Added(u64),
    Removed(u64),
}

/// Counts for a tenant (used by tests and `rap` status output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StoreStats {
    pub concepts: u64,
    pub images: u64,
    pub embeddings: u64,
}

/// One key of a [`TenantDump`]: the image it was computed from, the region, the embedding.
pub type DumpedKey = (ImageId, Region, Embedding);

/// A whole tenant's memory as migration moves it between backends
/// ([`ConceptStore::import_tenant`]; read by [`crate::migrate::export_tenant`]).
#[derive(Debug, Clone, Default)]
pub struct TenantDump {
    /// Every concept with its id, name, aliases, fields, times and images (in order).
    pub concepts: Vec<Concept>,
    /// The bytes of every image the concepts use, once each.
    pub images: Vec<ImageInput>,
    /// Every key, by encoder (sorted by name): the image, region and embedding of each.
    pub keys: Vec<(String, Vec<DumpedKey>)>,
    /// The tenant's settings ([`ConceptStore::tenant_settings`]), by key.
    pub settings: BTreeMap<String, String>,
}

/// The concept memory's storage. Every method is one transaction: it happens completely or
/// not at all. Every method is scoped to one tenant; nothing crosses tenants.
pub trait ConceptStore: Send + Sync {
    /// Adds a concept with its reference images (at least one).
    fn add_concept(
        &self,
        tenant: &Tenant,
        new: &NewConcept,
        images: Vec<ImageInput>,
    ) -> Result<Concept>;

    /// Adds many concepts at once, all or nothing (import).
    fn add_concepts(
        &self,
        tenant: &Tenant,
        concepts: Vec<(NewConcept, Vec<ImageInput>)>,
    ) -> Result<Vec<Concept>>;

    /// Finds a concept by name or alias (case-insensitive; `<name>` accepted).
    fn concept(&self, tenant: &Tenant, name_or_alias: &str) -> Result<Concept>;

    /// Finds a concept by id.
    fn concept_by_id(&self, tenant: &Tenant, id: &ConceptId) -> Result<Concept>;

    /// All concepts of the tenant, by name.
    fn concepts(&self, tenant: &Tenant) -> Result<Vec<Concept>>;

    /// The categories of the tenant's concepts, each once, sorted (blank ones left out):
    /// what a region proposer is told to look for, read at every query.
    fn categories(&self, tenant: &Tenant) -> Result<Vec<String>>;

    fn edit_concept(
        &self,
        tenant: &Tenant,
        name_or_alias: &str,
        edit: ConceptEdit,
    ) -> Result<Concept>;

    /// Removes a concept, its embeddings and every image no other concept uses.
    fn remove_concept(&self, tenant: &Tenant, name_or_alias: &str) -> Result<Concept>;

    /// The stored bytes of an image of this tenant.
    fn image_bytes(&self, tenant: &Tenant, image: &ImageId) -> Result<Vec<u8>>;

    /// The concepts that use an image as a reference image (usually one; negative examples
    /// do not count).
    fn concepts_with_image(&self, tenant: &Tenant, image: &ImageId) -> Result<Vec<ConceptId>>;

    /// A number that every change of the tenant's concepts (names, aliases, fields, images,
    /// negatives; an import) raises, in the same transaction: a process that keeps what
    /// queries need in memory re-reads it when this moved, so every process on a shared store
    /// sees each edit at its next query.
    fn memory_version(&self, tenant: &Tenant) -> Result<u64>;

    /// Images of the tenant that have no embedding from `encoder` yet.
    fn images_without_keys(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<ImageId>>;

    /// Stores embeddings of image regions for `encoder` (replacing any for the same
    /// image, region and encoder). Images deleted meanwhile are skipped.
    fn put_keys(
        &self,
        tenant: &Tenant,
        encoder: &str,
        keys: &[(ImageId, Region, Embedding)],
    ) -> Result<()>;

    /// Every key of the tenant for `encoder`.
    fn keys(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<KeyEntry>>;

    /// Every key of the tenant for `encoder`, without its vector: what each key points at.
    /// (Enough to reattach a saved vector index to the store.)
    fn key_locations(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<KeyLocation>>;

    /// Some keys by id (those that still exist).
    fn keys_by_id(&self, tenant: &Tenant, encoder: &str, ids: &[u64]) -> Result<Vec<KeyEntry>>;

    /// The position of the change log for (tenant, encoder): it grows with every change.
    fn key_version(&self, tenant: &Tenant, encoder: &str) -> Result<u64>;

    /// Changes to the keys after `version`, in order, and the version they bring it to.
    fn key_changes_since(
        &self,
        tenant: &Tenant,
        encoder: &str,
        version: u64,
    ) -> Result<(Vec<KeyChange>, u64)>;

    fn stats(&self, tenant: &Tenant) -> Result<StoreStats>;

    /// Encoders that have keys in this tenant, with their key counts.
    fn encoders(&self, tenant: &Tenant) -> Result<Vec<(String, u64)>>;

    /// The `k` keys of (tenant, encoder) nearest to each query, best first, searched by the
    /// backend itself (a database with its own vector index, shared by every process that
    /// uses it). `None`: this backend leaves search to an in-process [`crate::KeyIndex`].
    fn search_keys(
        &self,
        _tenant: &Tenant,
        _encoder: &str,
        _queries: &[Embedding],
        _k: usize,
    ) -> Result<Option<Vec<Vec<KeyHit>>>> {
        Ok(None)
    }

    /// Every tenant that holds at least one concept, by name.
    fn tenants(&self) -> Result<Vec<Tenant>>;

    /// Writes a whole tenant's memory in one transaction (migration): concepts keep their
    /// ids, names, aliases, fields and times; images their bytes; keys get new ids; settings
    /// their values (overwriting any the tenant holds under the same key). A tenant that
    /// already holds a concept or an image is refused ([`Error::Conflict`]) unless `replace`,
    /// which first deletes everything it holds, settings included, in the same transaction.
    fn import_tenant(&self, tenant: &Tenant, dump: &TenantDump, replace: bool) -> Result<()>;

    /// Every setting of the tenant, by key: small values the layers above keep with the
    /// memory itself (so every process using this store sees the same), such as the encoder
    /// the memory's keys come from. Settings do not make a tenant appear in [`Self::tenants`].
    fn tenant_settings(&self, tenant: &Tenant) -> Result<BTreeMap<String, String>>;

    /// One setting of the tenant, if it is set.
    fn tenant_setting(&self, tenant: &Tenant, key: &str) -> Result<Option<String>>;

    /// Sets (`Some`) or deletes (`None`) a setting of the tenant. The key and value are
    /// checked by [`crate::rules::check_setting`].
    fn set_tenant_setting(&self, tenant: &Tenant, key: &str, value: Option<&str>) -> Result<()>;

    /// Sets or deletes a setting only if it currently is `expected` (`None`: not set), in one
    /// transaction; returns whether it wrote. Two processes updating one setting this way
    /// (read, change, swap, again if refused) never lose each other's change.
    fn swap_tenant_setting(
        &self,
        tenant: &Tenant,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> Result<bool>;

    /// Where this backend keeps server API keys, if it keeps them at all.
    fn api_key_store(&self) -> Option<&dyn crate::ApiKeyStore> {
        None
    }

    /// This backend's photo library ([`crate::library`]), if it has one.
    fn library(&self) -> Option<&dyn crate::LibraryStore> {
        None
    }
}
