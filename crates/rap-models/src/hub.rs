//! Hugging Face checkpoints in the models directory: installed from the Hub (through the
//! `hf-hub` crate), or registered from a folder the user already has; verified, listed and
//! removed. Loading one is not done here (this crate has no model code): the caller passes a
//! [`Probe`] that loads a folder and says what it is, and loads registered checkpoints from the
//! [`HfManifest::dir`] it gets back.
//!
//! # Layout on disk
//! `MODELS_DIR/NAME/manifest.json` (the one manifest, [`crate::manifest`], seen here as an
//! [`HfManifest`]) describes a registered checkpoint: where
//! its folder is (`MODELS_DIR/NAME` itself for a Hub install, the user's own folder for
//! `add`, which is never copied nor deleted), and the size and sha256 of each file as they were
//! when it was registered. [`verify`] re-hashes and compares. A Hub install downloads into a
//! staging folder inside the models directory, checks each file against the catalogue's pins
//! (when it has them), then renames the folder into place and writes the manifest last, so an
//! interrupted install leaves nothing that counts as installed.
//!
//! # Pins
//! [`HUB_CATALOGUE`] lists the checkpoints the project supports. Their revisions and sha256
//! are `None` for now: our machines cannot reach the Hub to read them (see
//! `../shared/docs/models.md`), and we do not write down digests nobody here has checked. An
//! unpinned install records what it downloaded (trust on first use), and [`verify`] holds
//! every later use to that record. Fill in [`HubEntry::revision`] and [`HubFile::sha256`] from
//! a machine that can reach the Hub.

use crate::Tools;
use rap_core::digest::sha256_file;
use rap_core::{Error, Result};
use std::path::{Path, PathBuf};

/// The files of a Hugging Face checkpoint folder that are recorded (and hashed) when it is
/// registered.
pub const CONFIG: &str = "config.json";
pub const PREPROCESSOR_CONFIG: &str = "preprocessor_config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";
/// A sharded checkpoint's index: its `weight_map` names the shards, which are downloaded and
/// recorded too.
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
pub const GENERATION_CONFIG: &str = "generation_config.json";

/// Where `install` talks to unless [`Tools::hub_endpoint`] names another address.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// One file of a catalogued checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubFile {
    pub name: &'static str,
    /// Pinned sha256 (lowercase hex), when known.
    pub sha256: Option<&'static str>,
    /// Whether the checkpoint is unusable without it.
    pub required: bool,
}

/// A checkpoint on the Hugging Face Hub that `rap models install` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubEntry {
    /// The local name (`rap models install clip-vit-large-patch14-336`).
    pub name: &'static str,
    /// The Hub repository id.
    pub repo: &'static str,
    /// Pinned commit, when known; else `main`.
    pub revision: Option<&'static str>,
    pub description: &'static str,
    pub licence: &'static str,
    /// About how many bytes the download is (from the parameter count and the published
    /// dtype; not checked against the Hub, see "Pins").
    pub approx_bytes: u64,
    /// What it is for.
    pub kind: HfKind,
    pub files: &'static [HubFile],
}

const fn file(name: &'static str, required: bool) -> HubFile {
    HubFile {
        name,
        sha256: None,
        required,
    }
}

const WITH_TEXT: &[HubFile] = &[
    file(CONFIG, true),
    file(PREPROCESSOR_CONFIG, true),
    file(WEIGHTS, true),
    file(TOKENIZER, false),
];
const IMAGE_ONLY: &[HubFile] = &[
    file(CONFIG, true),
    file(PREPROCESSOR_CONFIG, true),
    file(WEIGHTS, true),
];

/// A LLaVA generator: one `model.safetensors` or an index and its shards, the tokenizer; the
/// CLIP tower comes from its own install (`clip-vit-large-patch14-336`) unless the checkpoint
/// holds it.
const GENERATOR: &[HubFile] = &[
    file(CONFIG, true),
    file(TOKENIZER, true),
    file(WEIGHTS_INDEX, false),
    file(WEIGHTS, false),
    file(GENERATION_CONFIG, false),
    file(PREPROCESSOR_CONFIG, false),
];

const GB: u64 = 1_000_000_000;
const MB: u64 = 1_000_000;

