//! Generate: from a question (and a query image) to the conversation a model gets, and to its
//! answer.
//!
//! [`Engine::conversation`] runs retrieval (or takes the caller's concepts in order, the
//! paper's "skip retrieval" setting), loads each concept's first reference image and lays out
//! the RAP first turn with [`rap_llm::first_turn`]: the query image first, then each concept's
//! reference image, name and info, then the question. For a generator that cannot see images
//! ([`Target::accepts_images`] false) it builds the text-only variant instead: the retrieved
//! concepts as text (name, info, score and where in the image they matched) before the
//! question, and the answer is marked [`Mode::TextOnly`].
//!
//! When the model's context length is known and the prompt (plus the tokens kept for the
//! answer) does not fit, the lowest-scored concepts are dropped ([`rap_llm::fit_concepts`]) and
//! each drop is reported in [`Conversation::warnings`].
//!
//! [`Engine::answer`] does the same and then runs a [`Generator`], streaming its text through a
//! callback.

use crate::{Engine, RetrieveOptions};
use rap_core::{
    BoundingBox, Concept, Error, FinishReason, Generation, GenerationParams, Generator, ImageData,
    ImageId, Message, Part, Result, Role, Tenant, Via,
};
use rap_llm::{first_turn, neutralize, render_parts, strip_image_placeholders, LayoutConcept};
use rap_llm::{fit_concepts, Template};
use std::collections::HashSet;
use std::sync::Arc;

/// Visual tokens one image costs in LLaVA-1.5 (CLIP-L/336, 24x24 patches); the default
/// estimate when the caller gives no token counter.
pub const IMAGE_TOKENS: usize = 576;

/// Whether the model sees the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Images are in the prompt, in the RAP layout.
    #[serde(rename = "multimodal")]
    Multimodal,
    /// The model sees no image: the concepts are described in text.
    #[serde(rename = "text-only")]
    TextOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Multimodal => "multimodal",
            Mode::TextOnly => "text-only",
        }
    }
}

/// How a concept came into the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConceptVia {
    /// Named in the question.
    Text,
    /// Matched a region of the query image.
    Image,
    /// Named in the question and matched a region of the query image (score and box are the
    /// image's).
    #[serde(rename = "text+image")]
    TextAndImage,
    /// Given by the caller (retrieval skipped).
    Explicit,
}

/// A concept in the prompt (or dropped from it).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsedConcept {
    pub name: String,
    /// Retrieval score (cosine similarity; 1.0 for text mentions and explicit concepts).
    pub score: f32,
    pub via: ConceptVia,
    /// The query-image region that matched, in pixels.
    #[serde(rename = "box", skip_serializing_if = "Option::is_none")]
    pub bbox: Option<BoundingBox>,
    /// The reference image shown to the model (multimodal mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageId>,
}

/// One image the model gets, in prompt order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PromptImage {
    /// The user's query image.
    Query,
    /// A concept's reference image.
    Concept { name: String, id: ImageId },
}

/// What is asked.
#[derive(Debug, Clone, Default)]
pub struct Question<'a> {
    /// The question text; `<image>` placeholders written for the reference's scripts are
    /// removed (the layout places the images).
    pub text: &'a str,
    /// The query image's encoded bytes.
    pub image: Option<&'a [u8]>,
    /// Concepts to use, in this order; retrieval is skipped when this is not empty.
    pub concepts: Vec<String>,
    /// Retrieval settings (when retrieval runs).
    pub retrieve: RetrieveOptions,
}

/// Counts the tokens of a conversation as the model would get it.
pub type TokenCounter<'a> = &'a dyn Fn(&[Message]) -> Result<usize>;

/// What the conversation is built for.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// Whether image parts reach the model; if not, the text-only variant is built.
    pub accepts_images: bool,
    /// The model's context length, when known; without it nothing is dropped.
    pub context_length: Option<usize>,
    /// Tokens kept free for the answer.
    pub reserve: usize,
    /// Token counter; without one, a rough estimate (a token per 3 bytes of text and
    /// [`IMAGE_TOKENS`] per image).
    pub count_tokens: Option<TokenCounter<'a>>,
}

impl Default for Target<'_> {
    fn default() -> Self {
        Target {
            accepts_images: true,
            context_length: None,
            reserve: 0,
            count_tokens: None,
        }
    }
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("accepts_images", &self.accepts_images)
            .field("context_length", &self.context_length)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

