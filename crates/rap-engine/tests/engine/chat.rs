//! A chat keeps its turns in order: a layout turn (retrieval, RAP layout) when an image is new,
//! plain text after it, the model's answers in between; `reset` forgets; a failed turn leaves
//! the conversation as it was; a conversation too long for the context loses its oldest turns.

use rap_core::{
    EncoderInfo, Error, FinishReason, Generation, GenerationParams, Generator, GeneratorInfo,
    ImageEncoder, Message, NewConcept, Result, Role, Tenant,
};
use rap_engine::{ChatSession, Engine, EngineConfig, Mode, RetrieveOptions};
use std::sync::{Arc, Mutex};

use crate::common;
use common::MeanColour;

/// Answers "answer N" and records every conversation it was given.
struct Recorder {
    info: GeneratorInfo,
    seen: Mutex<Vec<Vec<Message>>>,
    fail: Mutex<bool>,
}

impl Recorder {
    fn new(accepts_images: bool, context_length: Option<usize>) -> Self {
        Recorder {
            info: GeneratorInfo {
                model: "recorder".into(),
                accepts_images,
                context_length,
            },
            seen: Mutex::new(Vec::new()),
            fail: Mutex::new(false),
        }
    }
    fn last(&self) -> Vec<Message> {
        self.seen.lock().unwrap().last().unwrap().clone()
    }
}

impl Generator for Recorder {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }
    fn generate(
        &self,
        messages: &[Message],
        _params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if *self.fail.lock().unwrap() {
            return Err(Error::Model("the server is down".into()));
        }
        let mut seen = self.seen.lock().unwrap();
        seen.push(messages.to_vec());
        let text = format!("answer {}", seen.len());
        on_text(&text);
        Ok(Generation {
            text,
            finish_reason: FinishReason::Stop,
            prompt_tokens: 0,
            completion_tokens: 2,
        })
    }
}

fn png(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(40, 40, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn setup() -> (tempfile::TempDir, Engine, Tenant) {
    let dir = tempfile::tempdir().unwrap();
    let encoder: Arc<dyn ImageEncoder> = Arc::new(MeanColour(EncoderInfo {
        id: "mean-colour@test".into(),
        dim: 3,
    }));
    let engine = Engine::open(
        EngineConfig::new(dir.path()),
        Box::new(move || Ok(Some(encoder.clone()))),
    )
    .unwrap();
    let tenant = Tenant::new("t").unwrap();
    for (name, colour) in [("bo", [200, 30, 30]), ("dug", [30, 30, 200])] {
        let new = NewConcept {
            name: name.into(),
            info: format!("<{name}> is a dog."),
            category: "dog".into(),
            ..Default::default()
        };
        let image = engine.image_from_bytes(png(colour)).unwrap();
        engine.add_concept(&tenant, &new, vec![image]).unwrap();
    }
    (dir, engine, tenant)
}

fn options() -> RetrieveOptions {
    RetrieveOptions {
        top_k: 1,
        window_scales: Vec::new(),
        ..RetrieveOptions::default()
    }
}

fn text_of(m: &Message) -> String {
    m.parts
        .iter()
        .filter_map(|p| match p {
            rap_core::Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn ask(
    chat: &mut ChatSession,
    engine: &Engine,
    gen: &Recorder,
    text: &str,
) -> Result<rap_engine::Answer> {
    chat.ask(
        engine,
        text,
        gen,
        None,
        &GenerationParams::default(),
        &mut |_| true,
    )
}

#[test]
fn turns_alternate_and_a_new_image_gets_its_own_layout_turn() {
    let (_dir, engine, tenant) = setup();
    let gen = Recorder::new(true, None);
    let mut chat = ChatSession::new(tenant, Some(png([190, 40, 35])), options());

    let first = ask(&mut chat, &engine, &gen, "Who is this?").unwrap();
    assert_eq!(first.mode, Mode::Multimodal);
    assert_eq!(first.concepts.len(), 1);
    assert_eq!(first.concepts[0].name, "bo");
    let sent = gen.last();
    assert_eq!(sent.len(), 1);
    // The layout turn: the query image, bo's reference image, then the question.
    assert_eq!(sent[0].images().count(), 2);
    assert!(
        text_of(&sent[0]).contains("Name: <bo>"),
        "{}",
        text_of(&sent[0])
    );

    ask(&mut chat, &engine, &gen, "What colour is his collar?").unwrap();
    let sent = gen.last();
    let roles: Vec<Role> = sent.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
    assert_eq!(text_of(&sent[1]), "answer 1");
    assert_eq!(text_of(&sent[2]), "What colour is his collar?");
    assert_eq!(sent[2].images().count(), 0);

    // A new image: the next turn retrieves on it and lays it out after the turns so far.
    chat.attach_image(png([35, 35, 190]));
    let third = ask(&mut chat, &engine, &gen, "And now?").unwrap();
    assert_eq!(third.concepts[0].name, "dug");
    let sent = gen.last();
    assert_eq!(sent.len(), 5);
    assert_eq!(sent[4].images().count(), 2);
    assert!(text_of(&sent[4]).contains("Name: <dug>"));
    let names: Vec<&str> = chat.concepts().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["bo", "dug"]);
    assert_eq!(chat.messages().len(), 6);

    chat.reset();
    assert!(chat.messages().is_empty() && chat.concepts().is_empty());
    ask(&mut chat, &engine, &gen, "Once more?").unwrap();
    let sent = gen.last();
    assert_eq!(sent.len(), 1);
    assert!(
        text_of(&sent[0]).contains("Name: <dug>"),
        "the current image again"
    );
}

#[test]
fn a_failed_turn_leaves_the_conversation_as_it_was() {
    let (_dir, engine, tenant) = setup();
    let gen = Recorder::new(false, None);
    let mut chat = ChatSession::new(tenant, None, options());
    let first = ask(&mut chat, &engine, &gen, "Tell me about <bo>").unwrap();
    assert_eq!(first.mode, Mode::TextOnly);
    assert_eq!(first.concepts[0].name, "bo");
    *gen.fail.lock().unwrap() = true;
    let e = ask(&mut chat, &engine, &gen, "And then?").unwrap_err();
    assert!(e.to_string().contains("server is down"), "{e}");
    assert_eq!(chat.messages().len(), 2);
    let e = ask(&mut chat, &engine, &gen, "   ").unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    *gen.fail.lock().unwrap() = false;
    ask(&mut chat, &engine, &gen, "And then?").unwrap();
    assert_eq!(gen.last().len(), 3);
}

#[test]
fn the_oldest_turns_go_when_the_conversation_outgrows_the_context() {
    let (_dir, engine, tenant) = setup();
    // Room for about 60 tokens of conversation (the estimate is a token per 3 bytes).
    let gen = Recorder::new(false, Some(100));
    let mut chat = ChatSession::new(tenant, None, options());
    let params = GenerationParams {
        max_tokens: 40,
        ..GenerationParams::default()
    };
    let long = "Tell me a long story about the two of them in the park today.";
    let mut warned = false;
    for _ in 0..4 {
        let answer = chat
            .ask(&engine, long, &gen, None, &params, &mut |_| true)
            .unwrap();
        warned |= answer
            .warnings
            .iter()
            .any(|w| w.contains("dropped the oldest turn"));
    }
    assert!(warned);
    let sent = gen.last();
    assert_eq!(sent.last().unwrap().role, Role::User);
    assert_eq!(sent.first().unwrap().role, Role::User);
    assert!(sent.len() < 7, "{} messages were sent", sent.len());
}
