//! [`ChatSession`]: a multi-turn conversation over the memory (what `rap chat` runs).
//!
//! A turn that brings a new query image (the first turn, or the first after
//! [`ChatSession::attach_image`]) is built like a single question: retrieval, then the RAP
//! first-turn layout (or its text-only variant). The turns after it are the user's plain text,
//! so the template renders the conversation in its own multi-turn form. When the whole
//! conversation no longer fits the model's context, the oldest exchanges are dropped (with a
//! warning), never the turn being asked.
//!
//! Small models echo: with an earlier answer in view, SmolLM2-135M starts the next one by
//! repeating it word for word. [`generate_without_echo`] holds back the start of each answer
//! until it differs from every earlier answer; an answer that is still a copy after
//! [`ECHO_CHARS`] characters is stopped unseen and asked again on a conversation without the
//! earlier answers (the concepts' facts and the new question), with a warning.

use crate::answer::{estimate_tokens, Answer, Mode, Question, Target, TokenCounter, UsedConcept};
use crate::{Engine, RetrieveOptions};
use rap_core::{Error, GenerationParams, Generator, Message, Part, Result, Role, Tenant};
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
            // A text-only model knows only the facts in its turns: a concept the follow-up
            // names for the first time comes with its facts (else the model makes them up).
            let known: Vec<&str> = self.concepts.iter().map(|c| c.name.as_str()).collect();
            let newly_named: Vec<String> = if mode == Mode::TextOnly {
                engine
                    .retrieve(&self.tenant, None, Some(text), &self.retrieve)?
                    .hits
                    .into_iter()
                    .map(|h| h.name)
                    .filter(|n| !known.contains(&n.as_str()))
                    .collect()
            } else {
                Vec::new()
            };
            if newly_named.is_empty() {
                messages.push(Message::text(Role::User, neutralize(text.trim())));
            } else {
                let question = Question {
                    text,
                    image: None,
                    concepts: newly_named,
                    retrieve: self.retrieve.clone(),
                };
                let conversation = engine.conversation(
                    &self.tenant,
                    &question,
                    &Target {
                        accepts_images: false,
                        ..Target::default()
                    },
                )?;
                new_concepts = conversation.concepts;
                messages.extend(conversation.messages);
            }
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

        // On an echo: the concepts seen so far, as facts, and the question alone.
        let retry = || -> Result<Vec<Message>> {
            let names: Vec<String> = self
                .concepts
                .iter()
                .chain(&new_concepts)
                .map(|c| c.name.clone())
                .collect();
            let question = Question {
                text,
                image: self.image.as_deref(),
                concepts: names,
                retrieve: self.retrieve.clone(),
            };
            let target = Target {
                accepts_images: info.accepts_images,
                context_length: info.context_length,
                reserve: params.max_tokens,
                count_tokens,
            };
            Ok(engine
                .conversation(&self.tenant, &question, &target)?
                .messages)
        };
        let (generation, echoed) =
            generate_without_echo(generator, &messages, params, on_text, retry)?;
        if echoed {
            warnings.push(
                "the answer began by repeating an earlier one: asked again without the earlier \
                 answers in view"
                    .to_string(),
            );
        }
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

/// Characters of an answer's start that may match an earlier answer before it counts as an
/// echo (normalised: lower-case, white space collapsed). Short enough to catch a copy before
/// much of it would have been shown, long enough that "Yes, <bo> is" is not one.
pub const ECHO_CHARS: usize = 40;

/// Lower-case with white space collapsed to single spaces, trimmed at the start.
fn echo_normal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_lowercase());
    }
    if s.ends_with(char::is_whitespace) && !out.is_empty() {
        out.push(' ');
    }
    out
}

/// Watches a streaming answer for a copy of an earlier one (see the module docs).
#[derive(Debug)]
pub struct EchoGuard {
    earlier: Vec<String>,
    held: String,
    decided: bool,
    echoed: bool,
}

/// What to do with a piece of streamed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// Show this text (what was held back, then each piece as it comes).
    Show(String),
    /// Not yet: the answer so far is the start of an earlier one.
    Hold,
    /// The answer copies an earlier one: stop it.
    Echo,
}

