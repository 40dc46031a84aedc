//! `rap serve`: the HTTP API, the OpenAI-compatible personalized chat endpoint and the web
//! page, in one process (see the `rap-server` crate). Settings come from `[server]` in
//! `DATA_DIR/config.toml` and the flags; the generator is the configured one (`rap ask`'s).
//! Logs go to stderr (`RUST_LOG`, default `info` for the server); SIGINT or SIGTERM stop it
//! after the requests in flight finish.

use crate::context::Context;
use anyhow::{Context as _, Result};
use rap_app::config::Config;
use rap_app::generator::LoadedGenerator;
use rap_core::{Generator, Message};
use rap_server::{AppState, ChatGenerator, ServerConfig, TokenCount};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, printed at start)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Allow a non-loopback address without API keys (anyone reaching it can read and change
    /// the memory)
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Threads for model work [default: the config's, else 2]
    #[arg(long)]
    pub workers: Option<usize>,
    /// Requests that may wait for a worker before the server answers 503 [default: the
    /// config's, else 32]
    #[arg(long)]
    pub queue: Option<usize>,
    /// Local model (catalogue name) [default: the config's]
    #[arg(long)]
    pub model: Option<String>,
    /// A local LLaVA model's weights: none, q8_0 or q4k, quantized while loading
    /// [default: the config's generator.llava.quantize]
    #[arg(long, value_name = "none|q8_0|q4k")]
    pub quantize: Option<String>,
}

/// The configured generator, or why there is none (chat then answers 503 with it).
fn load_generator(
    ctx: &Context,
    config: &Config,
    model: Option<&str>,
) -> Result<ChatGenerator, String> {
    let loaded = Arc::new(ctx.app().generator(config, model).map_err(|e| e.report())?);
    // A server's tokens are only estimated; a local model counts its own.
    let count_tokens: Option<TokenCount> = match loaded.as_ref() {
        LoadedGenerator::Remote(_) => None,
        _ => {
            let counter = loaded.clone();
            Some(Arc::new(move |m: &[Message]| counter.count_tokens(m)))
        }
    };
    // The configured generation settings, as `rap ask` uses them.
    let repetition_penalty = loaded.params(config, 1, None, None).repetition_penalty;
    Ok(ChatGenerator {
        repetition_penalty,
        stop: loaded.stop(),
        generator: loaded as Arc<dyn Generator>,
        count_tokens,
        temperature: config.generator.temperature,
    })
}

pub fn run(ctx: &Context, args: ServeArgs) -> Result<()> {
    let mut config = ctx.config()?;
    crate::context::apply_quantize(&mut config, args.quantize.as_deref())?;
    let engine = Arc::new(ctx.open_engine()?);
    let keys_required = engine.api_keys_required()?;
    rap_server::check_bind(args.addr, keys_required, args.insecure_no_auth)
        .map_err(anyhow::Error::msg)?;

    let generator = load_generator(ctx, &config, args.model.as_deref());
    match &generator {
        Ok(g) => tracing::info!(model = %g.generator.info().model, "chat generator ready"),
        Err(why) => tracing::warn!("no chat generator (chat completions will answer 503): {why}"),
    }
    match engine.encoder() {
        Ok(Some(e)) => tracing::info!(encoder = %e.info().id, "image encoder ready"),
        Ok(None) => tracing::warn!("no image encoder installed: retrieval by image answers 503 until `rap models install default`"),
        Err(e) => tracing::warn!("the image encoder did not load: {e}"),
    }

    let mut server = ServerConfig::new(args.addr);
    server.default_tenant = ctx.tenant.clone();
    server.workers = args.workers.unwrap_or(config.server.workers).max(1);
    server.queue = args.queue.unwrap_or(config.server.queue);
    server.max_body_bytes = config.server.max_body_mb.max(1) * 1024 * 1024;
    server.allow_image_urls = config.server.allow_image_urls;
    server.library_dirs = config.server.library_dirs.clone();
    server.admin_tenants = config
        .server
        .admin_tenants
        .iter()
        .map(rap_core::Tenant::new)
        .collect::<rap_core::Result<_>>()?;
    server.retrieve.top_k = config.retrieval.top_k;
    server.retrieve.threshold = config.retrieval.threshold;
    server.model_timeout = Duration::from_secs(config.limits.model_timeout_secs);
    server.header_read_timeout = Duration::from_secs(config.limits.header_read_timeout_secs);
    server.max_chat_text_bytes = config.limits.max_chat_text_bytes as usize;
    server.max_chat_images = config.limits.max_chat_images as usize;

    let state = AppState::new(engine, generator, server.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rap-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let local = listener.local_addr()?;
        let url = format!("http://{local}");
        if ctx.json {
            // One line, so a supervisor can read it before the server's logs.
            println!(
                "{}",
                serde_json::json!({
                    "listening": url,
                    "api_keys": keys_required,
                    "tenant": if keys_required { None } else { Some(ctx.tenant.as_str()) },
                })
            );
        } else {
            println!("rap serving on {url}  (page: {url}/  API: {url}/openapi.json)");
            if keys_required {
                println!(
                    "API keys are configured: every request needs `Authorization: Bearer KEY`"
                );
            } else {
                println!("no API keys: every request acts as tenant {}", ctx.tenant);
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(%local, workers = server.workers, queue = server.queue, "listening");
        rap_server::serve(listener, state, rap_server::server::shutdown_signal())
            .await
            .context("serving")?;
        tracing::info!("stopped");
        Ok(())
    })
}
