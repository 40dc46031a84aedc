//! Encoder preprocessing: from a decoded RGB image to the normalised CHW `f32` tensor data a
//! vision model takes, as each model's reference processor does it.
//!
//! Memory is bounded for any shape: an image (or a box) longer than [`MAX_ASPECT`] times its
//! width is first cut to its centred [`MAX_ASPECT`]:1 part (read in place), so a shortest-edge
//! resize makes at most `size` x `size * MAX_ASPECT` pixels; a padded square larger than
//! [`MAX_PAD_PIXELS`] is made from the image shrunk first. Ordinary images are unaffected.

use crate::transform::{
    box_window, center_crop, crop_box, pad_to_square, resize, resize_window, shortest_edge_size,
    Filter,
};
use image::RgbImage;
use rap_core::{BoundingBox, Result};

/// Longest long-edge : short-edge ratio resized whole; a longer image's centred `MAX_ASPECT`:1
/// part is used (the centre crop that follows keeps only a square of it anyway).
pub const MAX_ASPECT: u32 = 8;
/// Largest padded square made at full resolution; a larger one is made from the image shrunk
/// first (results then differ slightly from the reference's, which pads at full size).
pub const MAX_PAD_PIXELS: u64 = 40_000_000;

/// The centred window of the `(x, y, w, h)` window at most [`MAX_ASPECT`]:1 (the window itself
/// when it is not longer than that).
fn bound_aspect(window: (u32, u32, u32, u32)) -> (u32, u32, u32, u32) {
    let (x, y, w, h) = window;
    if w as u64 > h as u64 * MAX_ASPECT as u64 {
        let nw = h * MAX_ASPECT;
        (x + (w - nw) / 2, y, nw, h)
    } else if h as u64 > w as u64 * MAX_ASPECT as u64 {
        let nh = w * MAX_ASPECT;
        (x, y + (h - nh) / 2, w, nh)
    } else {
        window
    }
}

/// How the image is brought to the model's square input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Resize the shorter edge to the input size, then cut the centred square (torchvision
    /// `Resize(size)` + `CenterCrop(size)`, CLIP, EfficientNet).
    ShortestEdgeCenterCrop,
    /// Pad to a square with this colour, then resize (LLaVA-1.5's `expand2square`).
    PadToSquare([u8; 3]),
    /// Resize to the square, ignoring the aspect ratio.
    Stretch,
}

/// A model's preprocessing: geometry, then `(x / 255 - mean) / std` per channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Side of the square model input.
    pub size: u32,
    pub fit: Fit,
    pub filter: Filter,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocess {
    /// The geometric part: the `size` x `size` RGB image the model sees.
    pub fn square(&self, img: &RgbImage) -> Result<RgbImage> {
        match self.fit {
            Fit::ShortestEdgeCenterCrop => {
                self.shortest_edge_crop(img, (0, 0, img.width(), img.height()))
            }
            Fit::PadToSquare(colour) => self.pad_square(img, colour),
            Fit::Stretch => resize(img, self.size, self.size, self.filter),
        }
    }

    /// Shortest-edge resize of a window of `img` (its centred [`MAX_ASPECT`]:1 part when it is
    /// longer), then the centred `size` x `size` square.
    fn shortest_edge_crop(&self, img: &RgbImage, window: (u32, u32, u32, u32)) -> Result<RgbImage> {
        let window = bound_aspect(window);
        let (w, h) = shortest_edge_size(window.2, window.3, self.size);
        let r = resize_window(img, window, w, h, self.filter)?;
        if (w, h) == (self.size, self.size) {
            Ok(r)
        } else {
            center_crop(&r, self.size, self.size)
        }
    }

    /// Pads to a square, then resizes to `size`; a square over [`MAX_PAD_PIXELS`] is padded
    /// from the image shrunk so that its long edge fits.
    fn pad_square(&self, img: &RgbImage, colour: [u8; 3]) -> Result<RgbImage> {
        let long = img.width().max(img.height());
        let max_side = (MAX_PAD_PIXELS as f64).sqrt() as u32;
        if long <= max_side {
            return resize(
                &pad_to_square(img, colour),
                self.size,
                self.size,
                self.filter,
            );
        }
        let scaled = |edge: u32| ((edge as u64 * max_side as u64) / long as u64).max(1) as u32;
        let shrunk = resize(img, scaled(img.width()), scaled(img.height()), self.filter)?;
        resize(
            &pad_to_square(&shrunk, colour),
            self.size,
            self.size,
            self.filter,
        )
    }

    /// The whole preprocessing: CHW `f32` data of length `3 * size * size`.
    pub fn tensor_data(&self, img: &RgbImage) -> Result<Vec<f32>> {
        Ok(to_chw_f32(&self.square(img)?, self.mean, self.std))
    }

    /// [`Preprocess::square`] of the part of `img` under `bbox` (rounded as [`box_window`]
    /// does), pixel for pixel, resized straight from `img` without copying the part out first
    /// (the padding fit still copies it: the pad needs it whole).
    pub fn square_in_box(&self, img: &RgbImage, bbox: &BoundingBox) -> Result<RgbImage> {
        let window = box_window(bbox, img.width(), img.height())?;
        match self.fit {
            Fit::ShortestEdgeCenterCrop => self.shortest_edge_crop(img, window),
            Fit::Stretch => resize_window(img, window, self.size, self.size, self.filter),
            Fit::PadToSquare(_) => self.square(&crop_box(img, bbox)?),
        }
    }

    /// [`Preprocess::tensor_data`] of the part of `img` under `bbox` (see
    /// [`Preprocess::square_in_box`]).
    pub fn tensor_data_in_box(&self, img: &RgbImage, bbox: &BoundingBox) -> Result<Vec<f32>> {
        Ok(to_chw_f32(
            &self.square_in_box(img, bbox)?,
            self.mean,
            self.std,
        ))
    }
}

