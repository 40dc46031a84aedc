//! The `[retrieval] detector` setting resolved through the models directory: `centernet`, a
//! registered OWLv2 name, a folder, with clear errors; `rap models add` records an OWLv2 folder
//! as a detector (on the tiny random checkpoint of rap-detect's golden test).

use rap_app::models::{add_folder, load_registered, resolve_detector, resolve_encoder, verify};
use rap_core::{ProposalHints, RegionProposer, RegionSource};
use rap_detect::owlv2::{DetectOptions, Owlv2};
use rap_detect::DetectorSettings;
use rap_models::hub;

use crate::common::{datasets_dir, fixture};

/// A real photo, cut to 700 x 500 so the padding to a square matters.
fn photo() -> image::RgbImage {
    let path = datasets_dir().join("dreambooth-dev/dog/00.jpg");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared datasets are needed)", path.display()));
    let img = rap_image::decode(&bytes, &rap_image::Limits::default()).unwrap();
    image::imageops::crop_imm(&img, 40, 100, 700, 500).to_image()
}

/// (label, score, box) of proposed regions.
fn rows(regions: &[rap_core::Region]) -> Vec<(String, f32, [f32; 4])> {
    regions
        .iter()
        .map(|r| match &r.source {
            RegionSource::Detector { label, score } => (label.clone(), *score, r.bbox.into()),
            s => panic!("not a detector region: {s:?}"),
        })
        .collect()
}

#[test]
fn detector_setting_resolves_names_and_folders_with_clear_errors() {
    let models = tempfile::tempdir().unwrap();
    let img = photo();
    let hints = ProposalHints::from_categories(["dog"]);
    let settings = DetectorSettings {
        threshold: Some(0.0),
        max_boxes: Some(3),
    };
    let opts = DetectOptions {
        threshold: 0.0,
        max_detections: 3,
        ..DetectOptions::default()
    };
    let model = Owlv2::load(&fixture("owlv2")).unwrap();
    let expected: Vec<[f32; 4]> = model
        .detect(&img, &["dog"], &opts)
        .unwrap()
        .iter()
        .map(|d| d.bbox.into())
        .collect();
    assert_eq!(expected.len(), 3);
    let boxes = |p: &dyn RegionProposer| -> Vec<[f32; 4]> {
        rows(&p.propose(&img, &hints).unwrap())
            .into_iter()
            .map(|r| r.2)
            .collect()
    };

    // A folder's path.
    let owl = fixture("owlv2");
    let cpu = candle_core::Device::Cpu;
    let p = resolve_detector(models.path(), owl.to_str().unwrap(), settings, &cpu).unwrap();
    assert_eq!(boxes(p.as_ref()), expected);

    // Registered by `rap models add`: a detector, not an encoder.
    let m = add_folder(models.path(), "owl", &owl).unwrap();
    assert_eq!(m.kind, hub::HfKind::Detector);
    assert_eq!(m.model_type, "owlv2");
    assert!(verify(models.path(), "owl").unwrap().is_empty());
    let e = load_registered(models.path(), "owl", &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("detector") && e.contains("not an image encoder"),
        "{e}"
    );
    let e = resolve_encoder(models.path(), "owl", &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not an image encoder"), "{e}");
    let p = resolve_detector(models.path(), "owl", settings, &cpu).unwrap();
    assert_eq!(boxes(p.as_ref()), expected);

    // Clear errors.
    let err = |spec: &str, s: DetectorSettings| {
        resolve_detector(models.path(), spec, s, &cpu)
            .err()
            .unwrap_or_else(|| panic!("{spec} was accepted"))
            .to_string()
    };
    let e = err("centernet", settings);
    assert!(e.contains("rap models install centernet"), "{e}");
    let e = err("nope", settings);
    assert!(e.contains("nope") && e.contains("rap models add"), "{e}");
    let e = err(fixture("clip").to_str().unwrap(), settings);
    assert!(e.contains("clip") && e.contains("not a detector"), "{e}");
    add_folder(models.path(), "tiny-clip", &fixture("clip")).unwrap();
    let e = err("tiny-clip", settings);
    assert!(
        e.contains("image encoder") && e.contains("not a detector"),
        "{e}"
    );
    let e = err(
        "owl",
        DetectorSettings {
            threshold: Some(1.5),
            max_boxes: None,
        },
    );
    assert!(e.contains("threshold") && e.contains("1.5"), "{e}");
    let e = err("", settings);
    assert!(e.contains("empty"), "{e}");
}