/// The Hugging Face checkpoints the project supports by name.
pub const HUB_CATALOGUE: &[HubEntry] = &[
    HubEntry {
        name: "clip-vit-base-patch32",
        repo: "openai/clip-vit-base-patch32",
        revision: None,
        description: "CLIP ViT-B/32: image + text embeddings (512-d), 224 px",
        licence: "MIT",
        approx_bytes: 605 * MB,
        kind: HfKind::Encoder,
        files: WITH_TEXT,
    },
    HubEntry {
        name: "clip-vit-large-patch14",
        repo: "openai/clip-vit-large-patch14",
        revision: None,
        description: "CLIP ViT-L/14: image + text embeddings (768-d), 224 px",
        licence: "MIT",
        approx_bytes: 1_710 * MB,
        kind: HfKind::Encoder,
        files: WITH_TEXT,
    },
    HubEntry {
        name: "clip-vit-large-patch14-336",
        repo: "openai/clip-vit-large-patch14-336",
        revision: None,
        description: "CLIP ViT-L/14 at 336 px, the RAP paper's retriever (768-d, image + text)",
        licence: "MIT",
        approx_bytes: 1_710 * MB,
        kind: HfKind::Encoder,
        files: WITH_TEXT,
    },
    HubEntry {
        name: "dinov2-small",
        repo: "facebook/dinov2-small",
        revision: None,
        description: "DINOv2 ViT-S/14: image embeddings (384-d), strong for instance matching",
        licence: "Apache-2.0",
        approx_bytes: 88 * MB,
        kind: HfKind::Encoder,
        files: IMAGE_ONLY,
    },
    HubEntry {
        name: "dinov2-base",
        repo: "facebook/dinov2-base",
        revision: None,
        description: "DINOv2 ViT-B/14: image embeddings (768-d)",
        licence: "Apache-2.0",
        approx_bytes: 346 * MB,
        kind: HfKind::Encoder,
        files: IMAGE_ONLY,
    },
    HubEntry {
        name: "siglip-base-patch16-224",
        repo: "google/siglip-base-patch16-224",
        revision: None,
        description:
            "SigLIP B/16 224 px: image + text embeddings (768-d); text needs tokenizer.json",
        licence: "Apache-2.0",
        approx_bytes: 813 * MB,
        kind: HfKind::Encoder,
        files: WITH_TEXT,
    },
    HubEntry {
        name: "owlv2-base-patch16-ensemble",
        repo: "google/owlv2-base-patch16-ensemble",
        revision: None,
        description: "OWLv2 B/16: open-vocabulary detector, retrieval's region proposer \
                      ([retrieval] detector = \"owlv2-base-patch16-ensemble\")",
        licence: "Apache-2.0",
        approx_bytes: 620 * MB,
        kind: HfKind::Detector,
        files: WITH_TEXT,
    },
    HubEntry {
        name: "rap-phi3-mini",
        repo: "Hoar012/RAP-Phi3-mini",
        revision: None,
        description: "RAP-Phi3-mini: the RAP paper's LLaVA with a Phi-3-mini LM (4.1 B); \
                      ~5.6 GB of RAM at [generator.llava] quantize = \"q8_0\"; needs \
                      clip-vit-large-patch14-336",
        licence: "see its model card (not checked here)",
        approx_bytes: 8_300 * MB,
        kind: HfKind::Generator,
        files: GENERATOR,
    },
    HubEntry {
        name: "rap-llava-13b",
        repo: "Hoar012/RAP-LLaVA-13b",
        revision: None,
        description: "RAP-LLaVA-13b: the RAP paper's LLaVA-1.5-13B (Vicuna LM); ~9 GB of RAM \
                      at quantize = \"q4k\"; needs clip-vit-large-patch14-336",
        licence: "see its model card (not checked here)",
        approx_bytes: 26 * GB,
        kind: HfKind::Generator,
        files: GENERATOR,
    },
];

/// Where a registered checkpoint came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    Hub { repo: String, revision: String },
    Folder,
}

/// Size and sha256 of one file when it was registered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// What a registered checkpoint is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HfKind {
    /// An image (and maybe text) encoder: memory keys.
    #[default]
    Encoder,
    /// An open-vocabulary detector (OWLv2): retrieval's region proposer
    /// (`[retrieval] detector = "NAME"`).
    Detector,
    /// A LLaVA generator (RAP-Phi3-mini, RAP-LLaVA-13b): `rap ask --model NAME`.
    Generator,
}

