//! `rap bench scale`: a service-sized memory (default 1,000,000 concepts across 10,000 tenants)
//! loaded through the real store API into the embedded SQLite store or PostgreSQL + pgvector
//! (`RAP_DATABASE_URL`), then searched one tenant at a time as `rap serve` does.
//!
//! Reports the insert rate (concepts with one image and one key each; `--batch` concepts per
//! `add_concepts` + `put_keys` pair of transactions), top-k latency p50/p95/p99 of per-tenant
//! searches, recall@k against exact search (computed here from the vectors the store holds),
//! the size on disk, and the 10-concept tenant's recall and foreign results (results that are
//! not its own keys: there must be none).
//!
//! The workload is skewed as a service's is: tenant 0 has exactly 10 concepts, a few large
//! tenants hold 6%, 4%, 3% and 2.5% of all concepts, and the rest follow a Zipf-like curve (a
//! few thousand down to a few dozen). Keys are synthetic but clustered like real embeddings:
//! each is a cluster centre (`--clusters` of them, shared by all tenants) plus noise (cosine
//! about 0.6 between two keys of a cluster, about 0 across clusters); uniform random vectors
//! have no neighbourhood structure, which makes any graph index look worse than on real data.
//! Each query is one of the tenant's keys plus noise (cosine about 0.94 to it), as a new photo
//! of a remembered concept is.
//!
//! Search goes the way the engine goes: PostgreSQL searches in the database (exact within a
//! tenant up to its HNSW threshold, the tenant's own HNSW index above it, at each `--ef-search`);
//! the embedded store is searched through a warm per-tenant `KeyIndex` (exact up to 50,000
//! keys, HNSW above), whose build on first use is timed apart.

use crate::report::{machine, summary};
use crate::synthetic::{noisy, Clusters, SplitMix, QUERY_NOISE};
use crate::Progress;
use rap_core::{Embedding, Error, ImageId, NewConcept, Region, Result, Tenant};
use rap_image::Limits;
use rap_memory::{ConceptStore, ImageInput, KeyEntry, KeyIndex, SqliteStore};
use rap_memory_postgres::{PgOptions, PgStore};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The memory a run loads and searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite store (a new file under [`ScaleOptions::dir`]).
    Embedded,
    /// PostgreSQL + pgvector at [`ScaleOptions::database_url`] (an empty database).
    Postgres,
}

/// What [`run`] loads and measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOptions {
    /// The memory to load and search (default the embedded store).
    pub backend: Backend,
    /// Concepts in all, one image and one key each (default 1,000,000).
    pub concepts: usize,
    /// Tenants they are spread over; tenant 0 gets exactly 10 (default 10,000).
    pub tenants: usize,
    /// Key dimension (default 1280, the default encoder's; 384 is DINOv2-small's).
    pub dim: usize,
    /// Cluster centres the keys gather around, shared by all tenants (default 1000).
    pub clusters: usize,
    /// Concepts per `add_concepts` transaction, and per `put_keys` transaction after it
    /// (default 1000).
    pub batch: usize,
    /// Threads loading different tenants at once; the embedded store writes one at a time
    /// (default 1).
    pub writers: usize,
    /// Searches of random tenants; as many again over the large tenants; 100 of the
    /// 10-concept tenant (default 1000).
    pub queries: usize,
    /// Results per search (default 10).
    pub k: usize,
    /// PostgreSQL: HNSW search breadths (`hnsw.ef_search`) to search the large tenants with;
    /// the first is also used for every other search (default 100, 40, 200).
    pub ef_search: Vec<usize>,
    /// PostgreSQL: a tenant with more keys than this gets its own HNSW index (default: the
    /// store's, 20,000).
    pub hnsw_above: Option<usize>,
    /// Embedded: the folder for the store, new or empty (default a temporary folder, removed
    /// after).
    pub dir: Option<PathBuf>,
    /// PostgreSQL: the database to load (an empty one); `rap` passes `RAP_DATABASE_URL`.
    pub database_url: Option<String>,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            backend: Backend::Embedded,
            concepts: 1_000_000,
            tenants: 10_000,
            dim: 1280,
            clusters: 1000,
            batch: 1000,
            writers: 1,
            queries: 1000,
            k: 10,
            ef_search: vec![100, 40, 200],
            hnsw_above: None,
            dir: None,
            database_url: None,
        }
    }
}

