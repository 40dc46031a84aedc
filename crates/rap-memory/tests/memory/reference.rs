//! The reference `database.json`: importing the shared example, round-tripping through
//! export, and refusing paths that escape their folder.

use rap_core::Tenant;
use rap_image::Limits;
use rap_memory::reference::{read_reference, write_reference};
use rap_memory::{ConceptStore, SqliteStore};
use std::path::{Path, PathBuf};

fn example_db() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets/rap-example/example_database")
}

fn png_bytes(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([seed, x as u8, y as u8]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn imports_all_ten_example_concepts_with_every_field() {
    let concepts = read_reference(&example_db(), &Limits::default()).unwrap();
    assert_eq!(concepts.len(), 10);
    let (bo, images) = concepts.iter().find(|(c, _)| c.name == "bo").unwrap();
    assert_eq!(bo.category, "dog");
    assert!(bo
        .info
        .starts_with("<bo> is a well-groomed, medium-sized Shiba Inu"));
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].meta.format, "png");
    let original = std::fs::read(example_db().join("bo.png")).unwrap();
    assert_eq!(*images[0].bytes, original);
    // The JSON file itself works as well as its folder.
    assert_eq!(
        read_reference(&example_db().join("database.json"), &Limits::default())
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn export_then_import_round_trips_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("m.sqlite")).unwrap();
    let tenant = Tenant::default();
    let mut concepts = read_reference(&example_db(), &Limits::default()).unwrap();
    // Exercise what our extensions add: several images and aliases.
    concepts[0].0.aliases = vec!["first one".into()];
    let extra = rap_memory::ImageInput::from_bytes(png_bytes(3), &Limits::default()).unwrap();
    concepts[0].1.push(extra);
    let before = store.add_concepts(&tenant, concepts).unwrap();

    let out = dir.path().join("exported_db");
    write_reference(&out, &before, false, |c, i| {
        store.image_bytes(&tenant, &c.images[i].id)
    })
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("database.json")).unwrap()).unwrap();
    // The reference's own fields, with paths relative to the folder above the database folder.
    let bo = &json["concept_dict"]["<bo>"];
    assert_eq!(bo["name"], "bo");
    assert_eq!(bo["image"], "exported_db/bo.png");
    assert_eq!(json["path_to_concept"]["exported_db/bo.png"], "<bo>");
    assert!(
        write_reference(&out, &before, false, |_, _| Ok(vec![])).is_err(),
        "no silent overwrite"
    );

    let store2 = SqliteStore::open(dir.path().join("m2.sqlite")).unwrap();
    let after = store2
        .add_concepts(&tenant, read_reference(&out, &Limits::default()).unwrap())
        .unwrap();
    let key = |c: &rap_core::Concept| {
        (
            c.name.clone(),
            c.aliases.clone(),
            c.category.clone(),
            c.info.clone(),
            c.images.clone(),
        )
    };
    let mut a: Vec<_> = before.iter().map(key).collect();
    let mut b: Vec<_> = after.iter().map(key).collect();
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(a, b);
}

fn write_db(dir: &Path, image_path: &str) -> PathBuf {
    let db = dir.join("db");
    std::fs::create_dir_all(&db).unwrap();
    let json = serde_json::json!({
        "concept_dict": {"<x>": {"name": "x", "image": image_path, "info": "", "category": ""}},
        "path_to_concept": {}
    });
    std::fs::write(db.join("database.json"), json.to_string()).unwrap();
    db
}

#[test]
fn refuses_paths_that_leave_the_folder() {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    // A real image outside the base folder, reachable by each trick.
    let secret = root.path().join("secret.png");
    std::fs::write(&secret, png_bytes(1)).unwrap();
    let db = write_db(&base, "../secret.png");
    let cases = vec![
        "../secret.png".to_string(),
        "../../secret.png".to_string(),
        "db/../../secret.png".to_string(),
        secret.to_string_lossy().into_owned(),
        "/etc/passwd".to_string(),
        "../../../../../../etc/passwd".to_string(),
    ];
    for case in cases {
        write_db(&base, &case);
        let err = read_reference(&db, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("outside") || err.contains("not found"),
            "{case}: {err}"
        );
        assert!(err.contains("<x>"), "the error names the concept: {err}");
    }
    // A link inside the folder that leads out.
    std::os::unix::fs::symlink(&secret, db.join("link.png")).unwrap();
    write_db(&base, "db/link.png");
    let err = read_reference(&db, &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside"), "{err}");
    // The same image inside the folder is fine, relative to either root.
    std::fs::write(db.join("ok.png"), png_bytes(1)).unwrap();
    for ok in ["db/ok.png", "ok.png", "./db/ok.png"] {
        write_db(&base, ok);
        assert_eq!(
            read_reference(&db, &Limits::default()).unwrap().len(),
            1,
            "{ok}"
        );
    }
}

#[test]
fn malformed_files_get_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    for (text, expect) in [
        ("{not json", "not a reference database.json"),
        ("{\"concept_dict\": []}", "not a reference database.json"),
        (
            "{\"concept_dict\": {\"<x>\": {\"info\": \"no image\"}}}",
            "not a reference database.json",
        ),
    ] {
        std::fs::write(db.join("database.json"), text).unwrap();
        let err = read_reference(&db, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "{text}: {err}");
    }
    std::fs::write(db.join("fake.png"), b"this is not a png").unwrap();
    write_db(root.path(), "db/fake.png");
    let err = read_reference(&db, &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fake.png") && err.contains("not an image"),
        "{err}"
    );
    assert!(read_reference(&root.path().join("missing"), &Limits::default()).is_err());
}

