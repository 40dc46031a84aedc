//! Import and export of the reference implementation's `database.json`.
//!
//! The reference (Hoar012/RAP-MLLM) keeps its memory as
//! `{"concept_dict": {"<bo>": {"name", "image", "info", "category"}}, "path_to_concept": {path: "<bo>"}}`
//! with image paths relative to the folder *above* the database folder. We read that as it is,
//! plus two optional fields of our own that the reference ignores: `images` (every reference
//! image, the first equal to `image`) and `aliases`. Multi-image concepts also list every image
//! in `path_to_concept`, which is how the reference's index builder finds images.
//!
//! Reading never follows a path out of the folder it is resolved against: `..`, absolute paths
//! elsewhere and symbolic links leading out are refused by comparing canonical paths.

use crate::store::ImageInput;
use rap_core::{strip_brackets, Concept, Error, NewConcept, Result};
use rap_image::Limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest `database.json` we read.
const MAX_JSON_BYTES: u64 = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Database {
    concept_dict: BTreeMap<String, Entry>,
    #[serde(default)]
    path_to_concept: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    #[serde(default)]
    name: Option<String>,
    image: ImageField,
    #[serde(default)]
    info: String,
    #[serde(default)]
    category: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    images: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
}

/// The reference writes one path; some forks write a list.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum ImageField {
    One(String),
    Many(Vec<String>),
}

/// Where a `database.json` is and what its paths are resolved against.
#[derive(Debug)]
struct Layout {
    json: PathBuf,
    /// The folder holding `database.json`.
    db_dir: PathBuf,
    /// The folder above it, which the reference resolves paths against.
    base: PathBuf,
}

fn layout(path: &Path) -> Result<Layout> {
    let json = if path.is_dir() {
        path.join("database.json")
    } else {
        path.to_path_buf()
    };
    let json = json.canonicalize().map_err(|e| Error::io(&json, e))?;
    let db_dir = json
        .parent()
        .ok_or_else(|| Error::invalid(format!("{} has no parent folder", json.display())))?
        .to_path_buf();
    let base = db_dir.parent().unwrap_or(&db_dir).to_path_buf();
    Ok(Layout { json, db_dir, base })
}

enum Resolved {
    Found(PathBuf),
    Missing,
}

/// Resolves `rel` against `root`, refusing anything whose real path is outside `root`.
fn resolve_within(root: &Path, rel: &str) -> Result<Resolved> {
    let candidate = root.join(rel); // an absolute `rel` replaces `root`
    let real = match candidate.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Resolved::Missing),
        Err(e) => return Err(Error::io(&candidate, e)),
    };
    if !real.starts_with(root) {
        return Err(Error::invalid(format!(
            "image path {rel:?} points outside {} (to {}); refusing to read it",
            root.display(),
            real.display()
        )));
    }
    Ok(Resolved::Found(real))
}

/// Resolves an image path as the reference does (against the folder above the database
/// folder) and, failing that, against the database folder itself.
fn resolve_image(layout: &Layout, rel: &str) -> Result<PathBuf> {
    if rel.trim().is_empty() {
        return Err(Error::invalid("empty image path"));
    }
    for root in [&layout.base, &layout.db_dir] {
        if let Resolved::Found(p) = resolve_within(root, rel)? {
            if !p.is_file() {
                return Err(Error::invalid(format!("image path {rel:?} is not a file")));
            }
            return Ok(p);
        }
    }
    Err(Error::invalid(format!(
        "image {rel:?} not found (looked in {} and {})",
        layout.base.display(),
        layout.db_dir.display()
    )))
}

