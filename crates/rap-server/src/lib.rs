//! `rap-server`: `rap` over HTTP - the REST API, an OpenAI-compatible personalized chat
//! endpoint, API keys per tenant, and the web page - all in one process.
//!
//! - [`server`]: the router, the middleware (request ids and logs, timeouts, body limits,
//!   authentication) and [`serve`] with graceful shutdown.
//! - [`pool`]: the bounded worker pool that runs model work (decoding, embedding, generating)
//!   off the async runtime; when it is full a request gets 503 with `Retry-After`.
//! - [`auth`]: with API keys configured, each request's `Authorization: Bearer KEY` picks its
//!   tenant; without keys every request acts as the server's default tenant.
//! - [`api`]: concepts, images and retrieval (`/v1/concepts`, `/v1/images`, `/v1/retrieve`).
//! - [`library`]: the photo library (`/v1/library/find`, thumbnails, `/v1/library/scan`).
//! - [`openai`]: `/v1/models` and `/v1/chat/completions` (streaming or not): the first user
//!   turn is rewritten into the RAP layout by the engine, the configured generator answers.
//! - [`openapi`]: `/openapi.json`, built from the same route table the router is built from.
//! - [`web`]: the page at `/`, its assets embedded in the binary.
//! - [`error`]: the one error type; every failure is `{"error": {"message", "type"}}`.
//!
//! The server never reaches past [`rap_engine::Engine`] into storage.

#![forbid(unsafe_code)]
// The OpenAPI schemas are one large `json!` literal.
#![recursion_limit = "256"]

pub mod api;
pub mod auth;
pub mod error;
pub mod library;
pub mod openai;
pub mod openapi;
pub mod pool;
pub mod server;
pub mod state;
pub mod web;

pub use error::ApiError;
pub use server::{check_bind, router, serve};
pub use state::{AppState, ChatGenerator, ServerConfig, TokenCount};
