//! The configuration: `DATA_DIR/config.toml`, overridden by environment variables.
//!
//! ```toml
//! [generator]
//! kind = "local"                    # or "openai"
//! model = "smollm2-135m-instruct"   # catalogue name of the local GGUF model
//! template = "vicuna_v1"            # template for `rap prompt` (local models use their own)
//! temperature = 0.2
//! # repetition_penalty = 1.1        # default: 1.1 for a local GGUF model (small ones loop
//! #                                 # without it), 1.0 for LLaVA; not sent to a server
//! # path = "/models/RAP-LLaVA-13b"  # a local LLaVA-1.5 folder (llava-hf or original layout):
//! #                                 # run it, prompted with `template`, instead of `model`
//! # lora = ["/models/my-adapter"]   # PEFT LoRA adapters merged into it at load time
//!
//! [generator.llava]                 # a local LLaVA model (`path`, or an installed one by name)
//! quantize = "none"                 # "q8_0" or "q4k": its language model's linear weights
//!                                   # quantized while loading (RAP-Phi3-mini in ~4 GB at q8_0);
//!                                   # the vision tower and projector stay as they are
//!
//! [generator.openai]                # any OpenAI-compatible server (rap_llm::OpenAiConfig)
//! base_url = "http://127.0.0.1:8000/v1"
//! model = "rap-llava"
//! api_key_env = "MY_KEY_VARIABLE"
//!
//! [retrieval]
//! top_k = 2
//! threshold = 0.55                  # the decision's base floor (see rap_engine::retrieve)
//! margin = 0.05                     # over the runner-up concept at the same region
//! stability_weight = 0.0            # how much each concept's floor follows its stability
//! cascade = true                    # the smallest windows only when the others do not decide
//! # detector = "centernet"          # a detector whose boxes join the regions retrieval looks
//! #                                 # at: "centernet" (rap models install centernet), or an
//! #                                 # OWLv2 checkpoint (a name from `rap models add NAME --path
//! #                                 # DIR`, or the folder), queried with the concepts'
//! #                                 # categories; none by default
//! # detector_threshold = 0.1        # its boxes scoring below this are dropped
//! # detector_max_boxes = 20         # at most this many per image
//!
//! [server]                          # `rap serve`
//! allow_image_urls = false          # let chat image_url parts be http(s) URLs it fetches
//! workers = 2                       # threads for model work
//! queue = 32                        # requests that may wait for one (then 503)
//! max_body_mb = 32
//! # library_dirs = ["/srv/photos"]  # folders POST /v1/library/scan may index (none by default)
//! # admin_tenants = ["me"]          # tenants whose API keys may scan them (without API keys,
//! #                                 # every request may)
//!
//! [limits]                          # how big any input may be (README: "Limits")
//! max_image_bytes = 67108864        # an image file (64 MiB)
//! max_pixels = 100000000            # width x height (--max-pixels overrides it)
//! max_aspect_ratio = 50             # long edge : short edge
//! max_info_bytes = 65536            # a concept's info
//! max_category_chars = 100
//! max_aliases = 32                  # per concept
//! max_images_per_concept = 64       # reference images (and, apart, negatives)
//! max_concepts_per_import = 10000
//! max_chat_text_bytes = 262144      # `rap serve`: text of one chat request
//! max_chat_images = 8               # `rap serve`: images of one chat request
//! header_read_timeout_secs = 10     # `rap serve`: a request head must arrive in this time
//! model_timeout_secs = 300          # `rap serve`: model work of one request
//!
//! [memory]                          # where the memory is kept
//! backend = "embedded"              # DATA_DIR/memory.sqlite; or "postgres": a PostgreSQL
//!                                   # database with pgvector, shared by many processes
//! # database_url = "postgres://rap@db.internal:5432/rap"   # better: RAP_DATABASE_URL
//! # blob_store = "s3://rap-images/prod"   # postgres only: image bytes in an S3 bucket under
//! #                                       # PREFIX/TENANT/SHA256 (AWS_ENDPOINT_URL, AWS_REGION,
//! #                                       # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); without
//! #                                       # it they stay in the database
//!
//! [models]
//! # dir = "/srv/rap-models"         # where models are installed; default: the user's cache,
//! #                                 # $XDG_CACHE_HOME/rap/models (~/.cache/rap/models), shared
//! #                                 # by every data dir; a relative path is relative to DATA_DIR
//! ```
//!
//! Environment overrides: `RAP_GENERATOR` (`local` or `openai`), `RAP_OPENAI_BASE_URL`,
//! `RAP_OPENAI_MODEL`, `RAP_OPENAI_API_KEY_ENV`, `RAP_TEMPLATE`, `RAP_TOP_K`, `RAP_THRESHOLD`,
//! `RAP_MEMORY_BACKEND` (`embedded` or `postgres`), `RAP_DATABASE_URL`, `RAP_BLOB_STORE`,
//! `RAP_DETECTOR` (empty: none), `RAP_MODELS_DIR`.

