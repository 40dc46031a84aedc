//! [`ChatSession`]: a multi-turn conversation over the memory (what `rap chat` runs).
//!
//! A turn that brings a new query image (the first turn, or the first after
//! [`ChatSession::attach_image`]) is built like a single question: retrieval, then the RAP
//! first-turn layout (or its text-only variant). The turns after it are the user's plain text,
//! so the template renders the conversation in its own multi-turn form. When the whole
//! conversation no longer fits the model's context, the oldest exchanges are dropped (with a
//! warning), never the turn being asked.

use crate::answer::{estimate_tokens, Answer, Mode, Question, Target, TokenCounter, UsedConcept};
use crate::{Engine, RetrieveOptions};
use rap_core::{Error, GenerationParams, Generator, Message, Result, Role, Tenant};
use rap_llm::neutralize;

/// One user's conversation: its turns so far, the concepts they brought in, and the image
/// the next layout turn will show.
pub struct ChatSession {
    tenant: Tenant,
    retrieve: RetrieveOptions,
    messages: Vec<Message>,
    concepts: Vec<UsedConcept>,
    /// The query image and whether the next turn still has to lay it out.
    image: Option<Vec<u8>>,
    image_pending: bool,
}

impl ChatSession {
    pub fn new(tenant: Tenant, image: Option<Vec<u8>>, retrieve: RetrieveOptions) -> Self {
        ChatSession {
            tenant,
            retrieve,
            messages: Vec::new(),
            concepts: Vec::new(),
            image_pending: image.is_some(),
            image,
        }
    }

    /// Shows `bytes` from the next turn on: that turn retrieves on it and lays it out, after
    /// the turns so far.
    pub fn attach_image(&mut self, bytes: Vec<u8>) {
        self.image = Some(bytes);
        self.image_pending = true;
    }

    /// Forgets every turn and concept; the current image is laid out again by the next turn.
    pub fn reset(&mut self) {
        self.messages.clear();
        self.concepts.clear();
        self.image_pending = self.image.is_some();
    }

    /// The turns so far (user and assistant), as the generator gets them.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The concepts the conversation's layout turns brought in, in order.
    pub fn concepts(&self) -> &[UsedConcept] {
        &self.concepts
    }

    /// Asks `text` as the next turn and streams the answer. On an error the conversation is
    /// left as it was before the call.
    pub fn ask(
        &mut self,
        engine: &Engine,
        text: &str,
        generator: &dyn Generator,
        count_tokens: Option<TokenCounter<'_>>,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Answer> {
        let info = generator.info().clone();
        let count = |m: &[Message]| -> Result<usize> {
            match count_tokens {
                Some(f) => f(m),
                None => Ok(estimate_tokens(m)),
            }
        };
        let mut messages = self.messages.clone();
        let mut warnings = Vec::new();
        let mut new_concepts = Vec::new();
        let mode;
        if messages.is_empty() || self.image_pending {
            let question = Question {
                text,
                image: if self.image_pending {
                    self.image.as_deref()
                } else {
                    None
                },
                concepts: Vec::new(),
                retrieve: self.retrieve.clone(),
            };
            let target = Target {
                accepts_images: info.accepts_images,
                context_length: info.context_length,
                reserve: params.max_tokens,
                count_tokens,
            };
            let conversation = engine.conversation(&self.tenant, &question, &target)?;
            mode = conversation.mode;
            warnings.extend(conversation.warnings);
            new_concepts = conversation.concepts;
            messages.extend(conversation.messages);
        } else {
            if text.trim().is_empty() {
                return Err(Error::invalid("the question is empty: ask something"));
            }
            mode = if info.accepts_images {
                Mode::Multimodal
            } else {
                Mode::TextOnly
            };
            messages.push(Message::text(Role::User, neutralize(text.trim())));
        }

        if let Some(context) = info.context_length {
            let budget = context.saturating_sub(params.max_tokens);
            // Drop whole exchanges (a user turn and the answer to it) from the front while
            // the conversation is too long; the turn being asked always stays.
            while messages.len() > 2 && count(&messages)? > budget {
                let cut = messages
                    .iter()
                    .skip(1)
                    .position(|m| m.role == Role::User)
                    .map_or(messages.len() - 1, |i| i + 1);
                if cut >= messages.len() - 1 {
                    break;
                }
                messages.drain(..cut);
                warnings.push(format!(
                    "dropped the oldest turn: the conversation did not fit the model's context of {context} tokens"
                ));
            }
        }

        let generation = generator.generate(&messages, params, on_text)?;
        messages.push(Message::text(Role::Assistant, generation.text.trim()));
        self.messages = messages;
        self.image_pending = false;
        let mut concepts = new_concepts.clone();
        if concepts.is_empty() {
            concepts = self.concepts.clone();
        }
        self.concepts.extend(new_concepts);
        Ok(Answer {
            text: generation.text.clone(),
            mode,
            concepts,
            warnings,
            model: info.model,
            finish_reason: generation.finish_reason,
            generation,
        })
    }
}