/// The encoder name the keys are stored under.
const ENCODER: &str = "bench-scale";
/// Concepts of the small tenant whose isolation is checked.
const TEN: usize = 10;
/// Shares of all concepts held by the large tenants (tenants 1, 2, ...).
const LARGE_SHARES: [f64; 4] = [0.06, 0.04, 0.03, 0.025];

/// Tenant sizes, key generation and queries: deterministic, so both backends get the same.
pub(crate) struct Workload {
    pub sizes: Vec<usize>,
    /// Indices of the large tenants.
    pub large: Vec<usize>,
    /// Global number of each tenant's first concept.
    first: Vec<usize>,
    clusters: Clusters,
}

impl Workload {
    pub fn new(concepts: usize, tenants: usize, dim: usize, clusters: usize) -> Result<Self> {
        if tenants < 2 {
            return Err(Error::invalid(
                "--tenants must be at least 2 (the 10-concept tenant and others)",
            ));
        }
        if dim < 2 {
            return Err(Error::invalid("--dim must be at least 2"));
        }
        if clusters == 0 {
            return Err(Error::invalid("--clusters must be at least 1"));
        }
        let n_large = ((tenants - 1) / 5).min(LARGE_SHARES.len());
        let large_sizes: Vec<usize> = LARGE_SHARES[..n_large]
            .iter()
            .map(|s| ((concepts as f64 * s) as usize).max(1))
            .collect();
        let n_small = tenants - 1 - n_large;
        let rest = concepts
            .checked_sub(TEN + large_sizes.iter().sum::<usize>())
            .filter(|&r| r >= n_small)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "--concepts {concepts} is too few for --tenants {tenants}: every tenant \
                     needs at least one concept, tenant 0 needs {TEN}"
                ))
            })?;
        // Zipf-like: the i-th small tenant's share falls as (i + 1)^-0.6.
        let weights: Vec<f64> = (0..n_small).map(|i| (i as f64 + 1.0).powf(-0.6)).collect();
        let total: f64 = weights.iter().sum();
        let spare = rest - n_small;
        let mut small: Vec<usize> = weights
            .iter()
            .map(|w| 1 + (spare as f64 * w / total) as usize)
            .collect();
        let mut left = rest - small.iter().sum::<usize>();
        for s in small.iter_mut() {
            if left == 0 {
                break;
            }
            *s += 1;
            left -= 1;
        }
        let mut sizes = vec![TEN];
        sizes.extend(&large_sizes);
        sizes.extend(small);
        let mut first = Vec::with_capacity(sizes.len());
        let mut n = 0;
        for s in &sizes {
            first.push(n);
            n += s;
        }
        Ok(Workload {
            sizes,
            large: (1..=n_large).collect(),
            first,
            clusters: Clusters::new(dim, clusters)?,
        })
    }

    pub fn concepts(&self) -> usize {
        self.sizes.iter().sum()
    }

    pub fn tenant(i: usize) -> Tenant {
        Tenant::new(format!("scale-{i:06}")).expect("a valid tenant name")
    }

    /// The cluster of concept `j` of tenant `t`.
    pub fn cluster(&self, t: usize, j: usize) -> usize {
        SplitMix::new(((t as u64) << 32) | j as u64).below(self.clusters.len())
    }

    /// The key of concept `j` of tenant `t`.
    pub fn key(&self, t: usize, j: usize) -> Embedding {
        self.clusters
            .key(self.cluster(t, j), (self.first[t] + j) as u64)
    }

    /// Query number `q` of tenant `t`: one of its keys plus noise.
    pub fn query(&self, t: usize, q: u64) -> Embedding {
        let mut rng = SplitMix::new((1 << 60) + ((t as u64) << 24) + q);
        let j = rng.below(self.sizes[t]);
        noisy(self.key(t, j).as_slice(), QUERY_NOISE, &mut rng)
    }

    /// A distinct small PNG for global concept number `n`.
    fn image(n: usize) -> Result<ImageInput> {
        let b = (n as u64).to_le_bytes();
        let img = image::RgbImage::from_fn(8, 8, |x, y| {
            let i = (y * 8 + x) as usize;
            image::Rgb([b[i % 8], (i as u8).wrapping_mul(31), b[(i + 3) % 8]])
        });
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .map_err(|e| Error::invalid(e.to_string()))?;
        ImageInput::from_bytes(out, &Limits::default())
    }

    /// Adds tenant `t`'s concepts `range` (one transaction) and their keys (one more).
    fn load_batch(
        &self,
        store: &dyn ConceptStore,
        t: usize,
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let tenant = Self::tenant(t);
        let batch = range
            .clone()
            .map(|j| {
                let new = NewConcept {
                    name: format!("c{j}"),
                    aliases: vec![],
                    category: "thing".into(),
                    info: String::new(),
                };
                Ok((new, vec![Self::image(self.first[t] + j)?]))
            })
            .collect::<Result<Vec<_>>>()?;
        let added = store.add_concepts(&tenant, batch)?;
        let keys: Vec<_> = added
            .iter()
            .zip(range)
            .map(|(c, j)| (c.images[0].id.clone(), Region::whole(8, 8), self.key(t, j)))
            .collect();
        store.put_keys(&tenant, ENCODER, &keys)?;
        Ok(())
    }
}

