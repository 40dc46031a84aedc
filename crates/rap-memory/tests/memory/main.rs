//! rap-memory's integration tests as one test binary (one module per area).

mod api_keys;
mod conformance;
mod library;
mod migrate;
mod reference;
mod saved_index;
mod store;
