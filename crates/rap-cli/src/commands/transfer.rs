//! `rap import`, `rap export`, `rap reindex`, `rap status`: whole-memory operations.

use crate::context::Context;
use crate::output;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// A reference database.json, or the folder holding it
    pub path: PathBuf,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Folder to write database.json and the images into
    pub dir: PathBuf,
    /// Overwrite an existing database.json there
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args)]
pub struct ReindexArgs {
    /// Switch the memory to this encoder (an installed model's name or a checkpoint folder):
    /// embed every reference image with it, resumably; the old keys serve queries until the
    /// new ones are complete
    #[arg(long)]
    pub encoder: Option<String>,
}

pub fn import(ctx: &Context, args: ImportArgs) -> Result<()> {
    let engine = ctx.engine()?;
    let added = engine.import_reference(&ctx.tenant, &args.path)?;
    if ctx.json {
        return output::print_json(&serde_json::json!({ "imported": added }));
    }
    println!("imported {} concepts:", added.len());
    for c in &added {
        println!(
            "  <{}> ({}, {} image(s))",
            c.name,
            c.category,
            c.images.len()
        );
    }
    Ok(())
}

pub fn export(ctx: &Context, args: ExportArgs) -> Result<()> {
    let engine = ctx.engine()?;
    let path = engine.export_reference(&ctx.tenant, &args.dir, args.force)?;
    let count = engine.stats(&ctx.tenant)?.concepts;
    if ctx.json {
        return output::print_json(&serde_json::json!({ "database": path, "concepts": count }));
    }
    println!("exported {count} concepts to {}", path.display());
    Ok(())
}

pub fn reindex(ctx: &Context, args: ReindexArgs) -> Result<()> {
    let engine = ctx.engine()?;
    if let Some(name) = args.encoder {
        let encoder = engine.named_encoder(&name)?;
        let missing = engine
            .store()
            .images_without_keys(&ctx.tenant, &encoder.info().id)?
            .len();
        let bar = output::progress(missing as u64, ctx.json, "embedding");
        let report =
            engine.reindex_with(&ctx.tenant, &name, &mut |d, _| bar.set_position(d as u64))?;
        bar.finish_and_clear();
        if ctx.json {
            return output::print_json(&report);
        }
        println!(
            "embedded {} image(s) with {} ({})",
            report.embedded, report.encoder.name, report.encoder.id
        );
        if report.active {
            println!(
                "the memory of tenant {} now uses {}",
                ctx.tenant, report.encoder.name
            );
        } else {
            println!(
                "images were added meanwhile: run the same command again to finish the switch"
            );
        }
        return Ok(());
    }
    let encoder = engine.encoder_for(&ctx.tenant)?;
    let missing = engine
        .store()
        .images_without_keys(&ctx.tenant, &encoder.info().id)?
        .len();
    let bar = output::progress(missing as u64, ctx.json, "embedding");
    let done = engine.reindex(&ctx.tenant, &mut |d, _| bar.set_position(d as u64))?;
    bar.finish_and_clear();
    if let Some(p) = engine.tenant_encoders(&ctx.tenant)?.pending {
        eprintln!(
            "note: a switch to encoder {} is unfinished: `rap reindex --encoder {}` resumes it",
            p.name, p.name
        );
    }
    if ctx.json {
        return output::print_json(
            &serde_json::json!({ "encoder": encoder.info().id, "embedded_images": done }),
        );
    }
    println!("embedded {done} image(s) with {}", encoder.info().id);
    Ok(())
}

pub fn status(ctx: &Context) -> Result<()> {
    let engine = ctx.engine()?;
    let stats = engine.stats(&ctx.tenant)?;
    let encoders = engine.store().encoders(&ctx.tenant)?;
    let choice = engine.tenant_encoders(&ctx.tenant)?;
    if ctx.json {
        return output::print_json(&serde_json::json!({
            "data_dir": ctx.data_dir,
            "tenant": ctx.tenant,
            "concepts": stats.concepts,
            "images": stats.images,
            "keys": stats.embeddings,
            "encoders": encoders.iter().map(|(id, n)| serde_json::json!({"id": id, "keys": n})).collect::<Vec<_>>(),
            "memory_encoder": choice.active,
            "pending_encoder": choice.pending,
        }));
    }
    println!("data dir: {}", ctx.data_dir.display());
    println!("tenant:   {}", ctx.tenant);
    println!("concepts: {}", stats.concepts);
    println!("images:   {}", stats.images);
    println!("keys:     {}", stats.embeddings);
    for (id, n) in encoders {
        println!("  {id}: {n} keys");
    }
    match &choice.active {
        Some(c) => println!("encoder:  {} ({})", c.name, c.id),
        None => println!("encoder:  the default"),
    }
    if let Some(p) = &choice.pending {
        println!("pending:  switch to {} ({}) unfinished", p.name, p.id);
    }
    Ok(())
}
