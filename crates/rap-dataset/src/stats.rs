//! What a training file holds: samples by type, concepts per sample, noise, answer lengths,
//! and a hand-written SVG chart of them.
//!
//! The file alone does not say which supplied concepts are noise, so [`Stats`] counts an
//! `extra` concept as noise when its `<name>` appears in none of the sample's turns (the answer
//! ignores it). For files `rap dataset build` writes without a generator this equals the
//! builder's own count; a generated caption that leaves out a concept of the photo makes that
//! concept count as noise here.
//!
//! Reading is lenient (any `type` string, samples it cannot read are counted and skipped), so
//! the reference's own files can be described too.

use crate::text::mentioned_names;
use crate::validate::read_values;
use rap_core::{normalize_name_key, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Answer-length buckets (words): `1`, `2-3`, `4-7`, ... doubling, the last open.
pub const LENGTH_BUCKETS: &[(usize, usize)] = &[
    (1, 1),
    (2, 3),
    (4, 7),
    (8, 15),
    (16, 31),
    (32, 63),
    (64, 127),
    (128, usize::MAX),
];

/// One histogram bar.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    pub label: String,
    pub count: usize,
}

/// The description of a training file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    pub file: PathBuf,
    pub samples: usize,
    /// Samples that are not objects with a `conversations` array.
    pub unreadable: usize,
    pub by_type: BTreeMap<String, usize>,
    /// Number of `extra` concepts -> samples.
    pub concepts_per_sample: BTreeMap<usize, usize>,
    pub mean_concepts: f64,
    /// Share of samples with at least one noise concept (see the module docs).
    pub noise_rate: f64,
    pub noise_concepts: usize,
    /// Distinct concept names over all `extra`s.
    pub distinct_concepts: usize,
    pub distinct_images: usize,
    pub distinct_crops: usize,
    pub answers: usize,
    pub mean_answer_words: f64,
    pub max_answer_words: usize,
    pub answer_words: Vec<Bucket>,
}

fn bucket_label(lo: usize, hi: usize) -> String {
    if lo == hi {
        lo.to_string()
    } else if hi == usize::MAX {
        format!("{lo}+")
    } else {
        format!("{lo}-{hi}")
    }
}

fn key(name: &str) -> String {
    normalize_name_key(name).unwrap_or_else(|_| name.trim().to_lowercase())
}

/// Describes a training file.
pub fn stats(file: &Path) -> Result<Stats> {
    Ok(describe(file, &read_values(file)?))
}

