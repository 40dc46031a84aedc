//! The photo library: a user's photos on disk, indexed once (the boxes and embeddings of their
//! regions) so that every concept - one added a second ago included - is matched against them
//! without decoding a pixel again ("where is Bo?" across thousands of photos).
//!
//! The library stores paths and embeddings only, never the photos' bytes or thumbnails. Each
//! photo is written in one transaction with all its regions ([`LibraryStore::put_library_photo`]),
//! so an indexing run killed at any moment leaves every photo either fully indexed or not at
//! all, and the next run goes on where it stopped ([`plan_scan`] skips what is done).
//!
//! What to (re)index is decided by [`plan_scan`], a pure function over what the store holds and
//! what a walk of the folders found, so every backend shares the rule; a backend only carries
//! out the writes. A backend without a library answers `None` from
//! [`crate::ConceptStore::library`].

use rap_core::{BoundingBox, Embedding, Result, Tenant};
use std::collections::{HashMap, HashSet};

/// A photo file as a walk of the folders found it (not yet read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoFile {
    /// The absolute path, as text (a path that is not UTF-8 is not indexed).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub mtime_ms: i64,
}

/// An indexed photo.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LibraryPhoto {
    /// The store's id of the photo; stable while the photo's path is indexed.
    pub id: u64,
    pub path: String,
    pub size: u64,
    pub mtime_ms: i64,
    /// sha256 of the file's bytes, hex.
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    /// The encoder the regions' embeddings come from.
    pub encoder: String,
    /// Number of regions stored.
    pub regions: u32,
}

/// A photo to index: the file, what its bytes hash to, its size in pixels and the regions'
/// boxes (full-image pixels) with their embeddings.
#[derive(Debug, Clone)]
pub struct NewLibraryPhoto {
    pub file: PhotoFile,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
    pub encoder: String,
    pub regions: Vec<(BoundingBox, Embedding)>,
}

/// One indexed region of a photo.
#[derive(Debug, Clone)]
pub struct LibraryRegion {
    pub photo: u64,
    pub bbox: BoundingBox,
    pub embedding: Embedding,
}

/// Counts for a tenant's library.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LibraryStats {
    pub photos: u64,
    pub regions: u64,
}

/// The library's storage. Every method is one transaction and scoped to one tenant.
pub trait LibraryStore: Send + Sync {
    /// Every indexed photo of the tenant, by path.
    fn library_photos(&self, tenant: &Tenant) -> Result<Vec<LibraryPhoto>>;

    /// The indexed photo at `path`, if any.
    fn library_photo(&self, tenant: &Tenant, path: &str) -> Result<Option<LibraryPhoto>>;

    /// Some indexed photos by id (those that still exist), in no particular order.
    fn library_photos_by_id(&self, tenant: &Tenant, ids: &[u64]) -> Result<Vec<LibraryPhoto>>;

    /// Indexes a photo with all its regions in one transaction, replacing whatever was indexed
    /// at the same path.
    fn put_library_photo(&self, tenant: &Tenant, photo: &NewLibraryPhoto) -> Result<LibraryPhoto>;

    /// Indexes `file` with a copy of the regions of the indexed photo `from` (the same bytes
    /// at another path: a copy or a move, found by its hash), replacing whatever was indexed
    /// at `file`'s path; one transaction, nothing decoded or encoded.
    fn copy_library_photo(
        &self,
        tenant: &Tenant,
        from: u64,
        file: &PhotoFile,
    ) -> Result<LibraryPhoto>;

    /// Forgets photos (and their regions); returns how many were removed.
    fn remove_library_photos(&self, tenant: &Tenant, ids: &[u64]) -> Result<usize>;

