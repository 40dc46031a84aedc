//! rap-memory-postgres's integration tests as one test binary (one module per area): one PostgreSQL
//! test server (and one S3 server) for all of them.

mod common;
mod blobs_s3;
mod conformance;
mod postgres;
