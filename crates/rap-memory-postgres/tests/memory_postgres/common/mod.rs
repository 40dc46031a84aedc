//! The test server harness lives in the crate ([`rap_memory_postgres::testing`]) so that other
//! crates' tests can use it too.

pub use rap_memory_postgres::testing::*;
