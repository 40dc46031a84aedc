//! Scorers for the RAP paper's tasks, usable on saved outputs (ours, the reference's, any
//! system's), with the paper's definitions (see `rap-reference.md`, "Evaluation").
//!
//! - [`caption`]: concept recall / precision / F1 of captions, names and aliases matched
//!   case-insensitively on word boundaries, micro-averaged over images.
//! - [`recognition`]: yes/no answers to "Is <c> in this image?", positive, negative and weighted
//!   accuracy by `correct_answer`.
//! - [`qa`]: multiple-choice and short-answer exact match after normalisation.
//! - [`open`]: open questions about concepts, scored by a rule (names the concept, contradicts
//!   none of its info).
//! - [`retrieval`]: top-1, recall@5, MRR and thresholded recognition of the retriever on a
//!   folder-per-subject photo collection; [`scaling`]: its recall as distractors fill the memory;
//!   [`scenes`]: multi-concept precision/recall/F1 on synthetic scenes; [`negatives`]: negative
//!   accuracy on photos that hold none of the concepts.
//! - [`library`]: precision / recall / precision@k of `rap library find` on a folder-per-subject
//!   collection indexed as a photo library.
//! - [`tasks`]: the reference's evaluation input files as questions and prediction rows;
//!   [`journal`]: predictions written as they come, so an interrupted run resumes.
//!
//! Each module has pure scoring functions and a reader for its predictions file; reports are
//! serde-serialisable (totals plus one entry per item) so a CLI can print a table or JSON.

#![forbid(unsafe_code)]

pub mod caption;
mod io;
pub mod journal;
pub mod library;
pub mod negatives;
pub mod open;
pub mod qa;
pub mod recognition;
pub mod retrieval;
pub mod scaling;
pub mod scenes;
pub mod tasks;

pub use caption::{
    read_caption_predictions, score_captions, CaptionItem, CaptionReport, Vocabulary,
};
pub use open::{read_open_predictions, score_open, OpenReport, OpenRow};
pub use qa::{read_qa_predictions, score_qa, CircularReport, QaReport, QaRow};
pub use recognition::{
    parse_yes_no, read_recognition_predictions, score_recognition, RecognitionReport,
    RecognitionRow,
};

/// `num / den`, or `None` when `den` is 0.
pub(crate) fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Harmonic mean of precision and recall (0 when both are 0).
pub(crate) fn f1(p: Option<f64>, r: Option<f64>) -> Option<f64> {
    let (p, r) = (p?, r?);
    Some(if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    })
}
