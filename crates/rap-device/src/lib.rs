//! Where the models run: the CPU (the default) or an NVIDIA GPU through candle's CUDA backend.
//!
//! One setting for every model `rap` loads (the encoders, the detectors, the local LLMs): the
//! environment variable `RAP_DEVICE` = `cpu` (or unset), `cuda` (the first GPU) or `cuda:N`,
//! read by the application (`rap-app`) and parsed here ([`DeviceChoice`]); the model crates take
//! the opened [`Device`] as a parameter (their plain `load` is the CPU).
//! A GPU needs a build with the `cuda` cargo feature (this crate's, rap-llm-local's, or the
//! `rap` binary's, which turns on both). Asking for one in a CPU-only build, or on a machine
//! where no GPU can be opened, is an error that says so: never a silent fall-back to the CPU.
//!
//! Preprocessing (decoding, resizing, normalising) stays on the CPU; a batch's input tensor
//! moves to the model's device once, and only the results come back.
//!
//! `RAP_DTYPE` (`f32`, `f16`, `bf16`) overrides the weight type of models that choose one by
//! device (LLaVA: f32 on the CPU, f16 on a GPU); the encoders and detectors always run in f32.

#![forbid(unsafe_code)]

use candle_core::{DType, Device};
use rap_core::{Error, Result};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

#[cfg(feature = "testing")]
pub mod testing;

/// The environment variable that picks the device.
pub const DEVICE_ENV: &str = "RAP_DEVICE";
/// The environment variable that overrides the weight type of device-dependent models.
pub const DTYPE_ENV: &str = "RAP_DTYPE";

/// A device choice, as `RAP_DEVICE` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    /// The CUDA GPU of this ordinal.
    Cuda(usize),
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || {
            Error::invalid(format!(
                "{DEVICE_ENV}={s:?}: not a device (cpu, cuda, or cuda:N for the N-th GPU)"
            ))
        };
        match t.as_str() {
            "" | "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => {
                let n = t
                    .strip_prefix("cuda:")
                    .or_else(|| t.strip_prefix("gpu:"))
                    .ok_or_else(bad)?;
                n.parse().map(DeviceChoice::Cuda).map_err(|_| bad())
            }
        }
    }
}

/// Whether this build can run models on a GPU (the `cuda` feature of candle-core is on).
pub fn cuda_compiled() -> bool {
    candle_core::utils::cuda_is_available()
}

impl DeviceChoice {
    /// The candle device. A GPU is opened once per process and shared by every model (candle
    /// tensors on two separately opened handles of one GPU cannot be mixed).
    pub fn open(self) -> Result<Device> {
        let n = match self {
            DeviceChoice::Cpu => return Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => n,
        };
        if !cuda_compiled() {
            return Err(Error::Model(format!(
                "{DEVICE_ENV}={self} asks for an NVIDIA GPU, but this build has no CUDA support: \
                 build with `--features cuda` (needs the CUDA toolkit's nvcc), or unset \
                 {DEVICE_ENV} to run on the CPU"
            )));
        }
        static OPENED: OnceLock<Mutex<HashMap<usize, Device>>> = OnceLock::new();
        let mut opened = OPENED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(d) = opened.get(&n) {
            return Ok(d.clone());
        }
        let device = Device::new_cuda(n).map_err(|e| {
            Error::Model(format!(
                "{DEVICE_ENV}={self}: no CUDA GPU {n} could be opened ({e}); check nvidia-smi, \
                 or unset {DEVICE_ENV} to run on the CPU"
            ))
        })?;
        opened.insert(n, device.clone());
        Ok(device)
    }
}

/// `f32`, `f16` or `bf16` (as `RAP_DTYPE` writes them).
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        _ => Err(Error::invalid(format!(
            "{DTYPE_ENV}={s:?}: not a weight type (f32, f16, bf16)"
        ))),
    }
}

/// A short name of a device for messages and benchmark output: `cpu`, `cuda:0`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_device_forms_and_rejects_others() {
        for (s, want) in [
            ("", DeviceChoice::Cpu),
            ("cpu", DeviceChoice::Cpu),
            (" CPU ", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("gpu", DeviceChoice::Cuda(0)),
            ("cuda:0", DeviceChoice::Cuda(0)),
            ("CUDA:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap(), want, "{s:?}");
        }
        for s in ["metal", "cuda:", "cuda:x", "cuda:-1", "cuda0", "tpu"] {
            let e = s.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(
                e.contains("RAP_DEVICE") && e.contains("cuda:N"),
                "{s:?}: {e}"
            );
        }
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
        assert_eq!(
            "cuda:2".parse::<DeviceChoice>().unwrap().to_string(),
            "cuda:2"
        );
    }

    #[test]
    fn the_cpu_opens_and_a_gpu_needs_the_cuda_build() {
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
        if !cuda_compiled() {
            let e = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
            assert!(
                e.contains("no CUDA support") && e.contains("--features cuda"),
                "{e}"
            );
        } else {
            // A CUDA build: either the GPU opens (the same handle each time) or the error
            // names the GPU that could not be opened.
            match DeviceChoice::Cuda(0).open() {
                Ok(a) => {
                    let b = DeviceChoice::Cuda(0).open().unwrap();
                    assert!(a.same_device(&b));
                }
                Err(e) => assert!(e.to_string().contains("no CUDA GPU 0"), "{e}"),
            }
        }
        // An ordinal no machine has.
        let e = DeviceChoice::Cuda(4096).open().unwrap_err().to_string();
        assert!(e.contains("cuda:4096"), "{e}");
    }

    #[test]
    fn parses_weight_types() {
        assert_eq!(parse_dtype("f32").unwrap(), DType::F32);
        assert_eq!(parse_dtype("BF16").unwrap(), DType::BF16);
        assert_eq!(parse_dtype("float16").unwrap(), DType::F16);
        let e = parse_dtype("int8").unwrap_err().to_string();
        assert!(e.contains("RAP_DTYPE") && e.contains("bf16"), "{e}");
    }
}