use crate::store::MemoryBackend;
use rap_core::{Error, Result};
use rap_llm::OpenAiConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The config file's name in the data dir.
pub const FILE_NAME: &str = "config.toml";
/// The local model used when the config names none.
pub const DEFAULT_LOCAL_MODEL: &str = "smollm2-135m-instruct";
/// The repetition penalty for local GGUF models when the config sets none: SmolLM2-135M loops
/// on the text-only prompt until the token limit without one (llama.cpp's former default).
pub const DEFAULT_LOCAL_REPETITION_PENALTY: f32 = 1.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    Local,
    Openai,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    pub kind: GeneratorKind,
    /// Catalogue name of the local GGUF model.
    pub model: String,
    /// Template for `rap prompt` (a built-in name), and the local LLaVA model's.
    pub template: String,
    pub temperature: f32,
    /// Penalty on tokens the answer repeats ([`rap_core::GenerationParams::repetition_penalty`]);
    /// unset: [`DEFAULT_LOCAL_REPETITION_PENALTY`] for a local GGUF model, none for LLaVA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    /// A local LLaVA checkpoint folder; with `kind = "local"` it is run instead of `model`.
    /// Relative paths are relative to the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// PEFT LoRA adapter folders merged into the LLaVA weights at load time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lora: Vec<PathBuf>,
    /// `[generator.llava]`: how a local LLaVA model is loaded.
    pub llava: LlavaSection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openai: Option<OpenAiConfig>,
}

/// `[generator.llava]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlavaSection {
    /// `none`, `q8_0` or `q4k` ([`rap_llm_local::llava::Quantize`]).
    pub quantize: String,
}

impl Default for LlavaSection {
    fn default() -> Self {
        LlavaSection {
            quantize: "none".into(),
        }
    }
}

impl LlavaSection {
    /// The parsed `quantize` (empty: none).
    pub fn quantize(&self) -> Result<rap_llm_local::llava::Quantize> {
        self.quantize
            .parse()
            .map_err(|e: Error| Error::invalid(format!("generator.llava.quantize: {}", e.report())))
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            kind: GeneratorKind::Local,
            model: DEFAULT_LOCAL_MODEL.to_string(),
            template: "vicuna_v1".to_string(),
            temperature: 0.2,
            repetition_penalty: None,
            path: None,
            lora: Vec::new(),
            llava: LlavaSection::default(),
            openai: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    pub top_k: usize,
    /// The decision's base floor.
    pub threshold: f32,
    /// The decision's margin over the runner-up concept.
    pub margin: f32,
    /// How much each concept's floor follows its stability (0: one floor for all).
    pub stability_weight: f32,
    /// Whether queries run the cascade (`rap_engine::cascade`): the smallest windows are
    /// encoded only when the whole image and the larger windows do not already decide.
    pub cascade: bool,
    /// The detector whose boxes join retrieval's regions (`rap_detect::detector`):
    /// `centernet`, or an OWLv2 model name or folder. None by default (CenterNet did not
    /// help on dreambooth-dev).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    /// The detector's score threshold (0-1); unset: the detector's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detector_threshold: Option<f32>,
    /// At most this many detector boxes per image; unset: the detector's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detector_max_boxes: Option<usize>,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            top_k: 2,
            threshold: rap_engine::DEFAULT_THRESHOLD,
            margin: rap_engine::DEFAULT_MARGIN,
            stability_weight: rap_engine::DEFAULT_STABILITY_WEIGHT,
            cascade: true,
            detector: None,
            detector_threshold: None,
            detector_max_boxes: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub allow_image_urls: bool,
    pub workers: usize,
    pub queue: usize,
    pub max_body_mb: usize,
    /// Folders of this machine that `POST /v1/library/scan` may index (none: no scans).
    pub library_dirs: Vec<std::path::PathBuf>,
    /// Tenants whose API keys may scan this machine's disk (`POST /v1/library/scan`).
    pub admin_tenants: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            allow_image_urls: false,
            workers: 2,
            queue: 32,
            max_body_mb: 32,
            library_dirs: Vec::new(),
            admin_tenants: Vec::new(),
        }
    }
}