/// A registered checkpoint's manifest as the Hub code sees it (stored as
/// [`crate::manifest::Manifest`]; earlier versions wrote this struct as `hf-model.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HfManifest {
    pub name: String,
    /// Encoder or detector (manifests written before detectors existed are encoders).
    #[serde(default)]
    pub kind: HfKind,
    /// `config.json`'s `model_type`.
    pub model_type: String,
    pub source: Source,
    /// The checkpoint folder.
    pub dir: PathBuf,
    pub files: Vec<FileRecord>,
    /// The encoder id its embeddings are stored under (empty for a detector).
    pub encoder_id: String,
    pub dim: usize,
    pub has_text: bool,
    /// Unix time in seconds.
    pub installed_at: u64,
}

impl HfManifest {
    /// The recorded sha256 of the weights.
    pub fn weights_sha256(&self) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.name == WEIGHTS)
            .map(|f| f.sha256.as_str())
    }
}

/// The catalogue entry called `name` (or whose repo id is `name`).
pub fn find(name: &str) -> Option<&'static HubEntry> {
    HUB_CATALOGUE
        .iter()
        .find(|e| e.name == name || e.repo == name)
}

/// Checks a local model name: lowercase letters, digits, `.`, `_`, `-`; not starting with `.`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !ok {
        return Err(Error::invalid(format!(
            "model name {name:?}: use lowercase letters, digits, '.', '_' and '-' (not starting with '.')"
        )));
    }
    if crate::pip::find(name).is_some() || name == "default" {
        return Err(Error::Conflict(format!(
            "model name {name:?} is taken by a built-in model"
        )));
    }
    Ok(())
}

/// The manifest of a registered checkpoint ([`crate::manifest`], seen as a checkpoint's);
/// `Ok(None)` when `name` is not a registered checkpoint.
pub fn manifest(models_dir: &Path, name: &str) -> Result<Option<HfManifest>> {
    Ok(crate::manifest::read(models_dir, name)?.and_then(crate::manifest::to_hub))
}

/// Every registered checkpoint (unreadable manifests are skipped with a warning).
pub fn list(models_dir: &Path) -> Vec<HfManifest> {
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return Vec::new();
    };
    let mut out: Vec<HfManifest> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match manifest(models_dir, &name) {
                Ok(m) => m,
                Err(err) => {
                    tracing::warn!("{err}");
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

use crate::manifest::now;

/// The shard file names a `model.safetensors.index.json` names (plain file names only).
pub fn shards(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(WEIGHTS_INDEX);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Model(format!("{}: not valid JSON: {e}", path.display())))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Model(format!("{}: no `weight_map` object", path.display())))?;
    let mut out: Vec<String> = Vec::new();
    for f in map.values() {
        let f = f
            .as_str()
            .filter(|f| {
                !f.is_empty()
                    && !f.contains(['/', '\\'])
                    && !f.starts_with('.')
                    && f.ends_with(".safetensors")
            })
            .ok_or_else(|| {
                Error::Model(format!(
                    "{}: a weight_map entry is not a shard file name",
                    path.display()
                ))
            })?;
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    }
    out.sort();
    Ok(out)
}

fn records(dir: &Path) -> Result<Vec<FileRecord>> {
    let mut out = Vec::new();
    let fixed = [
        CONFIG,
        PREPROCESSOR_CONFIG,
        WEIGHTS,
        TOKENIZER,
        WEIGHTS_INDEX,
        GENERATION_CONFIG,
    ]
    .map(String::from);
    for name in fixed.into_iter().chain(shards(dir)?) {
        let name = name.as_str();
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        out.push(FileRecord {
            name: name.to_string(),
            size,
            sha256: sha256_file(&path)?,
        });
    }
    Ok(out)
}

fn write_manifest(models_dir: &Path, m: &HfManifest) -> Result<()> {
    crate::manifest::write(models_dir, &crate::manifest::from_hub(m.clone()))
}

/// What loading a checkpoint folder tells about it (a [`Probe`]'s answer).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointFacts {
    pub kind: HfKind,
    /// `config.json`'s `model_type`.
    pub model_type: String,
    /// The encoder id its embeddings are stored under (empty for a detector).
    pub encoder_id: String,
    pub dim: usize,
    pub has_text: bool,
}

/// Loads the checkpoint folder `dir` (the weights' sha256 given when already known) and says
/// what it is; an error when it does not load. Supplied by the caller that has the model code.
pub type Probe<'a> = &'a dyn Fn(&Path, Option<&str>) -> Result<CheckpointFacts>;

