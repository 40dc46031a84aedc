//! `rap ask`: the whole pipeline - retrieve, lay out, generate - with the configured generator,
//! streaming the answer to the terminal, then listing the concepts used with their scores.
//!
//! The local generator (the default) is a text-only GGUF model from the models dir, prompted
//! with its own Jinja chat template; it cannot see images, so it gets the retrieved concepts as
//! text and the answer is marked `[text-only]` (`"mode": "text-only"` in JSON). An
//! OpenAI-compatible server that takes images gets the RAP layout with the images, and so does a
//! local LLaVA-1.5 folder named by `[generator] path` (prompted with `[generator] template`).

use crate::context::Context;
use anyhow::Result;
pub(crate) use rap_app::generator::retrieve_options;
use rap_core::Message;
use rap_engine::Question;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct AskArgs {
    /// The question
    pub question: String,
    /// The query image
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Local model (catalogue name) [default: the config's, else smollm2-135m-instruct]
    #[arg(long)]
    pub model: Option<String>,
    /// A local LLaVA model's weights: none, q8_0 or q4k, quantized while loading
    /// [default: the config's generator.llava.quantize]
    #[arg(long, value_name = "none|q8_0|q4k")]
    pub quantize: Option<String>,
    /// Use this concept (repeat for several, in prompt order); skips retrieval
    #[arg(long = "concept", value_name = "NAME")]
    pub concepts: Vec<String>,
    /// Most tokens in the answer [default: 256 for a local GGUF model, else 512]
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy [default: the config's, else 0.2]
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Random seed for sampling
    #[arg(long)]
    pub seed: Option<u64>,
    /// Penalty on repeated tokens, 1 = none [default: the config's, else 1.1 for a local GGUF
    /// model, 1 for LLaVA; a server is not sent it]
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
}

/// Writes streamed text to stdout (nothing with `--json`); a closed stdout (the reader went
/// away) returns `false`, which cancels generation.
pub(crate) fn stream_to_stdout(json: bool) -> impl FnMut(&str) -> bool {
    let mut stdout = std::io::stdout();
    move |t: &str| {
        if json {
            return true;
        }
        stdout
            .write_all(t.as_bytes())
            .and_then(|_| stdout.flush())
            .is_ok()
    }
}

/// `<bo> 0.812 (image), <dug> 1.000 (text)`.
pub(crate) fn concept_list(concepts: &[rap_engine::UsedConcept]) -> String {
    concepts
        .iter()
        .map(|c| {
            let via = serde_json::to_value(c.via)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("<{}> {:.3} ({via})", c.name, c.score)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One concept of an answer as JSON: how it was found, its score and, when it was seen in the
/// image, where (`box`, pixels of the query image).
pub(crate) fn used_json(c: &rap_engine::UsedConcept) -> serde_json::Value {
    let mut v = serde_json::json!({ "name": c.name, "score": c.score, "via": c.via });
    if let Some(b) = c.bbox {
        v["box"] = serde_json::json!([b.x1, b.y1, b.x2, b.y2]);
    }
    v
}

/// The `--json` form of an answer.
pub(crate) fn answer_json(answer: &rap_engine::Answer) -> serde_json::Value {
    serde_json::json!({
        "answer": answer.text.trim(),
        "mode": answer.mode.as_str(),
        "concepts": answer.concepts.iter().map(used_json).collect::<Vec<_>>(),
        "model": answer.model,
        "finish_reason": answer.finish_reason,
    })
}

pub fn run(ctx: &Context, args: AskArgs) -> Result<()> {
    let mut config = ctx.config()?;
    crate::context::apply_quantize(&mut config, args.quantize.as_deref())?;
    let loaded = ctx.generator(&config, args.model.as_deref())?;
    let image = match &args.image {
        Some(p) => Some(rap_image::read_file(p, ctx.limits())?),
        None => None,
    };
    let question = Question {
        text: &args.question,
        image: image.as_deref(),
        concepts: args.concepts.clone(),
        retrieve: retrieve_options(&config),
    };
    let params = loaded.command_params(
        &config,
        args.max_tokens,
        args.temperature,
        args.seed,
        args.repetition_penalty,
    );
    let engine = ctx.engine()?;
    let count = |m: &[Message]| loaded.count_tokens(m);
    let answer = engine.answer(
        &ctx.tenant,
        &question,
        loaded.generator(),
        Some(&count),
        &params,
        &mut stream_to_stdout(ctx.json),
    )?;
    for w in &answer.warnings {
        eprintln!("warning: {w}");
    }
    if ctx.json {
        return crate::output::print_json(&answer_json(&answer));
    }
    println!();
    let mode = if answer.mode == rap_engine::Mode::TextOnly {
        " [text-only]"
    } else {
        ""
    };
    if answer.concepts.is_empty() {
        println!("-- {}{mode}: no concept used", answer.model);
    } else {
        println!(
            "-- {}{mode}: {}",
            answer.model,
            concept_list(&answer.concepts)
        );
    }
    Ok(())
}