/// The conversation for one question.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// The messages to hand to a generator (one user turn).
    pub messages: Vec<Message>,
    pub mode: Mode,
    /// The concepts in the prompt, in prompt order.
    pub concepts: Vec<UsedConcept>,
    /// Concepts retrieved but dropped because the prompt did not fit.
    pub dropped: Vec<UsedConcept>,
    /// Things the user should know (dropped concepts...).
    pub warnings: Vec<String>,
    /// The images the model gets, in prompt order (none in text-only mode).
    pub images: Vec<PromptImage>,
}

impl Conversation {
    /// The first user turn with each image as `<image>`.
    pub fn layout(&self) -> String {
        self.messages
            .iter()
            .find(|m| m.role == Role::User)
            .map(|m| render_parts(&m.parts))
            .unwrap_or_default()
    }

    /// The whole prompt string in `template`, ready for generation.
    pub fn render(&self, template: &Template) -> Result<String> {
        template.render(&self.messages, true)
    }
}

/// A finished answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub mode: Mode,
    pub concepts: Vec<UsedConcept>,
    pub warnings: Vec<String>,
    pub model: String,
    pub finish_reason: FinishReason,
    pub generation: Generation,
}

/// A chosen concept with what the layout needs.
struct Chosen {
    used: UsedConcept,
    concept: Concept,
    image: Option<ImageData>,
}

/// The MIME type of a stored image format (`png` -> `image/png`).
fn mime_of(format: &str) -> String {
    match format {
        "jpg" => "image/jpeg".to_string(),
        f => format!("image/{f}"),
    }
}

fn round2(x: f32) -> f32 {
    (x * 100.0).round() / 100.0
}

impl Engine {
    /// Builds the conversation for a question: retrieval (or the given concepts), reference
    /// images, the RAP layout (or its text-only variant), fitted to the context.
    pub fn conversation(
        &self,
        tenant: &Tenant,
        question: &Question<'_>,
        target: &Target<'_>,
    ) -> Result<Conversation> {
        let text = strip_image_placeholders(question.text);
        if text.trim().is_empty() {
            return Err(Error::invalid(
                "the question is empty: ask something, e.g. \"What is in this image?\"",
            ));
        }
        let query = match question.image {
            Some(bytes) => {
                let meta = rap_image::inspect(bytes, self.limits())
                    .map_err(|e| Error::invalid(format!("query image: {e}")))?;
                Some(ImageData {
                    bytes: Arc::new(bytes.to_vec()),
                    mime: mime_of(&meta.format),
                })
            }
            None => None,
        };

        let mut chosen = Vec::new();
        if question.concepts.is_empty() {
            let retrieval =
                self.retrieve(tenant, question.image, Some(&text), &question.retrieve)?;
            for hit in retrieval.hits {
                let concept = self.store().concept_by_id(tenant, &hit.id)?;
                chosen.push(Chosen {
                    used: UsedConcept {
                        name: concept.name.clone(),
                        score: hit.score,
                        via: match hit.via {
                            Via::Text => ConceptVia::Text,
                            Via::Image => ConceptVia::Image,
                            Via::TextAndImage => ConceptVia::TextAndImage,
                        },
                        bbox: hit.bbox,
                        image: None,
                    },
                    concept,
                    image: None,
                });
            }
        } else {
            let mut seen = HashSet::new();
            for name in &question.concepts {
                let concept = self.concept(tenant, name)?;
                if !seen.insert(concept.id.clone()) {
                    continue;
                }
                chosen.push(Chosen {
                    used: UsedConcept {
                        name: concept.name.clone(),
                        score: 1.0,
                        via: ConceptVia::Explicit,
                        bbox: None,
                        image: None,
                    },
                    concept,
                    image: None,
                });
            }
        }

        let mode = if target.accepts_images {
            Mode::Multimodal
        } else {
            Mode::TextOnly
        };
        if mode == Mode::Multimodal {
            for c in &mut chosen {
                if let Some(img) = c.concept.images.first() {
                    let bytes = self.image_bytes(tenant, &img.id)?;
                    c.image = Some(ImageData {
                        bytes: Arc::new(bytes),
                        mime: mime_of(&img.format),
                    });
                    c.used.image = Some(img.id.clone());
                }
            }
        }

        let build = |kept: &[usize]| -> Vec<Message> {
            let cs: Vec<&Chosen> = kept.iter().map(|&i| &chosen[i]).collect();
            let parts = match mode {
                Mode::Multimodal => {
                    let layout: Vec<LayoutConcept> = cs
                        .iter()
                        .map(|c| {
                            LayoutConcept::new(
                                c.concept.name.clone(),
                                c.concept.info.clone(),
                                c.image.clone(),
                            )
                        })
                        .collect();
                    first_turn(query.as_ref(), &layout, &text)
                }
                Mode::TextOnly => vec![Part::Text(text_only_turn(query.is_some(), &cs, &text))],
            };
            vec![Message {
                role: Role::User,
                parts,
            }]
        };

        let all: Vec<usize> = (0..chosen.len()).collect();
        let mut kept = all.clone();
        let mut warnings = Vec::new();
        let mut dropped_idx = Vec::new();
        if let Some(context) = target.context_length {
            // A concept the question names goes last (as its text-mention score of 1.0 did),
            // even when its score is the image's.
            let scores: Vec<f32> = chosen
                .iter()
                .map(|c| match c.used.via {
                    ConceptVia::TextAndImage => 1.0,
                    _ => c.used.score,
                })
                .collect();
            let count = |k: &[usize]| -> Result<usize> {
                let messages = build(k);
                match target.count_tokens {
                    Some(f) => f(&messages),
                    None => Ok(estimate_tokens(&messages)),
                }
            };
            let fit = fit_concepts(&scores, context, target.reserve, count)?;
            kept = fit.kept;
            dropped_idx = fit.dropped;
            for &i in &dropped_idx {
                let c = &chosen[i].used;
                warnings.push(format!(
                    "dropped concept {} (score {:.2}): the prompt did not fit the model's \
                     context of {context} tokens with {} kept for the answer",
                    c.name, c.score, target.reserve
                ));
            }
        }

        let messages = build(&kept);
        let concepts: Vec<UsedConcept> = kept.iter().map(|&i| chosen[i].used.clone()).collect();
        let mut images = Vec::new();
        if mode == Mode::Multimodal {
            if query.is_some() {
                images.push(PromptImage::Query);
            }
            for c in &concepts {
                if let Some(id) = &c.image {
                    images.push(PromptImage::Concept {
                        name: c.name.clone(),
                        id: id.clone(),
                    });
                }
            }
        }
        let dropped = dropped_idx
            .iter()
            .map(|&i| chosen[i].used.clone())
            .collect();
        Ok(Conversation {
            messages,
            mode,
            concepts,
            dropped,
            warnings,
            images,
        })
    }

