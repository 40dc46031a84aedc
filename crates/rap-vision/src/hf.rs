//! Hugging Face checkpoint folders as [`rap_core::ImageEncoder`]s: the files every such folder
//! has (`config.json`, `preprocessor_config.json`, `model.safetensors`, and `tokenizer.json`
//! where there is a text tower), read as they are, with errors that name the file and what was
//! wrong with it.
//!
//! - [`HfFolder`]: reading the folder's files;
//! - [`HfPreprocess`]: the image processor of `preprocessor_config.json` (resize, centre crop,
//!   rescale, normalise), done as transformers' PIL image processors do it (the resize is
//!   Pillow's, bit for bit: [`crate::pillow`]);
//! - [`HfEncoder`]: an architecture (one file each: [`crate::clip`], [`crate::dinov2`],
//!   [`crate::siglip`]) plus its preprocessing, behind [`rap_core::ImageEncoder`], with text
//!   embeddings where the model has a text tower;
//! - [`load_hf_encoder`]: picks the architecture from `config.json`'s `model_type`.
//!
//! An encoder's id names its embedding space: `hf-{model_type}@{16 hex digits}`, a digest of the
//! weights' sha256, `config.json` and `preprocessor_config.json`, so a memory never compares keys
//! of two different checkpoints (or of one checkpoint preprocessed two ways).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use rap_core::{Embedding, EncoderInfo, Error, ImageEncoder, Result};
use rap_image::Filter;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The folder's files.
pub const CONFIG: &str = "config.json";
pub const PREPROCESSOR_CONFIG: &str = "preprocessor_config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";

/// Largest number of images run through a model at once (bounds memory).
const MAX_BATCH: usize = 16;
/// Longest accepted long-edge : short-edge ratio; a longer image is first cut to it around its
/// centre (a shortest-edge resize of a 1 x 10,000 strip would otherwise be enormous).
const MAX_ASPECT: u32 = 8;

/// A Hugging Face checkpoint folder.
#[derive(Clone)]
pub struct HfFolder {
    dir: PathBuf,
    /// Weights from elsewhere than `model.safetensors` (benchmarks at real sizes).
    weights: Option<VarBuilder<'static>>,
    /// Where the model runs; `None`: the device `RAP_DEVICE` names ([`rap_device`]).
    device: Option<Device>,
}

impl std::fmt::Debug for HfFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfFolder").field("dir", &self.dir).finish()
    }
}

impl HfFolder {
    /// Opens `dir`, which must be a folder with a `config.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Model(format!(
                "{}: not a folder (a Hugging Face checkpoint folder holds {CONFIG}, {WEIGHTS} \
                 and {PREPROCESSOR_CONFIG})",
                dir.display()
            )));
        }
        let folder = HfFolder {
            dir: dir.to_path_buf(),
            weights: None,
            device: None,
        };
        if !folder.path(CONFIG).is_file() {
            return Err(Error::Model(format!(
                "{}: missing (not a Hugging Face checkpoint folder)",
                folder.path(CONFIG).display()
            )));
        }
        Ok(folder)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Uses `weights` instead of the folder's `model.safetensors` (for benchmarks of the real
    /// architectures' sizes with `VarBuilder::zeros`, since their weights cannot be had here).
    pub fn with_weights(mut self, weights: VarBuilder<'static>) -> Self {
        self.weights = Some(weights);
        self
    }

    /// Runs the model on `device` instead of the one `RAP_DEVICE` names.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// The device the model runs on: the one given to [`Self::with_device`], else the one
    /// `RAP_DEVICE` names (the CPU by default; an error if it cannot be opened).
    pub fn device(&self) -> Result<Device> {
        match &self.device {
            Some(d) => Ok(d.clone()),
            None => rap_device::default_device(),
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The bytes of one of the folder's files; a missing file is an error naming it.
    pub fn read(&self, file: &str) -> Result<Vec<u8>> {
        let path = self.path(file);
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::Model(format!("{}: missing from the model folder", path.display()))
            }
            _ => Error::io(&path, e),
        })
    }

    /// One of the folder's JSON files, parsed into `T`.
    pub fn json<T: DeserializeOwned>(&self, file: &str) -> Result<T> {
        let bytes = self.read(file)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Model(format!("{}: {e}", self.path(file).display())))
    }

    /// `config.json`'s `model_type`.
    pub fn model_type(&self) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Head {
            model_type: Option<String>,
        }
        let head: Head = self.json(CONFIG)?;
        head.model_type.ok_or_else(|| {
            Error::Model(format!(
                "{}: has no \"model_type\"",
                self.path(CONFIG).display()
            ))
        })
    }

    /// The weights, memory-mapped, as f32 on [`Self::device`]. Tensors are read (and converted
    /// from f16/bf16, and copied to a GPU) when a layer asks for them; a missing tensor or a
    /// shape that disagrees with `config.json` is reported by [`weights_err`].
    pub fn weights(&self) -> Result<VarBuilder<'static>> {
        if let Some(w) = &self.weights {
            return Ok(w.clone());
        }
        let path = self.path(WEIGHTS);
        if !path.is_file() {
            return Err(Error::Model(format!(
                "{}: missing from the model folder (only safetensors weights are read; convert \
                 a pytorch_model.bin with transformers' save_pretrained(safe_serialization=True))",
                path.display()
            )));
        }
        let device = self.device()?;
        // SAFETY: the file is mapped read-only; like every safetensors reader we rely on it not
        // being truncated or rewritten while the model is in use (installed models never are).
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &device) }.map_err(|e| {
            Error::Model(format!(
                "{}: not a readable safetensors file: {e}",
                path.display()
            ))
        })
    }

    /// `tokenizer.json`, for models with a text tower.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        let path = self.path(TOKENIZER);
        if !path.is_file() {
            return Err(Error::Model(format!(
                "{}: missing; the text tower needs the fast tokenizer file (transformers writes \
                 it with AutoTokenizer.from_pretrained(...).save_pretrained(...))",
                path.display()
            )));
        }
        tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::Model(format!("{}: not a usable tokenizer: {e}", path.display())))
    }

    /// The sha256 of the weights (lowercase hex), read through once.
    pub fn weights_sha256(&self) -> Result<String> {
        rap_core::digest::sha256_file(&self.path(WEIGHTS))
    }
}

