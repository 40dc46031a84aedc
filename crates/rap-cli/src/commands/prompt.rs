//! `rap prompt`: shows exactly what a model would get for a question - the template-rendered
//! prompt string with an `<image>` placeholder per image - without running any model.
//!
//! `--json` prints `{"template", "prompt", "images", "concepts", "mode", "warnings"}`. `images`
//! lists the images in the order the model gets them: the query image's path as given, then
//! each concept's reference image as `image:<sha256>` (the image's id in the memory; `rap
//! export` writes it out as a file).

use crate::context::Context;
use anyhow::Result;
use rap_engine::{PromptImage, Question, RetrieveOptions, Target};
use rap_llm::Template;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PromptArgs {
    /// The question
    pub question: String,
    /// The query image
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Use this concept (repeat for several, in prompt order); skips retrieval
    #[arg(long = "concept", value_name = "NAME")]
    pub concepts: Vec<String>,
    /// Conversation template: vicuna_v1, llava_v0, phi3_instruct, chatml [default: the
    /// config's, else vicuna_v1]
    #[arg(long)]
    pub template: Option<String>,
    /// Show the text-only variant (for a model that cannot see images)
    #[arg(long)]
    pub text_only: bool,
    /// At most this many retrieved concepts [default: the config's]
    #[arg(long)]
    pub top_k: Option<usize>,
}

pub fn run(ctx: &Context, args: PromptArgs) -> Result<()> {
    let config = ctx.config()?;
    let template_name = args
        .template
        .clone()
        .unwrap_or_else(|| config.generator.template.clone());
    let template = Template::builtin(&template_name)?;
    let image = match &args.image {
        Some(p) => Some(rap_image::read_file(p, ctx.limits())?),
        None => None,
    };
    let question = Question {
        text: &args.question,
        image: image.as_deref(),
        concepts: args.concepts.clone(),
        // The config's whole decision (floor, margin, stability weight, cascade), as `rap ask`.
        retrieve: RetrieveOptions {
            top_k: args.top_k.unwrap_or(config.retrieval.top_k),
            ..rap_app::generator::retrieve_options(&config)
        },
    };
    let target = Target {
        accepts_images: !args.text_only,
        ..Target::default()
    };
    let engine = ctx.engine()?;
    let conversation = engine.conversation(&ctx.tenant, &question, &target)?;
    let prompt = conversation.render(&template)?;
    let images: Vec<String> = conversation
        .images
        .iter()
        .map(|i| match i {
            PromptImage::Query => args
                .image
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            PromptImage::Concept { id, .. } => format!("image:{id}"),
        })
        .collect();
    for w in &conversation.warnings {
        eprintln!("warning: {w}");
    }
    if ctx.json {
        return crate::output::print_json(&serde_json::json!({
            "template": template.name(),
            "prompt": prompt,
            "images": images,
            "concepts": conversation.concepts,
            "mode": conversation.mode.as_str(),
            "warnings": conversation.warnings,
        }));
    }
    println!("{prompt}");
    Ok(())
}
