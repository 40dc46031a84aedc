//! rap-memory-postgres's integration tests as one test binary (one module per area): one PostgreSQL
//! test server (and one S3 server) for all of them.

mod blobs_s3;
mod common;
mod conformance;
mod postgres;
