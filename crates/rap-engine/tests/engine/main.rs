//! rap-engine's integration tests as one test binary (one module per area).

mod cascade;
mod chat;
mod common;
mod decision;
mod encoders;
mod key_regions;
mod keys;
mod postgres;
mod region_proposer;
