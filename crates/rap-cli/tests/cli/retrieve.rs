//! `rap retrieve` and `rap eval retrieval` with the real default encoder: concepts are found
//! in new photos, edits take effect at the very next search, and without an encoder the
//! error says how to install one.

use crate::common;
use common::{s, shared, Rap};

fn dreambooth(rel: &str) -> std::path::PathBuf {
    shared("dreambooth-dev").join(rel)
}

#[test]
fn without_an_encoder_images_say_how_to_install_and_text_still_works() {
    let rap = Rap::new();
    rap.ok(&["import", s(&shared("rap-example/example_database"))]);
    let line = rap.fails(&["retrieve", s(&dreambooth("dog/00.jpg"))]);
    assert!(line.contains("rap models install default"), "{line}");
    let hits = rap.json(&["retrieve", "--text", "Is <bo> playing with Dug?"]);
    let hits = hits["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(
        (hits[0]["name"].as_str(), hits[0]["via"].as_str()),
        (Some("bo"), Some("text"))
    );
    assert_eq!(hits[1]["name"], "dug");
    assert!(hits[0]["box"].is_null());
    assert!(rap.fails(&["retrieve"]).contains("give an image"));
}

#[test]
fn finds_a_concept_in_a_new_photo_and_follows_edits_at_once() {
    let rap = Rap::with_default_encoder();
    rap.ok(&["import", s(&shared("rap-example/example_database"))]);
    rap.ok(&[
        "concept",
        "add",
        "rex",
        "--image",
        s(&dreambooth("dog/00.jpg")),
        "--category",
        "dog",
    ]);
    rap.ok(&[
        "concept",
        "add",
        "tin",
        "--image",
        s(&dreambooth("can/00.jpg")),
        "--category",
        "can",
    ]);

    let hits = rap.json(&["retrieve", s(&dreambooth("dog/02.jpg")), "--top-k", "3"]);
    let top = &hits["hits"][0];
    assert_eq!(top["name"], "rex", "{hits}");
    assert_eq!(top["via"], "image");
    let score = top["score"].as_f64().unwrap();
    assert!(
        score >= rap_engine::DEFAULT_THRESHOLD as f64 && score <= 1.0001,
        "{score}"
    );
    let bbox: Vec<f64> = serde_json::from_value(top["box"].clone()).unwrap();
    assert!(
        bbox.len() == 4 && bbox[2] > bbox[0] && bbox[3] > bbox[1],
        "{bbox:?}"
    );
    // Descending relevance, all at or above the threshold.
    let scores: Vec<f64> = hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // A text mention comes first and counts towards top-k.
    let hits = rap.json(&[
        "retrieve",
        s(&dreambooth("dog/02.jpg")),
        "--text",
        "is tin here?",
        "--top-k",
        "2",
    ]);
    let names: Vec<&str> = hits["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["tin", "rex"]);

    // A very high threshold leaves out every image hit.
    let hits = rap.json(&[
        "retrieve",
        s(&dreambooth("dog/02.jpg")),
        "--threshold",
        "0.999",
    ]);
    assert_eq!(hits["hits"], serde_json::json!([]));

    // Removed: never found again, with no rebuild step in between.
    rap.ok(&["concept", "rm", "rex"]);
    let hits = rap.json(&[
        "retrieve",
        s(&dreambooth("dog/02.jpg")),
        "--top-k",
        "20",
        "--threshold",
        "-1",
    ]);
    assert!(
        hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["name"] != "rex"),
        "{hits}"
    );
    // Added back under another name with another photo: found by the very next search.
    rap.ok(&[
        "concept",
        "add",
        "buddy",
        "--image",
        s(&dreambooth("dog/01.jpg")),
    ]);
    let hits = rap.json(&["retrieve", s(&dreambooth("dog/02.jpg"))]);
    assert_eq!(hits["hits"][0]["name"], "buddy", "{hits}");
    let keys = rap.json(&["status"]);
    // The default encoder keys each reference whole and by two centred crops.
    let images = keys["images"].as_u64().unwrap();
    assert!(images > 0, "{keys}");
    assert_eq!(
        keys["keys"].as_u64(),
        Some(3 * images),
        "three keys per stored image: {keys}"
    );
}

