//! SmolLM2-135M-Instruct (Q4_1 GGUF) against llama.cpp: tokenizer ids, the first 32 greedy
//! tokens, and the generator's streaming, stopping, cancellation and limits.
//! Expected values come from `tools/golden/gguf_llamacpp.py`.

use crate::common;

use candle_core::Device;
use rap_core::{Error, FinishReason, GenerationParams, Generator, ImageData, Message, Part, Role};
use rap_llm_local::{GgufGenerator, GgufOptions, PromptRenderer};
use serde::Deserialize;
use std::sync::{Arc, OnceLock};

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Golden {
    model_sha256: String,
    tokenizer_cases: Vec<Case>,
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
    greedy_margins: Vec<f32>,
    greedy_top2: Vec<[u32; 2]>,
}

fn golden() -> Golden {
    serde_json::from_str(include_str!("../golden/smollm2-135m-instruct-q4_1.json"))
        .expect("golden JSON parses")
}

const SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
const USER: &str = "Write a short story about a dog named Bo who finds a red ball in the park.";

/// A minimal ChatML renderer, the format SmolLM2 was tuned on.
fn chatml() -> PromptRenderer {
    Box::new(|msgs: &[Message]| {
        let mut s = String::new();
        for m in msgs {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            s.push_str("<|im_start|>");
            s.push_str(role);
            s.push('\n');
            for p in &m.parts {
                match p {
                    Part::Text(t) => s.push_str(t),
                    Part::Image(_) => return Err(Error::invalid("renderer got an image part")),
                }
            }
            s.push_str("<|im_end|>\n");
        }
        s.push_str("<|im_start|>assistant\n");
        Ok(s)
    })
}

fn generator() -> Option<&'static GgufGenerator> {
    static GEN: OnceLock<Option<GgufGenerator>> = OnceLock::new();
    GEN.get_or_init(|| {
        let path = common::smollm2_gguf()?;
        Some(GgufGenerator::load(path, chatml()).expect("SmolLM2 loads"))
    })
    .as_ref()
}

/// The model with its Q4_1 weights as stored (no requantization to Q8_0): llama.cpp's logits.
fn exact_generator() -> Option<&'static GgufGenerator> {
    static GEN: OnceLock<Option<GgufGenerator>> = OnceLock::new();
    GEN.get_or_init(|| {
        let path = common::smollm2_gguf()?;
        let options = GgufOptions { requantize: false };
        let gen = GgufGenerator::load_with_options(path, &Device::Cpu, &options, |_| Ok(chatml()));
        Some(gen.expect("SmolLM2 loads"))
    })
    .as_ref()
}

fn conversation() -> Vec<Message> {
    vec![
        Message::text(Role::System, SYSTEM),
        Message::text(Role::User, USER),
    ]
}

fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        temperature: 0.0,
        top_p: 1.0,
        seed: Some(0),
        stop: Vec::new(),
        repetition_penalty: 1.0,
    }
}

#[test]
fn golden_file_is_for_the_pinned_model() {
    assert_eq!(golden().model_sha256, common::GGUF_SHA256);
}

#[test]
fn tokenizer_matches_llama_cpp() {
    let Some(gen) = generator() else { return };
    let tok = gen.tokenizer();
    let g = golden();
    let mut bad = Vec::new();
    for c in &g.tokenizer_cases {
        let ours = tok.encode(&c.text, false).unwrap();
        if ours != c.ids {
            bad.push(format!(
                "{:?}:\n  ours     {ours:?}\n  llama.cpp {:?}",
                c.text, c.ids
            ));
        }
        // Decoding gives the text back (no control tokens in these cases but the markers).
        if !c.text.contains("<|") {
            assert_eq!(tok.decode(&ours), c.text);
        }
    }
    assert!(bad.is_empty(), "tokenizer differs:\n{}", bad.join("\n"));
    // Chat markers are single tokens.
    assert_eq!(tok.encode("<|im_start|>", false).unwrap(), vec![1]);
    assert_eq!(tok.encode("<|im_end|>", false).unwrap(), vec![2]);
}

#[test]
fn prompt_renders_and_tokenizes_like_llama_cpp() {
    let Some(gen) = generator() else { return };
    let g = golden();
    assert_eq!(gen.render_prompt(&conversation()).unwrap(), g.prompt);
    assert_eq!(gen.prompt_tokens(&conversation()).unwrap(), g.prompt_ids);
}

