//! rap-app's integration tests as one test binary (one module per area).

mod common;
mod detector;
mod models;
