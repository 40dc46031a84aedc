//! `rap bench memory`: the embedded store with N concepts (one small distinct image and one
//! key each): time to open the store, to build the key index for the first search and to
//! open it again in the next process (from its saved copy when large), single add and
//! remove latency (each one durable transaction), and search latency right after an add.

use crate::report::summary;
use crate::{synthetic, Progress};
use rap_core::{Embedding, Error, NewConcept, Region, Result, Tenant};
use rap_image::Limits;
use rap_memory::{ConceptStore, ImageInput, IndexOrigin, KeyIndex, SqliteStore};
use std::time::Instant;

/// What [`run`] measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryOptions {
    /// Concepts in the store (default 100,000).
    pub concepts: usize,
    /// Key dimension (default 1280, the default encoder's).
    pub dim: usize,
    /// How many single adds and removes to time (default 200).
    pub samples: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            concepts: 100_000,
            dim: 1280,
            samples: 200,
        }
    }
}

fn tiny_png(n: u64) -> Vec<u8> {
    let img = image::RgbImage::from_fn(4, 4, |x, y| {
        let b = n.to_le_bytes();
        image::Rgb([
            b[(x as usize) % 8],
            b[(y as usize + 3) % 8],
            (x * 4 + y) as u8,
        ])
    });
    let mut out = Vec::new();
    let _ = img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png);
    out
}

fn concept(n: u64, dim: usize) -> Result<(NewConcept, ImageInput, Embedding)> {
    let image = ImageInput::from_bytes(tiny_png(n), &Limits::default())?;
    let new = NewConcept {
        name: format!("concept-{n}"),
        info: format!("<concept-{n}> is benchmark concept number {n}."),
        category: "thing".into(),
        aliases: vec![],
    };
    Ok((new, image, synthetic::uniform(n, dim)))
}

/// Fills a store in a temporary folder and measures it; returns the report.
pub fn run(options: &MemoryOptions, progress: &dyn Progress) -> Result<serde_json::Value> {
    let MemoryOptions {
        concepts,
        dim,
        samples,
    } = *options;
    let dir = crate::temp_dir()?;
    let path = dir.path().join("memory.sqlite");
    let tenant = Tenant::default();
    let encoder = "bench@1";
    progress.start(concepts as u64, "filling");
    let started = Instant::now();
    {
        let store = SqliteStore::open(&path)?;
        for chunk_start in (0..concepts as u64).step_by(1000) {
            let end = (chunk_start + 1000).min(concepts as u64);
            let mut batch = Vec::new();
            let mut keys = Vec::new();
            for n in chunk_start..end {
                let (new, image, k) = concept(n, dim)?;
                keys.push((image.id.clone(), Region::whole(4, 4), k));
                batch.push((new, vec![image]));
            }
            store.add_concepts(&tenant, batch)?;
            store.put_keys(&tenant, encoder, &keys)?;
            progress.inc(end - chunk_start);
        }
    }
    progress.finish();
    let fill_s = started.elapsed().as_secs_f64();

    let t = Instant::now();
    let store = SqliteStore::open(&path)?;
    let first = store.concept(&tenant, "concept-0")?;
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;

    // The first search of a process opens the key index: built from the store the first
    // time (and saved when large), loaded from the saved copy by the next process.
    let saved = dir.path().join("index");
    let t = Instant::now();
    let (_, origin) = KeyIndex::open(&store, &tenant, encoder, dim, &saved)?;
    let index_build_ms = t.elapsed().as_secs_f64() * 1000.0;
    if origin != IndexOrigin::Built {
        // A saved copy in a folder just made: something else wrote there.
        return Err(Error::Conflict("expected a fresh build".into()));
    }
    let t = Instant::now();
    let (mut index, origin) = KeyIndex::open(&store, &tenant, encoder, dim, &saved)?;
    let index_open_ms = t.elapsed().as_secs_f64() * 1000.0;
    let index_kind = if index.is_approximate() {
        "hnsw"
    } else {
        "exact"
    };
    let index_reopen = format!("{origin:?}");

    let mut add_ms = Vec::new();
    let mut remove_ms = Vec::new();
    let mut search_ms = Vec::new();
    let mut found_first = 0;
    for i in 0..samples as u64 {
        let n = concepts as u64 + i;
        let (new, image, k) = concept(n, dim)?;
        let id = image.id.clone();
        let t = Instant::now();
        store.add_concept(&tenant, &new, vec![image])?;
        store.put_keys(&tenant, encoder, &[(id, Region::whole(4, 4), k.clone())])?;
        add_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        index.refresh(&store)?;
        let found = index.search(&k, 5)?;
        search_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if found.first().is_some_and(|f| f.0 > 0.999) {
            found_first += 1;
        }
    }

    // Recall@10 of the index against exact search, for queries near stored keys (random
    // vectors in 1280 dimensions are the hardest case for HNSW: real embeddings cluster).
    let exact = KeyIndex::build_with(&store, &tenant, encoder, dim, usize::MAX)?;
    let (mut hits, mut exact_ms) = (0, Vec::new());
    let queries = 50u64;
    for q in 0..queries {
        let near = (q * 1_999) % concepts as u64;
        let noise = synthetic::uniform(10_000_000 + q, dim);
        let v: Vec<f32> = synthetic::uniform(near, dim)
            .as_slice()
            .iter()
            .zip(noise.as_slice())
            .map(|(a, b)| a + 0.3 * b)
            .collect();
        let query = Embedding::normalized(v)?;
        let t = Instant::now();
        let want = exact.search(&query, 10)?;
        exact_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let got = index.search(&query, 10)?;
        hits += got
            .iter()
            .filter(|g| want.iter().any(|w| w.1 == g.1 && w.2 == g.2))
            .count();
    }
    let recall_at_10 = hits as f64 / (10 * queries) as f64;
    for i in 0..samples as u64 {
        let t = Instant::now();
        store.remove_concept(&tenant, &format!("concept-{}", concepts as u64 + i))?;
        remove_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let db_bytes = std::fs::metadata(&path)
        .map_err(|e| Error::io(&path, e))?
        .len()
        + std::fs::metadata(dir.path().join("memory.sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    Ok(serde_json::json!({
        "machine": format!("{} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        "concepts": concepts,
        "dim": dim,
        "fill_seconds": fill_s,
        "open_ms": open_ms,
        "index": index_kind,
        "first_index_build_ms": index_build_ms,
        "index_open_in_next_process_ms": index_open_ms,
        "index_open_origin": index_reopen,
        "add_concept_with_key": summary(add_ms),
        "refresh_and_search": summary(search_ms),
        "new_key_found_first": format!("{found_first}/{samples}"),
        "recall_at_10_vs_exact": recall_at_10,
        "exact_search_same_memory": summary(exact_ms),
        "remove_concept": summary(remove_ms),
        "database_bytes": db_bytes,
        "checked_concept": first.name,
    }))
}
