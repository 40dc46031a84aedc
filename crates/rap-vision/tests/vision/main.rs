//! rap-vision's integration tests as one test binary (one module per area).

mod golden_common;
mod golden_centernet;
mod detector_owlv2;
mod golden_efficientnet;
mod golden_hf;
mod golden_owlv2;
mod torch_legacy;
