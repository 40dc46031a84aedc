//! The generator a command or the server runs: the configured one (a local GGUF model, a
//! local LLaVA folder, or an OpenAI-compatible server), or the local model a command names,
//! with the generation settings that go with it.

use crate::config::{Config, GeneratorKind, DEFAULT_LOCAL_REPETITION_PENALTY};
use rap_core::{Error, GenerationParams, Generator, Message, Result};
use rap_engine::RetrieveOptions;
use rap_llm::{JinjaTemplate, OpenAiGenerator};
use rap_llm_local::llava::LmFamily;
use rap_llm_local::{GgufGenerator, LlavaGenerator, LlavaOptions};
use rap_models::pip::{self, InstallState};
use rap_models::ModelKind;
use std::path::Path;

/// Loads the local GGUF model `name` from the models dir, with its own chat template.
pub fn load_local(dir: &Path, name: &str) -> Result<(GgufGenerator, Vec<String>)> {
    let entry = pip::find(name).ok_or_else(|| {
        Error::not_found(
            "model",
            format!("{name:?}: `rap models list` shows the catalogue"),
        )
    })?;
    if entry.kind != ModelKind::Llm {
        return Err(Error::invalid(format!(
            "model {name} is not a text generator"
        )));
    }
    let state = pip::list(dir)
        .into_iter()
        .find(|m| m.name == entry.name)
        .map(|m| m.state);
    if state != Some(InstallState::Installed) {
        return Err(Error::not_installed(
            name,
            format!(
                "model {name} is not installed in {}: run `rap models install {name}` (or `rap models install default`)",
                dir.display()
            ),
        ));
    }
    let path = pip::model_path(dir, entry);
    let device = crate::environment::device()?;
    let mut generator = GgufGenerator::load_with_template(&path, &device, |_| {
        Ok(Box::new(|_: &[Message]| {
            Err(rap_core::Error::Model("no chat template yet".into()))
        }))
    })
    .map_err(|e| e.context(path.display()))?;
    let meta = generator.metadata_chat_template().clone();
    let source = meta.template.clone().ok_or_else(|| {
        Error::Model(format!(
            "{}: the model has no chat template in its metadata",
            path.display()
        ))
    })?;
    let template = JinjaTemplate::new(
        source,
        meta.bos_token.clone().unwrap_or_default(),
        meta.eos_token.clone().unwrap_or_default(),
    )?;
    let stop = template.stop_strings();
    generator.set_renderer(Box::new(move |m: &[Message]| template.render(m, true)));
    // Its id everywhere (answers, /v1/models) is the catalogue name, even when asked for by
    // an alias.
    generator.set_model_id(entry.name);
    Ok((generator, stop))
}

/// The template a LLaVA model is prompted with: the config's, except that a Phi-3 language
/// model (RAP-Phi3-mini) gets phi3_instruct when the config names a Vicuna / LLaVA one, which
/// it was never trained on (the config's default is vicuna_v1, RAP-LLaVA's).
pub fn llava_template(configured: &str, family: LmFamily) -> Result<rap_llm::Template> {
    let name = match (family, configured) {
        (LmFamily::Phi3, "vicuna_v1" | "llava_v0") => "phi3_instruct",
        (_, name) => name,
    };
    rap_llm::Template::builtin(name)
}

/// Loads the local LLaVA folder `dir` (`[generator] path`, or an installed model) with the
/// config's `lora` adapters and `[generator.llava]` settings, prompted with
/// [`llava_template`].
pub fn load_llava(config: &Config, dir: &Path) -> Result<(LlavaGenerator, Vec<String>)> {
    load_llava_with_tower(config, dir, None)
}

/// The CLIP tower an installed RAP checkpoint uses when its folder has none.
pub const LLAVA_TOWER: &str = "clip-vit-large-patch14-336";

/// [`load_llava`] with the CLIP tower's folder given (an installed
/// `clip-vit-large-patch14-336` for a checkpoint installed from the Hub).
pub fn load_llava_with_tower(
    config: &Config,
    dir: &Path,
    vision_tower: Option<std::path::PathBuf>,
) -> Result<(LlavaGenerator, Vec<String>)> {
    let opts = LlavaOptions {
        lora: config.generator.lora.clone(),
        device: Some(crate::environment::device()?),
        dtype: crate::environment::dtype()?,
        quantize: config.generator.llava.quantize()?,
        vision_tower,
        ..Default::default()
    };
    let mut generator = LlavaGenerator::load(
        dir,
        &opts,
        Box::new(|_: &[Message]| Err(Error::Model("no template yet".into()))),
    )
    .map_err(|e| e.context(format_args!("generator.path {}", dir.display())))?;
    let template = llava_template(&config.generator.template, generator.config().text.family)?;
    let stop = template.stop_strings();
    generator.set_renderer(Box::new(move |m: &[Message]| template.render(m, true)));
    Ok((generator, stop))
}

