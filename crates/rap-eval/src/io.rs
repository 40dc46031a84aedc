//! Reading predictions files: a JSON array of rows, with errors that name the file and the row.

use rap_core::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// Reads `path` as a JSON array and returns its elements.
pub(crate) fn read_json_array(path: &Path, what: &str) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_json_array(&text, &path.display().to_string(), what)
}

pub(crate) fn parse_json_array(text: &str, source: &str, what: &str) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("{what} file {source} is not valid JSON: {e}")))?;
    match v {
        Value::Array(rows) => Ok(rows),
        other => Err(Error::invalid(format!(
            "{what} file {source} must hold a JSON list, not {}",
            kind(&other)
        ))),
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A row's string field, or an error naming the file, row and field.
pub(crate) fn str_field(row: &Value, field: &str, source: &str, index: usize) -> Result<String> {
    match row.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Err(Error::invalid(format!(
            "{source}: row {index}: missing field `{field}`"
        ))),
        Some(other) => Err(Error::invalid(format!(
            "{source}: row {index}: field `{field}` must be a string, not {}",
            kind(other)
        ))),
    }
}