/// Registers a checkpoint folder the user already has under `name`: loads it through `probe`
/// (so a broken folder is refused now, not at the first search), records its files' sha256,
/// and writes the manifest. The folder stays where it is.
pub fn add_folder(models_dir: &Path, name: &str, dir: &Path, probe: Probe) -> Result<HfManifest> {
    check_name(name)?;
    if manifest(models_dir, name)?.is_some() {
        return Err(Error::Conflict(format!(
            "a model called {name} is already registered (rap models rm {name} first)"
        )));
    }
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let files = records(&dir)?;
    let facts = probe(&dir, weights_sha256(&files))?;
    let m = manifest_for(name, facts, Source::Folder, dir, files);
    write_manifest(models_dir, &m)?;
    Ok(m)
}

fn weights_sha256(files: &[FileRecord]) -> Option<&str> {
    files
        .iter()
        .find(|f| f.name == WEIGHTS)
        .map(|f| f.sha256.as_str())
}

fn manifest_for(
    name: &str,
    facts: CheckpointFacts,
    source: Source,
    dir: PathBuf,
    files: Vec<FileRecord>,
) -> HfManifest {
    HfManifest {
        name: name.to_string(),
        kind: facts.kind,
        model_type: facts.model_type,
        source,
        dir,
        files,
        encoder_id: facts.encoder_id,
        dim: facts.dim,
        has_text: facts.has_text,
        installed_at: now(),
    }
}

/// One problem [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub problem: String,
}

/// Re-hashes every recorded file of `name` and, when they all match, checks through `probe`
/// that the folder still loads as what was registered; returns the problems, empty when all is
/// well.
pub fn verify(models_dir: &Path, name: &str, probe: Probe) -> Result<Vec<Problem>> {
    let m =
        manifest(models_dir, name)?.ok_or_else(|| Error::not_found("model", name.to_string()))?;
    let mut problems = Vec::new();
    for f in &m.files {
        let path = m.dir.join(&f.name);
        let problem = match std::fs::metadata(&path) {
            Err(_) => Some("missing".to_string()),
            Ok(md) if md.len() != f.size => Some(format!(
                "has {} bytes, {} were registered",
                md.len(),
                f.size
            )),
            Ok(_) => match sha256_file(&path) {
                Ok(s) if s == f.sha256 => None,
                Ok(s) => Some(format!("sha256 is {s}, {} was registered", f.sha256)),
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(problem) = problem {
            problems.push(Problem {
                file: path,
                problem,
            });
        }
    }
    if problems.is_empty() {
        match probe(&m.dir, m.weights_sha256()) {
            Ok(facts) if m.kind == HfKind::Encoder && facts.encoder_id != m.encoder_id => problems
                .push(Problem {
                    file: m.dir.clone(),
                    problem: format!(
                        "loads as encoder {} but {} was registered",
                        facts.encoder_id, m.encoder_id
                    ),
                }),
            Ok(_) => {}
            Err(e) => problems.push(Problem {
                file: m.dir.clone(),
                problem: e.to_string(),
            }),
        }
    }
    Ok(problems)
}

/// Unregisters `name`. A Hub install's files are deleted; a user's folder (`add`) never is.
pub fn remove(models_dir: &Path, name: &str) -> Result<HfManifest> {
    let m =
        manifest(models_dir, name)?.ok_or_else(|| Error::not_found("model", name.to_string()))?;
    let dir = models_dir.join(name);
    match m.source {
        Source::Hub { .. } => std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?,
        Source::Folder => {
            let path = dir.join(crate::manifest::FILE);
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            let _ = std::fs::remove_dir(&dir);
        }
    }
    Ok(m)
}

// ---- installing from the Hub ----

/// What a Hub installation is doing, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubProgress {
    /// Starting a file of `size` bytes.
    File {
        name: String,
        size: u64,
    },
    /// Bytes of the current file so far.
    Bytes(u64),
    Verifying {
        name: String,
    },
}

struct ProgressAdapter<'a> {
    f: &'a mut dyn FnMut(HubProgress),
    done: u64,
}

impl hf_hub::api::Progress for ProgressAdapter<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.done = 0;
        (self.f)(HubProgress::File {
            name: filename.to_string(),
            size: size as u64,
        });
    }
    fn update(&mut self, size: usize) {
        self.done += size as u64;
        (self.f)(HubProgress::Bytes(self.done));
    }
    fn finish(&mut self) {}
}

