//! `[generator] path = DIR` runs a local LLaVA folder: `rap ask` with the tiny random LLaVA of
//! rap-llm-local's golden test sees the query image and the concept's reference image.

use crate::common;
use common::*;
use std::path::PathBuf;

fn tiny_llava() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rap-llm-local/tests/fixtures/llava_tiny/hf")
}

fn config(rap: &Rap, path: &std::path::Path) {
    let text = format!(
        "[generator]\nkind = \"local\"\npath = {:?}\ntemplate = \"vicuna_v1\"\n",
        path.display().to_string()
    );
    std::fs::write(rap.data_dir().join("config.toml"), text).unwrap();
}

#[test]
fn ask_with_a_llava_folder_is_multimodal() {
    let rap = Rap::new();
    let bo = rap.write("bo.png", &png(1, 24, 16));
    let query = rap.write("query.png", &png(2, 16, 20));
    rap.ok(&[
        "concept",
        "add",
        "bo",
        "--image",
        s(&bo),
        "--info",
        "<bo> is a shiba inu.",
    ]);
    config(&rap, &tiny_llava());
    let v = rap.json(&[
        "ask",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "--image",
        s(&query),
        "--concept",
        "bo",
        "Is <bo> in this image?",
    ]);
    assert_eq!(v["mode"], "multimodal", "{v}");
    assert_eq!(v["model"], "hf", "{v}");
    assert!(v["answer"].is_string(), "{v}");
    assert_eq!(v["concepts"][0]["name"], "bo", "{v}");
}

#[test]
fn a_path_that_is_not_a_llava_folder_is_a_clear_error() {
    let rap = Rap::new();
    let empty = rap.data_dir().join("not-a-model");
    std::fs::create_dir_all(&empty).unwrap();
    config(&rap, std::path::Path::new("not-a-model")); // relative to the data dir
    let e = rap.fails(&["ask", "Hi"]);
    assert!(
        e.contains("generator.path") && e.contains("no config.json"),
        "{e}"
    );
}
