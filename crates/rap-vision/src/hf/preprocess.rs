//! The image processor of `preprocessor_config.json` (resize, centre crop, rescale,
//! normalise), done as transformers' PIL image processors do it; the resize is Pillow's, bit
//! for bit ([`rap_image::pillow`]).

use super::folder::{HfFolder, PREPROCESSOR_CONFIG};
use candle_core::{Device, Tensor};
use image::RgbImage;
use rap_core::{Error, Result};
use rap_image::Filter;

/// Longest accepted long-edge : short-edge ratio; a longer image is first cut to it around its
/// centre (a shortest-edge resize of a 1 x 10,000 strip would otherwise be enormous).
const MAX_ASPECT: u32 = 8;

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
            let factor = raw.rescale_factor.unwrap_or(1.0 / 255.0);
            if !(factor > 0.0 && (255.0 * factor).is_finite()) {
                return Err(format!(
                    "\"rescale_factor\" must be a positive finite number, not {factor}"
                ));
            }
            Some(factor)
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
pub(super) fn bound_aspect(img: &RgbImage) -> RgbImage {
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
pub(super) fn center_crop_floor(img: &RgbImage, cw: u32, ch: u32) -> RgbImage {
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