fn hub_error(endpoint: &str, repo: &str, file: &str, e: hf_hub::api::sync::ApiError) -> Error {
    use hf_hub::api::sync::ApiError;
    let unreachable = |detail: String| {
        Error::Model(format!(
            "cannot reach the Hugging Face Hub at {endpoint} to download {repo}/{file} \
             ({detail}); download the checkpoint folder on a machine that can and register it \
             with `rap models add NAME --path DIR`"
        ))
    };
    match e {
        ApiError::RequestError(inner) => match *inner {
            ureq::Error::Status(404, _) => Error::not_found(
                "file on the Hugging Face Hub",
                format!("{repo}/{file} (check the repository id and revision)"),
            ),
            ureq::Error::Status(code @ (401 | 403), _) => Error::Model(format!(
                "the Hugging Face Hub refused {repo}/{file} (HTTP {code}): a gated or private \
                 repository needs a token (HF_TOKEN)"
            )),
            ureq::Error::Status(code, _) => Error::Model(format!(
                "the Hugging Face Hub answered HTTP {code} for {repo}/{file}"
            )),
            ureq::Error::Transport(t) => unreachable(t.to_string()),
        },
        ApiError::TooManyRetries(inner) => hub_error(endpoint, repo, file, *inner),
        other => unreachable(other.to_string()),
    }
}