/// Reads a reference `database.json` (or the folder holding it) into concepts with their
/// checked images, ready for one all-or-nothing write. Nothing is written here.
pub fn read_reference(path: &Path, limits: &Limits) -> Result<Vec<(NewConcept, Vec<ImageInput>)>> {
    let layout = layout(path)?;
    let size = std::fs::metadata(&layout.json)
        .map_err(|e| Error::io(&layout.json, e))?
        .len();
    if size > MAX_JSON_BYTES {
        return Err(Error::invalid(format!(
            "{} is {size} bytes, over the {MAX_JSON_BYTES}-byte limit for a database file",
            layout.json.display()
        )));
    }
    let text = std::fs::read_to_string(&layout.json).map_err(|e| Error::io(&layout.json, e))?;
    let db: Database = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{} is not a reference database.json: {e}",
            layout.json.display()
        ))
    })?;

    // Extra images the reference's index builder would find through `path_to_concept`.
    let mut extra: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (path, key) in &db.path_to_concept {
        extra.entry(key.as_str()).or_default().push(path.as_str());
    }

    let mut out = Vec::with_capacity(db.concept_dict.len());
    for (key, entry) in &db.concept_dict {
        let name = entry
            .name
            .clone()
            .unwrap_or_else(|| strip_brackets(key).to_owned());
        let context = |e: Error| Error::invalid(format!("concept {key}: {e}"));
        let mut paths: Vec<&str> = match &entry.image {
            ImageField::One(p) => vec![p.as_str()],
            ImageField::Many(ps) => ps.iter().map(String::as_str).collect(),
        };
        paths.extend(entry.images.iter().map(String::as_str));
        paths.extend(extra.get(key.as_str()).into_iter().flatten().copied());
        let mut images: Vec<ImageInput> = Vec::new();
        let mut seen_files = std::collections::HashSet::new();
        for rel in paths {
            let file = resolve_image(&layout, rel).map_err(context)?;
            if !seen_files.insert(file.clone()) {
                continue;
            }
            let image = ImageInput::from_path(&file, limits).map_err(context)?;
            if !images.iter().any(|i| i.id == image.id) {
                images.push(image);
            }
        }
        out.push((
            NewConcept {
                name,
                aliases: entry.aliases.clone(),
                category: entry.category.clone(),
                info: entry.info.clone(),
            },
            images,
        ));
    }
    Ok(out)
}

/// A file-name-safe stem for a concept name.
fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.trim_matches('_').is_empty() {
        "concept".to_owned()
    } else {
        stem
    }
}

/// Writes `dir/database.json` and the images in the reference's format. `image_bytes`
/// returns the stored bytes of an image. Refuses to overwrite an existing `database.json`
/// unless `overwrite`. The JSON is written last, through a temporary file and a rename, so a
/// failed export never leaves a database that points at missing images.
pub fn write_reference(
    dir: &Path,
    concepts: &[Concept],
    overwrite: bool,
    mut image_bytes: impl FnMut(&Concept, usize) -> Result<Vec<u8>>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let json_path = dir.join("database.json");
    if json_path.exists() && !overwrite {
        return Err(Error::Conflict(format!(
            "{} already exists (use --force to overwrite)",
            json_path.display()
        )));
    }
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::invalid(format!("cannot export into {}", dir.display())))?;
    let mut db = Database {
        concept_dict: BTreeMap::new(),
        path_to_concept: BTreeMap::new(),
    };
    let mut used_stems = std::collections::HashSet::new();
    for concept in concepts {
        let key = format!("<{}>", concept.name);
        let mut stem = file_stem(&concept.name);
        let mut n = 2;
        while !used_stems.insert(stem.to_lowercase()) {
            stem = format!("{}-{n}", file_stem(&concept.name));
            n += 1;
        }
        let mut rel_paths = Vec::new();
        for (i, image) in concept.images.iter().enumerate() {
            let ext = if image.format == "jpeg" {
                "jpg"
            } else {
                &image.format
            };
            let file = if i == 0 {
                format!("{stem}.{ext}")
            } else {
                format!("{stem}-{}.{ext}", i + 1)
            };
            let bytes = image_bytes(concept, i)?;
            let path = dir.join(&file);
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
            let rel = format!("{folder}/{file}");
            db.path_to_concept.insert(rel.clone(), key.clone());
            rel_paths.push(rel);
        }
        let first = rel_paths
            .first()
            .cloned()
            .ok_or_else(|| Error::storage(format!("concept {key} has no image")))?;
        db.concept_dict.insert(
            key,
            Entry {
                name: Some(concept.name.clone()),
                image: ImageField::One(first),
                info: concept.info.clone(),
                category: concept.category.clone(),
                images: if rel_paths.len() > 1 {
                    rel_paths
                } else {
                    Vec::new()
                },
                aliases: concept.aliases.clone(),
            },
        );
    }
    let text = serde_json::to_string_pretty(&db).map_err(|e| Error::storage(e.to_string()))?;
    let tmp = dir.join(".database.json.tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &json_path).map_err(|e| Error::io(&json_path, e))?;
    Ok(json_path)
}
