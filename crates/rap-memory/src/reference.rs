//! Import and export of the reference implementation's `database.json`.
//!
//! The reference (Hoar012/RAP-MLLM) keeps its memory as
//! `{"concept_dict": {"<bo>": {"name", "image", "info", "category"}}, "path_to_concept": {path: "<bo>"}}`
//! with image paths relative to the folder *above* the database folder. We read that as it is,
//! plus two optional fields of our own that the reference ignores: `images` (every reference
//! image, the first equal to `image`) and `aliases`. Multi-image concepts also list every image
//! in `path_to_concept`, which is how the reference's index builder finds images.
//!
//! Negative examples are not written: the reference's format has no place for them (migration,
//! [`crate::migrate`], moves them with the rest of a memory).
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
    // A regular file only (a FIFO named database.json would block the read forever).
    let bytes =
        rap_core::fs::read_limited(&layout.json, MAX_JSON_BYTES, "database.json bytes (fixed)")?;
    let db: Database = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid(format!(
            "{} is not a reference database.json: {e}",
            layout.json.display()
        ))
    })?;
    drop(bytes);
    let count = db.concept_dict.len() as u64;
    Limits::check(
        "max_concepts_per_import",
        limits.max_concepts_per_import,
        count,
        || format!("{} holds {count} concepts", layout.json.display()),
    )?;

    // Extra images the reference's index builder would find through `path_to_concept`.
    let mut extra: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (path, key) in &db.path_to_concept {
        extra.entry(key.as_str()).or_default().push(path.as_str());
    }

    let mut out = Vec::with_capacity(db.concept_dict.len());
    let mut read_files: std::collections::HashMap<PathBuf, ImageInput> = Default::default();
    for (key, entry) in &db.concept_dict {
        let name = entry
            .name
            .clone()
            .unwrap_or_else(|| strip_brackets(key).to_owned());
        let context = |e: Error| e.context(format!("concept {key}"));
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
            // Each file is read and checked once; concepts sharing it share its bytes.
            let image = match read_files.get(&file) {
                Some(image) => image.clone(),
                None => {
                    let image = ImageInput::from_path(&file, limits).map_err(context)?;
                    read_files.insert(file, image.clone());
                    image
                }
            };
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
/// returns the stored bytes of an image. Without `overwrite`, refuses (before writing anything)
/// when any file it would write already exists: a non-empty folder may hold files that are
/// not ours. Every file is written through a temporary file and a rename, so a symbolic link
/// named like an export file is replaced, never followed out of `dir`. The JSON is written
/// last, so a failed export never leaves a database that points at missing images.
pub fn write_reference(
    dir: &Path,
    concepts: &[Concept],
    overwrite: bool,
    mut image_bytes: impl FnMut(&Concept, usize) -> Result<Vec<u8>>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let json_path = dir.join("database.json");
    check_target(&json_path, overwrite)?;
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::invalid(format!("cannot export into {}", dir.display())))?;
    let mut db = Database {
        concept_dict: BTreeMap::new(),
        path_to_concept: BTreeMap::new(),
    };
    let mut used_stems = std::collections::HashSet::new();
    // Every file is planned and checked before any is written: a refusal writes nothing.
    let mut targets = Vec::new();
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
            let path = dir.join(&file);
            check_target(&path, overwrite)?;
            targets.push((path, concept, i));
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
    for (path, concept, i) in targets {
        write_replacing(&path, &image_bytes(concept, i)?)?;
    }
    let text = serde_json::to_string_pretty(&db).map_err(|e| Error::storage(e.to_string()))?;
    write_replacing(&json_path, text.as_bytes())?;
    Ok(json_path)
}

/// May the export write `path`? Nothing there is fine. Something there is refused without
/// `overwrite` (it may not be ours), and with it only a regular file or a symbolic link (which
/// [`write_replacing`] replaces, never follows) may be replaced.
fn check_target(path: &Path, overwrite: bool) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let kind = if meta.file_type().is_symlink() {
        "a symbolic link"
    } else if meta.is_file() {
        "a file"
    } else {
        return Err(Error::Conflict(format!(
            "{} already exists and is not a file; refusing to export over it",
            path.display()
        )));
    };
    if !overwrite {
        return Err(Error::Conflict(format!(
            "{} already exists ({kind}); export into an empty folder, or use --force to \
             replace it",
            path.display()
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` through a new temporary file in the same folder, renamed over
/// `path`: a symbolic link at `path` is replaced, never followed, and a reader never sees a
/// half-written file. The temporary file is created exclusively (never through a link).
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.as_deref().unwrap_or("export"),
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}
