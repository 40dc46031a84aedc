//! For tests (of this crate and of others): a real PostgreSQL + pgvector server on loopback
//! and a fresh database per test.
//!
//! `RAP_TEST_DATABASE_URL` (`postgres://USER@HOST:PORT`, no database name) points the tests at
//! a server of your own; otherwise the first test of a binary starts one through
//! `scripts/test-postgres.sh` (PyPI's pgserver wheel), which stops it when the binary exits.
//! A server that cannot be had fails the tests: they never pass without PostgreSQL.
//!
//! Likewise [`s3_endpoint`] / [`TestBucket`]: an S3 server (moto, through
//! `scripts/test-s3.sh`) and a fresh bucket per test, for the blob store.

use crate::{PgOptions, PgStore, S3BlobStore, S3Config};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

static SERVER: OnceLock<String> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A script of the workspace's `scripts/` folder, whichever crate's test calls this.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

/// Runs `scripts/NAME start PID` (a test server that stops when this process exits) and
/// returns the lines it printed; a server that cannot be started panics with `hint`.
fn start_server(name: &str, hint: &str) -> Vec<String> {
    let script = script(name);
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(std::process::id().to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} could not start its server ({hint}):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Creates a bucket on a test S3 server (which takes unsigned requests; creating a bucket is
/// not a store operation).
fn create_bucket(endpoint: &str, bucket: &str) {
    crate::s3::install_tls_provider();
    let status = reqwest::blocking::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .expect("create a test bucket")
        .status();
    assert!(status.is_success(), "creating bucket {bucket}: {status}");
}

/// The test server's URL without a database name (started on first use; a server that cannot
/// be had panics: a test that needs PostgreSQL never passes without it).
pub fn server_url() -> &'static str {
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("RAP_TEST_DATABASE_URL") {
            return url.trim_end_matches('/').to_owned();
        }
        let lines = start_server(
            "test-postgres.sh",
            "python3 with pip is needed to install PyPI's pgserver; or set RAP_TEST_DATABASE_URL",
        );
        lines
            .into_iter()
            .next()
            .expect("the script printed the server URL")
    })
}

/// A new, empty database on the test server, dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let server = server_url();
        let name = format!(
            "rap_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(&format!("{server}/postgres"), postgres::NoTls)
            .expect("connect to the test server");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        TestDb {
            url: format!("{server}/{name}"),
            name,
        }
    }

    pub fn store(&self) -> PgStore {
        PgStore::connect(&self.url).expect("open the PostgreSQL store")
    }

    pub fn store_with(&self, options: PgOptions) -> PgStore {
        PgStore::connect_with(&self.url, options).expect("open the PostgreSQL store")
    }

    /// A plain client on this database (for checks the store does not expose).
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) =
            postgres::Client::connect(&format!("{}/postgres", server_url()), postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

// ---- an S3 server (moto) for the blob store ----

static S3_SERVER: OnceLock<String> = OnceLock::new();
static NEXT_BUCKET: AtomicUsize = AtomicUsize::new(0);

/// The test S3 server's endpoint (`http://127.0.0.1:PORT`), started on first use through
/// `scripts/test-s3.sh` (PyPI's moto), which stops it when the test binary exits;
/// `RAP_TEST_S3_ENDPOINT` points the tests at a server of your own. A server that cannot be
/// had panics: a test that needs S3 never passes without it.
pub fn s3_endpoint() -> &'static str {
    S3_SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("RAP_TEST_S3_ENDPOINT") {
            return url.trim_end_matches('/').to_owned();
        }
        let lines = start_server(
            "test-s3.sh",
            "python3 with pip is needed to install PyPI's moto; or set RAP_TEST_S3_ENDPOINT",
        );
        lines
            .into_iter()
            .next()
            .expect("the script printed the endpoint")
    })
}

/// A new, empty bucket on the test S3 server (left for the server's end: it lives in memory).
pub struct TestBucket {
    pub endpoint: String,
    pub bucket: String,
}

impl TestBucket {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let endpoint = s3_endpoint().to_owned();
        let bucket = format!(
            "rap-test-{}-{}",
            std::process::id(),
            NEXT_BUCKET.fetch_add(1, Ordering::Relaxed)
        );
        create_bucket(&endpoint, &bucket);
        TestBucket { endpoint, bucket }
    }

    /// `s3://BUCKET/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The environment a `rap` process needs to reach this bucket (with `RAP_BLOB_STORE`).
    pub fn env(&self, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("RAP_BLOB_STORE", self.url(prefix)),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "rap-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "rap-test-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    pub fn config(&self, prefix: &str) -> S3Config {
        let env = self.env(prefix);
        S3Config::parse(&self.url(prefix))
            .expect("a valid bucket URL")
            .with_env(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
    }

    pub fn blob_store(&self, prefix: &str) -> Arc<S3BlobStore> {
        Arc::new(S3BlobStore::connect(self.config(prefix)).expect("connect to the test bucket"))
    }
}

/// An S3 server of its own (not shared with other tests), for a test that stops it.
pub struct OwnS3Server {
    pub endpoint: String,
    dir: String,
}

impl OwnS3Server {
    /// Starts one (through `scripts/test-s3.sh`, like [`s3_endpoint`]); it stops when this is
    /// dropped or stopped, or when the test binary exits.
    pub fn start() -> Self {
        let mut lines = start_server("test-s3.sh", "python3 with pip is needed").into_iter();
        let endpoint = lines.next().expect("the endpoint");
        let dir = lines.next().expect("the server's folder");
        OwnS3Server { endpoint, dir }
    }

    /// A bucket on this server.
    pub fn bucket(&self, name: &str) -> TestBucket {
        create_bucket(&self.endpoint, name);
        TestBucket {
            endpoint: self.endpoint.clone(),
            bucket: name.to_owned(),
        }
    }

    /// Stops the server now (its port then refuses connections).
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(script("test-s3.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

impl Drop for OwnS3Server {
    fn drop(&mut self) {
        if Path::new(&self.dir).exists() {
            self.stop();
        }
    }
}
