//! A large key index is saved beside the store and loaded by the next process, which replays
//! only the changes logged since; a missing, damaged or foreign saved copy is rebuilt from the
//! store, never trusted.

use rap_core::{Embedding, ImageId, NewConcept, Region, Tenant};
use rap_image::Limits;
use rap_memory::{ConceptStore, ImageInput, IndexOrigin, KeyIndex, SqliteStore};
use std::io::Cursor;
use std::path::Path;

const DIM: usize = 8;
/// Small enough that a test memory of a few hundred keys uses HNSW.
const HNSW_ABOVE: usize = 50;

fn png(n: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(4, 4, |x, y| {
        let b = n.to_le_bytes();
        image::Rgb([b[0], b[1], (x * 4 + y) as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A distinct unit vector per `n` (deterministic).
fn vector(n: u32) -> Embedding {
    let v = (0..DIM)
        .map(|i| ((n as f32 + 1.0) * (i as f32 + 0.5) * 0.61).sin())
        .collect();
    Embedding::normalized(v).unwrap()
}

/// Adds concept `c{n}` with one image and its key.
fn add(store: &SqliteStore, tenant: &Tenant, n: u32) -> ImageId {
    let image = ImageInput::from_bytes(png(n), &Limits::default()).unwrap();
    let id = image.id.clone();
    let new = NewConcept {
        name: format!("c{n}"),
        aliases: vec![],
        category: "thing".into(),
        info: String::new(),
    };
    store.add_concept(tenant, &new, vec![image]).unwrap();
    store
        .put_keys(
            tenant,
            "enc",
            &[(id.clone(), Region::whole(4, 4), vector(n))],
        )
        .unwrap();
    id
}

fn open_index(store: &SqliteStore, tenant: &Tenant, dir: &Path) -> (KeyIndex, IndexOrigin) {
    KeyIndex::open_with(store, tenant, "enc", DIM, dir, HNSW_ABOVE).unwrap()
}

fn top(index: &KeyIndex, n: u32) -> (f32, ImageId) {
    let hits = index.search(&vector(n), 1).unwrap();
    (hits[0].0, hits[0].1.clone())
}

fn saved_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("default"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_saved_index_is_loaded_and_catches_up_with_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(tmp.path().join("memory.sqlite")).unwrap();
    let saved = tmp.path().join("index");
    let tenant = Tenant::default();
    let ids: Vec<ImageId> = (0..200).map(|n| add(&store, &tenant, n)).collect();

    let (first, origin) = open_index(&store, &tenant, &saved);
    assert_eq!(origin, IndexOrigin::Built);
    assert!(first.is_approximate());
    assert_eq!(first.len(), 200);
    let files = saved_files(&saved);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with(".json")));

    // Another process changes the memory after the save...
    let late = add(&store, &tenant, 1000);
    store.remove_concept(&tenant, "c7").unwrap();

    // ...and the next one loads the saved graph, replaying just those two changes.
    let (second, origin) = open_index(&store, &tenant, &saved);
    assert_eq!(origin, IndexOrigin::Loaded { replayed: 2 });
    assert_eq!(second.len(), 200);
    assert_eq!(top(&second, 1000).1, late);
    assert!(top(&second, 1000).0 > 0.999);
    assert_eq!(top(&second, 42).1, ids[42]);
    let gone = &ids[7];
    assert!(second
        .search(&vector(7), 200)
        .unwrap()
        .iter()
        .all(|hit| hit.1 != gone));
}

#[test]
fn a_damaged_or_foreign_saved_index_is_rebuilt_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(tmp.path().join("memory.sqlite")).unwrap();
    let saved = tmp.path().join("index");
    let tenant = Tenant::default();
    let ids: Vec<ImageId> = (0..120).map(|n| add(&store, &tenant, n)).collect();
    open_index(&store, &tenant, &saved);
    let files = saved_files(&saved);
    let graph = saved
        .join("default")
        .join(files.iter().find(|f| f.ends_with(".hnsw")).unwrap());
    let meta = saved
        .join("default")
        .join(files.iter().find(|f| f.ends_with(".json")).unwrap());

    // A truncated graph file.
    let bytes = std::fs::read(&graph).unwrap();
    std::fs::write(&graph, &bytes[..bytes.len() / 3]).unwrap();
    let (index, origin) = open_index(&store, &tenant, &saved);
    assert_eq!(origin, IndexOrigin::Built);
    assert_eq!(top(&index, 5).1, ids[5]);

    // Metadata that is not JSON, or that names a file outside the folder.
    std::fs::write(&meta, "{not json").unwrap();
    assert_eq!(open_index(&store, &tenant, &saved).1, IndexOrigin::Built);
    let text = std::fs::read_to_string(&meta).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["file"] = "../../elsewhere.hnsw".into();
    std::fs::write(&meta, value.to_string()).unwrap();
    assert_eq!(open_index(&store, &tenant, &saved).1, IndexOrigin::Built);

    // A copy saved for another dimension or at a version the store never reached.
    let (_, origin) = open_index(&store, &tenant, &saved);
    assert!(matches!(origin, IndexOrigin::Loaded { .. }));
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    value["version"] = 1_000_000.into();
    std::fs::write(&meta, value.to_string()).unwrap();
    assert_eq!(open_index(&store, &tenant, &saved).1, IndexOrigin::Built);
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    value["dim"] = (DIM + 1).into();
    std::fs::write(&meta, value.to_string()).unwrap();
    let (index, origin) = open_index(&store, &tenant, &saved);
    assert_eq!(origin, IndexOrigin::Built);
    assert_eq!(top(&index, 9).1, ids[9]);
}

#[test]
fn small_indexes_are_exact_and_not_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(tmp.path().join("memory.sqlite")).unwrap();
    let saved = tmp.path().join("index");
    let tenant = Tenant::default();
    for n in 0..10 {
        add(&store, &tenant, n);
    }
    let (index, origin) = open_index(&store, &tenant, &saved);
    assert_eq!(origin, IndexOrigin::Built);
    assert!(!index.is_approximate());
    assert!(!saved.exists());
}

#[test]
fn a_background_build_answers_exactly_meanwhile_then_adopts_the_graph_with_the_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(tmp.path().join("memory.sqlite")).unwrap();
    let saved = tmp.path().join("index");
    let tenant = Tenant::default();
    let ids: Vec<ImageId> = (0..300).map(|n| add(&store, &tenant, n)).collect();

    let (mut index, origin) =
        KeyIndex::open_background(&store, &tenant, "enc", DIM, &saved, HNSW_ABOVE).unwrap();
    assert_eq!(origin, IndexOrigin::Building);
    // Searchable at once, exactly, before any graph exists.
    assert!(!index.is_approximate());
    assert_eq!(index.len(), 300);
    assert_eq!(top(&index, 42).1, ids[42]);
    assert!(
        !saved.join("default").exists(),
        "nothing is saved before the graph is built"
    );

    // The memory changes while the graph is built from the old keys...
    let late = add(&store, &tenant, 1000);
    store.remove_concept(&tenant, "c7").unwrap();
    index.refresh(&store).unwrap();
    assert_eq!(top(&index, 1000).1, late);

    // ...and the adopted graph has those changes too, and is saved.
    index.finish_building(&store).unwrap();
    assert!(!index.is_building());
    assert!(index.is_approximate());
    assert_eq!(index.len(), 300);
    assert_eq!(top(&index, 1000).1, late);
    assert_eq!(top(&index, 42).1, ids[42]);
    let gone = &ids[7];
    assert!(index
        .search(&vector(7), 300)
        .unwrap()
        .iter()
        .all(|hit| hit.1 != gone));
    assert_eq!(saved_files(&saved).len(), 2);

    // The next process loads the saved graph with nothing to replay.
    let (next, origin) = open_index(&store, &tenant, &saved);
    assert_eq!(origin, IndexOrigin::Loaded { replayed: 0 });
    assert_eq!(top(&next, 1000).1, late);
}
