//! `rap` with the shared memory's image bytes in S3 (`RAP_BLOB_STORE`, a real S3 server and a
//! real PostgreSQL on loopback) and `rap migrate` between the embedded memory and PostgreSQL:
//! two `rap serve` replicas on one PostgreSQL + S3 serve each other's images; a memory copied
//! to PostgreSQL + S3 and back is the same, with the same checksums printed both ways.

use crate::common;
use common::{multipart, s, shared, Rap, Serve};
use rap_memory::BlobStore;
use rap_memory_postgres::testing::{TestBucket, TestDb};
use std::process::{Command, Output};

fn dreambooth(rel: &str) -> std::path::PathBuf {
    shared("dreambooth-dev").join(rel)
}

/// `rap` on `rap`'s data dir with the environment that reaches `db` and `bucket` (the backend
/// itself is left to each call).
fn with_servers(rap: &Rap, db: &TestDb, bucket: &TestBucket) -> Command {
    let mut c = rap.command();
    c.env("RAP_DATABASE_URL", &db.url);
    for (k, v) in bucket.env("rap") {
        c.env(k, v);
    }
    c
}

fn on_postgres(rap: &Rap, db: &TestDb, bucket: &TestBucket) -> Command {
    let mut c = with_servers(rap, db, bucket);
    c.env("RAP_MEMORY_BACKEND", "postgres");
    c
}

fn on_embedded(rap: &Rap) -> Command {
    let mut c = rap.command();
    c.env("RAP_MEMORY_BACKEND", "embedded")
        .env_remove("RAP_BLOB_STORE");
    c
}

