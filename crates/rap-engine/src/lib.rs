//! The `rap` engine: the one place where the memory, the encoders and the generators meet.
//!
//! Surfaces (the CLI, the server) talk to an [`Engine`] and never reach past it into storage.
//! - Remember ([`Engine::add_concept`], [`Engine::edit_concept`], ...): every change is one
//!   store transaction and is visible to the very next search.
//! - Keys ([`Engine::reindex`]): embeddings of reference images, computed with the memory's
//!   encoder when one is installed; remembering never needs a model.
//! - Encoders ([`Engine::encoder_for`], [`Engine::reindex_with`], [`Engine::search_by_words`]):
//!   each memory records the encoder its keys come from (in the store, shared by every process
//!   on it); switching re-embeds, resumably.
//! - Retrieve ([`Engine::retrieve`]): regions of the query image, encoded in two stages
//!   ([`cascade`]), and mentions in its text.
//! - Library ([`Engine::library_add`], [`Engine::library_find`], [`Engine::library_who`],
//!   [`Engine::library_suggest`]): a folder of photos indexed once, searched for any concept.
//! - Generate ([`Engine::conversation`], [`Engine::answer`]): the RAP prompt for a question and
//!   a generator's answer to it; [`ChatSession`] for several turns.
//! - API keys ([`Engine::create_api_key`], [`Engine::authenticate`]): server API keys, each bound
//!   to one tenant, stored only as hashes.

#![forbid(unsafe_code)]

pub mod answer;
pub mod cascade;
mod catalog;
pub mod chat;
mod encoders;
mod engine;
mod keys;
pub mod library;
pub mod pixels;
pub mod retrieve;
#[cfg(test)]
mod test_support;

pub use answer::{
    Answer, ConceptVia, Conversation, Mode, PromptImage, Question, Target, UsedConcept,
};
pub use cascade::DEFAULT_CASCADE_MARGIN;
pub use chat::ChatSession;
pub use encoders::{
    migrate_encoders_file, EncoderChoice, EncoderResolver, EncoderSettings, ReindexReport,
    TenantEncoders, WordHit, ENCODERS_SETTING,
};
pub use engine::{EncoderLoader, Engine, EngineConfig};
pub use rap_memory::{ApiKeyInfo, ConceptEdit, ImageInput};
pub use retrieve::{
    ConceptScore, Evidence, Retrieval, RetrieveOptions, DEFAULT_MARGIN, DEFAULT_NEGATIVE_MARGIN,
    DEFAULT_STABILITY_WEIGHT, DEFAULT_THRESHOLD,
};
