//! For tests (of this crate and of others): a real PostgreSQL + pgvector server on loopback
//! and a fresh database per test.
//!
//! `RAP_TEST_DATABASE_URL` (`postgres://USER@HOST:PORT`, no database name) points the tests at
//! a server of your own; otherwise the first test of a binary starts one through
//! `scripts/test-postgres.sh` (PyPI's pgserver wheel), which stops it when the binary exits.
//! A server that cannot be had fails the tests: they never pass without PostgreSQL.

use crate::{PgOptions, PgStore};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static SERVER: OnceLock<String> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The test server's URL without a database name (started on first use; a server that cannot
/// be had panics: a test that needs PostgreSQL never passes without it).
pub fn server_url() -> &'static str {
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("RAP_TEST_DATABASE_URL") {
            return url.trim_end_matches('/').to_owned();
        }
        // This crate's folder in the workspace, whichever crate's test calls this.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-postgres.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(std::process::id().to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "PostgreSQL for the tests could not be started by {} (python3 with pip is needed to \
             install PyPI's pgserver; or set RAP_TEST_DATABASE_URL):\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .next()
            .expect("the script printed the server URL")
            .to_owned()
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
