//! Global options and what they resolve to: the data dir, the tenant, and the application
//! (`rap_app::App`: configuration, models, memory, engine, generator).

use anyhow::{Context as _, Result};
use rap_app::config::Config;
use rap_app::App;
use rap_core::Tenant;
use rap_engine::Engine;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct GlobalArgs {
    /// Where the memory lives [default: $RAP_DATA_DIR, else the XDG data dir]
    #[arg(long, global = true, env = "RAP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Whose memory to use; tenants never see each other's concepts
    #[arg(long, global = true, env = "RAP_TENANT", default_value = "default")]
    pub tenant: String,
    /// Machine-readable JSON output
    #[arg(long, global = true)]
    pub json: bool,
    /// Largest image accepted, in pixels (width x height) [default: [limits] max_pixels, 100000000]
    #[arg(long, global = true, env = "RAP_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
}

/// What every command gets.
pub struct Context {
    pub tenant: Tenant,
    pub json: bool,
    pub data_dir: PathBuf,
    app: App,
    engine: std::sync::OnceLock<Engine>,
}

fn default_data_dir() -> Result<PathBuf> {
    directories::ProjectDirs::from("", "", "rap")
        .map(|d| d.data_dir().to_path_buf())
        .context(
            "cannot find a home directory for the data dir: pass --data-dir or set RAP_DATA_DIR",
        )
}

impl Context {
    pub fn new(args: GlobalArgs) -> Result<Self> {
        let data_dir = match args.data_dir {
            Some(d) => d,
            None => default_data_dir()?,
        };
        let tenant = Tenant::new(args.tenant)?;
        Ok(Context {
            tenant,
            json: args.json,
            app: App::new(&data_dir, args.max_pixels),
            data_dir,
            engine: std::sync::OnceLock::new(),
        })
    }

    /// The application: configuration, models, memory, generators.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The input limits (`[limits]`, `--max-pixels`).
    pub fn limits(&self) -> &rap_image::Limits {
        self.app.limits()
    }

    /// Where models are installed: `$RAP_MODELS_DIR`, else `[models] dir` in config.toml, else
    /// the user's cache dir (`~/.cache/rap/models`).
    pub fn models_dir(&self) -> Result<PathBuf> {
        Ok(self.app.models_dir()?.to_path_buf())
    }

    /// The models directory as a path.
    pub fn models_path(&self) -> Result<&Path> {
        Ok(self.app.models_dir()?)
    }

    /// The whole configuration, checked (for commands that generate).
    pub fn config(&self) -> Result<Config> {
        Ok(self.app.config()?)
    }

    /// The engine, opened on first use. Its encoder is the installed default, loaded only
    /// when a command needs it; its region proposer the configured detector, if any.
    pub fn engine(&self) -> Result<&Engine> {
        if let Some(e) = self.engine.get() {
            return Ok(e);
        }
        let engine = self.open_engine()?;
        Ok(self.engine.get_or_init(|| engine))
    }

    /// The generator `config` selects (or the local model `model`), loaded with a spinner on
    /// the terminal: a local model takes seconds to load.
    pub fn generator(
        &self,
        config: &Config,
        model: Option<&str>,
    ) -> Result<rap_app::generator::LoadedGenerator> {
        let spinner = crate::output::spinner(self.json, "loading the model");
        let loaded = self.app.generator(config, model);
        spinner.finish_and_clear();
        Ok(loaded?)
    }

    /// A new engine of its own (for a long-running owner such as the server).
    pub fn open_engine(&self) -> Result<Engine> {
        Ok(self.app.open_engine()?)
    }
}

/// `--quantize`: overrides `[generator.llava] quantize` for this command (checked here, so a
/// bad value fails before any model loads).
pub fn apply_quantize(config: &mut rap_app::config::Config, quantize: Option<&str>) -> Result<()> {
    if let Some(q) = quantize {
        config.generator.llava.quantize = q.to_string();
        config
            .generator
            .llava
            .quantize()
            .map_err(|e| anyhow::anyhow!("--quantize: {}", e.report()))?;
    }
    Ok(())
}
