//! `rap dataset build | validate | stats` on both input kinds: photo folders (a few
//! dreambooth-dev subjects, linked, not copied) and the rap-dataset crate's COCO fixture over
//! some of those photos; byte-for-byte stability, JSON output, and one-line errors that leave
//! no output behind.

use crate::common;

use common::{s, shared, Rap};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn coco_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rap-dataset/tests/fixtures/dreambooth-coco.json")
}

fn photos(rap: &Rap) -> PathBuf {
    let root = rap.dir.path().join("photos");
    std::fs::create_dir_all(&root).unwrap();
    for subject in ["can", "cat", "dog2", "rc_car"] {
        std::os::unix::fs::symlink(shared("dreambooth-dev").join(subject), root.join(subject))
            .unwrap();
    }
    root
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn folders_build_validate_stats() {
    let rap = Rap::new();
    let photos = photos(&rap);
    let out = rap.dir.path().join("ds");
    let report = rap.json(&[
        "dataset",
        "build",
        "--folders",
        s(&photos),
        "--out",
        s(&out),
        "--seed",
        "4",
    ]);
    assert_eq!(report["concepts"], 4);
    assert_eq!(report["collages"], 4);
    assert_eq!(report["source"], "folders");
    assert_eq!(report["generator"], serde_json::Value::Null);
    let samples = report["samples"].as_u64().unwrap();
    let by_type: u64 = report["by_type"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_type, samples);
    let train: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("train.json")).unwrap()).unwrap();
    assert_eq!(train.len() as u64, samples);
    let hf = std::fs::read_to_string(out.join("train_hf.jsonl")).unwrap();
    assert_eq!(hf.lines().count() as u64, samples);

    // The same seed again gives the same bytes; the text output names the file.
    let again = rap.dir.path().join("ds2");
    let text = rap.ok(&[
        "dataset",
        "build",
        "--folders",
        s(&photos),
        "--out",
        s(&again),
        "--seed",
        "4",
    ]);
    assert!(text.contains(&format!("wrote {samples} samples")), "{text}");
    assert!(
        text.contains("texts:") && text.contains("no generator"),
        "{text}"
    );
    assert_eq!(tree(&out), tree(&again));

    let v = rap.json(&["dataset", "validate", s(&out.join("train.json"))]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["samples"].as_u64(), Some(samples));
    let table = rap.ok(&["dataset", "validate", s(&out.join("train.json"))]);
    assert!(
        table.contains("RECOGNITION") || table.contains("recognition"),
        "{table}"
    );
    assert!(table.contains("ok: no faults"), "{table}");

    let svg = rap.dir.path().join("chart.svg");
    let st = rap.json(&[
        "dataset",
        "stats",
        s(&out.join("train.json")),
        "--svg",
        s(&svg),
    ]);
    assert_eq!(st["samples"].as_u64(), Some(samples));
    assert_eq!(st["noise_rate"], report["noise_rate"]);
    assert_eq!(st["by_type"], report["by_type"]);
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("Answer length"));
    // Without --svg the chart goes beside the file.
    rap.ok(&["dataset", "stats", s(&out.join("train.json"))]);
    assert!(out.join("train.stats.svg").exists());
}

#[test]
fn coco_build_and_validate_faults() {
    let rap = Rap::new();
    let out = rap.dir.path().join("coco");
    let images = shared("dreambooth-dev");
    let report = rap.json(&[
        "dataset",
        "build",
        "--coco",
        s(&coco_fixture()),
        "--images",
        s(&images),
        "--out",
        s(&out),
        "--max-concepts",
        "3",
        "--noise-rate",
        "1",
        "--noise-max",
        "1",
        "--augment",
        "2",
    ]);
    assert_eq!(report["source"], "coco");
    assert_eq!(report["skipped"]["crowd"], 1);
    assert_eq!(report["skipped"]["too small"], 1);
    assert_eq!(
        report["augmented_views"].as_u64().unwrap(),
        2 * report["concepts"].as_u64().unwrap()
    );
    assert!(rap.json(&["dataset", "validate", s(&out.join("train.json"))])["ok"] == true);

    // Break the file: validate reports the faults and fails.
    let mut train: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("train.json")).unwrap()).unwrap();
    train[1]["id"] = train[0]["id"].clone();
    train[2]["image"] = serde_json::json!("images/none.jpg");
    let bad = out.join("bad.json");
    std::fs::write(&bad, serde_json::to_string(&train).unwrap()).unwrap();
    let e = rap.fails(&["dataset", "validate", s(&bad)]);
    assert!(
        e.contains("2 faults in 2 of") && e.contains("duplicate_id") && e.contains("missing_file"),
        "{e}"
    );
    let o = rap.run(&["dataset", "validate", s(&bad), "--json"]);
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["faults"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_gets_one_line_errors_and_no_output() {
    let rap = Rap::new();
    let out = rap.dir.path().join("out");
    let bad = rap.write("bad.json", b"{\"images\": [");
    let e = rap.fails(&[
        "dataset",
        "build",
        "--coco",
        s(&bad),
        "--images",
        s(rap.dir.path()),
        "--out",
        s(&out),
    ]);
    assert!(
        e.contains("bad.json") && e.contains("not a COCO annotation file"),
        "{e}"
    );
    assert!(!out.exists());

    // A COCO file naming a photo that is not there.
    let missing = rap.write(
        "missing.json",
        br#"{"images":[{"id":1,"file_name":"nope/00.jpg"}],"annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[0,0,50,50]}],"categories":[{"id":1,"name":"dog"}]}"#,
    );
    let e = rap.fails(&[
        "dataset",
        "build",
        "--coco",
        s(&missing),
        "--images",
        s(rap.dir.path()),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("nope/00.jpg"), "{e}");
    assert!(!out.exists());
    let leftovers = std::fs::read_dir(rap.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".rap-dataset")
        })
        .count();
    assert_eq!(leftovers, 0);

    let e = rap.fails(&[
        "dataset",
        "build",
        "--folders",
        s(&rap.dir.path().join("none")),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("none") && e.contains("not a folder"), "{e}");
    let e = rap.fails(&["dataset", "stats", s(&bad)]);
    assert!(e.contains("bad.json") && e.contains("not JSON"), "{e}");
    let e = rap.fails(&[
        "dataset",
        "validate",
        s(&rap.dir.path().join("nothing.json")),
    ]);
    assert!(e.contains("nothing.json"), "{e}");
    // --coco needs --images; one input kind only.
    let o = rap.run(&["dataset", "build", "--coco", s(&bad), "--out", s(&out)]);
    assert!(!o.status.success());
}