/// The `k` images whose keys are nearest `query` (ties by key), by brute force.
pub(crate) fn exact_top_k(entries: &[KeyEntry], query: &Embedding, k: usize) -> Vec<ImageId> {
    let mut scored: Vec<(f32, u64, &ImageId)> = entries
        .iter()
        .map(|e| (e.embedding.cosine(query), e.key, &e.image))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|x| x.2.clone()).collect()
}

/// How many of `got` are among `want` (the exact top-k), out of how many could be.
pub(crate) fn recall_hits(got: &[ImageId], want: &[ImageId]) -> (usize, usize) {
    let want_set: HashSet<&ImageId> = want.iter().collect();
    let mut seen = HashSet::new();
    let hits = got
        .iter()
        .filter(|g| want_set.contains(g) && seen.insert(*g))
        .count();
    (hits, want.len())
}

/// Searches one tenant at a time the way the engine does on each backend.
enum Searcher<'a> {
    /// In the database, with one store handle per HNSW search breadth.
    Postgres(Vec<(usize, PgStore)>),
    /// A warm per-tenant key index over the embedded store.
    Embedded {
        store: &'a SqliteStore,
        indexes: HashMap<usize, KeyIndex>,
        builds_ms: Vec<f64>,
        dim: usize,
    },
}

impl Searcher<'_> {
    /// Top-k of tenant `t` (with the `ef`-th store handle on PostgreSQL): results and
    /// milliseconds taken (an embedded index's first build is not counted).
    fn search(
        &mut self,
        t: usize,
        query: &Embedding,
        k: usize,
        ef: usize,
    ) -> Result<(Vec<ImageId>, f64)> {
        let tenant = Workload::tenant(t);
        match self {
            Searcher::Postgres(stores) => {
                let store = &stores[ef].1;
                let start = Instant::now();
                let hits = store
                    .search_keys(&tenant, ENCODER, std::slice::from_ref(query), k)?
                    .and_then(|mut h| h.pop())
                    .ok_or_else(|| Error::storage("the PostgreSQL store did not search"))?;
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                Ok((hits.into_iter().map(|h| h.location.image).collect(), ms))
            }
            Searcher::Embedded {
                store,
                indexes,
                builds_ms,
                dim,
            } => {
                let index = match indexes.entry(t) {
                    Entry::Occupied(built) => built.into_mut(),
                    Entry::Vacant(entry) => {
                        let start = Instant::now();
                        let index = KeyIndex::build(*store, &tenant, ENCODER, *dim)?;
                        builds_ms.push(start.elapsed().as_secs_f64() * 1000.0);
                        entry.insert(index)
                    }
                };
                let start = Instant::now();
                index.refresh(*store)?;
                let got = index
                    .search(query, k)?
                    .into_iter()
                    .map(|(_, image, _)| image.clone())
                    .collect();
                Ok((got, start.elapsed().as_secs_f64() * 1000.0))
            }
        }
    }
}

