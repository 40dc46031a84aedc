//! The photo library in the embedded store: each photo with its regions in one transaction,
//! replaced by path, copied by hash, removed with its regions, and nothing across tenants.

use rap_core::{BoundingBox, Embedding, Tenant};
use rap_memory::{LibraryStore, NewLibraryPhoto, PhotoFile, SqliteStore};

fn t(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

fn file(path: &str, mtime_ms: i64) -> PhotoFile {
    PhotoFile {
        path: path.into(),
        size: 100,
        mtime_ms,
    }
}

fn photo(path: &str, mtime_ms: i64, regions: usize) -> NewLibraryPhoto {
    NewLibraryPhoto {
        file: file(path, mtime_ms),
        sha256: format!("{:064x}", path.len() as u64 * 1000 + mtime_ms as u64),
        width: 64,
        height: 48,
        encoder: "e@1".into(),
        regions: (0..regions)
            .map(|i| {
                (
                    BoundingBox::new(i as f32, 0.0, 32.0 + i as f32, 32.0),
                    Embedding::normalized(vec![1.0, i as f32]).unwrap(),
                )
            })
            .collect(),
    }
}

#[test]
fn photos_are_replaced_by_path_copied_by_hash_and_removed_with_their_regions() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("memory.sqlite")).unwrap();
    let lib: &dyn LibraryStore = &store;
    let (alice, bob) = (t("alice"), t("bob"));

    let a = lib
        .put_library_photo(&alice, &photo("/p/a.jpg", 1, 3))
        .unwrap();
    assert_eq!((a.regions, a.width, a.encoder.as_str()), (3, 64, "e@1"));
    // Indexing the same path again replaces the photo and all its regions.
    let a2 = lib
        .put_library_photo(&alice, &photo("/p/a.jpg", 2, 2))
        .unwrap();
    assert_ne!(a.id, a2.id, "ids are never reused");
    assert_eq!(lib.library_photos(&alice).unwrap(), vec![a2.clone()]);
    assert_eq!(lib.library_regions(&alice, "e@1").unwrap().len(), 2);
    assert!(lib.library_regions(&alice, "other@1").unwrap().is_empty());

    // A copy elsewhere gets the regions without encoding; the same path only its time.
    let b = lib
        .copy_library_photo(&alice, a2.id, &file("/q/b.jpg", 9))
        .unwrap();
    assert_eq!((b.sha256.as_str(), b.regions), (a2.sha256.as_str(), 2));
    let boxes = |id| {
        lib.library_photo_regions(&alice, id)
            .unwrap()
            .into_iter()
            .map(|r| (r.bbox, r.embedding.into_vec()))
            .collect::<Vec<_>>()
    };
    assert_eq!(boxes(a2.id), boxes(b.id));
    let touched = lib
        .copy_library_photo(&alice, b.id, &file("/q/b.jpg", 10))
        .unwrap();
    assert_eq!((touched.id, touched.mtime_ms), (b.id, 10));

    // Tenants never see each other's library.
    assert!(lib.library_photos(&bob).unwrap().is_empty());
    assert_eq!(lib.remove_library_photos(&bob, &[a2.id]).unwrap(), 0);
    assert!(lib.library_photo(&bob, "/p/a.jpg").unwrap().is_none());
    assert_eq!(
        lib.library_photo(&alice, "/p/a.jpg").unwrap(),
        Some(a2.clone())
    );

    assert_eq!(lib.remove_library_photos(&alice, &[a2.id]).unwrap(), 1);
    assert!(lib.library_photo_regions(&alice, a2.id).unwrap().is_empty());
    let stats = lib.library_stats(&alice).unwrap();
    assert_eq!((stats.photos, stats.regions), (1, 2));

    lib.add_library_root(&alice, "/q").unwrap();
    lib.add_library_root(&alice, "/q").unwrap();
    assert_eq!(lib.library_roots(&alice).unwrap(), vec!["/q".to_string()]);
    assert!(lib.library_roots(&bob).unwrap().is_empty());

    // It is all still there after a reopen.
    drop(store);
    let store = SqliteStore::open(dir.path().join("memory.sqlite")).unwrap();
    assert_eq!(store.library_stats(&alice).unwrap(), stats);
}
