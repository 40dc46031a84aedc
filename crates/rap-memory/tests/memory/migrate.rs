//! `rap_memory::migrate` between two embedded stores: the server API keys go along with the
//! tenants (hashes and revocations as they were), and a target holding another key under one
//! of their ids is refused before anything is copied.

use rap_core::{Error, NewConcept, Tenant};
use rap_image::Limits;
use rap_memory::migrate::{migrate, MigrateOptions};
use rap_memory::{ConceptStore, ImageInput, NewApiKey, SqliteStore, StoredApiKey};

fn t(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("memory.sqlite")).unwrap();
    (dir, store)
}

fn add(store: &SqliteStore, tenant: &str, name: &str, seed: u8) {
    let img = image::RgbImage::from_fn(8, 6, |x, y| image::Rgb([seed, x as u8, y as u8]));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let new = NewConcept {
        name: name.into(),
        aliases: vec![],
        category: "dog".into(),
        info: String::new(),
    };
    let image = ImageInput::from_bytes(png, &Limits::default()).unwrap();
    store.add_concept(&t(tenant), &new, vec![image]).unwrap();
}

fn stored(store: &SqliteStore) -> Vec<StoredApiKey> {
    store.api_key_store().unwrap().export_api_keys().unwrap()
}

#[test]
fn api_keys_go_along_with_their_tenants() {
    let (_d, source) = open();
    add(&source, "alice", "bo", 1);
    add(&source, "bob", "rex", 2);
    let keys = source.api_key_store().unwrap();
    let alice = NewApiKey::generate().unwrap();
    keys.add_api_key(&t("alice"), &alice).unwrap();
    let bob = NewApiKey::generate().unwrap();
    keys.add_api_key(&t("bob"), &bob).unwrap();
    keys.revoke_api_key(&bob.id).unwrap();
    // A tenant with a key and no concepts yet.
    keys.add_api_key(&t("carol"), &NewApiKey::generate().unwrap())
        .unwrap();

    // Every tenant: every key, exactly as stored.
    let (_e, all) = open();
    let report = migrate(&source, &all, &MigrateOptions::default()).unwrap();
    assert_eq!((report.tenants.len(), report.api_keys), (2, 3));
    assert_eq!(stored(&all), stored(&source));
    let moved = all.api_key_store().unwrap();
    assert_eq!(
        moved.tenant_for_key_hash(&alice.hash).unwrap(),
        Some(t("alice"))
    );
    assert_eq!(
        moved.tenant_for_key_hash(&bob.hash).unwrap(),
        None,
        "revoked"
    );

    // Some tenants: their keys only.
    let (_f, some) = open();
    let only_alice = MigrateOptions {
        tenants: vec![t("alice")],
        ..MigrateOptions::default()
    };
    let report = migrate(&source, &some, &only_alice).unwrap();
    assert_eq!(report.api_keys, 1);
    let alices: Vec<StoredApiKey> = stored(&source)
        .into_iter()
        .filter(|k| k.info.tenant == t("alice"))
        .collect();
    assert_eq!(stored(&some), alices);
}

#[test]
fn a_target_with_another_key_under_the_same_id_is_refused_before_copying() {
    let (_d, source) = open();
    add(&source, "alice", "bo", 1);
    let key = NewApiKey::generate().unwrap();
    source
        .api_key_store()
        .unwrap()
        .add_api_key(&t("alice"), &key)
        .unwrap();
    let (_e, target) = open();
    let mut other = stored(&source);
    other[0].hash = rap_memory::api_keys::hash_key("rap_something_else");
    target
        .api_key_store()
        .unwrap()
        .import_api_keys(&other, false)
        .unwrap();

    let err = migrate(&source, &target, &MigrateOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Conflict(_))
            && err.to_string().contains(&key.id)
            && err.to_string().contains("nothing was copied"),
        "{err}"
    );
    assert!(target.tenants().unwrap().is_empty());
    assert_eq!(stored(&target), other);

    // With replace: copied, the source's key wins.
    let replace = MigrateOptions {
        replace: true,
        ..MigrateOptions::default()
    };
    migrate(&source, &target, &replace).unwrap();
    assert_eq!(stored(&target), stored(&source));
}

#[test]
fn tenant_settings_go_along_with_their_tenants() {
    let (_d, source) = open();
    add(&source, "alice", "bo", 1);
    add(&source, "bob", "rex", 2);
    source
        .set_tenant_setting(&t("alice"), "encoders", Some(r#"{"active":null}"#))
        .unwrap();
    source
        .set_tenant_setting(&t("bob"), "colour", Some("red"))
        .unwrap();
    let (_e, target) = open();
    migrate(&source, &target, &MigrateOptions::default()).unwrap();
    for tenant in ["alice", "bob"] {
        assert_eq!(
            target.tenant_settings(&t(tenant)).unwrap(),
            source.tenant_settings(&t(tenant)).unwrap(),
            "{tenant}"
        );
    }
    assert_eq!(
        target
            .tenant_setting(&t("bob"), "colour")
            .unwrap()
            .as_deref(),
        Some("red")
    );
}

#[test]
fn a_version_2_file_gains_tenant_settings_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.sqlite");
    {
        let store = SqliteStore::open(&path).unwrap();
        add(&store, "alice", "bo", 1);
    }
    // Make it what a version-2 rap wrote: no tenant_settings table.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE tenant_settings; PRAGMA user_version = 2;")
        .unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.concept(&t("alice"), "bo").unwrap().name, "bo");
    store
        .set_tenant_setting(&t("alice"), "encoders", Some("{}"))
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store
            .tenant_setting(&t("alice"), "encoders")
            .unwrap()
            .as_deref(),
        Some("{}")
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 5);
}

#[test]
fn a_version_3_file_gains_negatives_and_a_memory_version_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.sqlite");
    {
        let store = SqliteStore::open(&path).unwrap();
        add(&store, "alice", "bo", 1);
    }
    // Make it what a version-3 rap wrote: no negative column, no memory versions.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE concept_images DROP COLUMN negative;
         DROP TABLE memory_versions; PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(conn);

    let store = SqliteStore::open(&path).unwrap();
    let before = store.concept(&t("alice"), "bo").unwrap();
    assert_eq!((before.images.len(), before.negatives.len()), (1, 0));
    assert_eq!(store.memory_version(&t("alice")).unwrap(), 0);
    let other = ImageInput::from_bytes(
        rap_memory::testing::conformance::png(9, 4, 4),
        &Limits::default(),
    )
    .unwrap();
    let edited = store
        .edit_concept(
            &t("alice"),
            "bo",
            rap_memory::ConceptEdit {
                add_negatives: vec![other],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(edited.negatives.len(), 1);
    assert_eq!(edited.images, before.images);
    assert_eq!(store.memory_version(&t("alice")).unwrap(), 1);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 5);
}
