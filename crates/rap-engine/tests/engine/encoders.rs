//! The memory's encoder record lives in the store: written by `reindex_with`, read by every
//! engine on the same memory (two replicas on one PostgreSQL database agree), and moved in
//! once from an earlier version's `DATA_DIR/encoders.json`.

use rap_core::{EncoderInfo, Error, ImageEncoder, NewConcept, Tenant};
use rap_engine::{
    EncoderChoice, EncoderResolver, Engine, EngineConfig, TenantEncoders, ENCODERS_SETTING,
};
use rap_memory::{ConceptStore, SqliteStore};
use rap_memory_postgres::{testing::TestDb, PgStore};
use std::path::Path;
use std::sync::Arc;

use crate::common::MeanColour;

fn t(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

fn mean(id: &str) -> Arc<dyn ImageEncoder> {
    Arc::new(MeanColour(EncoderInfo {
        id: id.into(),
        dim: 3,
    }))
}

fn resolver() -> EncoderResolver {
    Box::new(|name| match name {
        "tiny" => Ok(mean("mean@tiny")),
        "other" => Ok(mean("mean@other")),
        _ => Err(Error::invalid(format!("no encoder {name}"))),
    })
}

fn tiny() -> EncoderChoice {
    EncoderChoice {
        name: "tiny".into(),
        id: "mean@tiny".into(),
    }
}

/// The embedded memory in `dir`, as `Engine::open` opens it (moving an `encoders.json` in).
fn open(dir: &Path) -> rap_core::Result<Engine> {
    let engine = Engine::open(
        EngineConfig::new(dir),
        Box::new(|| Ok(Some(mean("mean@default")))),
    )?;
    Ok(engine.with_encoder_resolver(resolver()))
}

fn embedded(dir: &Path) -> Engine {
    open(dir).unwrap()
}

/// An engine ("replica") with its own data dir on the PostgreSQL database at `url`.
fn replica(dir: &Path, url: &str) -> Engine {
    let store: Arc<dyn ConceptStore> = Arc::new(PgStore::connect(url).unwrap());
    Engine::with_store(
        EngineConfig::new(dir),
        store,
        Box::new(|| Ok(Some(mean("mean@default")))),
    )
    .with_encoder_resolver(resolver())
}

fn add(engine: &Engine, tenant: &Tenant, name: &str, colour: [u8; 3]) {
    let img = image::RgbImage::from_pixel(16, 16, image::Rgb(colour));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let new = NewConcept {
        name: name.into(),
        ..Default::default()
    };
    let image = engine.image_from_bytes(png.into_inner()).unwrap();
    engine.add_concept(tenant, &new, vec![image]).unwrap();
}

#[test]
fn an_old_encoders_file_moves_into_the_store_once() {
    let dir = tempfile::tempdir().unwrap();
    // The store already holds a record for "b" (written since by another process): it stays.
    let kept = r#"{"active":{"name":"other","id":"mean@other"},"pending":null}"#;
    SqliteStore::open(EngineConfig::new(dir.path()).store_path())
        .unwrap()
        .set_tenant_setting(&t("b"), ENCODERS_SETTING, Some(kept))
        .unwrap();
    let file = serde_json::json!({ "tenants": {
        "a": { "active": tiny(), "pending": null },
        "b": { "active": null, "pending": tiny() },
        "c": { "active": null, "pending": null },
    }});
    let path = dir.path().join("encoders.json");
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();

    let engine = embedded(dir.path());
    assert_eq!(
        engine.tenant_encoders(&t("a")).unwrap(),
        TenantEncoders {
            active: Some(tiny()),
            pending: None
        }
    );
    assert_eq!(
        engine
            .store()
            .tenant_setting(&t("b"), ENCODERS_SETTING)
            .unwrap()
            .as_deref(),
        Some(kept),
        "a tenant with a record in the store keeps it"
    );
    assert_eq!(
        engine.tenant_encoders(&t("c")).unwrap(),
        TenantEncoders::default()
    );
    assert_eq!(
        engine
            .store()
            .tenant_setting(&t("c"), ENCODERS_SETTING)
            .unwrap(),
        None,
        "nothing recorded, nothing written"
    );
    assert!(!path.exists());
    assert!(dir.path().join("encoders.json.migrated").exists());
    drop(engine);

    // Opened again: the records are read from the store, nothing moves twice.
    let engine = embedded(dir.path());
    assert_eq!(
        engine.tenant_encoders(&t("a")).unwrap().active,
        Some(tiny())
    );
    assert_eq!(
        rap_engine::migrate_encoders_file(dir.path(), engine.store()).unwrap(),
        Vec::<Tenant>::new()
    );
    // The same file again writes nothing over what the store holds.
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    engine
        .store()
        .set_tenant_setting(&t("a"), ENCODERS_SETTING, None)
        .unwrap();
    assert_eq!(
        rap_engine::migrate_encoders_file(dir.path(), engine.store()).unwrap(),
        vec![t("a")]
    );
    assert!(!path.exists());
}

#[test]
fn an_unreadable_encoders_file_is_named_and_nothing_moves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encoders.json");
    std::fs::write(&path, b"{\"tenants\": {\"a\": ").unwrap();
    let err = open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("encoders.json"), "{err}");
    assert!(path.exists(), "left for the user to look at");
    std::fs::write(
        &path,
        br#"{"tenants": {"../x": {"active": null, "pending": null}}}"#,
    )
    .unwrap();
    let err = open(dir.path()).err().unwrap();
    assert!(
        err.to_string().contains("encoders.json") && err.to_string().contains("tenant"),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    let engine = embedded(dir.path());
    assert!(engine.store().tenant_settings(&t("a")).unwrap().is_empty());
}

