//! The SentencePiece (`tokenizer.ggml.model = llama`) path, on a tiny GGUF written here:
//! merges from scores, byte fallback, control tokens, space handling; and load errors.

use candle_core::quantized::gguf_file::{self, Value};
use rap_llm_local::{GgufFile, GgufGenerator, GgufTokenizer, VocabKind};

const TOKENS: &[(&str, f32, i32)] = &[
    ("<unk>", 0.0, 2),
    ("<bos>", 0.0, 3),
    ("<eos>", 0.0, 3),
    ("<start_of_turn>", 0.0, 3),
    ("<end_of_turn>", 0.0, 3),
    ("<0x0A>", 0.0, 6),
    ("<0xC3>", 0.0, 6),
    ("<0xA9>", 0.0, 6),
    ("\u{2581}", -10.0, 1),
    ("h", -10.0, 1),
    ("e", -10.0, 1),
    ("l", -10.0, 1),
    ("o", -10.0, 1),
    ("w", -10.0, 1),
    ("r", -10.0, 1),
    ("d", -10.0, 1),
    ("he", -5.0, 1),
    ("ll", -4.0, 1),
    ("llo", -3.0, 1),
    ("hello", -1.0, 1),
    ("\u{2581}w", -6.0, 1),
    ("or", -5.5, 1),
    ("\u{2581}wor", -3.5, 1),
    ("ld", -5.0, 1),
    ("\u{2581}world", -2.0, 1),
];

fn write_gguf(path: &std::path::Path, arch: &str, add_space_prefix: bool) {
    let tokens = Value::Array(TOKENS.iter().map(|t| Value::String(t.0.into())).collect());
    let scores = Value::Array(TOKENS.iter().map(|t| Value::F32(t.1)).collect());
    let types = Value::Array(TOKENS.iter().map(|t| Value::I32(t.2)).collect());
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String(arch.into())),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", tokens),
        ("tokenizer.ggml.scores", scores),
        ("tokenizer.ggml.token_type", types),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
        (
            "tokenizer.ggml.add_space_prefix",
            Value::Bool(add_space_prefix),
        ),
        (
            "tokenizer.chat_template",
            Value::String("{{ bos_token }}".into()),
        ),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &[]).unwrap();
}

fn tokenizer(add_space_prefix: bool) -> GgufTokenizer {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny.gguf");
    write_gguf(&p, "gemma3", add_space_prefix);
    GgufTokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap()
}

fn id(s: &str) -> u32 {
    TOKENS.iter().position(|t| t.0 == s).unwrap() as u32
}

#[test]
fn merges_follow_scores_and_bytes_fall_back() {
    let tok = tokenizer(false);
    assert_eq!(tok.kind(), VocabKind::SentencePiece);
    assert_eq!(
        tok.encode("hello world", false).unwrap(),
        vec![id("hello"), id("\u{2581}world")]
    );
    // A BOS is added (SentencePiece default) once, never twice.
    assert_eq!(tok.encode("hello", true).unwrap(), vec![1, id("hello")]);
    assert_eq!(
        tok.encode("<bos>hello", true).unwrap(),
        vec![1, id("hello")]
    );
    // Control tokens are single tokens; unknown characters fall back to their bytes.
    let ids = tok
        .encode("<start_of_turn>hello\n\u{e9}<end_of_turn>", false)
        .unwrap();
    assert_eq!(
        ids,
        vec![
            id("<start_of_turn>"),
            id("hello"),
            id("<0x0A>"),
            id("<0xC3>"),
            id("<0xA9>"),
            id("<end_of_turn>")
        ]
    );
    // Decoding drops control tokens and reassembles the bytes.
    assert_eq!(tok.decode(&ids), "hello\n\u{e9}");
    assert!(tok.is_eog(id("<end_of_turn>")) && tok.is_eog(2) && !tok.is_eog(id("hello")));
    assert_eq!(tok.bos_token(), Some("<bos>"));
}

#[test]
fn space_prefix_is_added_when_the_file_says_so() {
    let tok = tokenizer(true);
    assert_eq!(
        tok.encode("world", false).unwrap(),
        vec![id("\u{2581}world")]
    );
    assert_eq!(tok.decode(&[id("\u{2581}world")]), " world");
}

#[test]
fn a_file_without_weights_or_of_an_unknown_architecture_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mamba.gguf");
    write_gguf(&p, "mamba", false);
    let err = GgufGenerator::load(&p, Box::new(|_| Ok(String::new()))).unwrap_err();
    assert!(
        err.to_string()
            .contains("architecture `mamba` is not supported"),
        "{err}"
    );

    let p = dir.path().join("gemma-without-weights.gguf");
    write_gguf(&p, "gemma3", false);
    let err = GgufGenerator::load(&p, Box::new(|_| Ok(String::new()))).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("gemma-without-weights.gguf") && msg.contains("missing"),
        "{msg}"
    );
}
