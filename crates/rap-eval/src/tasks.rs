//! The reference's evaluation input files, turned into questions to ask and into the rows of
//! the predictions files the scorers read.
//!
//! Input formats (see `rap-reference.md`, "Evaluation"):
//! - caption: `{image_path: [concept, ...]}`; asked `Give a caption of the image.`; the
//!   prediction is `[image_path, [concepts], caption]`.
//! - recognition: `[{image, question, concept, type, correct_answer}, ...]`; the question is
//!   asked as written; the prediction is the row plus `answer` (and `index`, `concepts`, `run`).
//! - visual QA: `{concept: {image_path: {question, options: {A: .., B: ..}, correct_answer}}}`;
//!   text-only QA: the same with an item key instead of an image and `option` for `options`.
//!   The question is laid out as the reference's multiple-choice prompt with `sks` replaced by
//!   `<concept>`; the prediction is `{concept, id, image?, question, options, correct_answer,
//!   answer, ...}`.
//!
//! Every item has a key ([`row_key`]) that is also readable from its prediction, so a partly
//! written predictions file tells which items are already answered.

use crate::io::kind;
use rap_core::{strip_brackets, Error, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// An evaluation task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Caption,
    Recognition,
    Qa,
    /// Open questions scored by a rule ([`crate::open`]).
    Open,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Caption => "caption",
            Task::Recognition => "recognition",
            Task::Qa => "qa",
            Task::Open => "open",
        }
    }
}

/// The reference's caption prompt.
pub const CAPTION_PROMPT: &str = "Give a caption of the image.";

/// One question to ask.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalItem {
    /// Identifies the item in a predictions file (see [`row_key`]).
    pub key: String,
    /// The query image as the file writes it (relative to the images root), if any.
    pub image: Option<String>,
    /// The text to ask.
    pub prompt: String,
    /// The concepts a perfect retriever supplies (names without brackets), in order.
    pub concepts: Vec<String>,
    /// The prediction row without its answer.
    pub row: Value,
}

/// What kind of QA file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QaKind {
    Visual,
    TextOnly,
}

fn concept_name(s: &str) -> String {
    strip_brackets(s.trim()).trim().to_string()
}

fn read_json(path: &Path, what: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{what} file {} is not valid JSON: {e}",
            path.display()
        ))
    })
}

/// Reads an evaluation input file of `task`.
pub fn read_eval_file(task: Task, path: &Path) -> Result<(Vec<EvalItem>, Option<QaKind>)> {
    let value = read_json(path, &format!("{} eval", task.as_str()))?;
    let source = path.display().to_string();
    match task {
        Task::Caption => caption_items(&value, &source).map(|i| (i, None)),
        Task::Recognition => recognition_items(&value, &source).map(|i| (i, None)),
        Task::Qa => qa_items(&value, &source).map(|(i, k)| (i, Some(k))),
        Task::Open => open_items(&value, &source).map(|i| (i, None)),
    }
}

/// `{image_path: [concept, ...]}` (a single concept as a string is accepted too).
pub fn caption_items(value: &Value, source: &str) -> Result<Vec<EvalItem>> {
    let Value::Object(map) = value else {
        return Err(Error::invalid(format!(
            "{source}: a caption eval file is an object {{image_path: [concepts]}}, not {}",
            kind(value)
        )));
    };
    map.iter()
        .map(|(image, targets)| {
            let targets: Vec<String> = match targets {
                Value::Array(ts) => ts
                    .iter()
                    .map(|t| {
                        t.as_str().map(str::to_string).ok_or_else(|| {
                            Error::invalid(format!(
                                "{source}: {image}: a concept is {}, not a string",
                                kind(t)
                            ))
                        })
                    })
                    .collect::<Result<_>>()?,
                Value::String(s) => vec![s.clone()],
                other => {
                    return Err(Error::invalid(format!(
                        "{source}: {image}: the concepts are {}, not a list of names",
                        kind(other)
                    )))
                }
            };
            Ok(EvalItem {
                key: image.clone(),
                image: Some(image.clone()),
                prompt: CAPTION_PROMPT.to_string(),
                concepts: targets.iter().map(|t| concept_name(t)).collect(),
                row: json!([image, targets]),
            })
        })
        .collect()
}