/// Planar (CHW) `f32` data of an RGB image, each channel as `(x / 255 - mean) / std`.
pub fn to_chw_f32(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let n = img.width() as usize * img.height() as usize;
    let mut out = vec![0f32; 3 * n];
    // One multiply-add per value: (x/255 - m)/s = x * (1/(255 s)) - m/s.
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| mean[c] / std[c]);
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = p.0[c] as f32 * scale[c] - shift[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_layout_and_normalisation() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([0, 255, 51]));
        img.put_pixel(1, 0, image::Rgb([255, 0, 102]));
        let t = to_chw_f32(&img, [0.5; 3], [0.5; 3]);
        let want = [-1.0, 1.0, 1.0, -1.0, 0.2 * 2.0 - 1.0, 0.4 * 2.0 - 1.0];
        for (a, b) in t.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{t:?}");
        }
    }

    /// The issue-20 inputs: valid PNGs of 1x40000, 1x100000 and 100000x1 pixels (a few hundred
    /// bytes). Their shortest-edge resize to 224 was 224 x 22,400,000 pixels (an abort on a
    /// 15 GB allocation); now every fit, whole or by a box, makes a bounded image, quickly.
    /// (The header check refuses them by default; here the aspect limit is lifted to reach the
    /// resize paths, which must be bounded on their own for boxes of any shape.)
    #[test]
    fn hostile_strips_are_resized_in_bounded_memory() {
        let limits = crate::Limits {
            max_aspect_ratio: u32::MAX,
            ..crate::Limits::default()
        };
        for (w, h) in [(1, 40_000), (1, 100_000), (100_000, 1)] {
            let png = crate::testing::strip_png(w, h);
            assert!(png.len() < 2_000, "{} bytes", png.len());
            let img = crate::decode(&png, &limits).unwrap();
            for fit in [
                Fit::ShortestEdgeCenterCrop,
                Fit::PadToSquare([0, 0, 0]),
                Fit::Stretch,
            ] {
                let p = Preprocess {
                    size: 224,
                    fit,
                    filter: Filter::Bicubic,
                    mean: [0.0; 3],
                    std: [1.0; 3],
                };
                let start = std::time::Instant::now();
                assert_eq!(p.square(&img).unwrap().dimensions(), (224, 224));
                let thin_box = BoundingBox::new(0.0, 0.0, w as f32, h as f32);
                assert_eq!(
                    p.square_in_box(&img, &thin_box).unwrap().dimensions(),
                    (224, 224)
                );
                assert!(start.elapsed().as_secs() < 5, "{w}x{h} {fit:?}");
            }
        }
        // A box of extreme shape inside an ordinary image is bounded the same way.
        let img = RgbImage::from_pixel(4000, 3000, image::Rgb([1, 2, 3]));
        let p = Preprocess {
            size: 224,
            fit: Fit::ShortestEdgeCenterCrop,
            filter: Filter::Bilinear,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let sliver = BoundingBox::new(100.0, 0.0, 101.0, 3000.0);
        assert_eq!(
            p.square_in_box(&img, &sliver).unwrap().dimensions(),
            (224, 224)
        );
    }

    #[test]
    fn extreme_shapes_stay_bounded() {
        let long = RgbImage::from_pixel(1, 3_000, image::Rgb([5, 6, 7]));
        let wide = RgbImage::from_pixel(7_000, 2, image::Rgb([5, 6, 7]));
        for img in [&long, &wide] {
            for fit in [Fit::ShortestEdgeCenterCrop, Fit::PadToSquare([0, 0, 0])] {
                let p = Preprocess {
                    size: 64,
                    fit,
                    filter: Filter::Bilinear,
                    mean: [0.0; 3],
                    std: [1.0; 3],
                };
                let sq = p.square(img).unwrap();
                assert_eq!(sq.dimensions(), (64, 64));
                let inside = sq.pixels().filter(|px| px.0 == [5, 6, 7]).count();
                match fit {
                    Fit::PadToSquare(_) => assert!(inside < 64 * 8, "{inside}"),
                    _ => assert_eq!(inside, 64 * 64),
                }
            }
        }
    }

    /// Every fit and filter: a box preprocessed in place gives exactly the pixels of the box cut
    /// out and preprocessed whole (square, tall, wide and clamped boxes, fractional edges).
    #[test]
    fn square_in_box_equals_crop_then_square() {
        let img = RgbImage::from_fn(150, 90, |x, y| {
            image::Rgb([(x * 5 + y) as u8, (x * y / 3) as u8, (x ^ (y * 2)) as u8])
        });
        let boxes = [
            BoundingBox::whole(150, 90),
            BoundingBox::new(10.0, 10.0, 70.0, 70.0),
            BoundingBox::new(20.5, 0.0, 40.2, 89.0),
            BoundingBox::new(100.0, 30.0, 400.0, 60.0),
            BoundingBox::new(5.0, 5.0, 21.0, 21.0),
        ];
        for fit in [
            Fit::ShortestEdgeCenterCrop,
            Fit::PadToSquare([1, 2, 3]),
            Fit::Stretch,
        ] {
            for filter in [Filter::Bilinear, Filter::Bicubic] {
                let p = Preprocess {
                    size: 16,
                    fit,
                    filter,
                    mean: [0.5; 3],
                    std: [0.25; 3],
                };
                for b in &boxes {
                    let crop = crop_box(&img, b).unwrap();
                    assert_eq!(
                        p.square_in_box(&img, b).unwrap(),
                        p.square(&crop).unwrap(),
                        "{fit:?} {filter:?} {b:?}"
                    );
                    assert_eq!(
                        p.tensor_data_in_box(&img, b).unwrap(),
                        p.tensor_data(&crop).unwrap()
                    );
                }
            }
        }
        let p = Preprocess {
            size: 16,
            fit: Fit::ShortestEdgeCenterCrop,
            filter: Filter::Bilinear,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let outside = BoundingBox::new(200.0, 0.0, 300.0, 50.0);
        assert!(p.square_in_box(&img, &outside).is_err());
    }

    #[test]
    fn each_fit_gives_the_input_size() {
        let img = RgbImage::from_pixel(300, 100, image::Rgb([10, 20, 30]));
        for fit in [
            Fit::ShortestEdgeCenterCrop,
            Fit::PadToSquare([0, 0, 0]),
            Fit::Stretch,
        ] {
            let p = Preprocess {
                size: 32,
                fit,
                filter: Filter::Bicubic,
                mean: [0.0; 3],
                std: [1.0; 3],
            };
            let sq = p.square(&img).unwrap();
            assert_eq!(sq.dimensions(), (32, 32));
            assert_eq!(p.tensor_data(&img).unwrap().len(), 3 * 32 * 32);
            let corner = sq.get_pixel(0, 0).0;
            match fit {
                Fit::PadToSquare(_) => assert_eq!(corner, [0, 0, 0]),
                _ => assert_eq!(corner, [10, 20, 30]),
            }
        }
    }
}
