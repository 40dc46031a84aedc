//! One module per group of subcommands.

pub mod ask;
pub mod bench;
pub mod blobs;
pub mod chat;
pub mod concept;
pub mod config;
pub mod dataset;
pub mod demo;
pub mod detect;
pub mod embed;
pub mod eval;
pub mod keys;
pub mod library;
pub mod migrate;
pub mod models;
pub mod prompt;
pub mod retrieve;
pub mod serve;
pub mod transfer;

/// The region-proposal window scales of a `--scales` option: `None` gives the retriever's
/// default, `none` the whole image only, otherwise fractions of the shorter side.
pub fn window_scales(arg: Option<Vec<String>>) -> anyhow::Result<Vec<f32>> {
    match arg {
        None => Ok(rap_engine::RetrieveOptions::default().window_scales),
        Some(list) if list.iter().any(|s| s.trim() == "none") => Ok(Vec::new()),
        Some(list) => list
            .iter()
            .map(|s| match s.trim().parse::<f32>() {
                Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
                _ => Err(anyhow::anyhow!(
                    "--scales: {s:?} is not a fraction between 0 and 1 (or `none`)"
                )),
            })
            .collect(),
    }
}