/// The list of `{image, question, concept, type, correct_answer}` rows.
pub fn recognition_items(value: &Value, source: &str) -> Result<Vec<EvalItem>> {
    let Value::Array(rows) = value else {
        return Err(Error::invalid(format!(
            "{source}: a recognition eval file is a list of rows, not {}",
            kind(value)
        )));
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let Value::Object(obj) = row else {
                return Err(Error::invalid(format!(
                    "{source}: row {i} is {}, not an object",
                    kind(row)
                )));
            };
            let text = |field: &str| -> Result<String> {
                obj.get(field)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        Error::invalid(format!("{source}: row {i}: missing text field `{field}`"))
                    })
            };
            let image = text("image")?;
            let concept = text("concept")?;
            let question = text("question")?;
            if !obj.contains_key("correct_answer") {
                return Err(Error::invalid(format!(
                    "{source}: row {i}: missing field `correct_answer`"
                )));
            }
            let mut out = obj.clone();
            out.insert("index".into(), json!(i));
            let row = Value::Object(out);
            Ok(EvalItem {
                key: row_key(Task::Recognition, &row).unwrap_or_default(),
                image: Some(image),
                prompt: question,
                concepts: vec![concept_name(&concept)],
                row,
            })
        })
        .collect()
}

/// Replaces the word `sks` (the Yo'LLaVA files' placeholder) with `<concept>`.
pub fn replace_sks(question: &str, concept: &str) -> String {
    let mut out = String::with_capacity(question.len());
    let mut rest = question;
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    while let Some(pos) = rest.find("sks") {
        let before = rest[..pos].chars().next_back();
        let after = rest[pos + 3..].chars().next();
        out.push_str(&rest[..pos]);
        if word(before) || word(after) {
            out.push_str("sks");
        } else {
            out.push('<');
            out.push_str(concept);
            out.push('>');
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    out
}

/// The reference's multiple-choice prompt.
pub fn qa_prompt(question: &str, options: &Map<String, Value>, concept: &str) -> String {
    let mut s = format!("Question: {}\nOptions:\n", replace_sks(question, concept));
    for (letter, text) in options {
        let text = match text {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        };
        s.push_str(&format!("{letter}. {}\n", replace_sks(&text, concept)));
    }
    s.push_str("Please give a single character from the options above. \n");
    s
}

/// `{concept: {image_or_key: {question, options|option, correct_answer}}}`. The kind is
/// text-only when the entries list `option` (the Yo'LLaVA text-only file), visual otherwise.
pub fn qa_items(value: &Value, source: &str) -> Result<(Vec<EvalItem>, QaKind)> {
    let Value::Object(by_concept) = value else {
        return Err(Error::invalid(format!(
            "{source}: a QA eval file is an object {{concept: {{image: {{question, options, \
             correct_answer}}}}}}, not {}",
            kind(value)
        )));
    };
    let mut items = Vec::new();
    let (mut visual, mut text_only) = (0, 0);
    for (concept, entries) in by_concept {
        let Value::Object(entries) = entries else {
            return Err(Error::invalid(format!(
                "{source}: {concept}: expected an object of questions, not {}",
                kind(entries)
            )));
        };
        let name = concept_name(concept);
        for (id, entry) in entries {
            let at = format!("{source}: {concept}/{id}");
            let Value::Object(entry) = entry else {
                return Err(Error::invalid(format!(
                    "{at}: expected {{question, options, correct_answer}}, not {}",
                    kind(entry)
                )));
            };
            let question = entry
                .get("question")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::invalid(format!("{at}: missing text field `question`")))?;
            let correct = entry
                .get("correct_answer")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Error::invalid(format!("{at}: missing text field `correct_answer`"))
                })?;
            let (options, is_text_only) = match (entry.get("options"), entry.get("option")) {
                (Some(Value::Object(o)), _) => (o.clone(), false),
                (None, Some(Value::Object(o))) => (o.clone(), true),
                _ => {
                    return Err(Error::invalid(format!(
                        "{at}: missing `options` (or `option`): an object {{A: .., B: ..}}"
                    )))
                }
            };
            if is_text_only {
                text_only += 1;
            } else {
                visual += 1;
            }
            let mut row = json!({
                "concept": concept,
                "id": id,
                "question": question,
                "options": options,
                "correct_answer": correct,
            });
            if !is_text_only {
                row["image"] = json!(id);
            }
            items.push(EvalItem {
                key: row_key(Task::Qa, &row).unwrap_or_default(),
                image: (!is_text_only).then(|| id.clone()),
                prompt: qa_prompt(question, &options, &name),
                concepts: vec![name.clone()],
                row,
            });
        }
    }
    if visual > 0 && text_only > 0 {
        return Err(Error::invalid(format!(
            "{source}: mixes visual questions (`options`, {visual}) and text-only ones \
             (`option`, {text_only}); use one file per kind"
        )));
    }
    let kind = if text_only > 0 {
        QaKind::TextOnly
    } else {
        QaKind::Visual
    };
    Ok((items, kind))
}

