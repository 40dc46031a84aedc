//! `rap library` with the real default encoder on a few dreambooth-dev photos: a folder is
//! indexed once, a concept added afterwards is found in it, `who` names the concept of an
//! indexed photo, and a second `add` reads nothing again.

use crate::common;
use common::{s, shared, Rap};

#[test]
fn a_concept_added_after_indexing_is_found_in_the_library() {
    let rap = Rap::with_default_encoder();
    let photos = tempfile::tempdir().unwrap();
    for (subject, file) in [("dog", "01.jpg"), ("dog", "02.jpg"), ("can", "01.jpg")] {
        std::fs::copy(
            shared("dreambooth-dev").join(subject).join(file),
            photos.path().join(format!("{subject}_{file}")),
        )
        .unwrap();
    }
    // A concept first, so the memory's encoder is set.
    rap.ok(&[
        "concept",
        "add",
        "tin",
        "--image",
        s(&shared("dreambooth-dev/can/00.jpg")),
    ]);
    let report = rap.json(&["library", "add", s(photos.path()), "--workers", "2"]);
    assert_eq!(
        (report["found"].as_u64(), report["indexed"].as_u64()),
        (Some(3), Some(3)),
        "{report}"
    );

    rap.ok(&[
        "concept",
        "add",
        "rex",
        "--image",
        s(&shared("dreambooth-dev/dog/00.jpg")),
    ]);
    let found = rap.json(&["library", "find", "rex"]);
    let mut paths: Vec<&str> = found["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 2, "{found}");
    assert!(
        paths[0].ends_with("dog_01.jpg") && paths[1].ends_with("dog_02.jpg"),
        "{found}"
    );
    assert!(found["photos"][0]["confidence"].as_f64().unwrap() > 0.5);

    let who = rap.json(&["library", "who", s(&photos.path().join("can_01.jpg"))]);
    let names: Vec<&str> = who["concepts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tin"], "{who}");

    let again = rap.json(&["library", "add", s(photos.path())]);
    assert_eq!(
        (again["unchanged"].as_u64(), again["indexed"].as_u64()),
        (Some(3), Some(0))
    );
    let line = rap.fails(&["library", "find", "nobody"]);
    assert!(line.contains("nobody"), "{line}");
}
