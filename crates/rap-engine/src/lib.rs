//! The `rap` engine: the one place where the memory, the encoders and the generators meet.
//!
//! Surfaces (the CLI, the server) talk to an [`Engine`] and never reach past it into storage.
//! - Remember ([`Engine::add_concept`], [`Engine::edit_concept`], ...): every change is one
//!   store transaction and is visible to the very next search.
//! - Keys ([`Engine::reindex`]): embeddings of reference images, computed with the memory's
//!   encoder when one is installed; remembering never needs a model.

mod engine;

pub use engine::{EncoderLoader, Engine, EngineConfig};