/// Describes samples already read.
pub fn describe(file: &Path, values: &[Value]) -> Stats {
    let mut by_type = BTreeMap::new();
    let mut per = BTreeMap::new();
    let mut concepts_total = 0usize;
    let mut noise_samples = 0usize;
    let mut noise_concepts = 0usize;
    let mut names = BTreeSet::new();
    let mut images = BTreeSet::new();
    let mut crops = BTreeSet::new();
    let mut lengths = Vec::new();
    let mut unreadable = 0;
    let mut readable = 0;
    for v in values {
        let Some(turns) = v.get("conversations").and_then(Value::as_array) else {
            unreadable += 1;
            continue;
        };
        readable += 1;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("?");
        *by_type.entry(kind.to_string()).or_insert(0) += 1;
        if let Some(img) = v.get("image").and_then(Value::as_str) {
            images.insert(img.to_string());
        }
        let mut mentioned = BTreeSet::new();
        for t in turns {
            let value = t.get("value").and_then(Value::as_str).unwrap_or("");
            mentioned.extend(mentioned_names(value).iter().map(|n| key(n)));
            if t.get("from").and_then(Value::as_str) == Some("gpt") {
                lengths.push(value.split_whitespace().count());
            }
        }
        let extra = v.get("extra").and_then(Value::as_object);
        let n = extra.map(|e| e.len()).unwrap_or(0);
        *per.entry(n).or_insert(0) += 1;
        concepts_total += n;
        let mut noise = 0;
        for (path, c) in extra.into_iter().flatten() {
            crops.insert(path.clone());
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            names.insert(key(name));
            if !mentioned.contains(&key(name)) {
                noise += 1;
            }
        }
        if noise > 0 {
            noise_samples += 1;
            noise_concepts += noise;
        }
    }
    let answer_words = LENGTH_BUCKETS
        .iter()
        .map(|&(lo, hi)| Bucket {
            label: bucket_label(lo, hi),
            count: lengths.iter().filter(|&&l| l >= lo && l <= hi).count(),
        })
        .collect();
    let div = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Stats {
        file: file.to_path_buf(),
        samples: values.len(),
        unreadable,
        by_type,
        concepts_per_sample: per,
        mean_concepts: div(concepts_total, readable),
        noise_rate: div(noise_samples, readable),
        noise_concepts,
        distinct_concepts: names.len(),
        distinct_images: images.len(),
        distinct_crops: crops.len(),
        answers: lengths.len(),
        mean_answer_words: div(lengths.iter().sum(), lengths.len()),
        max_answer_words: lengths.iter().copied().max().unwrap_or(0),
        answer_words,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bar chart panel at (x, y), `w` x `h`, with a title.
fn panel(svg: &mut String, x: f64, y: f64, w: f64, h: f64, title: &str, bars: &[(String, usize)]) {
    let _ = writeln!(
        svg,
        r##"<text x="{x}" y="{}" font-size="15" font-weight="bold">{}</text>"##,
        y + 16.0,
        escape(title)
    );
    let top = y + 30.0;
    let chart_h = h - 60.0;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let n = bars.len().max(1) as f64;
    let slot = w / n;
    let bar_w = (slot * 0.7).max(1.0);
    let base = top + chart_h;
    let _ = writeln!(
        svg,
        r##"<line x1="{x}" y1="{base}" x2="{}" y2="{base}" stroke="#444"/>"##,
        x + w
    );
    for (i, (label, count)) in bars.iter().enumerate() {
        let bh = chart_h * (*count as f64) / max;
        let bx = x + slot * i as f64 + (slot - bar_w) / 2.0;
        let _ = writeln!(
            svg,
            r##"<rect x="{bx:.1}" y="{:.1}" width="{bar_w:.1}" height="{bh:.1}" fill="#4a7ab5"><title>{}: {count}</title></rect>"##,
            base - bh,
            escape(label)
        );
        let cx = bx + bar_w / 2.0;
        let _ = writeln!(
            svg,
            r##"<text x="{cx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{count}</text>"##,
            base - bh - 4.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="{cx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            base + 15.0,
            escape(label)
        );
    }
}

/// The SVG chart: samples by type, concepts per sample, answer lengths in words.
pub fn svg(stats: &Stats) -> String {
    let (w, panel_h) = (720.0, 230.0);
    let height = 60.0 + 3.0 * panel_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="sans-serif">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let file = stats
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(
        s,
        r##"<text x="20" y="28" font-size="17">{}: {} samples, {:.1}% with noise concepts, {:.2} concepts per sample</text>"##,
        escape(&file),
        stats.samples,
        stats.noise_rate * 100.0,
        stats.mean_concepts
    );
    let types: Vec<(String, usize)> = stats.by_type.iter().map(|(k, v)| (k.clone(), *v)).collect();
    panel(
        &mut s,
        20.0,
        50.0,
        w - 40.0,
        panel_h,
        "Samples by type",
        &types,
    );
    let per: Vec<(String, usize)> = stats
        .concepts_per_sample
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    panel(
        &mut s,
        20.0,
        50.0 + panel_h,
        w - 40.0,
        panel_h,
        "Concepts supplied per sample",
        &per,
    );
    let lengths: Vec<(String, usize)> = stats
        .answer_words
        .iter()
        .map(|b| (b.label.clone(), b.count))
        .collect();
    panel(
        &mut s,
        20.0,
        50.0 + 2.0 * panel_h,
        w - 40.0,
        panel_h,
        "Answer length (words)",
        &lengths,
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_noise_as_unmentioned_concepts() {
        let values = vec![
            json!({"id": 0, "image": "a.jpg", "type": "recognition",
                   "conversations": [{"from": "human", "value": "<image>\nIs <bo> here?"}, {"from": "gpt", "value": "Yes"}],
                   "extra": {"c/1.jpg": {"name": "bo", "info": "", "category": "dog"},
                             "c/2.jpg": {"name": "zu", "info": "", "category": "cat"}}}),
            json!({"id": 1, "image": "a.jpg", "type": "caption",
                   "conversations": [{"from": "human", "value": "<image>\nCaption?"}, {"from": "gpt", "value": "<Bo> runs on the grass in the sun."}],
                   "extra": {"c/1.jpg": {"name": "bo", "info": "", "category": "dog"}}}),
            json!("not a sample"),
        ];
        let s = describe(Path::new("t.json"), &values);
        assert_eq!(s.samples, 3);
        assert_eq!(s.unreadable, 1);
        assert_eq!(s.noise_rate, 0.5);
        assert_eq!(s.noise_concepts, 1);
        assert_eq!(s.concepts_per_sample, BTreeMap::from([(1, 1), (2, 1)]));
        assert_eq!(s.distinct_concepts, 2);
        assert_eq!(s.distinct_images, 1);
        assert_eq!(s.answer_words[0].count, 1); // "Yes"
        assert_eq!(s.answer_words[3].count, 1); // 8 words
        assert_eq!(s.max_answer_words, 8);
        let svg = svg(&s);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            2 + 2 + LENGTH_BUCKETS.len()
        );
    }
}