/// A weight-loading error, with the weight file named.
pub fn weights_err(folder: &HfFolder, e: candle_core::Error) -> Error {
    Error::Model(format!(
        "{}: does not match {}: {e}",
        folder.path(WEIGHTS).display(),
        folder.path(CONFIG).display()
    ))
}

/// A config value outside what the implementation supports, with the file named.
pub fn config_err(folder: &HfFolder, what: impl std::fmt::Display) -> Error {
    Error::Model(format!("{}: {what}", folder.path(CONFIG).display()))
}

// ---- preprocessing ----

/// How the image is resized before the crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// The shorter edge becomes this, the longer keeps the aspect ratio (truncated).
    ShortestEdge(u32),
    /// Exactly this width and height (aspect ratio not kept).
    Exact { width: u32, height: u32 },
}

/// The image processor of a `preprocessor_config.json`, in transformers' order: convert to
/// RGB, resize, centre crop, rescale, normalise.
#[derive(Debug, Clone, PartialEq)]
pub struct HfPreprocess {
    pub resize: Option<Resize>,
    pub filter: Filter,
    /// (width, height) of the centred window.
    pub crop: Option<(u32, u32)>,
    pub rescale: Option<f32>,
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum SizeField {
    Int(u32),
    Dict {
        shortest_edge: Option<u32>,
        longest_edge: Option<u32>,
        height: Option<u32>,
        width: Option<u32>,
    },
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Triple {
    One(f32),
    Three([f32; 3]),
}

impl Triple {
    fn get(&self) -> [f32; 3] {
        match self {
            Triple::One(v) => [*v; 3],
            Triple::Three(v) => *v,
        }
    }
}

#[derive(serde::Deserialize)]
struct RawPreprocess {
    image_processor_type: Option<String>,
    feature_extractor_type: Option<String>,
    do_resize: Option<bool>,
    size: Option<SizeField>,
    resample: Option<u32>,
    do_center_crop: Option<bool>,
    crop_size: Option<SizeField>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f32>,
    do_normalize: Option<bool>,
    image_mean: Option<Triple>,
    image_std: Option<Triple>,
}

impl HfPreprocess {
    /// Reads `preprocessor_config.json` of a folder.
    pub fn from_folder(folder: &HfFolder) -> Result<Self> {
        let bytes = folder.read(PREPROCESSOR_CONFIG)?;
        Self::from_json(&bytes).map_err(|e| {
            Error::Model(format!(
                "{}: {e}",
                folder.path(PREPROCESSOR_CONFIG).display()
            ))
        })
    }

    /// Parses a `preprocessor_config.json`; the error says what is wrong (without the file name).
    pub fn from_json(bytes: &[u8]) -> std::result::Result<Self, String> {
        let raw: RawPreprocess = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let kind = raw
            .image_processor_type
            .or(raw.feature_extractor_type)
            .unwrap_or_default();
        // A bare integer `size` is a shortest edge for CLIP-style processors (CLIP, BiT, i.e.
        // DINOv2) and a square for the others (SigLIP, ViT), as in transformers.
        let int_is_shortest = kind.contains("CLIP") || kind.contains("Bit");
        let resize =
            if raw.do_resize.unwrap_or(true) {
                match raw.size {
                    None => return Err("\"do_resize\" is on but there is no \"size\"".into()),
                    Some(SizeField::Int(s)) if int_is_shortest => Some(Resize::ShortestEdge(s)),
                    Some(SizeField::Int(s)) => Some(Resize::Exact {
                        width: s,
                        height: s,
                    }),
                    Some(SizeField::Dict {
                        shortest_edge: Some(s),
                        longest_edge: None,
                        ..
                    }) => Some(Resize::ShortestEdge(s)),
                    Some(SizeField::Dict {
                        height: Some(h),
                        width: Some(w),
                        shortest_edge: None,
                        ..
                    }) => Some(Resize::Exact {
                        width: w,
                        height: h,
                    }),
                    Some(_) => return Err(
                        "\"size\" must be {\"shortest_edge\": N} or {\"height\": H, \"width\": W} \
                         (a longest_edge limit is not supported)"
                            .into(),
                    ),
                }
            } else {
                None
            };
        let filter = match raw.resample.unwrap_or(3) {
            0 => Filter::Nearest,
            1 => Filter::Lanczos3,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            r => return Err(format!("\"resample\": {r} is not supported (0, 1, 2 or 3)")),
        };
        let crop = if raw.do_center_crop.unwrap_or(false) {
            match raw.crop_size {
                Some(SizeField::Int(s)) => Some((s, s)),
                Some(SizeField::Dict {
                    height: Some(h),
                    width: Some(w),
                    ..
                }) => Some((w, h)),
                _ => {
                    return Err(
                        "\"do_center_crop\" is on but \"crop_size\" is not N or {\"height\", \"width\"}"
                            .into(),
                    )
                }
            }
        } else {
            None
        };
        let rescale = if raw.do_rescale.unwrap_or(true) {
            Some(raw.rescale_factor.unwrap_or(1.0 / 255.0))
        } else {
            None
        };
        let normalize = if raw.do_normalize.unwrap_or(true) {
            match (raw.image_mean, raw.image_std) {
                (Some(m), Some(s)) => {
                    let (m, s) = (m.get(), s.get());
                    if s.iter().any(|v| *v == 0.0 || !v.is_finite()) {
                        return Err("\"image_std\" must be finite and non-zero".into());
                    }
                    Some((m, s))
                }
                _ => {
                    return Err(
                        "\"do_normalize\" is on but \"image_mean\"/\"image_std\" are missing"
                            .into(),
                    )
                }
            }
        } else {
            None
        };
        for (w, h) in [
            match resize {
                Some(Resize::Exact { width, height }) => (width, height),
                Some(Resize::ShortestEdge(s)) => (s, s),
                None => (1, 1),
            },
            crop.unwrap_or((1, 1)),
        ] {
            if w == 0 || h == 0 || w > 4096 || h > 4096 {
                return Err(format!("a size of {w}x{h} is not usable"));
            }
        }
        Ok(HfPreprocess {
            resize,
            filter,
            crop,
            rescale,
            normalize,
        })
    }

    /// The (width, height) of the model input, when fixed by the config.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        match (self.crop, self.resize) {
            (Some(c), _) => Some(c),
            (None, Some(Resize::Exact { width, height })) => Some((width, height)),
            _ => None,
        }
    }

