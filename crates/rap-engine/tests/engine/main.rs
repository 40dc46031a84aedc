//! rap-engine's integration tests as one test binary (one module per area).

mod common;
mod chat;
mod postgres;
mod region_proposer;
