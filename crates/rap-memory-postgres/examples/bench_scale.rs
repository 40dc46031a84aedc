//! Scale benchmark of the memory backends: many small tenants (plus optionally one large one)
//! in PostgreSQL + pgvector and in the embedded SQLite store, with random unit vectors.
//!
//! ```text
//! cargo run --release -p rap-memory-postgres --example bench_scale -- \
//!     [--tenants 1000] [--per-tenant 100] [--dim 1280] [--large 0] [--queries 200] [--skip-sqlite]
//! ```
//! Uses `RAP_TEST_DATABASE_URL` (a server URL without database name) or starts a throwaway
//! server like the tests do; a fresh database is made and dropped. Reports, per backend:
//! insert rate (concepts with one image and one key each, one transaction per tenant), top-10
//! search latency p50/p99 over random tenants (in-database search for PostgreSQL; a warm
//! per-tenant `KeyIndex` for SQLite, with its first-query build time apart), recall@10 against
//! brute force, and the size on disk. Random vectors are harder for HNSW than real embeddings
//! (no clusters), so recall on them is a lower bound.

use rand::{Rng, SeedableRng};
use rap_core::{Embedding, ImageId, NewConcept, Region, Tenant};
use rap_image::Limits;
use rap_memory::{ConceptStore, ImageInput, KeyIndex, SqliteStore};
use rap_memory_postgres::testing::TestDb;
use rap_memory_postgres::PgOptions;
use std::time::Instant;

struct Args {
    tenants: usize,
    per_tenant: usize,
    dim: usize,
    large: usize,
    queries: usize,
    skip_sqlite: bool,
}

