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
