//! `rap bench vectors`: the key index alone on synthetic unit vectors (no store), at several
//! sizes of the default key dimension: build time, queries per second, latency, recall@10
//! against exact search and memory, for the exact scan and the HNSW graph (usearch) at several
//! search breadths (`ef`), so a recall/speed curve can be matched against another library's
//! (`tools/bench/faiss_compare.py` runs FAISS on the very same vectors, written by `--dump`).
//!
//! Keys are clustered like real embeddings by default (`--clusters` centres, cosine about 0.6
//! within a cluster; each query a stored key plus noise, cosine about 0.94 to it), or
//! uniform random unit vectors with `--data uniform` (no neighbourhood structure: the hardest
//! case for a graph index, where recall@10 mostly measures the order of near ties; queries a
//! stored key plus noise, cosine about 0.96). See [`crate::synthetic`]. Searches run one query
//! at a time on one thread (as the engine does per query region); the HNSW graph is built on
//! every core.

use crate::report::{machine, percentile};
use crate::synthetic::{self, Clusters, SplitMix, QUERY_NOISE};
use crate::Progress;
use rap_core::{Embedding, Error, Result};
use rap_memory::{ExactIndex, HnswIndex, VectorIndex, HNSW_THRESHOLD};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The synthetic keys of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// Keys around cluster centres, like real embeddings.
    Clustered,
    /// Uniform random unit keys (no structure: the hardest case for a graph index).
    Uniform,
}

/// What [`run`] measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorsOptions {
    /// Index sizes (keys), each measured in turn (default 10,000 and 100,000).
    pub sizes: Vec<usize>,
    /// Key dimension (default 1280, the default encoder's).
    pub dim: usize,
    /// The keys: clustered like real embeddings (the default), or uniform random.
    pub data: Data,
    /// Cluster centres of clustered keys (default 1000).
    pub clusters: usize,
    /// Queries per measurement (default 200).
    pub queries: usize,
    /// HNSW search breadths to measure (default 16, 32, 64, 128, 256; 64 is what the memory
    /// uses).
    pub ef: Vec<usize>,
    /// A folder to write each size's keys and queries to as raw little-endian f32
    /// (`keys-N.f32`, `queries-N.f32`), for tools/bench/faiss_compare.py.
    pub dump: Option<PathBuf>,
}

impl Default for VectorsOptions {
    fn default() -> Self {
        VectorsOptions {
            sizes: vec![10_000, 100_000],
            dim: 1280,
            data: Data::Clustered,
            clusters: 1000,
            queries: 200,
            ef: vec![16, 32, 64, 128, 256],
            dump: None,
        }
    }
}

const K: usize = 10;

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The keys and queries of one run.
enum Keys {
    Uniform { dim: usize },
    Clustered(Clusters),
}

impl Keys {
    fn new(args: &VectorsOptions) -> Result<Self> {
        Ok(match args.data {
            Data::Uniform => Keys::Uniform { dim: args.dim },
            Data::Clustered => Keys::Clustered(Clusters::new(args.dim, args.clusters)?),
        })
    }

    fn key(&self, n: u64) -> Embedding {
        match self {
            Keys::Uniform { dim } => synthetic::uniform(n, *dim),
            Keys::Clustered(c) => c.key(SplitMix::new(n).below(c.len()), n),
        }
    }