/// The stored keys of each tenant searched (read once, outside the timing) and its images.
struct Truth<'a> {
    store: &'a dyn ConceptStore,
    tenants: HashMap<usize, (Vec<KeyEntry>, HashSet<ImageId>)>,
}

impl Truth<'_> {
    fn of(&mut self, t: usize) -> Result<&(Vec<KeyEntry>, HashSet<ImageId>)> {
        if !self.tenants.contains_key(&t) {
            let entries = self.store.keys(&Workload::tenant(t), ENCODER)?;
            let images = entries.iter().map(|e| e.image.clone()).collect();
            self.tenants.insert(t, (entries, images));
        }
        Ok(&self.tenants[&t])
    }
}

/// Latency, recall and foreign results of one group of searches.
#[derive(Default)]
struct Group {
    ms: Vec<f64>,
    hits: usize,
    possible: usize,
    foreign: usize,
    ranked_exactly: usize,
}

impl Group {
    fn record(
        &mut self,
        got: &[ImageId],
        ms: f64,
        truth: &(Vec<KeyEntry>, HashSet<ImageId>),
        query: &Embedding,
        k: usize,
    ) {
        let want = exact_top_k(&truth.0, query, k);
        let (hits, possible) = recall_hits(got, &want);
        self.hits += hits;
        self.possible += possible;
        self.foreign += got.iter().filter(|g| !truth.1.contains(*g)).count();
        self.ranked_exactly += usize::from(got == want.as_slice());
        self.ms.push(ms);
    }

    fn recall(&self) -> f64 {
        self.hits as f64 / self.possible.max(1) as f64
    }

    fn report(&self, k: usize) -> serde_json::Value {
        let mut v = summary(self.ms.clone());
        v[format!("recall_at_{k}")] = serde_json::json!(self.recall());
        v["foreign_results"] = serde_json::json!(self.foreign);
        v["ranked_exactly_share"] =
            serde_json::json!(self.ranked_exactly as f64 / self.ms.len().max(1) as f64);
        v
    }
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Loads the workload into `store` with `writers` threads; returns seconds taken.
fn load(
    store: &dyn ConceptStore,
    w: &Workload,
    batch: usize,
    writers: usize,
    progress: &dyn Progress,
) -> Result<f64> {
    progress.start(w.concepts() as u64, "loading");
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..writers.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let t = next.fetch_add(1, Ordering::Relaxed);
                        if t >= w.sizes.len() {
                            return Ok(());
                        }
                        let size = w.sizes[t];
                        let mut from = 0;
                        while from < size {
                            let to = (from + batch).min(size);
                            w.load_batch(store, t, from..to)
                                .map_err(|e| e.context(format!("loading tenant {t}")))?;
                            progress.inc((to - from) as u64);
                            from = to;
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| Error::storage("a loading thread panicked"))??;
        }
        Ok(())
    })?;
    progress.finish();
    Ok(start.elapsed().as_secs_f64())
}

