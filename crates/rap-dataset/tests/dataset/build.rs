//! Building data sets from dreambooth-dev (photo folders) and from a small committed COCO file
//! over some of its photos: stability for a seed, chosen samples' exact JSON, noise, boxes,
//! crops, generator texts and their checks, and failures that leave nothing behind.

use crate::common;

use common::*;
use rap_core::{
    FinishReason, Generation, GenerationParams, Generator, GeneratorInfo, Message, Part,
};
use rap_dataset::text::mentioned_names;
use rap_dataset::{
    build, from_json, BuildOptions, BuildReport, Input, SampleType, TextGenerator, Writer,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn run(input: &Input, out: &Path, opts: &BuildOptions) -> BuildReport {
    let mut writer = Writer::new(None);
    build(input, out, opts, &mut writer, None, &mut |_, _, _| {}).unwrap()
}

fn samples(out: &Path) -> Vec<rap_dataset::Sample> {
    from_json(&std::fs::read_to_string(out.join("train.json")).unwrap()).unwrap()
}

fn seeded(seed: u64) -> BuildOptions {
    BuildOptions {
        seed,
        ..BuildOptions::default()
    }
}

fn photo_count(subjects: &[&str]) -> usize {
    subjects
        .iter()
        .map(|s| {
            std::fs::read_dir(shared("dreambooth-dev").join(s))
                .unwrap()
                .filter(|e| {
                    let p = e.as_ref().unwrap().path();
                    p.extension().is_some_and(|x| x == "jpg")
                })
                .count()
        })
        .sum()
}

#[test]
fn folders_build_is_byte_for_byte_stable_for_a_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = subset(tmp.path(), SUBJECTS);
    let input = Input::Folders(photos);
    let a = run(&input, &tmp.path().join("a"), &seeded(7));
    run(&input, &tmp.path().join("b"), &seeded(7));
    let ta = tree(&tmp.path().join("a"));
    assert_eq!(ta, tree(&tmp.path().join("b")), "same seed, same bytes");
    for f in ["train.json", "train_hf.jsonl", "build.json"] {
        assert!(ta.contains_key(f), "{f}");
    }
    run(&input, &tmp.path().join("c"), &seeded(8));
    let tc = tree(&tmp.path().join("c"));
    assert_ne!(
        ta["train.json"], tc["train.json"],
        "another seed, another data set"
    );

    // What was made: one concept per subject, every other photo a scene, one collage each.
    let n = SUBJECTS.len();
    assert_eq!(a.concepts, n);
    assert_eq!(a.collages, n);
    assert_eq!(a.scenes, photo_count(SUBJECTS) - n + n);
    assert_eq!(a.crops, 2 * n, "a crop and one augmented view per concept");
    let all = samples(&tmp.path().join("a"));
    assert_eq!(all.len(), a.samples);
    let count = |t: SampleType| all.iter().filter(|s| s.kind == t).count();
    for t in SampleType::ALL {
        assert!(count(t) > 0, "{t} samples");
        assert_eq!(a.by_type[t.as_str()], count(t));
    }
    // Photos name one concept, collages two: captions and descriptions one per scene.
    assert_eq!(count(SampleType::Caption), a.scenes);
    assert_eq!(count(SampleType::Description), a.scenes);
    assert_eq!(count(SampleType::Qa), a.scenes);
    assert_eq!(count(SampleType::Grounding), 2 * a.collages);
    // Balanced recognition.
    let answers = |x: &str| {
        all.iter()
            .filter(|s| s.kind == SampleType::Recognition && s.answers().next() == Some(x))
            .count()
    };
    assert_eq!(answers("Yes"), answers("No"));
    assert_eq!(answers("Yes"), (a.scenes - a.collages) + 2 * a.collages);
    // Ids 0..n in order; every file the samples name was written.
    for (i, s) in all.iter().enumerate() {
        assert_eq!(s.id, rap_dataset::SampleId::Int(i as u64));
        assert!(ta.contains_key(s.image.as_deref().unwrap()));
        for (crop, _) in s.extra.iter() {
            assert!(ta.contains_key(crop.as_str()), "{crop}");
        }
        assert!(s.extra.len() <= 2);
    }
    // Scene photos are copied byte for byte.
    let dog = all
        .iter()
        .find_map(|s| s.image.as_deref().filter(|i| i.starts_with("images/dog/")))
        .unwrap();
    let original = std::fs::read(shared("dreambooth-dev").join(&dog["images/".len()..])).unwrap();
    assert_eq!(ta[dog], original);
}

