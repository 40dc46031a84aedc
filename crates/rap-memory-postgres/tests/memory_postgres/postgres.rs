//! What only the PostgreSQL backend has: versioned migrations, per-tenant search that stays
//! exact for small tenants among large ones (pgvector 0.6 has no iterative index scans), a
//! large tenant's own HNSW index, and several store handles (processes) sharing one database.

use crate::common;

use rand::{Rng, SeedableRng};
use rap_core::{BoundingBox, Embedding, Error, ImageId, NewConcept, Region, RegionSource, Tenant};
use rap_image::Limits;
use rap_memory::{ConceptStore, ImageInput, KeyEntry, KeyIndex};
use rap_memory_postgres::{PgOptions, PgStore};
use std::collections::HashSet;

fn t(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

/// A distinct small PNG for every `n`.
fn image(n: u32) -> ImageInput {
    let img = image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([(n & 0xff) as u8, ((n >> 8) & 0xff) as u8, (x * 8 + y) as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    ImageInput::from_bytes(out, &Limits::default()).unwrap()
}

fn concept(name: &str) -> NewConcept {
    NewConcept {
        name: name.into(),
        aliases: vec![],
        category: "thing".into(),
        info: String::new(),
    }
}

fn random_unit(rng: &mut impl Rng, dim: usize) -> Embedding {
    Embedding::normalized((0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).unwrap()
}

fn region(i: usize) -> Region {
    Region {
        bbox: BoundingBox::new(i as f32, 0.0, i as f32 + 4.0, 4.0),
        source: RegionSource::Whole,
    }
}

/// Adds `concepts` concepts of one image each to `tenant`, with `per_image` random keys per
/// image (one per region); returns every key's image and vector.
fn fill(
    store: &PgStore,
    tenant: &Tenant,
    concepts: u32,
    per_image: usize,
    first_image: u32,
    rng: &mut impl Rng,
    dim: usize,
) -> Vec<(ImageId, Embedding)> {
    let batch: Vec<_> = (0..concepts)
        .map(|i| (concept(&format!("c{i}")), vec![image(first_image + i)]))
        .collect();
    let added = store.add_concepts(tenant, batch).unwrap();
    let mut all = Vec::new();
    let mut keys = Vec::new();
    for c in &added {
        for r in 0..per_image {
            let v = random_unit(rng, dim);
            keys.push((c.images[0].id.clone(), region(r), v.clone()));
            all.push((c.images[0].id.clone(), v));
        }
    }
    store.put_keys(tenant, "enc", &keys).unwrap();
    all
}

/// The exact top-k keys by cosine over `keys`.
fn exact(keys: &[KeyEntry], query: &Embedding, k: usize) -> Vec<u64> {
    let mut scored: Vec<_> = keys
        .iter()
        .map(|e| (e.embedding.cosine(query), e.key))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|(_, key)| key).collect()
}

fn search_ids(store: &PgStore, tenant: &Tenant, query: &Embedding, k: usize) -> Vec<u64> {
    store
        .search_keys(tenant, "enc", std::slice::from_ref(query), k)
        .unwrap()
        .expect("the PostgreSQL store searches itself")
        .pop()
        .unwrap()
        .into_iter()
        .map(|h| h.location.key)
        .collect()
}

fn search(store: &PgStore, tenant: &Tenant, query: &Embedding, k: usize) -> Vec<ImageId> {
    store
        .search_keys(tenant, "enc", std::slice::from_ref(query), k)
        .unwrap()
        .expect("the PostgreSQL store searches itself")
        .pop()
        .unwrap()
        .into_iter()
        .map(|h| h.location.image)
        .collect()
}

#[test]
fn migrations_are_recorded_repeatable_and_a_newer_schema_is_refused() {
    let db = common::TestDb::new();
    drop(db.store());
    drop(db.store()); // a second start applies nothing and is fine
    let mut client = db.client();
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM rap_schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Each migration once, in order, up to the current version.
    let all: Vec<i32> = (1..=rap_memory_postgres::schema::SCHEMA_VERSION).collect();
    assert_eq!(versions, all);
    // Every key and index of the tenant-scoped tables leads with tenant_id.
    let not_leading: Vec<String> = client
        .query(
            "SELECT i.indexrelid::regclass::text FROM pg_index i
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public'
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
             WHERE t.relname NOT IN ('api_keys', 'rap_schema_migrations') AND a.attname <> 'tenant_id'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(not_leading.is_empty(), "{not_leading:?}");

    client
        .execute(
            "INSERT INTO rap_schema_migrations (version) VALUES (99)",
            &[],
        )
        .unwrap();
    let err = PgStore::connect(&db.url)
        .err()
        .expect("a newer schema is refused");
    assert!(err.to_string().contains("newer rap"), "{err}");
}

#[test]
fn bad_urls_and_unreachable_servers_are_clear_errors() {
    let err = PgStore::connect("postgres://u@127.0.0.1:notaport/db")
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("RAP_DATABASE_URL"), "{err}");
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PgOptions {
        connect_timeout: std::time::Duration::from_millis(500),
        ..PgOptions::default()
    };
    let err = PgStore::connect_with(&format!("postgres://u@127.0.0.1:{port}/db"), options)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("cannot connect to PostgreSQL"),
        "{err}"
    );
}

#[test]
fn a_small_tenant_gets_its_true_top_k_beside_a_large_indexed_tenant() {
    let db = common::TestDb::new();
    // A low threshold so that the large tenant gets its own HNSW index in a test-sized run.
    let store = db.store_with(PgOptions {
        hnsw_above: 500,
        ..PgOptions::default()
    });
    let dim = 32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let (big, small, mid) = (t("big"), t("small"), t("mid"));
    let big_keys = fill(&store, &big, 150, 20, 0, &mut rng, dim); // 3,000 keys
    fill(&store, &small, 10, 1, 1_000, &mut rng, dim); // 10 keys
    fill(&store, &mid, 40, 10, 2_000, &mut rng, dim); // 400 keys: below the threshold
    let (big_entries, small_entries, mid_entries) = (
        store.keys(&big, "enc").unwrap(),
        store.keys(&small, "enc").unwrap(),
        store.keys(&mid, "enc").unwrap(),
    );
    assert_eq!(
        (big_entries.len(), small_entries.len(), mid_entries.len()),
        (3000, 10, 400)
    );
    assert!(store.tenant_index(&big, "enc").unwrap().is_some());
    assert!(store.tenant_index(&small, "enc").unwrap().is_none());
    assert!(store.tenant_index(&mid, "enc").unwrap().is_none());

    let q = random_unit(&mut rng, dim);
    let big_plan = store.search_plan(&big, "enc", &q, 10).unwrap();
    assert!(
        big_plan.contains("emb_hnsw_"),
        "the large tenant's own index: {big_plan}"
    );
    let small_plan = store.search_plan(&small, "enc", &q, 10).unwrap();
    assert!(
        !small_plan.contains("emb_hnsw_"),
        "small tenants are scanned exactly: {small_plan}"
    );

    let mut big_hits = 0;
    let big_ids: HashSet<u64> = big_entries.iter().map(|e| e.key).collect();
    for _ in 0..30 {
        let q = random_unit(&mut rng, dim);
        // Small and mid-sized tenants: exactly their own top-k, whatever the others hold.
        assert_eq!(
            search_ids(&store, &small, &q, 5),
            exact(&small_entries, &q, 5)
        );
        assert_eq!(
            search_ids(&store, &small, &q, 50).len(),
            10,
            "all of its 10, no more"
        );
        assert_eq!(
            search_ids(&store, &mid, &q, 10),
            exact(&mid_entries, &q, 10)
        );
        // The large tenant: approximate (its own index), its own keys only, high recall.
        let got = search_ids(&store, &big, &q, 10);
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|k| big_ids.contains(k)));
        let want = exact(&big_entries, &q, 10);
        big_hits += got.iter().filter(|k| want.contains(k)).count();
    }
    let recall = big_hits as f32 / 300.0;
    assert!(
        recall > 0.9,
        "recall@10 of the large tenant's HNSW search: {recall}"
    );

    // Deleting from the indexed tenant is seen by the index at once.
    let victim = search(&store, &big, &big_keys[0].1, 1);
    assert_eq!(victim, vec![big_keys[0].0.clone()]);
    let owner = store.concepts_with_image(&big, &victim[0]).unwrap();
    let name = store.concept_by_id(&big, &owner[0]).unwrap().name;
    store.remove_concept(&big, &name).unwrap();
    assert!(!search(&store, &big, &big_keys[0].1, 10).contains(&big_keys[0].0));
}

