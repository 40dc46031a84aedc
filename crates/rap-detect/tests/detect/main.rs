//! rap-detect's integration tests as one test binary (one module per area).

mod golden_centernet;
mod golden_common;
mod golden_owlv2;
mod proposer_owlv2;
