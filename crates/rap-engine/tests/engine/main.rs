//! rap-engine's integration tests as one test binary (one module per area).

mod chat;
mod common;
mod region_proposer;