/// Open questions (see [`crate::open`]): `{concept: {id: {question, expect, contradict}}}`;
/// the question is asked as written with `sks` replaced by `<concept>`; the prediction is the
/// entry plus `concept`, `id` and `answer`.
pub fn open_items(value: &Value, source: &str) -> Result<Vec<EvalItem>> {
    let Value::Object(by_concept) = value else {
        return Err(Error::invalid(format!(
            "{source}: an open-question file is an object {{concept: {{id: {{question, expect, \
             contradict}}}}}}, not {}",
            kind(value)
        )));
    };
    let mut items = Vec::new();
    for (concept, entries) in by_concept {
        let Value::Object(entries) = entries else {
            return Err(Error::invalid(format!(
                "{source}: {concept}: expected an object of questions, not {}",
                kind(entries)
            )));
        };
        let name = concept_name(concept);
        for (id, entry) in entries {
            let at = format!("{source}: {concept}/{id}");
            let question = entry
                .get("question")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::invalid(format!("{at}: missing text field `question`")))?;
            let list = |field: &str| -> Result<Value> {
                match entry.get(field) {
                    None => Ok(json!([])),
                    Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                        Ok(Value::Array(a.clone()))
                    }
                    Some(_) => Err(Error::invalid(format!(
                        "{at}: `{field}` must be a list of phrases"
                    ))),
                }
            };
            let row = json!({
                "concept": concept,
                "id": id,
                "question": question,
                "expect": list("expect")?,
                "contradict": list("contradict")?,
            });
            items.push(EvalItem {
                key: row_key(Task::Open, &row).unwrap_or_default(),
                image: None,
                prompt: replace_sks(question, &name),
                concepts: vec![name.clone()],
                row,
            });
        }
    }
    Ok(items)
}

/// The key of a prediction row (or of an item's row template): the image for a caption, the
/// row index with image and concept for recognition, concept and id for QA.
pub fn row_key(task: Task, row: &Value) -> Option<String> {
    match task {
        Task::Caption => row.get(0)?.as_str().map(str::to_string),
        Task::Recognition => Some(format!(
            "{}|{}|{}",
            row.get("index")?.as_u64()?,
            row.get("image")?.as_str()?,
            row.get("concept")?.as_str()?
        )),
        Task::Qa | Task::Open => {
            let key = format!(
                "{}|{}",
                row.get("concept")?.as_str()?,
                row.get("id")?.as_str()?
            );
            // A circular run asks each question once per rotation of its options.
            Some(match row.get("rotation").and_then(Value::as_u64) {
                Some(r) => format!("{key}|rotation {r}"),
                None => key,
            })
        }
    }
}

