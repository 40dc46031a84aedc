//! Local text generation for `rap`: quantized GGUF models run on this machine through candle,
//! and a LLaVA-1.5 vision-language model ([`llava`], RAP-LLaVA's architecture, from safetensors
//! in the llava-hf or the original LLaVA layout, LoRA adapters merged at load time).
//!
//! [`GgufGenerator`] implements [`rap_core::Generator`] for Llama-family (SmolLM2 included),
//! Qwen2 and Gemma 3 GGUF files. Everything it needs comes from the one file: the weights
//! ([`model`], candle-transformers' quantized models picked by `general.architecture`), the
//! tokenizer ([`tokenizer`], rebuilt from `tokenizer.ggml.*`) and the chat template string
//! (exposed as [`ChatTemplateMetadata`] for a Jinja renderer; the generator itself is handed a
//! [`PromptRenderer`]). The model cannot see images: `info().accepts_images` is false and image
//! parts are dropped, the engine passes retrieval results as text instead.
//!
//! Correctness is pinned against llama.cpp on SmolLM2-135M-Instruct Q4_1 (`tests/smollm2.rs`,
//! fixtures from `tools/golden/gguf_llamacpp.py`): identical tokenization, identical greedy
//! tokens up to the first near tie. Speed: candle 0.11 picks its AVX2 kernels (Q4_0, Q8_0,
//! K-quants) at run time but has only scalar code for Q4_1, Q5_0 and Q5_1, so on the CPU those
//! weights are requantized to Q8_0 at load ([`model`]); `rap bench generate` measures tokens/s
//! next to `tools/golden/bench_llamacpp.py`.
//!
//! ```no_run
//! use rap_core::{GenerationParams, Generator, Message, Role};
//! use rap_llm_local::GgufGenerator;
//!
//! let chatml = Box::new(|msgs: &[Message]| {
//!     let mut s = String::new();
//!     for m in msgs {
//!         let role = match m.role { Role::System => "system", Role::User => "user", Role::Assistant => "assistant" };
//!         let text: String = m.parts.iter().filter_map(|p| match p {
//!             rap_core::Part::Text(t) => Some(t.as_str()), _ => None }).collect();
//!         s.push_str(&format!("<|im_start|>{role}\n{text}<|im_end|>\n"));
//!     }
//!     s.push_str("<|im_start|>assistant\n");
//!     Ok(s)
//! });
//! let gen = GgufGenerator::load("SmolLM2-135M-Instruct.Q4_1.gguf", chatml)?;
//! let params = GenerationParams { temperature: 0.0, max_tokens: 64, ..Default::default() };
//! let answer = gen.generate(&[Message::text(Role::User, "Hi!")], &params, &mut |t| {
//!     print!("{t}");
//!     true
//! })?;
//! # Ok::<(), rap_core::Error>(())
//! ```

// Unsafe only where marked `#[allow(unsafe_code)]`, each block with a `// SAFETY:` note.
#![deny(unsafe_code)]

mod generator;
pub mod gguf;
pub mod llava;
pub mod model;
mod sampling;
pub mod tokenizer;

pub use generator::{
    ChatTemplateMetadata, GgufGenerator, GgufOptions, PromptRenderer, TokenGeneration,
};
pub use gguf::GgufFile;
pub use llava::{LlavaGenerator, LlavaOptions};
pub use model::Architecture;
pub use tokenizer::{GgufTokenizer, Utf8Stream, VocabKind};
