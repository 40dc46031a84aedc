//! Captioning: which concepts a caption names, scored against the image's target concepts.
//!
//! Definitions (the paper's, made precise):
//! - A concept is *found* in a caption when its name or one of its aliases appears, with or
//!   without angle brackets, case-insensitively, on word boundaries: the characters around the
//!   match are not letters, digits or `_` (so `bo` is found in `<bo>`, `Bo's` and `bo-dog`, but
//!   not in `bowl` or `gumbo`). Where names overlap (`cat` inside `cat-cup`), the longest match
//!   wins. A concept is counted once per caption however often it is named.
//! - The known names are the memory's names and aliases ([`Vocabulary`]); when none is given,
//!   the union of all target concepts in the file. Targets are always known.
//! - Per image: recall = targets found / targets; precision = targets found / concepts found
//!   (none when nothing was found); F1 their harmonic mean.
//! - Totals are micro-averaged: sums over all images, so an image where no concept was found
//!   adds nothing to precision's denominator.

use crate::io::{kind, read_json_array};
use crate::{f1, ratio};
use rap_core::{strip_brackets, Error, Result};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// One prediction: `[image_path, [target concepts], caption]` in the reference's output format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionItem {
    pub image: String,
    pub targets: Vec<String>,
    pub caption: String,
}

/// The concept names a caption may mention: each concept's name and aliases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocabulary {
    /// (canonical key, surface forms), all lower-case and without brackets.
    entries: Vec<(String, Vec<String>)>,
}

fn key(name: &str) -> String {
    strip_brackets(name.trim()).trim().to_lowercase()
}

