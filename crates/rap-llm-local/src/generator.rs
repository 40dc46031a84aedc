//! [`GgufGenerator`]: a [`Generator`] that runs a GGUF model on this machine.
//!
//! A conversation is rendered to one prompt string by a renderer the caller supplies (the chat
//! template; rap-llm renders the GGUF's own Jinja template), tokenized with the tokenizer from
//! the GGUF metadata, fed through the model with a KV cache, and sampled token by token.
//! Decoded text is streamed on UTF-8 boundaries, with stop strings held back until it is clear
//! they do not match. The model is text-only: image parts are dropped before rendering.

use crate::gguf::GgufFile;
use crate::model::{self, Architecture, Weights};
use crate::sampling::Sampler;
use crate::tokenizer::{GgufTokenizer, Utf8Stream};
use candle_core::{Device, Tensor};
use rap_core::{
    Error, FinishReason, Generation, GenerationParams, Generator, GeneratorInfo, Message, Part,
    Result,
};
use std::path::Path;
use std::sync::Mutex;

/// Renders a conversation (text parts only) to the prompt string the model is given.
pub type PromptRenderer = Box<dyn Fn(&[Message]) -> Result<String> + Send + Sync>;

/// Prompt tokens fed to the model in one forward pass.
const PREFILL_CHUNK: usize = 512;

/// What a GGUF file says about its chat format, for a template renderer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatTemplateMetadata {
    /// `tokenizer.chat_template`: a Jinja template, when the file has one.
    pub template: Option<String>,
    /// The beginning-of-sequence token's text (e.g. `<|im_start|>` or `<bos>`).
    pub bos_token: Option<String>,
    /// The end-of-sequence token's text (e.g. `<|im_end|>`).
    pub eos_token: Option<String>,
    /// Whether the tokenizer puts BOS before a prompt by itself (so a template that writes
    /// `{{ bos_token }}` would not need to; the generator never doubles it).
    pub adds_bos: bool,
}

/// How a GGUF file is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufOptions {
    /// On the CPU, requantize weights of the types candle has no SIMD kernel for (Q4_1, Q5_0,
    /// Q5_1) to Q8_0: several times faster, with logits that move by a few tenths at most
    /// ([`crate::model`]). False runs the file's own types, bit for bit as stored. Default true.
    pub requantize: bool,
}

impl Default for GgufOptions {
    fn default() -> Self {
        GgufOptions { requantize: true }
    }
}

/// Token-level result of a generation, for tests and benchmarks.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenGeneration {
    pub generation: Generation,
    /// The sampled tokens, without the end-of-generation token.
    pub tokens: Vec<u32>,
}

/// A local text-only generator over a quantized GGUF model.
pub struct GgufGenerator {
    info: GeneratorInfo,
    architecture: Architecture,
    /// One generation at a time: the KV cache lives in the weights.
    weights: Mutex<Weights>,
    tokenizer: GgufTokenizer,
    template: ChatTemplateMetadata,
    render: PromptRenderer,
    device: Device,
    context_length: usize,
}

impl std::fmt::Debug for GgufGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufGenerator")
            .field("info", &self.info)
            .field("architecture", &self.architecture)
            .field("tokenizer", &self.tokenizer)
            .finish_non_exhaustive()
    }
}

impl GgufGenerator {
    /// Loads the model at `path` on the CPU, rendering prompts with `render`.
    pub fn load(path: impl AsRef<Path>, render: PromptRenderer) -> Result<Self> {
        Self::load_with_template(path, &Device::Cpu, |_| Ok(render))
    }

    /// Loads the model at `path` on `device`; `make_renderer` is given the file's chat
    /// template metadata and returns the renderer (e.g. rap-llm's Jinja renderer for it).
    pub fn load_with_template(
        path: impl AsRef<Path>,
        device: &Device,
        make_renderer: impl FnOnce(&ChatTemplateMetadata) -> Result<PromptRenderer>,
    ) -> Result<Self> {
        Self::load_with_options(path, device, &GgufOptions::default(), make_renderer)
    }

