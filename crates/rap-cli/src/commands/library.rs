//! `rap library`: a folder of photos indexed once, then searched for any concept ("where is
//! Bo?"), asked who is in a photo, and the photos a concept is close to offered for
//! confirmation. The work is [`rap_engine::library`]'s; this is clap and printing.

use crate::context::Context;
use crate::output;
use anyhow::Result;
use rap_core::BoundingBox;
use rap_engine::library::{LibraryFind, ScanProgress, ScanReport, Verdict};
use rap_engine::RetrieveOptions;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum LibraryCommand {
    /// Index the photos under folders (new and changed ones; JPEG, PNG, WebP, GIF, BMP, TIFF)
    Add {
        /// Folders of photos (walked recursively; hidden files and symbolic links are skipped)
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[command(flatten)]
        scan: ScanArgs,
    },
    /// Walk the added folders again: index new and changed photos, forget deleted ones (a
    /// moved photo keeps its regions without being encoded again)
    Sync {
        #[command(flatten)]
        scan: ScanArgs,
    },
    /// The photos where a concept is, best first (the decision of `rap retrieve`)
    Find {
        /// The concept's name or alias (omit with --text)
        #[arg(required_unless_present = "text")]
        name: Option<String>,
        /// Search by words instead (encoders with a text tower: CLIP, SigLIP)
        #[arg(long, conflicts_with = "name")]
        text: Option<String>,
        /// At most this many photos
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        decision: DecisionArgs,
    },
    /// The concepts in an indexed photo (from its stored regions: nothing is decoded)
    Who {
        /// An indexed photo (its path as `rap library add` found it)
        photo: PathBuf,
        #[command(flatten)]
        decision: DecisionArgs,
    },
    /// Photos close to a concept but below its decision: the ones to confirm or reject
    Suggest {
        /// The concept (name or alias)
        name: String,
        /// Most photos to list
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        decision: DecisionArgs,
    },
    /// "Yes, that is NAME": add the photo (or the part --box) as a reference image
    Confirm {
        /// The concept (name or alias)
        name: String,
        /// The photo that shows it
        photo: PathBuf,
        /// The part of the photo, as `find` and `suggest` print it
        #[arg(long = "box", value_name = "X1,Y1,X2,Y2")]
        bbox: Option<BoundingBox>,
    },
    /// "No, not NAME": add the photo (or the part --box) as a negative example
    Reject {
        /// The concept (name or alias)
        name: String,
        /// The photo that does not show it
        photo: PathBuf,
        /// The part of the photo, as `find` and `suggest` print it
        #[arg(long = "box", value_name = "X1,Y1,X2,Y2")]
        bbox: Option<BoundingBox>,
    },
    /// Counts of the library and its folders
    Status,
}

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Decoding threads [default: the number of CPUs]
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(clap::Args)]
pub struct DecisionArgs {
    /// One decision floor for every concept [default: each concept's, from the config]
    #[arg(long, allow_negative_numbers = true)]
    threshold: Option<f32>,
    /// The decision's margin over the runner-up concept [default: the config's]
    #[arg(long)]
    margin: Option<f32>,
}

/// The config's decision (`[retrieval]`) with the command line's overrides: the same as
/// `rap retrieve`'s.
fn options(ctx: &Context, args: &DecisionArgs) -> Result<RetrieveOptions> {
    let configured = rap_app::generator::retrieve_options(&ctx.config()?);
    let mut options = RetrieveOptions {
        margin: args.margin.unwrap_or(configured.margin),
        ..configured
    };
    if let Some(floor) = args.threshold {
        options = options.with_fixed_floor(floor);
    }
    Ok(options)
}

fn bbox_text(b: &BoundingBox) -> String {
    format!("{:.0},{:.0},{:.0},{:.0}", b.x1, b.y1, b.x2, b.y2)
}

