//! Training data for RAP models: the pipeline the RAP authors describe but do not ship.
//!
//! RAP models are fine-tuned on samples that show a photo together with "concepts" (a crop, a
//! name and a short info), and ask about them: recognition, grounding, captions, descriptions
//! and questions, with noise concepts that are not in the photo so the model learns to ignore
//! irrelevant retrievals. This crate builds such data sets from ordinary inputs and checks them.
//!
//! - [`source`] reads the inputs: COCO detection annotations, or a folder per subject.
//! - [`build`] makes the samples (names, crops with a margin, augmented views, every sample
//!   type, balanced negatives, noise) and writes `OUT/train.json` with its images and crops,
//!   atomically; [`text`] holds the questions, the generator prompts (documented templates) and
//!   the deterministic fallbacks used without a generator.
//! - [`format`] is the reference training format (`id`, `image`, `conversations`, ordered
//!   `extra`, `type`) and the Hugging Face chat export, laid out with `rap_llm::layout`.
//! - [`validate`] finds every fault of a training file; [`stats`] describes one, with an SVG.
//! - [`rng`], [`names`] and [`augment`] make it deterministic: one seed, the same bytes.
//! - [`scenes`] pastes several subjects' photos on one background, with labels: synthetic
//!   multi-concept photos for evaluating retrieval (`rap eval retrieval --scenes N`).
//!
//! The reference trainer reads `OUT/train.json` with `--image_folder OUT`; its data preparation
//! turns each sample's `extra` into the RAP prompt layout (see `tests/dataset/trainer_layout.rs`).

#![forbid(unsafe_code)]

pub mod augment;
pub mod build;
pub mod format;
pub mod names;
pub mod rng;
pub mod scenes;
pub mod source;
pub mod stats;
pub mod text;
pub mod validate;

pub use build::{build, BuildOptions, BuildReport, Input};
pub use format::{
    from_json, hf_chat_record, to_hf_jsonl, to_json, Extra, ExtraConcept, Sample, SampleId,
    SampleType, Speaker, Turn,
};
pub use stats::{stats, svg, Stats};
pub use text::{TextCounts, TextGenerator, Writer};
pub use validate::{validate, Fault, FaultKind, ValidateOptions, ValidationReport};
