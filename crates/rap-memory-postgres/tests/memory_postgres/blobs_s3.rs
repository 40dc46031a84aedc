//! Image bytes in S3 (a real S3 server, moto, see `common`) with the PostgreSQL memory: where
//! the objects are, when they go, what a failing server does to a write (nothing), the orphan
//! sweep, and migration from the embedded memory to PostgreSQL + S3 and back.

use crate::common;

use common::{OwnS3Server, TestBucket, TestDb};
use rap_core::{Embedding, Error, NewConcept, Region, Tenant};
use rap_image::Limits;
use rap_memory::migrate::{migrate, summarize, MigrateOptions};
use rap_memory::{BlobStore, ConceptEdit, ConceptStore, ImageInput, SqliteStore, StoreStats};
use rap_memory_postgres::{PgStore, S3BlobStore, S3Config};
use std::collections::BTreeSet;
use std::sync::Arc;

fn t(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

fn image(n: u8) -> ImageInput {
    let img = image::RgbImage::from_fn(12, 10, |x, y| image::Rgb([n, x as u8 * 9, y as u8 * 7]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    ImageInput::from_bytes(out, &Limits::default()).unwrap()
}

fn concept(name: &str) -> NewConcept {
    NewConcept {
        name: name.into(),
        aliases: vec![format!("{name}-alias")],
        category: "dog".into(),
        info: format!("<{name}> is a good dog."),
    }
}

/// The objects of the store, as "tenant/sha256".
fn objects(blobs: &dyn BlobStore) -> BTreeSet<String> {
    blobs
        .list()
        .unwrap()
        .into_iter()
        .map(|(t, s)| format!("{t}/{s}"))
        .collect()
}

fn key(tenant: &str, image: &ImageInput) -> String {
    format!("{tenant}/{}", image.id.0)
}

fn pg_with_s3(bucket: &TestBucket, prefix: &str) -> (TestDb, PgStore, Arc<S3BlobStore>) {
    let db = TestDb::new();
    let blobs = bucket.blob_store(prefix);
    let store = db.store().with_blob_store(blobs.clone());
    (db, store, blobs)
}

/// Rows of `blobs` that hold their bytes in the database.
fn rows_with_bytes(db: &TestDb) -> i64 {
    db.client()
        .query_one("SELECT count(*) FROM blobs WHERE data IS NOT NULL", &[])
        .unwrap()
        .get(0)
}

#[test]
fn objects_live_exactly_while_a_concept_uses_their_image() {
    let bucket = TestBucket::new();
    let (db, store, blobs) = pg_with_s3(&bucket, "memories/prod");
    let (a, b) = (t("alice"), t("bob"));
    let (shared, own) = (image(1), image(2));

    store
        .add_concept(&a, &concept("bo"), vec![shared.clone(), own.clone()])
        .unwrap();
    store
        .add_concept(&a, &concept("dug"), vec![shared.clone()])
        .unwrap();
    store
        .add_concept(&b, &concept("rex"), vec![shared.clone()])
        .unwrap();
    // PREFIX/TENANT/SHA256, once per tenant and content; no bytes in the database.
    assert_eq!(
        objects(blobs.as_ref()),
        BTreeSet::from([
            key("alice", &shared),
            key("alice", &own),
            key("bob", &shared)
        ])
    );
    assert_eq!(rows_with_bytes(&db), 0);
    assert_eq!(store.image_bytes(&a, &own.id).unwrap(), own.bytes.to_vec());
    // The objects are where the layout says, under the prefix, byte for byte.
    let raw = S3BlobStore::connect(bucket.config("memories")).unwrap();
    let nested: BTreeSet<String> = raw
        .list()
        .unwrap()
        .into_iter()
        .map(|(t, s)| format!("{t}/{s}"))
        .collect();
    assert!(
        nested.is_empty(),
        "one level deeper, nothing has the layout: {nested:?}"
    );
    assert_eq!(blobs.get(&a, &shared.id.0).unwrap(), shared.bytes.to_vec());

    // The shared image stays while another concept of the tenant uses it.
    store.remove_concept(&a, "bo").unwrap();
    assert_eq!(
        objects(blobs.as_ref()),
        BTreeSet::from([key("alice", &shared), key("bob", &shared)])
    );
    assert_eq!(
        store.image_bytes(&a, &shared.id).unwrap(),
        shared.bytes.to_vec()
    );
    assert!(matches!(
        store.image_bytes(&a, &own.id),
        Err(Error::NotFound { .. })
    ));
    // Removing an image by edit, then the last user: the objects go.
    store
        .edit_concept(
            &a,
            "dug",
            ConceptEdit {
                add_images: vec![own.clone()],
                ..Default::default()
            },
        )
        .unwrap();
    assert!(objects(blobs.as_ref()).contains(&key("alice", &own)));
    store
        .edit_concept(
            &a,
            "dug",
            ConceptEdit {
                remove_images: vec![own.id.0[..12].to_owned()],
                ..Default::default()
            },
        )
        .unwrap();
    assert!(!objects(blobs.as_ref()).contains(&key("alice", &own)));
    store.remove_concept(&a, "dug").unwrap();
    assert_eq!(
        objects(blobs.as_ref()),
        BTreeSet::from([key("bob", &shared)]),
        "another tenant's copy is its own"
    );
    // A failed add (name taken) leaves no object behind.
    let err = store
        .add_concept(&b, &concept("rex"), vec![image(3)])
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(
        objects(blobs.as_ref()),
        BTreeSet::from([key("bob", &shared)])
    );
}

#[test]
fn rows_written_without_a_blob_store_keep_being_read_from_the_database() {
    let bucket = TestBucket::new();
    let db = TestDb::new();
    let a = t("a");
    let old = image(4);
    db.store()
        .add_concept(&a, &concept("bo"), vec![old.clone()])
        .unwrap();
    let blobs = bucket.blob_store("p");
    let store = db.store().with_blob_store(blobs.clone());
    assert_eq!(store.image_bytes(&a, &old.id).unwrap(), old.bytes.to_vec());
    let new = image(5);
    store
        .add_concept(&a, &concept("dug"), vec![new.clone(), old.clone()])
        .unwrap();
    assert_eq!(objects(blobs.as_ref()), BTreeSet::from([key("a", &new)]));
    assert_eq!(rows_with_bytes(&db), 1);
    // Without the blob store, an image whose bytes are in S3 is a clear error, not a panic.
    let err = db.store().image_bytes(&a, &new.id).unwrap_err().to_string();
    assert!(err.contains("RAP_BLOB_STORE"), "{err}");
}

#[test]
fn a_server_that_stops_answering_fails_the_add_with_nothing_written() {
    let server = OwnS3Server::start();
    let bucket = server.bucket("going-away");
    let (_db, store, _blobs) = pg_with_s3(&bucket, "p");
    let a = t("a");
    store
        .add_concept(&a, &concept("bo"), vec![image(1)])
        .unwrap();
    server.stop();

    let started = std::time::Instant::now();
    let err = store
        .add_concept(&a, &concept("dug"), vec![image(2)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not answering")
            && err.contains(&server.endpoint)
            && err.contains("nothing was written"),
        "{err}"
    );
    assert!(
        started.elapsed().as_secs() < 30,
        "reported in seconds: {:?}",
        started.elapsed()
    );
    assert!(matches!(
        store.concept(&a, "dug"),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        store.stats(&a).unwrap(),
        StoreStats {
            concepts: 1,
            images: 1,
            embeddings: 0
        }
    );
    // Reading bytes of the stored image names the problem too.
    let err = store.image_bytes(&a, &image(1).id).unwrap_err().to_string();
    assert!(err.contains("not answering"), "{err}");
    // And a new process cannot start against it: the check at connect says why.
    let err = S3BlobStore::connect(bucket.config("p"))
        .err()
        .expect("no server")
        .to_string();
    assert!(err.contains("not answering"), "{err}");
}

#[test]
fn a_missing_bucket_or_a_bad_url_is_named_at_start() {
    let bucket = TestBucket::new();
    let mut config = bucket.config("p");
    config.bucket = "no-such-bucket-here".into();
    let err = S3BlobStore::connect(config)
        .err()
        .expect("no bucket")
        .to_string();
    assert!(
        err.contains("no-such-bucket-here") && err.contains("does not exist"),
        "{err}"
    );
    for (url, says) in [
        ("https://bucket/p", "s3://BUCKET/PREFIX"),
        ("s3://", "not an S3 bucket name"),
        ("s3://Upper_Case/p", "not an S3 bucket name"),
        ("s3://bucket/a/../b", ".."),
    ] {
        let err = S3Config::parse(url).unwrap_err().to_string();
        assert!(err.contains(says), "{url}: {err}");
    }
    let c = S3Config::parse("s3://rap-images/prod/v1/").unwrap();
    assert_eq!(
        (c.bucket.as_str(), c.prefix.as_str()),
        ("rap-images", "prod/v1")
    );
    // Credentials never show in debug output.
    let c = bucket.config("p");
    assert!(!format!("{c:?}").contains("rap-test-secret"));
}

#[test]
fn gc_deletes_orphans_only() {
    let bucket = TestBucket::new();
    let (_db, store, blobs) = pg_with_s3(&bucket, "p");
    let a = t("a");
    let kept = image(1);
    store
        .add_concept(&a, &concept("bo"), vec![kept.clone()])
        .unwrap();
    // What a crash between a commit and its delete leaves: objects no row refers to.
    let orphan = image(2);
    blobs.put(&a, &orphan.id.0, &orphan.bytes).unwrap();
    blobs.put(&t("gone"), &orphan.id.0, &orphan.bytes).unwrap();
    // Something under the prefix that is not ours (not TENANT/SHA256) is left alone.
    let foreign = S3BlobStore::connect(bucket.config("p/a")).unwrap();
    foreign.put(&a, &orphan.id.0, &orphan.bytes).unwrap(); // p/a/a/SHA256: one level too deep
    assert!(
        foreign.put(&a, "not-a-sha", b"x").is_err(),
        "keys are content addresses"
    );
    let other = bucket.blob_store("elsewhere");
    other.put(&a, &orphan.id.0, &orphan.bytes).unwrap();

    let report = store.collect_orphan_blobs().unwrap();
    assert_eq!(report.objects, 3);
    let mut removed = report.removed.clone();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            ("a".to_owned(), orphan.id.0.clone()),
            ("gone".to_owned(), orphan.id.0.clone())
        ]
    );
    assert!(report.missing.is_empty());
    assert_eq!(objects(blobs.as_ref()), BTreeSet::from([key("a", &kept)]));
    assert_eq!(
        store.image_bytes(&a, &kept.id).unwrap(),
        kept.bytes.to_vec()
    );
    assert_eq!(
        objects(other.as_ref()).len(),
        1,
        "another prefix is not swept"
    );
    assert_eq!(
        foreign.get(&a, &orphan.id.0).unwrap(),
        orphan.bytes.to_vec()
    );
    // A row whose object vanished is reported.
    blobs.delete(&a, &kept.id.0).unwrap();
    let report = store.collect_orphan_blobs().unwrap();
    assert_eq!(report.missing, vec![("a".to_owned(), kept.id.0.clone())]);
    assert!(report.removed.is_empty());
    // A store without a blob store has nothing to sweep, and says so.
    let plain = TestDb::new().store();
    assert!(plain.collect_orphan_blobs().is_err());
}

fn fill_embedded(store: &SqliteStore) {
    let (a, b) = (t("alice"), t("bob"));
    let shared = image(10);
    store
        .add_concept(&a, &concept("bo"), vec![shared.clone(), image(11)])
        .unwrap();
    store
        .add_concept(&a, &concept("dug"), vec![shared.clone()])
        .unwrap();
    store
        .add_concept(&b, &concept("rex"), vec![image(12), image(13)])
        .unwrap();
    let vec = |seed: f32, dim: usize| {
        Embedding::normalized((0..dim).map(|i| (i as f32 * 0.37 + seed).sin()).collect()).unwrap()
    };
    for (tenant, ids) in [
        (&a, vec![shared.id.clone(), image(11).id]),
        (&b, vec![image(12).id]),
    ] {
        for (n, id) in ids.iter().enumerate() {
            let keys: Vec<_> = (0..3)
                .map(|r| {
                    (
                        id.clone(),
                        Region::whole(12 + r, 10),
                        vec(n as f32 + r as f32 * 0.1, 16),
                    )
                })
                .collect();
            store.put_keys(tenant, "efficientnet-lite0", &keys).unwrap();
            store
                .put_keys(
                    tenant,
                    "clip-vit-b-32",
                    &[(id.clone(), Region::whole(12, 10), vec(n as f32, 8))],
                )
                .unwrap();
        }
    }
}

#[test]
fn migration_round_trips_embedded_to_postgres_with_s3_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let source = SqliteStore::open(dir.path().join("memory.sqlite")).unwrap();
    fill_embedded(&source);
    let bucket = TestBucket::new();
    let (_db, pg, blobs) = pg_with_s3(&bucket, "migrated");

    let report = migrate(&source, &pg, &MigrateOptions::default()).unwrap();
    let tenants: Vec<&str> = report.tenants.iter().map(|s| s.tenant.as_str()).collect();
    assert_eq!(tenants, ["alice", "bob"]);
    let alice = &report.tenants[0];
    assert_eq!((alice.concepts, alice.images), (2, 2));
    let encoders: Vec<(&str, u64)> = alice
        .encoders
        .iter()
        .map(|e| (e.encoder.as_str(), e.keys))
        .collect();
    assert_eq!(encoders, [("clip-vit-b-32", 2), ("efficientnet-lite0", 6)]);
    assert_eq!(
        objects(blobs.as_ref()).len(),
        4,
        "every image of every tenant, in S3"
    );

    // Into the target again: refused before anything is written.
    let err = migrate(&source, &pg, &MigrateOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Conflict(_)) && err.to_string().contains("alice"),
        "{err}"
    );

    let back_dir = tempfile::tempdir().unwrap();
    let back = SqliteStore::open(back_dir.path().join("memory.sqlite")).unwrap();
    migrate(&pg, &back, &MigrateOptions::default()).unwrap();
    for tenant in [t("alice"), t("bob")] {
        // Concepts identical: ids, names, aliases, fields, times, images in order.
        assert_eq!(
            back.concepts(&tenant).unwrap(),
            source.concepts(&tenant).unwrap()
        );
        assert_eq!(
            summarize(&back, &tenant).unwrap(),
            summarize(&source, &tenant).unwrap()
        );
        for c in source.concepts(&tenant).unwrap() {
            for i in &c.images {
                assert_eq!(
                    back.image_bytes(&tenant, &i.id).unwrap(),
                    source.image_bytes(&tenant, &i.id).unwrap()
                );
            }
        }
        for (encoder, n) in source.encoders(&tenant).unwrap() {
            let keys = |s: &dyn ConceptStore| {
                let mut k: Vec<_> = s
                    .keys(&tenant, &encoder)
                    .unwrap()
                    .into_iter()
                    .map(|k| {
                        (
                            k.image.0,
                            serde_json::to_string(&k.region).unwrap(),
                            k.embedding.to_le_bytes(),
                        )
                    })
                    .collect();
                k.sort();
                k
            };
            assert_eq!(keys(&back).len() as u64, n);
            assert_eq!(
                keys(&back),
                keys(&source),
                "{encoder}: the same keys, bit for bit"
            );
        }
    }

    // --replace: the target's tenant is replaced by the source's, whole.
    source.remove_concept(&t("bob"), "rex").unwrap();
    source
        .add_concept(&t("bob"), &concept("max"), vec![image(20)])
        .unwrap();
    let only_bob = MigrateOptions {
        replace: true,
        tenants: vec![t("bob")],
    };
    migrate(&source, &pg, &only_bob).unwrap();
    let names: Vec<String> = pg
        .concepts(&t("bob"))
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["max"]);
    assert_eq!(
        summarize(&pg, &t("bob")).unwrap(),
        summarize(&source, &t("bob")).unwrap()
    );
    let bob_objects: Vec<String> = objects(blobs.as_ref())
        .into_iter()
        .filter(|k| k.starts_with("bob/"))
        .collect();
    assert_eq!(
        bob_objects,
        [key("bob", &image(20))],
        "the replaced images' objects are gone"
    );
}