/// Installs a Hugging Face checkpoint: a catalogue name (`clip-vit-large-patch14-336`) or any
/// Hub repository id (`org/name`, installed as `name`), from [`Tools::hub_endpoint`] (default
/// the public Hub). The downloaded folder is checked with `probe` before it counts as
/// installed. Already installed models are verified, not downloaded again.
pub fn install(
    models_dir: &Path,
    id: &str,
    tools: &Tools,
    probe: Probe,
    progress: &mut dyn FnMut(HubProgress),
) -> Result<HfManifest> {
    let entry = find(id);
    let (name, repo, revision, files): (String, String, String, Vec<HubFile>) = match entry {
        Some(e) => (
            e.name.to_string(),
            e.repo.to_string(),
            e.revision.unwrap_or("main").to_string(),
            e.files.to_vec(),
        ),
        None if id.contains('/') => {
            let (repo, revision) = match id.split_once('@') {
                Some((r, rev)) => (r.to_string(), rev.to_string()),
                None => (id.to_string(), "main".to_string()),
            };
            let name = repo
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            (name, repo, revision, WITH_TEXT.to_vec())
        }
        None => {
            let names: Vec<&str> = HUB_CATALOGUE.iter().map(|e| e.name).collect();
            return Err(Error::not_found(
                "model",
                format!(
                    "{id} (known: {}; or a Hugging Face repository id like org/name)",
                    names.join(", ")
                ),
            ));
        }
    };
    check_name(&name)?;
    if let Some(m) = manifest(models_dir, &name)? {
        progress(HubProgress::Verifying { name: name.clone() });
        let problems = verify(models_dir, &name, probe)?;
        if problems.is_empty() {
            return Ok(m);
        }
        return Err(Error::Model(format!(
            "{name} is installed but damaged ({}: {}); `rap models rm {name}` and install again",
            problems[0].file.display(),
            problems[0].problem
        )));
    }
    std::fs::create_dir_all(models_dir).map_err(|e| Error::io(models_dir, e))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".install-{name}-"))
        .tempdir_in(models_dir)
        .map_err(|e| Error::io(models_dir, e))?;
    let cache = staging.path().join("cache");
    let endpoint = tools
        .hub_endpoint
        .clone()
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_endpoint(endpoint.clone())
        .with_cache_dir(cache)
        .with_progress(false)
        .build()
        .map_err(|e| Error::Model(format!("Hugging Face Hub client: {e}")))?;
    let api_repo = api.repo(hf_hub::Repo::with_revision(
        repo.clone(),
        hf_hub::RepoType::Model,
        revision.clone(),
    ));
    let out = staging.path().join("model");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    for f in &files {
        let adapter = ProgressAdapter {
            f: &mut *progress,
            done: 0,
        };
        let path = match api_repo.download_with_progress(f.name, adapter) {
            Ok(p) => p,
            Err(e) => match hub_error(&endpoint, &repo, f.name, e) {
                Error::NotFound { .. } if !f.required => continue,
                e => return Err(e),
            },
        };
        let real = std::fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?;
        let dest = out.join(f.name);
        std::fs::rename(&real, &dest).map_err(|e| Error::io(&dest, e))?;
        if let Some(pin) = f.sha256 {
            progress(HubProgress::Verifying {
                name: f.name.to_string(),
            });
            let got = sha256_file(&dest)?;
            if got != pin {
                return Err(Error::Model(format!(
                    "{repo}/{}: sha256 {got} but {pin} is pinned; refusing it (nothing was installed)",
                    f.name
                )));
            }
        }
    }
    // A sharded checkpoint: the shards its index names.
    for shard in shards(&out)? {
        let adapter = ProgressAdapter {
            f: &mut *progress,
            done: 0,
        };
        let path = api_repo
            .download_with_progress(&shard, adapter)
            .map_err(|e| hub_error(&endpoint, &repo, &shard, e))?;
        let real = std::fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?;
        let dest = out.join(&shard);
        std::fs::rename(&real, &dest).map_err(|e| Error::io(&dest, e))?;
    }
    let final_dir = models_dir.join(&name);
    if final_dir.exists() {
        return Err(Error::Conflict(format!(
            "{} exists but is not a registered model; move it away first",
            final_dir.display()
        )));
    }
    std::fs::rename(&out, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    let result = (|| {
        let files = records(&final_dir)?;
        let facts = probe(&final_dir, weights_sha256(&files))?;
        let source = Source::Hub {
            repo: repo.clone(),
            revision: revision.clone(),
        };
        let m = manifest_for(&name, facts, source, final_dir.clone(), files);
        write_manifest(models_dir, &m)?;
        Ok(m)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&final_dir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_lists_the_issue_checkpoints() {
        for repo in [
            "openai/clip-vit-base-patch32",
            "openai/clip-vit-large-patch14",
            "openai/clip-vit-large-patch14-336",
            "facebook/dinov2-small",
            "facebook/dinov2-base",
            "google/siglip-base-patch16-224",
            "google/owlv2-base-patch16-ensemble",
        ] {
            let e = find(repo).unwrap();
            assert_eq!(find(e.name), Some(e));
            check_name(e.name).unwrap();
            assert!(e.files.iter().any(|f| f.name == WEIGHTS && f.required));
            assert!(e.approx_bytes > 0);
        }
        // The RAP generators come sharded or whole: neither weights file is required alone.
        for repo in ["Hoar012/RAP-Phi3-mini", "Hoar012/RAP-LLaVA-13b"] {
            let e = find(repo).unwrap();
            check_name(e.name).unwrap();
            assert!(e.files.iter().any(|f| f.name == WEIGHTS_INDEX));
            assert!(e.files.iter().any(|f| f.name == TOKENIZER && f.required));
            assert!(e.approx_bytes > GB);
        }
        assert!(check_name("Bad Name").is_err());
        assert!(check_name("efficientnet-lite0").is_err());
        assert!(check_name(".hidden").is_err());
    }

    #[test]
    fn shards_are_read_from_the_index_and_odd_names_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(shards(tmp.path()).unwrap().is_empty());
        let index = tmp.path().join(WEIGHTS_INDEX);
        std::fs::write(
            &index,
            r#"{"weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#,
        )
        .unwrap();
        assert_eq!(
            shards(tmp.path()).unwrap(),
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );
        std::fs::write(&index, r#"{"weight_map": {"a": "../x.safetensors"}}"#).unwrap();
        assert!(shards(tmp.path()).is_err());
    }

    #[test]
    fn an_unreachable_hub_is_a_clear_error_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        // Nothing listens on the discard port of the loopback interface.
        let tools = Tools {
            hub_endpoint: Some("http://127.0.0.1:9".into()),
            ..Tools::default()
        };
        let never = |_: &Path, _: Option<&str>| -> Result<CheckpointFacts> {
            unreachable!("nothing was downloaded to probe")
        };
        let err = install(tmp.path(), "dinov2-small", &tools, &never, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot reach the Hugging Face Hub at http://127.0.0.1:9")
                && err.contains("facebook/dinov2-small")
                && err.contains("rap models add"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        let err = install(tmp.path(), "nope", &Tools::default(), &never, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope") && err.contains("dinov2-small"),
            "{err}"
        );
    }
}