    /// Every region of the tenant's photos indexed with `encoder`.
    fn library_regions(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<LibraryRegion>>;

    /// The regions of one photo.
    fn library_photo_regions(&self, tenant: &Tenant, photo: u64) -> Result<Vec<LibraryRegion>>;

    /// The folders `rap library add` was given (what `rap library sync` walks again), sorted.
    fn library_roots(&self, tenant: &Tenant) -> Result<Vec<String>>;

    /// Remembers a folder as a library root (no-op when it is one already).
    fn add_library_root(&self, tenant: &Tenant, root: &str) -> Result<()>;

    fn library_stats(&self, tenant: &Tenant) -> Result<LibraryStats>;
}

/// What a walk of some folders means for the library ([`plan_scan`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanPlan {
    /// Files new to the library, or whose size or modification time changed, or indexed with
    /// another encoder: to be read, hashed and (unless the hash finds them indexed) encoded.
    pub check: Vec<PhotoFile>,
    /// Files indexed as they are now: nothing to do.
    pub unchanged: usize,
    /// Indexed photos under the walked folders whose file the walk did not find (deleted or
    /// moved away): removed by a sync.
    pub missing: Vec<u64>,
}

/// Decides what to do with the files a walk of `roots` `found`, given the photos the library
/// holds (`indexed`) and the memory's `encoder`. A file is unchanged when a photo at its path
/// has its size and modification time and was indexed with `encoder`; an indexed photo is
/// missing when its path is under one of `roots` (a path prefix ending at a separator) and was
/// not found. `check` keeps the order of `found`.
pub fn plan_scan(
    indexed: &[LibraryPhoto],
    found: &[PhotoFile],
    roots: &[String],
    encoder: &str,
) -> ScanPlan {
    let by_path: HashMap<&str, &LibraryPhoto> =
        indexed.iter().map(|p| (p.path.as_str(), p)).collect();
    let mut plan = ScanPlan::default();
    let mut seen: HashSet<&str> = HashSet::new();
    for file in found {
        if !seen.insert(file.path.as_str()) {
            continue; // two roots that overlap
        }
        match by_path.get(file.path.as_str()) {
            Some(p)
                if p.size == file.size && p.mtime_ms == file.mtime_ms && p.encoder == encoder =>
            {
                plan.unchanged += 1
            }
            _ => plan.check.push(file.clone()),
        }
    }
    plan.missing = indexed
        .iter()
        .filter(|p| !seen.contains(p.path.as_str()) && roots.iter().any(|r| is_under(&p.path, r)))
        .map(|p| p.id)
        .collect();
    plan
}

/// Whether `path` is `root` or inside it (by whole path components).
fn is_under(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches(['/', '\\']);
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with(['/', '\\']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, mtime_ms: i64) -> PhotoFile {
        PhotoFile {
            path: path.into(),
            size,
            mtime_ms,
        }
    }

    fn photo(id: u64, path: &str, size: u64, mtime_ms: i64, encoder: &str) -> LibraryPhoto {
        LibraryPhoto {
            id,
            path: path.into(),
            size,
            mtime_ms,
            sha256: "00".into(),
            width: 1,
            height: 1,
            encoder: encoder.into(),
            regions: 1,
        }
    }

    #[test]
    fn new_changed_reencoded_unchanged_and_missing_photos_are_told_apart() {
        let indexed = vec![
            photo(1, "/p/a.jpg", 10, 100, "e@1"),
            photo(2, "/p/b.jpg", 10, 100, "e@1"),
            photo(3, "/p/c.jpg", 10, 100, "old@1"),
            photo(4, "/p/gone.jpg", 10, 100, "e@1"),
            photo(5, "/other/x.jpg", 10, 100, "e@1"),
            photo(6, "/p2/y.jpg", 10, 100, "e@1"),
        ];
        let found = vec![
            file("/p/a.jpg", 10, 100),
            file("/p/b.jpg", 10, 200),
            file("/p/c.jpg", 10, 100),
            file("/p/new.jpg", 5, 1),
            file("/p/a.jpg", 10, 100),
        ];
        let plan = plan_scan(&indexed, &found, &["/p/".to_string()], "e@1");
        assert_eq!(plan.unchanged, 1);
        let check: Vec<&str> = plan.check.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(check, ["/p/b.jpg", "/p/c.jpg", "/p/new.jpg"]);
        // Not under /p: kept; /p2 is not inside /p.
        assert_eq!(plan.missing, vec![4]);
        // Nothing walked: nothing is missing.
        assert!(plan_scan(&indexed, &[], &[], "e@1").missing.is_empty());
    }
}
