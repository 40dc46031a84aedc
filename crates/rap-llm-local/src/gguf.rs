//! Reading a GGUF file's header: metadata and tensor directory, with errors that name the file.
//!
//! candle's reader already bounds every length it reads; on top of that this module turns the
//! few arithmetic panics a crafted header could still cause (a zero alignment, say) into errors,
//! and offers typed look-ups of metadata keys.

use candle_core::quantized::gguf_file::{Content, Value};
use rap_core::{Error, Result};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// An open GGUF file: its parsed header and a reader positioned anywhere.
pub struct GgufFile {
    pub(crate) path: PathBuf,
    pub(crate) content: Content,
    pub(crate) reader: BufReader<File>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("metadata_keys", &self.content.metadata.len())
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

/// Runs `f`, turning a panic inside third-party parsing or model-building code into an error.
pub(crate) fn no_panic<T>(
    what: impl FnOnce() -> String,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Error::Model(format!("{}: {msg}", what())))
        }
    }
}

impl GgufFile {
    /// Opens `path` and reads its header (metadata and tensor directory, not the weights).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut reader = BufReader::new(file);
        let content = no_panic(
            || format!("{}: corrupt GGUF header", path.display()),
            || {
                Content::read(&mut reader).map_err(|e| {
                    Error::Model(format!("{}: not a readable GGUF file: {e}", path.display()))
                })
            },
        )?;
        Ok(GgufFile {
            path,
            content,
            reader,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `general.architecture` (e.g. `llama`, `qwen2`, `gemma3`).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// The raw metadata value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn bad(&self, key: &str, what: &str) -> Error {
        Error::Model(format!("{}: metadata `{key}` {what}", self.path.display()))
    }

    /// A string value; an error names the file and key when missing or of another type.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.bad(key, "is not a string")),
            None => Err(self.bad(key, "is missing")),
        }
    }

    /// An optional string value (an error only when present with another type).
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.get_str(key).map(Some),
        }
    }

    /// An integer value of any width, as u64 (negative values are an error).
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        let v = match self.get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let n: Option<u64> = match v {
            Value::U8(x) => Some(*x as u64),
            Value::U16(x) => Some(*x as u64),
            Value::U32(x) => Some(*x as u64),
            Value::U64(x) => Some(*x),
            Value::I8(x) => u64::try_from(*x).ok(),
            Value::I16(x) => u64::try_from(*x).ok(),
            Value::I32(x) => u64::try_from(*x).ok(),
            Value::I64(x) => u64::try_from(*x).ok(),
            _ => None,
        };
        n.map(Some)
            .ok_or_else(|| self.bad(key, "is not a non-negative integer"))
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(key, "is not a boolean")),
        }
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        match self.get(key) {
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(self.bad(key, "is not an array")),
            None => Err(self.bad(key, "is missing")),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(self.bad(key, &format!("has a non-string element at index {i}"))),
            })
            .collect()
    }

    /// An array of numbers, as f32 (for `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.get_array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                _ => Err(self.bad(key, &format!("has a non-float element at index {i}"))),
            })
            .collect()
    }

    /// An array of integers, as i64 (for `tokenizer.ggml.token_type`).
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>> {
        self.get_array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::I8(x) => Ok(*x as i64),
                Value::I16(x) => Ok(*x as i64),
                Value::I32(x) => Ok(*x as i64),
                Value::I64(x) => Ok(*x),
                Value::U8(x) => Ok(*x as i64),
                Value::U16(x) => Ok(*x as i64),
                Value::U32(x) => Ok(*x as i64),
                _ => Err(self.bad(key, &format!("has a non-integer element at index {i}"))),
            })
            .collect()
    }

    /// How many weights the file stores in each GGML type (`Q4_1`, `Q8_0`, `F32`...).
    pub fn weights_by_type(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for info in self.content.tensor_infos.values() {
            // A corrupt header's shape may not fit a u64: counted as the most it can hold.
            let elems = info
                .shape
                .dims()
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .unwrap_or(u64::MAX);
            let count: &mut u64 = out.entry(format!("{:?}", info.ggml_dtype)).or_default();
            *count = count.saturating_add(elems);
        }
        out
    }

    /// Checks that every tensor's data lies inside the file, so that a truncated download is
    /// reported as such before any weight is read.
    pub fn check_tensor_extents(&self) -> Result<()> {
        let size = self
            .reader
            .get_ref()
            .metadata()
            .map_err(|e| Error::io(&self.path, e))?
            .len();
        for (name, info) in &self.content.tensor_infos {
            let dims = info.shape.dims();
            let elems = dims
                .iter()
                .try_fold(1usize, |acc, d| acc.checked_mul(*d))
                .ok_or_else(|| {
                    Error::Model(format!(
                        "{}: tensor `{name}` has an impossible shape {dims:?}",
                        self.path.display()
                    ))
                })?;
            let block = info.ggml_dtype.block_size();
            if block == 0 || elems % block != 0 {
                return Err(Error::Model(format!(
                    "{}: tensor `{name}` has {elems} elements, not a multiple of its block size {block}",
                    self.path.display()
                )));
            }
            let end = ((elems / block) as u64)
                .checked_mul(info.ggml_dtype.type_size() as u64)
                .and_then(|bytes| {
                    self.content
                        .tensor_data_offset
                        .checked_add(info.offset)?
                        .checked_add(bytes)
                });
            match end {
                Some(end) if end <= size => {}
                _ => {
                    return Err(Error::Model(format!(
                        "{}: tensor `{name}` ends past the end of the file ({size} bytes): the file is truncated or corrupt",
                        self.path.display()
                    )))
                }
            }
        }
        Ok(())
    }
}
