//! The reference training format (RAP-260K) and the Hugging Face chat export.
//!
//! A training file is a JSON array of [`Sample`]s:
//!
//! ```json
//! { "id": 156, "image": "images/dog/01.jpg",
//!   "conversations": [ {"from": "human", "value": "<image>\nIs <bo> in this image? ..."},
//!                      {"from": "gpt", "value": "Yes"} ],
//!   "extra": { "crops/0003_bo.jpg": {"name": "bo", "info": "<bo> is a dog.", "category": "dog"} },
//!   "type": "recognition" }
//! ```
//!
//! Paths (`image` and the keys of `extra`) are relative to the folder that holds the file, which
//! is the trainer's `--image_folder`. `extra` is an *ordered* map: the trainer lists the concepts
//! in the prompt in its order, so [`Extra`] keeps insertion order when written and when read
//! (serde_json's own map would sort the keys). Names in `extra` are bare (`bo`); conversations
//! write them in angle brackets (`<bo>`).
//!
//! [`hf_chat_record`] turns a sample into the Hugging Face chat form (`messages` whose `content`
//! is a list of `{"type": "image"}` / `{"type": "text"}` parts, plus `images` in order), laid
//! out with `rap_llm::layout` exactly as the reference trainer lays out its first turn.

use rap_core::{Error, ImageData, Part, Result};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// The five kinds of RAP training samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleType {
    Recognition,
    Grounding,
    Caption,
    Description,
    Qa,
}

impl SampleType {
    pub const ALL: [SampleType; 5] = [
        SampleType::Recognition,
        SampleType::Grounding,
        SampleType::Caption,
        SampleType::Description,
        SampleType::Qa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SampleType::Recognition => "recognition",
            SampleType::Grounding => "grounding",
            SampleType::Caption => "caption",
            SampleType::Description => "description",
            SampleType::Qa => "qa",
        }
    }

    pub fn parse(s: &str) -> Option<SampleType> {
        SampleType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for SampleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who speaks a turn, as the reference writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    Human,
    Gpt,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub from: Speaker,
    pub value: String,
}

impl Turn {
    pub fn human(value: impl Into<String>) -> Self {
        Turn {
            from: Speaker::Human,
            value: value.into(),
        }
    }

    pub fn gpt(value: impl Into<String>) -> Self {
        Turn {
            from: Speaker::Gpt,
            value: value.into(),
        }
    }
}

/// A concept shown to the model with a sample: its crop (the key in [`Extra`]), name, info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraConcept {
    /// The bare name (`bo`, not `<bo>`).
    pub name: String,
    pub info: String,
    pub category: String,
}

/// `extra`: crop path -> concept, in the order the prompt lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra(pub Vec<(String, ExtraConcept)>);

impl Extra {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, ExtraConcept)> {
        self.0.iter()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, c)| c.name.as_str())
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Extra;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping crop paths to {name, info, category}")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Extra, A::Error> {
                let mut out: Vec<(String, ExtraConcept)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, ExtraConcept>()? {
                    if out.iter().any(|(p, _)| *p == k) {
                        return Err(serde::de::Error::custom(format!(
                            "crop path {k:?} appears twice in extra"
                        )));
                    }
                    out.push((k, v));
                }
                Ok(Extra(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Sample ids: the reference writes integers; strings are accepted when reading.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleId {
    Int(u64),
    Str(String),
}

impl fmt::Display for SampleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleId::Int(i) => write!(f, "{i}"),
            SampleId::Str(s) => f.write_str(s),
        }
    }
}

/// One training sample in the reference format; fields serialise in the reference's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub id: SampleId,
    /// The query image, relative to the image folder; text-only samples have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub conversations: Vec<Turn>,
    #[serde(default)]
    pub extra: Extra,
    #[serde(rename = "type")]
    pub kind: SampleType,
}

impl Sample {
    /// The first human turn without the reference's leading `<image>\n`.
    pub fn question(&self) -> &str {
        let q = self
            .conversations
            .first()
            .map(|t| t.value.as_str())
            .unwrap_or("");
        q.strip_prefix("<image>\n").unwrap_or(q)
    }

    /// All answers (the `gpt` turns).
    pub fn answers(&self) -> impl Iterator<Item = &str> {
        self.conversations
            .iter()
            .filter(|t| t.from == Speaker::Gpt)
            .map(|t| t.value.as_str())
    }
}

