//! Open questions about a memory's concepts, scored by a rule instead of a reference answer.
//!
//! An open-question file has the reference QA files' shape, `{concept: {id: entry}}`, each entry
//! `{question, expect: [phrase, ...], contradict: [phrase, ...]}`; the question writes the
//! concept as `sks` (as the Yo'LLaVA files do) and is asked with `sks` replaced by `<concept>`.
//! See `crates/rap-eval/data/example-open-questions.json` (32 questions about the example memory).
//!
//! The rule, exactly: an answer is **correct** when
//! 1. it names the concept: the concept's name appears in it as a phrase (`<bo>`, `Bo` and
//!    `bo's` all name `bo`; `cat cup` and `<cat-cup>` both name `cat-cup`), and
//! 2. it contradicts no info field: none of the entry's `contradict` phrases (facts that the
//!    concept's info rules out, e.g. `corgi` for a Shiba Inu, `he` for a woman) appears in it.
//!
//! It is also **informative** when it is correct and states one of the `expect` phrases (a fact
//! from the info, e.g. `shiba`). Phrases match case-insensitively on word boundaries after every
//! character that is not a letter or a digit is read as a space, so `he` does not match `the`
//! and `shiba` matches `Shiba-Inu`. A negated contradiction ("not a corgi") still counts as one:
//! the rule is strict on purpose, a small model's "not" is rarely what it means.

use crate::io::read_json_array;
use crate::ratio;
use rap_core::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// One answered open question.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct OpenRow {
    /// The concept asked about (without angle brackets).
    pub concept: String,
    pub question: Option<String>,
    pub answer: String,
    pub expect: Vec<String>,
    pub contradict: Vec<String>,
}

/// One answer's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenItem {
    pub index: usize,
    pub concept: String,
    pub answer: String,
    /// The answer names the concept.
    pub names_concept: bool,
    /// The `contradict` phrases found in the answer.
    pub contradictions: Vec<String>,
    /// The `expect` phrases found in the answer.
    pub facts: Vec<String>,
    pub correct: bool,
    pub informative: bool,
}

/// Totals and per-answer verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenReport {
    pub total: usize,
    /// Answers that name their concept.
    pub named: usize,
    /// Answers with at least one contradiction.
    pub contradicted: usize,
    /// Answers that name the concept and contradict nothing.
    pub correct: usize,
    pub accuracy: Option<f64>,
    /// Correct answers that also state an expected fact.
    pub informative: usize,
    pub informative_rate: Option<f64>,
    pub per_item: Vec<OpenItem>,
}

/// Lower-case, every character that is not alphanumeric read as a space, spaces collapsed, with
/// a space at each end (so that ` phrase ` finds a phrase on word boundaries).
fn words(s: &str) -> String {
    let spaced: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    format!(
        " {} ",
        spaced.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// Whether `phrase` appears in `text` on word boundaries (see the module docs).
pub fn contains_phrase(text: &str, phrase: &str) -> bool {
    let p = words(phrase);
    !p.trim().is_empty() && words(text).contains(&p)
}

/// Judges one answer (see the module docs for the rule).
pub fn judge_open(index: usize, row: &OpenRow) -> OpenItem {
    let names_concept = contains_phrase(&row.answer, &row.concept);
    let found = |phrases: &[String]| -> Vec<String> {
        phrases
            .iter()
            .filter(|p| contains_phrase(&row.answer, p))
            .cloned()
            .collect()
    };
    let contradictions = found(&row.contradict);
    let facts = found(&row.expect);
    let correct = names_concept && contradictions.is_empty();
    OpenItem {
        index,
        concept: row.concept.clone(),
        answer: row.answer.clone(),
        names_concept,
        informative: correct && !facts.is_empty(),
        contradictions,
        facts,
        correct,
    }
}

/// Scores answered open questions.
pub fn score_open(rows: &[OpenRow]) -> OpenReport {
    let per_item: Vec<OpenItem> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| judge_open(i, r))
        .collect();
    let count = |f: fn(&OpenItem) -> bool| per_item.iter().filter(|i| f(i)).count();
    let correct = count(|i| i.correct);
    let informative = count(|i| i.informative);
    OpenReport {
        total: rows.len(),
        named: count(|i| i.names_concept),
        contradicted: count(|i| !i.contradictions.is_empty()),
        correct,
        accuracy: ratio(correct, rows.len()),
        informative,
        informative_rate: ratio(informative, rows.len()),
        per_item,
    }
}

fn phrases(v: Option<&Value>, at: &str, field: &str) -> Result<Vec<String>> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::invalid(format!("{at}: `{field}` holds a non-string")))
            })
            .collect(),
        Some(_) => Err(Error::invalid(format!(
            "{at}: `{field}` must be a list of phrases"
        ))),
    }
}

