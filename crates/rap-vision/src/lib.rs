//! Image -> embedding for `rap`: the image encoders that turn images (or boxes of them) into
//! the embeddings the memory is keyed by. They load from paths (the models directory,
//! `rap-models`, says which) and run on the device they are given (`rap-device`).
//!
//! - [`encoder`]: [`EfficientNetLite0Encoder`], the default encoder, an
//!   [`rap_core::ImageEncoder`] over the real ImageNet weights;
//! - [`efficientnet_lite`]: the network itself, with the checkpoint's weight names: on the
//!   CPU on [`kernels`] (NHWC depthwise and 1x1 convolutions, SIMD chosen at run time), on
//!   other devices in candle;
//! - [`torch_legacy`]: a reader for PyTorch's legacy (non-zip) `.pth` format, which those
//!   weights use;
//! - [`hf`]: Hugging Face checkpoint folders (config.json, preprocessor_config.json,
//!   model.safetensors, tokenizer.json) as encoders, [`load_hf_encoder`], with the dispatch
//!   on `model_type` in that one module; one file per architecture under it: [`clip`] (image
//!   and text), [`dinov2`] (image), [`siglip`] (image and text); [`reference`]: the catalogued
//!   architectures at their published sizes with zero weights, for benchmarks.
//!
//! Image decoding and preprocessing (Pillow's resize included) live in `rap-image`.
//!
//! Speed: the network's hot loops (and the generic resize code instantiated from `rap-image`)
//! are compiled with this crate's optimisation level. The workspace's dev profile optimises
//! dependencies only, so a dev build runs the encoder about 5x slower than an optimised one;
//! `[profile.dev.package.rap-vision] opt-level = 3` (and the same for `rap-image`) fixes that.

// Unsafe only where marked `#[allow(unsafe_code)]`, each block with a `// SAFETY:` note.
#![deny(unsafe_code)]

pub mod efficientnet_lite;
pub mod encoder;
pub mod hf;
// SIMD intrinsics and raw pointers into the tiles; each block has its `// SAFETY:` note.
#[allow(unsafe_code)]
pub mod kernels;
pub use hf::{clip, dinov2, siglip};
pub mod reference;
pub mod torch_legacy;

pub use efficientnet_lite::Pooling;
pub use encoder::{
    reference_regions, EfficientNetLite0Encoder, EFFICIENTNET_LITE0_PREPROCESS, REFERENCE_CROPS,
};
pub use hf::{load_hf_encoder, load_hf_folder, HfEncoder, HfFolder, HfPreprocess};
