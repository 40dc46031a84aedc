//! The two kinds of input, read into one model: photos, the concepts in them, and boxes.
//!
//! - **COCO** ([`read_coco`]): `images` (`id`, `file_name`, optional `width`/`height`),
//!   `annotations` (`id`, `image_id`, `category_id`, `bbox` = `[x, y, width, height]` in pixels,
//!   optional `iscrowd`, and the optional `track_id` of video data sets such as TAO), and
//!   `categories` (`id`, `name`). Every annotation is an object instance and becomes a concept
//!   whose reference crop is cut from its own image, as RAP-260K does with RefCOCO; annotations
//!   sharing a `track_id` are one concept seen in several images (its crop comes from the first).
//!   Crowd boxes and boxes under the minimum size are skipped and counted.
//! - **Folders** ([`read_folders`]): `DIR/<subject>/<photo>`; each subject is a concept (category
//!   from `DIR/classes.csv` with a `subject,class` header when present, else the folder name), one
//!   photo chosen with the seed is its reference, the others are scenes that show it (no box).
//!
//! Paths are checked here: a COCO `file_name` that is absolute or climbs out of the images folder
//! with `..` is refused, naming the image.

use crate::rng::Rng;
use rap_core::{BoundingBox, Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Image file extensions read from photo folders.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

/// A concept the data set will name and crop.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConcept {
    /// Stable identity (`subject:dog`, `ann:17`, `track:3`); seeds every choice about it.
    pub key: String,
    pub category: String,
    /// The image its reference crop is cut from, and the box (None = the whole photo).
    pub reference_image: usize,
    pub reference_box: Option<BoundingBox>,
}

/// One object in an image: which concept, and where (None = somewhere in the photo).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceObject {
    pub concept: usize,
    pub bbox: Option<BoundingBox>,
}

/// One input photo.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceImage {
    /// Where to read it.
    pub path: PathBuf,
    /// Its path in the output folder (`images/...`, `/`-separated).
    pub out_rel: String,
    /// Size the annotation file declares, checked against the decoded image.
    pub declared_size: Option<(u32, u32)>,
    /// Whether samples are made about this photo (a folder subject's reference photo is not).
    pub scene: bool,
    pub objects: Vec<SourceObject>,
}

/// What kind of input a [`Source`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Coco,
    Folders,
}

/// An input read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub kind: SourceKind,
    pub images: Vec<SourceImage>,
    pub concepts: Vec<SourceConcept>,
    /// Annotations left out, by reason (`crowd`, `too small`).
    pub skipped: BTreeMap<String, usize>,
}

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    id: u64,
    image_id: u64,
    category_id: u64,
    bbox: Vec<f64>,
    #[serde(default)]
    iscrowd: u8,
    #[serde(default)]
    track_id: Option<u64>,
}

#[derive(Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

