//! Checking a training file before hours of GPU time are spent on it.
//!
//! The file is read leniently (as JSON values), so every fault is found and reported with the
//! sample's index and id rather than stopping at the first. Faults, by [`FaultKind`]:
//! - `schema`: not an object; `id`, `conversations` or `type` missing or of the wrong type;
//!   turns not `{from: human|gpt, value}` alternating from the human; an empty answer; an
//!   `extra` entry without a string `name`, `info` and `category`; a name that is not a valid
//!   concept name; an unknown field or sample type;
//! - `duplicate_id`: two samples with one id;
//! - `path_escapes`: an image or crop path that is absolute or climbs out with `..`;
//! - `missing_file` / `bad_image`: an image or crop that does not exist or does not decode;
//! - `unknown_name`: a `<name>` in a turn that is not in `extra`, unless it is a deliberate
//!   negative (a recognition sample answered "no" may ask about a concept it does not supply);
//! - `box_out_of_range` / `missing_box`: a `[x1, y1, x2, y2]` in an answer outside [0, 1] or
//!   inverted; a grounding sample whose answer has no box;
//! - `image_placeholder`: `<image>` anywhere but the start of the first turn (the trainer counts
//!   placeholders to place images, so a stray one shifts every image), or at the start of a
//!   sample without an image;
//! - `template_marker`: a chat-template marker (`</s>`, `USER:`, `<|end|>`...) in any text: it
//!   would forge a turn in the training prompt.

use crate::format::SampleType;
use crate::source::safe_relative;
use crate::text::mentioned_names;
use rap_core::{normalize_name_key, Error, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Kinds of faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Schema,
    DuplicateId,
    PathEscapes,
    MissingFile,
    BadImage,
    UnknownName,
    BoxOutOfRange,
    MissingBox,
    ImagePlaceholder,
    TemplateMarker,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Schema => "schema",
            FaultKind::DuplicateId => "duplicate_id",
            FaultKind::PathEscapes => "path_escapes",
            FaultKind::MissingFile => "missing_file",
            FaultKind::BadImage => "bad_image",
            FaultKind::UnknownName => "unknown_name",
            FaultKind::BoxOutOfRange => "box_out_of_range",
            FaultKind::MissingBox => "missing_box",
            FaultKind::ImagePlaceholder => "image_placeholder",
            FaultKind::TemplateMarker => "template_marker",
        }
    }
}

/// One fault of one sample.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fault {
    /// Position in the file's array.
    pub index: usize,
    /// The sample's id, when it has one.
    pub id: Option<String>,
    pub kind: FaultKind,
    pub message: String,
}

/// Samples and faulty samples of one type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TypeRow {
    pub samples: usize,
    pub faulty: usize,
}

/// What validation found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ValidationReport {
    pub file: PathBuf,
    pub image_folder: PathBuf,
    pub ok: bool,
    pub samples: usize,
    pub faulty_samples: usize,
    /// Rows by sample type (`?` for samples without a readable type).
    pub by_type: BTreeMap<String, TypeRow>,
    pub fault_counts: BTreeMap<String, usize>,
    /// Distinct image and crop files checked.
    pub files_checked: usize,
    pub faults: Vec<Fault>,
}

/// Validation settings.
#[derive(Debug, Clone, Default)]
pub struct ValidateOptions {
    /// Where paths are relative to (default: the folder holding the file).
    pub image_folder: Option<PathBuf>,
    pub limits: rap_image::Limits,
}

/// Reads a training file as JSON values: an error names the file and the JSON fault.
pub fn read_values(file: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{}: not JSON: {e}", file.display())))?;
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(Error::invalid(format!(
            "{}: a training file is a JSON array of samples",
            file.display()
        ))),
    }
}

const FIELDS: &[&str] = &["id", "image", "conversations", "extra", "type"];

struct Checker<'a> {
    folder: &'a Path,
    limits: rap_image::Limits,
    /// path -> None (fine) or the fault it has.
    files: BTreeMap<String, Option<(FaultKind, String)>>,
}

impl Checker<'_> {
    fn file(&mut self, rel: &str) -> Option<(FaultKind, String)> {
        if let Some(r) = self.files.get(rel) {
            return r.clone();
        }
        let result = match safe_relative(rel) {
            None => Some((
                FaultKind::PathEscapes,
                format!("{rel:?} is not a relative path inside the image folder"),
            )),
            Some(clean) => {
                let path = self.folder.join(clean);
                match std::fs::read(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Some((FaultKind::MissingFile, format!("{rel}: no such file")))
                    }
                    Err(e) => Some((FaultKind::MissingFile, format!("{rel}: {e}"))),
                    Ok(bytes) => rap_image::decode(&bytes, &self.limits)
                        .err()
                        .map(|e| (FaultKind::BadImage, format!("{rel}: {e}"))),
                }
            }
        };
        self.files.insert(rel.to_string(), result.clone());
        result
    }
}

