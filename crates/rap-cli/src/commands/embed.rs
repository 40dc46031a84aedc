//! `rap embed`: the embeddings an encoder gives images (and texts), for debugging and for other
//! tools: `{"model": ..., "dim": ..., "embeddings": [[...], ...]}`.

use crate::context::Context;
use crate::output;
use anyhow::{Context as _, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// An installed model's name, `default`, or the path of a Hugging Face checkpoint folder
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Images to embed, in order
    pub images: Vec<PathBuf>,
    /// Texts to embed too (CLIP and SigLIP), after the images
    #[arg(long = "text")]
    pub texts: Vec<String>,
}

pub fn run(ctx: &Context, args: EmbedArgs) -> Result<()> {
    if args.images.is_empty() && args.texts.is_empty() {
        anyhow::bail!("give at least one image (or --text)");
    }
    let device = rap_app::environment::device()?;
    let encoder = rap_app::models::resolve_encoder(ctx.models_path()?, &args.model, &device)?;
    let limits = *ctx.engine()?.limits();
    let mut images = Vec::with_capacity(args.images.len());
    for p in &args.images {
        let bytes = rap_image::read_file(p, ctx.limits())?;
        images.push(rap_image::decode(&bytes, &limits).with_context(|| p.display().to_string())?);
    }
    let mut embeddings = encoder.embed(&images)?;
    if !args.texts.is_empty() {
        let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
        embeddings.extend(encoder.embed_texts(&texts)?);
    }
    let rows: Vec<&[f32]> = embeddings.iter().map(|e| e.as_slice()).collect();
    if ctx.json {
        return output::print_json(&serde_json::json!({
            "model": encoder.info().id,
            "dim": encoder.info().dim,
            "embeddings": rows,
        }));
    }
    println!("model: {} ({}-d)", encoder.info().id, encoder.info().dim);
    let names = args
        .images
        .iter()
        .map(|p| p.display().to_string())
        .chain(args.texts.iter().map(|t| format!("text {t:?}")));
    for (name, row) in names.zip(&rows) {
        let head: Vec<String> = row.iter().take(6).map(|v| format!("{v:+.4}")).collect();
        println!("{name}: [{}, ...]", head.join(", "));
    }
    Ok(())
}