#[test]
fn chosen_samples_have_exact_json() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = subset(tmp.path(), SUBJECTS);
    let out = tmp.path().join("out");
    run(&Input::Folders(photos), &out, &seeded(7));
    let all = samples(&out);
    let json = |i: usize| serde_json::to_string_pretty(&all[i]).unwrap();
    let first_grounding = all
        .iter()
        .position(|s| s.kind == SampleType::Grounding)
        .unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let cases = [
        ("folders_seed7_sample0.json", json(0)),
        ("folders_seed7_first_grounding.json", json(first_grounding)),
    ];
    for (file, got) in cases {
        // RAP_DATASET_BLESS=1 rewrites the expected files (review the diff before committing).
        if std::env::var_os("RAP_DATASET_BLESS").is_some() {
            std::fs::write(fixtures.join(file), format!("{got}\n")).unwrap();
        }
        let expected = std::fs::read_to_string(fixtures.join(file)).unwrap();
        assert_eq!(got, expected.trim_end(), "{file}");
    }
}

/// The concept name of each subject, from the crop files (`crops/NNNN_name.jpg`, NNNN being the
/// subject's place in sorted order).
fn subject_names(all: &[rap_dataset::Sample], subjects: &[&str]) -> BTreeMap<String, String> {
    let mut sorted: Vec<&str> = subjects.to_vec();
    sorted.sort();
    let mut out = BTreeMap::new();
    for s in all {
        for (crop, c) in s.extra.iter() {
            let index: usize = crop["crops/".len().."crops/".len() + 4].parse().unwrap();
            out.insert(sorted[index].to_string(), c.name.clone());
        }
    }
    out
}

#[test]
fn noise_concepts_are_not_in_the_image_and_never_in_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = subset(tmp.path(), SUBJECTS);
    let input = Input::Folders(photos);
    let opts = BuildOptions {
        noise_rate: 0.8,
        noise_max: 2,
        max_concepts: 3,
        ..seeded(11)
    };
    let out = tmp.path().join("out");
    let report = run(&input, &out, &opts);
    let all = samples(&out);
    let names = subject_names(&all, SUBJECTS);
    assert_eq!(names.len(), SUBJECTS.len());
    assert_eq!(report.sample_noise.len(), all.len());
    let mut with_noise = 0;
    for (s, noise) in all.iter().zip(&report.sample_noise) {
        let supplied: BTreeSet<&str> = s.extra.names().collect();
        assert!(noise.len() <= 2 && s.extra.len() <= 3);
        if !noise.is_empty() {
            with_noise += 1;
        }
        let img = s.image.as_deref().unwrap();
        for n in noise {
            assert!(supplied.contains(n.as_str()), "noise is supplied in extra");
            // Not in the photo: a photo of a subject never gets that subject as noise.
            if let Some(rest) = img.strip_prefix("images/") {
                if let Some((subject, _)) = rest.split_once('/') {
                    if subject != "collages" {
                        assert_ne!(&names[subject], n, "{img}");
                    }
                }
            }
            for a in s.answers() {
                assert!(
                    !mentioned_names(a).contains(n),
                    "noise <{n}> in the answer {a:?}"
                );
            }
        }
        // Noise is never the recognition target either.
        if s.kind == SampleType::Recognition {
            let asked = mentioned_names(s.question());
            assert!(asked.iter().all(|a| !noise.contains(a)));
        }
    }
    assert_eq!(report.noise_rate, with_noise as f64 / all.len() as f64);
    assert!(report.noise_rate > 0.5, "{}", report.noise_rate);

    // No noise at rate 0.
    let quiet = run(
        &input,
        &tmp.path().join("quiet"),
        &BuildOptions {
            noise_rate: 0.0,
            ..seeded(11)
        },
    );
    assert_eq!(quiet.noise_concepts, 0);
    assert!(quiet.sample_noise.iter().all(|n| n.is_empty()));
}