    /// The geometric part: resize, then centre crop (transformers' offsets: floor of half the
    /// difference). The pixels the model sees, as 8-bit RGB.
    pub fn geometry(&self, img: &RgbImage) -> Result<RgbImage> {
        let mut img = bound_aspect(img);
        match self.resize {
            Some(Resize::ShortestEdge(s)) => {
                let (w, h) = img.dimensions();
                // transformers: int(size * long / short) in floating point.
                let (nw, nh) = if w <= h {
                    (s, ((s as f64 * h as f64 / w as f64) as u32).max(1))
                } else {
                    (((s as f64 * w as f64 / h as f64) as u32).max(1), s)
                };
                img = rap_image::pillow::resize(&img, nw, nh, self.filter)?;
            }
            Some(Resize::Exact { width, height }) => {
                img = rap_image::pillow::resize(&img, width, height, self.filter)?;
            }
            None => {}
        }
        if let Some((cw, ch)) = self.crop {
            img = center_crop_floor(&img, cw, ch);
        }
        Ok(img)
    }

    /// The whole preprocessing: planar (CHW) f32 data and its (width, height).
    pub fn tensor_data(&self, img: &RgbImage) -> Result<(Vec<f32>, (u32, u32))> {
        let px = self.geometry(img)?;
        let n = px.width() as usize * px.height() as usize;
        let mut out = vec![0f32; 3 * n];
        let rescale = self.rescale.unwrap_or(1.0);
        let (mean, std) = self.normalize.unwrap_or(([0.0; 3], [1.0; 3]));
        for (i, p) in px.pixels().enumerate() {
            for c in 0..3 {
                out[c * n + i] = (p.0[c] as f32 * rescale - mean[c]) / std[c];
            }
        }
        Ok((out, px.dimensions()))
    }

