//! Recognition: "Is <c> in this image?" answered yes or no, scored by `correct_answer`.
//!
//! Rows are the reference's recognition rows (`image`, `question`, `concept`, `type`,
//! `correct_answer`) plus the model's `answer`. Scoring uses `correct_answer`, never `type`:
//! the reference file has rows labelled `negative` whose answer is true.
//!
//! - Positive accuracy: share of rows with `correct_answer = true` answered yes.
//! - Negative accuracy: share of rows with `correct_answer = false` answered no.
//! - Weighted: the mean of the two (the paper's figure).
//!
//! An answer that [`parse_yes_no`] cannot read counts as wrong and is listed in the report.

use crate::io::{kind, read_json_array, str_field};
use crate::ratio;
use rap_core::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// One scored row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecognitionRow {
    pub image: String,
    pub concept: String,
    /// The file's `type` label (informational only).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub correct_answer: bool,
    pub answer: String,
}

/// Reads a yes/no answer: the first word, ignoring case, leading punctuation/quotes/markup and
/// a leading `Answer:`. `yes`, `yeah`, `yep`, `true`, `correct` are yes; `no`, `nope`, `false`,
/// `incorrect` are no; anything else (including an empty answer) is `None`.
///
/// "Yes." / "yes, it is" / "Yes, <bo> is in the image" -> yes; "No" / "no." -> no;
/// "Maybe" / "<bo> is there" -> `None`.
pub fn parse_yes_no(answer: &str) -> Option<bool> {
    let mut words = answer
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase);
    let mut first = words.next()?;
    if first == "answer" {
        first = words.next()?;
    }
    match first.as_str() {
        "yes" | "yeah" | "yep" | "true" | "correct" => Some(true),
        "no" | "nope" | "false" | "incorrect" => Some(false),
        _ => None,
    }
}

/// One row's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecognitionItem {
    /// Position in the file (from 0).
    pub index: usize,
    pub image: String,
    pub concept: String,
    pub correct_answer: bool,
    pub answer: String,
    /// The parsed answer; `None` when it could not be read.
    pub parsed: Option<bool>,
    pub correct: bool,
}

/// Totals and per-row verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecognitionReport {
    pub total: usize,
    pub positives: usize,
    pub positives_correct: usize,
    pub negatives: usize,
    pub negatives_correct: usize,
    pub positive_accuracy: Option<f64>,
    pub negative_accuracy: Option<f64>,
    /// Mean of positive and negative accuracy (`None` unless both exist).
    pub weighted: Option<f64>,
    /// Rows whose answer was neither yes nor no (counted wrong).
    pub unparsed: Vec<usize>,
    /// Rows whose `type` disagrees with `correct_answer` (informational).
    pub type_mismatches: usize,
    pub per_item: Vec<RecognitionItem>,
}

/// Scores rows.
pub fn score_recognition(rows: &[RecognitionRow]) -> RecognitionReport {
    let mut r = RecognitionReport {
        total: rows.len(),
        positives: 0,
        positives_correct: 0,
        negatives: 0,
        negatives_correct: 0,
        positive_accuracy: None,
        negative_accuracy: None,
        weighted: None,
        unparsed: Vec::new(),
        type_mismatches: 0,
        per_item: Vec::with_capacity(rows.len()),
    };
    for (index, row) in rows.iter().enumerate() {
        let parsed = parse_yes_no(&row.answer);
        let correct = parsed == Some(row.correct_answer);
        if parsed.is_none() {
            r.unparsed.push(index);
        }
        if row.correct_answer {
            r.positives += 1;
            r.positives_correct += usize::from(correct);
        } else {
            r.negatives += 1;
            r.negatives_correct += usize::from(correct);
        }
        let labelled_positive = match row.kind.as_deref() {
            Some("positive") => Some(true),
            Some("negative") => Some(false),
            _ => None,
        };
        if labelled_positive.is_some_and(|p| p != row.correct_answer) {
            r.type_mismatches += 1;
        }
        r.per_item.push(RecognitionItem {
            index,
            image: row.image.clone(),
            concept: row.concept.clone(),
            correct_answer: row.correct_answer,
            answer: row.answer.clone(),
            parsed,
            correct,
        });
    }
    r.positive_accuracy = ratio(r.positives_correct, r.positives);
    r.negative_accuracy = ratio(r.negatives_correct, r.negatives);
    r.weighted = match (r.positive_accuracy, r.negative_accuracy) {
        (Some(p), Some(n)) => Some((p + n) / 2.0),
        _ => None,
    };
    r
}

/// Reads a predictions file: a JSON list of recognition rows with an `answer` each.
pub fn read_recognition_predictions(path: &Path) -> Result<Vec<RecognitionRow>> {
    let rows = read_json_array(path, "recognition predictions")?;
    parse_rows(&rows, &path.display().to_string())
}