/// MMBench's CircularEval for multiple-choice QA items: each question once per rotation of its
/// options. With options `A: x, B: y` the question is asked as it is (rotation 0) and as
/// `A: y, B: x` (rotation 1), the correct letter following its text; with N options, N times.
/// Each row records its `rotation`; [`crate::qa::score_qa`] counts a question right only when
/// every rotation is. Items without options (or with one) are kept as they are.
pub fn circular_qa_items(items: Vec<EvalItem>) -> Vec<EvalItem> {
    let mut out = Vec::new();
    for item in items {
        let options = item.row.get("options").and_then(Value::as_object).cloned();
        let question = item
            .row
            .get("question")
            .and_then(Value::as_str)
            .map(str::to_string);
        let correct = item
            .row
            .get("correct_answer")
            .and_then(Value::as_str)
            .and_then(crate::qa::option_letter);
        let (Some(options), Some(question)) = (options, question) else {
            out.push(item);
            continue;
        };
        let letters: Vec<&String> = options.keys().collect();
        let texts: Vec<&Value> = options.values().collect();
        let n = letters.len();
        let correct_at = correct.and_then(|c| {
            letters
                .iter()
                .position(|l| crate::qa::option_letter(l) == Some(c))
        });
        let (Some(correct_at), true) = (correct_at, n > 1) else {
            out.push(item);
            continue;
        };
        let name = item.concepts.first().cloned().unwrap_or_default();
        for r in 0..n {
            // Rotation r: the option at letter i is the text that was at letter i + r.
            let rotated: Map<String, Value> = (0..n)
                .map(|i| (letters[i].clone(), texts[(i + r) % n].clone()))
                .collect();
            let mut row = item.row.clone();
            row["options"] = Value::Object(rotated.clone());
            row["correct_answer"] = json!(letters[(correct_at + n - r) % n]);
            row["rotation"] = json!(r);
            out.push(EvalItem {
                key: row_key(Task::Qa, &row).unwrap_or_default(),
                image: item.image.clone(),
                prompt: qa_prompt(&question, &rotated, &name),
                concepts: item.concepts.clone(),
                row,
            });
        }
    }
    out
}

/// The prediction row for `item` answered with `answer`: a caption row gets the caption as its
/// third element; an object row gets `answer`, the concepts in the prompt and the run that
/// produced it.
pub fn prediction(item: &EvalItem, answer: &str, concepts: &[String], run: &str) -> Value {
    let mut row = item.row.clone();
    match &mut row {
        Value::Array(cells) => cells.push(json!(answer)),
        Value::Object(obj) => {
            obj.insert("answer".into(), json!(answer));
            obj.insert("concepts".into(), json!(concepts));
            obj.insert("run".into(), json!(run));
        }
        _ => {}
    }
    row
}