#[test]
fn coco_annotations_give_boxes_crops_and_tracks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let input = Input::Coco {
        annotations: coco_fixture(),
        images: shared("dreambooth-dev"),
    };
    let report = run(&input, &out, &seeded(3));
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(coco_fixture()).unwrap()).unwrap();
    let anns = fixture["annotations"].as_array().unwrap();
    let images = fixture["images"].as_array().unwrap();
    let small = anns
        .iter()
        .filter(|a| {
            a["bbox"][2]
                .as_f64()
                .unwrap()
                .min(a["bbox"][3].as_f64().unwrap())
                < 32.0
        })
        .count();
    let crowd = anns.iter().filter(|a| a["iscrowd"] == 1).count();
    assert_eq!(report.skipped.get("too small").copied().unwrap_or(0), small);
    assert_eq!(report.skipped.get("crowd").copied().unwrap_or(0), crowd);
    let tracks: BTreeSet<u64> = anns.iter().filter_map(|a| a["track_id"].as_u64()).collect();
    let untracked = anns
        .iter()
        .filter(|a| a["track_id"].is_null() && a["iscrowd"] != 1)
        .filter(|a| {
            a["bbox"][2]
                .as_f64()
                .unwrap()
                .min(a["bbox"][3].as_f64().unwrap())
                >= 32.0
        })
        .count();
    assert_eq!(report.concepts, tracks.len() + untracked);
    assert_eq!(report.collages, 0);
    let all = samples(&out);

    // Every usable annotation's box is asked for, normalised with two decimals.
    let mut expected_boxes = BTreeSet::new();
    for a in anns {
        let b: Vec<f64> = a["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        if a["iscrowd"] == 1 || b[2].min(b[3]) < 32.0 {
            continue;
        }
        let img = images.iter().find(|i| i["id"] == a["image_id"]).unwrap();
        let (w, h) = (
            img["width"].as_f64().unwrap(),
            img["height"].as_f64().unwrap(),
        );
        let path = format!("images/{}", img["file_name"].as_str().unwrap());
        let text = format!(
            "[{:.2}, {:.2}, {:.2}, {:.2}]",
            b[0] / w,
            b[1] / h,
            (b[0] + b[2]) / w,
            (b[1] + b[3]) / h
        );
        expected_boxes.insert((path, text));
    }
    let got: BTreeSet<(String, String)> = all
        .iter()
        .filter(|s| s.kind == SampleType::Grounding)
        .map(|s| {
            (
                s.image.clone().unwrap(),
                s.answers().next().unwrap().to_string(),
            )
        })
        .collect();
    // Images with more than max_concepts objects name only some of them.
    assert!(
        got.is_subset(&expected_boxes),
        "{got:?}\n{expected_boxes:?}"
    );
    assert!(got.len() >= expected_boxes.len() - 1);

    // A crop is its box plus a 10% margin, clamped to the image.
    let first = anns
        .iter()
        .find(|a| a["iscrowd"] != 1 && a["track_id"].is_null())
        .unwrap();
    let b: Vec<f64> = first["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let img = images
        .iter()
        .find(|i| i["id"] == first["image_id"])
        .unwrap();
    let (w, h) = (
        img["width"].as_f64().unwrap(),
        img["height"].as_f64().unwrap(),
    );
    let x1 = (b[0] - 0.1 * b[2]).max(0.0).floor();
    let y1 = (b[1] - 0.1 * b[3]).max(0.0).floor();
    let x2 = (b[0] + 1.1 * b[2]).min(w).ceil();
    let y2 = (b[1] + 1.1 * b[3]).min(h).ceil();
    let (cw, ch) = (x2 - x1, y2 - y1);
    let scale = (512.0 / cw.max(ch)).min(1.0);
    let crops: Vec<PathBuf> = std::fs::read_dir(out.join("crops"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().contains("_aug"))
        .collect();
    let dims: BTreeSet<(u32, u32)> = crops
        .iter()
        .map(|p| image::image_dimensions(p).unwrap())
        .collect();
    let want = ((cw * scale).round() as u32, (ch * scale).round() as u32);
    assert!(dims.contains(&want), "{want:?} in {dims:?}");

    // The tracked concept appears in two photos under one name.
    let track = tracks.iter().next().copied().unwrap();
    let track_images: BTreeSet<String> = anns
        .iter()
        .filter(|a| a["track_id"].as_u64() == Some(track))
        .map(|a| {
            let img = images.iter().find(|i| i["id"] == a["image_id"]).unwrap();
            format!("images/{}", img["file_name"].as_str().unwrap())
        })
        .collect();
    assert_eq!(track_images.len(), 2);
    let names_in: Vec<BTreeSet<String>> = track_images
        .iter()
        .map(|img| {
            all.iter()
                .filter(|s| s.image.as_deref() == Some(img) && s.kind == SampleType::Recognition)
                .filter(|s| s.answers().next() == Some("Yes"))
                .flat_map(|s| mentioned_names(s.question()))
                .collect()
        })
        .collect();
    assert!(
        !names_in[0].is_disjoint(&names_in[1]),
        "the track's name is asked about in both photos: {names_in:?}"
    );
}

/// A deterministic generator for tests: it sees images, and answers each kind of prompt with
/// text built from the names in the prompt; `leak` makes it name a concept it was not given.
struct TestGenerator {
    info: GeneratorInfo,
    leak: bool,
}

impl Generator for TestGenerator {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn generate(
        &self,
        messages: &[Message],
        _params: &GenerationParams,
        _on_text: &mut dyn FnMut(&str) -> bool,
    ) -> rap_core::Result<Generation> {
        let text: String = messages[0]
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                Part::Image(_) => None,
            })
            .collect();
        let images = messages[0].images().count();
        let names: Vec<String> = mentioned_names(&text)
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let first = names.first().cloned().unwrap_or_default();
        let out = if self.leak {
            format!("<{first}> sits next to <stranger>.")
        } else if text.contains("Start with \"<") {
            format!("<{first}> is a test object seen in {images} image(s).")
        } else if let Some(rest) = text.split("might ask about <").nth(1) {
            // QA: about the concept the prompt names.
            let target = &rest[..rest.find('>').unwrap()];
            format!("Question: What colour is <{target}>?\nAnswer: <{target}> is test-coloured.")
        } else if text.contains("one-sentence caption") {
            format!(
                "Generated caption with {}.",
                names
                    .iter()
                    .map(|n| format!("<{n}>"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        } else {
            format!("Generated description of <{first}> from {images} image(s).")
        };
        Ok(Generation {
            text: out,
            finish_reason: FinishReason::Stop,
            prompt_tokens: 0,
            completion_tokens: 0,
        })
    }
}

#[test]
fn generator_texts_are_used_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let input = Input::Coco {
        annotations: coco_fixture(),
        images: shared("dreambooth-dev"),
    };
    let g = TestGenerator {
        info: GeneratorInfo {
            model: "test-vlm".into(),
            accepts_images: true,
            context_length: None,
        },
        leak: false,
    };
    let mut writer = Writer::new(Some(TextGenerator {
        generator: &g,
        params: GenerationParams::default(),
    }));
    let out = tmp.path().join("gen");
    let report = build(
        &input,
        &out,
        &seeded(3),
        &mut writer,
        Some("test-vlm".into()),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(report.text.rejected, 0);
    assert_eq!(report.text.fallback, 0);
    // info per concept + caption, description and qa per scene
    assert_eq!(report.text.generated, report.concepts + 3 * report.scenes);
    assert_eq!(report.generator.as_deref(), Some("test-vlm"));
    let all = samples(&out);
    let caption = all.iter().find(|s| s.kind == SampleType::Caption).unwrap();
    assert!(caption
        .answers()
        .next()
        .unwrap()
        .starts_with("Generated caption with <"));
    let (_, c) = caption.extra.iter().next().unwrap();
    // The info prompt showed the crop only; captions see the scene plus each crop.
    assert!(
        c.info.ends_with("is a test object seen in 1 image(s)."),
        "{}",
        c.info
    );
    let d = all
        .iter()
        .find(|s| s.kind == SampleType::Description)
        .unwrap();
    let named = d.extra.len()
        - report.sample_noise[match d.id {
            rap_dataset::SampleId::Int(i) => i as usize,
            _ => unreachable!(),
        }]
        .len();
    assert!(
        d.answers()
            .next()
            .unwrap()
            .ends_with(&format!("from {} image(s).", 1 + named)),
        "{:?}",
        d.answers().next()
    );
    let qa = all.iter().find(|s| s.kind == SampleType::Qa).unwrap();
    assert!(qa.question().starts_with("What colour is <"));

    // A generator that names a concept it was not given is refused: fallbacks are used.
    let leaky = TestGenerator {
        info: g.info.clone(),
        leak: true,
    };
    let mut writer = Writer::new(Some(TextGenerator {
        generator: &leaky,
        params: GenerationParams::default(),
    }));
    let out2 = tmp.path().join("leaky");
    let report = build(
        &input,
        &out2,
        &seeded(3),
        &mut writer,
        None,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(report.text.generated, 0);
    assert_eq!(report.text.rejected, report.concepts + 3 * report.scenes);
    let plain = tmp.path().join("plain");
    run(&input, &plain, &seeded(3));
    assert_eq!(
        std::fs::read(out2.join("train.json")).unwrap(),
        std::fs::read(plain.join("train.json")).unwrap(),
        "refused texts fall back to exactly the no-generator output"
    );
}

#[test]
fn failed_builds_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    // A photo folder with a corrupt photo.
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(photos.join("mug")).unwrap();
    std::fs::create_dir_all(photos.join("dog")).unwrap();
    for f in ["00.jpg", "01.jpg"] {
        std::fs::copy(
            shared("dreambooth-dev/dog").join(f),
            photos.join("dog").join(f),
        )
        .unwrap();
    }
    std::fs::write(photos.join("mug/00.jpg"), b"not a jpeg at all").unwrap();
    std::fs::write(photos.join("mug/01.jpg"), b"not a jpeg either").unwrap();
    let out = tmp.path().join("out");
    let mut writer = Writer::new(None);
    let e = build(
        &Input::Folders(photos.clone()),
        &out,
        &seeded(1),
        &mut writer,
        None,
        &mut |_, _, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mug/0") && e.contains("not an image"), "{e}");
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".rap-dataset"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // An existing, non-empty OUT is kept unless forced; forced, it is replaced.
    std::fs::remove_dir_all(photos.join("mug")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    let e = build(
        &Input::Folders(photos.clone()),
        &out,
        &seeded(1),
        &mut writer,
        None,
        &mut |_, _, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--force"), "{e}");
    assert!(out.join("keep.txt").exists());
    let forced = BuildOptions {
        force: true,
        ..seeded(1)
    };
    build(
        &Input::Folders(photos),
        &out,
        &forced,
        &mut writer,
        None,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert!(!out.join("keep.txt").exists());
    assert!(out.join("train.json").exists());
}
