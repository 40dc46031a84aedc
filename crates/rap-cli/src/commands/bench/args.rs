//! The flags of each `rap bench` subcommand and the `rap_bench` options they become. The
//! defaults of `memory`, `vectors` and `scale` are their options' own (`Default`); what a
//! workload needs from the application (the default encoder, an installed model file) is
//! resolved here, through the context, when the workload asks for it.

use crate::context::Context;
use anyhow::Result;
use rap_bench::generate::{GenerateOptions, GgufLocator};
use rap_bench::memory::MemoryOptions;
use rap_bench::retrieval::RetrievalOptions;
use rap_bench::scale::{self, ScaleOptions};
use rap_bench::vectors::{self, VectorsOptions};
use rap_core::{Error, ImageEncoder};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct MemoryArgs {
    /// Concepts in the store (one key each)
    #[arg(long, default_value_t = MemoryOptions::default().concepts)]
    concepts: usize,
    /// Key dimension (1280 = the default encoder)
    #[arg(long, default_value_t = MemoryOptions::default().dim)]
    dim: usize,
    /// How many single adds and removes to time
    #[arg(long, default_value_t = MemoryOptions::default().samples)]
    samples: usize,
}

impl From<MemoryArgs> for MemoryOptions {
    fn from(args: MemoryArgs) -> Self {
        MemoryOptions {
            concepts: args.concepts,
            dim: args.dim,
            samples: args.samples,
        }
    }
}

#[derive(clap::Args)]
pub struct RetrievalArgs {
    /// A folder with one folder of photos per subject: the first photo of each is remembered,
    /// the others are the queries (full-size photos such as dreambooth-dev give the figures
    /// the README quotes) [default: the built-in demo photos, 480x480]
    #[arg(long, value_name = "DIR")]
    dataset: Option<PathBuf>,
    /// Window sizes for region proposals, as fractions of the shorter side
    /// (comma-separated; `none` = the whole image only) [default: as `rap retrieve`]
    #[arg(long, value_delimiter = ',')]
    scales: Option<Vec<String>>,
    /// Encode every region of every query: no cascade [default: the cascade, as `rap
    /// retrieve`]
    #[arg(long)]
    no_cascade: bool,
    /// Queries to time at most (0 = every photo that is not a reference)
    #[arg(long, default_value_t = 0)]
    queries: usize,
}