    /// A batch as an (N, 3, H, W) tensor on the CPU (the encoder moves it to its device);
    /// every image must come out the same size.
    pub fn batch(&self, images: &[RgbImage]) -> Result<Tensor> {
        let mut data = Vec::new();
        let mut size = None;
        for img in images {
            let (d, s) = self.tensor_data(img)?;
            if size.is_some_and(|x| x != s) {
                return Err(Error::Model(
                    "the preprocessing gives images of different sizes (no crop or fixed size \
                     in preprocessor_config.json); embed them one at a time"
                        .into(),
                ));
            }
            size = Some(s);
            data.extend(d);
        }
        let (w, h) = size.unwrap_or((0, 0));
        Tensor::from_vec(
            data,
            (images.len(), 3, h as usize, w as usize),
            &Device::Cpu,
        )
        .map_err(|e| Error::Model(format!("input tensor: {e}")))
    }
}

/// Cuts a very elongated image to [`MAX_ASPECT`] around its centre.
fn bound_aspect(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    if w > h.saturating_mul(MAX_ASPECT) {
        center_crop_floor(img, h * MAX_ASPECT, h)
    } else if h > w.saturating_mul(MAX_ASPECT) {
        center_crop_floor(img, w, w * MAX_ASPECT)
    } else {
        img.clone()
    }
}

/// transformers' `center_crop`: top = (H - h) // 2, left = (W - w) // 2; a window larger than
/// the image is padded with black, centred the same way.
fn center_crop_floor(img: &RgbImage, cw: u32, ch: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if cw <= w && ch <= h {
        let (left, top) = ((w - cw) / 2, (h - ch) / 2);
        return image::imageops::crop_imm(img, left, top, cw, ch).to_image();
    }
    let mut out = RgbImage::new(cw, ch);
    let top = (ch as i64 - h as i64) / 2;
    let left = (cw as i64 - w as i64) / 2;
    image::imageops::replace(&mut out, img, left, top);
    out
}

// ---- the encoder ----

/// What one architecture file provides.
pub trait HfModel: Send + Sync {
    /// Image features of a preprocessed batch (N, 3, H, W): (N, D), not normalised.
    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor>;
    /// Whether the model has a text tower in the same embedding space.
    fn has_text(&self) -> bool;
    /// Text features of one text, (D), not normalised; `None` without a text tower.
    fn text_features(&self, text: &str) -> Option<Result<Vec<f32>>>;
    /// The embedding dimension.
    fn dim(&self) -> usize;
    /// The input (width, height) the model was built for, when fixed.
    fn input_size(&self) -> Option<(u32, u32)>;
    /// The device the weights are on (inputs are moved there).
    fn device(&self) -> &Device;
}

/// A Hugging Face checkpoint as an [`ImageEncoder`].
pub struct HfEncoder {
    info: EncoderInfo,
    model_type: String,
    preprocess: HfPreprocess,
    model: Box<dyn HfModel>,
    dir: PathBuf,
}

impl std::fmt::Debug for HfEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfEncoder")
            .field("info", &self.info)
            .field("dir", &self.dir)
            .finish()
    }
}