fn ok(mut c: Command, args: &[&str]) -> serde_json::Value {
    let out: Output = c.args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "rap {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fails(mut c: Command, args: &[&str]) -> String {
    let out = c.args(args).output().unwrap();
    assert!(!out.status.success(), "rap {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn migrate_copies_every_tenant_to_postgres_and_s3_and_back() {
    let (db, bucket) = (TestDb::new(), TestBucket::new());
    let source = Rap::with_default_encoder();
    let dog = dreambooth("dog/00.jpg");
    let dog2 = dreambooth("dog/01.jpg");
    let can = dreambooth("can/00.jpg");
    ok(
        on_embedded(&source),
        &[
            "concept",
            "add",
            "bo",
            "--image",
            s(&dog),
            "--image",
            s(&dog2),
            "--alias",
            "shiba",
        ],
    );
    ok(
        on_embedded(&source),
        &["concept", "add", "rex", "--image", s(&dog)],
    );
    ok(
        on_embedded(&source),
        &[
            "--tenant",
            "team-b",
            "concept",
            "add",
            "tin",
            "--image",
            s(&can),
        ],
    );
    let listed = |c: Command, tenant: &str| ok(c, &["--tenant", tenant, "concept", "list"]);
    // Server API keys, one revoked, one of a tenant without concepts: they go along.
    let key = ok(on_embedded(&source), &["keys", "create"])["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = ok(
        on_embedded(&source),
        &["--tenant", "alice", "keys", "create"],
    );
    let alice_id = alice["key"].as_str().unwrap().split('_').nth(1).unwrap();
    ok(on_embedded(&source), &["keys", "revoke", alice_id]);
    let keys_listed = |c: Command| ok(c, &["keys", "list"]);

    let report = ok(
        with_servers(&source, &db, &bucket),
        &["migrate", "--to", "postgres"],
    );
    let tenants = report["tenants"].as_array().unwrap();
    let summary: Vec<(&str, u64, u64)> = tenants
        .iter()
        .map(|t| {
            (
                t["tenant"].as_str().unwrap(),
                t["concepts"].as_u64().unwrap(),
                t["images"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [("default", 2, 2), ("team-b", 1, 1)]);
    assert_eq!(report["api_keys"], 2, "{report}");
    assert_eq!(
        keys_listed(on_postgres(&source, &db, &bucket)),
        keys_listed(on_embedded(&source))
    );
    let encoders = &tenants[0]["encoders"];
    assert!(
        encoders[0]["encoder"]
            .as_str()
            .unwrap()
            .starts_with("efficientnet-lite0"),
        "{encoders}"
    );
    assert!(encoders[0]["keys"].as_u64().unwrap() >= 2, "{encoders}");
    // The images are objects in the bucket, the concepts rows in PostgreSQL.
    let blobs = bucket.blob_store("rap");
    assert_eq!(blobs.list().unwrap().len(), 3);
    for tenant in ["default", "team-b"] {
        assert_eq!(
            listed(on_postgres(&source, &db, &bucket), tenant),
            listed(on_embedded(&source), tenant)
        );
    }
    // The text form prints the verified counts and checksums.
    let out = with_servers(&source, &db, &bucket)
        .args([
            "migrate",
            "--to",
            "postgres",
            "--replace",
            "--only-tenant",
            "team-b",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checksum = &tenants[1]["images_checksum"].as_str().unwrap()[..16];
    assert!(
        text.contains("every count and checksum matches")
            && text.contains("team-b: 1 concepts")
            && text.contains(checksum)
            && text.contains("s3://"),
        "{text}"
    );

    // Again into a target that holds the tenants: refused, nothing written.
    let err = fails(
        with_servers(&source, &db, &bucket),
        &["migrate", "--to", "postgres"],
    );
    assert!(
        err.contains("already holds") && err.contains("--replace"),
        "{err}"
    );

    // Back into a fresh embedded memory: the same concepts, images and keys.
    let back = Rap::new();
    let report_back = ok(
        with_servers(&back, &db, &bucket),
        &["migrate", "--to", "sqlite"],
    );
    assert_eq!(
        report_back, report,
        "the same counts and checksums both ways"
    );
    for tenant in ["default", "team-b"] {
        assert_eq!(
            listed(on_embedded(&back), tenant),
            listed(on_embedded(&source), tenant)
        );
    }
    let shown = ok(on_embedded(&back), &["concept", "show", "shiba"]);
    assert_eq!(shown["name"], "bo");
    assert_eq!(
        keys_listed(on_embedded(&back)),
        keys_listed(on_embedded(&source))
    );
    // The copied key works where it was copied to: a server on the new memory needs it.
    rap_llm::http::install_tls_provider();
    let server = Serve::start(on_embedded(&back), &[]);
    let concepts = |auth: Option<&str>| {
        let mut r = reqwest::blocking::Client::new().get(format!("{}/v1/concepts", server.url));
        if let Some(k) = auth {
            r = r.bearer_auth(k);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!((concepts(None), concepts(Some(&key))), (401, 200));
    drop(server);

    // Nothing to sweep after all this; a blob store with the embedded backend is refused.
    let gc = ok(with_servers(&back, &db, &bucket), &["blobs", "gc"]);
    assert_eq!(
        (
            gc["objects"].as_u64(),
            gc["removed"].as_array().unwrap().len()
        ),
        (Some(3), 0)
    );
    let mut c = back.command();
    c.env("RAP_BLOB_STORE", bucket.url("rap"));
    let err = fails(c, &["concept", "list"]);
    assert!(
        err.contains("RAP_BLOB_STORE") && err.contains("postgres"),
        "{err}"
    );
    // Migrating without a database says what to set.
    let mut c = back.command();
    c.env_remove("RAP_DATABASE_URL");
    let err = fails(c, &["migrate", "--to", "postgres"]);
    assert!(err.contains("RAP_DATABASE_URL"), "{err}");
}

#[test]
fn two_servers_on_postgres_and_s3_serve_each_others_images() {
    let (db, bucket) = (TestDb::new(), TestBucket::new());
    let (one, two) = (Rap::new(), Rap::new());
    let (a, b) = (
        Serve::start(on_postgres(&one, &db, &bucket), &[]),
        Serve::start(on_postgres(&two, &db, &bucket), &[]),
    );
    rap_llm::http::install_tls_provider();
    let http = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap();

    // Added through A...
    let photo = std::fs::read(dreambooth("can/00.jpg")).unwrap();
    let (content_type, body) =
        multipart(&[("name", b"tin"), ("category", b"can"), ("image", &photo)]);
    let r = http
        .post(format!("{}/v1/concepts", a.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: serde_json::Value = r.json().unwrap();
    let created = created.get("concept").unwrap_or(&created);
    let image_id = created["images"][0]["id"].as_str().unwrap().to_owned();
    // ...its bytes are an object of the bucket, not a database row...
    let blobs = bucket.blob_store("rap");
    let objects: Vec<String> = blobs.list().unwrap().into_iter().map(|(_, s)| s).collect();
    assert_eq!(objects, std::slice::from_ref(&image_id));
    let in_db: i64 = db
        .client()
        .query_one("SELECT count(*) FROM blobs WHERE data IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_db, 0);
    // ...and B serves them, byte for byte.
    let r = http
        .get(format!("{}/v1/images/{image_id}", b.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().unwrap().to_vec(), photo);

    // Deleted through B: the object goes, and A no longer serves the image.
    let r = http
        .delete(format!("{}/v1/concepts/tin", b.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(blobs.list().unwrap().is_empty());
    let r = http
        .get(format!("{}/v1/images/{image_id}", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
