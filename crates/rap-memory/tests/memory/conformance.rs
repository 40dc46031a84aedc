//! The conformance suite (`rap_memory::testing`, every case of it) on the embedded SQLite
//! store; a second handle is a second `SqliteStore` on the same file, as a second process.

use rap_memory::SqliteStore;

fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("memory.sqlite")).unwrap();
    (dir, store)
}

fn sqlite_again(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("memory.sqlite")).unwrap()
}

rap_memory::conformance_suite!(embedded_sqlite, sqlite(), sqlite_again);