impl EchoGuard {
    /// A guard against the assistant turns of `history`.
    pub fn new(history: &[Message]) -> Self {
        let earlier = history
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .map(|m| {
                let text: String = m
                    .parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text(t) => Some(t.as_str()),
                        Part::Image(_) => None,
                    })
                    .collect();
                echo_normal(&text)
            })
            .filter(|t| t.trim().chars().count() >= ECHO_CHARS)
            .collect();
        EchoGuard {
            earlier,
            held: String::new(),
            decided: false,
            echoed: false,
        }
    }

    /// Takes the next piece of the answer.
    pub fn feed(&mut self, piece: &str) -> Guarded {
        if self.decided {
            return Guarded::Show(piece.to_string());
        }
        self.held.push_str(piece);
        let so_far = echo_normal(&self.held);
        let copying = self
            .earlier
            .iter()
            .any(|e| e.starts_with(so_far.trim_end()));
        if !copying {
            self.decided = true;
            return Guarded::Show(std::mem::take(&mut self.held));
        }
        if so_far.trim().chars().count() >= ECHO_CHARS {
            self.decided = true;
            self.echoed = true;
            return Guarded::Echo;
        }
        Guarded::Hold
    }

    /// The text still held back when the answer ended (a short answer that matched the start
    /// of an earlier one is not an echo).
    pub fn finish(&mut self) -> String {
        self.decided = true;
        std::mem::take(&mut self.held)
    }

    /// Whether the answer was stopped as an echo.
    pub fn echoed(&self) -> bool {
        self.echoed
    }
}