/// The encoder id of a folder: `hf-{model_type}@{16 hex}` over the weights' sha256 and the two
/// configs' bytes.
pub fn encoder_id(folder: &HfFolder, model_type: &str, weights_sha256: &str) -> Result<String> {
    let mut h = Sha256::new();
    h.update(weights_sha256.as_bytes());
    h.update(b"\0");
    h.update(folder.read(CONFIG)?);
    h.update(b"\0");
    h.update(folder.read(PREPROCESSOR_CONFIG)?);
    Ok(format!(
        "hf-{model_type}@{}",
        &hex::encode(h.finalize())[..16]
    ))
}

/// Loads any supported checkpoint folder (CLIP, DINOv2, SigLIP, by `config.json`'s
/// `model_type`). `weights_sha256` is the weights' digest when already known (an installed
/// model's manifest); otherwise the file is hashed.
pub fn load_hf_encoder(dir: &Path, weights_sha256: Option<&str>) -> Result<HfEncoder> {
    load_hf_folder(HfFolder::open(dir)?, weights_sha256)
}

/// [`load_hf_encoder`] on an opened folder.
pub fn load_hf_folder(folder: HfFolder, weights_sha256: Option<&str>) -> Result<HfEncoder> {
    // The device is resolved once, so every part of the model lands on the same one.
    let device = folder.device()?;
    let folder = folder.with_device(device);
    let dir = folder.dir().to_path_buf();
    let model_type = folder.model_type()?;
    let preprocess = HfPreprocess::from_folder(&folder)?;
    let model: Box<dyn HfModel> = match model_type.as_str() {
        "clip" | "clip_vision_model" => Box::new(crate::clip::Clip::load(&folder)?),
        "dinov2" => Box::new(crate::dinov2::Dinov2::load(&folder)?),
        "siglip" | "siglip_vision_model" => Box::new(crate::siglip::Siglip::load(&folder)?),
        other => {
            return Err(config_err(
                &folder,
                format!(
                    "model_type \"{other}\" is not a supported encoder (clip, \
                     clip_vision_model, dinov2, siglip, siglip_vision_model)"
                ),
            ))
        }
    };
    if let (Some(want), Some(got)) = (model.input_size(), preprocess.output_size()) {
        if want != got {
            return Err(Error::Model(format!(
                "{}: gives {}x{} images but {} is built for {}x{}",
                folder.path(PREPROCESSOR_CONFIG).display(),
                got.0,
                got.1,
                folder.path(CONFIG).display(),
                want.0,
                want.1
            )));
        }
    }
    // Hashed last, so a broken folder is refused before gigabytes are read.
    let sha = match weights_sha256 {
        Some(s) => s.to_string(),
        None => folder.weights_sha256()?,
    };
    let id = encoder_id(&folder, &model_type, &sha)?;
    Ok(HfEncoder {
        info: EncoderInfo {
            id,
            dim: model.dim(),
        },
        model_type,
        preprocess,
        model,
        dir,
    })
}

impl HfEncoder {
    pub fn model_type(&self) -> &str {
        &self.model_type
    }

    pub fn preprocess(&self) -> &HfPreprocess {
        &self.preprocess
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        self.model.device()
    }

    /// Image features (not normalised) of an already preprocessed batch (N, 3, H, W), on any
    /// device (moved to the model's once).
    pub fn image_features(&self, pixels: &Tensor) -> Result<Vec<Vec<f32>>> {
        pixels
            .to_device(self.model.device())
            .and_then(|p| self.model.image_features(&p))
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(|e| Error::Model(format!("{}: forward: {e}", self.info.id)))
    }

    /// Text features (not normalised) of one text.
    pub fn text_features(&self, text: &str) -> Result<Vec<f32>> {
        self.model.text_features(text).unwrap_or_else(|| {
            Err(Error::Model(format!(
                "{} ({}) has no text tower: search by words needs a CLIP or SigLIP model",
                self.info.id, self.model_type
            )))
        })
    }
}

impl ImageEncoder for HfEncoder {
    fn info(&self) -> &EncoderInfo {
        &self.info
    }

    fn embed(&self, images: &[RgbImage]) -> Result<Vec<Embedding>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(MAX_BATCH) {
            let input = self.preprocess.batch(chunk)?;
            for row in self.image_features(&input)? {
                out.push(Embedding::normalized(row)?);
            }
        }
        Ok(out)
    }

    fn has_text(&self) -> bool {
        self.model.has_text()
    }

    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        texts
            .iter()
            .map(|t| Embedding::normalized(self.text_features(t)?))
            .collect()
    }
}

