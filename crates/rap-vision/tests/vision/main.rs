//! rap-vision's integration tests as one test binary (one module per area).

mod detector_owlv2;
mod golden_centernet;
mod golden_common;
mod golden_efficientnet;
mod golden_hf;
mod golden_owlv2;
mod torch_legacy;