fn export_one(out: &Path, force: bool) -> rap_core::Result<PathBuf> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("m.sqlite")).unwrap();
    let tenant = Tenant::default();
    let image = rap_memory::ImageInput::from_bytes(png_bytes(5), &Limits::default()).unwrap();
    let new = rap_core::NewConcept {
        name: "bo".into(),
        ..Default::default()
    };
    let added = store.add_concept(&tenant, &new, vec![image]).unwrap();
    write_reference(out, &[added], force, |c, i| {
        store.image_bytes(&tenant, &c.images[i].id)
    })
}

/// Issue 20: `rap export DIR` overwrote files that were not its own in a non-empty folder, and
/// followed `DIR/bo.png -> ../v.txt` out of the folder, overwriting `v.txt`.
#[test]
fn export_never_overwrites_foreign_files_or_follows_links() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A file of the user's, named like one the export writes: refused, untouched.
    std::fs::write(out.join("bo.png"), b"mine").unwrap();
    let err = export_one(&out, false).unwrap_err();
    assert!(matches!(err, rap_core::Error::Conflict(_)), "{err}");
    assert!(err.to_string().contains("bo.png") && err.to_string().contains("--force"));
    assert_eq!(std::fs::read(out.join("bo.png")).unwrap(), b"mine");
    assert!(
        !out.join("database.json").exists(),
        "a refusal writes nothing"
    );

    // A link named like an export file, pointing out of the folder.
    let victim = root.path().join("v.txt");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::remove_file(out.join("bo.png")).unwrap();
    std::os::unix::fs::symlink("../v.txt", out.join("bo.png")).unwrap();
    let err = export_one(&out, false).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // With --force the link itself is replaced by the image, never followed.
    export_one(&out, true).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let meta = std::fs::symlink_metadata(out.join("bo.png")).unwrap();
    assert!(meta.is_file(), "the link was replaced by a file");
    assert_eq!(std::fs::read(out.join("bo.png")).unwrap(), png_bytes(5));
    // Unrelated files in the folder are fine, and no temporary file is left.
    std::fs::write(out.join("notes.txt"), b"x").unwrap();
    let again = root.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::write(again.join("notes.txt"), b"x").unwrap();
    export_one(&again, false).unwrap();
    let names: Vec<String> = std::fs::read_dir(&again)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

/// Issue 20: `mkfifo db/database.json; rap import db` blocked forever.
#[test]
fn a_fifo_database_is_refused_without_blocking() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let fifo = db.join("database.json");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_reference(&db, &Limits::default()).map(|c| c.len()));
    });
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("reading a FIFO must not block");
    let err = result.unwrap_err().to_string();
    assert!(err.contains("not a regular file (a FIFO)"), "{err}");
}

/// Issue 20: 5000 concepts sharing one image took 2.7 GB to import; the file is now read once
/// and shared. The concept count is limited (`max_concepts_per_import`).
#[test]
fn concepts_sharing_an_image_share_its_bytes_and_the_count_is_limited() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("one.png"), png_bytes(9)).unwrap();
    let dict: serde_json::Map<String, serde_json::Value> = (0..5000)
        .map(|i| {
            (
                format!("<c{i}>"),
                serde_json::json!({"name": format!("c{i}"), "image": "db/one.png"}),
            )
        })
        .collect();
    let json = serde_json::json!({"concept_dict": dict});
    std::fs::write(db.join("database.json"), json.to_string()).unwrap();
    let concepts = read_reference(&db, &Limits::default()).unwrap();
    assert_eq!(concepts.len(), 5000);
    let first = &concepts[0].1[0].bytes;
    assert!(concepts
        .iter()
        .all(|(_, images)| std::sync::Arc::ptr_eq(&images[0].bytes, first)));
    let small = Limits {
        max_concepts_per_import: 4999,
        ..Limits::default()
    };
    let err = read_reference(&db, &small).unwrap_err();
    assert!(
        matches!(
            err,
            rap_core::Error::LimitExceeded {
                limit: "max_concepts_per_import",
                value: 4999,
                ..
            }
        ),
        "{err}"
    );
}
