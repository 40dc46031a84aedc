//! LLaVA-1.5 image preprocessing: `expand2square` (pad to a square with the processor's mean
//! colour, `int(mean * 255)` per channel, image centred), then the CLIP image processor from
//! `preprocessor_config.json` (Pillow's bicubic resize of the shortest edge, centre crop, rescale,
//! normalise with mean / std).

use crate::llava::config::{read_json, Reader};
use rap_core::{Error, Result};
use rap_image::transform::{center_crop, pad_to_square, shortest_edge_size, Filter};
use serde_json::Value;
use std::path::Path;

/// OpenAI CLIP's normalisation (the values as its processor config writes them).
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Longest edge padded at full resolution.
const MAX_PADDED_SIDE: u32 = 4096;

/// What turns an RGB image into the tower's input.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePreprocess {
    pub pad_to_square: bool,
    /// Shortest edge after resizing (`None`: no resize).
    pub shortest_edge: Option<u32>,
    pub filter: Filter,
    /// Centre crop `(width, height)` (`None`: no crop).
    pub crop: Option<(u32, u32)>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Side of the square the tower takes.
    pub image_size: u32,
}

impl ImagePreprocess {
    /// CLIP's defaults for a tower of `image_size`.
    pub fn clip(image_size: u32, pad_to_square: bool) -> Self {
        ImagePreprocess {
            pad_to_square,
            shortest_edge: Some(image_size),
            filter: Filter::Bicubic,
            crop: Some((image_size, image_size)),
            mean: CLIP_MEAN,
            std: CLIP_STD,
            image_size,
        }
    }

    /// Reads `preprocessor_config.json` (a CLIP image processor's).
    pub fn from_file(path: &Path, image_size: u32, pad_to_square: bool) -> Result<Self> {
        let v = read_json(path)?;
        let r = Reader {
            v: &v,
            file: path,
            prefix: "",
        };
        let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3]> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Array(a)) if a.len() == 3 => {
                    let mut out = [0f32; 3];
                    for (o, x) in out.iter_mut().zip(a) {
                        *o = x
                            .as_f64()
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| r.bad(key, "holds a non-number"))?
                            as f32;
                    }
                    Ok(out)
                }
                Some(_) => Err(r.bad(key, "is not a list of 3 numbers")),
            }
        };
        let mut mean = triple("image_mean", CLIP_MEAN)?;
        let mut std = triple("image_std", CLIP_STD)?;
        if std.iter().any(|s| *s <= 0.0) {
            return Err(r.bad("image_std", "has a non-positive value"));
        }
        if r.opt_bool("do_normalize")? == Some(false) {
            mean = [0.0; 3];
            std = [1.0; 3];
        }
        if r.opt_bool("do_rescale")? == Some(false) {
            return Err(r.bad("do_rescale", "is false; only 1/255 rescaling is supported"));
        }
        if let Some(f) = v.get("rescale_factor").and_then(Value::as_f64) {
            if (f - 1.0 / 255.0).abs() > 1e-9 {
                return Err(r.bad("rescale_factor", "is not 1/255"));
            }
        }
        // (shortest edge, (width, height)) of a size entry.
        type Size = (Option<u32>, Option<(u32, u32)>);
        let size_of = |key: &str| -> Result<Option<Size>> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => {
                    let s = n
                        .as_u64()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| r.bad(key, "is not a positive size"))?;
                    Ok(Some((Some(s as u32), Some((s as u32, s as u32)))))
                }
                Some(Value::Object(o)) => {
                    let get = |k: &str| {
                        o.get(k)
                            .and_then(Value::as_u64)
                            .filter(|s| *s > 0)
                            .map(|s| s as u32)
                    };
                    match (get("shortest_edge"), get("width"), get("height")) {
                        (Some(s), _, _) => Ok(Some((Some(s), None))),
                        (None, Some(w), Some(h)) => Ok(Some((None, Some((w, h))))),
                        _ => Err(r.bad(key, "has neither shortest_edge nor width and height")),
                    }
                }
                Some(_) => Err(r.bad(key, "is not a size")),
            }
        };
        let mut shortest_edge = match size_of("size")? {
            Some((Some(s), _)) => Some(s),
            Some((None, Some((w, h)))) if w == h => Some(w),
            Some((None, Some(_))) => {
                return Err(r.bad(
                    "size",
                    "is not square; only shortest_edge or square sizes are supported",
                ))
            }
            _ => Some(image_size),
        };
        if r.opt_bool("do_resize")? == Some(false) {
            shortest_edge = None;
        }
        let mut crop = match size_of("crop_size")? {
            Some((_, Some(wh))) => Some(wh),
            Some((Some(s), None)) => Some((s, s)),
            _ => Some((image_size, image_size)),
        };
        if r.opt_bool("do_center_crop")? == Some(false) {
            crop = None;
        }
        let filter = match r.opt_usize("resample")?.unwrap_or(3) {
            0 => Filter::Nearest,
            1 => Filter::Lanczos3,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            other => {
                return Err(r.bad(
                    "resample",
                    &format!("is {other}; supported: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic"),
                ))
            }
        };
        Ok(ImagePreprocess {
            pad_to_square,
            shortest_edge,
            filter,
            crop,
            mean,
            std,
            image_size,
        })
    }

    /// The padding colour of `expand2square`: `int(mean * 255)` per channel.
    pub fn pad_colour(&self) -> [u8; 3] {
        std::array::from_fn(|c| (self.mean[c] * 255.0).clamp(0.0, 255.0) as u8)
    }

    /// The tower's input for one image: CHW `f32`, `3 * image_size^2` values.
    pub fn apply(&self, img: &image::RgbImage) -> Result<Vec<f32>> {
        let long = img.width().max(img.height());
        let mut img = if self.pad_to_square && long > MAX_PADDED_SIDE {
            // A huge square would cost memory for nothing (it is resized to the tower's side
            // next): shrink first. Results differ from the reference only for such images.
            let (w, h) = (
                (img.width() as u64 * MAX_PADDED_SIDE as u64 / long as u64).max(1) as u32,
                (img.height() as u64 * MAX_PADDED_SIDE as u64 / long as u64).max(1) as u32,
            );
            pad_to_square(
                &rap_image::transform::resize(img, w, h, self.filter)?,
                self.pad_colour(),
            )
        } else if self.pad_to_square {
            pad_to_square(img, self.pad_colour())
        } else {
            img.clone()
        };
        if let Some(s) = self.shortest_edge {
            let (w, h) = shortest_edge_size(img.width(), img.height(), s);
            if (w, h) != img.dimensions() {
                // Pillow's arithmetic exactly (rap-image's SIMD resize rounds some pixels one
                // level apart, which the model amplifies): transformers resizes with Pillow.
                img = rap_image::pillow::resize(&img, w, h, self.filter)?;
            }
        }
        if let Some((w, h)) = self.crop {
            img = center_crop(&img, w, h)?;
        }
        if img.dimensions() != (self.image_size, self.image_size) {
            return Err(Error::Model(format!(
                "the image processor makes {}x{} images but the vision tower takes {s}x{s}",
                img.width(),
                img.height(),
                s = self.image_size
            )));
        }
        Ok(rap_image::to_chw_f32(&img, self.mean, self.std))
    }
}
