//! The file readers end to end: a predictions file on disk -> report -> JSON.

use rap_eval::{
    read_caption_predictions, read_qa_predictions, read_recognition_predictions, score_captions,
    score_qa, score_recognition, Vocabulary,
};
use std::io::Write;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn caption_file_with_memory_vocabulary_and_json_report() {
    let f = file(
        r#"[
        ["photos/1.jpg", ["<bo>"], "<bo> and Dug are on the sofa."],
        ["photos/2.jpg", ["<bo>", "<dug>"], "Two dogs: BO and the doggo."],
        ["photos/3.jpg", ["<dug>"], "An empty bowl."]
    ]"#,
    );
    let items = read_caption_predictions(f.path()).unwrap();
    let mut v = Vocabulary::new();
    v.add("bo", &[] as &[&str]);
    v.add("dug", &["doggo"]);
    let r = score_captions(&items, Some(&v));
    // 1: found bo, dug (dug wrong) -> correct 1 of 2 found, 1/1 target.
    // 2: found bo, dug (alias)     -> correct 2 of 2, 2/2 targets.
    // 3: nothing found             -> 0/1 target, adds 0 to precision's denominator.
    assert_eq!((r.targets, r.found, r.correct), (4, 4, 3));
    assert_eq!(r.recall, Some(0.75));
    assert_eq!(r.precision, Some(0.75));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["per_image"][0]["wrong"], serde_json::json!(["dug"]));
    assert_eq!(json["per_image"][2]["precision"], serde_json::Value::Null);
}

#[test]
fn recognition_and_qa_files() {
    let f = file(
        r#"[
        {"image": "a.png", "question": "<image>\nIs <bo> in this image?", "concept": "bo",
         "type": "negative", "correct_answer": true, "answer": "Yes, <bo> is in the image."},
        {"image": "a.png", "question": "q", "concept": "dug", "type": "negative",
         "correct_answer": false, "answer": "I am not sure"}
    ]"#,
    );
    let r = score_recognition(&read_recognition_predictions(f.path()).unwrap());
    assert_eq!(r.positive_accuracy, Some(1.0));
    assert_eq!(r.negative_accuracy, Some(0.0));
    assert_eq!(r.weighted, Some(0.5));
    assert_eq!(r.unparsed, vec![1]);

    let f = file(
        r#"[{"answer": "A. Dog", "correct_answer": "A"}, {"answer": "B", "correct_answer": "A"}]"#,
    );
    let r = score_qa(&read_qa_predictions(f.path()).unwrap());
    assert_eq!((r.correct, r.total), (1, 2));
    assert_eq!(
        serde_json::to_value(&r).unwrap()["per_item"][0]["method"],
        "letter"
    );
}

/// The committed question sets about the example memory (`data/`): sizes, balance, and that
/// each question's facts come from the concept's info.
mod example_sets {
    use rap_eval::open::contains_phrase;
    use rap_eval::tasks::{open_items, qa_items, QaKind};
    use serde_json::Value;
    use std::path::Path;

    fn read(rel: &str) -> Value {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    /// The example memory's info by concept name, when the shared datasets are beside the repo.
    fn infos() -> Option<serde_json::Map<String, Value>> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/datasets/rap-example/example_database/database.json");
        let db: Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
        let dict = db["concept_dict"].as_object()?;
        Some(
            dict.values()
                .map(|c| (c["name"].as_str().unwrap().to_string(), c["info"].clone()))
                .collect(),
        )
    }

    #[test]
    fn two_option_qa_is_balanced_between_a_and_b() {
        let value = read("data/example-info-qa.json");
        let (items, kind) = qa_items(&value, "example-info-qa.json").unwrap();
        assert_eq!(kind, QaKind::TextOnly);
        assert!(items.len() >= 40, "{} questions", items.len());
        let answers: Vec<&str> = items
            .iter()
            .map(|i| i.row["correct_answer"].as_str().unwrap())
            .collect();
        let a = answers.iter().filter(|l| **l == "A").count();
        assert_eq!(a * 2, answers.len(), "{a} A of {}", answers.len());
        for i in &items {
            assert_eq!(i.row["options"].as_object().unwrap().len(), 2, "{}", i.key);
        }
        if let Some(infos) = infos() {
            for i in &items {
                assert!(infos.contains_key(&i.concepts[0]), "{}", i.key);
            }
        }
    }

    #[test]
    fn open_questions_expect_info_facts_and_contradict_none() {
        let value = read("data/example-open-questions.json");
        let items = open_items(&value, "example-open-questions.json").unwrap();
        assert!(items.len() >= 30, "{} questions", items.len());
        assert!(items
            .iter()
            .all(|i| i.prompt.contains('<') && !i.prompt.contains("sks")));
        let Some(infos) = infos() else { return };
        for i in &items {
            let info = infos[&i.concepts[0]].as_str().unwrap();
            let phrases = |f: &str| -> Vec<String> {
                i.row[f]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect()
            };
            assert!(
                phrases("expect").iter().any(|p| contains_phrase(info, p)),
                "{}: no expected fact is in the info",
                i.key
            );
            for p in phrases("contradict") {
                assert!(!contains_phrase(info, &p), "{}: the info says {p:?}", i.key);
            }
        }
    }
}
