//! `rap eval ...`: the paper's metrics and the retrieval evaluation.

use crate::context::Context;
use crate::output;
use anyhow::Result;
use clap::Subcommand;
use rap_eval::retrieval::{self, RetrievalEvalConfig};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Retrieval on a folder of subject folders: top-1, recall@5, MRR, recognition.
    Retrieval {
        /// A folder with one folder of photos per subject (like dreambooth-dev)
        #[arg(long)]
        dataset: PathBuf,
        /// Photos per subject used as the concept's reference images
        #[arg(long, default_value_t = 1)]
        refs: usize,
        /// Recognition threshold [default: the calibrated threshold]
        #[arg(long)]
        threshold: Option<f32>,
        /// Window sizes for region proposals, as fractions of the shorter side
        /// (comma-separated; `none` = the whole image only) [default: as `rap retrieve`]
        #[arg(long, value_delimiter = ',')]
        scales: Option<Vec<String>>,
    },
}

pub fn run(ctx: &Context, cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Retrieval {
            dataset,
            refs,
            threshold,
            scales,
        } => {
            let window_scales = super::window_scales(scales)?;
            let encoder = ctx.engine()?.require_encoder()?;
            let config = RetrievalEvalConfig {
                dataset,
                refs,
                threshold: threshold.unwrap_or(rap_engine::DEFAULT_THRESHOLD),
                window_scales,
            };
            let bar = output::progress(0, ctx.json, "querying");
            let report = retrieval::run(&config, encoder, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            if ctx.json {
                return output::print_json(&report);
            }
            println!(
                "{} subjects, {} queries, encoder {}, refs {}, threshold {:.3}",
                report.subjects,
                report.totals.queries,
                report.encoder,
                report.refs,
                report.threshold
            );
            let mut t = output::table(&[
                "subject", "queries", "top-1", "recall@5", "mrr", "pos acc", "neg acc", "weighted",
            ]);
            let row = |name: &str, f: &retrieval::Figures| {
                vec![
                    name.to_string(),
                    f.queries.to_string(),
                    format!("{:.3}", f.top1),
                    format!("{:.3}", f.recall_at_5),
                    format!("{:.3}", f.mrr),
                    format!("{:.3}", f.positive_accuracy),
                    format!("{:.3}", f.negative_accuracy),
                    format!("{:.3}", f.weighted),
                ]
            };
            for (name, f) in &report.per_subject {
                t.add_row(row(name, f));
            }
            t.add_row(row("TOTAL", &report.totals));
            println!("{t}");
            println!(
                "{:.0} ms per query; best threshold on this data: {:.3} (weighted {:.3})",
                report.ms_per_query, report.best_threshold.0, report.best_threshold.1
            );
            Ok(())
        }
    }
}
