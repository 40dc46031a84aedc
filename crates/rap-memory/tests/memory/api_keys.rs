//! API keys in the embedded store: only hashes are kept, revocation, and the upgrade of a
//! version-1 store (written before keys existed) in place.

use rap_core::{NewConcept, Tenant};
use rap_image::Limits;
use rap_memory::api_keys::hash_key;
use rap_memory::{ApiKeyStore, ConceptStore, ImageInput, NewApiKey, SqliteStore};

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 7]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn keys_are_stored_as_hashes_and_revocation_disables_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    let keys = store.api_key_store().unwrap();
    assert!(!keys.has_active_api_keys().unwrap());
    let a = Tenant::new("a").unwrap();
    let new = NewApiKey::generate().unwrap();
    let info = keys.add_api_key(&a, &new).unwrap();
    assert_eq!(info.id, new.id);
    assert!(keys.has_active_api_keys().unwrap());
    assert_eq!(
        keys.tenant_for_key_hash(&hash_key(&new.key)).unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        keys.tenant_for_key_hash(&hash_key("rap_nope")).unwrap(),
        None
    );
    drop(store);

    // The file holds the hash, never the key.
    let raw = std::fs::read(&path).unwrap();
    let wal = std::fs::read(path.with_extension("sqlite-wal")).unwrap_or_default();
    for bytes in [&raw, &wal] {
        let secret = new.key.rsplit('_').next().unwrap().as_bytes();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }

    let store = SqliteStore::open(&path).unwrap();
    let keys: &dyn ApiKeyStore = &store;
    assert_eq!(keys.api_keys().unwrap(), vec![info.clone()]);
    let revoked = keys.revoke_api_key(&new.key).unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(keys.tenant_for_key_hash(&hash_key(&new.key)).unwrap(), None);
    assert!(!keys.has_active_api_keys().unwrap());
    assert!(keys
        .revoke_api_key(&new.id)
        .unwrap_err()
        .to_string()
        .contains("already revoked"));
    assert!(keys
        .revoke_api_key("0123456789ab")
        .unwrap_err()
        .to_string()
        .contains("not found"));
    assert!(keys.revoke_api_key("x").is_err());
}

#[test]
fn a_version_1_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.sqlite");
    let t = Tenant::new("t").unwrap();
    {
        let store = SqliteStore::open(&path).unwrap();
        let new = NewConcept {
            name: "bo".into(),
            ..Default::default()
        };
        let img = ImageInput::from_bytes(png(), &Limits::default()).unwrap();
        store.add_concept(&t, &new, vec![img]).unwrap();
    }
    // Make it what a version-1 rap wrote: no api_keys table.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE api_keys; PRAGMA user_version = 1;")
        .unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.concept(&t, "bo").unwrap().name, "bo");
    let key = NewApiKey::generate().unwrap();
    store.add_api_key(&t, &key).unwrap();
    assert!(store.has_active_api_keys().unwrap());
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 5);
}