#[test]
fn two_handles_on_one_database_see_each_other_at_once() {
    let db = common::TestDb::new();
    let (one, two) = (db.store(), db.store());
    let a = t("a");
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let keys = fill(&one, &a, 3, 1, 0, &mut rng, 16);
    // Found through the other handle on the very next search; no cache to go stale.
    assert_eq!(search(&two, &a, &keys[1].1, 1), vec![keys[1].0.clone()]);
    let index = KeyIndex::build(&two, &a, "enc", 16).unwrap();
    assert_eq!(index.len(), 3);
    two.remove_concept(&a, "c1").unwrap();
    assert!(!search(&one, &a, &keys[1].1, 3).contains(&keys[1].0));
    assert!(one.concept(&a, "c1").is_err());

    // Writers on both handles at once: nothing lost, names stay unique, the log stays whole.
    let v0 = one.key_version(&a, "enc").unwrap();
    let mut index = KeyIndex::build(&one, &a, "enc", 16).unwrap();
    let a = &a;
    std::thread::scope(|s| {
        for (h, store) in [&one, &two].into_iter().enumerate() {
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(h as u64);
                for i in 0..15u32 {
                    let n = 100 + h as u32 * 100 + i;
                    let c = store
                        .add_concept(a, &concept(&format!("w{h}-{i}")), vec![image(n)])
                        .unwrap();
                    store
                        .put_keys(
                            a,
                            "enc",
                            &[(c.images[0].id.clone(), region(0), random_unit(&mut rng, 16))],
                        )
                        .unwrap();
                    // Both try the same name: exactly one wins each time.
                    let _ =
                        store.add_concept(a, &concept(&format!("race{i}")), vec![image(n + 50)]);
                }
            });
        }
    });
    let stats = one.stats(a).unwrap();
    assert_eq!(stats.concepts, 2 + 30 + 15, "{stats:?}");
    assert_eq!(stats.embeddings, 2 + 30);
    assert!(one.key_version(a, "enc").unwrap() > v0);
    // The log replays to exactly the stored keys.
    index.refresh(&two).unwrap();
    assert_eq!(index.len(), one.keys(a, "enc").unwrap().len());
}