/// Parses the text of a predictions file (`source` names it in errors).
pub fn parse_recognition_predictions(text: &str, source: &str) -> Result<Vec<RecognitionRow>> {
    let rows = crate::io::parse_json_array(text, source, "recognition predictions")?;
    parse_rows(&rows, source)
}

fn parse_rows(rows: &[Value], source: &str) -> Result<Vec<RecognitionRow>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            if !row.is_object() {
                return Err(Error::invalid(format!(
                    "{source}: row {i} is {}, not an object",
                    kind(row)
                )));
            }
            let correct_answer = match row.get("correct_answer") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => match parse_yes_no(s) {
                    Some(b) => b,
                    None => {
                        return Err(Error::invalid(format!(
                            "{source}: row {i}: correct_answer {s:?} is neither true nor false"
                        )))
                    }
                },
                Some(other) => {
                    return Err(Error::invalid(format!(
                        "{source}: row {i}: correct_answer must be true or false, not {}",
                        kind(other)
                    )))
                }
                None => {
                    return Err(Error::invalid(format!(
                        "{source}: row {i}: missing field `correct_answer`"
                    )))
                }
            };
            Ok(RecognitionRow {
                image: row
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                concept: str_field(row, "concept", source, i)?,
                kind: row.get("type").and_then(Value::as_str).map(str::to_string),
                correct_answer,
                answer: str_field(row, "answer", source, i)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_no_parsing() {
        for (a, want) in [
            ("Yes.", Some(true)),
            ("yes, it is", Some(true)),
            ("Yes, <bo> is in the image.", Some(true)),
            (" YES", Some(true)),
            ("**Yes**", Some(true)),
            ("Answer: no", Some(false)),
            ("No", Some(false)),
            ("no.", Some(false)),
            ("\"No\", it is not.", Some(false)),
            ("Maybe", None),
            ("<bo> is in the image", None),
            ("Not sure", None),
            ("", None),
            ("Yesterday", None),
        ] {
            assert_eq!(parse_yes_no(a), want, "{a:?}");
        }
    }

    fn row(kind: &str, correct: bool, answer: &str) -> RecognitionRow {
        RecognitionRow {
            image: "x.png".into(),
            concept: "bo".into(),
            kind: Some(kind.into()),
            correct_answer: correct,
            answer: answer.into(),
        }
    }

    #[test]
    fn scored_by_correct_answer_not_type() {
        let rows = vec![
            row("positive", true, "Yes."),
            row("positive", true, "No"),
            // labelled negative, but the answer is true: a positive.
            row("negative", true, "yes, it is"),
            row("negative", false, "no."),
            row("negative", false, "no"),
            row("negative", false, "Maybe"),
        ];
        let r = score_recognition(&rows);
        // positives: rows 0,1,2 -> correct 0,2 -> 2/3; negatives: rows 3,4,5 -> 3,4 -> 2/3.
        assert_eq!((r.positives, r.positives_correct), (3, 2));
        assert_eq!((r.negatives, r.negatives_correct), (3, 2));
        assert!((r.positive_accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.weighted.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.unparsed, vec![5]);
        assert_eq!(r.type_mismatches, 1);
        assert!(!r.per_item[5].correct);
    }

    #[test]
    fn uneven_classes_weighted_is_the_mean() {
        let rows = vec![
            row("positive", true, "yes"),
            row("negative", false, "yes"),
            row("negative", false, "no"),
            row("negative", false, "no"),
            row("negative", false, "no"),
        ];
        let r = score_recognition(&rows);
        assert_eq!(r.positive_accuracy, Some(1.0));
        assert_eq!(r.negative_accuracy, Some(0.75));
        assert_eq!(r.weighted, Some(0.875));
    }

    #[test]
    fn reads_the_reference_rows_plus_answers() {
        // The shared reference file, with an answer added to each row.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/datasets/rap-example/eval/recognition_test.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!("skipped: {} not found", path.display());
            return;
        };
        let mut rows: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert!(rows.len() > 2);
        for r in rows.iter_mut() {
            let yes = r["correct_answer"].as_bool().unwrap();
            r["answer"] = Value::String(if yes { "Yes." } else { "No." }.into());
        }
        let parsed =
            parse_recognition_predictions(&serde_json::to_string(&rows).unwrap(), "t").unwrap();
        let rep = score_recognition(&parsed);
        assert_eq!(rep.weighted, Some(1.0));
        // The reference's trap is there: a row labelled negative whose answer is true.
        assert!(rep.type_mismatches >= 1);
    }

    #[test]
    fn bad_rows_are_named() {
        let e =
            parse_recognition_predictions(r#"[{"concept":"bo","correct_answer":true}]"#, "f.json")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("f.json") && e.contains("row 0") && e.contains("answer"),
            "{e}"
        );
        let e = parse_recognition_predictions(
            r#"[{"concept":"bo","correct_answer":3,"answer":"y"}]"#,
            "f.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("correct_answer"), "{e}");
    }
}
