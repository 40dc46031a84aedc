//! Image -> regions for `rap`: the detectors whose boxes join the regions retrieval embeds.
//!
//! - [`tfjs`]: TF.js graph models (`model.json` + weight shards) run by a small graph
//!   interpreter on candle;
//! - [`centernet`]: the COCO object detector (CenterNet, MobileNetV3) on it, with its real
//!   weights;
//! - [`owlv2`]: the open-vocabulary detector (OWLv2, Hugging Face folders): boxes for text
//!   queries;
//! - [`detector`]: both as retrieval region proposers ([`rap_core::RegionProposer`]), loaded at
//!   their first use.
//!
//! Every loader takes a folder and a device; which folder a name means is decided by the
//! models directory (`rap-models`) in the application.

#![forbid(unsafe_code)]

pub mod centernet;
pub mod detector;
pub mod owlv2;
pub mod tfjs;

pub use centernet::CenterNet;
pub use detector::{centernet_proposer, owlv2_proposer, DetectorSettings, Owlv2Proposer};
pub use owlv2::Owlv2;
