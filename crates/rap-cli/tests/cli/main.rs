//! The `rap` binary end to end, as one test binary (one module per area: linking a binary
//! per file cost minutes of CI).

mod common;
mod concepts;
mod crash;
mod dataset;
mod detect;
mod device;
mod eval;
mod everyday;
mod generate;
mod hardening;
mod library;
mod llava;
mod model_zoo;
mod postgres;
mod retrieval_detector;
mod retrieve;
mod scale_out;
mod serve;
