//! The tokenizer of a GGUF model, built from its metadata alone (no `tokenizer.json`).
//!
//! Two vocabulary kinds are supported, as llama.cpp names them in `tokenizer.ggml.model`:
//! - `gpt2`: byte-level BPE (SmolLM2, Qwen2, Llama 3): `tokenizer.ggml.tokens` + `.merges`,
//!   split by the regular expressions llama.cpp uses for the `tokenizer.ggml.pre` type;
//! - `llama`: SentencePiece BPE with scores and byte fallback (Gemma, Llama 2): merges are
//!   derived from the token scores, which is what SentencePiece's greedy merging does.
//!
//! Control tokens (type 3) and user-defined tokens (type 4) are matched in the text as whole
//! tokens, so chat markers such as `<|im_start|>` are one token each. Decoding is byte-exact
//! ([`GgufTokenizer::token_bytes`]) so that streaming can cut text on UTF-8 boundaries.

use crate::gguf::GgufFile;
use rap_core::{Error, Result};
use std::collections::{HashMap, HashSet};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TYPE_NORMAL: i64 = 1;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;
const TYPE_BYTE: i64 = 6;

/// GPT-2's word split, used by `gpt2`, `smollm`, `starcoder`... (llama.cpp's regexes).
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer split expressions for a `tokenizer.ggml.pre` value, applied in order.
/// Unknown values fall back to GPT-2's (with a warning), as old llama.cpp did.
fn pre_regexes(pre: &str) -> Vec<&'static str> {
    match pre {
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            vec![r"\p{N}", GPT2_REGEX]
        }
        "qwen2" | "stablelm2" | "deepseek-r1-qwen" => vec![QWEN2_REGEX],
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" => {
            vec![LLAMA3_REGEX]
        }
        "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "default" => vec![GPT2_REGEX],
        other => {
            tracing::warn!(
                pre = other,
                "unknown tokenizer.ggml.pre; using GPT-2's word split"
            );
            vec![GPT2_REGEX]
        }
    }
}

/// GPT-2's reversible byte <-> printable-char table.
fn gpt2_byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + n).unwrap_or('\u{FFFD}');
            n += 1;
            c
        };
    }
    table
}

/// Which kind of vocabulary the model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// `gpt2`: byte-level BPE.
    ByteLevelBpe,
    /// `llama`: SentencePiece BPE with byte fallback.
    SentencePiece,
}

