//! Encoder preprocessing: from a decoded RGB image to the normalised CHW `f32` tensor data a
//! vision model takes, as each model's reference processor does it.

use crate::transform::{
    box_window, center_crop, crop_box, pad_to_square, resize, resize_shortest_edge, resize_window,
    shortest_edge_size, Filter,
};
use image::RgbImage;
use rap_core::{BoundingBox, Result};

/// Longest accepted long-edge : short-edge ratio before a centre crop (see [`Preprocess::square`]).
pub const MAX_ASPECT: u32 = 8;
/// Largest padded square made at full resolution (see [`Preprocess::square`]).
pub const MAX_PAD_PIXELS: u64 = 40_000_000;

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
                let r = resize_shortest_edge(img, self.size, self.filter)?;
                center_crop(&r, self.size, self.size)
            }
            Fit::PadToSquare(colour) => resize(
                &pad_to_square(img, colour),
                self.size,
                self.size,
                self.filter,
            ),
            Fit::Stretch => resize(img, self.size, self.size, self.filter),
        }
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
            Fit::ShortestEdgeCenterCrop => {
                let (w, h) = shortest_edge_size(window.2, window.3, self.size);
                let r = resize_window(img, window, w, h, self.filter)?;
                if (w, h) == (self.size, self.size) {
                    Ok(r)
                } else {
                    center_crop(&r, self.size, self.size)
                }
            }
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