pub fn run(ctx: &Context, cmd: LibraryCommand) -> Result<()> {
    let engine = ctx.engine()?;
    let tenant = &ctx.tenant;
    match cmd {
        LibraryCommand::Add { dirs, scan } => {
            let report = with_progress(ctx, &scan, |opts, workers, progress| {
                Ok(engine.library_add(tenant, &dirs, opts, workers, progress)?)
            })?;
            print_scan(ctx, &report)
        }
        LibraryCommand::Sync { scan } => {
            let report = with_progress(ctx, &scan, |opts, workers, progress| {
                Ok(engine.library_sync(tenant, opts, workers, progress)?)
            })?;
            print_scan(ctx, &report)
        }
        LibraryCommand::Find {
            name,
            text,
            limit,
            decision,
        } => {
            if let Some(text) = text {
                let hits = engine.library_find_text(tenant, &text, limit)?;
                if ctx.json {
                    return output::print_json(
                        &serde_json::json!({ "text": text, "photos": hits }),
                    );
                }
                let mut t = output::table(&["photo", "score", "box"]);
                for h in &hits {
                    t.add_row(vec![
                        h.path.clone(),
                        format!("{:.3}", h.score),
                        bbox_text(&h.bbox),
                    ]);
                }
                println!("{t}");
                return Ok(());
            }
            let name = name.unwrap_or_default();
            let found = engine.library_find(tenant, &name, limit, &options(ctx, &decision)?)?;
            print_found(ctx, &found, "appears in", true)
        }
        LibraryCommand::Who { photo, decision } => {
            let (photo, concepts) =
                engine.library_who(tenant, &photo, &options(ctx, &decision)?)?;
            if ctx.json {
                return output::print_json(
                    &serde_json::json!({ "photo": photo, "concepts": concepts }),
                );
            }
            if concepts.is_empty() {
                println!("no concept found in {}", photo.path);
                return Ok(());
            }
            let mut t = output::table(&["name", "score", "confidence", "box"]);
            for c in &concepts {
                t.add_row(vec![
                    format!("<{}>", c.name),
                    format!("{:.3}", c.score),
                    format!("{:.2}", c.confidence),
                    bbox_text(&c.bbox),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        LibraryCommand::Suggest {
            name,
            limit,
            decision,
        } => {
            let found = engine.library_suggest(tenant, &name, limit, &options(ctx, &decision)?)?;
            print_found(ctx, &found, "may be in", false)?;
            if !ctx.json && !found.photos.is_empty() {
                println!(
                    "confirm one: rap library confirm {0} PHOTO --box X1,Y1,X2,Y2   \
                     reject: rap library reject {0} PHOTO --box ...",
                    found.concept
                );
            }
            Ok(())
        }
        LibraryCommand::Confirm { name, photo, bbox } => {
            verdict(ctx, &name, photo, bbox, Verdict::Confirm)
        }
        LibraryCommand::Reject { name, photo, bbox } => {
            verdict(ctx, &name, photo, bbox, Verdict::Reject)
        }
        LibraryCommand::Status => {
            let (stats, roots) = engine.library_stats(tenant)?;
            if ctx.json {
                return output::print_json(&serde_json::json!({
                    "photos": stats.photos, "regions": stats.regions, "folders": roots
                }));
            }
            println!("{} photos, {} regions", stats.photos, stats.regions);
            for r in roots {
                println!("  {r}");
            }
            Ok(())
        }
    }
}

fn verdict(
    ctx: &Context,
    name: &str,
    photo: PathBuf,
    bbox: Option<BoundingBox>,
    verdict: Verdict,
) -> Result<()> {
    let concept =
        ctx.engine()?
            .library_confirm(&ctx.tenant, name, &photo, bbox.as_ref(), verdict)?;
    if ctx.json {
        return output::print_json(&concept);
    }
    match verdict {
        Verdict::Confirm => println!(
            "<{}> now has {} reference images",
            concept.name,
            concept.images.len()
        ),
        Verdict::Reject => println!(
            "<{}> now has {} negative examples",
            concept.name,
            concept.negatives.len()
        ),
    }
    Ok(())
}

/// Runs an indexing with a progress bar (photos/s and an ETA; nothing with `--json`).
fn with_progress(
    ctx: &Context,
    scan: &ScanArgs,
    f: impl FnOnce(&RetrieveOptions, usize, &mut dyn FnMut(ScanProgress)) -> Result<ScanReport>,
) -> Result<ScanReport> {
    let configured = rap_app::generator::retrieve_options(&ctx.config()?);
    let workers = scan.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    if workers == 0 {
        anyhow::bail!("--workers must be at least 1");
    }
    let bar = output::progress(0, ctx.json, "indexing photos");
    let mut progress = |p: ScanProgress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        let eta = p
            .eta_secs()
            .map(|s| format!(", ETA {s:.0} s"))
            .unwrap_or_default();
        bar.set_message(format!("indexing photos ({:.1} photos/s{eta})", p.rate()));
    };
    let report = f(&configured, workers, &mut progress);
    bar.finish_and_clear();
    report
}

fn print_scan(ctx: &Context, r: &ScanReport) -> Result<()> {
    if ctx.json {
        return output::print_json(r);
    }
    println!(
        "{} photos found: {} indexed ({} regions), {} copied or moved, {} unchanged, {} failed, \
         {} in formats not indexed{}{} ({:.1} s, {:.1} photos/s)",
        r.found,
        r.indexed,
        r.regions,
        r.copied,
        r.unchanged,
        r.failed.len(),
        r.unsupported,
        if r.missing > 0 {
            format!(", {} gone (run `rap library sync`)", r.missing)
        } else {
            String::new()
        },
        if r.removed > 0 {
            format!(", {} removed", r.removed)
        } else {
            String::new()
        },
        r.seconds,
        r.photos_per_sec
    );
    for (path, why) in r.failed.iter().take(10) {
        println!("  failed: {path}: {why}");
    }
    if r.failed.len() > 10 {
        println!(
            "  ... and {} more (--json lists them all)",
            r.failed.len() - 10
        );
    }
    Ok(())
}

/// A concept's photos; `confidence`: with the decision's confidence (found, not suggested).
fn print_found(ctx: &Context, found: &LibraryFind, verb: &str, confidence: bool) -> Result<()> {
    if ctx.json {
        return output::print_json(found);
    }
    println!("<{}> {verb} {} photos", found.concept, found.total);
    if found.photos.is_empty() {
        return Ok(());
    }
    let mut t = if confidence {
        output::table(&["photo", "score", "confidence", "box"])
    } else {
        output::table(&["photo", "score", "box"])
    };
    for h in &found.photos {
        let mut row = vec![h.path.clone(), format!("{:.3}", h.score)];
        if confidence {
            row.push(format!("{:.2}", h.confidence));
        }
        row.push(bbox_text(&h.bbox));
        t.add_row(row);
    }
    println!("{t}");
    Ok(())
}