    /// Builds the conversation for `generator` and runs it, streaming text to `on_text`
    /// (return `false` to stop). `params.max_tokens` is kept free in the context.
    pub fn answer(
        &self,
        tenant: &Tenant,
        question: &Question<'_>,
        generator: &dyn Generator,
        count_tokens: Option<TokenCounter<'_>>,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Answer> {
        let info = generator.info().clone();
        let target = Target {
            accepts_images: info.accepts_images,
            context_length: info.context_length,
            reserve: params.max_tokens,
            count_tokens,
        };
        let conversation = self.conversation(tenant, question, &target)?;
        let generation = generator.generate(&conversation.messages, params, on_text)?;
        Ok(Answer {
            text: generation.text.clone(),
            mode: conversation.mode,
            concepts: conversation.concepts,
            warnings: conversation.warnings,
            model: info.model,
            finish_reason: generation.finish_reason,
            generation,
        })
    }
}

/// Rough token count: a token per 3 bytes of text, [`IMAGE_TOKENS`] per image.
pub fn estimate_tokens(messages: &[Message]) -> usize {
    messages
        .iter()
        .flat_map(|m| m.parts.iter())
        .map(|p| match p {
            Part::Text(t) => t.len().div_ceil(3),
            Part::Image(_) => IMAGE_TOKENS,
        })
        .sum()
}

