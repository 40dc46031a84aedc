//! rap-engine's integration tests as one test binary (one module per area).

mod cascade;
mod chat;
mod common;
mod decision;
mod encoders;
mod hardening;
mod key_regions;
mod keys;
mod library;
mod named_and_seen;
mod postgres;
mod region_proposer;