impl Vocabulary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a concept with its aliases. Names are compared without brackets and case. A
    /// concept added twice gets the union of its aliases; an alias already taken by another
    /// concept is ignored.
    pub fn add<S: AsRef<str>>(&mut self, name: &str, aliases: &[S]) {
        let k = key(name);
        if k.is_empty() {
            return;
        }
        let forms: Vec<String> = std::iter::once(k.clone())
            .chain(aliases.iter().map(|a| key(a.as_ref())))
            .filter(|f| !f.is_empty())
            .collect();
        let pos = match self.entries.iter().position(|(e, _)| *e == k) {
            Some(p) => p,
            None => {
                self.entries.push((k.clone(), Vec::new()));
                self.entries.len() - 1
            }
        };
        for f in forms {
            let taken = self.entries.iter().any(|(_, fs)| fs.contains(&f));
            if !taken {
                self.entries[pos].1.push(f);
            }
        }
    }

    /// The memory's concepts: each name with its aliases.
    pub fn from_concepts<'a>(concepts: impl IntoIterator<Item = &'a rap_core::Concept>) -> Self {
        let mut v = Vocabulary::new();
        for c in concepts {
            v.add(&c.name, &c.aliases);
        }
        v
    }

    /// The canonical key of a name or alias, if known.
    pub fn canonical(&self, name: &str) -> Option<&str> {
        let k = key(name);
        self.entries
            .iter()
            .find(|(_, fs)| fs.contains(&k))
            .map(|(c, _)| c.as_str())
    }

    /// The union of all targets of `items` (the default when the memory's names are not given).
    pub fn from_targets(items: &[CaptionItem]) -> Self {
        let mut v = Vocabulary::new();
        for it in items {
            for t in &it.targets {
                v.add::<&str>(t, &[]);
            }
        }
        v
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The concepts (canonical keys) named in `caption`, each once, in order of first mention.
pub fn find_concepts(caption: &str, vocab: &Vocabulary) -> Vec<String> {
    let text = caption.to_lowercase();
    // All boundary-respecting matches: (start, end, concept index).
    let mut matches: Vec<(usize, usize, usize)> = Vec::new();
    for (ci, (_, forms)) in vocab.entries.iter().enumerate() {
        for f in forms {
            let mut from = 0;
            while let Some(rel) = text[from..].find(f.as_str()) {
                let start = from + rel;
                let end = start + f.len();
                let before_ok = text[..start]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !is_word_char(c));
                let after_ok = text[end..].chars().next().is_none_or(|c| !is_word_char(c));
                if before_ok && after_ok {
                    matches.push((start, end, ci));
                }
                // Step one character forward.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    // Longest first, then leftmost; keep matches that do not overlap a kept one.
    matches.sort_by(|a, b| (b.1 - b.0).cmp(&(a.1 - a.0)).then(a.0.cmp(&b.0)));
    let mut kept: Vec<(usize, usize, usize)> = Vec::new();
    for m in matches {
        if kept.iter().all(|k| m.1 <= k.0 || m.0 >= k.1) {
            kept.push(m);
        }
    }
    kept.sort_by_key(|m| m.0);
    let mut out: Vec<String> = Vec::new();
    for (_, _, ci) in kept {
        let name = &vocab.entries[ci].0;
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Scores of one caption.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionImageScore {
    pub image: String,
    /// Target concepts (canonical keys, deduplicated).
    pub targets: Vec<String>,
    /// Concepts named in the caption.
    pub found: Vec<String>,
    /// Found concepts that are targets.
    pub correct: Vec<String>,
    /// Targets not named.
    pub missed: Vec<String>,
    /// Found concepts that are not targets.
    pub wrong: Vec<String>,
    pub recall: Option<f64>,
    pub precision: Option<f64>,
    pub f1: Option<f64>,
}

/// Totals (micro-averaged) and per-image scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptionReport {
    pub images: usize,
    pub targets: usize,
    pub found: usize,
    pub correct: usize,
    pub recall: Option<f64>,
    pub precision: Option<f64>,
    pub f1: Option<f64>,
    pub per_image: Vec<CaptionImageScore>,
}

/// Scores captions. `vocab` is the memory's names and aliases; `None` means the union of all
/// targets in `items`. Targets are added to the vocabulary in any case.
pub fn score_captions(items: &[CaptionItem], vocab: Option<&Vocabulary>) -> CaptionReport {
    let mut vocab = vocab.cloned().unwrap_or_default();
    for it in items {
        for t in &it.targets {
            if vocab.canonical(t).is_none() {
                vocab.add::<&str>(t, &[]);
            }
        }
    }
    let mut per_image = Vec::with_capacity(items.len());
    let (mut n_targets, mut n_found, mut n_correct) = (0, 0, 0);
    for it in items {
        let mut targets: Vec<String> = Vec::new();
        for t in &it.targets {
            let c = vocab
                .canonical(t)
                .map(str::to_string)
                .unwrap_or_else(|| key(t));
            if !c.is_empty() && !targets.contains(&c) {
                targets.push(c);
            }
        }
        let found = find_concepts(&it.caption, &vocab);
        let correct: Vec<String> = found
            .iter()
            .filter(|f| targets.contains(f))
            .cloned()
            .collect();
        let wrong: Vec<String> = found
            .iter()
            .filter(|f| !targets.contains(f))
            .cloned()
            .collect();
        let missed: Vec<String> = targets
            .iter()
            .filter(|t| !found.contains(t))
            .cloned()
            .collect();
        n_targets += targets.len();
        n_found += found.len();
        n_correct += correct.len();
        let recall = ratio(correct.len(), targets.len());
        let precision = ratio(correct.len(), found.len());
        per_image.push(CaptionImageScore {
            image: it.image.clone(),
            recall,
            precision,
            f1: f1(precision, recall),
            targets,
            found,
            correct,
            missed,
            wrong,
        });
    }
    let recall = ratio(n_correct, n_targets);
    let precision = ratio(n_correct, n_found);
    CaptionReport {
        images: items.len(),
        targets: n_targets,
        found: n_found,
        correct: n_correct,
        recall,
        precision,
        f1: f1(precision, recall),
        per_image,
    }
}

/// Reads a predictions file: a JSON list of `[image_path, [target concepts], caption]`.
pub fn read_caption_predictions(path: &Path) -> Result<Vec<CaptionItem>> {
    let rows = read_json_array(path, "caption predictions")?;
    parse_rows(rows, &path.display().to_string())
}

/// Parses the rows of a predictions file (`source` names it in errors).
pub fn parse_caption_predictions(text: &str, source: &str) -> Result<Vec<CaptionItem>> {
    let rows = crate::io::parse_json_array(text, source, "caption predictions")?;
    parse_rows(rows, source)
}

fn parse_rows(rows: Vec<serde_json::Value>, source: &str) -> Result<Vec<CaptionItem>> {
    use serde_json::Value;
    let bad = |i: usize, why: String| {
        Error::invalid(format!(
            "{source}: row {i}: {why}; expected [image_path, [target concepts], caption]"
        ))
    };
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let Value::Array(cells) = row else {
            return Err(bad(i, format!("{} instead of a list", kind(&row))));
        };
        if cells.len() != 3 {
            return Err(bad(i, format!("{} elements", cells.len())));
        }
        let image = match &cells[0] {
            Value::String(s) => s.clone(),
            v => return Err(bad(i, format!("the image path is {}", kind(v)))),
        };
        let targets = match &cells[1] {
            Value::Array(ts) => ts
                .iter()
                .map(|t| match t {
                    Value::String(s) => Ok(s.clone()),
                    v => Err(bad(i, format!("a target concept is {}", kind(v)))),
                })
                .collect::<Result<Vec<_>>>()?,
            Value::String(s) => vec![s.clone()],
            v => return Err(bad(i, format!("the targets are {}", kind(v)))),
        };
        let caption = match &cells[2] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            v => return Err(bad(i, format!("the caption is {}", kind(v)))),
        };
        out.push(CaptionItem {
            image,
            targets,
            caption,
        });
    }
    Ok(out)
}

/// Distinct target concepts of a file, sorted (handy for reports).
pub fn all_targets(items: &[CaptionItem]) -> BTreeSet<String> {
    items
        .iter()
        .flat_map(|i| i.targets.iter().map(|t| key(t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(image: &str, targets: &[&str], caption: &str) -> CaptionItem {
        CaptionItem {
            image: image.into(),
            targets: targets.iter().map(|s| s.to_string()).collect(),
            caption: caption.into(),
        }
    }

    fn vocab() -> Vocabulary {
        let mut v = Vocabulary::new();
        v.add("bo", &["Bo the Shiba"]);
        v.add("dug", &["doggo"]);
        v.add("cat", &[] as &[&str]);
        v.add("cat-cup", &[] as &[&str]);
        v
    }

    #[test]
    fn word_boundaries_brackets_case_and_overlaps() {
        let v = vocab();
        assert_eq!(find_concepts("<bo> sits by the bowl", &v), vec!["bo"]);
        assert!(find_concepts("a bowl of gumbo", &v).is_empty());
        assert_eq!(find_concepts("BO's toy", &v), vec!["bo"]);
        assert_eq!(find_concepts("<cat-cup> on a table", &v), vec!["cat-cup"]);
        assert_eq!(
            find_concepts("the cat and <cat-cup>", &v),
            vec!["cat", "cat-cup"]
        );
        // alias with spaces, counted once with the name
        assert_eq!(
            find_concepts("Bo the Shiba, i.e. <bo>, and a doggo", &v),
            vec!["bo", "dug"]
        );
    }

    #[test]
    fn hand_computed_totals_with_the_traps() {
        let v = vocab();
        let items = vec![
            // Names bo twice (counted once) and dug: targets bo+dug -> 2/2 found, 2 correct.
            item(
                "1.png",
                &["<bo>", "dug"],
                "<bo> plays with <dug>; <bo> is happy.",
            ),
            // Alias of dug + a wrong concept (cat): targets dug -> found dug, cat; correct 1.
            item("2.png", &["dug"], "A doggo next to a cat."),
            // Name inside another word only: nothing found; target bo missed.
            item("3.png", &["bo"], "A bowl on the floor."),
        ];
        let r = score_captions(&items, Some(&v));
        assert_eq!((r.targets, r.found, r.correct), (4, 4, 3));
        assert_eq!(r.recall, Some(0.75));
        assert_eq!(r.precision, Some(0.75));
        assert!((r.f1.unwrap() - 0.75).abs() < 1e-12);
        let p = &r.per_image;
        assert_eq!(p[0].found, vec!["bo", "dug"]);
        assert_eq!((p[0].recall, p[0].precision), (Some(1.0), Some(1.0)));
        assert_eq!(p[1].wrong, vec!["cat"]);
        assert_eq!((p[1].recall, p[1].precision), (Some(1.0), Some(0.5)));
        assert!((p[1].f1.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(p[2].missed, vec!["bo"]);
        assert_eq!(
            (p[2].recall, p[2].precision, p[2].f1),
            (Some(0.0), None, None)
        );
    }

    #[test]
    fn without_vocabulary_only_targets_count() {
        // "cat" is not a target anywhere, so it is not a known name: precision stays 1.
        let items = vec![
            item("a", &["bo"], "bo and a cat"),
            item("b", &["dug"], "bo again"),
        ];
        let r = score_captions(&items, None);
        // found: a -> bo (correct); b -> bo (wrong). recall 1/2, precision 1/2.
        assert_eq!((r.targets, r.found, r.correct), (2, 2, 1));
        assert_eq!(r.recall, Some(0.5));
        assert_eq!(r.precision, Some(0.5));
    }

    #[test]
    fn reads_the_reference_output_format_and_names_bad_rows() {
        let ok =
            r#"[["img/1.png", ["<bo>", "dug"], "<bo> and <dug>"], ["img/2.png", [], "nothing"]]"#;
        let items = parse_caption_predictions(ok, "p.json").unwrap();
        assert_eq!(items[0].targets, vec!["<bo>", "dug"]);
        assert_eq!(items[1].caption, "nothing");
        let e = parse_caption_predictions(r#"[["a", ["bo"]]]"#, "p.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.json") && e.contains("row 0") && e.contains("2 elements"),
            "{e}"
        );
        let e = parse_caption_predictions(r#"{"a": 1}"#, "p.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("JSON list"), "{e}");
        let e = read_caption_predictions(Path::new("no/such/file.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no/such/file.json"), "{e}");
    }
}
