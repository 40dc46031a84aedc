//! Concepts: the user's personal things (a dog, a mug, a friend) as the memory holds them.

use crate::{Error, Result};
use std::fmt;

/// A concept's stable id (a UUIDv7 string); it survives renames.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ConceptId(pub String);

impl fmt::Display for ConceptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An image's id: the lowercase hex sha256 of its bytes (images are content-addressed).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ImageId(pub String);

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reference image of a concept, as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConceptImage {
    pub id: ImageId,
    pub width: u32,
    pub height: u32,
    /// Container format as detected from the bytes: `png`, `jpeg`, `webp`, ...
    pub format: String,
    pub bytes: u64,
}

/// A stored concept.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Concept {
    pub id: ConceptId,
    /// The name as the user typed it; unique per tenant, compared case-insensitively.
    pub name: String,
    pub aliases: Vec<String>,
    pub category: String,
    pub info: String,
    pub images: Vec<ConceptImage>,
    /// Negative examples ("that's not Bo"): photos or regions the user said are *not* this
    /// concept. Each has its own key, is never retrieved as the concept, and counts against
    /// it in the retrieval decision (see `rap_engine::retrieve`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negatives: Vec<ConceptImage>,
    /// Unix time in milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a caller gives to create a concept; images are passed separately as bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewConcept {
    pub name: String,
    pub aliases: Vec<String>,
    pub category: String,
    pub info: String,
}

/// Checks a concept name or alias and returns the key it is compared by (trimmed, lowercase).
///
/// Names may hold letters, digits, spaces, `-`, `_`, `.` and `'` (1-100 characters), and may be
/// given wrapped in angle brackets as the reference writes them (`<bo>` is `bo`). Characters
/// that would break the prompt layout (`<`, `>`, `,`, newlines) are refused.
pub fn normalize_name_key(name: &str) -> Result<String> {
    let trimmed = strip_brackets(name.trim());
    let ok_char = |c: char| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '\'');
    if trimmed.is_empty() || trimmed.chars().count() > 100 || !trimmed.chars().all(ok_char) {
        return Err(Error::invalid(format!(
            "invalid name {name:?}: use 1-100 letters, digits, spaces, '-', '_', '.' or '''"
        )));
    }
    Ok(trimmed.to_lowercase())
}

/// `<bo>` -> `bo`; anything else unchanged.
pub fn strip_brackets(name: &str) -> &str {
    name.strip_prefix('<')
        .and_then(|n| n.strip_suffix('>'))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_keys_are_case_insensitive_and_bracket_free() {
        assert_eq!(normalize_name_key(" Bo ").unwrap(), "bo");
        assert_eq!(normalize_name_key("<Bo>").unwrap(), "bo");
        assert_eq!(
            normalize_name_key("chua-thien-mu").unwrap(),
            "chua-thien-mu"
        );
        for bad in ["", "  ", "a<b", "x,y", "line\nbreak", "<>"] {
            assert!(normalize_name_key(bad).is_err(), "{bad:?}");
        }
    }
}
