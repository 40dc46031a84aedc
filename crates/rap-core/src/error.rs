//! The error type shared by the library crates: each variant is a kind of failure a caller can
//! act on, and a surface picks its answer (exit message, HTTP status) from the kind alone.
//!
//! Messages name the thing at fault, so `to_string()` is complete on its own; an underlying
//! error (SQLite's, PostgreSQL's) is also kept as the [`std::error::Error::source`], for
//! callers that inspect it. A printer that walks the source chain should skip a source whose
//! text the message already ends with ([`Error::report`] does). An I/O error is the exception:
//! its message already says everything the OS error does, so it is kept in the variant
//! ([`Error::io_error`]) and not returned as a source - a printer that shows every cause
//! (anyhow's `{:#}`, say) would otherwise write the OS text twice.

use std::path::PathBuf;

/// An underlying error kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the `rap` libraries.
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
    /// A model the operation needs is not installed (or is incomplete); the message says how to
    /// install it. Not the caller's fault and not a bug: the operator can fix it.
    #[error("{message}")]
    NotInstalled { model: String, message: String },
    /// A service the operation needs (a generator server, PostgreSQL, an object store) did not
    /// answer or refused the work; trying again later may succeed.
    #[error("{message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A file could not be read or written: the path, then the OS's reason. The OS error is
    /// not a [`std::error::Error::source`] (its text is the message's end already).
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A model does not load, or failed to run.
    #[error("{0}")]
    Model(String),
    /// The input is over one of the configured limits (a size, a length, a count). `limit` is
    /// the limit's name as `[limits]` in config.toml spells it, `value` its value.
    #[error("{message}, over the limit {limit} = {value}")]
    LimitExceeded {
        limit: &'static str,
        value: u64,
        message: String,
    },
    /// The storage backend failed.
    #[error("storage: {message}")]
    Storage {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// `message` says what was too big; the error names the limit and its value.
    pub fn limit(limit: &'static str, value: u64, message: impl Into<String>) -> Self {
        Error::LimitExceeded {
            limit,
            value,
            message: message.into(),
        }
    }

    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    /// The OS error of an I/O failure (its kind says whether the file was missing, say).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Error::Io { error, .. } => Some(error),
            _ => None,
        }
    }

    pub fn model(msg: impl Into<String>) -> Self {
        Error::Model(msg.into())
    }

    /// `model` is not installed; `message` says so and how to install it.
    pub fn not_installed(model: impl Into<String>, message: impl Into<String>) -> Self {
        Error::NotInstalled {
            model: model.into(),
            message: message.into(),
        }
    }

    /// A storage failure described by `message` alone.
    pub fn storage(message: impl Into<String>) -> Self {
        Error::Storage {
            message: message.into(),
            source: None,
        }
    }

    /// A storage failure: `context` says what was being done; `source` is kept, and its text
    /// ends the message.
    pub fn storage_from(
        context: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Storage {
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// A service that did not answer, described by `message` alone.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// A service that did not answer: `context` names it; `source` is kept, and its text ends
    /// the message.
    pub fn unavailable_from(
        context: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Unavailable {
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// The same kind of error, its message led by `what` (the setting or file it came from):
    /// `what: message`. A not-found error names `what` after the missing thing; an I/O error
    /// already names its file and is returned as it is.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            Error::InvalidInput(m) => Error::InvalidInput(format!("{what}: {m}")),
            Error::NotFound { kind, name } => Error::NotFound {
                kind,
                name: format!("{name} ({what})"),
            },
            Error::Conflict(m) => Error::Conflict(format!("{what}: {m}")),
            Error::NotInstalled { model, message } => Error::NotInstalled {
                model,
                message: format!("{what}: {message}"),
            },
            Error::Unavailable { message, source } => Error::Unavailable {
                message: format!("{what}: {message}"),
                source,
            },
            e @ Error::Io { .. } => e,
            Error::LimitExceeded {
                limit,
                value,
                message,
            } => Error::LimitExceeded {
                limit,
                value,
                message: format!("{what}: {message}"),
            },
            Error::Model(m) => Error::Model(format!("{what}: {m}")),
            Error::Storage { message, source } => Error::Storage {
                message: format!("{what}: {message}"),
                source,
            },
        }
    }

    /// The message and every source whose text it does not already end with, joined by ": ".
    pub fn report(&self) -> String {
        report(self)
    }
}

/// `e`'s message followed by each source in its chain that adds something: a source whose text
/// the message so far already ends with (as [`Error`]'s messages do with theirs) is skipped.
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keeps_its_source_and_names_it_once() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::storage_from("cannot open memory.db", io);
        assert_eq!(
            e.to_string(),
            "storage: cannot open memory.db: disk on fire"
        );
        let source = std::error::Error::source(&e).expect("source kept");
        assert_eq!(source.to_string(), "disk on fire");
        assert_eq!(e.report(), "storage: cannot open memory.db: disk on fire");
    }

    #[test]
    fn context_keeps_the_kind_and_leads_the_message() {
        let e = Error::invalid("must be between 0 and 1").context("retrieval.detector");
        assert!(matches!(e, Error::InvalidInput(_)));
        assert_eq!(e.to_string(), "retrieval.detector: must be between 0 and 1");
        let e = Error::not_installed("centernet", "run it").context("retrieval.detector");
        assert!(matches!(e, Error::NotInstalled { ref model, .. } if model == "centernet"));
        assert_eq!(e.to_string(), "retrieval.detector: run it");
        let e = Error::not_found("detector", "nope").context("RAP_DETECTOR");
        assert_eq!(e.to_string(), "detector not found: nope (RAP_DETECTOR)");
    }

    #[test]
    fn report_adds_sources_the_message_does_not_name() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the config")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "no file"));
        assert_eq!(report(&e), "reading the config: no file");
        let io = Error::io(
            "x.jpg",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(io.report(), "x.jpg: gone");
    }

    #[test]
    fn an_io_error_names_the_os_reason_once_however_it_is_printed() {
        let e = Error::io(
            "x.jpg",
            std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"),
        );
        let expected = "x.jpg: No such file or directory";
        assert_eq!(e.to_string(), expected);
        assert_eq!(e.report(), expected);
        // Printers that show every cause: anyhow's alternate form and its chain.
        let any = anyhow::Error::new(e);
        assert_eq!(format!("{any:#}"), expected);
        assert_eq!(any.chain().count(), 1);
        let e = any.downcast::<Error>().unwrap();
        assert_eq!(
            e.io_error().map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
    }
}
