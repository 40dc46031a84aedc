//! Global options and what they resolve to: the data dir, the tenant, the engine.

use anyhow::{Context as _, Result};
use rap_core::ImageEncoder;
use rap_core::Tenant;
use rap_engine::{EncoderLoader, Engine, EngineConfig};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Largest image accepted, in pixels (width x height)
    #[arg(long, global = true, env = "RAP_MAX_PIXELS", default_value_t = rap_image::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
}

/// What every command gets.
pub struct Context {
    pub tenant: Tenant,
    pub json: bool,
    pub data_dir: PathBuf,
    config: EngineConfig,
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
        let mut config = EngineConfig::new(&data_dir);
        config.limits.max_pixels = args.max_pixels;
        Ok(Context {
            tenant,
            json: args.json,
            data_dir,
            config,
            engine: std::sync::OnceLock::new(),
        })
    }

    /// The image limits from `--max-pixels`.
    pub fn limits(&self) -> &rap_image::Limits {
        &self.config.limits
    }

    /// Where models are installed: `$RAP_MODELS_DIR`, else `DATA_DIR/models`.
    pub fn models_dir(&self) -> PathBuf {
        rap_vision::models_dir(&self.data_dir)
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

    /// A new engine of its own (for a long-running owner such as the server).
    pub fn open_engine(&self) -> Result<Engine> {
        let models_dir = self.models_dir();
        let loader: EncoderLoader = Box::new(move || {
            let installed = rap_vision::models::list(&models_dir).into_iter().any(|m| {
                m.name == "efficientnet-lite0"
                    && m.state == rap_vision::models::InstallState::Installed
            });
            if !installed {
                return Ok(None);
            }
            let encoder: Arc<dyn ImageEncoder> =
                Arc::from(rap_vision::load_default_encoder(&models_dir)?);
            Ok(Some(encoder))
        });
        let models_dir = self.models_dir();
        let resolver: rap_engine::EncoderResolver = Box::new(move |name| {
            Ok(Arc::from(rap_vision::hub::resolve_encoder(
                &models_dir,
                name,
            )?))
        });
        let mut config = self.config.clone();
        config.memory = crate::commands::config::memory_backend(&self.data_dir)?;
        config.blob_store = crate::commands::config::blob_store(&self.data_dir)?;
        let mut engine = Engine::open(config, loader)?.with_encoder_resolver(resolver);
        // `[retrieval] detector`: its boxes join the regions of every image query.
        if let Some(p) = crate::commands::config::detector(&self.data_dir, &self.models_dir())? {
            engine = engine.with_region_proposer(p);
        }
        Ok(engine)
    }
}