/// Generates with `messages`, streaming through an [`EchoGuard`]. When the answer starts as a
/// copy of an earlier assistant turn, it is stopped before any of it is shown and generated
/// again from the messages `retry` gives (a conversation without the earlier answers); the
/// boolean says whether that happened. `on_text` returning false stops either generation.
pub fn generate_without_echo(
    generator: &dyn Generator,
    messages: &[Message],
    params: &GenerationParams,
    on_text: &mut dyn FnMut(&str) -> bool,
    retry: impl FnOnce() -> Result<Vec<Message>>,
) -> Result<(rap_core::Generation, bool)> {
    let mut guard = EchoGuard::new(messages);
    let mut go_on = true;
    let generation = generator.generate(messages, params, &mut |t| match guard.feed(t) {
        Guarded::Show(s) => {
            go_on = s.is_empty() || on_text(&s);
            go_on
        }
        Guarded::Hold => true,
        Guarded::Echo => false,
    })?;
    if !guard.echoed() {
        let rest = guard.finish();
        if go_on && !rest.is_empty() {
            on_text(&rest);
        }
        return Ok((generation, false));
    }
    let messages = retry()?;
    Ok((generator.generate(&messages, params, on_text)?, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::two_dogs;
    use rap_core::{FinishReason, Generation, GeneratorInfo};
    use std::sync::Mutex;

    fn setup() -> (tempfile::TempDir, Engine, Tenant) {
        two_dogs(
            "<bo> is a Shiba Inu with a black collar.",
            "<dug> is a golden retriever from the movie Up.",
        )
    }

    /// A model that behaves like SmolLM2-135M in a chat: with an earlier answer in view it
    /// repeats it word for word; otherwise it answers the last question. Streams in small
    /// pieces and records every conversation it gets.
    struct Parrot {
        info: GeneratorInfo,
        seen: Mutex<Vec<Vec<Message>>>,
    }

    impl Generator for Parrot {
        fn info(&self) -> &GeneratorInfo {
            &self.info
        }
        fn generate(
            &self,
            messages: &[Message],
            _params: &GenerationParams,
            on_text: &mut dyn FnMut(&str) -> bool,
        ) -> Result<Generation> {
            self.seen.lock().unwrap().push(messages.to_vec());
            let text_of = |m: &Message| match &m.parts[0] {
                Part::Text(t) => t.clone(),
                Part::Image(_) => String::new(),
            };
            let text = match messages.iter().rev().find(|m| m.role == Role::Assistant) {
                Some(earlier) => text_of(earlier),
                None => format!(
                    "An answer to: {}",
                    text_of(messages.last().unwrap()).replace('\n', " ")
                ),
            };
            let mut said = String::new();
            for piece in text.split_inclusive(' ') {
                said.push_str(piece);
                if !on_text(piece) {
                    break;
                }
            }
            Ok(Generation {
                text: said,
                finish_reason: FinishReason::Stop,
                prompt_tokens: 1,
                completion_tokens: 1,
            })
        }
    }

    #[test]
    fn a_second_answer_that_copies_the_first_is_asked_again_without_it() {
        let (_dir, engine, tenant) = setup();
        let parrot = Parrot {
            info: GeneratorInfo {
                model: "parrot".into(),
                accepts_images: false,
                context_length: Some(4096),
            },
            seen: Mutex::new(Vec::new()),
        };
        let mut chat = ChatSession::new(tenant, None, RetrieveOptions::default());
        let params = GenerationParams::default();
        let first = chat
            .ask(
                &engine,
                "What is <bo>?",
                &parrot,
                None,
                &params,
                &mut |_| true,
            )
            .unwrap();
        let mut shown = String::new();
        let second = chat
            .ask(
                &engine,
                "What color is its collar?",
                &parrot,
                None,
                &params,
                &mut |t| {
                    shown.push_str(t);
                    true
                },
            )
            .unwrap();
        // Without the guard the second answer is the first one again.
        assert_ne!(second.text.trim(), first.text.trim());
        assert!(
            second.text.contains("What color is its collar?"),
            "{}",
            second.text
        );
        // Nothing of the copy reached the user, and the user is told.
        assert_eq!(shown, second.text);
        assert!(
            second.warnings.iter().any(|w| w.contains("repeating")),
            "{:?}",
            second.warnings
        );
        // The retry saw bo's facts and the new question, and no earlier answer.
        let seen = parrot.seen.lock().unwrap();
        let retry = seen.last().unwrap();
        assert!(retry.iter().all(|m| m.role != Role::Assistant));
        let Part::Text(t) = &retry[0].parts[0] else {
            panic!("text")
        };
        assert!(
            t.contains("black collar") && t.contains("What color is its collar?"),
            "{t}"
        );
        // The conversation keeps the new answer, not the copy.
        assert_eq!(chat.messages().len(), 4);
    }

    #[test]
    fn a_follow_up_that_names_a_new_concept_brings_its_facts() {
        let (_dir, engine, tenant) = setup();
        let parrot = Parrot {
            info: GeneratorInfo {
                model: "parrot".into(),
                accepts_images: false,
                context_length: None,
            },
            seen: Mutex::new(Vec::new()),
        };
        let mut chat = ChatSession::new(tenant, None, RetrieveOptions::default());
        let params = GenerationParams::default();
        chat.ask(
            &engine,
            "What is <bo>?",
            &parrot,
            None,
            &params,
            &mut |_| true,
        )
        .unwrap();
        let turn = |chat: &ChatSession| match &chat.messages()[chat.messages().len() - 2].parts[0] {
            Part::Text(t) => t.clone(),
            Part::Image(_) => String::new(),
        };
        chat.ask(&engine, "And <dug>?", &parrot, None, &params, &mut |_| true)
            .unwrap();
        assert_eq!(
            turn(&chat),
            "The user asks about <dug>.\n<dug> is a golden retriever from the movie Up.\n\nAnd <dug>?"
        );
        let names: Vec<&str> = chat.concepts().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["bo", "dug"]);
        // A concept already in the conversation is not described again.
        chat.ask(
            &engine,
            "Is <bo> older?",
            &parrot,
            None,
            &params,
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(turn(&chat), "Is <bo> older?");
    }

    #[test]
    fn the_guard_shows_what_differs_and_holds_only_a_copy() {
        let history = [
            Message::text(Role::User, "q"),
            Message::text(
                Role::Assistant,
                "<bo> is a well-groomed, medium-sized Shiba Inu with a black collar.",
            ),
        ];
        // A different answer is shown from its first differing piece on.
        let mut g = EchoGuard::new(&history);
        assert_eq!(g.feed("<bo> is"), Guarded::Hold);
        assert_eq!(g.feed(" orange."), Guarded::Show("<bo> is orange.".into()));
        assert_eq!(g.feed(" Yes"), Guarded::Show(" Yes".into()));
        assert!(!g.echoed());
        // A copy (case and spacing aside) is stopped once it is long enough.
        let mut g = EchoGuard::new(&history);
        assert_eq!(g.feed("<BO> is a  well-groomed,"), Guarded::Hold);
        assert_eq!(g.feed(" medium-sized Shiba"), Guarded::Echo);
        assert!(g.echoed());
        // A short answer that matches the start of an earlier one is given back at the end.
        let mut g = EchoGuard::new(&history);
        assert_eq!(g.feed("<bo> is a"), Guarded::Hold);
        assert_eq!(g.finish(), "<bo> is a");
        assert!(!g.echoed());
        // Short earlier answers ("Yes.") never make an echo.
        let mut g = EchoGuard::new(&[Message::text(Role::Assistant, "Yes.")]);
        assert_eq!(g.feed("Yes."), Guarded::Show("Yes.".into()));
    }
}
