//! The default image encoder: EfficientNet-Lite0 with its real ImageNet weights, behind
//! [`rap_core::ImageEncoder`]. Embeddings are the L2-normalised pooled 1280-d features of the
//! last feature map (average pooling by default; GeM on request); boxes of an image can be
//! embedded directly, and the ImageNet classifier is exposed to check the weights.

use crate::efficientnet_lite::{self, pool, EfficientNetLite0, Pooling, FEATURE_DIM};
use crate::torch_legacy::read_legacy_pth;
use candle_core::{Device, Tensor};
use candle_nn::ops::softmax_last_dim;
use image::RgbImage;
use rap_core::{BoundingBox, Embedding, EncoderInfo, Error, ImageEncoder, Result};
use rap_image::{Filter, Fit, Preprocess};
use rayon::prelude::*;
use std::path::Path;

/// Largest number of images run through the network at once (bounds memory).
const MAX_BATCH: usize = 16;

/// The preprocessing EfficientNet-Lite0 was trained with: RGB in [0, 1], `(x - 0.5) / 0.5`,
/// 224 x 224 by a bilinear resize of the shorter edge and a centre crop.
pub const EFFICIENTNET_LITE0_PREPROCESS: Preprocess = Preprocess {
    size: 224,
    fit: Fit::ShortestEdgeCenterCrop,
    filter: Filter::Bilinear,
    mean: [0.5; 3],
    std: [0.5; 3],
};

fn model_err(what: &str, e: candle_core::Error) -> Error {
    Error::Model(format!("efficientnet-lite0: {what}: {e}"))
}

/// EfficientNet-Lite0 as an [`ImageEncoder`].
pub struct EfficientNetLite0Encoder {
    model: EfficientNetLite0,
    info: EncoderInfo,
    pooling: Pooling,
    preprocess: Preprocess,
    device: Device,
}

impl EfficientNetLite0Encoder {
    /// The embedding space id with average pooling.
    pub const ID: &'static str = "efficientnet-lite0@1";

    /// Loads the weights from a legacy torch checkpoint (`efficientnet-lite0-57934424.pth`)
    /// onto the CPU.
    pub fn load(weights: &Path) -> Result<Self> {
        Self::load_on(weights, &Device::Cpu)
    }

    /// [`Self::load`] onto `device`.
    pub fn load_on(weights: &Path, device: &Device) -> Result<Self> {
        let tensors = read_legacy_pth(weights)?;
        let model = efficientnet_lite::from_tensors_on(tensors, device).map_err(|e| {
            Error::Model(format!(
                "{}: not EfficientNet-Lite0 weights: {e}",
                weights.display()
            ))
        })?;
        Ok(EfficientNetLite0Encoder {
            model,
            info: EncoderInfo {
                id: Self::ID.to_string(),
                dim: FEATURE_DIM,
            },
            pooling: Pooling::Average,
            preprocess: EFFICIENTNET_LITE0_PREPROCESS,
            device: device.clone(),
        })
    }

