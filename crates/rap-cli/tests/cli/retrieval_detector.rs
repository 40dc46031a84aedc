//! `[retrieval] detector` in the config file: an OWLv2 folder registered with `rap models add`
//! (the tiny random checkpoint of rap-vision's golden test) is listed and verified as a
//! detector; `rap retrieve` then runs it with the tenant's concept categories as its queries
//! and reports its boxes, the very boxes `rap detect --model DIR --query CATEGORY` finds; an
//! edited category is the query at the next run; a wrong setting is a one-line error.

use crate::common;

use common::{s, Rap};
use std::path::PathBuf;

fn owlv2() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rap-detect/tests/fixtures/hf/owlv2")
}

fn dreambooth(rel: &str) -> PathBuf {
    common::shared("dreambooth-dev").join(rel)
}

fn configure(rap: &Rap, retrieval: &str) {
    std::fs::create_dir_all(rap.data_dir()).unwrap();
    std::fs::write(
        rap.data_dir().join("config.toml"),
        format!("[retrieval]\n{retrieval}\n"),
    )
    .unwrap();
}

/// (label, score, box) of a `detections` array.
fn detections(v: &serde_json::Value) -> Vec<(String, f64, Vec<f64>)> {
    v["detections"]
        .as_array()
        .unwrap_or_else(|| panic!("no detections in {v}"))
        .iter()
        .map(|d| {
            (
                d["label"].as_str().unwrap().to_string(),
                d["score"].as_f64().unwrap(),
                d["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn retrieve_runs_the_configured_owlv2_detector_on_the_categories() {
    // Registered in a models dir of its own (the shared one holds the default encoder).
    let fresh = Rap::new();
    let m = fresh.json(&["models", "add", "owlv2", "--path", s(&owlv2())]);
    assert_eq!(m["kind"], "detector", "{m}");
    let list = fresh.ok(&["models", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("owlv2") && l.contains("detector")),
        "{list}"
    );
    let v = fresh.json(&["models", "verify", "owlv2"]);
    assert_eq!(v["models"][0]["ok"], true, "{v}");
    // Not installed (nothing is in that models dir): what to install.
    configure(&fresh, "detector = \"centernet\"");
    let e = fresh.fails(&["retrieve", s(&dreambooth("dog/02.jpg"))]);
    assert!(e.contains("rap models install centernet"), "{e}");
    configure(&fresh, "detector = \"owlv2\"\ndetector_threshold = 0.0");
    let e = fresh.fails(&["retrieve", s(&dreambooth("dog/02.jpg"))]);
    assert!(!e.contains("detector"), "the detector is found: {e}");

    // Retrieval (default encoder) with the folder as the detector.
    let rap = Rap::with_default_encoder();

    rap.ok(&[
        "concept",
        "add",
        "rex",
        "--image",
        s(&dreambooth("dog/00.jpg")),
        "--category",
        "dog",
    ]);
    configure(
        &rap,
        &format!(
            "detector = {:?}\ndetector_threshold = 0.0\ndetector_max_boxes = 4",
            owlv2().display().to_string()
        ),
    );
    let shown = rap.ok(&["config", "show"]);
    assert!(shown.contains("detector = "), "{shown}");

    let query = dreambooth("dog/02.jpg");
    let out = rap.json(&["retrieve", s(&query), "--top-k", "3"]);
    let got = detections(&out);
    assert_eq!(got.len(), 4, "{out}");
    assert!(got.iter().all(|d| d.0 == "dog"), "{out}");
    let expected = detections(&rap.json(&[
        "detect",
        s(&query),
        "--model",
        s(&owlv2()),
        "--query",
        "dog",
        "--min-score",
        "0",
        "--max",
        "4",
    ]));
    assert_eq!(got, expected);
    // The retrieval itself still finds rex.
    assert_eq!(out["hits"][0]["name"], "rex", "{out}");

    // An edited category is what the detector looks for next.
    rap.ok(&["concept", "edit", "rex", "--category", "puppy"]);
    let got = detections(&rap.json(&["retrieve", s(&query)]));
    assert!(
        !got.is_empty() && got.iter().all(|d| d.0 == "puppy"),
        "{got:?}"
    );

    // Wrong settings: one line saying what to do.
    configure(&rap, "detector = \"nope\"");
    let e = rap.fails(&["retrieve", s(&query)]);
    assert!(e.contains("nope") && e.contains("rap models add"), "{e}");
    configure(
        &rap,
        &format!(
            "detector = {:?}\ndetector_threshold = 2",
            owlv2().display().to_string()
        ),
    );
    let e = rap.fails(&["retrieve", s(&query)]);
    assert!(e.contains("threshold"), "{e}");
}