#[test]
fn eval_retrieval_reports_totals_and_per_subject_figures() {
    let rap = Rap::with_default_encoder();
    // Three subjects that are easy to tell apart, linked into a small dataset.
    let dataset = rap.dir.path().join("dataset");
    std::fs::create_dir_all(&dataset).unwrap();
    for subject in ["can", "cat", "clock"] {
        std::os::unix::fs::symlink(dreambooth(subject), dataset.join(subject)).unwrap();
    }
    let report = rap.json(&[
        "eval",
        "retrieval",
        "--dataset",
        s(&dataset),
        "--refs",
        "2",
        "--scales",
        "none",
    ]);
    assert_eq!(report["subjects"], 3);
    assert_eq!(report["refs"], 2);
    let queries = report["queries"].as_u64().unwrap();
    assert!(queries >= 6, "{report}");
    for field in [
        "top1",
        "recall_at_5",
        "mrr",
        "positive_accuracy",
        "negative_accuracy",
        "weighted",
        "ms_per_query",
    ] {
        assert!(report[field].is_number(), "{field} missing: {report}");
    }
    assert!(report["top1"].as_f64().unwrap() >= 0.8, "{report}");
    assert_eq!(report["recall_at_5"], 1.0, "only three subjects");
    let per_subject = report["per_subject"].as_object().unwrap();
    assert_eq!(per_subject.len(), 3);
    let sum: u64 = per_subject
        .values()
        .map(|f| f["queries"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, queries);
    assert!(rap
        .fails(&["eval", "retrieval", "--dataset", s(&dataset), "--refs", "9"])
        .contains("nothing left to query"));
}

/// `--scenes`, `--negatives`, `--subjects` and `--holdout` together on four dreambooth-dev
/// subjects: the sections are there, their counts add up, the saved scenes and labels match,
/// and no scene shows a reference photo.
#[test]
fn eval_retrieval_scenes_negatives_and_holdout() {
    let rap = Rap::with_default_encoder();
    let dataset = rap.dir.path().join("dataset");
    std::fs::create_dir_all(&dataset).unwrap();
    for subject in ["can", "cat", "clock", "dog", "duck_toy"] {
        std::os::unix::fs::symlink(dreambooth(subject), dataset.join(subject)).unwrap();
    }
    // Negatives: two photos of a subject that is not in the dataset, one in a subfolder.
    let negatives = rap.dir.path().join("negatives");
    std::fs::create_dir_all(negatives.join("sub")).unwrap();
    std::fs::copy(dreambooth("rc_car/00.jpg"), negatives.join("a.jpg")).unwrap();
    std::fs::copy(dreambooth("rc_car/01.jpg"), negatives.join("sub/b.jpg")).unwrap();
    let saved = rap.dir.path().join("scenes");
    let args = |scenes: &str| {
        vec![
            "eval".to_string(),
            "retrieval".into(),
            "--dataset".into(),
            s(&dataset).into(),
            "--subjects".into(),
            "can,cat,clock".into(),
            "--holdout".into(),
            "dog".into(),
            "--negatives".into(),
            s(&negatives).into(),
            "--scenes".into(),
            scenes.into(),
            "--save-scenes".into(),
            s(&saved).into(),
        ]
    };
    let owned = args("2");
    let report = rap.json(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        report["subjects"], 3,
        "duck_toy is left out, dog held out: {report}"
    );
    assert!(report["top1"].is_number());

    // Scenes: three subjects in memory give sizes 2 and 3, two scenes each.
    let scenes = &report["scenes"];
    assert_eq!(
        scenes["backgrounds"], "photos",
        "the negatives are the backgrounds"
    );
    let per_size = scenes["per_size"].as_object().unwrap();
    assert_eq!(per_size.keys().collect::<Vec<_>>(), vec!["2", "3"]);
    for (size, f) in per_size {
        let size: u64 = size.parse().unwrap();
        let n = |k: &str| f[k].as_u64().unwrap();
        assert_eq!(n("scenes"), 2);
        assert_eq!(n("pasted"), 2 * size);
        assert_eq!(n("true_positives") + n("false_negatives"), n("pasted"));
        assert_eq!(n("true_positives") + n("false_positives"), n("reported"));
        assert!(n("box_hits") <= n("true_positives"));
        for k in ["precision", "recall", "f1"] {
            let v = f[k].as_f64().unwrap_or(0.0);
            assert!((0.0..=1.0).contains(&v), "{k}: {f}");
        }
    }
    // Saved: four JPEGs and labels for them, cut from query photos (00.jpg is the reference).
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved.join("labels.json")).unwrap()).unwrap();
    let listed = labels["scenes"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    for scene in listed {
        let file = saved.join(scene["file"].as_str().unwrap());
        let img = image::open(&file).unwrap();
        assert_eq!((img.width(), img.height()), (1024, 768));
        for p in scene["pasted"].as_array().unwrap() {
            let photo = std::path::Path::new(p["photo"].as_str().unwrap());
            assert_ne!(
                photo.file_name().unwrap(),
                "00.jpg",
                "a reference photo: {p}"
            );
            assert_ne!(p["subject"], "dog", "held out");
            assert!(photo.starts_with(dataset.join(p["subject"].as_str().unwrap())));
        }
        assert!(scene["reported"].is_array());
    }

    // Negatives and the held-out subject.
    assert_eq!(report["negatives"]["photos"], 2);
    let dog_photos = std::fs::read_dir(dreambooth("dog")).unwrap().count() as u64;
    assert_eq!(report["holdout"]["dog"]["photos"], dog_photos);
    for f in [&report["negatives"], &report["holdout"]["dog"]] {
        let clean = f["clean"].as_u64().unwrap();
        let fired: u64 = f["fired"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["photos"].as_u64().unwrap())
            .sum();
        assert!(clean <= f["photos"].as_u64().unwrap());
        assert!(fired >= f["photos"].as_u64().unwrap() - clean, "{f}");
    }

    // The same seed gives the same scenes.
    let first = std::fs::read(saved.join("s2-000.jpg")).unwrap();
    rap.json(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(std::fs::read(saved.join("s2-000.jpg")).unwrap(), first);

    // The human table has the new sections.
    let text = rap.ok(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        text.contains("Scenes (1024x768") && text.contains("held-out dog"),
        "{text}"
    );

    // Errors name what is wrong.
    let e = rap.fails(&[
        "eval",
        "retrieval",
        "--dataset",
        s(&dataset),
        "--subjects",
        "cat,bo",
    ]);
    assert!(e.contains("--subjects: no subject folder named bo"), "{e}");
    let e = rap.fails(&[
        "eval",
        "retrieval",
        "--dataset",
        s(&dataset),
        "--subjects",
        "cat",
        "--scenes",
        "1",
    ]);
    assert!(e.contains("--scenes needs at least 2 subjects"), "{e}");
    let e = rap.fails(&[
        "eval",
        "retrieval",
        "--dataset",
        s(&dataset),
        "--save-scenes",
        "x",
    ]);
    assert!(e.contains("--save-scenes needs --scenes"), "{e}");
    // (a usage error from the argument parser: several lines)
    let out = rap.run(&["eval", "retrieval", "--dataset", s(&dataset), "--seed", "3"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("--scenes"), "{e}");
}
