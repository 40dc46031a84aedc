//! Prompts and generators: everything between "these concepts were retrieved" and "here is the
//! answer".
//!
//! - [`layout`] builds the RAP first-turn content (query image, each retrieved concept's
//!   reference image, name and info, the question) as text and image parts, byte for byte the
//!   layout the RAP models were trained on.
//! - [`template`] renders a conversation into a model's prompt string (`vicuna_v1`, `llava_v0`,
//!   `phi3_instruct`, `chatml`, or a GGUF model's own Jinja template) with its stop strings.
//! - [`neutralize`] keeps user text (concept info, names, turns) from forging template markers.
//! - [`fit`] drops the lowest-scored concepts until a prompt fits the model's context.
//! - [`openai`] is a [`rap_core::Generator`] for any OpenAI-compatible chat server.
//! - [`http`] sets up TLS for HTTP clients (rustls with the `ring` provider).

#![forbid(unsafe_code)]

pub mod fit;
pub mod http;
pub mod layout;
pub mod neutralize;
pub mod openai;
pub mod template;

pub use fit::{fit_concepts, Fit};
pub use layout::{
    first_turn, render_parts, render_parts_with, strip_image_placeholders, LayoutConcept,
    IMAGE_PLACEHOLDER,
};
pub use neutralize::neutralize;
pub use openai::{OpenAiConfig, OpenAiGenerator};
pub use template::{JinjaTemplate, Template};