/// Reads a predictions file of open questions: a JSON list of objects with `concept`, `answer`
/// and optionally `question`, `expect`, `contradict`.
pub fn read_open_predictions(path: &Path) -> Result<Vec<OpenRow>> {
    let rows = read_json_array(path, "open-question predictions")?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let at = format!("{}: row {i}", path.display());
            let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
            Ok(OpenRow {
                concept: text("concept")
                    .map(|c| rap_core::strip_brackets(c.trim()).to_string())
                    .ok_or_else(|| Error::invalid(format!("{at}: missing text field `concept`")))?,
                answer: text("answer")
                    .ok_or_else(|| Error::invalid(format!("{at}: missing text field `answer`")))?,
                question: text("question"),
                expect: phrases(row.get("expect"), &at, "expect")?,
                contradict: phrases(row.get("contradict"), &at, "contradict")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(answer: &str) -> OpenRow {
        OpenRow {
            concept: "bo".into(),
            question: Some("What is <bo>?".into()),
            answer: answer.into(),
            expect: vec!["shiba".into()],
            contradict: vec!["corgi".into(), "he".into(), "golden retriever".into()],
        }
    }

    #[test]
    fn phrases_match_on_word_boundaries() {
        assert!(contains_phrase("<bo> is a Shiba-Inu.", "shiba inu"));
        assert!(contains_phrase("Bo's coat", "bo"));
        assert!(contains_phrase("the <cat-cup>", "cat cup"));
        assert!(!contains_phrase("the bowl", "bo"));
        assert!(!contains_phrase("the dog", "he"));
        assert!(!contains_phrase("anything", ""));
    }

    #[test]
    fn the_rule_needs_the_name_and_no_contradiction() {
        let r = score_open(&[
            row("<bo> is a Shiba Inu."),
            row("It is a Shiba Inu."),
            row("<bo> is a corgi."),
            row("Bo is a dog; he likes walks."),
            row("<bo> is a dog."),
            row("<bo> is a golden  retriever"),
        ]);
        let verdicts: Vec<(bool, bool)> = r
            .per_item
            .iter()
            .map(|i| (i.correct, i.informative))
            .collect();
        assert_eq!(
            verdicts,
            [
                (true, true),
                (false, false),
                (false, false),
                (false, false),
                (true, false),
                (false, false)
            ]
        );
        assert_eq!((r.total, r.named, r.contradicted), (6, 5, 3));
        assert_eq!(r.correct, 2);
        assert_eq!(r.accuracy, Some(2.0 / 6.0));
        assert_eq!(r.informative, 1);
        assert_eq!(r.per_item[3].contradictions, ["he"]);
    }

    #[test]
    fn predictions_without_concept_or_answer_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.json");
        std::fs::write(
            &p,
            r#"[{"concept": "<bo>", "answer": "x", "expect": ["a"]}]"#,
        )
        .unwrap();
        let rows = read_open_predictions(&p).unwrap();
        assert_eq!(rows[0].concept, "bo");
        assert!(rows[0].contradict.is_empty());
        std::fs::write(&p, r#"[{"answer": "x"}]"#).unwrap();
        let e = read_open_predictions(&p).unwrap_err();
        assert!(e.to_string().contains("concept"), "{e}");
        std::fs::write(&p, r#"[{"concept": "bo", "answer": "x", "expect": "a"}]"#).unwrap();
        let e = read_open_predictions(&p).unwrap_err();
        assert!(e.to_string().contains("expect"), "{e}");
    }
}
