//! rap-dataset's integration tests as one test binary (one module per area).

mod common;
mod build;
mod trainer_layout;
mod validate_stats;
