//! Hugging Face checkpoint folders as [`rap_core::ImageEncoder`]s: the files every such folder
//! has (`config.json`, `preprocessor_config.json`, `model.safetensors`, and `tokenizer.json`
//! where there is a text tower), read as they are, with errors that name the file and what was
//! wrong with it.
//!
//! - [`folder`]: reading the folder's files ([`HfFolder`]), and what the architectures share
//!   (the [`HfModel`] trait, errors naming the files, tokenising);
//! - [`preprocess`]: [`HfPreprocess`], the image processor of `preprocessor_config.json`;
//! - one file per architecture, each importing only [`folder`]: [`clip`] (image and text),
//!   [`dinov2`] (image), [`siglip`] (image and text);
//! - here: [`HfEncoder`], an architecture plus its preprocessing behind
//!   [`rap_core::ImageEncoder`] (text embeddings where the model has a text tower), and
//!   [`load_hf_encoder`], which picks the architecture from `config.json`'s `model_type`.
//!
//! An encoder's id names its embedding space: `hf-{model_type}@{16 hex digits}`, a digest of the
//! weights' sha256, `config.json` and `preprocessor_config.json`, so a memory never compares keys
//! of two different checkpoints (or of one checkpoint preprocessed two ways).

pub mod clip;
pub mod dinov2;
pub mod folder;
pub mod preprocess;
pub mod siglip;

pub use folder::{
    config_err, encode_text, weights_err, HfFolder, HfModel, CONFIG, PREPROCESSOR_CONFIG,
    TOKENIZER, WEIGHTS,
};
pub use preprocess::{HfPreprocess, Resize};

use candle_core::{Device, Tensor};
use image::RgbImage;
use rap_core::{Embedding, EncoderInfo, Error, ImageEncoder, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Largest number of images run through a model at once (bounds memory).
const MAX_BATCH: usize = 16;

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
        "clip" | "clip_vision_model" => Box::new(clip::Clip::load(&folder)?),
        "dinov2" => Box::new(dinov2::Dinov2::load(&folder)?),
        "siglip" | "siglip_vision_model" => Box::new(siglip::Siglip::load(&folder)?),
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

    /// The resize target (the shorter edge, or the larger side of an exact size): the
    /// processor shrinks anything larger to it. Unknown without a resize.
    fn pixels_needed(&self) -> Option<u32> {
        match self.preprocess.resize? {
            Resize::ShortestEdge(s) => Some(s),
            Resize::Exact { width, height } => Some(width.max(height)),
        }
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

/// `linear` applied to the last dimension of `x` (any rank) as one 2-D matrix product over
/// all the rows. candle's `Linear` runs a 3-D input as one product per batch item, each
/// packing the weight again and splitting a small product among the threads: at batch 8 that
/// made a batch cost as much per image as one image alone.
pub(crate) fn linear_rows(linear: &candle_nn::Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::Module;
    let dims = x.dims();
    if dims.len() <= 2 {
        return linear.forward(x);
    }
    let last = dims[dims.len() - 1];
    let y = linear.forward(&x.reshape((x.elem_count() / last.max(1), last))?)?;
    let mut shape = dims.to_vec();
    shape[dims.len() - 1] = y.dim(1)?;
    y.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::preprocess::{bound_aspect, center_crop_floor};
    use super::*;
    use rap_image::Filter;

    /// One 2-D product over all rows gives what candle's per-batch products give, for 2-D,
    /// 3-D and 4-D inputs, with and without a bias.
    #[test]
    fn linear_rows_matches_linear() {
        use candle_core::Module;
        let dev = Device::Cpu;
        let vals = |n: usize, seed: u64| crate::kernels::test_values(n, seed);
        let w = Tensor::from_vec(vals(5 * 7, 1), (5, 7), &dev).unwrap();
        let b = Tensor::from_vec(vals(5, 2), 5, &dev).unwrap();
        for linear in [
            candle_nn::Linear::new(w.clone(), Some(b)),
            candle_nn::Linear::new(w, None),
        ] {
            for shape in [vec![3, 7], vec![2, 3, 7], vec![2, 2, 3, 7]] {
                let n = shape.iter().product();
                let x = Tensor::from_vec(vals(n, 3), shape.clone(), &dev).unwrap();
                let want = linear.forward(&x).unwrap();
                let got = linear_rows(&linear, &x).unwrap();
                assert_eq!(got.dims(), want.dims());
                let diff = (got - want)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-5, "{shape:?}: {diff}");
            }
        }
    }

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
