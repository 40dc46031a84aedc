//! Question answering: exact match after normalisation, with multiple-choice letters.
//!
//! What counts as correct, exactly:
//! 1. If `correct_answer` is a single option letter (`A`, `b`, `(C)`, `D.`, `E)`), the answer's
//!    leading option letter is compared: the answer, trimmed, without a leading `Answer:` and
//!    an opening `(`, must start with that letter (either case when the whole answer is the
//!    letter, upper-case otherwise) followed by the end or by `.`, `)`, `:` or `,`. So `A`, `A.`,
//!    `(A)`, `A) Dog` and `A. Dog` all answer `A`; `A dog` does not (it reads as a phrase).
//!    Failing that, when the row lists its options (`options` or `option`, as in the Yo'LLaVA
//!    files), an answer that is the correct option's text (`Dog` for `A: Dog`) after
//!    normalisation is correct too.
//! 2. Otherwise both strings are normalised the way SQuAD-style scorers do - lower-case, remove
//!    ASCII punctuation, replace the words `a`, `an`, `the` with a space, collapse white space -
//!    and compared for equality. When both normalise to nothing (`"A"` vs `"the"`), the
//!    lower-cased trimmed strings are compared instead.
//!
//! Rows from a circular run (`rotation` set: [`crate::tasks::circular_qa_items`]) are also
//! scored the CircularEval way ([`CircularReport`]). Beside the accuracy every report gives
//! the majority-letter baseline: the accuracy of always
//! answering the letter most often correct (in a file whose answers are mostly `A`, a model
//! that always says `A` looks good; the baseline shows it).

use crate::io::{kind, read_json_array};
use crate::ratio;
use rap_core::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One predicted answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct QaRow {
    pub answer: String,
    pub correct_answer: String,
    /// The question's options by letter, when the row lists them.
    pub options: BTreeMap<String, String>,
    pub question: Option<String>,
    pub concept: Option<String>,
    /// The question's id in the eval file (`id`), when the row gives it.
    pub id: Option<String>,
    /// Which rotation of the options this row asked (a circular run); none otherwise.
    pub rotation: Option<u64>,
}

/// Lower-case, remove ASCII punctuation, drop the articles a/an/the, collapse white space.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `A`, `(B)`, `c.`, `D)` -> the upper-case letter; anything else `None`.
pub fn option_letter(s: &str) -> Option<char> {
    let t = s.trim();
    let t = t.strip_prefix('(').unwrap_or(t);
    let mut chars = t.chars();
    let c = chars.next().filter(char::is_ascii_alphabetic)?;
    let rest = chars.as_str();
    matches!(rest, "" | "." | ")" | ":").then(|| c.to_ascii_uppercase())
}

/// The option letter an answer starts with (see the module docs), upper-case.
pub fn leading_option_letter(answer: &str) -> Option<char> {
    if let Some(l) = option_letter(answer) {
        return Some(l);
    }
    let t = answer.trim();
    let t = match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("answer:") => t[7..].trim_start(),
        _ => t,
    };
    if let Some(l) = option_letter(t) {
        return Some(l);
    }
    let t = t.strip_prefix('(').unwrap_or(t);
    let mut chars = t.chars();
    let c = chars.next().filter(char::is_ascii_uppercase)?;
    match chars.next() {
        None | Some('.') | Some(')') | Some(':') | Some(',') => Some(c),
        _ => None,
    }
}

/// How a row was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Leading option letter compared.
    Letter,
    /// The answer is the correct option's text.
    OptionText,
    /// Normalised exact match.
    Exact,
}

/// One row's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QaItem {
    pub index: usize,
    pub answer: String,
    pub correct_answer: String,
    pub correct: bool,
    pub method: Method,
}

/// Totals and per-row verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QaReport {
    pub total: usize,
    pub correct: usize,
    pub accuracy: Option<f64>,
    /// The option letter most often correct (ties: the earliest letter); none when no row's
    /// correct answer is a letter.
    pub majority_letter: Option<char>,
    /// The accuracy of always answering [`QaReport::majority_letter`]: the score to beat.
    pub majority_baseline: Option<f64>,
    /// When the rows come from a circular run: the questions right in every rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circular: Option<CircularReport>,
    pub per_item: Vec<QaItem>,
}