fn is_no(answer: &str) -> bool {
    let a = answer.trim().to_lowercase();
    a == "no" || a.starts_with("no.") || a.starts_with("no,") || a.starts_with("no ")
}

/// Every `[a, b, c, d]` list of four numbers in a text.
pub fn boxes_in(text: &str) -> Vec<[f64; 4]> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('[') {
        let after = &rest[start + 1..];
        let Some(end) = after.find(']') else { break };
        let nums: Vec<Option<f64>> = after[..end]
            .split(',')
            .map(|p| p.trim().parse::<f64>().ok())
            .collect();
        if nums.len() == 4 && nums.iter().all(|n| n.is_some()) {
            let n: Vec<f64> = nums.into_iter().flatten().collect();
            out.push([n[0], n[1], n[2], n[3]]);
        }
        rest = &after[end + 1..];
    }
    out
}

/// Validates a training file; `progress(done, total)` is called per sample.
pub fn validate(
    file: &Path,
    opts: &ValidateOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ValidationReport> {
    let values = read_values(file)?;
    let folder = match &opts.image_folder {
        Some(f) => f.clone(),
        None => file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    if !folder.is_dir() {
        return Err(Error::invalid(format!(
            "{}: the image folder does not exist",
            folder.display()
        )));
    }
    let mut checker = Checker {
        folder: &folder,
        limits: opts.limits,
        files: BTreeMap::new(),
    };
    let mut faults = Vec::new();
    let mut by_type: BTreeMap<String, TypeRow> = BTreeMap::new();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut faulty_samples = 0;
    for (index, v) in values.iter().enumerate() {
        progress(index, values.len());
        let mut f = Vec::new();
        let id = check_sample(index, v, &mut checker, &mut ids, &mut f);
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let row = by_type.entry(kind).or_default();
        row.samples += 1;
        if !f.is_empty() {
            row.faulty += 1;
            faulty_samples += 1;
        }
        faults.extend(f.into_iter().map(|(kind, message)| Fault {
            index,
            id: id.clone(),
            kind,
            message,
        }));
    }
    progress(values.len(), values.len());
    let mut fault_counts = BTreeMap::new();
    for f in &faults {
        *fault_counts.entry(f.kind.as_str().to_string()).or_default() += 1;
    }
    Ok(ValidationReport {
        file: file.to_path_buf(),
        image_folder: folder.clone(),
        ok: faults.is_empty(),
        samples: values.len(),
        faulty_samples,
        by_type,
        fault_counts,
        files_checked: checker.files.len(),
        faults,
    })
}

fn marker_free(text: &str) -> bool {
    rap_llm::neutralize(text) == text
}

/// Checks one sample; returns its id as text.
fn check_sample(
    index: usize,
    v: &Value,
    files: &mut Checker,
    ids: &mut BTreeMap<String, usize>,
    f: &mut Vec<(FaultKind, String)>,
) -> Option<String> {
    use FaultKind::*;
    let Some(obj) = v.as_object() else {
        f.push((Schema, "a sample must be a JSON object".into()));
        return None;
    };
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            f.push((Schema, format!("unknown field {k:?}")));
        }
    }
    // id
    let id = match obj.get("id") {
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            f.push((Schema, "id must be a whole number or a string".into()));
            None
        }
        None => {
            f.push((Schema, "id is missing".into()));
            None
        }
    };
    if let Some(id) = &id {
        if let Some(first) = ids.insert(id.clone(), index) {
            f.push((
                DuplicateId,
                format!("id {id} is also the id of sample {first}"),
            ));
            ids.insert(id.clone(), first);
        }
    }
    // type
    let kind = match obj.get("type") {
        Some(Value::String(s)) => match SampleType::parse(s) {
            Some(t) => Some(t),
            None => {
                f.push((
                    Schema,
                    format!(
                        "type {s:?} is not one of {}",
                        SampleType::ALL.map(|t| t.as_str()).join(", ")
                    ),
                ));
                None
            }
        },
        _ => {
            f.push((Schema, "type is missing or not a string".into()));
            None
        }
    };
    // image
    let has_image = match obj.get("image") {
        None => false,
        Some(Value::String(p)) => {
            if let Some(fault) = files.file(p) {
                f.push(fault);
            }
            true
        }
        Some(_) => {
            f.push((Schema, "image must be a path (a string)".into()));
            true
        }
    };
    // extra
    let mut names: BTreeSet<String> = BTreeSet::new();
    match obj.get("extra") {
        None => {}
        Some(Value::Object(extra)) => {
            for (path, c) in extra {
                if let Some(fault) = files.file(path) {
                    f.push(fault);
                }
                let field = |k: &str| c.get(k).and_then(Value::as_str);
                match (field("name"), field("info"), field("category")) {
                    (Some(name), Some(info), Some(category)) => {
                        match normalize_name_key(name) {
                            Ok(key) => {
                                names.insert(key);
                            }
                            Err(e) => f.push((Schema, format!("extra {path}: {e}"))),
                        }
                        for (what, t) in [("name", name), ("info", info), ("category", category)] {
                            if t.contains("<image>") {
                                f.push((
                                    ImagePlaceholder,
                                    format!("extra {path}: <image> in the {what}"),
                                ));
                            } else if !marker_free(t) {
                                f.push((
                                    TemplateMarker,
                                    format!("extra {path}: a chat-template marker in the {what}"),
                                ));
                            }
                        }
                    }
                    _ => f.push((
                        Schema,
                        format!("extra {path}: needs string name, info and category"),
                    )),
                }
            }
        }
        Some(_) => f.push((
            Schema,
            "extra must be an object of crop path -> concept".into(),
        )),
    }
    // conversations
    let Some(turns) = obj.get("conversations").and_then(Value::as_array) else {
        f.push((Schema, "conversations is missing or not an array".into()));
        return id;
    };
    if turns.is_empty() {
        f.push((Schema, "conversations is empty".into()));
    }
    let mut texts: Vec<(bool, &str)> = Vec::new(); // (is human, value)
    for (i, t) in turns.iter().enumerate() {
        let from = t.get("from").and_then(Value::as_str);
        let value = t.get("value").and_then(Value::as_str);
        let want = if i % 2 == 0 { "human" } else { "gpt" };
        match (from, value) {
            (Some(from), Some(value)) => {
                if from != want {
                    f.push((
                        Schema,
                        format!(
                            "turn {i} is from {from:?}; turns alternate human, gpt from the human"
                        ),
                    ));
                }
                if from == "gpt" && value.trim().is_empty() {
                    f.push((Schema, format!("turn {i}: the answer is empty")));
                }
                texts.push((from == "human", value));
            }
            _ => f.push((Schema, format!("turn {i} needs string from and value"))),
        }
    }
    if turns.len() % 2 == 1 {
        f.push((Schema, "the last turn has no answer".into()));
    }
    let answers: Vec<&str> = texts.iter().filter(|(h, _)| !h).map(|(_, t)| *t).collect();
    let negative =
        kind == Some(SampleType::Recognition) && answers.first().is_some_and(|a| is_no(a));
    for (i, (human, text)) in texts.iter().enumerate() {
        let body = if i == 0 {
            match text.strip_prefix("<image>") {
                Some(rest) => {
                    if !has_image {
                        f.push((
                            ImagePlaceholder,
                            "the first turn starts with <image> but the sample has no image".into(),
                        ));
                    }
                    rest.strip_prefix('\n').unwrap_or(rest)
                }
                None => text,
            }
        } else {
            text
        };
        if body.contains("<image>") {
            f.push((ImagePlaceholder, format!("turn {i}: a stray <image>")));
        } else if !marker_free(body) {
            f.push((TemplateMarker, format!("turn {i}: a chat-template marker")));
        }
        for name in mentioned_names(body) {
            let known = normalize_name_key(&name)
                .map(|k| names.contains(&k))
                .unwrap_or(false);
            let deliberate_negative = negative && *human;
            if !known && !deliberate_negative {
                f.push((UnknownName, format!("turn {i}: <{name}> is not in extra")));
            }
        }
        if !human {
            for b in boxes_in(body) {
                let inside = b.iter().all(|v| (0.0..=1.0).contains(v));
                if !inside || b[0] > b[2] || b[1] > b[3] {
                    f.push((
                        BoxOutOfRange,
                        format!(
                            "turn {i}: box [{}, {}, {}, {}] is not inside [0, 1] with x1 <= x2, y1 <= y2",
                            b[0], b[1], b[2], b[3]
                        ),
                    ));
                }
            }
        }
    }
    if kind == Some(SampleType::Grounding) && !answers.iter().any(|a| !boxes_in(a).is_empty()) {
        f.push((
            MissingBox,
            "a grounding answer without a [x1, y1, x2, y2] box".into(),
        ));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_boxes_and_negatives() {
        assert_eq!(
            boxes_in("It is at [0.10, 0.2, 1.00, 0.5] and [a, b] and [1,2,3]."),
            vec![[0.1, 0.2, 1.0, 0.5]]
        );
        assert!(is_no("No"));
        assert!(is_no("no, it is not."));
        assert!(!is_no("Nope"));
        assert!(!is_no("Yes"));
    }
}