/// Below this gap between the two best logits, a different choice is rounding noise. Measured:
/// llama.cpp alone moves these gaps by up to 0.06 when its KV cache is f32 instead of its
/// default f16 (step 18: 0.0008 -> 0.061, step 27: 0.058 -> 0.006); candle keeps f32 and
/// accumulates quantized dot products in another order.
const NEAR_TIE: f32 = 0.1;

#[test]
fn greedy_decoding_matches_llama_cpp_up_to_the_first_near_tie() {
    let Some(gen) = generator() else { return };
    let g = golden();
    assert_eq!(g.greedy_ids.len(), 32);
    let out = gen
        .generate_from_tokens(&g.prompt_ids, &greedy(32), &mut |_| true)
        .unwrap();
    assert_eq!(out.generation.finish_reason, FinishReason::Length);
    assert_eq!(out.generation.completion_tokens, 32);
    let first_tie = g
        .greedy_margins
        .iter()
        .position(|m| *m < NEAR_TIE)
        .unwrap_or(32);
    assert!(
        first_tie >= 16,
        "the fixture has an early near tie at {first_tie}"
    );
    assert_eq!(
        out.tokens[..first_tie],
        g.greedy_ids[..first_tie],
        "diverges from llama.cpp before its first near tie (token {first_tie})"
    );
    if first_tie < 32 {
        // At the tie, either of llama.cpp's two best tokens is right.
        assert!(g.greedy_top2[first_tie].contains(&out.tokens[first_tie]));
    }
}

#[test]
fn teacher_forced_argmax_matches_llama_cpp_at_all_32_steps() {
    let Some(gen) = exact_generator() else { return };
    let g = golden();
    let trace = gen.greedy_trace(&g.prompt_ids, &g.greedy_ids).unwrap();
    assert_eq!(trace.len(), 32);
    let mut exact = 0;
    let mut ties = Vec::new();
    for (i, ((ours, our_margin), theirs)) in trace.iter().zip(&g.greedy_ids).enumerate() {
        if ours == theirs {
            exact += 1;
            continue;
        }
        ties.push(format!(
            "step {i}: ours {ours} margin {our_margin}, llama.cpp {theirs} margin {}",
            g.greedy_margins[i]
        ));
        // Only a near tie in both implementations may go the other way.
        assert!(
            g.greedy_margins[i] < NEAR_TIE
                && *our_margin < NEAR_TIE
                && g.greedy_top2[i].contains(ours),
            "step {i}: ours {ours} (margin {our_margin}), llama.cpp {theirs} (margin {})",
            g.greedy_margins[i]
        );
    }
    eprintln!("{exact} of 32 steps match; near ties that went the other way: {ties:?}");
    assert!(exact >= 30, "only {exact} of 32 steps match: {ties:?}");
}

/// The default, requantized model (Q4_1 weights as Q8_0, for candle's SIMD kernels): the same
/// argmax as llama.cpp at every step but llama.cpp's own near ties, where it may take
/// llama.cpp's second choice (its margin there measured at 0.14 where llama.cpp's is 0.06).
#[test]
fn requantized_model_differs_from_llama_cpp_only_at_its_near_ties() {
    let Some(gen) = generator() else { return };
    let g = golden();
    let trace = gen.greedy_trace(&g.prompt_ids, &g.greedy_ids).unwrap();
    let mut exact = 0;
    for (i, ((ours, our_margin), theirs)) in trace.iter().zip(&g.greedy_ids).enumerate() {
        if ours == theirs {
            exact += 1;
            continue;
        }
        assert!(
            g.greedy_margins[i] < NEAR_TIE && g.greedy_top2[i].contains(ours),
            "step {i}: ours {ours} (margin {our_margin}), llama.cpp {theirs} (margin {})",
            g.greedy_margins[i]
        );
    }
    assert!(exact >= 30, "only {exact} of 32 steps match");
}