impl RetrievalArgs {
    /// The options, with the installed default encoder (loaded when the benchmark starts), and
    /// the temporary folder holding the built-in photos when no `--dataset` is given (it must
    /// outlive the benchmark).
    pub fn options(self, ctx: &Context) -> Result<(RetrievalOptions, Option<tempfile::TempDir>)> {
        let window_scales = super::super::window_scales(self.scales)?;
        let models_dir = ctx.models_path()?.to_path_buf();
        let (dataset, built_in) = match self.dataset {
            Some(dir) => (dir, None),
            None => {
                let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
                crate::demo_photos::write_folders(dir.path())?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let options = RetrievalOptions {
            dataset,
            window_scales,
            cascade: !self.no_cascade,
            queries: self.queries,
            encoder: Box::new(move || -> rap_core::Result<Arc<dyn ImageEncoder>> {
                let device = rap_app::environment::device()?;
                Ok(Arc::from(rap_app::models::load_default_encoder(
                    &models_dir,
                    &device,
                )?))
            }),
            preprocess: rap_vision::EFFICIENTNET_LITE0_PREPROCESS,
            limits: *ctx.limits(),
        };
        Ok((options, built_in))
    }
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Installed model (catalogue name) [default: smollm2-135m-instruct]
    #[arg(long, conflicts_with = "gguf")]
    model: Option<String>,
    /// A GGUF file instead of an installed model
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// Prompt length in tokens
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens to generate
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Timed runs (the median is reported)
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// CPU threads [default: candle's choice, the physical cores]
    #[arg(long)]
    threads: Option<usize>,
}

impl GenerateArgs {
    /// The options, with `--gguf` or the installed model's file (looked up when the
    /// benchmark asks for it).
    pub fn options(self, ctx: &Context) -> Result<GenerateOptions> {
        let gguf: GgufLocator = match self.gguf {
            Some(path) => Box::new(move || Ok(path)),
            None => {
                let name = self
                    .model
                    .unwrap_or_else(|| "smollm2-135m-instruct".to_owned());
                let dir = ctx.models_dir()?;
                Box::new(move || {
                    let entry = rap_models::pip::find(&name).ok_or_else(|| {
                        Error::invalid(format!(
                            "unknown model {name:?}: `rap models list` shows the catalogue"
                        ))
                    })?;
                    let path = rap_models::pip::model_path(&dir, entry);
                    if !path.is_file() {
                        return Err(Error::not_installed(
                            name.as_str(),
                            format!(
                                "model {name} is not installed in {}: run `rap models install \
                                 {name}`",
                                dir.display()
                            ),
                        ));
                    }
                    Ok(path)
                })
            }
        };
        Ok(GenerateOptions {
            gguf,
            prompt_tokens: self.prompt_tokens,
            gen_tokens: self.gen_tokens,
            runs: self.runs,
            threads: match self.threads {
                // Refused by the workload, with the others' checks.
                Some(0) => 0,
                Some(n) => {
                    rap_app::environment::set_candle_threads(n);
                    n
                }
                None => rap_app::environment::candle_threads(),
            },
            device: rap_app::environment::device()?,
        })
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// Keys around cluster centres, like real embeddings
    Clustered,
    /// Uniform random unit keys (no structure: the hardest case for a graph index)
    Uniform,
}

#[derive(clap::Args, Clone)]
pub struct VectorsArgs {
    /// Index sizes (keys), comma-separated
    #[arg(long, value_delimiter = ',', default_values_t = VectorsOptions::default().sizes)]
    pub sizes: Vec<usize>,
    /// Key dimension (1280 = the default encoder)
    #[arg(long, default_value_t = VectorsOptions::default().dim)]
    pub dim: usize,
    /// The keys: clustered like real embeddings, or uniform random
    #[arg(long, value_enum, default_value_t = Data::Clustered)]
    pub data: Data,
    /// Cluster centres of clustered keys
    #[arg(long, default_value_t = VectorsOptions::default().clusters)]
    pub clusters: usize,
    /// Queries per measurement
    #[arg(long, default_value_t = VectorsOptions::default().queries)]
    pub queries: usize,
    /// HNSW search breadths to measure (64 is what the memory uses)
    #[arg(long, value_delimiter = ',', default_values_t = VectorsOptions::default().ef)]
    pub ef: Vec<usize>,
    /// Write each size's keys and queries here as raw little-endian f32
    /// (`keys-N.f32`, `queries-N.f32`) for tools/bench/faiss_compare.py
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

impl From<VectorsArgs> for VectorsOptions {
    fn from(args: VectorsArgs) -> Self {
        VectorsOptions {
            sizes: args.sizes,
            dim: args.dim,
            data: match args.data {
                Data::Clustered => vectors::Data::Clustered,
                Data::Uniform => vectors::Data::Uniform,
            },
            clusters: args.clusters,
            queries: args.queries,
            ef: args.ef,
            dump: args.dump,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite store (a new file under --dir)
    Embedded,
    /// PostgreSQL + pgvector at RAP_DATABASE_URL (an empty database)
    Postgres,
}

#[derive(clap::Args, Clone)]
pub struct ScaleArgs {
    /// The memory to load and search
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    pub backend: Backend,
    /// Concepts in all (one image and one key each)
    #[arg(long, default_value_t = ScaleOptions::default().concepts)]
    pub concepts: usize,
    /// Tenants they are spread over (tenant 0 gets exactly 10)
    #[arg(long, default_value_t = ScaleOptions::default().tenants)]
    pub tenants: usize,
    /// Key dimension (1280 = the default encoder, 384 = DINOv2-small)
    #[arg(long, default_value_t = ScaleOptions::default().dim)]
    pub dim: usize,
    /// Cluster centres the keys gather around (shared by all tenants)
    #[arg(long, default_value_t = ScaleOptions::default().clusters)]
    pub clusters: usize,
    /// Concepts per add_concepts transaction (and per put_keys transaction after it)
    #[arg(long, default_value_t = ScaleOptions::default().batch)]
    pub batch: usize,
    /// Threads loading different tenants at once (the embedded store writes one at a time)
    #[arg(long, default_value_t = ScaleOptions::default().writers)]
    pub writers: usize,
    /// Searches of random tenants; as many again over the large tenants; 100 of the
    /// 10-concept tenant
    #[arg(long, default_value_t = ScaleOptions::default().queries)]
    pub queries: usize,
    /// Results per search
    #[arg(long, default_value_t = ScaleOptions::default().k)]
    pub k: usize,
    /// PostgreSQL: HNSW search breadths (hnsw.ef_search) to search the large tenants with;
    /// the first is also used for every other search
    #[arg(long, value_delimiter = ',', default_values_t = ScaleOptions::default().ef_search)]
    pub ef_search: Vec<usize>,
    /// PostgreSQL: a tenant with more keys than this gets its own HNSW index (the store's
    /// default: 20,000)
    #[arg(long)]
    pub hnsw_above: Option<usize>,
    /// Embedded: the folder for the store (new or empty; default a temporary folder,
    /// removed after)
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write the JSON report to this file
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ScaleArgs {
    /// The options; `--backend postgres` loads the database at `database_url`
    /// (RAP_DATABASE_URL).
    pub fn options(self, database_url: Option<String>) -> ScaleOptions {
        ScaleOptions {
            backend: match self.backend {
                Backend::Embedded => scale::Backend::Embedded,
                Backend::Postgres => scale::Backend::Postgres,
            },
            concepts: self.concepts,
            tenants: self.tenants,
            dim: self.dim,
            clusters: self.clusters,
            batch: self.batch,
            writers: self.writers,
            queries: self.queries,
            k: self.k,
            ef_search: self.ef_search,
            hnsw_above: self.hnsw_above,
            dir: self.dir,
            database_url,
        }
    }
}
