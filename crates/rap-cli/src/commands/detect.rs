//! `rap detect IMAGE [--json]`: the objects the COCO detector (CenterNet, real weights, installed
//! by `rap models install centernet`) finds in an image:
//! `{"detections": [{"label": ..., "score": ..., "box": [x1, y1, x2, y2]}]}`, best first.
//! Boxes are in pixels of the original image, like the boxes `rap retrieve` prints.
//!
//! `rap detect IMAGE --model DIR --query TEXT...`: the open-vocabulary detector instead (OWLv2,
//! a Hugging Face `Owlv2ForObjectDetection` folder): boxes for the text queries, each labelled
//! with its query (`"query"`: its index).

use crate::context::Context;
use crate::output;
use anyhow::{Context as _, Result};
use rap_detect::centernet::DetectOptions;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DetectArgs {
    /// The image to look at
    pub image: PathBuf,
    /// Keep detections scoring at least this (0-1)
    #[arg(long, default_value_t = DetectOptions::default().min_score)]
    pub min_score: f32,
    /// At most this many detections
    #[arg(long, default_value_t = DetectOptions::default().max_detections)]
    pub max: usize,
    /// An OWLv2 checkpoint folder (Hugging Face format): find what --query names
    #[arg(long, value_name = "DIR", requires = "queries")]
    pub model: Option<PathBuf>,
    /// What the OWLv2 model should look for (repeatable), e.g. --query "a dog" --query mug
    #[arg(long = "query", value_name = "TEXT", requires = "model")]
    pub queries: Vec<String>,
}

pub fn run(ctx: &Context, args: DetectArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.min_score) {
        anyhow::bail!(
            "--min-score must be between 0 and 1, got {}",
            args.min_score
        );
    }
    let bytes = rap_image::read_file(&args.image, ctx.limits())?;
    let limits = *ctx.engine()?.limits();
    let img =
        rap_image::decode(&bytes, &limits).with_context(|| args.image.display().to_string())?;
    if let Some(dir) = &args.model {
        return owlv2(ctx, &args, dir, &img);
    }
    let device = rap_app::environment::device()?;
    let net = rap_app::models::load_centernet(ctx.models_path()?, &device)?;
    let opts = DetectOptions {
        min_score: args.min_score,
        max_detections: args.max,
        ..DetectOptions::default()
    };
    let detections = net.detect(&img, &opts)?;
    if ctx.json {
        return output::print_json(&serde_json::json!({ "detections": detections }));
    }
    if detections.is_empty() {
        println!("nothing detected (scores below {})", args.min_score);
    }
    for d in &detections {
        let b = d.bbox;
        println!(
            "{:<14} {:.2}  [{:.0}, {:.0}, {:.0}, {:.0}]",
            d.label, d.score, b.x1, b.y1, b.x2, b.y2
        );
    }
    Ok(())
}

/// `--model DIR --query TEXT...`: OWLv2's boxes for the queries.
fn owlv2(
    ctx: &Context,
    args: &DetectArgs,
    dir: &std::path::Path,
    img: &image::RgbImage,
) -> Result<()> {
    use rap_detect::owlv2::{DetectOptions as OwlOptions, Owlv2};
    let model = Owlv2::load_on(dir, &rap_app::environment::device()?)?;
    let queries: Vec<&str> = args.queries.iter().map(String::as_str).collect();
    let opts = OwlOptions {
        threshold: args.min_score,
        max_detections: args.max,
        ..OwlOptions::default()
    };
    let found = model.detect(img, &queries, &opts)?;
    if ctx.json {
        let rows: Vec<_> = found
            .iter()
            .map(|d| {
                serde_json::json!({"label": queries[d.query], "query": d.query,
                                   "score": d.score, "box": d.bbox})
            })
            .collect();
        return output::print_json(&serde_json::json!({ "detections": rows }));
    }
    if found.is_empty() {
        println!("nothing detected (scores below {})", args.min_score);
    }
    for d in &found {
        let b = d.bbox;
        println!(
            "{:<14} {:.2}  [{:.0}, {:.0}, {:.0}, {:.0}]",
            queries[d.query], d.score, b.x1, b.y1, b.x2, b.y2
        );
    }
    Ok(())
}
