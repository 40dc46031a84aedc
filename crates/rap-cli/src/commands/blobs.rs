//! `rap blobs gc`: with the PostgreSQL memory and an S3 blob store (`RAP_BLOB_STORE`), deletes
//! the image objects no database row refers to (left by a crash between a commit and its
//! delete) and reports rows whose object is missing.

use crate::context::Context;
use crate::output;
use anyhow::{bail, Result};

#[derive(clap::Subcommand)]
pub enum BlobsCommand {
    /// Delete orphan image objects from the blob store (safe while servers run).
    Gc,
}

pub fn run(ctx: &Context, cmd: BlobsCommand) -> Result<()> {
    match cmd {
        BlobsCommand::Gc => {
            let store = ctx.app().open_postgres()?;
            let Some(blobs) = store.blob_store() else {
                bail!(
                    "no blob store is configured (RAP_BLOB_STORE=s3://BUCKET/PREFIX): the \
                     image bytes are in the database, there is nothing to collect"
                );
            };
            let location = rap_memory::BlobStore::location(blobs);
            let report = store.collect_orphan_blobs()?;
            if ctx.json {
                return output::print_json(&serde_json::json!({
                    "blob_store": location,
                    "objects": report.objects,
                    "removed": report.removed.iter()
                        .map(|(t, s)| serde_json::json!({"tenant": t, "sha256": s}))
                        .collect::<Vec<_>>(),
                    "missing": report.missing.iter()
                        .map(|(t, s)| serde_json::json!({"tenant": t, "sha256": s}))
                        .collect::<Vec<_>>(),
                }));
            }
            println!(
                "{location}: {} objects, {} orphan(s) deleted",
                report.objects,
                report.removed.len()
            );
            for (t, s) in &report.removed {
                println!("  deleted {t}/{s}");
            }
            if !report.missing.is_empty() {
                for (t, s) in &report.missing {
                    println!("  MISSING object of image {s} of tenant {t}");
                }
                bail!(
                    "{} image(s) have no object in {location}",
                    report.missing.len()
                );
            }
            Ok(())
        }
    }
}
