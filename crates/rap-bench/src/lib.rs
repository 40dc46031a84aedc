//! The benchmark workloads behind `rap bench`: each measures one part of rap on this machine
//! and returns its report, a JSON value whose every figure carries its unit in its name
//! (`p50_ms`, `qps`, `concepts_per_s`, `database_bytes`...).
//!
//! - [`memory`]: the embedded store at N concepts (open, key index build and reopen, add,
//!   remove, search latency);
//! - [`retrieval`]: the Retrieve step on real photos with an encoder (add-concept and query
//!   latency, where the time goes, encoder images/s, 12-megapixel decode);
//! - [`generate`]: a local GGUF model's prompt and generation tokens/s;
//! - [`vectors`]: the key index alone on synthetic vectors (build, QPS, latency, recall@10
//!   against exact search, memory), exact scan and HNSW;
//! - [`scale`]: a service-sized memory in the embedded store or PostgreSQL (insert rate,
//!   per-tenant top-k latency, recall, foreign results, size on disk).
//!
//! Each workload takes a plain options struct and a [`Progress`] and returns
//! `rap_core::Result<serde_json::Value>`; [`report`] has the pieces the reports share (the
//! machine, latency summaries). The library never prints and reads no environment: what a
//! workload needs from the application (an encoder, a model file, a database URL) comes in its
//! options, and a caller (the `rap` binary) shows the progress and prints the report.
//! [`synthetic`] makes the deterministic keys the vector benchmarks share.

#![forbid(unsafe_code)]

pub mod generate;
pub mod memory;
mod progress;
pub mod report;
pub mod retrieval;
pub mod scale;
pub mod synthetic;
pub mod vectors;

pub use progress::{NoProgress, Progress};
pub use report::machine;

/// A new temporary folder (removed when dropped); an error names the system's temporary folder.
pub(crate) fn temp_dir() -> rap_core::Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| rap_core::Error::io(std::env::temp_dir(), e))
}
