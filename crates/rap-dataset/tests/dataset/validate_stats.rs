//! `validate` finds each kind of fault in a built data set (and none in a clean one); `stats`
//! agrees with what the build reported.

use crate::common;

use common::*;
use rap_dataset::{build, validate, BuildOptions, FaultKind, Input, ValidateOptions, Writer};
use serde_json::{json, Value};
use std::path::Path;

fn built(dir: &Path) -> (std::path::PathBuf, rap_dataset::BuildReport) {
    let out = dir.join("out");
    let input = Input::Coco {
        annotations: coco_fixture(),
        images: shared("dreambooth-dev"),
    };
    let mut writer = Writer::new(None);
    let opts = BuildOptions {
        seed: 5,
        ..BuildOptions::default()
    };
    let report = build(&input, &out, &opts, &mut writer, None, &mut |_, _, _| {}).unwrap();
    (out, report)
}

fn check(file: &Path) -> rap_dataset::ValidationReport {
    validate(file, &ValidateOptions::default(), &mut |_, _| {}).unwrap()
}

#[test]
fn validate_catches_each_kind_of_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = built(tmp.path());
    let clean = check(&out.join("train.json"));
    assert!(clean.ok, "{:?}", clean.faults);
    assert_eq!(clean.samples, report.samples);
    assert_eq!(
        clean.by_type["grounding"].samples,
        report.by_type["grounding"]
    );
    assert!(clean.files_checked >= report.crops);

    let values: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("train.json")).unwrap()).unwrap();
    let find = |kind: &str, answer: Option<&str>| {
        values
            .iter()
            .position(|v| {
                v["type"] == kind && answer.is_none_or(|a| v["conversations"][1]["value"] == a)
            })
            .unwrap()
    };
    let rec_yes = find("recognition", Some("Yes"));
    let rec_no = find("recognition", Some("No"));
    let grounding = find("grounding", None);
    let caption = find("caption", None);

    // A spare copy of one crop to break without touching the others.
    let crop_of = |i: usize| -> String {
        values[i]["extra"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone()
    };
    std::fs::copy(out.join(crop_of(caption)), out.join("crops/broken.jpg")).unwrap();
    std::fs::write(out.join("crops/broken.jpg"), b"\xff\xd8\xff garbage").unwrap();

    type Mutation = Box<dyn Fn(&mut Vec<Value>)>;
    let extra_entry =
        |path: &str| json!({path: {"name": "bo", "info": "<bo> is a dog.", "category": "dog"}});
    let cases: Vec<(FaultKind, usize, Mutation)> = vec![
        (
            FaultKind::DuplicateId,
            1,
            Box::new(|v| v[1]["id"] = v[0]["id"].clone()),
        ),
        (
            FaultKind::MissingFile,
            caption,
            Box::new(move |v| v[caption]["extra"] = extra_entry("crops/nowhere.jpg")),
        ),
        (
            FaultKind::BadImage,
            caption,
            Box::new(move |v| v[caption]["extra"] = extra_entry("crops/broken.jpg")),
        ),
        (
            FaultKind::PathEscapes,
            caption,
            Box::new(move |v| v[caption]["image"] = json!("../../etc/passwd")),
        ),
        (
            FaultKind::PathEscapes,
            caption,
            Box::new(move |v| v[caption]["image"] = json!("/etc/passwd")),
        ),
        (
            FaultKind::UnknownName,
            caption,
            Box::new(move |v| {
                v[caption]["conversations"][1]["value"] = json!("A photo of <nobody> on a chair.")
            }),
        ),
        (
            FaultKind::UnknownName,
            rec_yes,
            Box::new(move |v| {
                // Asking about a concept not supplied is only a deliberate negative when answered no.
                v[rec_yes]["conversations"][0]["value"] =
                    json!("<image>\nIs <nobody> in this image?")
            }),
        ),
        (
            FaultKind::BoxOutOfRange,
            grounding,
            Box::new(move |v| {
                v[grounding]["conversations"][1]["value"] = json!("[0.10, 0.20, 1.30, 0.90]")
            }),
        ),
        (
            FaultKind::BoxOutOfRange,
            grounding,
            Box::new(move |v| {
                v[grounding]["conversations"][1]["value"] = json!("[0.60, 0.20, 0.30, 0.90]")
            }),
        ),
        (
            FaultKind::MissingBox,
            grounding,
            Box::new(move |v| v[grounding]["conversations"][1]["value"] = json!("On the left.")),
        ),
        (
            FaultKind::ImagePlaceholder,
            caption,
            Box::new(move |v| {
                v[caption]["conversations"][1]["value"] = json!("A photo <image> of nothing.")
            }),
        ),
        (
            FaultKind::ImagePlaceholder,
            caption,
            Box::new(move |v| {
                v[caption].as_object_mut().unwrap().remove("image");
            }),
        ),
        (
            FaultKind::TemplateMarker,
            caption,
            Box::new(move |v| {
                v[caption]["conversations"][1]["value"] = json!("Nice.</s>USER: and now?")
            }),
        ),
        (
            FaultKind::Schema,
            caption,
            Box::new(move |v| {
                v[caption].as_object_mut().unwrap().remove("conversations");
            }),
        ),
        (
            FaultKind::Schema,
            caption,
            Box::new(move |v| v[caption]["conversations"][0]["from"] = json!("gpt")),
        ),
        (
            FaultKind::Schema,
            caption,
            Box::new(move |v| v[caption]["type"] = json!("basic")),
        ),
        (
            FaultKind::Schema,
            caption,
            Box::new(move |v| v[caption]["extra"] = json!({"crops/x.jpg": {"name": "bo"}})),
        ),
        (
            FaultKind::Schema,
            caption,
            Box::new(move |v| v[caption]["bogus"] = json!(1)),
        ),
        (
            FaultKind::Schema,
            caption,
            Box::new(move |v| v[caption]["conversations"][1]["value"] = json!(" ")),
        ),
    ];
    let bad = out.join("bad.json");
    for (n, (kind, index, mutate)) in cases.iter().enumerate() {
        let mut v = values.clone();
        mutate(&mut v);
        std::fs::write(&bad, serde_json::to_string(&v).unwrap()).unwrap();
        let r = check(&bad);
        assert!(!r.ok, "case {n} ({kind:?}) not caught");
        assert!(
            r.faults.iter().all(|f| f.index == *index),
            "case {n}: faults elsewhere: {:?}",
            r.faults
        );
        assert!(
            r.faults.iter().any(|f| f.kind == *kind),
            "case {n}: {kind:?} expected, got {:?}",
            r.faults
        );
        assert_eq!(r.faulty_samples, 1);
    }

    // A deliberate negative may ask about a concept it does not supply.
    let mut v = values.clone();
    v[rec_no]["conversations"][0]["value"] = json!("<image>\nIs <nobody> in this image?");
    std::fs::write(&bad, serde_json::to_string(&v).unwrap()).unwrap();
    assert!(check(&bad).ok);

    // Files that are not training files are errors, not reports.
    std::fs::write(&bad, "{\"id\": 1").unwrap();
    let e = validate(&bad, &ValidateOptions::default(), &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.json") && e.contains("not JSON"), "{e}");
    std::fs::write(&bad, "{\"id\": 1}").unwrap();
    let e = validate(&bad, &ValidateOptions::default(), &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("JSON array"), "{e}");
    let e = validate(
        &out.join("missing.json"),
        &ValidateOptions::default(),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("missing.json"), "{e}");
}

#[test]
fn stats_agree_with_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, report) = built(tmp.path());
    let s = rap_dataset::stats(&out.join("train.json")).unwrap();
    assert_eq!(s.samples, report.samples);
    assert_eq!(s.unreadable, 0);
    for (k, v) in &report.by_type {
        assert_eq!(s.by_type.get(k).copied().unwrap_or(0), *v, "{k}");
    }
    // Without a generator every supplied concept but noise is named: the estimate is exact.
    assert_eq!(s.noise_rate, report.noise_rate);
    assert_eq!(s.noise_concepts, report.noise_concepts);
    assert_eq!(s.distinct_concepts, report.concepts);
    assert_eq!(
        s.concepts_per_sample.values().sum::<usize>(),
        report.samples
    );
    assert!(s.concepts_per_sample.keys().all(|&k| (1..=2).contains(&k)));
    assert_eq!(s.answers, report.samples);
    assert_eq!(
        s.answer_words.iter().map(|b| b.count).sum::<usize>(),
        s.answers
    );
    // recognition answers are one word
    assert!(s.answer_words[0].count >= report.by_type["recognition"]);
    let svg = rap_dataset::svg(&s);
    assert!(svg.contains("Samples by type") && svg.contains("Answer length (words)"));
    assert!(svg.contains(&format!("{} samples", report.samples)));
}
