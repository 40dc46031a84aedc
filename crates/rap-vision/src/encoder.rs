//! The default image encoder: EfficientNet-Lite0 with its real ImageNet weights, behind
//! [`rap_core::ImageEncoder`]. Embeddings are the L2-normalised pooled 1280-d features of the
//! last feature map (average pooling by default; GeM on request); boxes of an image can be
//! embedded directly, and the ImageNet classifier is exposed to check the weights.
//!
//! A reference image is keyed whole and by centred crops ([`REFERENCE_CROPS`], see
//! [`ImageEncoder::key_regions`]): queries are scored through windows that zoom in on the
//! subject, and a zoomed-in copy of the reference meets them at their scale. On dreambooth-dev
//! (one reference per subject, tools/study/evidence.py) this took top-1 from 0.953 to 0.988 and
//! the best-threshold weighted recognition from 0.976 to 0.989, and widened the margin of a dog
//! over its look-alikes, at no cost per query; GeM, R-MAC, multi-layer descriptors, flip
//! test-time augmentation and local-feature re-ranking did not beat it (the study's table).

use crate::efficientnet_lite::{self, pool, EfficientNetLite0, Pooling, FEATURE_DIM};
use crate::torch_legacy::read_legacy_pth;
use candle_core::{Device, Tensor};
use candle_nn::ops::softmax_last_dim;
use image::RgbImage;
use rap_core::{
    BoundingBox, Embedding, EncoderInfo, Error, ImageEncoder, Region, RegionSource, Result,
};
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

/// The centred crops of a reference image keyed besides the whole image, as fractions of each
/// side (chosen on dreambooth-dev: see the module docs).
pub const REFERENCE_CROPS: [f32; 2] = [0.8, 0.6];

/// The embedding-space id of a pooling and a set of reference crops: keys made another way are
/// not comparable (pooling) or not the same set (crops), so each gets its own id and a memory
/// keyed otherwise is re-keyed.
fn space_id(pooling: Pooling, crops: &[f32]) -> String {
    let base = match pooling {
        Pooling::Average => "efficientnet-lite0".to_string(),
        Pooling::Gem { p } => format!("efficientnet-lite0-gem{p}"),
    };
    if crops.is_empty() {
        return format!("{base}@1");
    }
    let crops: Vec<String> = crops.iter().map(|c| c.to_string()).collect();
    format!("{base}+crops{}@1", crops.join(","))
}

fn model_err(what: &str, e: candle_core::Error) -> Error {
    Error::Model(format!("efficientnet-lite0: {what}: {e}"))
}

/// EfficientNet-Lite0 as an [`ImageEncoder`].
pub struct EfficientNetLite0Encoder {
    model: EfficientNetLite0,
    info: EncoderInfo,
    pooling: Pooling,
    reference_crops: Vec<f32>,
    preprocess: Preprocess,
    device: Device,
}

impl EfficientNetLite0Encoder {
    /// The embedding space id with average pooling and whole-image keys only (the default
    /// before reference crops).
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
                id: space_id(Pooling::Average, &REFERENCE_CROPS),
                dim: FEATURE_DIM,
            },
            pooling: Pooling::Average,
            reference_crops: REFERENCE_CROPS.to_vec(),
            preprocess: EFFICIENTNET_LITE0_PREPROCESS,
            device: device.clone(),
        })
    }

    /// Uses another pooling; the encoder id changes with it (`efficientnet-lite0-gem3...` for
    /// GeM with p = 3), since the embeddings are not comparable.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self.info.id = space_id(pooling, &self.reference_crops);
        self
    }

    /// Keys reference images whole and by centred crops of these fractions of each side
    /// (fractions outside (0, 1) are dropped); empty: whole images only, as before reference
    /// crops, with the id [`Self::ID`]. The encoder id changes with the set.
    pub fn with_reference_crops(mut self, crops: &[f32]) -> Self {
        self.reference_crops = crops
            .iter()
            .copied()
            .filter(|c| *c > 0.0 && *c < 1.0)
            .collect();
        self.info.id = space_id(self.pooling, &self.reference_crops);
        self
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The centred crops of a reference image keyed besides the whole image.
    pub fn reference_crops(&self) -> &[f32] {
        &self.reference_crops
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

    /// The whole image, then a centred crop for each of [`Self::reference_crops`].
    fn key_regions(&self, width: u32, height: u32) -> Vec<Region> {
        reference_regions(width, height, &self.reference_crops)
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

/// Smallest crop side keyed (as retrieval's windows: under it the crop says little).
const MIN_CROP_SIDE: f32 = 32.0;

/// The whole `width` x `height` image, then a centred crop of each fraction of each side
/// (those whose sides would be under 32 px left out).
pub fn reference_regions(width: u32, height: u32, crops: &[f32]) -> Vec<Region> {
    let (w, h) = (width as f32, height as f32);
    let crops = crops
        .iter()
        .map(|&c| (w * c, h * c))
        .filter(|&(cw, ch)| cw.min(ch) >= MIN_CROP_SIDE && cw < w && ch < h)
        .map(|(cw, ch)| {
            let (x, y) = ((w - cw) / 2.0, (h - ch) / 2.0);
            Region {
                bbox: BoundingBox::new(x, y, x + cw, y + ch),
                source: RegionSource::Proposal,
            }
        });
    std::iter::once(Region::whole(width, height))
        .chain(crops)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_regions_are_the_whole_image_and_centred_crops() {
        let r = reference_regions(200, 100, &[0.8, 0.5]);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], Region::whole(200, 100));
        assert_eq!(r[1].bbox, BoundingBox::new(20.0, 10.0, 180.0, 90.0));
        assert_eq!(r[2].bbox, BoundingBox::new(50.0, 25.0, 150.0, 75.0));
        assert!(r[1..].iter().all(|r| r.source == RegionSource::Proposal));
    }

    #[test]
    fn small_images_are_keyed_whole_only() {
        // 0.6 of 50 px is 30 px: under the 32 px floor.
        assert_eq!(reference_regions(50, 400, &REFERENCE_CROPS).len(), 1 + 1);
        assert_eq!(
            reference_regions(1, 1, &REFERENCE_CROPS),
            vec![Region::whole(1, 1)]
        );
        assert_eq!(reference_regions(500, 500, &[]).len(), 1);
    }

    #[test]
    fn the_id_names_the_pooling_and_the_crops() {
        assert_eq!(
            space_id(Pooling::Average, &[]),
            EfficientNetLite0Encoder::ID
        );
        assert_eq!(
            space_id(Pooling::Average, &REFERENCE_CROPS),
            "efficientnet-lite0+crops0.8,0.6@1"
        );
        assert_eq!(
            space_id(Pooling::Gem { p: 3.0 }, &[]),
            "efficientnet-lite0-gem3@1"
        );
        assert_ne!(
            space_id(Pooling::Average, &[0.8]),
            space_id(Pooling::Average, &[0.8, 0.6])
        );
    }
}