/// A relative path inside a folder, `/`-separated; refuses absolute paths and `..`.
pub fn safe_relative(path: &str) -> Option<String> {
    if path.is_empty() || path.contains('\\') || path.contains('\0') {
        return None;
    }
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Reads a COCO annotation file; `images_dir` holds the files its `file_name`s name.
/// Boxes whose shorter side is under `min_box` pixels are skipped.
pub fn read_coco(annotations: &Path, images_dir: &Path, min_box: f64) -> Result<Source> {
    let text = std::fs::read_to_string(annotations).map_err(|e| Error::io(annotations, e))?;
    let coco: CocoFile = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{}: not a COCO annotation file (images, annotations, categories): {e}",
            annotations.display()
        ))
    })?;
    let at = |msg: String| Error::invalid(format!("{}: {msg}", annotations.display()));
    let categories: BTreeMap<u64, String> = coco
        .categories
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    let mut images = Vec::new();
    let mut index_of = BTreeMap::new();
    let mut sorted = coco.images;
    sorted.sort_by_key(|i| i.id);
    for img in sorted {
        let rel = safe_relative(&img.file_name).ok_or_else(|| {
            at(format!(
                "image {}: file_name {:?} is not a relative path inside the images folder",
                img.id, img.file_name
            ))
        })?;
        if index_of.insert(img.id, images.len()).is_some() {
            return Err(at(format!("image id {} appears twice", img.id)));
        }
        let declared_size = match (img.width, img.height) {
            (Some(w), Some(h)) => Some((w, h)),
            _ => None,
        };
        images.push(SourceImage {
            path: images_dir.join(&rel),
            out_rel: format!("images/{rel}"),
            declared_size,
            scene: true,
            objects: Vec::new(),
        });
    }
    let mut skipped = BTreeMap::new();
    let mut concepts: Vec<SourceConcept> = Vec::new();
    let mut track_concept: BTreeMap<u64, usize> = BTreeMap::new();
    let mut anns = coco.annotations;
    // The first occurrence of a track (its reference crop) is the one in the lowest image id.
    anns.sort_by_key(|a| (a.image_id, a.id));
    let mut seen_ids = std::collections::BTreeSet::new();
    for a in anns {
        if !seen_ids.insert(a.id) {
            return Err(at(format!("annotation id {} appears twice", a.id)));
        }
        let &image = index_of.get(&a.image_id).ok_or_else(|| {
            at(format!(
                "annotation {}: image_id {} is not in images",
                a.id, a.image_id
            ))
        })?;
        let category = categories.get(&a.category_id).ok_or_else(|| {
            at(format!(
                "annotation {}: category_id {} is not in categories",
                a.id, a.category_id
            ))
        })?;
        let [x, y, w, h] = <[f64; 4]>::try_from(a.bbox.as_slice()).map_err(|_| {
            at(format!(
                "annotation {}: bbox must be [x, y, width, height]",
                a.id
            ))
        })?;
        if ![x, y, w, h].iter().all(|v| v.is_finite()) || w < 0.0 || h < 0.0 {
            return Err(at(format!(
                "annotation {}: bbox [{x}, {y}, {w}, {h}] is not a box",
                a.id
            )));
        }
        if a.iscrowd != 0 {
            *skipped.entry("crowd".to_string()).or_default() += 1;
            continue;
        }
        if w.min(h) < min_box {
            *skipped.entry("too small".to_string()).or_default() += 1;
            continue;
        }
        let bbox = BoundingBox::new(x as f32, y as f32, (x + w) as f32, (y + h) as f32);
        let concept = match a.track_id.and_then(|t| track_concept.get(&t).copied()) {
            Some(c) => c,
            None => {
                let key = match a.track_id {
                    Some(t) => format!("track:{t}"),
                    None => format!("ann:{}", a.id),
                };
                concepts.push(SourceConcept {
                    key,
                    category: category.clone(),
                    reference_image: image,
                    reference_box: Some(bbox),
                });
                if let Some(t) = a.track_id {
                    track_concept.insert(t, concepts.len() - 1);
                }
                concepts.len() - 1
            }
        };
        images[image].objects.push(SourceObject {
            concept,
            bbox: Some(bbox),
        });
    }
    if concepts.is_empty() {
        return Err(at(
            "no usable annotation (after skipping crowd and too small boxes)".into(),
        ));
    }
    Ok(Source {
        kind: SourceKind::Coco,
        images,
        concepts,
        skipped,
    })
}

fn is_image_file(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            Error::invalid(format!(
                "{}: file name is not UTF-8",
                entry.path().display()
            ))
        })?;
        if name.starts_with('.') {
            continue;
        }
        out.push((name.to_string(), entry.path()));
    }
    out.sort();
    Ok(out)
}

/// `DIR/classes.csv` (`subject,class`) when present.
fn read_classes(dir: &Path) -> Result<BTreeMap<String, String>> {
    let path = dir.join("classes.csv");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (subject, class) = line.split_once(',').ok_or_else(|| {
            Error::invalid(format!(
                "{}, line {}: expected subject,class",
                path.display(),
                i + 1
            ))
        })?;
        out.insert(subject.trim().to_string(), class.trim().to_string());
    }
    Ok(out)
}

/// A category from a folder name: `dog2` -> `dog`, `bear_plushie` -> `bear plushie`.
fn category_from_folder(name: &str) -> String {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .replace(['_', '-'], " ")
        .trim()
        .to_string()
}