#[test]
fn reindexing_records_the_encoder_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let engine = embedded(dir.path());
    let tenant = t("t");
    add(&engine, &tenant, "bo", [200, 30, 30]);
    assert_eq!(
        engine.tenant_encoders(&tenant).unwrap(),
        TenantEncoders::default()
    );
    let report = engine
        .reindex_with(&tenant, "tiny", &mut |_, _| {})
        .unwrap();
    assert!(report.active);
    assert_eq!(report.encoder, tiny());
    let stored = engine
        .store()
        .tenant_setting(&tenant, ENCODERS_SETTING)
        .unwrap()
        .unwrap();
    let record: TenantEncoders = serde_json::from_str(&stored).unwrap();
    assert_eq!((record.active, record.pending), (Some(tiny()), None));
    assert!(
        !dir.path().join("encoders.json").exists(),
        "no file any more"
    );
    assert_eq!(
        engine
            .encoder_settings()
            .unwrap()
            .tenants
            .keys()
            .collect::<Vec<_>>(),
        vec!["t"]
    );
    drop(engine);

    // Another engine on the same memory uses it; another tenant keeps the default.
    let engine = embedded(dir.path());
    assert_eq!(engine.encoder_for(&tenant).unwrap().info().id, "mean@tiny");
    assert_eq!(
        engine.encoder_for(&t("other")).unwrap().info().id,
        "mean@default"
    );
}

#[test]
fn replicas_on_one_database_share_the_encoder_choice() {
    let db = TestDb::new();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = replica(d1.path(), &db.url);
    let two = replica(d2.path(), &db.url);
    let tenant = t("t");
    add(&one, &tenant, "bo", [200, 30, 30]);
    assert_eq!(two.encoder_for(&tenant).unwrap().info().id, "mean@default");

    one.reindex_with(&tenant, "tiny", &mut |_, _| {}).unwrap();
    assert_eq!(two.tenant_encoders(&tenant).unwrap().active, Some(tiny()));
    assert_eq!(two.encoder_for(&tenant).unwrap().info().id, "mean@tiny");
    assert_eq!(
        two.tenant_encoders(&t("other")).unwrap(),
        TenantEncoders::default(),
        "another tenant's choice is its own"
    );
    // Switching back through the other replica is seen by the first.
    two.reindex_with(&tenant, "other", &mut |_, _| {}).unwrap();
    assert_eq!(one.encoder_for(&tenant).unwrap().info().id, "mean@other");
}
