//! `rap concept ...`, `rap import`, `rap export`: the CLI contract, and bad input that must
//! fail with a clear one-line error while leaving the memory exactly as it was.

use crate::common;
use common::{png, s, shared, Rap};

#[test]
fn add_list_show_edit_rm() {
    let rap = Rap::new();
    let a = rap.write("a.png", &png(1, 20, 10));
    let b = rap.write("b.png", &png(2, 20, 10));
    let c = rap.write("c.png", &png(3, 20, 10));
    let added = rap.json(&[
        "concept",
        "add",
        "Bo",
        "--image",
        s(&a),
        "--image",
        s(&b),
        "--info",
        "<bo> is a Shiba Inu.",
        "--category",
        "dog",
        "--alias",
        "shiba",
    ]);
    assert_eq!(added["name"], "Bo");
    assert_eq!(added["images"].as_array().unwrap().len(), 2);

    let list = rap.json(&["concept", "list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    for field in ["id", "name", "aliases", "category", "info", "images"] {
        assert!(list[0].get(field).is_some(), "list entries have {field}");
    }
    assert_eq!(list[0]["aliases"][0], "shiba");
    assert!(rap.ok(&["concept", "list"]).contains("<Bo>"));

    assert_eq!(rap.json(&["concept", "show", "SHIBA"])["id"], added["id"]);
    let first_image = added["images"][0]["id"].as_str().unwrap().to_string();
    let edited = rap.json(&[
        "concept",
        "edit",
        "bo",
        "--rename",
        "Bobo",
        "--info",
        "new",
        "--category",
        "shiba inu",
        "--add-image",
        s(&c),
        "--remove-image",
        &first_image[..12],
        "--alias",
        "b",
        "--remove-alias",
        "shiba",
    ]);
    assert_eq!(edited["id"], added["id"]);
    assert_eq!(edited["name"], "Bobo");
    assert_eq!(edited["aliases"], serde_json::json!(["b"]));
    assert_eq!(edited["category"], "shiba inu");
    let ids: Vec<&str> = edited["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&first_image.as_str()));

    rap.ok(&["concept", "rm", "b"]);
    assert_eq!(rap.json(&["concept", "list"]), serde_json::json!([]));
    assert_eq!(
        rap.json(&["status"])["images"],
        0,
        "unused images are removed"
    );
}

#[test]
fn negatives_are_added_by_box_shown_and_removed() {
    let rap = Rap::new();
    let a = rap.write("a.png", &png(1, 20, 10));
    let not_a = rap.write("rex.png", &png(4, 64, 48));
    rap.json(&["concept", "add", "Bo", "--image", s(&a)]);
    let edited = rap.json(&[
        "concept",
        "edit",
        "bo",
        "--add-negative",
        s(&not_a),
        "--box",
        "8,4,40,36",
    ]);
    let negatives = edited["negatives"].as_array().unwrap();
    assert_eq!(negatives.len(), 1, "{edited}");
    assert_eq!(
        (
            negatives[0]["width"].as_u64(),
            negatives[0]["height"].as_u64()
        ),
        (Some(32), Some(32)),
        "the box is what is stored"
    );
    assert_eq!(edited["images"].as_array().unwrap().len(), 1);
    assert!(rap
        .ok(&["concept", "show", "bo"])
        .contains("negative examples"));
    assert!(rap.ok(&["concept", "list"]).contains("(+1 not)"));

    // A box per negative, or none; a box must be a box.
    let err = rap.fails(&[
        "concept",
        "edit",
        "bo",
        "--add-negative",
        s(&not_a),
        "--add-negative",
        s(&a),
        "--box",
        "0,0,5,5",
    ]);
    assert!(err.contains("one --box per --add-negative"), "{err}");
    let err = rap.fails(&[
        "concept",
        "edit",
        "bo",
        "--add-negative",
        s(&not_a),
        "--box",
        "5,5,1,1",
    ]);
    assert!(err.contains("x2 > x1"), "{err}");
    // A reference image cannot be a negative too.
    let err = rap.fails(&["concept", "edit", "bo", "--add-negative", s(&a)]);
    assert!(err.contains("is a reference image"), "{err}");

    let id = negatives[0]["id"].as_str().unwrap();
    let edited = rap.json(&["concept", "edit", "bo", "--remove-negative", &id[..10]]);
    assert!(edited.get("negatives").is_none(), "{edited}");
}

#[test]
fn tenants_are_separate() {
    let rap = Rap::new();
    let a = rap.write("a.png", &png(1, 8, 8));
    rap.ok(&[
        "--tenant",
        "alice",
        "concept",
        "add",
        "bo",
        "--image",
        s(&a),
    ]);
    assert_eq!(
        rap.json(&["--tenant", "bob", "concept", "list"]),
        serde_json::json!([])
    );
    rap.fails(&["--tenant", "bob", "concept", "show", "bo"]);
    rap.fails(&["--tenant", "bob", "concept", "rm", "bo"]);
    rap.ok(&["--tenant", "bob", "concept", "add", "bo", "--image", s(&a)]);
    rap.ok(&["--tenant", "bob", "concept", "rm", "bo"]);
    assert_eq!(
        rap.json(&["--tenant", "alice", "concept", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    rap.fails(&["--tenant", "../x", "concept", "list"]);
}

#[test]
fn bad_input_fails_clearly_and_changes_nothing() {
    let rap = Rap::new();
    let good = rap.write("good.png", &png(1, 40, 30));
    rap.ok(&[
        "concept",
        "add",
        "bo",
        "--image",
        s(&good),
        "--alias",
        "shiba",
    ]);
    let before = rap.snapshot();

    let full = png(2, 40, 30);
    let truncated = rap.write("truncated.png", &full[..full.len() / 2]);
    let text = rap.write("notes.png", b"hello, I am not an image");
    let empty = rap.write("empty.jpg", b"");
    // A PNG header claiming 60000 x 60000 pixels: refused before decoding.
    let bomb = rap.write("bomb.png", &common::png_bomb(60000, 60000));
    let dir = rap.dir.path().join("a-folder");
    std::fs::create_dir_all(&dir).unwrap();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["concept", "add", "dug", "--image", "/nonexistent/x.png"],
            "x.png",
        ),
        (
            vec!["concept", "add", "dug", "--image", s(&truncated)],
            "truncated.png",
        ),
        (
            vec!["concept", "add", "dug", "--image", s(&text)],
            "not an image",
        ),
        (vec!["concept", "add", "dug", "--image", s(&empty)], "empty"),
        (
            vec!["concept", "add", "dug", "--image", s(&bomb)],
            "megapixels",
        ),
        (
            vec!["concept", "add", "dug", "--image", s(&dir)],
            "a-folder",
        ),
        (
            vec![
                "concept",
                "add",
                "dug",
                "--image",
                s(&good),
                "--image",
                s(&truncated),
            ],
            "truncated.png",
        ),
        (
            vec!["concept", "add", "BO", "--image", s(&good)],
            "already used",
        ),
        (
            vec![
                "concept",
                "add",
                "dug",
                "--image",
                s(&good),
                "--alias",
                "Shiba",
            ],
            "already used",
        ),
        (
            vec!["concept", "add", "a,b", "--image", s(&good)],
            "invalid name",
        ),
        (vec!["concept", "show", "ghost"], "not found: ghost"),
        (vec!["concept", "rm", "ghost"], "not found: ghost"),
        (
            vec!["concept", "edit", "ghost", "--info", "x"],
            "not found: ghost",
        ),
        (
            vec![
                "concept",
                "edit",
                "bo",
                "--info",
                "x",
                "--add-image",
                s(&text),
            ],
            "not an image",
        ),
        (
            vec![
                "concept",
                "edit",
                "bo",
                "--rename",
                "x",
                "--remove-image",
                "0000000000",
            ],
            "not found",
        ),
        (vec!["import", "/nonexistent/db"], "nonexistent"),
    ];
    for (args, expect) in cases {
        let line = rap.fails(&args);
        assert!(line.contains(expect), "{args:?}: {line}");
        assert_eq!(rap.snapshot(), before, "{args:?} changed the memory");
    }
    // The pixel limit is configurable.
    let line = rap.fails(&[
        "--max-pixels",
        "100",
        "concept",
        "add",
        "dug",
        "--image",
        s(&good),
    ]);
    assert!(line.contains("over the limit"), "{line}");
    assert_eq!(rap.snapshot(), before);
}

#[test]
fn import_example_then_export_and_reimport() {
    let rap = Rap::new();
    let imported = rap.json(&["import", s(&shared("rap-example/example_database"))]);
    assert_eq!(imported["imported"].as_array().unwrap().len(), 10);
    let bo = rap.json(&["concept", "show", "<bo>"]);
    assert_eq!(bo["category"], "dog");
    assert!(bo["info"].as_str().unwrap().contains("Shiba Inu"));
    assert_eq!(bo["images"].as_array().unwrap().len(), 1);

    // Importing again conflicts and changes nothing.
    let before = rap.snapshot();
    let line = rap.fails(&[
        "import",
        s(&shared("rap-example/example_database/database.json")),
    ]);
    assert!(line.contains("already used"), "{line}");
    assert_eq!(rap.snapshot(), before);

    let out = rap.dir.path().join("export_db");
    rap.ok(&["export", s(&out)]);
    assert!(rap.fails(&["export", s(&out)]).contains("already exists"));
    rap.ok(&["export", s(&out), "--force"]);
    let other = Rap::new();
    other.ok(&["import", s(&out)]);
    let strip = |v: serde_json::Value| {
        let mut items: Vec<_> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let mut c = c.clone();
                for f in ["id", "created_at", "updated_at"] {
                    c.as_object_mut().unwrap().remove(f);
                }
                c
            })
            .collect();
        items.sort_by_key(|c| c["name"].as_str().unwrap().to_string());
        items
    };
    assert_eq!(
        strip(rap.json(&["concept", "list"])),
        strip(other.json(&["concept", "list"]))
    );
}

#[test]
fn errors_in_json_mode_are_json_too() {
    let rap = Rap::new();
    let out = rap.run(&["concept", "show", "ghost", "--json"]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("ghost"));
}