/// CircularEval's score: a question counts only when it was answered right in every rotation of
/// its options (so a model that always says `A` scores nothing on two-option questions).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircularReport {
    pub questions: usize,
    pub correct: usize,
    pub accuracy: Option<f64>,
}

/// Groups rows by question (concept, id, else question text) when any has a rotation.
fn circular(rows: &[QaRow], per_item: &[QaItem]) -> Option<CircularReport> {
    if rows.iter().all(|r| r.rotation.is_none()) {
        return None;
    }
    // A question is its concept and id (the eval file's key), else its concept and text.
    let mut by_question: BTreeMap<(Option<&str>, Option<&str>), bool> = BTreeMap::new();
    for (r, item) in rows.iter().zip(per_item) {
        let question = r.id.as_deref().or(r.question.as_deref());
        *by_question
            .entry((r.concept.as_deref(), question))
            .or_insert(true) &= item.correct;
    }
    let correct = by_question.values().filter(|ok| **ok).count();
    Some(CircularReport {
        questions: by_question.len(),
        correct,
        accuracy: ratio(correct, by_question.len()),
    })
}

/// Judges one answer (see the module docs).
pub fn judge(row: &QaRow) -> (bool, Method) {
    if let Some(want) = option_letter(&row.correct_answer) {
        if leading_option_letter(&row.answer) == Some(want) {
            return (true, Method::Letter);
        }
        let text = row
            .options
            .iter()
            .find(|(k, _)| option_letter(k) == Some(want))
            .map(|(_, v)| v);
        if let Some(text) = text {
            let n = normalize_answer(&row.answer);
            if !n.is_empty() && n == normalize_answer(text) {
                return (true, Method::OptionText);
            }
        }
        return (false, Method::Letter);
    }
    let (a, b) = (
        normalize_answer(&row.answer),
        normalize_answer(&row.correct_answer),
    );
    let ok = if a.is_empty() && b.is_empty() {
        row.answer.trim().to_lowercase() == row.correct_answer.trim().to_lowercase()
    } else {
        a == b
    };
    (ok, Method::Exact)
}

/// Scores rows.
pub fn score_qa(rows: &[QaRow]) -> QaReport {
    let per_item: Vec<QaItem> = rows
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let (correct, method) = judge(r);
            QaItem {
                index,
                answer: r.answer.clone(),
                correct_answer: r.correct_answer.clone(),
                correct,
                method,
            }
        })
        .collect();
    let correct = per_item.iter().filter(|i| i.correct).count();
    let (majority_letter, majority_baseline) = majority_letter(rows);
    let circular = circular(rows, &per_item);
    QaReport {
        total: rows.len(),
        correct,
        accuracy: ratio(correct, rows.len()),
        majority_letter,
        majority_baseline,
        circular,
        per_item,
    }
}

/// The letter most often correct and the accuracy of always answering it (over every row).
fn majority_letter(rows: &[QaRow]) -> (Option<char>, Option<f64>) {
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for r in rows {
        if let Some(l) = option_letter(&r.correct_answer) {
            *counts.entry(l).or_default() += 1;
        }
    }
    // max_by_key keeps the last of equals: walk the letters backwards so ties go to the earliest.
    match counts.iter().rev().max_by_key(|(_, n)| **n) {
        Some((l, n)) => (Some(*l), ratio(*n, rows.len())),
        None => (None, None),
    }
}

/// Reads a predictions file: a JSON list of objects with `answer` and `correct_answer`
/// (optionally `options`/`option`, `question`, `concept`).
pub fn read_qa_predictions(path: &Path) -> Result<Vec<QaRow>> {
    let rows = read_json_array(path, "QA predictions")?;
    parse_rows(&rows, &path.display().to_string())
}