    /// Uses another pooling; the encoder id changes with it (`efficientnet-lite0-gem3@1` for
    /// GeM with p = 3), since the embeddings are not comparable.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self.info.id = match pooling {
            Pooling::Average => Self::ID.to_string(),
            Pooling::Gem { p } => format!("efficientnet-lite0-gem{p}@1"),
        };
        self
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// The device the network runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The network input for a batch: (N, 3, 224, 224), on the CPU (preprocessing runs there).
    pub fn input_tensor(&self, images: &[RgbImage]) -> Result<Tensor> {
        self.batch_input(images, |img| self.preprocess.tensor_data(img))
    }

    /// The network input for boxes of one image: each box resized straight from `image`
    /// ([`Preprocess::square_in_box`]: the same pixels as cutting it out first, without the
    /// copy).
    pub fn box_input_tensor(&self, image: &RgbImage, boxes: &[BoundingBox]) -> Result<Tensor> {
        self.batch_input(boxes, |b| self.preprocess.tensor_data_in_box(image, b))
    }

    /// (N, 3, size, size) from one preprocessed item each.
    fn batch_input<T: Sync>(
        &self,
        items: &[T],
        one: impl Fn(&T) -> Result<Vec<f32>> + Send + Sync,
    ) -> Result<Tensor> {
        let size = self.preprocess.size as usize;
        // The items of a batch are preprocessed in parallel (a single one is not worth it).
        let per_item = items
            .par_iter()
            .with_min_len(1)
            .map(one)
            .collect::<Result<Vec<_>>>()?;
        let mut data = Vec::with_capacity(items.len() * 3 * size * size);
        for d in per_item {
            data.extend(d);
        }
        Tensor::from_vec(data, (items.len(), 3, size, size), &Device::Cpu)
            .map_err(|e| model_err("input", e))
    }

    /// Pooled, not normalised features (N, 1280) of a prepared input (on any device: moved to
    /// the network's once), with `pooling`; on the network's device.
    pub fn pooled_features(&self, input: &Tensor, pooling: Pooling) -> Result<Tensor> {
        let input = input
            .to_device(&self.device)
            .map_err(|e| model_err("input", e))?;
        let fmap = self
            .model
            .forward_features(&input)
            .map_err(|e| model_err("forward", e))?;
        pool(&fmap, pooling).map_err(|e| model_err("pooling", e))
    }

    /// Embeddings of images with an explicit pooling (for comparing poolings).
    pub fn embed_with(&self, images: &[RgbImage], pooling: Pooling) -> Result<Vec<Embedding>> {
        self.embed_batches(images, pooling, |chunk| self.input_tensor(chunk))
    }

    /// Embeddings of boxes of one image, each as if cut out and embedded as a whole image
    /// (the same pixels reach the network), resized straight from `image`, all in batches of
    /// up to 16.
    pub fn embed_boxes(&self, image: &RgbImage, boxes: &[BoundingBox]) -> Result<Vec<Embedding>> {
        self.embed_batches(boxes, self.pooling, |chunk| {
            self.box_input_tensor(image, chunk)
        })
    }

    fn embed_batches<T>(
        &self,
        items: &[T],
        pooling: Pooling,
        input: impl Fn(&[T]) -> Result<Tensor>,
    ) -> Result<Vec<Embedding>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_BATCH) {
            let pooled = self.pooled_features(&input(chunk)?, pooling)?;
            let rows: Vec<Vec<f32>> = pooled.to_vec2().map_err(|e| model_err("output", e))?;
            for r in rows {
                out.push(Embedding::normalized(r)?);
            }
        }
        Ok(out)
    }

    /// ImageNet-1k class probabilities of each image, the `k` best as (class index, probability),
    /// best first. Index 967 is "espresso".
    pub fn classify(&self, images: &[RgbImage], k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(MAX_BATCH) {
            let input = self.input_tensor(chunk)?;
            let pooled = self.pooled_features(&input, Pooling::Average)?;
            let probs = self
                .model
                .classify(&pooled)
                .and_then(|l| softmax_last_dim(&l))
                .and_then(|p| p.to_vec2::<f32>())
                .map_err(|e| model_err("classifier", e))?;
            for p in probs {
                let mut idx: Vec<(usize, f32)> = p.into_iter().enumerate().collect();
                idx.sort_by(|a, b| b.1.total_cmp(&a.1));
                idx.truncate(k);
                out.push(idx);
            }
        }
        Ok(out)
    }
}

impl ImageEncoder for EfficientNetLite0Encoder {
    fn info(&self) -> &EncoderInfo {
        &self.info
    }

    fn embed(&self, images: &[RgbImage]) -> Result<Vec<Embedding>> {
        self.embed_with(images, self.pooling)
    }

    fn embed_regions(&self, image: &RgbImage, boxes: &[BoundingBox]) -> Result<Vec<Embedding>> {
        self.embed_boxes(image, boxes)
    }

    /// Every fit shrinks an image whose shorter side is the input size (224) or more: more
    /// pixels than that are never used.
    fn pixels_needed(&self) -> Option<u32> {
        Some(self.preprocess.size)
    }
}