fn args() -> Args {
    let mut a = Args {
        tenants: 1000,
        per_tenant: 100,
        dim: 1280,
        large: 0,
        queries: 200,
        skip_sqlite: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || -> usize {
            argv.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", argv[i]))
        };
        match argv[i].as_str() {
            "--tenants" => a.tenants = value(),
            "--per-tenant" => a.per_tenant = value(),
            "--dim" => a.dim = value(),
            "--large" => a.large = value(),
            "--queries" => a.queries = value(),
            "--skip-sqlite" => {
                a.skip_sqlite = true;
                i -= 1;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// A distinct 8x8 PNG for every `n` (24 bits of it).
fn image(n: usize) -> ImageInput {
    let img = image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([
            n as u8,
            (n >> 8) as u8,
            ((n >> 16) as u8) ^ (x * 8 + y) as u8,
        ])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    ImageInput::from_bytes(out, &Limits::default()).unwrap()
}

fn unit(rng: &mut impl Rng, dim: usize) -> Embedding {
    Embedding::normalized((0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()).unwrap()
}

fn tenant(i: usize) -> Tenant {
    Tenant::new(format!("t{i:06}")).unwrap()
}

/// Fills `store`: tenant `i` gets `sizes[i]` concepts; returns concepts per second.
fn fill(store: &dyn ConceptStore, sizes: &[usize], dim: usize) -> f64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut n = 0usize;
    let start = Instant::now();
    for (t, &size) in sizes.iter().enumerate() {
        let tenant = tenant(t);
        // Large tenants go in batches of 1,000 (one transaction each).
        for chunk in (0..size).collect::<Vec<_>>().chunks(1000) {
            let batch: Vec<_> = chunk
                .iter()
                .map(|c| {
                    n += 1;
                    (
                        NewConcept {
                            name: format!("c{c}"),
                            aliases: vec![],
                            category: "thing".into(),
                            info: String::new(),
                        },
                        vec![image(n)],
                    )
                })
                .collect();
            let added = store.add_concepts(&tenant, batch).unwrap();
            let keys: Vec<_> = added
                .iter()
                .map(|c| {
                    (
                        c.images[0].id.clone(),
                        Region::whole(8, 8),
                        unit(&mut rng, dim),
                    )
                })
                .collect();
            store.put_keys(&tenant, "enc", &keys).unwrap();
        }
        if (t + 1) % 100 == 0 {
            eprintln!(
                "  {} tenants, {n} concepts, {:.0}/s",
                t + 1,
                n as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latency (ms) of top-10 searches of random tenants; recall@10 against brute force.
fn measure(
    store: &dyn ConceptStore,
    tenants: &[usize],
    dim: usize,
    queries: usize,
    mut search: impl FnMut(&Tenant, &Embedding) -> Vec<ImageId>,
) -> (f64, f64, f64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut times = Vec::with_capacity(queries);
    let (mut hits, mut total) = (0usize, 0usize);
    // Each tenant's keys, read once (outside the timing) for the brute-force answer.
    let mut keys = std::collections::HashMap::new();
    for _ in 0..queries {
        let t = tenant(tenants[rng.random_range(0..tenants.len())]);
        let q = unit(&mut rng, dim);
        let start = Instant::now();
        let got = search(&t, &q);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        let all = keys
            .entry(t.clone())
            .or_insert_with(|| store.keys(&t, "enc").unwrap());
        let mut scored: Vec<_> = all
            .iter()
            .map(|e| (e.embedding.cosine(&q), &e.image))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<ImageId> = scored.into_iter().take(10).map(|x| x.1.clone()).collect();
        hits += got.iter().filter(|k| want.contains(k)).count();
        total += want.len();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        hits as f64 / total.max(1) as f64,
    )
}

fn main() {
    let a = args();
    let mut sizes = vec![a.per_tenant; a.tenants];
    if a.large > 0 {
        sizes.push(a.large);
    }
    let small: Vec<usize> = (0..a.tenants).collect();
    let concepts: usize = sizes.iter().sum();
    println!(
        "workload: {} tenants x {} concepts{} = {concepts} concepts, one key each, dim {}",
        a.tenants,
        a.per_tenant,
        if a.large > 0 {
            format!(" + one tenant of {}", a.large)
        } else {
            String::new()
        },
        a.dim
    );

    // ---- PostgreSQL ----
    let db = TestDb::new();
    let store = db.store_with(PgOptions::default());
    let rate = fill(&store, &sizes, a.dim);
    let mut client = db.client();
    let size: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .unwrap()
        .get(0);
    println!(
        "postgres: insert {rate:.0} concepts/s; database {:.1} MiB",
        size as f64 / 1048576.0
    );
    let search = |t: &Tenant, q: &Embedding| -> Vec<ImageId> {
        store
            .search_keys(t, "enc", std::slice::from_ref(q), 10)
            .unwrap()
            .unwrap()
            .pop()
            .unwrap()
            .into_iter()
            .map(|h| h.location.image)
            .collect()
    };
    let (p50, p99, recall) = measure(&store, &small, a.dim, a.queries, search);
    println!("postgres small tenants (exact): top-10 p50 {p50:.2} ms, p99 {p99:.2} ms, recall@10 {recall:.3}");
    if a.large > 0 {
        let large = [a.tenants];
        let indexed = store.tenant_index(&tenant(a.tenants), "enc").unwrap();
        let (p50, p99, recall) = measure(&store, &large, a.dim, a.queries.min(100), search);
        println!(
            "postgres large tenant ({} keys, index {}): top-10 p50 {p50:.2} ms, p99 {p99:.2} ms, recall@10 {recall:.3}",
            a.large,
            indexed.as_deref().unwrap_or("none")
        );
    }
    drop(store);
    drop(db);

    if a.skip_sqlite {
        return;
    }
    // ---- SQLite (embedded) ----
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    let rate = fill(&store, &sizes, a.dim);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(path.with_extension("sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "sqlite: insert {rate:.0} concepts/s; file {:.1} MiB",
        size as f64 / 1048576.0
    );
    let mut builds = Vec::new();
    let mut indexes = std::collections::HashMap::new();
    let (p50, p99, recall) = measure(&store, &small, a.dim, a.queries, |t, q| {
        let index = indexes.entry(t.clone()).or_insert_with(|| {
            let start = Instant::now();
            let index = KeyIndex::build(&store, t, "enc", a.dim).unwrap();
            builds.push(start.elapsed().as_secs_f64() * 1000.0);
            index
        });
        index.refresh(&store).unwrap();
        index
            .search(q, 10)
            .unwrap()
            .into_iter()
            .map(|(_, image, _)| image.clone())
            .collect()
    });
    builds.sort_by(|a, b| a.total_cmp(b));
    println!(
        "sqlite small tenants (warm KeyIndex, exact): top-10 p50 {p50:.2} ms, p99 {p99:.2} ms, recall@10 {recall:.3}; first-query index build p50 {:.2} ms",
        percentile(&builds, 0.5)
    );
}
