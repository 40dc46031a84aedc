//! `rap eval caption|recognition|qa` (scoring saved predictions, and the runners that produce
//! them: resumable, reference formats), `rap eval retrieval --distractors` (the scaling
//! curve), on files built from the shared photos; `rap bench vectors` and the `rap bench`
//! suite at small sizes.

use crate::common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn write_json(rap: &Rap, name: &str, v: &Value) -> PathBuf {
    rap.write(name, serde_json::to_string_pretty(v).unwrap().as_bytes())
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

/// The scorers from the command line, on saved predictions with hand-computed figures.
#[test]
fn scores_saved_predictions_with_the_traps() {
    let rap = Rap::new();
    rap.ok(&[
        "concept",
        "add",
        "bo",
        "--image",
        s(&rap.write("a.png", &png(1, 16, 16))),
    ]);
    rap.ok(&[
        "concept",
        "add",
        "dug",
        "--alias",
        "doggo",
        "--image",
        s(&rap.write("b.png", &png(2, 16, 16))),
    ]);
    // Captions: <bo> named twice (once counted); the alias "doggo" is dug; an empty caption.
    let caps = write_json(
        &rap,
        "caps.json",
        &json!([
            [
                "1.jpg",
                ["<bo>"],
                "<bo> sleeps while BO's friend, a doggo, plays. <bo>!"
            ],
            ["2.jpg", ["<dug>", "bo"], "Dug on a sofa."],
            ["3.jpg", ["bo"], "A bowl of gumbo."]
        ]),
    );
    // found: {bo, dug} / {dug} / {} = 3 names, correct: bo / dug / - = 2; targets 4.
    let v = rap.json(&["eval", "caption", "--predictions", s(&caps)]);
    let sc = &v["scores"];
    assert_eq!(
        (
            sc["targets"].as_u64(),
            sc["found"].as_u64(),
            sc["correct"].as_u64()
        ),
        (Some(4), Some(3), Some(2))
    );
    assert!(
        close(&sc["recall"], 0.5) && close(&sc["precision"], 2.0 / 3.0),
        "{sc}"
    );
    assert!(close(
        &sc["f1"],
        2.0 * 0.5 * (2.0 / 3.0) / (0.5 + 2.0 / 3.0)
    ));
    // Without the memory's names, "doggo" is no known name: found {bo}, {dug}, {}.
    let v = rap.json(&[
        "eval",
        "caption",
        "--predictions",
        s(&caps),
        "--targets-only",
    ]);
    assert!(close(&v["scores"]["precision"], 1.0), "{v}");

    // Recognition: a row labelled negative whose answer is true is a positive.
    let rec = write_json(
        &rap,
        "rec.json",
        &json!([
            {"image": "x.png", "question": "q", "concept": "bo", "type": "positive", "correct_answer": true, "answer": "Yes."},
            {"image": "x.png", "question": "q", "concept": "bo", "type": "negative", "correct_answer": true, "answer": "yes, it is"},
            {"image": "x.png", "question": "q", "concept": "dug", "type": "negative", "correct_answer": false, "answer": "No"},
            {"image": "y.png", "question": "q", "concept": "dug", "type": "negative", "correct_answer": false, "answer": "Yes"},
            {"image": "y.png", "question": "q", "concept": "bo", "type": "negative", "correct_answer": false, "answer": "I cannot tell"}
        ]),
    );
    let v = rap.json(&["eval", "recognition", "--predictions", s(&rec)]);
    let sc = &v["scores"];
    assert!(close(&sc["positive_accuracy"], 1.0), "{sc}");
    assert!(close(&sc["negative_accuracy"], 1.0 / 3.0), "{sc}");
    assert!(close(&sc["weighted"], 2.0 / 3.0), "{sc}");
    assert_eq!(sc["type_mismatches"], 1);
    assert_eq!(sc["unparsed"], json!([4]));

    // QA: "A." and "A. Dog" both answer A; "A dog" is a phrase; exact match after normalising.
    let qa = write_json(
        &rap,
        "qa.json",
        &json!([
            {"answer": "A.", "correct_answer": "A"},
            {"answer": "A. Dog", "correct_answer": "A"},
            {"answer": "A dog", "correct_answer": "A"},
            {"answer": "The  Shiba-Inu!", "correct_answer": "shibainu"}
        ]),
    );
    let v = rap.json(&["eval", "qa", "--predictions", s(&qa)]);
    assert_eq!(v["scores"]["correct"], 3);
    assert!(close(&v["scores"]["accuracy"], 0.75));
    let text = rap.ok(&["eval", "qa", "--predictions", s(&qa)]);
    assert!(
        text.contains("4 questions, 3 correct: accuracy 0.7500"),
        "{text}"
    );

    // Errors: one line, naming the problem.
    let e = rap.fails(&["eval", "qa"]);
    assert!(e.contains("--predictions") && e.contains("--file"), "{e}");
    let e = rap.fails(&["eval", "recognition", "--predictions", s(&qa)]);
    assert!(e.contains("row 0") && e.contains("correct_answer"), "{e}");
    let e = rap.fails(&["eval", "caption", "--predictions", "no/such.json"]);
    assert!(e.contains("no/such.json"), "{e}");
}

/// dreambooth-dev subjects remembered from their first photo, with the default encoder.
fn memory_with_subjects(subjects: &[&str]) -> Rap {
    let rap = Rap::with_default_encoder();
    for sub in subjects {
        let photo = shared(&format!("dreambooth-dev/{sub}/00.jpg"));
        rap.ok(&["concept", "add", sub, "--image", s(&photo)]);
    }
    rap
}

/// A recognition file in the reference's format: each photo asked about each subject.
fn recognition_file(rap: &Rap, photos: &[(&str, &str)], subjects: &[&str]) -> PathBuf {
    let mut rows = Vec::new();
    for (sub, photo) in photos {
        for c in subjects {
            rows.push(json!({
                "image": format!("./{sub}/{photo}"),
                "question": format!("<image>\nIs <{c}> in this image? Answer with a single word or phrase."),
                "concept": c,
                "type": if c == sub { "positive" } else { "negative" },
                "correct_answer": c == sub,
            }));
        }
    }
    write_json(rap, "recognition_test.json", &Value::Array(rows))
}

fn journal_lines(p: &Path) -> usize {
    let mut j = p.as_os_str().to_owned();
    j.push(".journal");
    std::fs::read_to_string(PathBuf::from(j))
        .map(|t| t.lines().filter(|l| l.ends_with('}')).count())
        .unwrap_or(0)
}

/// The retriever-only recognition runner: answers follow the threshold, the file is in the
/// reference format plus answers, and a run killed half-way resumes without asking again.
#[test]
fn retriever_only_recognition_resumes_after_a_kill() {
    let subjects = ["dog", "cat"];
    let rap = memory_with_subjects(&subjects);
    let photos = [
        ("dog", "01.jpg"),
        ("cat", "01.jpg"),
        ("dog", "02.jpg"),
        ("cat", "02.jpg"),
    ];
    let file = recognition_file(&rap, &photos, &subjects);
    let root = shared("dreambooth-dev");
    let out = rap.dir.path().join("preds").join("rec.json");
    let base = [
        "eval",
        "recognition",
        "--retriever-only",
        "--scales",
        "none",
        "--file",
        s(&file),
        "--images-root",
        s(&root),
        "--predictions",
        s(&out),
    ];

    // --limit: only the first 2 rows (one photo), then an interrupted run.
    let mut args = base.to_vec();
    args.extend(["--limit", "2"]);
    let v = rap.json(&args);
    assert_eq!(
        (v["run"]["asked"].as_u64(), v["run"]["items"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(read_json(&out).as_array().unwrap().len(), 2);

    let mut child = rap.command().args(base).spawn().unwrap();
    let started = std::time::Instant::now();
    while journal_lines(&out) < 2 && started.elapsed().as_secs() < 300 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let journaled = journal_lines(&out);
    assert!(
        (2..=6).contains(&journaled),
        "killed after {journaled} new rows"
    );

    let v = rap.json(&base);
    let run = &v["run"];
    assert_eq!(run["items"], 8);
    assert_eq!(
        run["already_answered"].as_u64(),
        Some(2 + journaled as u64),
        "{v}"
    );
    assert_eq!(run["asked"].as_u64(), Some(8 - 2 - journaled as u64), "{v}");
    assert_eq!(
        journal_lines(&out),
        0,
        "the journal is removed when the file is written"
    );

    // The predictions: the reference rows in file order plus answer, score and run.
    let rows = read_json(&out);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 8);
    let input = read_json(&file);
    for (i, (row, src)) in rows.iter().zip(input.as_array().unwrap()).enumerate() {
        assert_eq!(row["index"], i);
        for field in ["image", "question", "concept", "type", "correct_answer"] {
            assert_eq!(row[field], src[field], "row {i} {field}");
        }
        let score = row["score"].as_f64().unwrap_or(f64::NEG_INFINITY);
        let want = if score >= 0.5 { "Yes" } else { "No" };
        assert_eq!(row["answer"], want, "row {i}: score {score}");
    }
    // The scores are those of the written answers.
    let (mut pos, mut pos_ok, mut neg, mut neg_ok) = (0, 0, 0, 0);
    for row in rows {
        let yes = row["answer"] == "Yes";
        if row["correct_answer"] == true {
            pos += 1;
            pos_ok += yes as usize;
        } else {
            neg += 1;
            neg_ok += !yes as usize;
        }
    }
    let sc = &v["scores"];
    assert!(
        close(&sc["positive_accuracy"], pos_ok as f64 / pos as f64),
        "{sc}"
    );
    assert!(
        close(&sc["negative_accuracy"], neg_ok as f64 / neg as f64),
        "{sc}"
    );
    // Same photos: the same subjects are told apart at the default threshold.
    assert!(sc["weighted"].as_f64().unwrap() >= 0.75, "{sc}");

    // A complete file is only scored: nothing asked.
    let v = rap.json(&base);
    assert_eq!(v["run"]["asked"], 0);

    // Bad input: missing images, unknown concepts.
    let e = rap.fails(&[
        "eval",
        "recognition",
        "--retriever-only",
        "--file",
        s(&file),
        "--predictions",
        s(&out),
    ]);
    assert!(
        e.contains("images are missing") && e.contains("--images-root"),
        "{e}"
    );
    let other = recognition_file(&rap, &[("dog", "01.jpg")], &["dog", "clock"]);
    let e = rap.fails(&[
        "eval",
        "recognition",
        "--retriever-only",
        "--file",
        s(&other),
        "--images-root",
        s(&root),
    ]);
    assert!(e.contains("no concept clock"), "{e}");
}

/// The model runners with the real SmolLM2: text-only QA in the Yo'LLaVA format and captions,
/// resumed from a partial predictions file without asking its items again.
#[test]
fn model_runners_write_reference_predictions_and_resume() {
    let models = Path::new(env!("CARGO_TARGET_TMPDIR")).join("models-smollm2");
    let install = Rap::new()
        .command()
        .env("RAP_MODELS_DIR", &models)
        .args(["models", "install", "smollm2-135m-instruct"])
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let mut rap = Rap::new();
    rap.models_dir = models;
    for (name, info) in [
        ("dog", "<dog> is a corgi."),
        ("cat", "<cat> is a grey tabby."),
    ] {
        let photo = shared(&format!("dreambooth-dev/{name}/00.jpg"));
        rap.ok(&["concept", "add", name, "--image", s(&photo), "--info", info]);
    }

    // Text-only QA: the first item, then its answer replaced by one the model would never give
    // (as if an earlier run had written it), then the rest.
    let qa = write_json(
        &rap,
        "yollava-text-only-qa.json",
        &json!({
            "dog": {"0": {"question": "Is sks a dog or a cat?", "option": {"A": "Dog", "B": "Cat"}, "correct_answer": "A"},
                    "1": {"question": "What is sks's breed?", "option": {"A": "Corgi", "B": "Shiba inu"}, "correct_answer": "A"}},
            "cat": {"0": {"question": "Is sks a dog or a cat?", "option": {"A": "Dog", "B": "Cat"}, "correct_answer": "B"}}
        }),
    );
    let out = rap.dir.path().join("qa-preds.json");
    let args = [
        "eval",
        "qa",
        "--file",
        s(&qa),
        "--predictions",
        s(&out),
        "--max-tokens",
        "6",
    ];
    let mut first = args.to_vec();
    first.extend(["--limit", "1"]);
    let v = rap.json(&first);
    assert_eq!(v["run"]["asked"], 1);
    let mut seeded = read_json(&out);
    seeded[0]["answer"] = json!("SEEDED, not asked again");
    std::fs::write(&out, seeded.to_string()).unwrap();

    let v = rap.json(&args);
    assert_eq!(v["run"]["qa_kind"], "text-only");
    assert_eq!(
        (
            v["run"]["asked"].as_u64(),
            v["run"]["already_answered"].as_u64()
        ),
        (Some(2), Some(1)),
        "{v}"
    );
    let rows = read_json(&out);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["answer"], "SEEDED, not asked again");
    assert_eq!(rows[0]["id"], seeded[0]["id"]);
    assert_eq!(
        v["scores"]["per_item"][0]["answer"],
        "SEEDED, not asked again"
    );
    for r in rows {
        assert!(
            r["answer"].is_string() && r["options"].is_object() && r["correct_answer"].is_string()
        );
        assert_eq!(r["run"], rows[0]["run"]);
        // The question was asked about the concept: retrieval found it by name.
        assert_eq!(r["concepts"][0], r["concept"], "{r}");
    }

    // The majority-letter baseline beside the accuracy: "A" is right for 2 of the 3.
    assert_eq!(v["scores"]["majority_letter"], "A");
    let baseline = v["scores"]["majority_baseline"].as_f64().unwrap();
    assert!((baseline - 2.0 / 3.0).abs() < 1e-9, "{v}");

    // Circular: each question once per rotation of its two options (its own predictions file),
    // right only when right both times.
    let circular_out = rap.dir.path().join("qa-circular.json");
    let v = rap.json(&[
        "eval",
        "qa",
        "--file",
        s(&qa),
        "--predictions",
        s(&circular_out),
        "--max-tokens",
        "6",
        "--circular",
    ]);
    assert_eq!(v["run"]["items"], 6, "{v}");
    let rows = read_json(&circular_out);
    let rows = rows.as_array().unwrap();
    let rotated = rows
        .iter()
        .find(|r| r["concept"] == "cat" && r["rotation"] == 1)
        .unwrap();
    assert_eq!(rotated["options"], json!({"A": "Cat", "B": "Dog"}));
    assert_eq!(rotated["correct_answer"], "A");
    let c = &v["scores"]["circular"];
    assert_eq!(c["questions"], 3, "{v}");
    // A question is right circularly only if both of its rows are.
    let both_right = ["dog|0", "dog|1", "cat|0"]
        .iter()
        .filter(|q| {
            let (concept, id) = q.split_once('|').unwrap();
            v["scores"]["per_item"]
                .as_array()
                .unwrap()
                .iter()
                .zip(rows)
                .filter(|(_, r)| r["concept"] == concept && r["id"] == id)
                .all(|(item, _)| item["correct"] == true)
        })
        .count();
    assert_eq!(c["correct"], both_right, "{v}");

    // Another model's answers are not mixed in.
    let e = rap.fails(&[
        "eval",
        "qa",
        "--file",
        s(&qa),
        "--predictions",
        s(&out),
        "--skip-retrieval",
    ]);
    assert!(e.contains("another run"), "{e}");

    // Captions with perfect retrieval: rows are [image, [targets], caption].
    let caps = write_json(
        &rap,
        "captions.json",
        &json!({"./dog/01.jpg": ["<dog>"], "cat/01.jpg": ["cat"]}),
    );
    let cap_out = rap.dir.path().join("cap-preds.json");
    let v = rap.json(&[
        "eval",
        "caption",
        "--file",
        s(&caps),
        "--images-root",
        s(&shared("dreambooth-dev")),
        "--skip-retrieval",
        "--max-tokens",
        "8",
        "--predictions",
        s(&cap_out),
        "--limit",
        "1",
    ]);
    assert_eq!(v["run"]["asked"], 1);
    let rows = read_json(&cap_out);
    let row = rows[0].as_array().unwrap();
    assert_eq!(row.len(), 3);
    assert_eq!(row[0], "./dog/01.jpg");
    assert_eq!(row[1], json!(["<dog>"]));
    assert!(row[2].is_string());
    assert_eq!(v["scores"]["images"], 1);
}

/// The scaling curve on three dreambooth-dev subjects: distractors from the other subjects'
/// photos, the points, the JSON and the SVG.
#[test]
fn retrieval_scaling_curve_with_distractors() {
    let rap = Rap::with_default_encoder();
    let dataset = rap.dir.path().join("subjects");
    for sub in ["dog", "cat", "clock"] {
        std::fs::create_dir_all(dataset.join(sub)).unwrap();
        for photo in ["00.jpg", "01.jpg", "02.jpg"] {
            std::fs::copy(
                shared(&format!("dreambooth-dev/{sub}/{photo}")),
                dataset.join(sub).join(photo),
            )
            .unwrap();
        }
    }
    let curve = rap.dir.path().join("curve.json");
    let plot = rap.dir.path().join("curve.svg");
    let v = rap.json(&[
        "eval",
        "retrieval",
        "--dataset",
        s(&dataset),
        "--scales",
        "none",
        "--distractors",
        "4",
        "--curve",
        s(&curve),
        "--plot",
        s(&plot),
    ]);
    assert_eq!(v["subjects"], 3);
    assert_eq!(v["queries"], 6);
    assert_eq!(v["pool"], 6, "the 6 non-reference photos");
    let points = v["points"].as_array().unwrap();
    let sizes: Vec<u64> = points
        .iter()
        .map(|p| p["concepts"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![3, 4, 5, 7]);
    for p in points {
        let (r1, r5) = (
            p["recall_at_1"].as_f64().unwrap(),
            p["recall_at_5"].as_f64().unwrap(),
        );
        assert!((0.0..=1.0).contains(&r1) && r1 <= r5, "{p}");
    }
    // Three very different subjects, one reference each: all found in the top 5.
    assert_eq!(points[0]["recall_at_5"], 1.0);
    assert_eq!(read_json(&curve)["points"], v["points"]);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("recall@5") && svg.contains("concepts in memory")
    );

    let e = rap.fails(&[
        "eval",
        "retrieval",
        "--dataset",
        s(&dataset),
        "--distractors",
        "7",
    ]);
    assert!(e.contains("only 6 distractor photos"), "{e}");
}

/// `rap bench vectors` on a small synthetic index: every figure there, exact search is its own
/// ground truth, the dumped vectors are what was measured; the suite lists the figures with
/// units and the machine, and reports a benchmark it was told to skip as absent.
#[test]
fn bench_vectors_and_the_suite() {
    let rap = Rap::new();
    let dump = rap.dir.path().join("dump");
    let v = rap.json(&[
        "bench",
        "vectors",
        "--sizes",
        "300,600",
        "--dim",
        "32",
        "--queries",
        "20",
        "--ef",
        "8,64",
        "--dump",
        s(&dump),
    ]);
    assert_eq!(v["dim"], 32);
    let sizes = v["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 2);
    for (size, n) in sizes.iter().zip([300u64, 600]) {
        assert_eq!(size["keys"], n);
        assert_eq!(size["memory_uses"], "exact");
        assert_eq!(size["exact"]["recall_at_10"], 1.0);
        assert!(size["exact"]["qps"].as_f64().unwrap() > 0.0);
        let sweep = size["hnsw"]["search"].as_array().unwrap();
        assert_eq!(sweep.len(), 2);
        for e in sweep {
            let r = e["recall_at_10"].as_f64().unwrap();
            assert!(
                (0.0..=1.0).contains(&r)
                    && e["p99_ms"].as_f64().unwrap() >= e["p50_ms"].as_f64().unwrap(),
                "{e}"
            );
        }
        // A wide search on a small graph finds (nearly) the exact neighbours.
        assert!(sweep[1]["recall_at_10"].as_f64().unwrap() >= 0.9, "{size}");
        let keys = std::fs::metadata(dump.join(format!("keys-{n}.f32")))
            .unwrap()
            .len();
        assert_eq!(keys, n * 32 * 4);
        let queries = std::fs::metadata(dump.join(format!("queries-{n}.f32")))
            .unwrap()
            .len();
        assert_eq!(queries, 20 * 32 * 4);
    }
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);

    let v = rap.json(&[
        "bench",
        "--sizes",
        "200",
        "--skip",
        "retrieval,memory,generate",
    ]);
    let figures = v["figures"].as_array().unwrap();
    assert!(!figures.is_empty());
    for f in figures {
        assert!(
            f["value"].is_number() && !f["unit"].as_str().unwrap().is_empty(),
            "{f}"
        );
    }
    assert!(figures
        .iter()
        .any(|f| f["unit"] == "queries/s"
            && f["figure"].as_str().unwrap().contains("200 keys x 1280")));
    assert!(v["reports"]["vectors"]["sizes"][0]["keys"] == 200);
    assert!(v["reports"].get("retrieval").is_none());
    assert!(v["machine"]["memory_gib"].is_number());
    let e = rap.fails(&["bench", "--skip", "everything"]);
    assert!(e.contains("--skip everything"), "{e}");
}
