//! Regions of an image: boxes that retrieval embeds and matches.

/// An axis-aligned box in pixel coordinates: `(x1, y1)` top-left, `(x2, y2)` bottom-right.
/// Serialised as `[x1, y1, x2, y2]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "[f32; 4]", into = "[f32; 4]")]
pub struct BoundingBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

/// Parses `x1,y1,x2,y2` in pixels (brackets and spaces allowed, as a hit's JSON box prints):
/// four finite numbers with x2 > x1 and y2 > y1. How users give a box on the command line and
/// in forms.
impl std::str::FromStr for BoundingBox {
    type Err = crate::Error;

    fn from_str(text: &str) -> crate::Result<Self> {
        let bad = || {
            crate::Error::invalid(format!(
                "{:?} is not a box x1,y1,x2,y2 in pixels with x2 > x1 and y2 > y1",
                text.chars().take(80).collect::<String>()
            ))
        };
        let v: Vec<f32> = text
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|p| p.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad())?;
        match v.as_slice() {
            &[x1, y1, x2, y2] if v.iter().all(|x| x.is_finite()) && x2 > x1 && y2 > y1 => {
                Ok(BoundingBox::new(x1, y1, x2, y2))
            }
            _ => Err(bad()),
        }
    }
}

impl BoundingBox {
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        BoundingBox { x1, y1, x2, y2 }
    }

    /// The box covering a whole `width` x `height` image.
    pub fn whole(width: u32, height: u32) -> Self {
        BoundingBox::new(0.0, 0.0, width as f32, height as f32)
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// This box with x scaled by `sx` and y by `sy` (from one image's pixels to another's of
    /// the same picture at another size).
    pub fn scaled(&self, sx: f32, sy: f32) -> Self {
        BoundingBox::new(self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy)
    }

    /// The pixel window `(x, y, width, height)` this box covers in a `width` x `height` image:
    /// the box is clamped to the image and rounded outwards to whole pixels. Fails when it is
    /// not finite or nothing of it is inside the image.
    pub fn pixel_window(&self, width: u32, height: u32) -> crate::Result<(u32, u32, u32, u32)> {
        let finite = [self.x1, self.y1, self.x2, self.y2]
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return Err(crate::Error::invalid(format!("box {self:?} is not finite")));
        }
        let x1 = self.x1.max(0.0).floor().min(width as f32) as u32;
        let y1 = self.y1.max(0.0).floor().min(height as f32) as u32;
        let x2 = self.x2.max(0.0).ceil().min(width as f32) as u32;
        let y2 = self.y2.max(0.0).ceil().min(height as f32) as u32;
        if x2 <= x1 || y2 <= y1 {
            return Err(crate::Error::invalid(format!(
                "box [{}, {}, {}, {}] has no pixels inside the {width}x{height} image",
                self.x1, self.y1, self.x2, self.y2
            )));
        }
        Ok((x1, y1, x2 - x1, y2 - y1))
    }

    /// Intersection over union with another box (0 when they do not overlap).
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let inter = BoundingBox::new(
            self.x1.max(other.x1),
            self.y1.max(other.y1),
            self.x2.min(other.x2),
            self.y2.min(other.y2),
        )
        .area();
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

impl From<[f32; 4]> for BoundingBox {
    fn from(b: [f32; 4]) -> Self {
        BoundingBox::new(b[0], b[1], b[2], b[3])
    }
}

impl From<BoundingBox> for [f32; 4] {
    fn from(b: BoundingBox) -> Self {
        [b.x1, b.y1, b.x2, b.y2]
    }
}

/// Where a region came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionSource {
    /// The whole image.
    Whole,
    /// A multi-scale sliding-window proposal.
    Proposal,
    /// A detector's box, with its label and confidence.
    Detector { label: String, score: f32 },
}

/// What a [`RegionProposer`] is asked to look for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProposalHints {
    /// The tenant's concept categories ("dog", "mug"): distinct, non-empty, trimmed, lowercase,
    /// sorted. An open-vocabulary detector queries exactly these (the reference runs its
    /// detector with the union of the concepts' categories as its classes).
    pub categories: Vec<String>,
}

impl ProposalHints {
    /// Hints from concept categories as stored: blanks dropped, duplicates (ignoring case and
    /// surrounding spaces) merged.
    pub fn from_categories<'a>(categories: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out: Vec<String> = categories
            .into_iter()
            .map(|c| c.trim().to_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        out.sort();
        out.dedup();
        ProposalHints { categories: out }
    }
}

/// Proposes regions of an image worth embedding on their own (a detector's boxes), besides
/// the whole image and the sliding windows retrieval always looks at.
pub trait RegionProposer: Send + Sync {
    /// Regions of `image`, in its pixels, best first, looking for what `hints` names (a
    /// closed-set detector may ignore the hints).
    fn propose(&self, image: &image::RgbImage, hints: &ProposalHints)
        -> crate::Result<Vec<Region>>;
}

/// A region of an image to embed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Region {
    pub bbox: BoundingBox,
    pub source: RegionSource,
}

impl Region {
    pub fn whole(width: u32, height: u32) -> Self {
        Region {
            bbox: BoundingBox::whole(width, height),
            source: RegionSource::Whole,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_parse_from_text_and_bad_ones_are_named() {
        let b: BoundingBox = "10, 20,30.5,40".parse().unwrap();
        assert_eq!(b, BoundingBox::new(10.0, 20.0, 30.5, 40.0));
        assert_eq!(
            "[1,2,3,4]".parse::<BoundingBox>().unwrap(),
            BoundingBox::new(1.0, 2.0, 3.0, 4.0)
        );
        for bad in ["1,2,3", "5,5,1,1", "a,b,c,d", "1,2,3,inf", ""] {
            let err = bad.parse::<BoundingBox>().unwrap_err().to_string();
            assert!(err.contains("is not a box"), "{bad}: {err}");
        }
    }

    #[test]
    fn iou_of_half_overlapping_boxes() {
        let a = BoundingBox::new(0.0, 0.0, 2.0, 2.0);
        let b = BoundingBox::new(1.0, 0.0, 3.0, 2.0);
        assert!((a.iou(&b) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(a.iou(&BoundingBox::new(5.0, 5.0, 6.0, 6.0)), 0.0);
    }

    #[test]
    fn hints_are_distinct_non_empty_categories() {
        let h = ProposalHints::from_categories(["dog", " Dog ", "", "mug", "  ", "cat"]);
        assert_eq!(h.categories, vec!["cat", "dog", "mug"]);
        assert!(ProposalHints::from_categories([""]).categories.is_empty());
    }
}
