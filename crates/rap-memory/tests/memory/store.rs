//! Behaviour of the embedded store: concepts, names and aliases, images and their
//! collection, keys and the change log, tenant isolation, and all-or-nothing writes.

use rap_core::{Embedding, Error, ImageId, NewConcept, Region, Tenant};
use rap_image::Limits;
use rap_memory::{ConceptEdit, ConceptStore, ImageInput, KeyIndex, SqliteStore, StoreStats};
use std::io::Cursor;

fn png(seed: u8, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            seed,
            (x % 256) as u8,
            (y.wrapping_mul(seed as u32) % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn input(seed: u8) -> ImageInput {
    ImageInput::from_bytes(png(seed, 16, 12), &Limits::default()).unwrap()
}

fn concept(name: &str) -> NewConcept {
    NewConcept {
        name: name.into(),
        aliases: vec![],
        category: "dog".into(),
        info: format!("<{name}> is a good dog."),
    }
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("memory.sqlite")).unwrap();
    (dir, store)
}

fn t(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

fn names(store: &SqliteStore, tenant: &Tenant) -> Vec<String> {
    store
        .concepts(tenant)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

#[test]
fn add_then_find_by_name_alias_any_case_and_brackets() {
    let (_d, store) = open();
    let mut new = concept("Bo");
    new.aliases = vec!["Shiba".into(), "<Bobo>".into()];
    let added = store
        .add_concept(&t("a"), &new, vec![input(1), input(2)])
        .unwrap();
    assert_eq!(added.name, "Bo");
    assert_eq!(added.aliases, vec!["Bobo", "Shiba"]);
    assert_eq!(added.images.len(), 2);
    assert_eq!(added.images[0].width, 16);
    assert_eq!(added.images[0].format, "png");
    for key in ["bo", "BO", "<bo>", " Bo ", "shiba", "<BOBO>"] {
        assert_eq!(store.concept(&t("a"), key).unwrap().id, added.id, "{key}");
    }
    assert!(matches!(
        store.concept(&t("a"), "nope"),
        Err(Error::NotFound { .. })
    ));
    assert!(added.created_at > 0 && added.created_at == added.updated_at);
}

#[test]
fn names_and_aliases_are_unique_together_and_failures_change_nothing() {
    let (_d, store) = open();
    let a = t("a");
    let mut bo = concept("bo");
    bo.aliases = vec!["shiba".into()];
    store.add_concept(&a, &bo, vec![input(1)]).unwrap();
    let before = (names(&store, &a), store.stats(&a).unwrap());

    for (name, alias) in [
        ("BO", None),
        ("dug", Some("Bo")),
        ("Shiba", None),
        ("dug", Some("SHIBA")),
    ] {
        let mut new = concept(name);
        new.aliases = alias.into_iter().map(String::from).collect();
        let err = store.add_concept(&a, &new, vec![input(9)]).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{name}/{alias:?}: {err}");
        assert!(err.to_string().contains("already used"), "{err}");
    }
    // A concept whose second alias clashes is not half-added with its first.
    let mut new = concept("dug");
    new.aliases = vec!["doggo".into(), "bo".into()];
    assert!(store.add_concept(&a, &new, vec![input(9)]).is_err());
    assert!(store.concept(&a, "doggo").is_err());
    assert_eq!((names(&store, &a), store.stats(&a).unwrap()), before);

    assert!(store
        .add_concept(&a, &concept("no images"), vec![])
        .is_err());
    assert!(store
        .add_concept(&a, &concept("bad,name"), vec![input(3)])
        .is_err());
    assert_eq!((names(&store, &a), store.stats(&a).unwrap()), before);
}

#[test]
fn edit_renames_changes_fields_images_and_aliases_at_once() {
    let (_d, store) = open();
    let a = t("a");
    let c = store
        .add_concept(&a, &concept("bo"), vec![input(1), input(2)])
        .unwrap();
    let first = c.images[0].id.clone();
    let edited = store
        .edit_concept(
            &a,
            "bo",
            ConceptEdit {
                rename: Some("Bo the Shiba".into()),
                info: Some("new info".into()),
                category: Some("shiba inu".into()),
                add_images: vec![input(3)],
                remove_images: vec![first.0[..10].to_string()],
                add_aliases: vec!["bo".into()],
                remove_aliases: vec![],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(edited.id, c.id);
    assert_eq!(edited.name, "Bo the Shiba");
    assert_eq!(
        edited.aliases,
        vec!["bo"],
        "the old name can become an alias"
    );
    assert_eq!(
        (edited.info.as_str(), edited.category.as_str()),
        ("new info", "shiba inu")
    );
    assert_eq!(edited.images.len(), 2);
    assert!(edited.images.iter().all(|i| i.id != first));
    assert!(edited.updated_at > c.updated_at);
    assert!(matches!(
        store.image_bytes(&a, &first),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.stats(&a).unwrap().images, 2);

    // Removing every image is refused and changes nothing.
    let ids: Vec<String> = edited.images.iter().map(|i| i.id.0.clone()).collect();
    let err = store
        .edit_concept(
            &a,
            "bo",
            ConceptEdit {
                remove_images: ids,
                info: Some("x".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("no reference image left"), "{err}");
    assert_eq!(store.concept(&a, "bo").unwrap(), edited);

    for bad in [
        ConceptEdit {
            remove_images: vec!["deadbeefdeadbeef".into()],
            ..Default::default()
        },
        ConceptEdit {
            remove_images: vec!["abc".into()],
            ..Default::default()
        },
        ConceptEdit {
            remove_aliases: vec!["nope".into()],
            ..Default::default()
        },
        ConceptEdit {
            add_images: vec![input(3)],
            ..Default::default()
        },
    ] {
        assert!(store.edit_concept(&a, "bo", bad).is_err());
        assert_eq!(store.concept(&a, "bo").unwrap(), edited);
    }
    assert!(matches!(
        store.edit_concept(&a, "ghost", ConceptEdit::default()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn images_are_stored_once_and_collected_with_their_last_user() {
    let (_d, store) = open();
    let a = t("a");
    let shared = input(5);
    store
        .add_concept(&a, &concept("bo"), vec![shared.clone(), input(1)])
        .unwrap();
    store
        .add_concept(&a, &concept("dug"), vec![shared.clone()])
        .unwrap();
    assert_eq!(
        store.stats(&a).unwrap().images,
        2,
        "the shared image is kept once"
    );
    let key = Embedding::normalized(vec![1.0, 0.0]).unwrap();
    store
        .put_keys(
            &a,
            "enc",
            &[(shared.id.clone(), Region::whole(16, 12), key)],
        )
        .unwrap();

    store.remove_concept(&a, "bo").unwrap();
    assert_eq!(store.image_bytes(&a, &shared.id).unwrap(), *shared.bytes);
    assert_eq!(
        store.stats(&a).unwrap(),
        StoreStats {
            concepts: 1,
            images: 1,
            embeddings: 1
        }
    );
    store.remove_concept(&a, "DUG").unwrap();
    assert_eq!(store.stats(&a).unwrap(), StoreStats::default());
    assert!(matches!(
        store.remove_concept(&a, "dug"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn tenants_never_see_each_other() {
    let (_d, store) = open();
    let (a, b) = (t("alice"), t("bob"));
    let img = input(7);
    let ca = store
        .add_concept(&a, &concept("bo"), vec![img.clone()])
        .unwrap();
    // The same name and the same image are independent in another tenant.
    let cb = store
        .add_concept(&b, &concept("bo"), vec![img.clone()])
        .unwrap();
    assert_ne!(ca.id, cb.id);
    store.remove_concept(&b, "bo").unwrap();
    assert_eq!(store.image_bytes(&a, &img.id).unwrap(), *img.bytes);
    assert!(matches!(
        store.image_bytes(&b, &img.id),
        Err(Error::NotFound { .. })
    ));
    assert!(store.concept_by_id(&b, &ca.id).is_err());
    assert!(store.concepts(&b).unwrap().is_empty());
    assert!(store.remove_concept(&b, "bo").is_err());
    assert!(store
        .edit_concept(&b, "bo", ConceptEdit::default())
        .is_err());
    store
        .put_keys(
            &b,
            "enc",
            &[(
                img.id.clone(),
                Region::whole(1, 1),
                Embedding::normalized(vec![1.0]).unwrap(),
            )],
        )
        .unwrap();
    assert_eq!(
        store.stats(&b).unwrap().embeddings,
        0,
        "no keys for another tenant's image"
    );
    assert_eq!(names(&store, &a), vec!["bo"]);
}

#[test]
fn key_index_follows_adds_and_removes_without_rebuilding() {
    let (_d, store) = open();
    let a = t("a");
    let key = |v: Vec<f32>| Embedding::normalized(v).unwrap();
    let bo = store
        .add_concept(&a, &concept("bo"), vec![input(1)])
        .unwrap();
    store
        .put_keys(
            &a,
            "enc",
            &[(
                bo.images[0].id.clone(),
                Region::whole(16, 12),
                key(vec![1.0, 0.0, 0.0]),
            )],
        )
        .unwrap();
    let mut index = KeyIndex::build(&store, &a, "enc", 3).unwrap();
    assert_eq!(index.len(), 1);

    // Another handle on the same file (another process, in effect) adds and removes.
    let dug = store
        .add_concept(&a, &concept("dug"), vec![input(2)])
        .unwrap();
    store
        .put_keys(
            &a,
            "enc",
            &[(
                dug.images[0].id.clone(),
                Region::whole(16, 12),
                key(vec![0.0, 1.0, 0.0]),
            )],
        )
        .unwrap();
    assert_eq!(index.refresh(&store).unwrap(), 1);
    let top = index.search(&key(vec![0.1, 1.0, 0.0]), 2).unwrap();
    assert_eq!(top[0].1, &dug.images[0].id);
    assert!(top[0].0 > top[1].0);

    store.remove_concept(&a, "dug").unwrap();
    index.refresh(&store).unwrap();
    let top = index.search(&key(vec![0.0, 1.0, 0.0]), 5).unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].1, &bo.images[0].id);

    // Re-embedding an image replaces its key.
    store
        .put_keys(
            &a,
            "enc",
            &[(
                bo.images[0].id.clone(),
                Region::whole(16, 12),
                key(vec![0.0, 0.0, 1.0]),
            )],
        )
        .unwrap();
    index.refresh(&store).unwrap();
    assert_eq!(index.len(), 1);
    assert!((index.search(&key(vec![0.0, 0.0, 1.0]), 1).unwrap()[0].0 - 1.0).abs() < 1e-6);
    assert_eq!(
        store.images_without_keys(&a, "enc").unwrap(),
        Vec::<ImageId>::new()
    );
    assert_eq!(store.images_without_keys(&a, "other").unwrap().len(), 1);
}

#[test]
fn a_store_from_a_newer_rap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).err().unwrap();
    assert!(err.to_string().contains("newer rap"), "{err}");
}