/// Reads a folder-per-subject photo collection. The reference photo of each subject is chosen
/// with `seed`; subjects with a single photo still become concepts (usable as negatives).
pub fn read_folders(dir: &Path, seed: u64) -> Result<Source> {
    let classes = read_classes(dir)?;
    let mut images = Vec::new();
    let mut concepts = Vec::new();
    let mut skipped = BTreeMap::new();
    for (subject, path) in sorted_entries(dir)? {
        if !path.is_dir() {
            continue;
        }
        let photos: Vec<(String, PathBuf)> = sorted_entries(&path)?
            .into_iter()
            .filter(|(_, p)| p.is_file() && is_image_file(p))
            .collect();
        if photos.is_empty() {
            *skipped
                .entry("empty subject folder".to_string())
                .or_default() += 1;
            continue;
        }
        let key = format!("subject:{subject}");
        let reference = Rng::stream(seed, "reference", &key).below(photos.len());
        let concept = concepts.len();
        let first = images.len();
        for (i, (file, p)) in photos.into_iter().enumerate() {
            images.push(SourceImage {
                path: p,
                out_rel: format!("images/{subject}/{file}"),
                declared_size: None,
                scene: i != reference,
                objects: vec![SourceObject {
                    concept,
                    bbox: None,
                }],
            });
        }
        let category = classes
            .get(&subject)
            .cloned()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| category_from_folder(&subject));
        concepts.push(SourceConcept {
            key,
            category: if category.is_empty() {
                subject.clone()
            } else {
                category
            },
            reference_image: first + reference,
            reference_box: None,
        });
    }
    if concepts.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no subject folders with photos ({})",
            dir.display(),
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    Ok(Source {
        kind: SourceKind::Folders,
        images,
        concepts,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(safe_relative("a/b.jpg").as_deref(), Some("a/b.jpg"));
        assert_eq!(safe_relative("./a.jpg").as_deref(), Some("a.jpg"));
        for bad in ["/etc/passwd", "../x.jpg", "a/../../x.jpg", "", "a\\b.jpg"] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }

    #[test]
    fn categories_from_folder_names() {
        assert_eq!(category_from_folder("dog2"), "dog");
        assert_eq!(category_from_folder("bear_plushie"), "bear plushie");
    }

    fn write_coco(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("a.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn coco_faults_name_the_annotation() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                r#"{"images":[{"id":1,"file_name":"../x.jpg"}],"annotations":[],"categories":[]}"#,
                "image 1: file_name",
            ),
            (
                r#"{"images":[{"id":1,"file_name":"x.jpg"}],"annotations":[{"id":5,"image_id":2,"category_id":1,"bbox":[0,0,50,50]}],"categories":[{"id":1,"name":"dog"}]}"#,
                "annotation 5: image_id 2",
            ),
            (
                r#"{"images":[{"id":1,"file_name":"x.jpg"}],"annotations":[{"id":5,"image_id":1,"category_id":9,"bbox":[0,0,50,50]}],"categories":[{"id":1,"name":"dog"}]}"#,
                "annotation 5: category_id 9",
            ),
            (
                r#"{"images":[{"id":1,"file_name":"x.jpg"}],"annotations":[{"id":5,"image_id":1,"category_id":1,"bbox":[0,0,50]}],"categories":[{"id":1,"name":"dog"}]}"#,
                "annotation 5: bbox",
            ),
            (
                r#"{"images":[{"id":1,"file_name":"x.jpg"}],"annotations":[{"id":5,"image_id":1,"category_id":1,"bbox":[0,0,5,5]}],"categories":[{"id":1,"name":"dog"}]}"#,
                "no usable annotation",
            ),
            (r#"{"images": 3}"#, "not a COCO annotation file"),
        ];
        for (text, want) in cases {
            let p = write_coco(dir.path(), text);
            let e = read_coco(&p, dir.path(), 16.0).unwrap_err().to_string();
            assert!(e.contains(want), "{e} / {want}");
        }
    }

    #[test]
    fn coco_tracks_join_annotations_into_one_concept() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_coco(
            dir.path(),
            r#"{"images":[{"id":2,"file_name":"b.jpg"},{"id":1,"file_name":"a.jpg"}],
               "annotations":[{"id":1,"image_id":2,"category_id":1,"bbox":[0,0,40,40],"track_id":7},
                              {"id":2,"image_id":1,"category_id":1,"bbox":[10,10,40,40],"track_id":7},
                              {"id":3,"image_id":1,"category_id":1,"bbox":[0,0,40,40],"iscrowd":1},
                              {"id":4,"image_id":1,"category_id":2,"bbox":[50,50,30,30]}],
               "categories":[{"id":1,"name":"dog"},{"id":2,"name":"cup"}]}"#,
        );
        let s = read_coco(&p, dir.path(), 16.0).unwrap();
        assert_eq!(s.concepts.len(), 2);
        assert_eq!(s.concepts[0].key, "track:7");
        // a.jpg (id 1) is first: the track's reference comes from it
        assert_eq!(s.images[0].out_rel, "images/a.jpg");
        assert_eq!(s.concepts[0].reference_image, 0);
        assert_eq!(s.images[1].objects.len(), 1);
        assert_eq!(s.images[0].objects.len(), 2);
        assert_eq!(s.skipped.get("crowd"), Some(&1));
        assert_eq!(
            s.images[0].objects[1].bbox,
            Some(BoundingBox::new(50.0, 50.0, 80.0, 80.0))
        );
    }
}
