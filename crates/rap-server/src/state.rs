//! [`AppState`]: what every handler shares - the engine, the worker pool, the generator and
//! the server's settings.

use crate::pool::WorkerPool;
use rap_core::{Generator, Message, Result, Tenant};
use rap_engine::{Engine, RetrieveOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Counts the tokens of a conversation as the generator will see it.
pub type TokenCount = Arc<dyn Fn(&[Message]) -> Result<usize> + Send + Sync>;

/// The generator behind `/v1/chat/completions`.
#[derive(Clone)]
pub struct ChatGenerator {
    pub generator: Arc<dyn Generator>,
    /// Stop strings of the model's chat template.
    pub stop: Vec<String>,
    /// The model's own token counter, when it has one (otherwise an estimate is used).
    pub count_tokens: Option<TokenCount>,
    /// Sampling temperature when the request gives none.
    pub temperature: f32,
    /// Repetition penalty of every answer (1.0 = none; small local models loop without one).
    pub repetition_penalty: f32,
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// The tenant of every request when no API key is configured.
    pub default_tenant: Tenant,
    /// Largest request body, in bytes (uploads, JSON with data URLs).
    pub max_body_bytes: usize,
    /// Time limit for a request that does no model work.
    pub request_timeout: Duration,
    /// Time limit for a request that does (retrieval, adding images, a non-streamed answer).
    pub model_timeout: Duration,
    /// Worker threads for model work, and how many jobs may wait for one.
    pub workers: usize,
    pub queue: usize,
    /// A job that waited longer than this for a worker is answered 503, not run.
    pub max_queue_wait: Duration,
    /// Whether `image_url` parts may be http(s) URLs that the server fetches.
    pub allow_image_urls: bool,
    /// Retrieval settings for chat (and the defaults of `/v1/retrieve`).
    pub retrieve: RetrieveOptions,
    /// Largest answer when a request asks for none.
    pub default_max_tokens: usize,
    /// A connection that has not sent a whole request head in this time is closed (a
    /// slow-header client cannot hold a connection open).
    pub header_read_timeout: Duration,
    /// Most bytes of text in one chat request, all messages together.
    pub max_chat_text_bytes: usize,
    /// Most images in one chat request.
    pub max_chat_images: usize,
    /// Folders of the server's disk that `POST /v1/library/scan` may index (none: no scans).
    pub library_dirs: Vec<std::path::PathBuf>,
    /// Tenants whose API keys may scan the server's disk (see [`crate::library`]).
    pub admin_tenants: Vec<Tenant>,
}

impl ServerConfig {
    pub fn new(addr: SocketAddr) -> Self {
        ServerConfig {
            addr,
            default_tenant: Tenant::default(),
            max_body_bytes: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            model_timeout: Duration::from_secs(300),
            workers: 2,
            queue: 32,
            max_queue_wait: Duration::from_secs(30),
            allow_image_urls: false,
            retrieve: RetrieveOptions::default(),
            default_max_tokens: 512,
            header_read_timeout: Duration::from_secs(10),
            max_chat_text_bytes: 256 * 1024,
            max_chat_images: 8,
            library_dirs: Vec::new(),
            admin_tenants: Vec::new(),
        }
    }
}

struct Inner {
    engine: Arc<Engine>,
    pool: WorkerPool,
    generator: std::result::Result<ChatGenerator, String>,
    config: ServerConfig,
    thumbnails: crate::library::ThumbnailCache,
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// `generator` is `Err(why)` when none could be loaded: chat then answers 503 with `why`.
    pub fn new(
        engine: Arc<Engine>,
        generator: std::result::Result<ChatGenerator, String>,
        config: ServerConfig,
    ) -> Self {
        let pool = WorkerPool::with_max_wait(config.workers, config.queue, config.max_queue_wait);
        AppState(Arc::new(Inner {
            engine,
            pool,
            generator,
            config,
            thumbnails: Default::default(),
        }))
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.0.engine
    }

    pub fn pool(&self) -> &WorkerPool {
        &self.0.pool
    }

    pub fn generator(&self) -> std::result::Result<&ChatGenerator, &str> {
        self.0.generator.as_ref().map_err(|s| s.as_str())
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    /// The photo library's thumbnails made so far.
    pub fn thumbnails(&self) -> &crate::library::ThumbnailCache {
        &self.0.thumbnails
    }
}