    /// Query number `q` of an index of `n` keys: a stored key plus noise.
    fn query(&self, n: usize, q: u64) -> Result<Embedding> {
        let near = self.key((q * 7_919) % n as u64);
        Ok(match self {
            Keys::Uniform { dim } => {
                let noise = synthetic::uniform(50_000_000 + q, *dim);
                let v: Vec<f32> = near
                    .as_slice()
                    .iter()
                    .zip(noise.as_slice())
                    .map(|(a, b)| a + 0.3 * b)
                    .collect();
                Embedding::normalized(v)?
            }
            Keys::Clustered(_) => {
                let mut rng = SplitMix::new((1 << 60) + q);
                synthetic::noisy(near.as_slice(), QUERY_NOISE, &mut rng)
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Keys::Uniform { .. } => "uniform random unit keys; queries = a stored key + 0.3 x \
                                     a random unit vector, normalised"
                .into(),
            Keys::Clustered(c) => format!(
                "keys clustered around {} random centres (cosine about 0.6 within a cluster); \
                 queries = a stored key + noise (cosine about 0.94 to it)",
                c.len()
            ),
        }
    }
}

fn dump(path: &Path, vectors: &[&[f32]]) -> Result<()> {
    let io = |e| Error::io(path, e);
    let f = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(f);
    for v in vectors {
        for x in *v {
            w.write_all(&x.to_le_bytes()).map_err(io)?;
        }
    }
    w.flush().map_err(io)?;
    Ok(())
}

/// Times `queries` through `search`: (QPS, p50 ms, p99 ms, results).
fn timed(
    queries: &[Embedding],
    search: impl Fn(&[f32]) -> rap_core::Result<Vec<(u64, f32)>>,
) -> Result<(f64, f64, f64, Vec<Vec<u64>>)> {
    let mut ms = Vec::with_capacity(queries.len());
    let mut results = Vec::with_capacity(queries.len());
    let all = Instant::now();
    for q in queries {
        let t = Instant::now();
        let found = search(q.as_slice())?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        results.push(found.into_iter().map(|(k, _)| k).collect());
    }
    let qps = queries.len() as f64 / all.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    Ok((qps, percentile(&ms, 0.5), percentile(&ms, 0.99), results))
}

fn recall(got: &[Vec<u64>], want: &[Vec<u64>]) -> f64 {
    let hits: usize = got
        .iter()
        .zip(want)
        .map(|(g, w)| g.iter().filter(|k| w.contains(k)).count())
        .sum();
    hits as f64 / (want.iter().map(Vec::len).sum::<usize>().max(1)) as f64
}

/// Measures every size; returns the report (with the [`machine`]).
pub fn run(options: &VectorsOptions, progress: &dyn Progress) -> Result<serde_json::Value> {
    let args = options;
    if args.sizes.is_empty() || args.sizes.contains(&0) || args.dim == 0 || args.queries == 0 {
        return Err(Error::invalid(
            "--sizes, --dim and --queries must be at least 1",
        ));
    }
    if args.ef.contains(&0) {
        return Err(Error::invalid("--ef values must be at least 1"));
    }
    if args.clusters == 0 {
        return Err(Error::invalid("--clusters must be at least 1"));
    }
    let data = Keys::new(args)?;
    if let Some(dir) = &args.dump {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let dim = args.dim;
    let mut sizes = Vec::new();
    for &n in &args.sizes {
        progress.start(n as u64, "keys");
        let keys: Vec<Embedding> = (0..n as u64)
            .map(|i| {
                if i > 0 && i % 4096 == 0 {
                    progress.inc(4096);
                }
                data.key(i)
            })
            .collect();
        progress.finish();
        let queries: Vec<Embedding> = (0..args.queries as u64)
            .map(|q| data.query(n, q))
            .collect::<Result<_>>()?;
        if let Some(dir) = &args.dump {
            let ks: Vec<&[f32]> = keys.iter().map(Embedding::as_slice).collect();
            dump(&dir.join(format!("keys-{n}.f32")), &ks)?;
            let qs: Vec<&[f32]> = queries.iter().map(Embedding::as_slice).collect();
            dump(&dir.join(format!("queries-{n}.f32")), &qs)?;
        }

        // Exact scan: the ground truth, and what the memory uses below HNSW_THRESHOLD keys.
        let before = rss_bytes();
        let t = Instant::now();
        let mut exact = ExactIndex::new(dim);
        for (i, k) in keys.iter().enumerate() {
            exact.insert(i as u64, k.as_slice())?;
        }
        let exact_build_s = t.elapsed().as_secs_f64();
        let exact_bytes = rss_bytes().saturating_sub(before);
        let (exact_qps, exact_p50, exact_p99, truth) = timed(&queries, |q| exact.search(q, K))?;
        drop(exact);

        let before = rss_bytes();
        let t = Instant::now();
        let mut hnsw = HnswIndex::new(dim)?;
        let items: Vec<(u64, &[f32])> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (i as u64, k.as_slice()))
            .collect();
        hnsw.insert_batch(&items)?;
        let hnsw_build_s = t.elapsed().as_secs_f64();
        let hnsw_bytes = rss_bytes().saturating_sub(before);
        let mut sweep = Vec::new();
        // The graph settings below are HnswIndex::new's (rap-memory), reported so another
        // library can be run with the same.
        for &ef in &args.ef {
            hnsw.set_expansion_search(ef);
            let (qps, p50, p99, got) = timed(&queries, |q| hnsw.search(q, K))?;
            sweep.push(serde_json::json!({
                "ef": ef, "qps": qps, "p50_ms": p50, "p99_ms": p99,
                "recall_at_10": recall(&got, &truth),
            }));
        }
        hnsw.set_expansion_search(64);
        let kernels = hnsw.hardware_acceleration();
        drop(hnsw);
        sizes.push(serde_json::json!({
            "keys": n,
            "memory_uses": if n > HNSW_THRESHOLD { "hnsw (ef 64)" } else { "exact" },
            "exact": {
                "build_s": exact_build_s, "qps": exact_qps, "p50_ms": exact_p50,
                "p99_ms": exact_p99, "recall_at_10": 1.0, "memory_bytes": exact_bytes,
            },
            "hnsw": {
                "build_s": hnsw_build_s, "build_threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
                "memory_bytes": hnsw_bytes, "connectivity": 16, "expansion_add": 64,
                "kernels": kernels,
                "search": sweep,
            },
        }));
    }
    Ok(serde_json::json!({
        "dim": dim,
        "k": K,
        "queries": args.queries,
        "data": data.describe(),
        "search_threads": 1,
        "dump": args.dump,
        "sizes": sizes,
        "machine": machine(),
    }))
}