/// Token ids of one text with the tokenizer's own special tokens, truncated to `max_len`.
pub fn encode_text(
    tokenizer: &tokenizers::Tokenizer,
    text: &str,
    max_len: usize,
) -> Result<Vec<u32>> {
    let mut tok = tokenizer.clone();
    tok.with_padding(None);
    tok.with_truncation(Some(tokenizers::TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .map_err(|e| Error::Model(format!("tokenizer: {e}")))?;
    let enc = tok
        .encode(text, true)
        .map_err(|e| Error::Model(format!("tokenizer: cannot encode {text:?}: {e}")))?;
    Ok(enc.get_ids().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_preprocessor_configs_of_the_real_checkpoints() {
        // openai/clip-vit-base-patch32 (the old integer form).
        let clip = br#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true,
            "do_resize": true, "feature_extractor_type": "CLIPFeatureExtractor",
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#;
        let p = HfPreprocess::from_json(clip).unwrap();
        assert_eq!(p.resize, Some(Resize::ShortestEdge(224)));
        assert_eq!(p.crop, Some((224, 224)));
        assert_eq!(p.filter, Filter::Bicubic);
        assert!((p.rescale.unwrap() - 1.0 / 255.0).abs() < 1e-9);
        // google/siglip-base-patch16-224.
        let siglip = br#"{"do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
            "image_std": [0.5, 0.5, 0.5], "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"height": 224, "width": 224}}"#;
        let p = HfPreprocess::from_json(siglip).unwrap();
        assert_eq!(
            p.resize,
            Some(Resize::Exact {
                width: 224,
                height: 224
            })
        );
        assert_eq!(p.crop, None);
        assert_eq!(p.output_size(), Some((224, 224)));
        let img = RgbImage::from_pixel(300, 100, image::Rgb([255, 0, 128]));
        let (data, size) = p.tensor_data(&img).unwrap();
        assert_eq!(size, (224, 224));
        assert!((data[0] - 1.0).abs() < 1e-6 && (data[224 * 224] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn bad_preprocessor_configs_say_what_is_wrong() {
        for (json, want) in [
            (
                &br#"{"size": {"shortest_edge": 224, "longest_edge": 1333}}"#[..],
                "longest_edge",
            ),
            (br#"{"do_resize": true}"#, "no \"size\""),
            (br#"{"size": 224, "resample": 9}"#, "resample"),
            (br#"{"size": 224, "do_center_crop": true}"#, "crop_size"),
            (
                br#"{"size": 224, "image_mean": [0.5,0.5,0.5]}"#,
                "image_std",
            ),
            (
                br#"{"size": 0, "image_mean": 0.5, "image_std": 0.5}"#,
                "0x0",
            ),
            (br#"not json"#, "expected"),
        ] {
            let err = HfPreprocess::from_json(json).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn center_crop_uses_floor_offsets() {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = center_crop_floor(&img, 2, 1);
        // left = (5 - 2) // 2 = 1, top = (4 - 1) // 2 = 1
        assert_eq!(c.get_pixel(0, 0).0, [1, 1, 0]);
        let long = RgbImage::new(1000, 10);
        assert_eq!(bound_aspect(&long).dimensions(), (80, 10));
    }

    #[test]
    fn folder_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = HfFolder::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("missing"),
            "{err}"
        );
        std::fs::write(dir.path().join(CONFIG), b"{\"model_type\": \"bert\"}").unwrap();
        std::fs::write(
            dir.path().join(PREPROCESSOR_CONFIG),
            br#"{"size": 8, "image_mean": 0.5, "image_std": 0.5}"#,
        )
        .unwrap();
        let err = load_hf_encoder(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("bert") && err.contains("config.json"), "{err}");
        std::fs::write(dir.path().join(CONFIG), b"{\"model_type\": \"dinov2\"").unwrap();
        let err = load_hf_encoder(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("EOF"), "{err}");
        let folder = HfFolder::open(dir.path()).unwrap();
        let err = folder.weights().err().unwrap().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("missing"),
            "{err}"
        );
        std::fs::write(dir.path().join(WEIGHTS), b"garbage").unwrap();
        let err = folder.weights().err().unwrap().to_string();
        assert!(err.contains("not a readable safetensors"), "{err}");
        let err = folder.tokenizer().unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
    }
}
