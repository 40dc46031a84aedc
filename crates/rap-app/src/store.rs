//! Opening the memory: the embedded SQLite store in the data dir, or PostgreSQL with pgvector
//! (and image bytes in S3), as `[memory]` chooses. The only place that knows every backend.

use rap_core::{Error, Result};
use rap_memory::{ConceptStore, SqliteStore};
use rap_memory_postgres::PgStore;
use std::path::Path;
use std::sync::Arc;

/// Where the memory is kept.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum MemoryBackend {
    /// `DATA_DIR/memory.sqlite`, for one machine (the default).
    #[default]
    Embedded,
    /// A PostgreSQL database with pgvector, shared by every process given the same URL.
    Postgres { url: String },
}

impl std::fmt::Debug for MemoryBackend {
    // The URL may hold a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryBackend::Embedded => f.write_str("Embedded"),
            MemoryBackend::Postgres { .. } => f.write_str("Postgres"),
        }
    }
}

/// The embedded store's file in a data dir (where [`rap_engine::Engine::open`] keeps it).
pub fn sqlite_path(data_dir: &Path) -> std::path::PathBuf {
    rap_engine::EngineConfig::new(data_dir).store_path()
}

/// Opens the memory `backend` names: the embedded one in `data_dir` (created if needed), or a
/// PostgreSQL database (migrated to this build's schema) with image bytes in `blob_store`
/// (`s3://BUCKET/PREFIX`, reached with the process's standard `AWS_*` variables) when one is
/// given.
pub fn open_store(
    backend: &MemoryBackend,
    blob_store: Option<&str>,
    data_dir: &Path,
) -> Result<Arc<dyn ConceptStore>> {
    Ok(match (backend, blob_store) {
        (MemoryBackend::Embedded, None) => Arc::new(SqliteStore::open(sqlite_path(data_dir))?),
        (MemoryBackend::Embedded, Some(_)) => {
            return Err(Error::invalid(
                "a blob store is for the postgres backend: the embedded memory keeps its \
                 images in its own file",
            ))
        }
        (MemoryBackend::Postgres { url }, blobs) => Arc::new(open_postgres(url, blobs)?),
    })
}

/// The PostgreSQL store at `url`, with its blob store if one is given.
pub fn open_postgres(url: &str, blob_store: Option<&str>) -> Result<PgStore> {
    let mut store = PgStore::connect(url.trim())?;
    if let Some(blobs) = blob_store {
        // The standard AWS variables of this process: endpoint, region, credentials.
        let aws = |name: &str| std::env::var(name).ok();
        store = store.with_blob_store(rap_memory_postgres::open_blob_store(blobs, aws)?);
    }
    Ok(store)
}