/// `[limits]`: the input limits ([`rap_core::Limits`]) and the server's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_image_bytes: u64,
    pub max_pixels: u64,
    pub max_aspect_ratio: u32,
    pub max_info_bytes: u64,
    pub max_category_chars: u64,
    pub max_aliases: u64,
    pub max_images_per_concept: u64,
    pub max_concepts_per_import: u64,
    pub max_chat_text_bytes: u64,
    pub max_chat_images: u64,
    pub header_read_timeout_secs: u64,
    pub model_timeout_secs: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let l = rap_core::Limits::default();
        LimitsSection {
            max_image_bytes: l.max_image_bytes,
            max_pixels: l.max_pixels,
            max_aspect_ratio: l.max_aspect_ratio,
            max_info_bytes: l.max_info_bytes,
            max_category_chars: l.max_category_chars,
            max_aliases: l.max_aliases,
            max_images_per_concept: l.max_images_per_concept,
            max_concepts_per_import: l.max_concepts_per_import,
            max_chat_text_bytes: 256 * 1024,
            max_chat_images: 8,
            header_read_timeout_secs: 10,
            model_timeout_secs: 300,
        }
    }
}

impl LimitsSection {
    /// The input limits every command checks.
    pub fn input(&self) -> rap_core::Limits {
        rap_core::Limits {
            max_image_bytes: self.max_image_bytes,
            max_pixels: self.max_pixels,
            max_aspect_ratio: self.max_aspect_ratio,
            max_info_bytes: self.max_info_bytes,
            max_category_chars: self.max_category_chars,
            max_aliases: self.max_aliases,
            max_images_per_concept: self.max_images_per_concept,
            max_concepts_per_import: self.max_concepts_per_import,
        }
    }

