//! The generator seam: anything that answers a conversation (a local model, a remote server).
//!
//! A conversation is a list of [`Message`]s whose content is a sequence of [`Part`]s, text and
//! images interleaved exactly where the prompt layout puts them. Each backend renders that into
//! its own form: a chat template string with `<image>` placeholders for a local model, content
//! parts for an OpenAI-compatible server.

use crate::Result;
use std::sync::Arc;

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// An image handed to a generator: the encoded bytes as stored or uploaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageData {
    /// Encoded bytes (JPEG, PNG, ...).
    pub bytes: Arc<Vec<u8>>,
    /// MIME type of `bytes`, e.g. `image/png`.
    pub mime: String,
}

/// One piece of a message's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(ImageData),
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

impl Message {
    /// A message with a single text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            parts: vec![Part::Text(text.into())],
        }
    }

    /// The images of this message, in order.
    pub fn images(&self) -> impl Iterator<Item = &ImageData> {
        self.parts.iter().filter_map(|p| match p {
            Part::Image(i) => Some(i),
            Part::Text(_) => None,
        })
    }
}

/// Sampling and stopping parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    pub max_tokens: usize,
    /// 0 means greedy decoding.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    /// Generation stops before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
    /// Penalty on tokens the answer already holds, as llama.cpp's `repeat_penalty` (CTRL's):
    /// their positive logits are divided by it, negative ones multiplied. 1.0 is none; small
    /// models that loop need about 1.1-1.3. Local generators apply it over the last
    /// [`REPEAT_WINDOW`] generated tokens (not the prompt, whose names the answer should be
    /// free to use); OpenAI-compatible servers are not sent it (the protocol has no such field).
    pub repetition_penalty: f32,
}

/// How many of the latest generated tokens [`GenerationParams::repetition_penalty`] looks at
/// (llama.cpp's default `repeat_last_n`).
pub const REPEAT_WINDOW: usize = 64;

impl Default for GenerationParams {
    fn default() -> Self {
        // The reference CLI's settings: temperature 0.2 with sampling, 512 new tokens.
        GenerationParams {
            max_tokens: 512,
            temperature: 0.2,
            top_p: 1.0,
            seed: None,
            stop: Vec::new(),
            repetition_penalty: 1.0,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of sequence or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The caller stopped it (the token callback returned `false`).
    Cancelled,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// What a generator is and can do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GeneratorInfo {
    /// The model's name as reported to users.
    pub model: String,
    /// Whether image parts reach the model. A text-only generator gets none and its answers
    /// are marked `text-only`.
    pub accepts_images: bool,
    /// Context length in tokens, when known.
    pub context_length: Option<usize>,
}

/// Answers a conversation, streaming text as it is produced.
///
/// `on_text` receives each new piece of text; returning `false` cancels generation (the
/// caller went away), which ends with [`FinishReason::Cancelled`]. Generators are blocking:
/// async callers run them on a worker pool.
pub trait Generator: Send + Sync {
    fn info(&self) -> &GeneratorInfo;

    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation>;
}
