//! Where the golden tests find the shared photos.

use std::path::PathBuf;

/// The shared datasets folder (next to the repository).
pub fn datasets_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
}
