//! One module per group of subcommands.

pub mod concept;
pub mod transfer;