/// Whether `name` is a LLaVA generator registered in the models dir (`rap models install
/// rap-phi3-mini`, or `rap models add NAME --path DIR`).
fn is_installed_llava(models_dir: &Path, name: &str) -> Result<bool> {
    Ok(rap_models::hub::manifest(models_dir, name)?
        .is_some_and(|m| m.kind == rap_models::hub::HfKind::Generator))
}

/// Whether a LLaVA folder finds its CLIP tower by itself (in its weights or beside them).
fn folder_has_tower(dir: &Path) -> bool {
    let Ok(config) = rap_llm_local::llava::LlavaConfig::from_dir(dir) else {
        return false;
    };
    if config.layout == rap_llm_local::llava::Layout::Hf {
        return true;
    }
    let named = config
        .mm_vision_tower
        .as_deref()
        .and_then(|n| Path::new(n).file_name().map(|f| dir.join(f)));
    [named, Some(dir.join("vision_tower"))]
        .into_iter()
        .flatten()
        .any(|p| p.join("config.json").is_file())
}

/// The generator a command runs: the configured one, or the local model `--model` names.
pub enum LoadedGenerator {
    /// A local GGUF model and its template's stop strings.
    Local(Box<GgufGenerator>, Vec<String>),
    /// A local LLaVA model and its template's stop strings.
    Llava(Box<LlavaGenerator>, Vec<String>),
    Remote(Box<OpenAiGenerator>),
}

impl LoadedGenerator {
    /// Loads the local model `model` if given, else what the config selects.
    pub fn load(models_dir: &Path, config: &Config, model: Option<&str>) -> Result<Self> {
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
            (_, Some(name)) if is_installed_llava(models_dir, name)? => {
                let m = rap_models::hub::manifest(models_dir, name)?
                    .ok_or_else(|| Error::not_found("model", name.to_string()))?;
                let tower = rap_models::hub::manifest(models_dir, LLAVA_TOWER)?
                    .map(|t| t.dir)
                    .filter(|_| !folder_has_tower(&m.dir));
                let (mut g, stop) = load_llava_with_tower(config, &m.dir, tower)
                    .map_err(|e| e.context(format_args!("model {name}")))?;
                g.set_model_id(m.name);
                Ok(LoadedGenerator::Llava(Box::new(g), stop))
            }
            (GeneratorKind::Local, _) | (_, Some(_)) => {
                let name = model.unwrap_or(&config.generator.model);
                let (g, stop) = load_local(models_dir, name)?;
                Ok(LoadedGenerator::Local(Box::new(g), stop))
            }
            (GeneratorKind::Openai, None) => {
                let cfg = config
                    .generator
                    .openai
                    .clone()
                    .ok_or_else(|| Error::invalid("[generator.openai] is missing"))?;
                // The API key from the variable `api_key_env` names.
                let key = |name: &str| std::env::var(name).ok();
                Ok(LoadedGenerator::Remote(Box::new(
                    OpenAiGenerator::with_key_lookup(cfg, key)?,
                )))
            }
        }
    }

    pub fn generator(&self) -> &dyn Generator {
        match self {
            LoadedGenerator::Local(g, _) => g.as_ref(),
            LoadedGenerator::Llava(g, _) => g.as_ref(),
            LoadedGenerator::Remote(g) => g.as_ref(),
        }
    }

    /// Generation settings: the command's options over the config's, over this model's
    /// defaults (the repetition penalty), with its stop strings.
    pub fn params(
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
    pub fn command_params(
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
    pub fn default_max_tokens(&self) -> usize {
        match self {
            LoadedGenerator::Local(..) => 256,
            LoadedGenerator::Llava(..) | LoadedGenerator::Remote(_) => 512,
        }
    }

    /// The repetition penalty when neither the command nor the config sets one: small local
    /// GGUF models loop without it; LLaVA keeps RAP's reference decoding (none).
    pub fn default_repetition_penalty(&self) -> f32 {
        match self {
            LoadedGenerator::Local(..) => DEFAULT_LOCAL_REPETITION_PENALTY,
            LoadedGenerator::Llava(..) | LoadedGenerator::Remote(_) => 1.0,
        }
    }

    /// Stop strings the caller must pass (a local model's template's end markers).
    pub fn stop(&self) -> Vec<String> {
        match self {
            LoadedGenerator::Local(_, stop) | LoadedGenerator::Llava(_, stop) => stop.clone(),
            LoadedGenerator::Remote(_) => Vec::new(),
        }
    }

    /// Counts a conversation's tokens: exactly for a local model, estimated for a server.
    pub fn count_tokens(&self, messages: &[Message]) -> rap_core::Result<usize> {
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
pub fn retrieve_options(config: &Config) -> RetrieveOptions {
    RetrieveOptions {
        top_k: config.retrieval.top_k,
        threshold: config.retrieval.threshold,
        margin: config.retrieval.margin,
        stability_weight: config.retrieval.stability_weight,
        cascade: if config.retrieval.cascade {
            RetrieveOptions::default().cascade
        } else {
            None
        },
        ..RetrieveOptions::default()
    }
}