/// The text-only first turn: what a model that cannot see the image needs to know, kept short
/// and plain for small models (a 135M model echoes headings and loops on long lists):
///
/// ```text
/// The image shows <bo> (similarity 0.83, region [10, 40, 300, 380]) and <dug> (similarity 0.71).
/// <bo> is a Shiba Inu.
/// <dug> is a golden retriever.
///
/// What are they doing?
/// ```
///
/// Concepts matched in the image are "shown"; concepts the user chose are "shown" when there is
/// an image and "asked about" otherwise; concepts named in the question need no introduction.
/// Each concept's info follows on its own line (prefixed with `<name>:` unless it names the
/// concept itself).
fn text_only_turn(has_image: bool, concepts: &[&Chosen], question: &str) -> String {
    let name_of = |c: &Chosen| neutralize(rap_core::strip_brackets(c.concept.name.trim()));
    let mut shown = Vec::new();
    let mut asked = Vec::new();
    for c in concepts {
        let name = name_of(c);
        match (c.used.via, c.used.bbox) {
            // Named in the question and seen: the question names it, the image says where.
            (ConceptVia::Image | ConceptVia::TextAndImage, Some(b)) => shown.push(format!(
                "<{name}> (similarity {:.2}, region [{}, {}, {}, {}])",
                c.used.score,
                round2(b.x1),
                round2(b.y1),
                round2(b.x2),
                round2(b.y2)
            )),
            (ConceptVia::Image | ConceptVia::TextAndImage, None) => {
                shown.push(format!("<{name}> (similarity {:.2})", c.used.score))
            }
            (ConceptVia::Explicit, _) if has_image => shown.push(format!("<{name}>")),
            (ConceptVia::Explicit, _) => asked.push(format!("<{name}>")),
            (ConceptVia::Text, _) => {}
        }
    }
    let mut s = String::new();
    if !shown.is_empty() {
        s.push_str(&format!("The image shows {}.\n", join_and(&shown)));
    } else if has_image {
        s.push_str(
            "The user attached an image you cannot see; none of their saved concepts was \
             recognised in it.\n",
        );
    }
    if !asked.is_empty() {
        s.push_str(&format!("The user asks about {}.\n", join_and(&asked)));
    }
    for c in concepts {
        let info = neutralize(c.concept.info.trim());
        if info.is_empty() {
            continue;
        }
        let name = name_of(c);
        if info.contains(&format!("<{name}>")) {
            s.push_str(&format!("{info}\n"));
        } else {
            s.push_str(&format!("<{name}>: {info}\n"));
        }
    }
    if !s.is_empty() {
        s.push('\n');
    }
    s.push_str(&neutralize(question));
    s
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{png, two_dogs};

    const SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. \
                          The assistant gives helpful, detailed, and polite answers to the user's questions.";

    fn setup() -> (tempfile::TempDir, Engine, Tenant) {
        two_dogs("<bo> is a Shiba Inu.", "<dug> is a golden retriever.")
    }

    fn ask<'a>(text: &'a str, image: Option<&'a [u8]>, concepts: &[&str]) -> Question<'a> {
        Question {
            text,
            image,
            concepts: concepts.iter().map(|s| s.to_string()).collect(),
            retrieve: RetrieveOptions::default(),
        }
    }

    #[test]
    fn vicuna_v1_with_query_image_and_two_explicit_concepts() {
        let (_dir, engine, tenant) = setup();
        let query = png(9, 20, 10);
        let conv = engine
            .conversation(
                &tenant,
                &ask("What are they doing?", Some(&query), &["dug", "<bo>"]),
                &Target::default(),
            )
            .unwrap();
        assert_eq!(conv.mode, Mode::Multimodal);
        assert_eq!(
            conv.render(&Template::VicunaV1).unwrap(),
            format!(
                "{SYSTEM} USER: <image>\n[1.<image>\n Name: <dug>, Info: <dug> is a golden retriever.\n\
                 2.<image>\n Name: <bo>, Info: <bo> is a Shiba Inu.\n]What are they doing? ASSISTANT:"
            )
        );
        let names: Vec<_> = conv.concepts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["dug", "bo"]);
        assert!(conv.concepts.iter().all(|c| c.via == ConceptVia::Explicit));
        // Images: the query, then each concept's reference image in prompt order, and the
        // message's image parts are those bytes in that order.
        assert_eq!(conv.images.len(), 3);
        assert_eq!(conv.images[0], PromptImage::Query);
        let dug = engine.concept(&tenant, "dug").unwrap();
        assert_eq!(
            conv.images[1],
            PromptImage::Concept {
                name: "dug".into(),
                id: dug.images[0].id.clone()
            }
        );
        let bytes: Vec<Vec<u8>> = conv.messages[0]
            .images()
            .map(|i| i.bytes.as_ref().clone())
            .collect();
        assert_eq!(bytes[0], query);
        assert_eq!(
            bytes[1],
            engine.image_bytes(&tenant, &dug.images[0].id).unwrap()
        );
        assert_eq!(conv.messages[0].images().next().unwrap().mime, "image/png");
    }

    #[test]
    fn text_only_variant_describes_the_concepts() {
        let (_dir, engine, tenant) = setup();
        let query = png(9, 20, 10);
        let target = Target {
            accepts_images: false,
            ..Target::default()
        };
        let conv = engine
            .conversation(
                &tenant,
                &ask("What are they doing?", Some(&query), &["bo", "dug"]),
                &target,
            )
            .unwrap();
        assert_eq!(conv.mode, Mode::TextOnly);
        assert!(conv.images.is_empty());
        assert_eq!(conv.messages[0].images().count(), 0);
        assert_eq!(
            conv.layout(),
            "The image shows <bo> and <dug>.\n\
             <bo> is a Shiba Inu.\n\
             <dug> is a golden retriever.\n\
             \n\
             What are they doing?"
        );
        // Chosen by the user without an image.
        let conv = engine
            .conversation(&tenant, &ask("Who are they?", None, &["dug"]), &target)
            .unwrap();
        assert_eq!(
            conv.layout(),
            "The user asks about <dug>.\n<dug> is a golden retriever.\n\nWho are they?"
        );
        // Retrieved by a text mention, without an image.
        let conv = engine
            .conversation(&tenant, &ask("Is <bo> a cat?", None, &[]), &target)
            .unwrap();
        assert_eq!(conv.layout(), "<bo> is a Shiba Inu.\n\nIs <bo> a cat?");
        assert_eq!(conv.concepts[0].via, ConceptVia::Text);
    }

    #[test]
    fn no_concept_is_the_question_alone() {
        let (_dir, engine, tenant) = setup();
        let conv = engine
            .conversation(
                &tenant,
                &ask("<image>\nWhat is the weather like?", None, &[]),
                &Target::default(),
            )
            .unwrap();
        assert!(conv.concepts.is_empty() && conv.images.is_empty());
        assert_eq!(
            conv.render(&Template::VicunaV1).unwrap(),
            format!("{SYSTEM} USER: What is the weather like? ASSISTANT:")
        );
        // Retrieval by mention, multimodal, no query image: numbered from 0 without brackets.
        let conv = engine
            .conversation(
                &tenant,
                &ask("Where is dug?", None, &[]),
                &Target::default(),
            )
            .unwrap();
        assert_eq!(
            conv.layout(),
            "0.<image>\n Name: <dug>, Info: <dug> is a golden retriever.\nWhere is dug?"
        );
    }

    #[test]
    fn unknown_concept_and_empty_question_are_clear_errors() {
        let (_dir, engine, tenant) = setup();
        let e = engine
            .conversation(
                &tenant,
                &ask("Hi", None, &["bo", "rex"]),
                &Target::default(),
            )
            .unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("rex"), "{e}");
        for q in ["", "   ", "<image>\n"] {
            let e = engine
                .conversation(&tenant, &ask(q, None, &[]), &Target::default())
                .unwrap_err();
            assert!(e.to_string().contains("question is empty"), "{e}");
        }
    }

    #[test]
    fn lowest_scored_concepts_are_dropped_to_fit_with_a_warning() {
        let (_dir, engine, tenant) = setup();
        let query = png(9, 20, 10);
        let count = |m: &[Message]| -> Result<usize> { Ok(10 * m[0].images().count()) };
        let target = Target {
            accepts_images: true,
            context_length: Some(35),
            reserve: 10,
            count_tokens: Some(&count),
        };
        let conv = engine
            .conversation(&tenant, &ask("Who?", Some(&query), &["bo", "dug"]), &target)
            .unwrap();
        // 3 images = 30 > 25: the later of the equally scored concepts goes.
        assert_eq!(conv.concepts.len(), 1);
        assert_eq!(conv.concepts[0].name, "bo");
        assert_eq!(conv.dropped[0].name, "dug");
        assert_eq!(conv.warnings.len(), 1);
        assert!(conv.warnings[0].contains("dug"), "{:?}", conv.warnings);
        assert_eq!(conv.images.len(), 2);
    }

    struct Echo(rap_core::GeneratorInfo);

    impl Generator for Echo {
        fn info(&self) -> &rap_core::GeneratorInfo {
            &self.0
        }
        fn generate(
            &self,
            messages: &[Message],
            _params: &GenerationParams,
            on_text: &mut dyn FnMut(&str) -> bool,
        ) -> Result<Generation> {
            let text = format!("{} images", messages[0].images().count());
            on_text(&text);
            Ok(Generation {
                text,
                finish_reason: FinishReason::Stop,
                prompt_tokens: 1,
                completion_tokens: 1,
            })
        }
    }

    #[test]
    fn answer_streams_and_marks_text_only() {
        let (_dir, engine, tenant) = setup();
        let gen = Echo(rap_core::GeneratorInfo {
            model: "echo".into(),
            accepts_images: false,
            context_length: Some(4096),
        });
        let mut streamed = String::new();
        let answer = engine
            .answer(
                &tenant,
                &ask("Is bo here?", None, &[]),
                &gen,
                None,
                &GenerationParams::default(),
                &mut |t| {
                    streamed.push_str(t);
                    true
                },
            )
            .unwrap();
        assert_eq!(answer.mode, Mode::TextOnly);
        assert_eq!(answer.text, "0 images");
        assert_eq!(streamed, "0 images");
        assert_eq!(answer.model, "echo");
        assert_eq!(answer.concepts[0].name, "bo");
    }
}