/// Serialises samples as the training file's text (pretty JSON, trailing newline).
pub fn to_json(samples: &[Sample]) -> Result<String> {
    let mut s = serde_json::to_string_pretty(samples)
        .map_err(|e| Error::invalid(format!("cannot serialise samples: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// Parses a training file's text strictly into samples (see `validate` for a lenient check
/// that reports every fault).
pub fn from_json(text: &str) -> Result<Vec<Sample>> {
    serde_json::from_str(text).map_err(|e| Error::invalid(format!("not a RAP training file: {e}")))
}

/// The first user turn of `sample` as message parts, laid out the way the reference trainer
/// does it (query image, then each `extra` concept numbered from 1 with its crop, name and info,
/// then the question), using [`rap_llm::first_turn`]. Images are given as their paths (UTF-8
/// bytes, MIME `text/x-path`) so callers can tell which file each image part stands for.
pub fn first_turn_parts(sample: &Sample) -> Vec<Part> {
    let path_image = |p: &str| ImageData {
        bytes: Arc::new(p.as_bytes().to_vec()),
        mime: PATH_MIME.to_string(),
    };
    let concepts: Vec<rap_llm::LayoutConcept> = sample
        .extra
        .iter()
        .map(|(path, c)| {
            rap_llm::LayoutConcept::new(c.name.clone(), c.info.clone(), Some(path_image(path)))
        })
        .collect();
    let question = rap_llm::strip_image_placeholders(sample.question());
    let query = sample.image.as_deref().map(path_image);
    rap_llm::first_turn(query.as_ref(), &concepts, &question)
}

/// The MIME type [`first_turn_parts`] gives image parts whose bytes are a path.
pub const PATH_MIME: &str = "text/x-path";

/// One sample in the Hugging Face chat format:
/// `{"id", "type", "images": [...], "messages": [{"role": "user", "content": [{"type": "image",
/// "image": path}, {"type": "text", "text": ...}, ...]}, {"role": "assistant", "content":
/// [{"type": "text", "text": answer}]}, ...]}`. Images (query, then the crops) sit where the RAP
/// layout puts them; only the first user turn has images.
pub fn hf_chat_record(sample: &Sample) -> serde_json::Value {
    use serde_json::json;
    let mut images = Vec::new();
    let mut messages = Vec::new();
    for (i, turn) in sample.conversations.iter().enumerate() {
        let role = match turn.from {
            Speaker::Human => "user",
            Speaker::Gpt => "assistant",
        };
        let content: Vec<serde_json::Value> = if i == 0 {
            first_turn_parts(sample)
                .into_iter()
                .map(|p| match p {
                    Part::Text(t) => json!({"type": "text", "text": t}),
                    Part::Image(img) => {
                        let path = String::from_utf8_lossy(&img.bytes).into_owned();
                        images.push(path.clone());
                        json!({"type": "image", "image": path})
                    }
                })
                .collect()
        } else {
            vec![json!({"type": "text", "text": turn.value})]
        };
        messages.push(json!({"role": role, "content": content}));
    }
    json!({
        "id": sample.id,
        "type": sample.kind,
        "images": images,
        "messages": messages,
    })
}

/// The Hugging Face export: one [`hf_chat_record`] per line (JSON Lines).
pub fn to_hf_jsonl(samples: &[Sample]) -> Result<String> {
    let mut out = String::new();
    for s in samples {
        let line = serde_json::to_string(&hf_chat_record(s))
            .map_err(|e| Error::invalid(format!("cannot serialise sample {}: {e}", s.id)))?;
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample {
            id: SampleId::Int(7),
            image: Some("images/a.jpg".into()),
            conversations: vec![
                Turn::human("<image>\nIs <bo> in this image?"),
                Turn::gpt("Yes"),
            ],
            extra: Extra(vec![
                (
                    "crops/z.jpg".into(),
                    ExtraConcept {
                        name: "bo".into(),
                        info: "<bo> is a dog.".into(),
                        category: "dog".into(),
                    },
                ),
                (
                    "crops/a.jpg".into(),
                    ExtraConcept {
                        name: "dug".into(),
                        info: "<dug> is a cat.".into(),
                        category: "cat".into(),
                    },
                ),
            ]),
            kind: SampleType::Recognition,
        }
    }

    #[test]
    fn round_trips_with_field_and_extra_order() {
        let s = sample();
        let text = to_json(std::slice::from_ref(&s)).unwrap();
        let id = text.find("\"id\"").unwrap();
        let image = text.find("\"image\"").unwrap();
        let conv = text.find("\"conversations\"").unwrap();
        let extra = text.find("\"extra\"").unwrap();
        let kind = text.find("\"type\"").unwrap();
        assert!(
            id < image && image < conv && conv < extra && extra < kind,
            "{text}"
        );
        // extra keeps insertion order (z before a), not sorted order
        assert!(text.find("crops/z.jpg").unwrap() < text.find("crops/a.jpg").unwrap());
        let back = from_json(&text).unwrap();
        assert_eq!(back, vec![s]);
    }

    #[test]
    fn duplicate_crop_paths_and_unknown_types_are_refused() {
        let dup = r#"[{"id":1,"image":"a.jpg","conversations":[],"extra":{"c.jpg":{"name":"a","info":"","category":""},"c.jpg":{"name":"b","info":"","category":""}},"type":"qa"}]"#;
        let e = from_json(dup).unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");
        let bad = r#"[{"id":1,"conversations":[],"type":"basic"}]"#;
        assert!(from_json(bad).is_err());
    }

    #[test]
    fn hf_record_places_images_where_the_layout_does() {
        let r = hf_chat_record(&sample());
        assert_eq!(
            r["images"],
            serde_json::json!(["images/a.jpg", "crops/z.jpg", "crops/a.jpg"])
        );
        let content = r["messages"][0]["content"].as_array().unwrap();
        let kinds: Vec<&str> = content
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["image", "text", "image", "text", "image", "text"]);
        assert_eq!(content[1]["text"], "\n[1.");
        assert_eq!(
            content[5]["text"],
            "\n Name: <dug>, Info: <dug> is a cat.\n]Is <bo> in this image?"
        );
        assert_eq!(r["messages"][1]["role"], "assistant");
        assert_eq!(r["messages"][1]["content"][0]["text"], "Yes");
    }
}
