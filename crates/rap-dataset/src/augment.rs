//! Augmented views of reference crops: seeded horizontal flips and rotations (RAP's
//! "random rotation and flip of the reference crops"), written as new crop files.
//!
//! A view is a flip (or not) followed by a rotation: a quarter turn (90, 180, 270 degrees,
//! exact, the canvas turns with it) a quarter of the time, otherwise a small tilt of up to
//! [`MAX_TILT`] degrees about the centre on the same canvas, sampled bilinearly, the uncovered
//! corners filled with neutral grey. A drawn view is never the identity.

use crate::rng::Rng;
use image::{Rgb, RgbImage};

/// Largest small rotation, in degrees.
pub const MAX_TILT: f64 = 20.0;
/// Colour of the corners a tilt uncovers.
pub const FILL: [u8; 3] = [128, 128, 128];

/// One augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub flip: bool,
    /// Counter-clockwise degrees; 90, 180 and 270 are exact quarter turns.
    pub rotation: f64,
}

impl View {
    /// Draws a view that changes the image.
    pub fn draw(rng: &mut Rng) -> View {
        let mut flip = rng.chance(0.5);
        let rotation = if rng.chance(0.25) {
            [90.0, 180.0, 270.0][rng.below(3)]
        } else {
            // tenths of a degree in [-MAX_TILT, MAX_TILT]
            let steps = (MAX_TILT * 10.0) as usize;
            (rng.below(2 * steps + 1) as f64 - steps as f64) / 10.0
        };
        if !flip && rotation == 0.0 {
            flip = true;
        }
        View { flip, rotation }
    }

    /// A short label: `flip`, `rot90`, `flip+rot-12.5`.
    pub fn label(&self) -> String {
        match (self.flip, self.rotation == 0.0) {
            (true, true) => "flip".into(),
            (false, _) => format!("rot{}", self.rotation),
            (true, false) => format!("flip+rot{}", self.rotation),
        }
    }

    pub fn apply(&self, img: &RgbImage) -> RgbImage {
        let img = if self.flip {
            image::imageops::flip_horizontal(img)
        } else {
            img.clone()
        };
        // image's rotate90 turns clockwise; ours are counter-clockwise.
        let r = self.rotation;
        if r == 0.0 {
            img
        } else if r == 90.0 {
            image::imageops::rotate270(&img)
        } else if r == 180.0 {
            image::imageops::rotate180(&img)
        } else if r == 270.0 {
            image::imageops::rotate90(&img)
        } else {
            tilt(&img, r)
        }
    }
}

/// Rotates by `degrees` (counter-clockwise) about the centre, same canvas, bilinear.
pub fn tilt(img: &RgbImage, degrees: f64) -> RgbImage {
    let (w, h) = img.dimensions();
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let px = |x: i64, y: i64, c: usize| -> f64 {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            FILL[c] as f64
        } else {
            img.get_pixel(x as u32, y as u32).0[c] as f64
        }
    };
    RgbImage::from_fn(w, h, |x, y| {
        // Inverse mapping: where in the source does this output pixel come from?
        let dx = x as f64 - cx;
        let dy = y as f64 - cy;
        // Image y points down, so a counter-clockwise turn on screen is clockwise in (x, y).
        let sx = cos * dx - sin * dy + cx;
        let sy = sin * dx + cos * dy + cy;
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let mut out = [0u8; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let top = px(x0, y0, c) * (1.0 - fx) + px(x0 + 1, y0, c) * fx;
            let bottom = px(x0, y0 + 1, c) * (1.0 - fx) + px(x0 + 1, y0 + 1, c) * fx;
            *o = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
        }
        Rgb(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked() -> RgbImage {
        // 4x2, red top-left pixel
        let mut img = RgbImage::from_pixel(4, 2, Rgb([0, 0, 0]));
        img.put_pixel(0, 0, Rgb([255, 0, 0]));
        img
    }

    #[test]
    fn flips_and_quarter_turns_move_pixels_where_expected() {
        let img = marked();
        let f = View {
            flip: true,
            rotation: 0.0,
        }
        .apply(&img);
        assert_eq!(f.get_pixel(3, 0).0, [255, 0, 0]);
        // Counter-clockwise 90: the top-left corner goes to the bottom-left, canvas 2x4.
        let r = View {
            flip: false,
            rotation: 90.0,
        }
        .apply(&img);
        assert_eq!(r.dimensions(), (2, 4));
        assert_eq!(r.get_pixel(0, 3).0, [255, 0, 0]);
        let r = View {
            flip: false,
            rotation: 180.0,
        }
        .apply(&img);
        assert_eq!(r.get_pixel(3, 1).0, [255, 0, 0]);
    }

    #[test]
    fn tilt_keeps_the_centre_and_fills_corners() {
        let img = RgbImage::from_fn(41, 41, |x, y| Rgb([x as u8 * 5, y as u8 * 5, 200]));
        let t = tilt(&img, 15.0);
        assert_eq!(t.dimensions(), (41, 41));
        assert_eq!(t.get_pixel(20, 20), img.get_pixel(20, 20));
        assert_eq!(t.get_pixel(0, 0).0, FILL);
        assert_eq!(tilt(&img, 0.0), img);
    }

    #[test]
    fn drawn_views_change_the_image() {
        let mut rng = Rng::new(9);
        for _ in 0..200 {
            let v = View::draw(&mut rng);
            assert!(v.flip || v.rotation != 0.0);
            assert!(v.rotation.abs() <= MAX_TILT || [90.0, 180.0, 270.0].contains(&v.rotation));
        }
    }
}
