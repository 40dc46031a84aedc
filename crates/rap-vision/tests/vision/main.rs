//! rap-vision's integration tests as one test binary (one module per area).

mod golden_common;
mod golden_efficientnet;
mod golden_hf;
mod torch_legacy;
