//! `rap ask`: the whole pipeline - retrieve, lay out, generate - with the configured generator,
//! streaming the answer to the terminal, then listing the concepts used with their scores.
//!
//! The local generator (the default) is a text-only GGUF model from the models dir, prompted
//! with its own Jinja chat template; it cannot see images, so it gets the retrieved concepts as
//! text and the answer is marked `[text-only]` (`"mode": "text-only"` in JSON). An
//! OpenAI-compatible server that takes images gets the RAP layout with the images, and so does a
//! local LLaVA-1.5 folder named by `[generator] path` (prompted with `[generator] template`).

use crate::commands::config::{Config, GeneratorKind, DEFAULT_LOCAL_REPETITION_PENALTY};
use crate::context::Context;
use anyhow::{bail, Context as _, Result};
use rap_core::{GenerationParams, Generator, Message};
use rap_engine::{Question, RetrieveOptions};
use rap_llm::{JinjaTemplate, OpenAiGenerator};
use rap_llm_local::{GgufGenerator, LlavaGenerator, LlavaOptions};
use rap_vision::models::{self, InstallState};
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

/// Loads the local GGUF model `name` from the models dir, with its own chat template.
pub(crate) fn load_local(ctx: &Context, name: &str) -> Result<(GgufGenerator, Vec<String>)> {
    let dir = ctx.models_dir();
    let entry = models::find(name).with_context(|| {
        format!("unknown model {name:?}: `rap models list` shows the catalogue")
    })?;
    if entry.kind != models::ModelKind::Llm {
        bail!("model {name} is not a text generator");
    }
    let state = models::list(&dir)
        .into_iter()
        .find(|m| m.name == entry.name)
        .map(|m| m.state);
    if state != Some(InstallState::Installed) {
        bail!(
            "model {name} is not installed in {}: run `rap models install {name}` (or `rap models install default`)",
            dir.display()
        );
    }
    let path = models::model_path(&dir, entry);
    let mut generator = GgufGenerator::load(
        &path,
        Box::new(|_| Err(rap_core::Error::Model("no chat template yet".into()))),
    )
    .with_context(|| path.display().to_string())?;
    let meta = generator.metadata_chat_template().clone();
    let source = meta.template.clone().with_context(|| {
        format!(
            "{}: the model has no chat template in its metadata",
            path.display()
        )
    })?;
    let template = JinjaTemplate::new(
        source,
        meta.bos_token.clone().unwrap_or_default(),
        meta.eos_token.clone().unwrap_or_default(),
    )?;
    let stop = template.stop_strings();
    generator.set_renderer(Box::new(move |m: &[Message]| template.render(m, true)));
    Ok((generator, stop))
}

/// Loads the local LLaVA folder the config names (`[generator] path`, `lora`), prompted with
/// the config's built-in template (vicuna_v1 for RAP-LLaVA).
pub(crate) fn load_llava(
    config: &Config,
    dir: &std::path::Path,
) -> Result<(LlavaGenerator, Vec<String>)> {
    let template = rap_llm::Template::builtin(&config.generator.template)?;
    let stop = template.stop_strings();
    let opts = LlavaOptions {
        lora: config.generator.lora.clone(),
        ..Default::default()
    };
    let generator = LlavaGenerator::load(
        dir,
        &opts,
        Box::new(move |m: &[Message]| template.render(m, true)),
    )
    .with_context(|| format!("generator.path {}", dir.display()))?;
    Ok((generator, stop))
}

/// The generator a command runs: the configured one, or the local model `--model` names.
pub(crate) enum LoadedGenerator {
    /// A local GGUF model and its template's stop strings.
    Local(Box<GgufGenerator>, Vec<String>),
    /// A local LLaVA model and its template's stop strings.
    Llava(Box<LlavaGenerator>, Vec<String>),
    Remote(OpenAiGenerator),
}

