//! The error type shared by the library crates: each variant is a kind of failure a caller can act on.

use std::path::PathBuf;

/// Errors of the `rap` libraries. Messages name the thing at fault so that a surface (CLI,
/// server) can show them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller gave something unusable (bad name, bad image, bad JSON...).
    #[error("{0}")]
    InvalidInput(String),
    /// A named thing does not exist (in this tenant).
    #[error("{kind} not found: {name}")]
    NotFound { kind: &'static str, name: String },
    /// The request conflicts with what is stored (duplicate name or alias...).
    #[error("{0}")]
    Conflict(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model is missing, does not load, or failed to run.
    #[error("{0}")]
    Model(String),
    /// The storage backend failed.
    #[error("storage: {0}")]
    Storage(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
