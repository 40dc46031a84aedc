//! The input limits: how big anything a user hands `rap` may be (an image file, its pixels and
//! shape, a concept's texts, an import). One value of [`Limits`] travels from the configuration
//! (`[limits]` in config.toml) to every place that checks one; each check fails with
//! [`Error::LimitExceeded`](crate::Error::LimitExceeded) naming the limit as `[limits]` spells
//! it and its value.

use crate::{Error, Result};

/// Every input limit, with the defaults of [`Limits::default`]. The field names are the keys of
/// `[limits]` in config.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest image file, in bytes (a read stops here, so `/dev/zero` cannot fill memory).
    pub max_image_bytes: u64,
    /// Largest image, width x height, checked from the header before decoding.
    pub max_pixels: u64,
    /// Longest long-edge : short-edge ratio of an image (a 1 x 100000 strip is refused).
    pub max_aspect_ratio: u32,
    /// Longest `info` of a concept, in bytes.
    pub max_info_bytes: u64,
    /// Longest category, in characters.
    pub max_category_chars: u64,
    /// Most aliases of one concept.
    pub max_aliases: u64,
    /// Most reference images (and, apart, most negatives) of one concept.
    pub max_images_per_concept: u64,
    /// Most concepts one import may add.
    pub max_concepts_per_import: u64,
}

/// The default largest image file: 64 MiB.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 64 << 20;
/// The default pixel limit: 100 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_aspect_ratio: 50,
            max_info_bytes: 64 << 10,
            max_category_chars: 100,
            max_aliases: 32,
            max_images_per_concept: 64,
            max_concepts_per_import: 10_000,
        }
    }
}

impl Limits {
    /// Fails when any limit is zero (which would refuse everything): a configuration mistake.
    pub fn validate(&self) -> Result<()> {
        let all = [
            ("max_image_bytes", self.max_image_bytes),
            ("max_pixels", self.max_pixels),
            ("max_aspect_ratio", self.max_aspect_ratio as u64),
            ("max_info_bytes", self.max_info_bytes),
            ("max_category_chars", self.max_category_chars),
            ("max_aliases", self.max_aliases),
            ("max_images_per_concept", self.max_images_per_concept),
            ("max_concepts_per_import", self.max_concepts_per_import),
        ];
        match all.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(Error::invalid(format!("limits.{name} must be at least 1"))),
            None => Ok(()),
        }
    }

    /// Checks one count or length against its limit: `what` says what was counted, e.g.
    /// "concept bo has 40 aliases".
    pub fn check(
        limit: &'static str,
        max: u64,
        actual: u64,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if actual > max {
            return Err(Error::limit(limit, max, what()));
        }
        Ok(())
    }

    /// Checks a concept's texts and counts (`images` reference images, `negatives`
    /// negative examples) against these limits.
    pub fn check_concept(
        &self,
        name: &str,
        info: &str,
        category: &str,
        aliases: usize,
        images: usize,
        negatives: usize,
    ) -> Result<()> {
        Self::check(
            "max_info_bytes",
            self.max_info_bytes,
            info.len() as u64,
            || format!("the info of {name:?} is {} bytes", info.len()),
        )?;
        let cat = category.chars().count() as u64;
        Self::check("max_category_chars", self.max_category_chars, cat, || {
            format!("the category of {name:?} is {cat} characters")
        })?;
        Self::check("max_aliases", self.max_aliases, aliases as u64, || {
            format!("{name:?} would have {aliases} aliases")
        })?;
        Self::check(
            "max_images_per_concept",
            self.max_images_per_concept,
            images as u64,
            || format!("{name:?} would have {images} reference images"),
        )?;
        Self::check(
            "max_images_per_concept",
            self.max_images_per_concept,
            negatives as u64,
            || format!("{name:?} would have {negatives} negative examples"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_names_its_limit_and_value() {
        let l = Limits {
            max_info_bytes: 10,
            max_aliases: 2,
            ..Limits::default()
        };
        assert!(l.check_concept("bo", "0123456789", "dog", 2, 1, 0).is_ok());
        let e = l
            .check_concept("bo", "01234567890", "dog", 0, 1, 0)
            .unwrap_err();
        assert!(matches!(
            e,
            Error::LimitExceeded {
                limit: "max_info_bytes",
                value: 10,
                ..
            }
        ));
        assert!(e.to_string().contains("11 bytes"), "{e}");
        let e = l.check_concept("bo", "", "", 3, 1, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"bo\" would have 3 aliases, over the limit max_aliases = 2"
        );
        let e = l
            .check_concept("bo", "", &"c".repeat(101), 0, 1, 0)
            .unwrap_err();
        assert!(matches!(
            e,
            Error::LimitExceeded {
                limit: "max_category_chars",
                ..
            }
        ));
        assert!(Limits::default().validate().is_ok());
        let zero = Limits {
            max_pixels: 0,
            ..Limits::default()
        };
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_pixels"));
    }
}
