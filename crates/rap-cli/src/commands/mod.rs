//! One module per group of subcommands.

pub mod ask;
pub mod bench;
pub mod concept;
pub mod config;
pub mod demo;
pub mod eval;
pub mod models;
pub mod prompt;
pub mod retrieve;
pub mod transfer;
