//! What every architecture file shares: the checkpoint folder's files ([`HfFolder`]), the
//! errors that name them, the [`HfModel`] trait an architecture implements, and tokenising a
//! text. The architectures import this module only; [`super`] dispatches to them.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rap_core::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// The folder's files.
pub const CONFIG: &str = "config.json";
pub const PREPROCESSOR_CONFIG: &str = "preprocessor_config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";

/// A Hugging Face checkpoint folder.
#[derive(Clone)]
pub struct HfFolder {
    dir: PathBuf,
    /// Weights from elsewhere than `model.safetensors` (benchmarks at real sizes).
    weights: Option<VarBuilder<'static>>,
    /// Where the model runs; `None`: the CPU.
    device: Option<Device>,
}

impl std::fmt::Debug for HfFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfFolder").field("dir", &self.dir).finish()
    }
}

impl HfFolder {
    /// Opens `dir`, which must be a folder with a `config.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Model(format!(
                "{}: not a folder (a Hugging Face checkpoint folder holds {CONFIG}, {WEIGHTS} \
                 and {PREPROCESSOR_CONFIG})",
                dir.display()
            )));
        }
        let folder = HfFolder {
            dir: dir.to_path_buf(),
            weights: None,
            device: None,
        };
        if !folder.path(CONFIG).is_file() {
            return Err(Error::Model(format!(
                "{}: missing (not a Hugging Face checkpoint folder)",
                folder.path(CONFIG).display()
            )));
        }
        Ok(folder)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Uses `weights` instead of the folder's `model.safetensors` (for benchmarks of the real
    /// architectures' sizes with `VarBuilder::zeros`, since their weights cannot be had here).
    pub fn with_weights(mut self, weights: VarBuilder<'static>) -> Self {
        self.weights = Some(weights);
        self
    }

    /// Runs the model on `device` instead of the CPU.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// The device the model runs on: the one given to [`Self::with_device`], else the CPU.
    pub fn device(&self) -> Result<Device> {
        match &self.device {
            Some(d) => Ok(d.clone()),
            None => Ok(Device::Cpu),
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The bytes of one of the folder's files; a missing file is an error naming it.
    pub fn read(&self, file: &str) -> Result<Vec<u8>> {
        let path = self.path(file);
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::Model(format!("{}: missing from the model folder", path.display()))
            }
            _ => Error::io(&path, e),
        })
    }

    /// One of the folder's JSON files, parsed into `T`.
    pub fn json<T: DeserializeOwned>(&self, file: &str) -> Result<T> {
        let bytes = self.read(file)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Model(format!("{}: {e}", self.path(file).display())))
    }

    /// `config.json`'s `model_type`.
    pub fn model_type(&self) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Head {
            model_type: Option<String>,
        }
        let head: Head = self.json(CONFIG)?;
        head.model_type.ok_or_else(|| {
            Error::Model(format!(
                "{}: has no \"model_type\"",
                self.path(CONFIG).display()
            ))
        })
    }

    /// The weights, memory-mapped, as f32 on [`Self::device`]. Tensors are read (and converted
    /// from f16/bf16, and copied to a GPU) when a layer asks for them; a missing tensor or a
    /// shape that disagrees with `config.json` is reported by [`weights_err`].
    pub fn weights(&self) -> Result<VarBuilder<'static>> {
        if let Some(w) = &self.weights {
            return Ok(w.clone());
        }
        let path = self.path(WEIGHTS);
        if !path.is_file() {
            return Err(Error::Model(format!(
                "{}: missing from the model folder (only safetensors weights are read; convert \
                 a pytorch_model.bin with transformers' save_pretrained(safe_serialization=True))",
                path.display()
            )));
        }
        let device = self.device()?;
        // SAFETY: the file is mapped read-only; like every safetensors reader we rely on it not
        // being truncated or rewritten while the model is in use (installed models never are).
        #[allow(unsafe_code)]
        let weights = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &device) };
        weights.map_err(|e| {
            Error::Model(format!(
                "{}: not a readable safetensors file: {e}",
                path.display()
            ))
        })
    }

    /// `tokenizer.json`, for models with a text tower.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        let path = self.path(TOKENIZER);
        if !path.is_file() {
            return Err(Error::Model(format!(
                "{}: missing; the text tower needs the fast tokenizer file (transformers writes \
                 it with AutoTokenizer.from_pretrained(...).save_pretrained(...))",
                path.display()
            )));
        }
        tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::Model(format!("{}: not a usable tokenizer: {e}", path.display())))
    }

    /// The sha256 of the weights (lowercase hex), read through once.
    pub fn weights_sha256(&self) -> Result<String> {
        rap_core::digest::sha256_file(&self.path(WEIGHTS))
    }
}

/// A weight-loading error, with the weight file named.
pub fn weights_err(folder: &HfFolder, e: candle_core::Error) -> Error {
    Error::Model(format!(
        "{}: does not match {}: {e}",
        folder.path(WEIGHTS).display(),
        folder.path(CONFIG).display()
    ))
}

/// A config value outside what the implementation supports, with the file named.
pub fn config_err(folder: &HfFolder, what: impl std::fmt::Display) -> Error {
    Error::Model(format!("{}: {what}", folder.path(CONFIG).display()))
}

/// What one architecture file provides.
pub trait HfModel: Send + Sync {
    /// Image features of a preprocessed batch (N, 3, H, W): (N, D), not normalised.
    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor>;
    /// Whether the model has a text tower in the same embedding space.
    fn has_text(&self) -> bool;
    /// Text features of one text, (D), not normalised; `None` without a text tower.
    fn text_features(&self, text: &str) -> Option<Result<Vec<f32>>>;
    /// The embedding dimension.
    fn dim(&self) -> usize;
    /// The input (width, height) the model was built for, when fixed.
    fn input_size(&self) -> Option<(u32, u32)>;
    /// The device the weights are on (inputs are moved there).
    fn device(&self) -> &Device;
}

/// Token ids of one text with the tokenizer's own special tokens, truncated to `max_len`.
pub fn encode_text(
    tokenizer: &tokenizers::Tokenizer,
    text: &str,
    max_len: usize,
) -> Result<Vec<u32>> {
    let mut tok = tokenizer.clone();
    tok.with_padding(None);
    tok.with_truncation(Some(tokenizers::TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .map_err(|e| Error::Model(format!("tokenizer: {e}")))?;
    let enc = tok
        .encode(text, true)
        .map_err(|e| Error::Model(format!("tokenizer: cannot encode {text:?}: {e}")))?;
    Ok(enc.get_ids().to_vec())
}
