//! `rap retrieve`: which concepts are in this image or named in this text.

use crate::context::Context;
use crate::output;
use anyhow::{Context as _, Result};
use rap_engine::RetrieveOptions;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct RetrieveArgs {
    /// The query image
    pub image: Option<PathBuf>,
    /// Text to look for concept names and aliases in
    #[arg(long)]
    pub text: Option<String>,
    /// At most this many concepts
    #[arg(long, default_value_t = 2)]
    pub top_k: usize,
    /// One decision floor for every concept: no image region supports a concept it matches
    /// less than this [default: each concept's floor, from the config's `retrieval.threshold`]
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f32>,
    /// The decision's margin: a region supports its best concept only when it beats the
    /// runner-up concept there by this much [default: the config's, else the calibrated one]
    #[arg(long)]
    pub margin: Option<f32>,
    /// Encode every region of the image: no cascade (by default the smallest windows are
    /// encoded only when the whole image and the larger windows do not decide every concept)
    #[arg(long)]
    pub no_cascade: bool,
    /// Search by words: embed --text with the memory's encoder (CLIP or SigLIP) and rank the
    /// concepts by their reference images, instead of looking for names in it
    #[arg(long, requires = "text", conflicts_with = "image")]
    pub text_only: bool,
}

pub fn run(ctx: &Context, args: RetrieveArgs) -> Result<()> {
    if args.image.is_none() && args.text.is_none() {
        anyhow::bail!("give an image, --text, or both");
    }
    let engine = ctx.engine()?;
    if args.text_only {
        let text = args.text.as_deref().unwrap_or_default();
        let hits = engine.search_by_words(&ctx.tenant, text, args.top_k)?;
        if ctx.json {
            return output::print_json(&serde_json::json!({ "hits": hits }));
        }
        let mut t = output::table(&["name", "score"]);
        for h in &hits {
            t.add_row(vec![format!("<{}>", h.name), format!("{:.3}", h.score)]);
        }
        println!("{t}");
        return Ok(());
    }
    let bytes = match &args.image {
        Some(p) => Some(rap_image::read_file(p, ctx.limits())?),
        None => None,
    };
    // The config's decision (`[retrieval]`), with what the command line overrides.
    let configured = rap_app::generator::retrieve_options(&ctx.config()?);
    let mut options = RetrieveOptions {
        top_k: args.top_k,
        margin: args.margin.unwrap_or(configured.margin),
        cascade: if args.no_cascade {
            None
        } else {
            configured.cascade
        },
        ..configured
    };
    if let Some(floor) = args.threshold {
        options = options.with_fixed_floor(floor);
    }
    let retrieval = engine
        .retrieve(
            &ctx.tenant,
            bytes.as_deref(),
            args.text.as_deref(),
            &options,
        )
        .with_context(|| match &args.image {
            Some(p) => p.display().to_string(),
            None => "retrieval".to_string(),
        })?;
    if ctx.json {
        let mut out = serde_json::json!({ "hits": retrieval.hits });
        if !retrieval.detections.is_empty() {
            // The configured detector's boxes, like `rap detect`'s.
            out["detections"] = retrieval
                .detections
                .iter()
                .map(|r| match &r.source {
                    rap_core::RegionSource::Detector { label, score } => {
                        serde_json::json!({ "label": label, "score": score, "box": r.bbox })
                    }
                    _ => serde_json::json!({ "box": r.bbox }),
                })
                .collect();
        }
        return output::print_json(&out);
    }
    if retrieval.hits.is_empty() {
        println!(
            "no concept found (floor {:.2}, margin {:.2})",
            options.threshold, options.margin
        );
        return Ok(());
    }
    let mut t = output::table(&["name", "score", "confidence", "via", "box"]);
    for h in &retrieval.hits {
        let bbox = h
            .bbox
            .map(|b| format!("[{:.0}, {:.0}, {:.0}, {:.0}]", b.x1, b.y1, b.x2, b.y2))
            .unwrap_or_default();
        let via = serde_json::to_value(h.via)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        t.add_row(vec![
            format!("<{}>", h.name),
            format!("{:.3}", h.score),
            h.confidence.map(|c| format!("{c:.2}")).unwrap_or_default(),
            via,
            bbox,
        ]);
    }
    println!("{t}");
    Ok(())
}