/// The path of an item's image under `root`: a leading `./` is removed as a prefix (the
/// reference strips the characters `.` and `/` instead, which breaks names starting with a
/// dot); absolute paths are kept.
pub fn image_path(root: &Path, image: &str) -> std::path::PathBuf {
    let rel = image.strip_prefix("./").unwrap_or(image);
    root.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caption_file() {
        let v: Value =
            serde_json::from_str(r#"{"a/1.jpg": ["<bo>", "dug"], "a/2.jpg": "bo"}"#).unwrap();
        let items = caption_items(&v, "c.json").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].concepts, vec!["bo", "dug"]);
        assert_eq!(items[0].prompt, CAPTION_PROMPT);
        let p = prediction(&items[0], "<bo> and <dug>.", &[], "r");
        assert_eq!(p, json!(["a/1.jpg", ["<bo>", "dug"], "<bo> and <dug>."]));
        assert_eq!(row_key(Task::Caption, &p).as_deref(), Some("a/1.jpg"));
        let e = caption_items(&json!([1]), "c.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.json") && e.contains("a list"), "{e}");
    }

    #[test]
    fn recognition_rows_keep_duplicates_apart() {
        // The reference file repeats rows (same image, concept and question): the index keeps
        // them apart.
        let row = json!({"image": "b/4.png", "question": "<image>\nIs <bo> in this image?",
                         "concept": "bo", "type": "positive", "correct_answer": true});
        let items = recognition_items(&json!([row, row]), "r.json").unwrap();
        assert_ne!(items[0].key, items[1].key);
        let p = prediction(&items[1], "Yes.", &["bo".into()], "m");
        assert_eq!(p["answer"], "Yes.");
        assert_eq!(p["index"], 1);
        assert_eq!(row_key(Task::Recognition, &p), Some(items[1].key.clone()));
        let e = recognition_items(
            &json!([{"image": "x", "concept": "bo", "question": "q"}]),
            "r",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("row 0") && e.contains("correct_answer"), "{e}");
    }

    #[test]
    fn circular_items_rotate_the_options_and_follow_the_answer() {
        let file = json!({"<bo>": {"q1": {"question": "What colour is sks?",
            "option": {"A": "red", "B": "blue"}, "correct_answer": "A"}}});
        let (items, _) = qa_items(&file, "t.json").unwrap();
        let rotated = circular_qa_items(items);
        assert_eq!(rotated.len(), 2);
        assert_eq!(rotated[0].row["options"], json!({"A": "red", "B": "blue"}));
        assert_eq!(rotated[0].row["correct_answer"], "A");
        assert_eq!(rotated[1].row["options"], json!({"A": "blue", "B": "red"}));
        assert_eq!(rotated[1].row["correct_answer"], "B");
        assert!(
            rotated[1].prompt.contains("A. blue\nB. red\n"),
            "{}",
            rotated[1].prompt
        );
        assert_ne!(rotated[0].key, rotated[1].key);
        assert_eq!(rotated[1].key, "<bo>|q1|rotation 1");
        // Answering A both times: right once, so the question is wrong circularly.
        let rows: Vec<Value> = rotated
            .iter()
            .map(|i| prediction(i, "A", &[], "run"))
            .collect();
        let rows = crate::qa::parse_qa_predictions(&Value::Array(rows).to_string(), "p").unwrap();
        let r = crate::score_qa(&rows);
        assert_eq!(r.correct, 1);
        let c = r.circular.unwrap();
        assert_eq!((c.questions, c.correct), (1, 0));
    }

    #[test]
    fn qa_files_visual_and_text_only() {
        let visual = json!({"bo": {"./t/bo/1.png": {"question": "What is sks's breed?",
            "options": {"A": "Corgi", "B": "Shiba inu"}, "correct_answer": "B"}}});
        let (items, kind) = qa_items(&visual, "v.json").unwrap();
        assert_eq!(kind, QaKind::Visual);
        assert_eq!(items[0].image.as_deref(), Some("./t/bo/1.png"));
        assert_eq!(
            items[0].prompt,
            "Question: What is <bo>'s breed?\nOptions:\nA. Corgi\nB. Shiba inu\n\
             Please give a single character from the options above. \n"
        );
        let text = json!({"bo": {"0": {"question": "Is sks a dog? (asks)",
            "option": {"A": "Yes", "B": "No"}, "correct_answer": "A"}}});
        let (items, kind) = qa_items(&text, "t.json").unwrap();
        assert_eq!(kind, QaKind::TextOnly);
        assert_eq!(items[0].image, None);
        assert!(items[0]
            .prompt
            .starts_with("Question: Is <bo> a dog? (asks)\n"));
        let p = prediction(&items[0], "A", &[], "m");
        // The scorer reads the prediction back and finds it right.
        let rows = crate::qa::parse_qa_predictions(&json!([p]).to_string(), "p").unwrap();
        assert_eq!(crate::score_qa(&rows).correct, 1);
        let mixed = json!({"bo": {"0": {"question": "q", "option": {"A": "x"}, "correct_answer": "A"},
                                  "1.png": {"question": "q", "options": {"A": "x"}, "correct_answer": "A"}}});
        let e = qa_items(&mixed, "m.json").unwrap_err().to_string();
        assert!(e.contains("mixes"), "{e}");
    }

    #[test]
    fn sks_is_replaced_as_a_word_only() {
        assert_eq!(
            replace_sks("sks and asks, sks.", "bo"),
            "<bo> and asks, <bo>."
        );
        assert_eq!(replace_sks("no placeholder", "bo"), "no placeholder");
    }

    #[test]
    fn image_paths_strip_the_prefix_not_characters() {
        let root = Path::new("/data");
        assert_eq!(image_path(root, "./a/1.png"), Path::new("/data/a/1.png"));
        assert_eq!(
            image_path(root, ".hidden/1.png"),
            Path::new("/data/.hidden/1.png")
        );
        assert_eq!(image_path(root, "a/1.png"), Path::new("/data/a/1.png"));
    }
}