impl LoadedGenerator {
    /// Loads the local model `model` if given, else what the config selects.
    pub(crate) fn load(ctx: &Context, config: &Config, model: Option<&str>) -> Result<Self> {
        match (config.generator.kind, model) {
            (GeneratorKind::Local, None) if config.generator.path.is_some() => {
                let dir = config
                    .generator
                    .path
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""));
                let (g, stop) = load_llava(config, dir)?;
                Ok(LoadedGenerator::Llava(Box::new(g), stop))
            }
            (GeneratorKind::Local, _) | (_, Some(_)) => {
                let name = model.unwrap_or(&config.generator.model);
                let (g, stop) = load_local(ctx, name)?;
                Ok(LoadedGenerator::Local(Box::new(g), stop))
            }
            (GeneratorKind::Openai, None) => {
                let cfg = config
                    .generator
                    .openai
                    .clone()
                    .context("[generator.openai] is missing")?;
                Ok(LoadedGenerator::Remote(OpenAiGenerator::new(cfg)?))
            }
        }
    }

    pub(crate) fn generator(&self) -> &dyn Generator {
        match self {
            LoadedGenerator::Local(g, _) => g.as_ref(),
            LoadedGenerator::Llava(g, _) => g.as_ref(),
            LoadedGenerator::Remote(g) => g,
        }
    }

    /// Generation settings: the command's options over the config's, over this model's
    /// defaults (the repetition penalty), with its stop strings.
    pub(crate) fn params(
        &self,
        config: &Config,
        max_tokens: usize,
        temperature: Option<f32>,
        seed: Option<u64>,
    ) -> GenerationParams {
        GenerationParams {
            max_tokens,
            temperature: temperature.unwrap_or(config.generator.temperature),
            seed,
            stop: self.stop(),
            repetition_penalty: config
                .generator
                .repetition_penalty
                .unwrap_or_else(|| self.default_repetition_penalty()),
            ..GenerationParams::default()
        }
    }

    /// [`Self::params`] with `rap ask`/`rap chat`'s optional length and penalty.
    pub(crate) fn command_params(
        &self,
        config: &Config,
        max_tokens: Option<usize>,
        temperature: Option<f32>,
        seed: Option<u64>,
        repetition_penalty: Option<f32>,
    ) -> GenerationParams {
        let max_tokens = max_tokens.unwrap_or_else(|| self.default_max_tokens());
        let mut params = self.params(config, max_tokens, temperature, seed);
        if let Some(r) = repetition_penalty {
            params.repetition_penalty = r;
        }
        params
    }

    /// The answer length when none is asked for: the reference CLI's 512 tokens, but 256 for a
    /// local GGUF model (a small text model that does not stop would run on for minutes).
    pub(crate) fn default_max_tokens(&self) -> usize {
        match self {
            LoadedGenerator::Local(..) => 256,
            LoadedGenerator::Llava(..) | LoadedGenerator::Remote(_) => 512,
        }
    }

    /// The repetition penalty when neither the command nor the config sets one: small local
    /// GGUF models loop without it; LLaVA keeps RAP's reference decoding (none).
    pub(crate) fn default_repetition_penalty(&self) -> f32 {
        match self {
            LoadedGenerator::Local(..) => DEFAULT_LOCAL_REPETITION_PENALTY,
            LoadedGenerator::Llava(..) | LoadedGenerator::Remote(_) => 1.0,
        }
    }

    /// Stop strings the caller must pass (a local model's template's end markers).
    pub(crate) fn stop(&self) -> Vec<String> {
        match self {
            LoadedGenerator::Local(_, stop) | LoadedGenerator::Llava(_, stop) => stop.clone(),
            LoadedGenerator::Remote(_) => Vec::new(),
        }
    }

    /// Counts a conversation's tokens: exactly for a local model, estimated for a server.
    pub(crate) fn count_tokens(&self, messages: &[Message]) -> rap_core::Result<usize> {
        match self {
            LoadedGenerator::Local(g, _) => g.prompt_tokens(messages).map(|t| t.len()),
            LoadedGenerator::Llava(g, _) => g.prompt_length(messages),
            LoadedGenerator::Remote(_) => Ok(rap_engine::answer::estimate_tokens(messages)),
        }
    }
}

/// A loaded generator is itself a generator (so `rap serve` can share it between threads).
impl Generator for LoadedGenerator {
    fn info(&self) -> &rap_core::GeneratorInfo {
        self.generator().info()
    }

    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> rap_core::Result<rap_core::Generation> {
        self.generator().generate(messages, params, on_text)
    }
}

/// The config's retrieval settings.
pub(crate) fn retrieve_options(config: &Config) -> RetrieveOptions {
    RetrieveOptions {
        top_k: config.retrieval.top_k,
        threshold: config.retrieval.threshold,
        ..RetrieveOptions::default()
    }
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

/// The `--json` form of an answer.
pub(crate) fn answer_json(answer: &rap_engine::Answer) -> serde_json::Value {
    serde_json::json!({
        "answer": answer.text.trim(),
        "mode": answer.mode.as_str(),
        "concepts": answer.concepts.iter().map(|c| serde_json::json!({
            "name": c.name, "score": c.score, "via": c.via,
        })).collect::<Vec<_>>(),
        "model": answer.model,
        "finish_reason": answer.finish_reason,
    })
}

pub fn run(ctx: &Context, args: AskArgs) -> Result<()> {
    let config = Config::load(&ctx.data_dir)?;
    let loaded = LoadedGenerator::load(ctx, &config, args.model.as_deref())?;
    let image = match &args.image {
        Some(p) => Some(std::fs::read(p).with_context(|| p.display().to_string())?),
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