/// A tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata.
pub struct GgufTokenizer {
    tokenizer: Tokenizer,
    kind: VocabKind,
    tokens: Vec<String>,
    token_types: Vec<i64>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    eog: HashSet<u32>,
    byte_decoder: HashMap<char, u8>,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

impl GgufTokenizer {
    /// Builds the tokenizer from the metadata of `file`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let path = file.path().display().to_string();
        let bad = |what: String| Error::Model(format!("{path}: tokenizer: {what}"));
        let model = file.get_str("tokenizer.ggml.model")?;
        let kind = match model {
            "gpt2" => VocabKind::ByteLevelBpe,
            "llama" => VocabKind::SentencePiece,
            other => {
                return Err(bad(format!(
                    "tokenizer.ggml.model `{other}` is not supported (only `gpt2` and `llama`)"
                )))
            }
        };
        let tokens: Vec<String> = file
            .get_str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_owned)
            .collect();
        if tokens.is_empty() {
            return Err(bad("tokenizer.ggml.tokens is empty".into()));
        }
        if u32::try_from(tokens.len()).is_err() {
            return Err(bad("too many tokens".into()));
        }
        let token_types = match file.get("tokenizer.ggml.token_type") {
            Some(_) => file.get_int_array("tokenizer.ggml.token_type")?,
            None => vec![TYPE_NORMAL; tokens.len()],
        };
        if token_types.len() != tokens.len() {
            return Err(bad(format!(
                "{} token types for {} tokens",
                token_types.len(),
                tokens.len()
            )));
        }
        let n = tokens.len() as u64;
        let id = |key: &str| -> Result<Option<u32>> {
            match file.opt_u64(key)? {
                None => Ok(None),
                Some(v) if v < n => Ok(Some(v as u32)),
                Some(v) => Err(bad(format!("{key} = {v} is outside the vocabulary of {n}"))),
            }
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let eot = id("tokenizer.ggml.eot_token_id")?;
        let eom = id("tokenizer.ggml.eom_token_id")?;
        let unk = id("tokenizer.ggml.unknown_token_id")?;
        let pre = file.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
        // llama.cpp's defaults per vocabulary kind, then the file's own flags.
        let default_add_bos = match kind {
            VocabKind::SentencePiece => true,
            VocabKind::ByteLevelBpe => matches!(pre, "llama3" | "llama-v3" | "llama-bpe"),
        };
        let add_bos = file
            .opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(default_add_bos)
            && bos.is_some();
        let add_space_prefix = file
            .opt_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(kind == VocabKind::SentencePiece);

        let vocab: ahash::AHashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();

        let mut tokenizer = match kind {
            VocabKind::ByteLevelBpe => {
                let merges: Vec<(String, String)> = file
                    .get_str_array("tokenizer.ggml.merges")?
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_owned(), b.to_owned()))
                            .ok_or_else(|| bad(format!("merge {i} `{m}` is not `left right`")))
                    })
                    .collect::<Result<_>>()?;
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .build()
                    .map_err(|e| bad(format!("building the BPE model: {e}")))?;
                let mut tk = Tokenizer::new(bpe);
                let mut pres: Vec<PreTokenizerWrapper> = Vec::new();
                for re in pre_regexes(pre) {
                    let split = Split::new(
                        SplitPattern::Regex(re.to_owned()),
                        SplitDelimiterBehavior::Isolated,
                        false,
                    )
                    .map_err(|e| bad(format!("pre-tokenizer regex: {e}")))?;
                    pres.push(split.into());
                }
                pres.push(ByteLevel::new(false, false, false).into());
                tk.with_pre_tokenizer(Some(PreSequence::new(pres)));
                tk.with_decoder(Some(ByteLevelDecoder::default()));
                tk
            }
            VocabKind::SentencePiece => {
                let scores = match file.get("tokenizer.ggml.scores") {
                    Some(_) => file.get_f32_array("tokenizer.ggml.scores")?,
                    None => vec![0.0; tokens.len()],
                };
                if scores.len() != tokens.len() {
                    return Err(bad(format!(
                        "{} scores for {} tokens",
                        scores.len(),
                        tokens.len()
                    )));
                }
                let merges = spm_merges(&tokens, &token_types, &scores, &vocab);
                let mut builder = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .byte_fallback(true)
                    .fuse_unk(true);
                if let Some(u) = unk {
                    builder = builder.unk_token(tokens[u as usize].clone());
                }
                let bpe = builder
                    .build()
                    .map_err(|e| bad(format!("building the BPE model: {e}")))?;
                let mut tk = Tokenizer::new(bpe);
                let replace =
                    Replace::new(" ", "\u{2581}").map_err(|e| bad(format!("normalizer: {e}")))?;
                let norm: NormalizerWrapper = if add_space_prefix {
                    tokenizers::normalizers::Sequence::new(vec![
                        Prepend::new("\u{2581}".into()).into(),
                        replace.into(),
                    ])
                    .into()
                } else {
                    replace.into()
                };
                tk.with_normalizer(Some(norm))
                    .map_err(|e| bad(format!("normalizer: {e}")))?;
                let dec: DecoderWrapper = DecoderSequence::new(vec![
                    tokenizers::decoders::DecoderWrapper::Replace(
                        Replace::new("\u{2581}", " ").map_err(|e| bad(format!("decoder: {e}")))?,
                    ),
                    ByteFallback::new().into(),
                    Fuse::new().into(),
                ])
                .into();
                tk.with_decoder(Some(dec));
                tk
            }
        };

        // Control and user-defined tokens are matched whole, before the model sees the text.
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&token_types)
            .filter(|(_, t)| **t == TYPE_CONTROL || **t == TYPE_USER_DEFINED)
            .map(|(s, t)| {
                AddedToken::from(s.clone(), *t == TYPE_CONTROL)
                    .normalized(false)
                    .single_word(false)
                    .lstrip(false)
                    .rstrip(false)
            })
            .filter(|t| !t.content.is_empty())
            .collect();
        tokenizer
            .add_tokens(added)
            .map_err(|e| bad(format!("adding special tokens: {e}")))?;

        // End-of-generation tokens, as llama.cpp finds them.
        const EOG_TEXTS: &[&str] = &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|eom_id|>",
            "<EOT>",
            "<|end_of_text|>",
        ];
        let mut eog: HashSet<u32> = [eos, eot, eom].into_iter().flatten().collect();
        for (i, t) in tokens.iter().enumerate() {
            if EOG_TEXTS.contains(&t.as_str()) {
                eog.insert(i as u32);
            }
        }

        let byte_decoder = gpt2_byte_chars()
            .iter()
            .enumerate()
            .map(|(b, c)| (*c, b as u8))
            .collect();
        Ok(GgufTokenizer {
            tokenizer,
            kind,
            tokens,
            token_types,
            bos,
            eos,
            add_bos,
            eog,
            byte_decoder,
        })
    }

    /// The kind of vocabulary.
    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Tokenizes `text`; markers of control and user-defined tokens become single tokens.
    /// With `add_bos`, the beginning-of-sequence token is put first when the model asks for it
    /// (`tokenizer.ggml.add_bos_token`) and the text does not already start with it.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| Error::Model(format!("tokenizing: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if add_bos && self.add_bos {
            if let Some(b) = self.bos {
                if ids.first() != Some(&b) {
                    ids.insert(0, b);
                }
            }
        }
        Ok(ids)
    }

    /// The text of a token as stored in the vocabulary (`Ġ`-encoded for byte-level BPE).
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Whether `id` is a control token (chat markers, BOS/EOS...).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_types.get(id as usize) == Some(&TYPE_CONTROL)
    }

    /// Whether generating `id` ends generation (EOS, end-of-turn...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos.and_then(|b| self.token_str(b))
    }

    /// The end-of-sequence token, if the model has one.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos.and_then(|b| self.token_str(b))
    }

    /// Whether the model wants a BOS token at the start of a prompt.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The bytes a token stands for in generated text; empty for control tokens and unknown ids.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let (Some(tok), Some(ty)) = (
            self.tokens.get(id as usize),
            self.token_types.get(id as usize),
        ) else {
            return Vec::new();
        };
        if *ty == TYPE_CONTROL {
            return Vec::new();
        }
        match self.kind {
            VocabKind::ByteLevelBpe => {
                if *ty == TYPE_USER_DEFINED {
                    return tok.as_bytes().to_vec();
                }
                let mut out = Vec::with_capacity(tok.len());
                for c in tok.chars() {
                    match self.byte_decoder.get(&c) {
                        Some(b) => out.push(*b),
                        None => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
                out
            }
            VocabKind::SentencePiece => {
                if *ty == TYPE_BYTE {
                    if let Some(hex) = tok.strip_prefix("<0x").and_then(|s| s.strip_suffix('>')) {
                        if let Ok(b) = u8::from_str_radix(hex, 16) {
                            return vec![b];
                        }
                    }
                }
                tok.replace('\u{2581}', " ").into_bytes()
            }
        }
    }

    /// Decodes `ids` to text (control tokens dropped, invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|i| self.token_bytes(*i)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// SentencePiece merges from scores: every split of a token into two tokens is a merge, ranked
/// by the merged token's score (higher first), which is the order SentencePiece merges in.
fn spm_merges(
    tokens: &[String],
    types: &[i64],
    scores: &[f32],
    vocab: &ahash::AHashMap<String, u32>,
) -> Vec<(String, String)> {
    let mut merges: Vec<(f32, u32, String, String)> = Vec::new();
    for (i, tok) in tokens.iter().enumerate() {
        if types[i] != TYPE_NORMAL && types[i] != TYPE_USER_DEFINED {
            continue;
        }
        for (pos, _) in tok.char_indices().skip(1) {
            let (l, r) = tok.split_at(pos);
            if vocab.contains_key(l) && vocab.contains_key(r) {
                merges.push((scores[i], i as u32, l.to_owned(), r.to_owned()));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    merges.into_iter().map(|(_, _, l, r)| (l, r)).collect()
}

/// Turns a stream of token bytes into text, holding back an incomplete UTF-8 sequence until
/// the token that completes it arrives.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds `bytes`; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: the prefix is valid UTF-8 by construction.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes: replace them and go on.
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream; an incomplete sequence left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_table_is_a_bijection() {
        let t = gpt2_byte_chars();
        let set: HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b' ' as usize], '\u{120}'); // Ġ
        assert_eq!(t[b'\n' as usize], '\u{10A}'); // Ċ
        assert_eq!(t[b'A' as usize], 'A');
    }

    #[test]
    fn utf8_stream_holds_back_split_characters() {
        let mut s = Utf8Stream::default();
        let crab = "🦀".as_bytes();
        assert_eq!(s.push(b"a"), "a");
        assert_eq!(s.push(&crab[..1]), "");
        assert_eq!(s.push(&crab[1..3]), "");
        assert_eq!(s.push(&crab[3..]), "🦀");
        assert_eq!(s.push(&[0xff, b'b']), "\u{FFFD}b");
        assert_eq!(s.push(&[0xe2, 0x82]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