/// Parses the text of a predictions file (`source` names it in errors).
pub fn parse_qa_predictions(text: &str, source: &str) -> Result<Vec<QaRow>> {
    let rows = crate::io::parse_json_array(text, source, "QA predictions")?;
    parse_rows(&rows, source)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_rows(rows: &[Value], source: &str) -> Result<Vec<QaRow>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let Value::Object(obj) = row else {
                return Err(Error::invalid(format!(
                    "{source}: row {i} is {}, not an object",
                    kind(row)
                )));
            };
            let field = |name: &str| -> Result<String> {
                match obj.get(name) {
                    None | Some(Value::Null) => Err(Error::invalid(format!(
                        "{source}: row {i}: missing field `{name}`"
                    ))),
                    Some(v) => scalar_text(v).ok_or_else(|| {
                        Error::invalid(format!(
                            "{source}: row {i}: field `{name}` must be text, not {}",
                            kind(v)
                        ))
                    }),
                }
            };
            let options = obj
                .get("options")
                .or_else(|| obj.get("option"))
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| scalar_text(v).map(|t| (k.clone(), t)))
                        .collect()
                })
                .unwrap_or_default();
            Ok(QaRow {
                answer: field("answer")?,
                correct_answer: field("correct_answer")?,
                options,
                question: obj
                    .get("question")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                concept: obj
                    .get("concept")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                id: obj.get("id").and_then(Value::as_str).map(str::to_string),
                rotation: obj.get("rotation").and_then(Value::as_u64),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_majority_letter_baseline_is_always_answering_the_commonest_letter() {
        let row = |answer: &str, correct: &str| QaRow {
            answer: answer.into(),
            correct_answer: correct.into(),
            ..Default::default()
        };
        let rows = [
            row("A", "A"),
            row("A", "B"),
            row("B", "B"),
            row("x", "free text"),
        ];
        let r = score_qa(&rows);
        // B is correct twice, A once: always answering B gets 2 of the 4 rows.
        assert_eq!(r.majority_letter, Some('B'));
        assert_eq!(r.majority_baseline, Some(0.5));
        let tie = score_qa(&[row("A", "B"), row("A", "A")]);
        assert_eq!(tie.majority_letter, Some('A'));
        assert_eq!(score_qa(&[row("x", "dog")]).majority_baseline, None);
    }

    fn row(answer: &str, correct: &str) -> QaRow {
        QaRow {
            answer: answer.into(),
            correct_answer: correct.into(),
            ..Default::default()
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize_answer("  The Shiba-Inu!  "), "shibainu");
        assert_eq!(
            normalize_answer("A dog, an apple and THE cat."),
            "dog apple and cat"
        );
        assert_eq!(normalize_answer("theory"), "theory");
    }

    #[test]
    fn option_letters() {
        for (a, want) in [
            ("A", Some('A')),
            ("A.", Some('A')),
            ("a", Some('A')),
            ("(B)", Some('B')),
            ("B) Cat", Some('B')),
            ("A. Dog", Some('A')),
            ("Answer: C", Some('C')),
            ("A dog", None),
            ("Dog", None),
            ("a.b", None),
        ] {
            assert_eq!(leading_option_letter(a), want, "{a:?}");
        }
    }

    #[test]
    fn hand_computed_accuracy_with_the_traps() {
        let mut with_options = row("Dog", "A");
        with_options.options =
            BTreeMap::from([("A".into(), "Dog".into()), ("B".into(), "Cat".into())]);
        let rows = vec![
            row("A.", "A"),                     // letter: correct
            row("A. Dog", "A"),                 // letter: correct
            row("B", "A"),                      // wrong
            row("A dog", "A"),                  // a phrase, not a letter, no options: wrong
            with_options,                       // option text: correct
            row("The Shiba Inu.", "shiba inu"), // exact after normalising: correct
            row("Shiba", "shiba inu"),          // wrong
        ];
        let r = score_qa(&rows);
        assert_eq!((r.total, r.correct), (7, 4));
        assert!((r.accuracy.unwrap() - 4.0 / 7.0).abs() < 1e-12);
        let verdicts: Vec<bool> = r.per_item.iter().map(|i| i.correct).collect();
        assert_eq!(verdicts, vec![true, true, false, false, true, true, false]);
        assert_eq!(r.per_item[4].method, Method::OptionText);
        assert_eq!(r.per_item[5].method, Method::Exact);
    }

    #[test]
    fn empty_after_normalising_compares_raw() {
        assert!(!judge(&row("the", "an")).0);
        assert!(judge(&row("The", "the")).0);
    }

    #[test]
    fn reads_rows_and_names_bad_ones() {
        let rows = parse_qa_predictions(
            r#"[{"question":"q","option":{"A":"Dog","B":"Cat"},"correct_answer":"A","answer":"A"}]"#,
            "qa.json",
        )
        .unwrap();
        assert_eq!(rows[0].options.get("B").map(String::as_str), Some("Cat"));
        let e = parse_qa_predictions(r#"[{"answer":"A"}]"#, "qa.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("qa.json") && e.contains("correct_answer"), "{e}");
    }
}
