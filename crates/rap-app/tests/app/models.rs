//! Models by name through the application: Hugging Face folders registered, verified, loaded
//! as encoders and removed; the default models' "not installed" errors; every catalogued Hub
//! checkpoint has its real-size architecture for benchmarks.

use rap_app::models::{add_folder, load_centernet, load_default_encoder, resolve_encoder, verify};
use rap_core::Error;
use rap_models::hub;

use crate::common::fixture;

#[test]
fn add_verify_resolve_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let cpu = candle_core::Device::Cpu;
    let user = tmp.path().join("my-dinov2");
    std::fs::create_dir(&user).unwrap();
    for f in [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(fixture("dinov2").join(f), user.join(f)).unwrap();
    }
    let models = tmp.path().join("models");
    let m = add_folder(&models, "tiny-dino", &user).unwrap();
    assert_eq!(m.model_type, "dinov2");
    assert_eq!(m.files.len(), 3);
    assert!(!m.has_text);
    assert_eq!(hub::list(&models).len(), 1);
    assert!(verify(&models, "tiny-dino").unwrap().is_empty());
    let enc = resolve_encoder(&models, "tiny-dino", &cpu).unwrap();
    assert_eq!(enc.info().id, m.encoder_id);
    // By path, the same embedding space.
    let by_path = resolve_encoder(&models, user.to_str().unwrap(), &cpu).unwrap();
    assert_eq!(by_path.info().id, m.encoder_id);
    // Twice under one name: refused.
    let err = add_folder(&models, "tiny-dino", &user)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already registered"), "{err}");
    // A changed file is found by verify and refused by load.
    let mut w = std::fs::read(user.join("model.safetensors")).unwrap();
    let n = w.len();
    w[n - 1] ^= 0x55;
    std::fs::write(user.join("model.safetensors"), &w).unwrap();
    let problems = verify(&models, "tiny-dino").unwrap();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].problem.contains("sha256"), "{problems:?}");
    // Unknown names list what there is.
    let err = resolve_encoder(&models, "nope", &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nope") && err.contains("tiny-dino"), "{err}");
    let err = resolve_encoder(&models, "clip-vit-large-patch14-336", &cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("rap models install clip-vit-large-patch14-336"),
        "{err}"
    );
    // rm unregisters, and leaves the user's folder alone.
    hub::remove(&models, "tiny-dino").unwrap();
    assert!(hub::list(&models).is_empty());
    assert!(user.join("model.safetensors").is_file());
    assert!(hub::remove(&models, "tiny-dino").is_err());
    // A broken folder is refused at add time, naming the file.
    std::fs::remove_file(user.join("preprocessor_config.json")).unwrap();
    let err = add_folder(&models, "broken", &user)
        .unwrap_err()
        .to_string();
    assert!(err.contains("preprocessor_config.json"), "{err}");
    assert!(hub::list(&models).is_empty());
}

#[test]
fn missing_default_models_say_how_to_install_them() {
    let dir = tempfile::tempdir().unwrap();
    let cpu = candle_core::Device::Cpu;
    let err = load_centernet(dir.path(), &cpu).err().unwrap();
    assert!(matches!(err, Error::NotInstalled { .. }), "{err}");
    assert!(
        err.to_string().contains("rap models install centernet"),
        "{err}"
    );
    let err = load_default_encoder(dir.path(), &cpu).err().unwrap();
    assert!(matches!(err, Error::NotInstalled { .. }), "{err}");
    assert!(
        err.to_string().contains("rap models install default"),
        "{err}"
    );
}

#[test]
fn every_catalogued_hub_encoder_has_its_reference_architecture() {
    for e in hub::HUB_CATALOGUE
        .iter()
        .filter(|e| e.kind == hub::HfKind::Encoder)
    {
        assert!(
            rap_vision::reference::reference_configs(e.name).is_some(),
            "{}",
            e.name
        );
    }
}
