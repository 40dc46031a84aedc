//! The device for the model crates' own tests (feature `testing`): `RAP_DEVICE`'s, so that
//! `scripts/gpu-check.sh` runs their golden tests on a GPU. Test support only; the product
//! reads the variable in `rap-app`.

use crate::DeviceChoice;
use candle_core::{DType, Device};

/// The device `RAP_DEVICE` names (the CPU when unset); panics with the reason when it cannot
/// be opened (a test cannot go on without it).
pub fn device() -> Device {
    let choice: DeviceChoice = std::env::var(crate::DEVICE_ENV)
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    choice.open().unwrap_or_else(|e| panic!("{e}"))
}

/// `RAP_DTYPE`'s weight type when set (LLaVA's golden test runs in f32 on a GPU too).
pub fn dtype() -> Option<DType> {
    let v = std::env::var(crate::DTYPE_ENV).ok()?;
    (!v.trim().is_empty()).then(|| crate::parse_dtype(&v).unwrap_or_else(|e| panic!("{e}")))
}