    /// [`Self::load_with_template`] with load options.
    pub fn load_with_options(
        path: impl AsRef<Path>,
        device: &Device,
        options: &GgufOptions,
        make_renderer: impl FnOnce(&ChatTemplateMetadata) -> Result<PromptRenderer>,
    ) -> Result<Self> {
        let path = path.as_ref();
        let mut file = GgufFile::open(path)?;
        let tokenizer = GgufTokenizer::from_gguf(&file)?;
        let template = ChatTemplateMetadata {
            template: file.opt_str("tokenizer.chat_template")?.map(str::to_owned),
            bos_token: tokenizer.bos_token().map(str::to_owned),
            eos_token: tokenizer.eos_token().map(str::to_owned),
            adds_bos: tokenizer.adds_bos(),
        };
        let name = match file.opt_str("general.name")? {
            Some(n) if !n.trim().is_empty() => n.to_owned(),
            _ => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "gguf".to_owned()),
        };
        let (architecture, weights, context_length) =
            model::load(&mut file, device, options.requantize)?;
        let render = make_renderer(&template)?;
        tracing::info!(
            path = %path.display(),
            arch = architecture.gguf_name(),
            context_length,
            vocab = tokenizer.vocab_size(),
            "loaded GGUF model"
        );
        Ok(GgufGenerator {
            info: GeneratorInfo {
                model: name,
                accepts_images: false,
                context_length: Some(context_length),
            },
            architecture,
            weights: Mutex::new(weights),
            tokenizer,
            template,
            render,
            device: device.clone(),
            context_length,
        })
    }

    /// Names the model (its id in answers and model lists) instead of the file's
    /// `general.name`: a catalogue name says what the model is, a GGUF's name often does not.
    pub fn set_model_id(&mut self, id: impl Into<String>) {
        self.info.model = id.into();
    }

    /// Replaces the prompt renderer.
    pub fn set_renderer(&mut self, render: PromptRenderer) {
        self.render = render;
    }

    /// The file's chat template, BOS and EOS tokens.
    pub fn metadata_chat_template(&self) -> &ChatTemplateMetadata {
        &self.template
    }

    /// The tokenizer built from the file's metadata.
    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    /// The model's architecture.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// Tokens the model can attend to: prompt and answer together. This is the metadata's
    /// context length, capped by what candle's implementation supports (4096 for Llama).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The prompt string `messages` render to (image parts dropped).
    pub fn render_prompt(&self, messages: &[Message]) -> Result<String> {
        let texts: Vec<Message> = messages
            .iter()
            .map(|m| Message {
                role: m.role,
                parts: m
                    .parts
                    .iter()
                    .filter(|p| matches!(p, Part::Text(_)))
                    .cloned()
                    .collect(),
            })
            .collect();
        (self.render)(&texts)
    }

    /// The prompt's token ids, as the model would get them (BOS added when the model wants it).
    pub fn prompt_tokens(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let prompt = self.render_prompt(messages)?;
        self.tokenizer.encode(&prompt, true)
    }

    /// Diagnostic for comparing with a reference implementation: feeds `prompt`, then each
    /// token of `forced` in turn (teacher forcing), and returns at every step the model's own
    /// best token and the gap between its best and second-best logits. `forced.len()` steps.
    pub fn greedy_trace(&self, prompt: &[u32], forced: &[u32]) -> Result<Vec<(u32, f32)>> {
        if prompt.is_empty() {
            return Err(Error::invalid("the prompt is empty"));
        }
        if prompt.len() + forced.len() > self.context_length {
            return Err(Error::invalid(format!(
                "{} tokens exceed the context of {}",
                prompt.len() + forced.len(),
                self.context_length
            )));
        }
        let model_err = |e: candle_core::Error| Error::Model(format!("{}: {e}", self.info.model));
        let mut model = self.weights.lock().unwrap_or_else(|p| p.into_inner());
        model.clear_kv_cache();
        let mut logits = None;
        let mut pos = 0;
        let chunk = if self.architecture.chunked_prefill() {
            PREFILL_CHUNK
        } else {
            prompt.len()
        };
        for piece in prompt.chunks(chunk) {
            let input = Tensor::new(piece, &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(model_err)?;
            logits = Some(model.forward(&input, pos).map_err(model_err)?);
            pos += piece.len();
        }
        let mut logits = logits.ok_or_else(|| Error::invalid("the prompt is empty"))?;
        let mut out = Vec::with_capacity(forced.len());
        for &tok in forced {
            let v: Vec<f32> = logits
                .squeeze(0)
                .and_then(|l| l.to_dtype(candle_core::DType::F32))
                .and_then(|l| l.to_vec1())
                .map_err(model_err)?;
            let (mut best, mut second) = ((0usize, f32::NEG_INFINITY), f32::NEG_INFINITY);
            for (i, &x) in v.iter().enumerate() {
                if x > best.1 {
                    second = best.1;
                    best = (i, x);
                } else if x > second {
                    second = x;
                }
            }
            out.push((best.0 as u32, best.1 - second));
            let input = Tensor::new(&[tok], &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(model_err)?;
            logits = model.forward(&input, pos).map_err(model_err)?;
            pos += 1;
        }
        Ok(out)
    }

    /// Generates from already tokenized input; `on_text` streams the text as in
    /// [`Generator::generate`]. A prompt that does not leave room for one new token in the
    /// context is an error ([`Error::InvalidInput`]), not silently truncated: the caller
    /// decides what to drop. Generation ends with [`FinishReason::Length`] when the context
    /// is full.
    pub fn generate_from_tokens(
        &self,
        prompt: &[u32],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<TokenGeneration> {
        if prompt.is_empty() {
            return Err(Error::invalid("the prompt is empty"));
        }
        if prompt.len() >= self.context_length {
            return Err(Error::invalid(format!(
                "the prompt is {} tokens, but {} has a context of {} tokens (prompt and answer together)",
                prompt.len(),
                self.info.model,
                self.context_length
            )));
        }
        let vocab = self.tokenizer.vocab_size() as u32;
        if let Some(bad) = prompt.iter().find(|t| **t >= vocab) {
            return Err(Error::invalid(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let mut sampler = Sampler::new(params)?;
        let done = |text: String, reason, tokens: Vec<u32>| TokenGeneration {
            generation: Generation {
                text,
                finish_reason: reason,
                prompt_tokens: prompt.len(),
                completion_tokens: tokens.len(),
            },
            tokens,
        };
        if params.max_tokens == 0 {
            return Ok(done(String::new(), FinishReason::Length, Vec::new()));
        }

        let model_err = |e: candle_core::Error| Error::Model(format!("{}: {e}", self.info.model));
        // A panic while generating (never expected) leaves a stale cache, which is cleared here.
        let mut model = self.weights.lock().unwrap_or_else(|p| p.into_inner());
        model.clear_kv_cache();
        let chunk = if self.architecture.chunked_prefill() {
            PREFILL_CHUNK
        } else {
            prompt.len()
        };
        let mut logits = None;
        let mut pos = 0;
        for piece in prompt.chunks(chunk) {
            let input = Tensor::new(piece, &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(model_err)?;
            logits = Some(model.forward(&input, pos).map_err(model_err)?);
            pos += piece.len();
        }
        let mut logits = logits.ok_or_else(|| Error::invalid("the prompt is empty"))?;

        let mut tokens = Vec::new();
        let mut utf8 = Utf8Stream::default();
        let mut stops = StopScanner::new(&params.stop);
        let reason = loop {
            let next = logits
                .squeeze(0)
                .and_then(|l| sampler.sample(&l, &tokens))
                .map_err(model_err)?;
            if self.tokenizer.is_eog(next) {
                break FinishReason::Stop;
            }
            tokens.push(next);
            let piece = utf8.push(&self.tokenizer.token_bytes(next));
            let (emit, stopped) = stops.push(&piece);
            if !emit.is_empty() && !on_text(&emit) {
                break FinishReason::Cancelled;
            }
            if stopped {
                break FinishReason::Stop;
            }
            if tokens.len() >= params.max_tokens || pos >= self.context_length {
                break FinishReason::Length;
            }
            let input = Tensor::new(&[next], &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(model_err)?;
            logits = model.forward(&input, pos).map_err(model_err)?;
            pos += 1;
        };
        if reason != FinishReason::Cancelled && !stops.stopped {
            let tail = utf8.finish();
            let (mut emit, _) = stops.push(&tail);
            emit.push_str(&stops.finish());
            if !emit.is_empty() && !on_text(&emit) {
                return Ok(done(stops.text, FinishReason::Cancelled, tokens));
            }
        }
        Ok(done(stops.into_text(), reason, tokens))
    }
}

impl Generator for GgufGenerator {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if messages.iter().any(|m| m.images().next().is_some()) {
            tracing::debug!("text-only model: image parts dropped");
        }
        let prompt = self.prompt_tokens(messages)?;
        Ok(self
            .generate_from_tokens(&prompt, params, on_text)?
            .generation)
    }
}

/// Finds stop strings in streamed text, holding back any tail that could still become one.
#[derive(Debug)]
pub(crate) struct StopScanner {
    stops: Vec<String>,
    text: String,
    emitted: usize,
    stopped: bool,
}

impl StopScanner {
    pub(crate) fn new(stops: &[String]) -> Self {
        StopScanner {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            emitted: 0,
            stopped: false,
        }
    }

    /// Adds `piece`; returns the text that can be shown now and whether a stop string matched.
    pub(crate) fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.text.push_str(piece);
        let pending = &self.text[self.emitted..];
        let hit = self
            .stops
            .iter()
            .filter_map(|s| pending.find(s.as_str()))
            .min();
        if let Some(at) = hit {
            let end = self.emitted + at;
            let out = self.text[self.emitted..end].to_owned();
            self.text.truncate(end);
            self.emitted = end;
            self.stopped = true;
            return (out, true);
        }
        // Hold back the longest tail that is a proper prefix of a stop string.
        let mut hold = 0;
        for s in &self.stops {
            for (i, _) in pending.char_indices() {
                let tail = &pending[i..];
                if tail.len() <= hold {
                    break;
                }
                if s.starts_with(tail) {
                    hold = tail.len();
                    break;
                }
            }
        }
        let end = self.text.len() - hold;
        let out = self.text[self.emitted..end].to_owned();
        self.emitted = end;
        (out, false)
    }

    /// The held-back text, when the stream ends without a stop string.
    pub(crate) fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let out = self.text[self.emitted..].to_owned();
        self.emitted = self.text.len();
        out
    }

    pub(crate) fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::StopScanner;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = StopScanner::new(&stops);
        let mut out = Vec::new();
        let mut stopped = false;
        for p in pieces {
            let (e, st) = s.push(p);
            out.push(e);
            if st {
                stopped = true;
                break;
            }
        }
        if !stopped {
            out.push(s.finish());
        }
        (out, s.into_text(), stopped)
    }

    #[test]
    fn stop_string_split_across_pieces_is_never_shown() {
        let (out, text, stopped) = run(&["\nUSER:"], &["Hello", " there\n", "US", "ER: hi"]);
        assert!(stopped);
        assert_eq!(text, "Hello there");
        assert_eq!(out.concat(), "Hello there");
        assert_eq!(out[1], " there"); // "\n" held back
    }

    #[test]
    fn held_back_prefix_is_released_when_it_does_not_match() {
        let (out, text, stopped) = run(&["###"], &["a#", "#b", "c"]);
        assert!(!stopped);
        assert_eq!(text, "a##bc");
        assert_eq!(out, vec!["a", "##b", "c", ""]);
    }

    #[test]
    fn earliest_of_several_stops_wins_and_multibyte_is_safe() {
        let (_, text, stopped) = run(&["é!", "b"], &["aé", "!xb"]);
        assert!(stopped);
        assert_eq!(text, "a");
        let (out, text, _) = run(&[], &["ü", "ber"]);
        assert_eq!(text, "über");
        assert_eq!(out.concat(), "über");
    }
}
