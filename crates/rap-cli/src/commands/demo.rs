//! `rap demo`: the main job end to end on the embedded default - install the default models,
//! remember a few concepts from one photo each, find them in photos it has not seen, and ask
//! the configured generator (the local text model by default) about one of those photos. The
//! photos are the ones built into the binary ([`crate::demo_photos`]) unless `--photos` names
//! a folder.

use super::ask::{answer_json, concept_list, stream_to_stdout};
use crate::context::Context;
use crate::output;
use anyhow::{bail, Result};
use rap_app::config::GeneratorKind;
use rap_core::{NewConcept, Tenant};
use rap_engine::{Question, RetrieveOptions};
use rap_models::pip::{self, Progress};
use std::path::PathBuf;

/// One demo photo: built in, or a file of `--photos`.
enum DemoPhoto {
    BuiltIn(&'static crate::demo_photos::Photo),
    File(PathBuf),
}

impl DemoPhoto {
    /// How the photo is named in the output.
    fn label(&self) -> String {
        match self {
            DemoPhoto::BuiltIn(p) => format!("built-in {}", p.label),
            DemoPhoto::File(path) => path.display().to_string(),
        }
    }

    fn bytes(&self) -> Result<Vec<u8>> {
        match self {
            DemoPhoto::BuiltIn(p) => Ok(p.bytes.to_vec()),
            DemoPhoto::File(path) => {
                Ok(std::fs::read(path).map_err(|e| rap_core::Error::io(path, e))?)
            }
        }
    }
}

/// The subjects to remember, each with its reference photo then its query photo.
fn demo_subjects(photos: Option<&PathBuf>, count: usize) -> Result<Vec<(String, [DemoPhoto; 2])>> {
    let Some(dir) = photos else {
        return Ok(crate::demo_photos::SUBJECTS
            .iter()
            .take(count)
            .map(|s| {
                let [first, second] = &s.photos;
                (
                    s.name.to_string(),
                    [DemoPhoto::BuiltIn(first), DemoPhoto::BuiltIn(second)],
                )
            })
            .collect());
    };
    if !dir.is_dir() {
        bail!(
            "no photos at {}: pass --photos DIR, a folder with one folder of photos per subject (or leave it out for the built-in photos)",
            dir.display()
        );
    }
    Ok(rap_eval::retrieval::subjects(dir)?
        .into_iter()
        .filter_map(|(name, photos)| match photos.as_slice() {
            [first, second, ..] => Some((
                name,
                [
                    DemoPhoto::File(first.clone()),
                    DemoPhoto::File(second.clone()),
                ],
            )),
            _ => None,
        })
        .take(count)
        .collect())
}

/// The tenant the demo writes to; it is emptied first, so the demo can run again.
const DEMO_TENANT: &str = "demo";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// A folder with one folder of photos per subject (at least two photos each: the first is
    /// remembered, the second searched) [default: the built-in photos of four subjects]
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,
    /// How many subjects to remember at most
    #[arg(long, default_value_t = 6)]
    pub subjects: usize,
    /// Local model (catalogue name) that answers, installed if needed, e.g.
    /// `qwen2.5-coder-1.5b-instruct`: better answers than the default's, about ten times
    /// slower [default: the configured generator]
    #[arg(long)]
    pub model: Option<String>,
}

pub fn run(ctx: &Context, args: DemoArgs) -> Result<()> {
    let subjects = demo_subjects(args.photos.as_ref(), args.subjects)?;
    if subjects.is_empty() {
        bail!("no subject with at least two photos to remember and search");
    }
    let say = |line: String| {
        if !ctx.json {
            println!("{line}");
        }
    };
    let config = ctx.config()?;
    let mut needed = vec!["efficientnet-lite0".to_string()];
    match &args.model {
        Some(m) => needed.push(m.clone()),
        None if config.generator.kind == GeneratorKind::Local => {
            needed.push(config.generator.model.clone())
        }
        None => {}
    }
    say(format!(
        "1. Installing the models (once): {}...",
        needed.join(", ")
    ));
    for name in &needed {
        let bar = output::progress(0, ctx.json, "installing");
        pip::install(
            name,
            ctx.models_path()?,
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
    say(format!(
        "2. Remembering {} concepts, one photo each (tenant `{DEMO_TENANT}`):",
        subjects.len()
    ));
    for (name, photos) in &subjects {
        let image = engine.image_from_bytes(photos[0].bytes()?)?;
        let new = NewConcept {
            name: name.clone(),
            info: format!("<{name}> is the user's {}.", name.replace('_', " ")),
            ..Default::default()
        };
        engine.add_concept(&tenant, &new, vec![image])?;
        say(format!("   <{name}>  from {}", photos[0].label()));
    }

    say("3. Finding them in photos rap has not seen:".into());
    let options = RetrieveOptions {
        top_k: 1,
        ..RetrieveOptions::default()
    };
    let mut results = Vec::new();
    for (name, photos) in &subjects {
        let query = &photos[1];
        let bytes = query.bytes()?;
        let retrieval = engine.retrieve(&tenant, Some(&bytes), None, &options)?;
        let found = retrieval.hits.first().map(|h| (h.name.clone(), h.score));
        let verdict = match &found {
            Some((n, _)) if n == name => "right",
            Some(_) => "wrong",
            None => "nothing above the threshold",
        };
        say(format!(
            "   {} -> {}  ({verdict})",
            query.label(),
            found
                .as_ref()
                .map(|(n, s)| format!("<{n}> {s:.2}"))
                .unwrap_or_else(|| "-".into())
        ));
        results.push(serde_json::json!({
            "query": query.label(), "expected": name,
            "found": found.as_ref().map(|f| &f.0), "score": found.as_ref().map(|f| f.1),
        }));
    }

    // Ask about the first query photo: retrieval, the RAP prompt, the generator's answer.
    let asked = &subjects[0].1[1];
    let question = "Who is in this photo, and what do you know about them?";
    say(format!("4. Asking about {}: {question}", asked.label()));
    let generator = ctx.generator(&config, args.model.as_deref())?;
    let bytes = asked.bytes()?;
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
            "asked": { "photo": asked.label(), "question": question, "answer": answer_json(&answer) },
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