#[test]
fn generate_streams_the_same_text_it_returns() {
    let Some(gen) = generator() else { return };
    let g = golden();
    let mut pieces = Vec::new();
    let out = gen
        .generate(&conversation(), &greedy(32), &mut |t| {
            pieces.push(t.to_owned());
            true
        })
        .unwrap();
    assert!(pieces.len() > 5, "streamed in pieces: {pieces:?}");
    assert_eq!(pieces.concat(), out.text);
    let ids = gen
        .generate_from_tokens(&g.prompt_ids, &greedy(32), &mut |_| true)
        .unwrap();
    assert_eq!(out.text, gen.tokenizer().decode(&ids.tokens));
    assert!(out.text.starts_with("As the sun began to set"));
    assert_eq!(out.prompt_tokens, g.prompt_ids.len());
    assert_eq!(out.completion_tokens, 32);
    assert_eq!(out.finish_reason, FinishReason::Length);
}

#[test]
fn stop_string_ends_generation_and_is_not_returned() {
    let Some(gen) = generator() else { return };
    let g = golden();
    // The reference answer starts "As the sun began to set, ..."
    assert!(g.greedy_text.starts_with("As the sun"));
    let mut params = greedy(32);
    params.stop = vec![" sun".to_owned()];
    let mut streamed = String::new();
    let out = gen
        .generate(&conversation(), &params, &mut |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(out.text, "As the");
    assert_eq!(streamed, "As the");
    assert_eq!(out.finish_reason, FinishReason::Stop);
}

#[test]
fn returning_false_cancels() {
    let Some(gen) = generator() else { return };
    let mut calls = 0;
    let out = gen
        .generate(&conversation(), &greedy(32), &mut |_| {
            calls += 1;
            false
        })
        .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert!(out.completion_tokens < 3, "{out:?}");
}

#[test]
fn seeded_sampling_is_reproducible() {
    let Some(gen) = generator() else { return };
    let params = GenerationParams {
        max_tokens: 12,
        temperature: 0.8,
        top_p: 0.9,
        seed: Some(7),
        stop: Vec::new(),
        ..Default::default()
    };
    let a = gen
        .generate(&conversation(), &params, &mut |_| true)
        .unwrap();
    let b = gen
        .generate(&conversation(), &params, &mut |_| true)
        .unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(a.completion_tokens, 12);
}

#[test]
fn info_and_chat_template_come_from_the_file() {
    let Some(gen) = generator() else { return };
    let info = gen.info();
    assert!(!info.accepts_images);
    // 8192 in the metadata, capped by candle's Llama rotary tables.
    assert_eq!(info.context_length, Some(4096));
    let t = gen.metadata_chat_template();
    assert!(t.template.as_deref().unwrap().contains("<|im_start|>"));
    assert_eq!(t.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(t.eos_token.as_deref(), Some("<|im_end|>"));
    assert!(!t.adds_bos);
}

#[test]
fn image_parts_are_dropped() {
    let Some(gen) = generator() else { return };
    let image = Part::Image(ImageData {
        bytes: Arc::new(vec![0x89, b'P', b'N', b'G']),
        mime: "image/png".into(),
    });
    let with_image = vec![
        Message::text(Role::System, SYSTEM),
        Message {
            role: Role::User,
            parts: vec![image, Part::Text(USER.into())],
        },
    ];
    assert_eq!(
        gen.prompt_tokens(&with_image).unwrap(),
        gen.prompt_tokens(&conversation()).unwrap()
    );
}

#[test]
fn prompt_longer_than_the_context_is_an_error() {
    let Some(gen) = generator() else { return };
    let long = vec![Message::text(Role::User, "hello ".repeat(5000))];
    let err = gen.generate(&long, &greedy(8), &mut |_| true).unwrap_err();
    match err {
        Error::InvalidInput(msg) => assert!(msg.contains("context of 4096"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn truncated_and_corrupt_files_are_errors_not_panics() {
    let Some(path) = common::smollm2_gguf() else {
        return;
    };
    let bytes = std::fs::read(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not-gguf", b"this is not a gguf file at all".to_vec()),
        ("header-cut", bytes[..200].to_vec()),
        ("metadata-cut", bytes[..300_000].to_vec()),
        ("weights-cut", bytes[..bytes.len() / 2].to_vec()),
        ("garbled-counts", {
            let mut b = bytes[..4096].to_vec();
            b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
    ];
    for (name, data) in cases {
        let p = dir.path().join(format!("{name}.gguf"));
        std::fs::write(&p, &data).unwrap();
        let err = GgufGenerator::load(&p, chatml()).expect_err(name);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{name}.gguf")),
            "{name}: error does not name the file: {msg}"
        );
    }
    let missing = GgufGenerator::load(dir.path().join("missing.gguf"), chatml()).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing:?}");
}
