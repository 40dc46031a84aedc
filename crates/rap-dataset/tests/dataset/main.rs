//! rap-dataset's integration tests as one test binary (one module per area).

mod build;
mod common;
mod trainer_layout;
mod validate_stats;
