//! The behaviour suite every store backend must pass: each case is written once against the
//! [`ConceptStore`] / [`crate::ApiKeyStore`] traits, and each backend's test binary runs all of
//! them on its own store through [`crate::conformance_suite!`], so the backends cannot drift
//! apart.
//!
//! Search is exercised the way the engine searches: through the store's own search where it
//! has one (PostgreSQL), else through a [`KeyIndex`] kept current from the store's key log
//! (SQLite) - and the key log itself is exercised on both.
//!
//! Every case takes a fresh, empty store (and panics on the first failed assertion).

use crate::api_keys::hash_key;
use crate::{
    ApiKeyInfo, ConceptEdit, ConceptStore, ImageInput, KeyChange, KeyIndex, NewApiKey, StoreStats,
    StoredApiKey,
};
use rap_core::{Embedding, Error, ImageId, NewConcept, Region, Tenant};
use rap_image::Limits;
use std::io::Cursor;

// ---- fixtures (also for a backend's own tests) ----

pub fn png(seed: u8, w: u32, h: u32) -> Vec<u8> {
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

pub fn input(seed: u8) -> ImageInput {
    ImageInput::from_bytes(png(seed, 16, 12), &Limits::default()).unwrap()
}

pub fn concept(name: &str) -> NewConcept {
    NewConcept {
        name: name.into(),
        aliases: vec![],
        category: "dog".into(),
        info: format!("<{name}> is a good dog."),
    }
}

pub fn t(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

pub fn unit(v: &[f32]) -> Embedding {
    Embedding::normalized(v.to_vec()).unwrap()
}

/// A unit vector along axis `i` of 8, tilted slightly towards axis `(i + 1) % 8`.
pub fn axis(i: usize) -> Embedding {
    let mut v = vec![0.0; 8];
    v[i % 8] = 1.0;
    v[(i + 1) % 8] = 0.1;
    unit(&v)
}

pub fn names(store: &dyn ConceptStore, tenant: &Tenant) -> Vec<String> {
    store
        .concepts(tenant)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

pub fn put(store: &dyn ConceptStore, tenant: &Tenant, image: &ImageId, key: Embedding) {
    store
        .put_keys(
            tenant,
            "enc",
            &[(image.clone(), Region::whole(16, 12), key)],
        )
        .unwrap();
}

/// Searches (tenant, "enc") as the engine does, keeping any in-process index between calls.
pub struct Searcher {
    tenant: Tenant,
    index: Option<KeyIndex>,
}

impl Searcher {
    pub fn new(tenant: &Tenant) -> Self {
        Searcher {
            tenant: tenant.clone(),
            index: None,
        }
    }

    pub fn search(
        &mut self,
        store: &dyn ConceptStore,
        query: &Embedding,
        k: usize,
    ) -> Vec<(f32, ImageId)> {
        if let Some(mut hits) = store
            .search_keys(&self.tenant, "enc", std::slice::from_ref(query), k)
            .unwrap()
        {
            return hits
                .pop()
                .unwrap()
                .into_iter()
                .map(|h| (h.score, h.location.image))
                .collect();
        }
        match &mut self.index {
            Some(index) => {
                index.refresh(store).unwrap();
            }
            None => {
                self.index =
                    Some(KeyIndex::build(store, &self.tenant, "enc", query.dim()).unwrap());
            }
        }
        self.index
            .as_ref()
            .unwrap()
            .search(query, k)
            .unwrap()
            .into_iter()
            .map(|(s, i, _)| (s, i.clone()))
            .collect()
    }

    pub fn images(
        &mut self,
        store: &dyn ConceptStore,
        query: &Embedding,
        k: usize,
    ) -> Vec<ImageId> {
        self.search(store, query, k)
            .into_iter()
            .map(|(_, i)| i)
            .collect()
    }
}

// ---- the cases ----

pub fn add_then_find_by_name_alias_any_case_and_brackets(store: &dyn ConceptStore) {
    let mut new = concept("Bo");
    new.aliases = vec!["Shiba".into(), "<Bobo>".into()];
    let added = store
        .add_concept(&t("a"), &new, vec![input(1), input(2)])
        .unwrap();
    assert_eq!(added.name, "Bo");
    assert_eq!(added.aliases, vec!["Bobo", "Shiba"]);
    assert_eq!(added.category, "dog");
    assert_eq!(added.info, "<Bo> is a good dog.");
    assert_eq!(added.images.len(), 2);
    assert_eq!(added.images[0].id, input(1).id);
    assert_eq!(added.images[0].width, 16);
    assert_eq!(added.images[0].height, 12);
    assert_eq!(added.images[0].format, "png");
    assert_eq!(added.images[0].bytes, input(1).bytes.len() as u64);
    for key in ["bo", "BO", "<bo>", " Bo ", "shiba", "<BOBO>"] {
        assert_eq!(store.concept(&t("a"), key).unwrap(), added, "{key}");
    }
    assert_eq!(store.concept_by_id(&t("a"), &added.id).unwrap(), added);
    assert!(added.created_at > 0 && added.created_at == added.updated_at);
    assert_eq!(
        store.image_bytes(&t("a"), &added.images[1].id).unwrap(),
        *input(2).bytes
    );
    store
        .add_concept(&t("a"), &concept("ace"), vec![input(3)])
        .unwrap();
    store
        .add_concept(&t("a"), &concept("Cy"), vec![input(4)])
        .unwrap();
    assert_eq!(
        names(store, &t("a")),
        vec!["ace", "Bo", "Cy"],
        "by name, any case"
    );
    assert_eq!(
        store.stats(&t("a")).unwrap(),
        StoreStats {
            concepts: 3,
            images: 4,
            embeddings: 0
        }
    );
}

pub fn unknown_concepts_and_images_are_not_found(store: &dyn ConceptStore) {
    let a = t("a");
    store
        .add_concept(&a, &concept("bo"), vec![input(1)])
        .unwrap();
    let not_found = |r: rap_core::Result<_>| matches!(r, Err(Error::NotFound { .. }));
    assert!(not_found(store.concept(&a, "ghost").map(|_| ())));
    assert!(not_found(store.concept(&a, "bad,name").map(|_| ())));
    assert!(not_found(
        store
            .concept_by_id(&a, &rap_core::ConceptId("0190-nope".into()))
            .map(|_| ())
    ));
    assert!(not_found(
        store
            .edit_concept(&a, "ghost", ConceptEdit::default())
            .map(|_| ())
    ));
    assert!(not_found(store.remove_concept(&a, "ghost").map(|_| ())));
    assert!(not_found(
        store.image_bytes(&a, &ImageId("ab".repeat(32))).map(|_| ())
    ));
    assert!(store
        .concepts_with_image(&a, &ImageId("ab".repeat(32)))
        .unwrap()
        .is_empty());
    assert!(store.concepts(&t("nobody")).unwrap().is_empty());
    assert_eq!(store.stats(&t("nobody")).unwrap(), StoreStats::default());
    assert_eq!(store.key_version(&t("nobody"), "enc").unwrap(), 0);
}

pub fn names_and_aliases_are_unique_together_and_failures_change_nothing(store: &dyn ConceptStore) {
    let a = t("a");
    let mut bo = concept("bo");
    bo.aliases = vec!["shiba".into()];
    store.add_concept(&a, &bo, vec![input(1)]).unwrap();
    let before = (names(store, &a), store.stats(&a).unwrap());

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
    // A batch with one clash adds none of the batch.
    let err = store
        .add_concepts(
            &a,
            vec![
                (concept("rex"), vec![input(7)]),
                (concept("SHIBA"), vec![input(8)]),
            ],
        )
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(store.concept(&a, "rex").is_err());
    assert_eq!((names(store, &a), store.stats(&a).unwrap()), before);

    for (new, images) in [
        (concept("no images"), vec![]),
        (concept("bad,name"), vec![input(3)]),
        (concept(""), vec![input(3)]),
    ] {
        let err = store.add_concept(&a, &new, images).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    }
    let mut twice = concept("twice");
    twice.aliases = vec!["Twice".into()];
    assert!(matches!(
        store.add_concept(&a, &twice, vec![input(3)]),
        Err(Error::Conflict(_))
    ));
    assert_eq!((names(store, &a), store.stats(&a).unwrap()), before);

    // The whole batch goes in when nothing clashes.
    let added = store
        .add_concepts(
            &a,
            vec![
                (concept("rex"), vec![input(7)]),
                (concept("max"), vec![input(8)]),
            ],
        )
        .unwrap();
    assert_eq!(added.len(), 2);
    assert_eq!(names(store, &a), vec!["bo", "max", "rex"]);
}

pub fn edit_renames_changes_fields_images_and_aliases_at_once(store: &dyn ConceptStore) {
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
    let ids: Vec<_> = edited.images.iter().map(|i| i.id.clone()).collect();
    assert_eq!(
        ids,
        vec![input(2).id, input(3).id],
        "in order, the new one last"
    );
    assert!(edited.updated_at > c.updated_at);
    assert!(matches!(
        store.image_bytes(&a, &first),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.stats(&a).unwrap().images, 2);
    assert_eq!(store.concept(&a, "bo the shiba").unwrap(), edited);

    // Renaming to an own alias turns it into the name.
    let renamed = store
        .edit_concept(
            &a,
            "bo",
            ConceptEdit {
                rename: Some("Bo".into()),
                add_aliases: vec!["shiba".into()],
                remove_aliases: vec![],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(renamed.name, "Bo");
    assert_eq!(renamed.aliases, vec!["shiba"]);
    assert!(
        store.concept(&a, "bo the shiba").is_err(),
        "the old name is free again"
    );

    // Removing every image is refused and changes nothing.
    let ids: Vec<String> = renamed.images.iter().map(|i| i.id.0.clone()).collect();
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
    assert_eq!(store.concept(&a, "bo").unwrap(), renamed);

    store
        .add_concept(&a, &concept("dug"), vec![input(5)])
        .unwrap();
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
        ConceptEdit {
            rename: Some("DUG".into()),
            info: Some("changed".into()),
            ..Default::default()
        },
        ConceptEdit {
            add_aliases: vec!["dug".into()],
            ..Default::default()
        },
    ] {
        assert!(store.edit_concept(&a, "bo", bad).is_err());
        assert_eq!(store.concept(&a, "bo").unwrap(), renamed);
    }
}

pub fn images_are_stored_once_and_collected_with_their_last_user(store: &dyn ConceptStore) {
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
    let mut users = store.concepts_with_image(&a, &shared.id).unwrap();
    users.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(users.len(), 2);
    put(store, &a, &shared.id, axis(0));
    put(store, &a, &input(1).id, axis(1));

    store.remove_concept(&a, "bo").unwrap();
    assert_eq!(store.image_bytes(&a, &shared.id).unwrap(), *shared.bytes);
    assert!(matches!(
        store.image_bytes(&a, &input(1).id),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        store.stats(&a).unwrap(),
        StoreStats {
            concepts: 1,
            images: 1,
            embeddings: 1
        },
        "the unshared image went with its embedding"
    );
    assert_eq!(store.keys(&a, "enc").unwrap().len(), 1);
    store.remove_concept(&a, "DUG").unwrap();
    assert_eq!(store.stats(&a).unwrap(), StoreStats::default());
    assert!(store.keys(&a, "enc").unwrap().is_empty());
    assert!(store.encoders(&a).unwrap().is_empty());
    assert!(matches!(
        store.remove_concept(&a, "dug"),
        Err(Error::NotFound { .. })
    ));
}

pub fn tenants_never_see_each_other(store: &dyn ConceptStore) {
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
    put(store, &a, &img.id, axis(0));
    put(store, &b, &img.id, axis(0));
    let mut sa = Searcher::new(&a);
    let mut sb = Searcher::new(&b);
    assert_eq!(sb.images(store, &axis(0), 10), vec![img.id.clone()]);
    store.remove_concept(&b, "bo").unwrap();
    assert!(
        sb.search(store, &axis(0), 10).is_empty(),
        "b's key went with b's concept"
    );
    assert_eq!(
        sa.images(store, &axis(0), 10),
        vec![img.id.clone()],
        "a keeps its own"
    );
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
    assert!(store.concepts_with_image(&b, &img.id).unwrap().is_empty());
    // Keys for another tenant's image are not stored.
    put(store, &b, &img.id, axis(1));
    assert_eq!(store.stats(&b).unwrap().embeddings, 0);
    assert!(store.keys(&b, "enc").unwrap().is_empty());
    assert_eq!(names(store, &a), vec!["bo"]);
    assert_eq!(store.encoders(&a).unwrap(), vec![("enc".to_string(), 1)]);
}

pub fn search_sees_every_add_edit_and_remove_at_once(store: &dyn ConceptStore) {
    let a = t("a");
    let mut search = Searcher::new(&a);
    let bo = store
        .add_concept(&a, &concept("bo"), vec![input(1)])
        .unwrap();
    put(store, &a, &bo.images[0].id, axis(0));
    assert_eq!(search.images(store, &axis(0), 5), vec![input(1).id]);

    // A new concept is found by the next search.
    let dug = store
        .add_concept(&a, &concept("dug"), vec![input(2)])
        .unwrap();
    put(store, &a, &dug.images[0].id, axis(3));
    let hits = search.search(store, &axis(3), 5);
    assert_eq!(hits[0].1, input(2).id);
    assert!(
        (hits[0].0 - 1.0).abs() < 1e-5,
        "cosine of a key with itself: {}",
        hits[0].0
    );
    assert_eq!(hits.len(), 2);
    assert!(
        (hits[1].0 - axis(3).cosine(&axis(0))).abs() < 1e-5,
        "scores are cosines"
    );

    // An image added by an edit is found; one removed by an edit is gone.
    store
        .edit_concept(
            &a,
            "dug",
            ConceptEdit {
                add_images: vec![input(3)],
                ..Default::default()
            },
        )
        .unwrap();
    put(store, &a, &input(3).id, axis(5));
    assert_eq!(search.images(store, &axis(5), 1), vec![input(3).id]);
    store
        .edit_concept(
            &a,
            "dug",
            ConceptEdit {
                remove_images: vec![input(2).id.0.clone()],
                ..Default::default()
            },
        )
        .unwrap();
    let found = search.images(store, &axis(3), 5);
    assert_eq!(found.len(), 2);
    assert!(!found.contains(&input(2).id), "{found:?}");

    // Re-embedding replaces the key (one key per image, region and encoder).
    put(store, &a, &input(1).id, axis(6));
    assert_eq!(search.images(store, &axis(6), 1), vec![input(1).id]);
    assert_eq!(store.keys(&a, "enc").unwrap().len(), 2);

    // Removing a concept removes its keys from search.
    store.remove_concept(&a, "dug").unwrap();
    assert_eq!(search.images(store, &axis(5), 5), vec![input(1).id]);
    store.remove_concept(&a, "bo").unwrap();
    assert!(search.search(store, &axis(6), 5).is_empty());
    assert!(store
        .search_keys(&a, "enc", &[], 3)
        .unwrap()
        .is_none_or(|h| h.is_empty()));
}

pub fn top_k_is_ranked_and_exact_for_a_small_tenant(store: &dyn ConceptStore) {
    let (a, other) = (t("small"), t("other"));
    // The other tenant's keys sit exactly on the queries; they must never come back.
    let mut seeds = 10u8..;
    let mut mine = Vec::new();
    for i in 0..8usize {
        let img = input(seeds.next().unwrap());
        store
            .add_concept(&a, &concept(&format!("c{i}")), vec![img.clone()])
            .unwrap();
        let mut v = vec![0.0f32; 8];
        v[0] = 1.0;
        v[1] = i as f32 * 0.25;
        let key = unit(&v);
        put(store, &a, &img.id, key.clone());
        mine.push((img.id, key));
        let theirs = input(seeds.next().unwrap());
        store
            .add_concept(&other, &concept(&format!("c{i}")), vec![theirs.clone()])
            .unwrap();
        put(
            store,
            &other,
            &theirs.id,
            unit(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        );
    }
    let query = unit(&[1.0, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let mut want: Vec<(f32, ImageId)> = mine
        .iter()
        .map(|(id, k)| (k.cosine(&query), id.clone()))
        .collect();
    want.sort_by(|x, y| y.0.total_cmp(&x.0));
    let got = Searcher::new(&a).search(store, &query, 3);
    assert_eq!(
        got.iter().map(|x| &x.1).collect::<Vec<_>>(),
        want[..3].iter().map(|x| &x.1).collect::<Vec<_>>()
    );
    for (g, w) in got.iter().zip(&want) {
        assert!((g.0 - w.0).abs() < 1e-5);
    }
    assert_eq!(
        Searcher::new(&a).search(store, &query, 100).len(),
        8,
        "k above the count"
    );
}

pub fn key_log_lets_an_index_catch_up(store: &dyn ConceptStore) {
    let a = t("a");
    let bo = store
        .add_concept(&a, &concept("bo"), vec![input(1)])
        .unwrap();
    let v0 = store.key_version(&a, "enc").unwrap();
    put(store, &a, &bo.images[0].id, axis(0));
    let v1 = store.key_version(&a, "enc").unwrap();
    assert!(v1 > v0);
    let (changes, at) = store.key_changes_since(&a, "enc", v0).unwrap();
    let first = store.keys(&a, "enc").unwrap()[0].key;
    assert_eq!((changes, at), (vec![KeyChange::Added(first)], v1));
    let mut index = KeyIndex::build(store, &a, "enc", 8).unwrap();
    assert_eq!(index.len(), 1);

    put(store, &a, &bo.images[0].id, axis(2));
    let second = store.keys(&a, "enc").unwrap()[0].key;
    assert_ne!(first, second, "a replaced key gets a new id");
    let dug = store
        .add_concept(&a, &concept("dug"), vec![input(2)])
        .unwrap();
    put(store, &a, &dug.images[0].id, axis(4));
    store.remove_concept(&a, "dug").unwrap();
    let (changes, _) = store.key_changes_since(&a, "enc", v1).unwrap();
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert_eq!(
        &changes[..2],
        &[KeyChange::Removed(first), KeyChange::Added(second)]
    );
    assert!(matches!(changes[3], KeyChange::Removed(_)));
    // Another tenant's and another encoder's changes are not in this log.
    store
        .add_concept(&t("b"), &concept("x"), vec![input(3)])
        .unwrap();
    put(store, &t("b"), &input(3).id, axis(1));
    store
        .put_keys(
            &a,
            "other",
            &[(input(1).id, Region::whole(16, 12), axis(1))],
        )
        .unwrap();
    assert_eq!(index.refresh(store).unwrap(), 4);
    assert_eq!(index.len(), 1);
    let top = index.search(&axis(2), 5).unwrap();
    assert_eq!((top.len(), top[0].1), (1, &input(1).id));
    assert_eq!(
        store
            .keys_by_id(&a, "enc", &[first, second, 999_999])
            .unwrap()
            .len(),
        1
    );
    let locations = store.key_locations(&a, "enc").unwrap();
    assert_eq!(
        (locations[0].key, &locations[0].image),
        (second, &input(1).id)
    );
    assert_eq!(locations[0].region, Region::whole(16, 12));
    assert_eq!(
        store.encoders(&a).unwrap(),
        vec![("enc".to_string(), 1), ("other".to_string(), 1)]
    );
    assert_eq!(
        store.images_without_keys(&a, "enc").unwrap(),
        Vec::<ImageId>::new()
    );
    assert_eq!(
        store.images_without_keys(&a, "third").unwrap(),
        vec![input(1).id]
    );
    // Keys of a removed image are skipped, not stored.
    store
        .put_keys(
            &a,
            "enc",
            &[(ImageId("ab".repeat(32)), Region::whole(1, 1), axis(0))],
        )
        .unwrap();
    assert_eq!(store.keys(&a, "enc").unwrap().len(), 1);
    let back = &store.keys(&a, "enc").unwrap()[0].embedding;
    assert!(
        (back.cosine(&axis(2)) - 1.0).abs() < 1e-6,
        "vectors round-trip"
    );
}

pub fn api_keys_are_hashed_scoped_and_revocable(store: &dyn ConceptStore) {
    let keys = store.api_key_store().expect("this backend keeps API keys");
    assert!(!keys.has_active_api_keys().unwrap());
    let a = t("a");
    let new = NewApiKey::generate().unwrap();
    let info = keys.add_api_key(&a, &new).unwrap();
    assert_eq!((info.id.as_str(), &info.tenant), (new.id.as_str(), &a));
    assert!(keys.has_active_api_keys().unwrap());
    assert_eq!(
        keys.tenant_for_key_hash(&hash_key(&new.key)).unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        keys.tenant_for_key_hash(&hash_key("rap_nope")).unwrap(),
        None
    );
    assert_eq!(keys.api_keys().unwrap(), vec![info.clone()]);
    let revoked = keys.revoke_api_key(&new.key).unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(keys.tenant_for_key_hash(&hash_key(&new.key)).unwrap(), None);
    assert!(!keys.has_active_api_keys().unwrap());
    let err = keys.revoke_api_key(&new.id).unwrap_err();
    assert!(
        matches!(err, Error::Conflict(_)) && err.to_string().contains("already revoked"),
        "{err}"
    );
    assert!(matches!(
        keys.revoke_api_key("0123456789ab"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        keys.revoke_api_key("../etc"),
        Err(Error::InvalidInput(_))
    ));
}

pub fn api_keys_move_with_their_hashes_and_revocations(store: &dyn ConceptStore) {
    let keys = store.api_key_store().expect("this backend keeps API keys");
    let (a, b) = (
        NewApiKey::generate().unwrap(),
        NewApiKey::generate().unwrap(),
    );
    keys.add_api_key(&t("alice"), &a).unwrap();
    keys.add_api_key(&t("bob"), &b).unwrap();
    keys.revoke_api_key(&b.id).unwrap();
    let exported = keys.export_api_keys().unwrap();
    // (Both were made in the same millisecond or not: the order is by time, then id.)
    let mut got: Vec<(&str, &str)> = exported
        .iter()
        .map(|k| (k.info.id.as_str(), k.hash.as_str()))
        .collect();
    got.sort();
    let mut want = vec![
        (a.id.as_str(), a.hash.as_str()),
        (b.id.as_str(), b.hash.as_str()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        exported.iter().map(|k| k.info.clone()).collect::<Vec<_>>(),
        keys.api_keys().unwrap()
    );
    // Importing what is there already changes nothing.
    keys.import_api_keys(&exported, false).unwrap();
    assert_eq!(keys.export_api_keys().unwrap(), exported);

    // A new key and another key under a held id: refused as a whole without `replace`...
    let c = NewApiKey::generate().unwrap();
    let moved = StoredApiKey {
        info: ApiKeyInfo {
            id: c.id.clone(),
            tenant: t("carol"),
            created_at: 1_000,
            revoked_at: None,
        },
        hash: c.hash.clone(),
    };
    let mut clash = exported.iter().find(|k| k.info.id == a.id).unwrap().clone();
    clash.hash = hash_key("rap_another");
    let err = keys
        .import_api_keys(&[moved.clone(), clash.clone()], false)
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict(_)) && err.to_string().contains(&a.id),
        "{err}"
    );
    assert_eq!(keys.export_api_keys().unwrap(), exported, "nothing written");
    // ...and written as given with it: the new key authenticates, the replaced one no more.
    keys.import_api_keys(&[moved.clone(), clash.clone()], true)
        .unwrap();
    assert_eq!(keys.tenant_for_key_hash(&c.hash).unwrap(), Some(t("carol")));
    assert_eq!(keys.tenant_for_key_hash(&a.hash).unwrap(), None);
    let mut after = vec![moved];
    after.extend(exported.iter().map(|k| {
        if k.info.id == a.id {
            clash.clone()
        } else {
            k.clone()
        }
    }));
    assert_eq!(keys.export_api_keys().unwrap(), after);
}

/// A distinct 8x8 PNG for any `n` (more than `input`'s 256).
pub fn numbered(n: u32) -> ImageInput {
    let b = n.to_le_bytes();
    let img = image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([b[0], b[1] ^ (x as u8), b[2] ^ (y as u8)])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    ImageInput::from_bytes(out, &Limits::default()).unwrap()
}

/// A deterministic unit vector of 32 dimensions near one of four cluster centres.
pub fn clustered(n: u32) -> Embedding {
    let mut state = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let centre = (n % 4) as usize;
    let v: Vec<f32> = (0..32)
        .map(|i| if i == centre { 1.0 } else { 0.0 } + 0.25 * next())
        .collect();
    unit(&v)
}

/// Adds `count` concepts (in batches of 100) with one clustered key each; returns their
/// (image, key) pairs.
pub fn fill_tenant(
    store: &dyn ConceptStore,
    tenant: &Tenant,
    count: u32,
    first: u32,
) -> Vec<(ImageId, Embedding)> {
    let mut out = Vec::new();
    for start in (0..count).step_by(100) {
        let ns: Vec<u32> = (start..(start + 100).min(count))
            .map(|i| first + i)
            .collect();
        let batch = ns
            .iter()
            .map(|n| (concept(&format!("c{n}")), vec![numbered(*n)]))
            .collect();
        let added = store.add_concepts(tenant, batch).unwrap();
        let keys: Vec<_> = added
            .iter()
            .zip(&ns)
            .map(|(c, n)| (c.images[0].id.clone(), Region::whole(8, 8), clustered(*n)))
            .collect();
        store.put_keys(tenant, "enc", &keys).unwrap();
        out.extend(keys.into_iter().map(|(i, _, k)| (i, k)));
    }
    out
}

/// Issue 8: a tenant with 10 concepts among many others (one large, many small, all with keys
/// in the same clusters, and some keys exactly on the queries) gets exactly its own top-k.
pub fn a_ten_concept_tenant_among_many_gets_exactly_its_own_top_k(store: &dyn ConceptStore) {
    fill_tenant(store, &t("large"), 600, 0);
    for i in 0..20 {
        fill_tenant(store, &t(&format!("small{i}")), 15, 1_000 + 15 * i);
    }
    let ten = t("ten");
    let mine = fill_tenant(store, &ten, 10, 5_000);
    assert_eq!(store.stats(&ten).unwrap().embeddings, 10);
    // Other tenants hold the queries themselves.
    let queries: Vec<Embedding> = (0..12).map(|q| clustered(9_000 + q)).collect();
    let decoys: Vec<_> = queries
        .iter()
        .enumerate()
        .map(|(q, key)| (numbered(20_000 + q as u32), key.clone()))
        .collect();
    let decoy = t("decoy");
    let added = store
        .add_concepts(
            &decoy,
            decoys
                .iter()
                .enumerate()
                .map(|(q, (img, _))| (concept(&format!("d{q}")), vec![img.clone()]))
                .collect(),
        )
        .unwrap();
    let keys: Vec<_> = added
        .iter()
        .zip(&decoys)
        .map(|(c, (_, key))| (c.images[0].id.clone(), Region::whole(8, 8), key.clone()))
        .collect();
    store.put_keys(&decoy, "enc", &keys).unwrap();

    let mut search = Searcher::new(&ten);
    for query in &queries {
        let mut want: Vec<(f32, ImageId)> = mine
            .iter()
            .map(|(id, k)| (k.cosine(query), id.clone()))
            .collect();
        want.sort_by(|x, y| y.0.total_cmp(&x.0));
        for k in [3, 10, 50] {
            let got = search.search(store, query, k);
            assert_eq!(
                got.iter().map(|x| &x.1).collect::<Vec<_>>(),
                want.iter().take(k).map(|x| &x.1).collect::<Vec<_>>(),
                "top-{k}"
            );
            for (g, w) in got.iter().zip(&want) {
                assert!((g.0 - w.0).abs() < 1e-5, "scores: {} vs {}", g.0, w.0);
            }
        }
    }
}

/// `add_concepts` and `put_keys` of many at once give what one at a time gives: aliases and
/// images in order, a key given twice keeps the last, a replaced key is logged out then in.
pub fn batches_write_what_single_adds_write(store: &dyn ConceptStore) {
    let (a, b) = (t("a"), t("b"));
    let mut bo = concept("<Bo>");
    bo.aliases = vec!["shiba".into(), "Akita".into()];
    let images = vec![input(1), input(2), input(1)];
    let single = store.add_concept(&a, &bo, images.clone()).unwrap();
    let mut rex = concept("rex");
    rex.aliases = vec!["T-Rex".into()];
    let batch = store
        .add_concepts(
            &b,
            vec![(bo.clone(), images.clone()), (rex, vec![input(3)])],
        )
        .unwrap();
    let strip = |c: &rap_core::Concept| {
        (
            c.name.clone(),
            c.aliases.clone(),
            c.images.clone(),
            c.category.clone(),
            c.info.clone(),
        )
    };
    assert_eq!(strip(&batch[0]), strip(&single));
    assert_eq!(batch[0].aliases, vec!["Akita", "shiba"]);
    assert_eq!(batch[0].images.len(), 2);
    assert_eq!(store.concept(&b, "t-rex").unwrap().id, batch[1].id);
    assert_eq!(store.concept(&b, "akita").unwrap(), batch[0]);

    let whole = Region::whole(16, 12);
    store
        .put_keys(
            &b,
            "enc",
            &[
                (input(1).id, whole.clone(), axis(0)),
                (input(2).id, whole.clone(), axis(1)),
            ],
        )
        .unwrap();
    let v = store.key_version(&b, "enc").unwrap();
    let old: Vec<u64> = store
        .keys(&b, "enc")
        .unwrap()
        .iter()
        .map(|e| e.key)
        .collect();
    // A batch replacing one key and adding another: the old key out, then both in.
    store
        .put_keys(
            &b,
            "enc",
            &[
                (input(1).id, whole.clone(), axis(2)),
                (input(3).id, whole.clone(), axis(3)),
            ],
        )
        .unwrap();
    let keys = store.keys(&b, "enc").unwrap();
    assert_eq!(keys.len(), 3, "one key per (image, region)");
    let key_of = |keys: &[crate::KeyEntry], id: &ImageId| {
        keys.iter().find(|e| &e.image == id).unwrap().clone()
    };
    let (one, three) = (key_of(&keys, &input(1).id), key_of(&keys, &input(3).id));
    assert!((one.embedding.cosine(&axis(2)) - 1.0).abs() < 1e-6);
    assert!(one.key < three.key, "keys in the batch's order");
    let (changes, v2) = store.key_changes_since(&b, "enc", v).unwrap();
    assert_eq!(
        changes,
        vec![
            KeyChange::Removed(old[0]),
            KeyChange::Added(one.key),
            KeyChange::Added(three.key)
        ]
    );
    // An (image, region) given twice in one batch: the last one is kept.
    store
        .put_keys(
            &b,
            "enc",
            &[
                (input(3).id, whole.clone(), axis(5)),
                (input(3).id, whole.clone(), axis(4)),
            ],
        )
        .unwrap();
    let keys = store.keys(&b, "enc").unwrap();
    assert_eq!(keys.len(), 3);
    assert!(
        (key_of(&keys, &input(3).id).embedding.cosine(&axis(4)) - 1.0).abs() < 1e-6,
        "the last given"
    );
    let (changes, _) = store.key_changes_since(&b, "enc", v2).unwrap();
    assert_eq!(
        changes.first(),
        Some(&KeyChange::Removed(three.key)),
        "{changes:?}"
    );
    assert_eq!(changes.len(), 4, "{changes:?}");
    let mut index = KeyIndex::build(store, &b, "enc", 8).unwrap();
    assert_eq!(index.refresh(store).unwrap(), 0);
    assert_eq!(index.len(), 3);
}

pub fn tenants_are_those_holding_concepts(store: &dyn ConceptStore) {
    assert!(store.tenants().unwrap().is_empty());
    store
        .add_concept(&t("zed"), &concept("bo"), vec![input(1)])
        .unwrap();
    store
        .add_concept(&t("amy"), &concept("bo"), vec![input(1)])
        .unwrap();
    store
        .add_concept(&t("amy"), &concept("dug"), vec![input(2)])
        .unwrap();
    assert_eq!(store.tenants().unwrap(), vec![t("amy"), t("zed")]);
    store.remove_concept(&t("zed"), "bo").unwrap();
    assert_eq!(store.tenants().unwrap(), vec![t("amy")]);
}

pub fn import_keeps_ids_and_times_and_refuses_a_held_tenant(store: &dyn ConceptStore) {
    let a = t("a");
    let shared = input(5);
    let mut bo = concept("bo");
    bo.aliases = vec!["Bobo".into()];
    store
        .add_concept(&a, &bo, vec![shared.clone(), input(1)])
        .unwrap();
    store
        .add_concept(&a, &concept("dug"), vec![shared.clone()])
        .unwrap();
    put(store, &a, &shared.id, axis(0));
    put(store, &a, &input(1).id, axis(1));
    let original = store.concepts(&a).unwrap();
    let summary = crate::migrate::summarize(store, &a).unwrap();
    let dump = crate::migrate::export_tenant(store, &a).unwrap();
    assert_eq!(dump.images.len(), 2, "a shared image is dumped once");

    // Into a tenant that holds anything: refused, nothing changes.
    let err = store.import_tenant(&a, &dump, false).unwrap_err();
    assert!(
        matches!(err, Error::Conflict(_)) && err.to_string().contains("already holds"),
        "{err}"
    );
    assert_eq!(store.concepts(&a).unwrap(), original);

    // Emptied, then imported: the same concepts (ids, times, aliases, images), bytes and keys.
    store.remove_concept(&a, "bo").unwrap();
    store.remove_concept(&a, "dug").unwrap();
    assert_eq!(store.stats(&a).unwrap(), StoreStats::default());
    store.import_tenant(&a, &dump, false).unwrap();
    assert_eq!(store.concepts(&a).unwrap(), original);
    assert_eq!(store.concept(&a, "bobo").unwrap().name, "bo");
    assert_eq!(store.image_bytes(&a, &shared.id).unwrap(), *shared.bytes);
    assert_eq!(crate::migrate::summarize(store, &a).unwrap(), summary);
    assert_eq!(
        Searcher::new(&a).images(store, &axis(1), 1),
        vec![input(1).id]
    );

    // Replacing: the old memory goes, images and keys included, in one step.
    store
        .add_concept(&t("c"), &concept("rex"), vec![input(9)])
        .unwrap();
    let mut other = crate::migrate::export_tenant(store, &t("c")).unwrap();
    other.concepts[0].id = rap_core::ConceptId("imported-rex".into());
    store.import_tenant(&a, &other, true).unwrap();
    assert_eq!(names(store, &a), vec!["rex"]);
    assert_eq!(store.concept(&a, "rex").unwrap().id.0, "imported-rex");
    assert!(matches!(
        store.image_bytes(&a, &shared.id),
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
    assert!(Searcher::new(&a).images(store, &axis(1), 1).is_empty());
    assert_eq!(
        names(store, &t("c")),
        vec!["rex"],
        "the other tenant is untouched"
    );
    // A dump whose concept uses an image it lacks is refused whole.
    let mut broken = dump.clone();
    broken.images.pop();
    assert!(store.import_tenant(&t("d"), &broken, false).is_err());
    assert_eq!(store.stats(&t("d")).unwrap(), StoreStats::default());
    // So is one with a key of an image no concept uses, or a region keyed twice.
    let mut stray = dump.clone();
    stray.keys[0].1[0].0 = input(77).id;
    let err = store.import_tenant(&t("d"), &stray, false).unwrap_err();
    assert!(err.to_string().contains("which no concept uses"), "{err}");
    let mut twice = dump.clone();
    let first = twice.keys[0].1[0].clone();
    twice.keys[0].1.push(first);
    let err = store.import_tenant(&t("d"), &twice, false).unwrap_err();
    assert!(err.to_string().contains("two keys"), "{err}");
    assert_eq!(store.stats(&t("d")).unwrap(), StoreStats::default());
}

pub fn categories_are_each_tenants_own_once(store: &dyn ConceptStore) {
    let (a, b) = (t("a"), t("b"));
    assert!(store.categories(&a).unwrap().is_empty());
    let mut mug = concept("mug");
    mug.category = "mug".into();
    let mut blank = concept("thing");
    blank.category = String::new();
    store
        .add_concept(&a, &concept("bo"), vec![input(1)])
        .unwrap();
    store
        .add_concept(&a, &concept("dug"), vec![input(2)])
        .unwrap();
    store.add_concept(&a, &mug, vec![input(3)]).unwrap();
    store.add_concept(&a, &blank, vec![input(4)]).unwrap();
    let mut cat = concept("tom");
    cat.category = "cat".into();
    store.add_concept(&b, &cat, vec![input(5)]).unwrap();
    assert_eq!(store.categories(&a).unwrap(), vec!["dog", "mug"]);
    assert_eq!(store.categories(&b).unwrap(), vec!["cat"]);
    // An edit counts at once.
    store
        .edit_concept(
            &a,
            "mug",
            ConceptEdit {
                category: Some("cup".into()),
                ..ConceptEdit::default()
            },
        )
        .unwrap();
    assert_eq!(store.categories(&a).unwrap(), vec!["cup", "dog"]);
}

// ---- two handles on one memory (two processes) ----

/// What one handle writes, another handle on the same memory reads at once: concepts, edits,
/// removals and keys (the key log included).
pub fn every_handle_sees_every_write_at_once(one: &dyn ConceptStore, two: &dyn ConceptStore) {
    let a = t("a");
    let added = one.add_concept(&a, &concept("bo"), vec![input(1)]).unwrap();
    assert_eq!(two.concept(&a, "bo").unwrap(), added);
    let v = two.key_version(&a, "enc").unwrap();
    put(one, &a, &input(1).id, axis(0));
    let (changes, _) = two.key_changes_since(&a, "enc", v).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        Searcher::new(&a).images(two, &axis(0), 1),
        vec![input(1).id]
    );
    let edited = two
        .edit_concept(
            &a,
            "bo",
            ConceptEdit {
                add_aliases: vec!["shiba".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(one.concept(&a, "shiba").unwrap(), edited);
    // A clash is seen through the other handle too.
    let err = one
        .add_concept(&a, &concept("Shiba"), vec![input(2)])
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    two.remove_concept(&a, "bo").unwrap();
    assert!(matches!(one.concept(&a, "bo"), Err(Error::NotFound { .. })));
    assert_eq!(one.stats(&a).unwrap(), StoreStats::default());
}

// ---- tenant settings ----

fn settings(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A tenant's settings: set, overwritten, deleted, swapped only from the value expected,
/// checked, never seen by another tenant, and no reason to list a tenant.
pub fn tenant_settings_are_each_tenants_own(store: &dyn ConceptStore) {
    let (a, b) = (t("a"), t("b"));
    assert!(store.tenant_settings(&a).unwrap().is_empty());
    assert_eq!(store.tenant_setting(&a, "encoders").unwrap(), None);
    let record = r#"{"active":{"name":"clip","id":"clip@1"}}"#;
    store
        .set_tenant_setting(&a, "encoders", Some(record))
        .unwrap();
    store.set_tenant_setting(&a, "colour", Some("red")).unwrap();
    assert_eq!(
        store.tenant_setting(&a, "encoders").unwrap().as_deref(),
        Some(record)
    );
    // Another tenant sees none of them, and keeps its own under the same key.
    assert_eq!(store.tenant_setting(&b, "encoders").unwrap(), None);
    assert!(store.tenant_settings(&b).unwrap().is_empty());
    store
        .set_tenant_setting(&b, "encoders", Some("b's"))
        .unwrap();
    assert_eq!(
        store.tenant_settings(&a).unwrap(),
        settings(&[("colour", "red"), ("encoders", record)])
    );
    // Overwritten, then deleted (deleting what is not set is no error).
    store
        .set_tenant_setting(&a, "colour", Some("blue"))
        .unwrap();
    assert_eq!(
        store.tenant_setting(&a, "colour").unwrap().as_deref(),
        Some("blue")
    );
    store.set_tenant_setting(&a, "colour", None).unwrap();
    store.set_tenant_setting(&a, "colour", None).unwrap();
    assert_eq!(
        store.tenant_settings(&a).unwrap(),
        settings(&[("encoders", record)])
    );
    // A swap writes only over the value expected.
    assert!(!store
        .swap_tenant_setting(&a, "encoders", None, Some("x"))
        .unwrap());
    assert!(!store
        .swap_tenant_setting(&a, "encoders", Some("stale"), Some("x"))
        .unwrap());
    assert_eq!(
        store.tenant_setting(&a, "encoders").unwrap().as_deref(),
        Some(record)
    );
    assert!(store
        .swap_tenant_setting(&a, "encoders", Some(record), Some("x"))
        .unwrap());
    assert!(store
        .swap_tenant_setting(&a, "fresh", None, Some("1"))
        .unwrap());
    assert!(store
        .swap_tenant_setting(&a, "fresh", Some("1"), None)
        .unwrap());
    assert_eq!(store.tenant_setting(&a, "fresh").unwrap(), None);
    assert_eq!(
        store.tenant_setting(&b, "encoders").unwrap().as_deref(),
        Some("b's")
    );
    // Keys and values a store does not keep are refused, and nothing is written.
    for bad in ["", "Encoders", "a b", "../x"] {
        let err = store.set_tenant_setting(&a, bad, Some("v")).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{bad:?}: {err}");
        let err = store
            .swap_tenant_setting(&a, bad, None, Some("v"))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{bad:?}: {err}");
    }
    let big = "x".repeat(crate::rules::MAX_SETTING_VALUE + 1);
    assert!(matches!(
        store.set_tenant_setting(&a, "big", Some(&big)),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(
        store.tenant_settings(&a).unwrap(),
        settings(&[("encoders", "x")])
    );
    // Settings alone are no memory: the tenant is not listed and holds nothing.
    assert!(store.tenants().unwrap().is_empty());
    assert_eq!(store.stats(&a).unwrap(), StoreStats::default());
}

/// A tenant's settings go with its memory: exported, imported (over what a tenant without a
/// memory held under the same keys), deleted by an import that replaces the tenant.
pub fn settings_move_with_a_tenants_memory(store: &dyn ConceptStore) {
    let a = t("a");
    store
        .add_concept(&a, &concept("bo"), vec![input(1)])
        .unwrap();
    store
        .set_tenant_setting(&a, "encoders", Some("mine"))
        .unwrap();
    let dump = crate::migrate::export_tenant(store, &a).unwrap();
    assert_eq!(dump.settings, settings(&[("encoders", "mine")]));
    // The dump for another tenant (concept ids are unique in a whole store).
    let dump_for = |tenant: &str| {
        let mut d = dump.clone();
        d.concepts[0].id = rap_core::ConceptId(format!("{tenant}-bo"));
        d
    };

    store.import_tenant(&t("b"), &dump_for("b"), false).unwrap();
    assert_eq!(store.tenant_settings(&t("b")).unwrap(), dump.settings);
    // A tenant that holds only settings holds no memory: the import goes in, its values win.
    let c = t("c");
    store
        .set_tenant_setting(&c, "encoders", Some("old"))
        .unwrap();
    store.set_tenant_setting(&c, "other", Some("kept")).unwrap();
    store.import_tenant(&c, &dump_for("c"), false).unwrap();
    assert_eq!(
        store.tenant_settings(&c).unwrap(),
        settings(&[("encoders", "mine"), ("other", "kept")])
    );
    // Replacing deletes everything the tenant held, its settings included.
    let mut bare = dump_for("c2");
    bare.settings.clear();
    store.import_tenant(&c, &bare, true).unwrap();
    assert!(store.tenant_settings(&c).unwrap().is_empty());
    assert_eq!(names(store, &c), vec!["bo"]);
    // A dump with a setting no store keeps is refused whole.
    let mut bad = dump_for("d");
    bad.settings.insert("Bad Key".into(), "x".into());
    let err = store.import_tenant(&t("d"), &bad, false).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert_eq!(store.stats(&t("d")).unwrap(), StoreStats::default());
    assert!(store.tenant_settings(&t("d")).unwrap().is_empty());
    assert_eq!(
        store.tenant_settings(&a).unwrap(),
        dump.settings,
        "the source is untouched"
    );
}

/// Two handles on one memory (two processes, two replicas) see one value of a setting, and
/// updates by read-change-swap through both at once lose none of each other's changes.
pub fn settings_are_shared_by_every_handle(one: &dyn ConceptStore, two: &dyn ConceptStore) {
    let a = t("a");
    one.set_tenant_setting(&a, "encoders", Some("x")).unwrap();
    assert_eq!(
        two.tenant_setting(&a, "encoders").unwrap().as_deref(),
        Some("x")
    );
    assert!(two
        .swap_tenant_setting(&a, "encoders", Some("x"), Some("y"))
        .unwrap());
    assert!(
        !one.swap_tenant_setting(&a, "encoders", Some("x"), Some("z"))
            .unwrap(),
        "a swap from a stale read loses"
    );
    assert_eq!(
        one.tenant_setting(&a, "encoders").unwrap().as_deref(),
        Some("y")
    );
    assert_eq!(one.tenant_setting(&t("b"), "encoders").unwrap(), None);

    // A counter incremented through both handles at once.
    let increment = |store: &dyn ConceptStore| {
        for _ in 0..20 {
            loop {
                let now = store.tenant_setting(&a, "counter").unwrap();
                let n: u32 = now.as_deref().map_or(0, |v| v.parse().unwrap());
                let next = (n + 1).to_string();
                if store
                    .swap_tenant_setting(&a, "counter", now.as_deref(), Some(&next))
                    .unwrap()
                {
                    break;
                }
            }
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| increment(one));
        s.spawn(|| increment(two));
    });
    assert_eq!(
        two.tenant_setting(&a, "counter").unwrap().as_deref(),
        Some("40")
    );
}

pub fn negatives_are_kept_apart_from_references_and_move_with_the_memory(store: &dyn ConceptStore) {
    let a = t("a");
    store
        .add_concept(&a, &concept("bo"), vec![input(1)])
        .unwrap();
    let edited = store
        .edit_concept(
            &a,
            "bo",
            ConceptEdit {
                add_negatives: vec![input(2), input(3)],
                ..Default::default()
            },
        )
        .unwrap();
    let ids = |images: &[rap_core::ConceptImage]| -> Vec<ImageId> {
        images.iter().map(|i| i.id.clone()).collect()
    };
    assert_eq!(ids(&edited.images), vec![input(1).id]);
    assert_eq!(ids(&edited.negatives), vec![input(2).id, input(3).id]);
    assert_eq!(store.concept(&a, "bo").unwrap(), edited);
    // A negative is stored like an image (bytes, keys to compute) but is not the concept's.
    assert_eq!(
        store.image_bytes(&a, &input(2).id).unwrap(),
        *input(2).bytes
    );
    assert!(store
        .concepts_with_image(&a, &input(2).id)
        .unwrap()
        .is_empty());
    let mut missing = store.images_without_keys(&a, "enc").unwrap();
    missing.sort();
    let mut all = vec![input(1).id, input(2).id, input(3).id];
    all.sort();
    assert_eq!(missing, all, "negatives get keys too");

    // The same image cannot be both; a refused edit changes nothing.
    let err = store
        .edit_concept(
            &a,
            "bo",
            ConceptEdit {
                add_images: vec![input(2)],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(store.concept(&a, "bo").unwrap(), edited);

    // Export and import keep them.
    put(store, &a, &input(2).id, axis(2));
    let summary = crate::migrate::summarize(store, &a).unwrap();
    let dump = crate::migrate::export_tenant(store, &a).unwrap();
    store.import_tenant(&a, &dump, true).unwrap();
    assert_eq!(store.concept(&a, "bo").unwrap(), edited);
    assert_eq!(crate::migrate::summarize(store, &a).unwrap(), summary);

    // Removing a negative (by prefix) collects its image; removing the concept, the rest.
    let edited = store
        .edit_concept(
            &a,
            "bo",
            ConceptEdit {
                remove_negatives: vec![input(2).id.0[..10].to_string()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(ids(&edited.negatives), vec![input(3).id]);
    assert!(matches!(
        store.image_bytes(&a, &input(2).id),
        Err(Error::NotFound { .. })
    ));
    store.remove_concept(&a, "bo").unwrap();
    assert!(matches!(
        store.image_bytes(&a, &input(3).id),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.stats(&a).unwrap(), StoreStats::default());
}

pub fn the_memory_version_moves_with_every_change_of_concepts(
    one: &dyn ConceptStore,
    two: &dyn ConceptStore,
) {
    let (a, b) = (t("a"), t("b"));
    let mut last = one.memory_version(&a).unwrap();
    let mut moved = |why: &str| {
        let now = two.memory_version(&a).unwrap();
        assert!(now > last, "{why}: the version stayed at {now}");
        last = now;
    };
    one.add_concept(&a, &concept("bo"), vec![input(1)]).unwrap();
    moved("add");
    for edit in [
        ConceptEdit {
            info: Some("x".into()),
            ..Default::default()
        },
        ConceptEdit {
            add_aliases: vec!["bobo".into()],
            ..Default::default()
        },
        ConceptEdit {
            add_negatives: vec![input(2)],
            ..Default::default()
        },
    ] {
        one.edit_concept(&a, "bo", edit).unwrap();
        moved("edit");
    }
    one.add_concepts(&a, vec![(concept("dug"), vec![input(3)])])
        .unwrap();
    moved("add many");
    one.remove_concept(&a, "dug").unwrap();
    moved("remove");
    let dump = crate::migrate::export_tenant(one, &t("a")).unwrap();
    one.import_tenant(&a, &dump, true).unwrap();
    moved("import");
    // Another tenant's changes and failed edits leave it alone.
    one.add_concept(&b, &concept("rex"), vec![input(4)])
        .unwrap();
    assert!(one
        .edit_concept(
            &a,
            "bo",
            ConceptEdit {
                rename: Some("<bad>,name".into()),
                ..Default::default()
            },
        )
        .is_err());
    assert_eq!(two.memory_version(&a).unwrap(), last);
}