/// Runs the searches and returns the search part of the report.
fn measure(
    searcher: &mut Searcher,
    truth: &mut Truth,
    w: &Workload,
    args: &ScaleOptions,
    progress: &dyn Progress,
) -> Result<serde_json::Value> {
    let k = args.k;
    let mut rng = SplitMix::new(7);
    progress.start(args.queries as u64, "searching");
    let mut random = Group::default();
    for q in 0..args.queries {
        let t = rng.below(w.sizes.len());
        let query = w.query(t, q as u64);
        let (got, ms) = searcher.search(t, &query, k, 0)?;
        random.record(&got, ms, truth.of(t)?, &query, k);
        progress.inc(1);
    }
    progress.finish();

    let mut ten = Group::default();
    for q in 0..100 {
        let query = w.query(0, 1_000_000 + q);
        let (got, ms) = searcher.search(0, &query, k, 0)?;
        ten.record(&got, ms, truth.of(0)?, &query, k);
    }

    let mut large = serde_json::Map::new();
    if !w.large.is_empty() {
        let breadths: Vec<Option<usize>> = match searcher {
            Searcher::Postgres(stores) => stores.iter().map(|(ef, _)| Some(*ef)).collect(),
            Searcher::Embedded { .. } => vec![None],
        };
        for (i, ef) in breadths.iter().enumerate() {
            let mut group = Group::default();
            for q in 0..args.queries {
                let t = w.large[q % w.large.len()];
                let query = w.query(t, 2_000_000 + q as u64);
                let (got, ms) = searcher.search(t, &query, k, i)?;
                group.record(&got, ms, truth.of(t)?, &query, k);
            }
            let name = match ef {
                Some(ef) => format!("ef_search_{ef}"),
                None => "key_index".to_owned(),
            };
            large.insert(name, group.report(k));
        }
    }
    Ok(serde_json::json!({
        "k": k,
        "random_tenants": random.report(k),
        "large_tenants": large,
        "ten_concept_tenant": ten.report(k),
    }))
}

/// Loads the workload into the backend, searches it and returns the report.
pub fn run(options: &ScaleOptions, progress: &dyn Progress) -> Result<serde_json::Value> {
    let args = options;
    if args.k == 0 || args.batch == 0 {
        return Err(Error::invalid("--k and --batch must be at least 1"));
    }
    let w = Workload::new(args.concepts, args.tenants, args.dim, args.clusters)?;
    let large: Vec<usize> = w.large.iter().map(|&t| w.sizes[t]).collect();
    let mut sorted = w.sizes.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let workload = serde_json::json!({
        "concepts": w.concepts(),
        "tenants": w.sizes.len(),
        "dim": args.dim,
        "clusters": args.clusters,
        "large_tenant_concepts": large,
        "median_tenant_concepts": median,
        "ten_concept_tenant": Workload::tenant(0).as_str(),
        "batch": args.batch,
        "writers": args.writers,
    });
    let mut report = serde_json::json!({
        "benchmark": "scale",
        "backend": match args.backend { Backend::Embedded => "embedded", Backend::Postgres => "postgres" },
        "machine": machine(),
        "workload": workload,
    });
    match args.backend {
        Backend::Postgres => {
            let url = args
                .database_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| {
                    Error::invalid("--backend postgres needs RAP_DATABASE_URL (an empty database)")
                })?;
            if args.ef_search.is_empty() || args.ef_search.iter().any(|&e| e == 0 || e > 1000) {
                return Err(Error::invalid("--ef-search takes breadths from 1 to 1000"));
            }
            let open = |ef: usize, pool: u32| {
                PgStore::connect_with(
                    url,
                    PgOptions {
                        ef_search: ef,
                        pool_size: pool,
                        hnsw_above: args.hnsw_above.unwrap_or(PgOptions::default().hnsw_above),
                        ..PgOptions::default()
                    },
                )
            };
            let store = open(args.ef_search[0], args.writers.max(1) as u32)?;
            if store.stats(&Workload::tenant(0))?.concepts > 0 {
                return Err(Error::Conflict(
                    "the database already holds this benchmark's tenants: give it an empty \
                     database"
                        .into(),
                ));
            }
            let secs = load(&store, &w, args.batch, args.writers, progress)?;
            report["insert"] = insert_report(w.concepts(), secs);
            let disk = store.disk_usage()?;
            report["disk"] = serde_json::json!({
                "total_bytes": disk.total_bytes,
                "embeddings_table_bytes": disk.embeddings_bytes,
                "hnsw_index_bytes": disk.hnsw_index_bytes,
            });
            let indexed = (0..w.sizes.len())
                .filter(|&t| {
                    matches!(
                        store.tenant_index(&Workload::tenant(t), ENCODER),
                        Ok(Some(_))
                    )
                })
                .count();
            report["hnsw_indexed_tenants"] = serde_json::json!(indexed);
            // The exact answers are read through a handle of their own.
            let truth_store = open(args.ef_search[0], 1)?;
            let mut stores = vec![(args.ef_search[0], store)];
            for &ef in &args.ef_search[1..] {
                stores.push((ef, open(ef, 1)?));
            }
            let mut searcher = Searcher::Postgres(stores);
            let mut truth = Truth {
                store: &truth_store,
                tenants: HashMap::new(),
            };
            report["search"] = measure(&mut searcher, &mut truth, &w, args, progress)?;
        }
        Backend::Embedded => {
            let temp;
            let dir = match &args.dir {
                Some(dir) => {
                    let io = |e| Error::io(dir, e);
                    if dir.exists() && std::fs::read_dir(dir).map_err(io)?.next().is_some() {
                        return Err(Error::invalid(format!(
                            "--dir {} is not empty: give a new or empty folder",
                            dir.display()
                        )));
                    }
                    std::fs::create_dir_all(dir).map_err(io)?;
                    dir.clone()
                }
                None => {
                    temp = crate::temp_dir()?;
                    temp.path().to_path_buf()
                }
            };
            let store = SqliteStore::open(dir.join("memory.sqlite"))?;
            let secs = load(&store, &w, args.batch, args.writers, progress)?;
            report["insert"] = insert_report(w.concepts(), secs);
            report["disk"] = serde_json::json!({ "total_bytes": dir_bytes(&dir) });
            let mut searcher = Searcher::Embedded {
                store: &store,
                indexes: HashMap::new(),
                builds_ms: Vec::new(),
                dim: args.dim,
            };
            let mut truth = Truth {
                store: &store,
                tenants: HashMap::new(),
            };
            report["search"] = measure(&mut searcher, &mut truth, &w, args, progress)?;
            if let Searcher::Embedded { builds_ms, .. } = searcher {
                report["key_index_first_build"] = summary(builds_ms);
            }
        }
    }
    Ok(report)
}

