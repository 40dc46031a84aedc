//! What rap-app's integration tests share: where the shared photos and the tiny checkpoints are.

/// The shared datasets folder (next to the repository).
pub fn datasets_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
}

/// A tiny random Hugging Face checkpoint of the golden tests: the OWLv2 detector's (beside
/// rap-detect's tests), or an encoder's (`clip`, `dinov2`, `siglip`, beside rap-vision's).
pub fn fixture(name: &str) -> std::path::PathBuf {
    let owner = if name == "owlv2" {
        "rap-detect"
    } else {
        "rap-vision"
    };
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(owner)
        .join("tests/fixtures/hf")
        .join(name)
}
