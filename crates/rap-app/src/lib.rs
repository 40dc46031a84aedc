//! The `rap` application: the one place that knows every backend and reads the environment.
//! It parses the configuration once and opens what the surfaces (the CLI, the server) run:
//! the memory store, the engine with its encoders and detector, and the generator.
//!
//! - [`config`]: `DATA_DIR/config.toml` with its environment overrides;
//! - [`environment`]: the other environment variables (models dir, install tools, device);
//! - [`store`]: the embedded or the PostgreSQL memory, as `[memory]` chooses;
//! - [`models`]: model names resolved by the models directory (`rap-models`) and loaded by the
//!   crates with the model code (`rap-vision`, `rap-detect`);
//! - [`generator`]: the configured generator (local GGUF, local LLaVA, or a server).
//!
//! May depend on every library crate; nothing but the surfaces depends on it.

#![forbid(unsafe_code)]

pub mod config;
pub mod environment;
pub mod generator;
pub mod models;
pub mod store;

use config::Config;
use rap_core::{Error, ImageEncoder, RegionProposer, Result};
use rap_engine::{EncoderLoader, EncoderResolver, Engine, EngineConfig};
use rap_image::Limits;
use rap_memory::ConceptStore;
use rap_models::Tools;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// One data dir's application: its configuration (read once), models directory and tools.
pub struct App {
    data_dir: PathBuf,
    /// `--max-pixels`, over `[limits] max_pixels`.
    max_pixels: Option<u64>,
    limits: OnceLock<Limits>,
    /// Resolved on first use (it depends on the configuration).
    models_dir: OnceLock<PathBuf>,
    tools: Tools,
    /// `config.toml` with the environment overrides, unchecked (see [`Config::read`]).
    settings: OnceLock<Config>,
}

impl App {
    /// The application over `data_dir`; `max_pixels` (the command line's) overrides
    /// `[limits] max_pixels`. Nothing is read yet but the environment's paths and tools.
    pub fn new(data_dir: impl Into<PathBuf>, max_pixels: Option<u64>) -> Self {
        let data_dir = data_dir.into();
        App {
            models_dir: OnceLock::new(),
            tools: environment::tools(),
            data_dir,
            max_pixels,
            limits: OnceLock::new(),
            settings: OnceLock::new(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The input limits: `[limits]` of config.toml (the defaults when it cannot be read: the
    /// command that needs the configuration reports why), `--max-pixels` over its pixels.
    pub fn limits(&self) -> &Limits {
        self.limits.get_or_init(|| {
            let mut limits = match self.settings() {
                Ok(c) => c.limits.input(),
                // The command reports the unreadable file when it reads its settings.
                Err(_) => Limits::default(),
            };
            if let Some(p) = self.max_pixels {
                limits.max_pixels = p;
            }
            limits
        })
    }

    /// Where models are installed: `$RAP_MODELS_DIR`, else `[models] dir` in config.toml, else
    /// the user's cache ([`environment::default_models_dir`]).
    pub fn models_dir(&self) -> Result<&Path> {
        if let Some(d) = self.models_dir.get() {
            return Ok(d);
        }
        let settings = self.settings()?;
        let dir = match &settings.models.dir {
            Some(d) if d.is_relative() => self.data_dir.join(d),
            Some(d) => d.clone(),
            None => environment::default_models_dir(&self.data_dir),
        };
        Ok(self.models_dir.get_or_init(|| dir))
    }

    /// The programs and addresses model installs use.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// The settings as given (file and environment), read on first use and kept; unchecked,
    /// so a command checks only the sections it uses.
    pub fn settings(&self) -> Result<&Config> {
        if let Some(c) = self.settings.get() {
            return Ok(c);
        }
        let read = Config::read(&self.data_dir)?;
        Ok(self.settings.get_or_init(|| read))
    }

    /// The whole configuration, checked, with relative paths resolved against the data dir
    /// (what a command that generates needs).
    pub fn config(&self) -> Result<Config> {
        let mut config = self.settings()?.clone();
        config.check()?;
        config.resolve_paths(&self.data_dir);
        Ok(config)
    }

    /// Opens the memory `[memory]` chooses.
    pub fn open_store(&self) -> Result<Arc<dyn ConceptStore>> {
        let settings = self.settings()?;
        store::open_store(
            &settings.memory_backend()?,
            settings.memory.blob_store.as_deref(),
            &self.data_dir,
        )
    }

    /// The PostgreSQL store the configuration names, whichever backend `[memory]` chooses
    /// (for `rap migrate`, which uses both).
    pub fn open_postgres(&self) -> Result<rap_memory_postgres::PgStore> {
        let memory = &self.settings()?.memory;
        let url = memory
            .database_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    "no PostgreSQL database is given: set RAP_DATABASE_URL (or \
                     memory.database_url)",
                )
            })?;
        store::open_postgres(url, memory.blob_store.as_deref())
    }

    /// The retrieval detector `[retrieval] detector` chooses, as a region proposer (checked
    /// now, loaded at its first use); `None` when there is none.
    pub fn detector(&self) -> Result<Option<Arc<dyn RegionProposer>>> {
        let r = &self.settings()?.retrieval;
        let Some(spec) = &r.detector else {
            return Ok(None);
        };
        let settings = rap_detect::DetectorSettings {
            threshold: r.detector_threshold,
            max_boxes: r.detector_max_boxes,
        };
        // A relative folder is relative to the data dir, like generator.path.
        let spec = if !spec.contains(['/', '\\']) || Path::new(spec).is_absolute() {
            spec.clone()
        } else {
            self.data_dir.join(spec).display().to_string()
        };
        let device = environment::device()?;
        models::resolve_detector(self.models_dir()?, &spec, settings, &device)
            .map(Some)
            .map_err(|e| e.context("retrieval.detector (or RAP_DETECTOR)"))
    }

    /// A new engine over the configured memory. Its encoder is the installed default, loaded
    /// only when a command needs it; other encoders load by name; its region proposer is the
    /// configured detector, if any.
    pub fn open_engine(&self) -> Result<Engine> {
        let models_dir = self.models_dir()?.to_path_buf();
        let loader: EncoderLoader = Box::new(move || {
            if !models::default_encoder_installed(&models_dir) {
                return Ok(None);
            }
            let device = environment::device()?;
            let encoder: Arc<dyn ImageEncoder> =
                Arc::from(models::load_default_encoder(&models_dir, &device)?);
            Ok(Some(encoder))
        });
        let models_dir = self.models_dir()?.to_path_buf();
        let resolver: EncoderResolver = Box::new(move |name| {
            let device = environment::device()?;
            Ok(Arc::from(models::resolve_encoder(
                &models_dir,
                name,
                &device,
            )?))
        });
        let mut config = EngineConfig::new(&self.data_dir);
        config.limits = *self.limits();
        let store = self.open_store()?;
        // An earlier version kept the tenants' encoder choices in DATA_DIR/encoders.json.
        rap_engine::migrate_encoders_file(&self.data_dir, store.as_ref())?;
        let mut engine = Engine::with_store(config, store, loader).with_encoder_resolver(resolver);
        // `[retrieval] detector`: its boxes join the regions of every image query.
        if let Some(p) = self.detector()? {
            engine = engine.with_region_proposer(p);
        }
        Ok(engine)
    }

    /// The generator `config` selects, or the local model `model` names.
    pub fn generator(
        &self,
        config: &Config,
        model: Option<&str>,
    ) -> Result<generator::LoadedGenerator> {
        generator::LoadedGenerator::load(self.models_dir()?, config, model)
    }
}