fn insert_report(concepts: usize, secs: f64) -> serde_json::Value {
    serde_json::json!({
        "seconds": secs,
        "concepts_per_s": concepts as f64 / secs.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u64, v: &[f32]) -> KeyEntry {
        KeyEntry {
            key,
            image: ImageId(format!("{key:064x}")),
            region: Region::whole(1, 1),
            embedding: Embedding::normalized(v.to_vec()).unwrap(),
        }
    }

    #[test]
    fn recall_counts_the_exact_top_k_found() {
        let entries: Vec<KeyEntry> = (0..6u64)
            .map(|i| entry(i, &[1.0, i as f32 * 0.3]))
            .collect();
        let q = Embedding::normalized(vec![1.0, 0.0]).unwrap();
        // Nearest to (1, 0): the keys in order of their angle.
        let want = exact_top_k(&entries, &q, 3);
        assert_eq!(
            want,
            vec![
                entries[0].image.clone(),
                entries[1].image.clone(),
                entries[2].image.clone()
            ]
        );
        assert_eq!(recall_hits(&want, &want), (3, 3));
        // One wrong result, one missing, a result given twice counts once.
        let got = vec![
            entries[0].image.clone(),
            entries[5].image.clone(),
            entries[0].image.clone(),
        ];
        assert_eq!(recall_hits(&got, &want), (1, 3));
        // Fewer keys than k: the denominator is what exists.
        assert_eq!(exact_top_k(&entries[..2], &q, 10).len(), 2);
        let foreign = ImageId("f".repeat(64));
        assert_eq!(recall_hits(&[foreign], &want).0, 0);
    }

    #[test]
    fn the_workload_is_skewed_with_one_ten_concept_tenant_and_clustered_keys() {
        let w = Workload::new(100_000, 1_000, 64, 50).unwrap();
        assert_eq!(w.concepts(), 100_000);
        assert_eq!(w.sizes.len(), 1_000);
        assert_eq!(w.sizes[0], 10);
        assert!(w.sizes.iter().all(|&s| s >= 1));
        assert_eq!(w.large, vec![1, 2, 3, 4]);
        assert_eq!(w.sizes[1], 6_000);
        let smallest_large = w.large.iter().map(|&t| w.sizes[t]).min().unwrap();
        assert!(w.sizes[5..].iter().all(|&s| s < smallest_large));
        let last = *w.sizes.last().unwrap();
        assert!(w.sizes[5] > 20 * last, "skewed: {} vs {last}", w.sizes[5]);
        // Deterministic, and clustered: keys of one cluster are near, of others not.
        assert_eq!(w.key(3, 7).as_slice(), w.key(3, 7).as_slice());
        let (mut same, mut other) = (Vec::new(), Vec::new());
        for j in 0..400 {
            let (a, b) = (w.key(5, j), w.key(6, j));
            let c = if w.cluster(5, j) == w.cluster(6, j) {
                &mut same
            } else {
                &mut other
            };
            c.push(a.cosine(&b));
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(!same.is_empty());
        assert!(
            mean(&same) > 0.5 && mean(&other).abs() < 0.1,
            "{} {}",
            mean(&same),
            mean(&other)
        );
        // A query is near the key it was made from.
        let q = w.query(0, 1);
        let best = (0..10)
            .map(|j| w.key(0, j).cosine(&q))
            .fold(f32::MIN, f32::max);
        assert!(best > 0.9, "{best}");
        assert!(Workload::new(20, 30, 8, 4).is_err(), "too few concepts");
        assert!(Workload::new(1_000, 1, 8, 4).is_err(), "one tenant");
    }

    fn small(backend: Backend) -> ScaleOptions {
        ScaleOptions {
            backend,
            concepts: 1_200,
            tenants: 40,
            dim: 16,
            clusters: 8,
            batch: 100,
            writers: 2,
            queries: 60,
            k: 10,
            ef_search: vec![100],
            hnsw_above: None,
            dir: None,
            database_url: None,
        }
    }

    /// [`run`] on `database_url`, without progress (what the tests call).
    fn bench(options: &ScaleOptions, database_url: Option<&str>) -> Result<serde_json::Value> {
        let options = ScaleOptions {
            database_url: database_url.map(str::to_owned),
            ..options.clone()
        };
        run(&options, &crate::NoProgress)
    }

    /// Every search below its backend's HNSW threshold is exact: recall 1, no foreign result,
    /// and the 10-concept tenant gets exactly its own ranked keys.
    fn check(report: &serde_json::Value) {
        assert_eq!(report["workload"]["concepts"], 1_200);
        let s = &report["search"];
        for g in [&s["random_tenants"], &s["ten_concept_tenant"]] {
            assert_eq!(g["recall_at_10"], 1.0, "{report:#}");
            assert_eq!(g["foreign_results"], 0, "{report:#}");
            assert_eq!(g["ranked_exactly_share"], 1.0, "{report:#}");
        }
        assert!(report["insert"]["concepts_per_s"].as_f64().unwrap() > 0.0);
        assert!(report["disk"]["total_bytes"].as_u64().unwrap() > 1_200 * 16 * 4);
    }

    #[test]
    fn a_small_embedded_run_is_exact_and_isolated() {
        let report = bench(&small(Backend::Embedded), None).unwrap();
        check(&report);
    }

    #[test]
    fn a_small_postgres_run_is_exact_and_isolated() {
        let db = rap_memory_postgres::testing::TestDb::new();
        let url = Some(db.url.as_str());
        let report = bench(&small(Backend::Postgres), url).unwrap();
        check(&report);
        assert!(report["disk"]["embeddings_table_bytes"].as_u64().unwrap() > 0);
        let again = bench(&small(Backend::Postgres), url).unwrap_err();
        assert!(again.to_string().contains("empty database"), "{again}");
    }
}