    /// Every limit must be at least 1 (a zero would refuse everything).
    fn check(&self) -> Result<()> {
        self.input().validate()?;
        for (name, v) in [
            ("max_chat_text_bytes", self.max_chat_text_bytes),
            ("max_chat_images", self.max_chat_images),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("model_timeout_secs", self.model_timeout_secs),
        ] {
            if v == 0 {
                return Err(Error::invalid(format!("limits.{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    #[default]
    Embedded,
    Postgres,
}

/// `[memory]`: which store holds the memory.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySection {
    pub backend: MemoryKind,
    /// The PostgreSQL URL (never shown by `rap config show`: it may hold a password).
    #[serde(skip_serializing)]
    pub database_url: Option<String>,
    /// `s3://BUCKET/PREFIX`: where the postgres backend keeps image bytes (else in the database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_store: Option<String>,
}

impl std::fmt::Debug for MemorySection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySection")
            .field("backend", &self.backend)
            .field("database_url", &self.database_url.as_ref().map(|_| "(set)"))
            .field("blob_store", &self.blob_store)
            .finish()
    }
}

/// `[models]`: where models are installed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsSection {
    /// The models directory (`RAP_MODELS_DIR` overrides it); `None`: the user's cache dir
    /// ([`crate::environment::default_models_dir`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub generator: GeneratorConfig,
    pub retrieval: RetrievalConfig,
    pub server: ServerSection,
    pub memory: MemorySection,
    pub limits: LimitsSection,
    pub models: ModelsSection,
}

impl Config {
    /// Reads `DATA_DIR/config.toml` (defaults when it does not exist), applies the environment
    /// overrides, checks every setting, and resolves relative paths against the data dir.
    pub fn load(data_dir: &Path) -> Result<Config> {
        let mut config = Self::read(data_dir)?;
        config.check()?;
        config.resolve_paths(data_dir);
        Ok(config)
    }

    /// The file (or the defaults) with the environment overrides, unchecked: a command that
    /// needs no generator checks only the sections it uses, so a bad generator setting does
    /// not stop it.
    pub fn read(data_dir: &Path) -> Result<Config> {
        let path = data_dir.join(FILE_NAME);
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Relative `generator.path`, `generator.lora` entries, `models.dir` and detector folders
    /// are relative to the data dir.
    pub fn resolve_paths(&mut self, data_dir: &Path) {
        let g = &mut self.generator;
        let models = self.models.dir.iter_mut();
        for p in g.path.iter_mut().chain(g.lora.iter_mut()).chain(models) {
            if p.is_relative() {
                *p = data_dir.join(&*p);
            }
        }
    }

    /// What `[memory]` chooses, or why it cannot be used.
    pub fn memory_backend(&self) -> Result<MemoryBackend> {
        Ok(match self.memory.backend {
            MemoryKind::Embedded if self.memory.blob_store.is_some() => {
                return Err(Error::invalid(
                    "memory.blob_store (RAP_BLOB_STORE) is for backend = postgres: the embedded \
                     memory keeps its images in its own file (unset it, or set \
                     RAP_MEMORY_BACKEND=postgres)",
                ))
            }
            MemoryKind::Embedded => MemoryBackend::Embedded,
            MemoryKind::Postgres => match &self.memory.database_url {
                Some(url) if !url.trim().is_empty() => MemoryBackend::Postgres {
                    url: url.trim().to_owned(),
                },
                _ => {
                    return Err(Error::invalid(
                        "memory.backend is postgres but no database URL is given: set \
                         RAP_DATABASE_URL (or memory.database_url)",
                    ))
                }
            },
        })
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = var("RAP_MEMORY_BACKEND") {
            self.memory.backend = match v.trim() {
                "embedded" | "sqlite" => MemoryKind::Embedded,
                "postgres" | "postgresql" => MemoryKind::Postgres,
                other => {
                    return Err(Error::invalid(format!(
                        "RAP_MEMORY_BACKEND={other:?}: use embedded or postgres"
                    )))
                }
            };
        }
        if let Some(dir) = var(crate::environment::MODELS_DIR_ENV).filter(|d| !d.trim().is_empty())
        {
            self.models.dir = Some(PathBuf::from(dir));
        }
        if let Some(url) = var("RAP_DATABASE_URL") {
            self.memory.database_url = Some(url);
        }
        if let Some(url) = var("RAP_BLOB_STORE") {
            self.memory.blob_store = Some(url.trim().to_owned()).filter(|u| !u.is_empty());
        }
        if let Some(v) = var("RAP_GENERATOR") {
            self.generator.kind = match v.trim() {
                "local" => GeneratorKind::Local,
                "openai" => GeneratorKind::Openai,
                other => {
                    return Err(Error::invalid(format!(
                        "RAP_GENERATOR={other:?}: use local or openai"
                    )))
                }
            };
        }
        let base = var("RAP_OPENAI_BASE_URL");
        let model = var("RAP_OPENAI_MODEL");
        let key = var("RAP_OPENAI_API_KEY_ENV");
        if base.is_some() || model.is_some() || key.is_some() {
            let o = self
                .generator
                .openai
                .get_or_insert_with(|| OpenAiConfig::new("", ""));
            if let Some(b) = base {
                o.base_url = b;
            }
            if let Some(m) = model {
                o.model = m;
            }
            if let Some(k) = key {
                o.api_key_env = Some(k);
            }
        }
        if let Some(t) = var("RAP_TEMPLATE") {
            self.generator.template = t;
        }
        if let Some(k) = var("RAP_TOP_K") {
            self.retrieval.top_k = k
                .trim()
                .parse()
                .map_err(|_| Error::invalid(format!("RAP_TOP_K={k:?}: not a whole number")))?;
        }
        if let Some(d) = var("RAP_DETECTOR") {
            self.retrieval.detector = Some(d.trim().to_owned()).filter(|d| !d.is_empty());
        }
        if let Some(t) = var("RAP_THRESHOLD") {
            self.retrieval.threshold = t
                .trim()
                .parse()
                .map_err(|_| Error::invalid(format!("RAP_THRESHOLD={t:?}: not a number")))?;
        }
        Ok(())
    }

    /// Checks every setting; the error names the setting at fault.
    pub fn check(&self) -> Result<()> {
        self.memory_backend()?;
        self.limits.check()?;
        rap_llm::Template::builtin(&self.generator.template).map_err(|e| {
            Error::invalid(format!(
                "generator.template (or RAP_TEMPLATE): {}",
                e.report()
            ))
        })?;
        self.generator.llava.quantize()?;
        if let Some(r) = self.generator.repetition_penalty {
            if !(r.is_finite() && r > 0.0) {
                return Err(Error::invalid(format!(
                    "generator.repetition_penalty must be a number > 0 (1 is none), got {r}"
                )));
            }
        }
        if self.retrieval.top_k == 0 {
            return Err(Error::invalid(
                "retrieval.top_k (or RAP_TOP_K) must be at least 1",
            ));
        }
        if !self.retrieval.threshold.is_finite() {
            return Err(Error::invalid(
                "retrieval.threshold (or RAP_THRESHOLD) must be a number",
            ));
        }
        for (name, value) in [
            ("retrieval.margin", self.retrieval.margin),
            (
                "retrieval.stability_weight",
                self.retrieval.stability_weight,
            ),
        ] {
            if !value.is_finite() {
                return Err(Error::invalid(format!(
                    "{name} must be a number, got {value}"
                )));
            }
        }
        if self.generator.kind == GeneratorKind::Openai {
            match &self.generator.openai {
                Some(o) if !o.base_url.trim().is_empty() && !o.model.trim().is_empty() => {}
                _ => {
                    return Err(Error::invalid(
                        "generator.kind is openai but [generator.openai] has no base_url and \
                         model (or set RAP_OPENAI_BASE_URL and RAP_OPENAI_MODEL)",
                    ))
                }
            }
        }
        Ok(())
    }
}

fn parse(text: &str, path: &Path) -> Result<Config> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| {
            text.as_bytes()[..s.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        });
        let msg = e.message().trim().to_string();
        match line {
            Some(l) => Error::invalid(format!("{}, line {l}: {msg}", path.display())),
            None => Error::invalid(format!("{}: {msg}", path.display())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_from_the_file_or_the_environment() {
        let mut c = parse("[memory]\nbackend = \"postgres\"\n", Path::new("c.toml")).unwrap();
        let e = c.memory_backend().unwrap_err().to_string();
        assert!(e.contains("RAP_DATABASE_URL"), "{e}");
        assert!(c.check().is_err());
        c.apply_env(|k| (k == "RAP_DATABASE_URL").then(|| "postgres://rap@127.0.0.1/rap".into()))
            .unwrap();
        assert_eq!(
            c.memory_backend().unwrap(),
            MemoryBackend::Postgres {
                url: "postgres://rap@127.0.0.1/rap".into()
            }
        );
        // The URL (it may hold a password) is never shown.
        assert!(!toml::to_string(&c).unwrap().contains("127.0.0.1"));
        assert!(!format!("{c:?}").contains("127.0.0.1"));
        c.apply_env(|k| (k == "RAP_MEMORY_BACKEND").then(|| "embedded".into()))
            .unwrap();
        assert_eq!(c.memory_backend().unwrap(), MemoryBackend::Embedded);
        let e = c
            .apply_env(|k| (k == "RAP_MEMORY_BACKEND").then(|| "mysql".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use embedded or postgres"), "{e}");
        assert_eq!(
            Config::default().memory_backend().unwrap(),
            MemoryBackend::Embedded
        );
    }

    #[test]
    fn detector_from_the_file_or_the_environment() {
        let text = "[retrieval]\ndetector = \"owlv2\"\ndetector_threshold = 0.2\n\
                    detector_max_boxes = 5\n";
        let mut c = parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(c.retrieval.detector.as_deref(), Some("owlv2"));
        assert_eq!(c.retrieval.detector_threshold, Some(0.2));
        assert_eq!(c.retrieval.detector_max_boxes, Some(5));
        assert!(toml::to_string(&c)
            .unwrap()
            .contains("detector = \"owlv2\""));
        c.apply_env(|k| (k == "RAP_DETECTOR").then(|| " centernet ".into()))
            .unwrap();
        assert_eq!(c.retrieval.detector.as_deref(), Some("centernet"));
        c.apply_env(|k| (k == "RAP_DETECTOR").then(String::new))
            .unwrap();
        assert_eq!(c.retrieval.detector, None, "empty: none");
        assert!(!toml::to_string(&Config::default())
            .unwrap()
            .contains("detector"));
        let e = parse("[retrieval]\ndetectr = \"x\"\n", Path::new("c.toml")).unwrap_err();
        assert!(format!("{e:#}").contains("detectr"), "{e:#}");
    }

    #[test]
    fn blob_store_from_the_file_or_the_environment_and_only_for_postgres() {
        let text = "[memory]\nbackend = \"postgres\"\nblob_store = \"s3://rap-images/prod\"\n";
        let mut c = parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(c.memory.blob_store.as_deref(), Some("s3://rap-images/prod"));
        // Shown (it names a bucket, no secret).
        assert!(toml::to_string(&c)
            .unwrap()
            .contains("s3://rap-images/prod"));
        c.apply_env(|k| match k {
            "RAP_BLOB_STORE" => Some("s3://other/p".into()),
            "RAP_DATABASE_URL" => Some("postgres://rap@127.0.0.1/rap".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.memory.blob_store.as_deref(), Some("s3://other/p"));
        c.check().unwrap();
        c.apply_env(|k| (k == "RAP_MEMORY_BACKEND").then(|| "embedded".into()))
            .unwrap();
        let e = c.check().unwrap_err().to_string();
        assert!(
            e.contains("RAP_BLOB_STORE") && e.contains("postgres"),
            "{e}"
        );
    }

    #[test]
    fn llava_quantize_parses_and_a_bad_one_is_refused() {
        let c = parse(
            "[generator.llava]\nquantize = \"q8_0\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.generator.llava.quantize().unwrap(),
            rap_llm_local::llava::Quantize::Q8_0
        );
        c.check().unwrap();
        assert_eq!(
            Config::default().generator.llava.quantize().unwrap(),
            rap_llm_local::llava::Quantize::None
        );
        let bad = parse(
            "[generator.llava]\nquantize = \"q3\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let err = bad.check().unwrap_err().to_string();
        assert!(
            err.contains("generator.llava.quantize") && err.contains("q4k"),
            "{err}"
        );
    }

    #[test]
    fn llava_path_and_lora_parse_and_resolve_against_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "[generator]\nkind = \"local\"\npath = \"llava\"\nlora = [\"/abs/adapter\", \"a2\"]\n",
        )
        .unwrap();
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(c.generator.kind, GeneratorKind::Local);
        assert_eq!(c.generator.path, Some(dir.path().join("llava")));
        assert_eq!(
            c.generator.lora,
            vec![PathBuf::from("/abs/adapter"), dir.path().join("a2")]
        );
        // Unset by default.
        let d = Config::default();
        assert!(d.generator.path.is_none() && d.generator.lora.is_empty());
    }

    #[test]
    fn parses_overrides_and_reports_lines() {
        let text = "[generator]\nkind = \"openai\"\n[generator.openai]\nbase_url = \"http://x/v1\"\nmodel = \"m\"\n[retrieval]\ntop_k = 3\n";
        let mut c = parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(c.generator.kind, GeneratorKind::Openai);
        assert_eq!(c.retrieval.top_k, 3);
        assert_eq!(c.generator.model, DEFAULT_LOCAL_MODEL);
        c.apply_env(|k| match k {
            "RAP_TOP_K" => Some("5".into()),
            "RAP_OPENAI_MODEL" => Some("other".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.retrieval.top_k, 5);
        assert_eq!(c.generator.openai.as_ref().unwrap().model, "other");
        c.check().unwrap();

        let e = parse("[retrieval]\ntop_k = 2\nbogus = 1\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml, line 3:"), "{e}");
        let e = parse("[memory]\nbackend = \"mysql\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("[generator]\nkind = \"cloud\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    /// The README's recipe for a real vision model: every `config.toml` it shows parses and
    /// passes the checks, and points at a loopback server that takes images.
    #[test]
    fn readme_vision_model_configs_parse() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("#### A real vision model")
            .expect("the README's vision-model recipe");
        let end = readme[start..]
            .find("\n### ")
            .map_or(readme.len(), |e| start + e);
        let blocks: Vec<&str> = readme[start..end]
            .split("```toml\n")
            .skip(1)
            .map(|b| &b[..b.find("```").unwrap()])
            .collect();
        assert_eq!(blocks.len(), 2, "one config for Ollama, one for vLLM");
        for text in blocks {
            let c = parse(text, Path::new("README.md")).unwrap();
            c.check().unwrap();
            assert_eq!(c.generator.kind, GeneratorKind::Openai);
            let o = c.generator.openai.unwrap();
            assert!(
                o.base_url.starts_with("http://127.0.0.1:"),
                "{}",
                o.base_url
            );
            assert!(o.accepts_images && o.context_length == Some(4096));
        }
    }
}
