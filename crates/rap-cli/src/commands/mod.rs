//! One module per group of subcommands.

pub mod concept;
pub mod eval;
pub mod models;
pub mod retrieve;
pub mod transfer;
