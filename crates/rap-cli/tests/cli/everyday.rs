//! Everyday use without the model-heavy paths: where models go by default (the user's cache,
//! `[models] dir`, `RAP_MODELS_DIR`), errors with `--json` on stdout only, an I/O error's
//! reason said once, `concept edit` that changes nothing says so, and `rap bench retrieval`
//! runs on the built-in photos from any folder; a concept named in the question and seen in
//! the photo is one hit, and the prompt says where it is.

use crate::common::{png, s, shared, Rap};

/// `rap models list --json`'s models dir, run with `env` and no RAP_MODELS_DIR.
fn models_dir(rap: &Rap, env: &[(&str, &std::path::Path)]) -> String {
    let mut cmd = rap.command();
    cmd.env_remove("RAP_MODELS_DIR")
        .args(["models", "list", "--json"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["models_dir"].as_str().unwrap().to_string()
}

#[test]
fn models_go_to_the_user_cache_unless_the_config_or_the_environment_says_otherwise() {
    let rap = Rap::new();
    let cache = rap.dir.path().join("cache");
    assert_eq!(
        models_dir(&rap, &[("XDG_CACHE_HOME", &cache)]),
        s(&cache.join("rap/models"))
    );
    std::fs::create_dir_all(rap.data_dir()).unwrap();
    std::fs::write(
        rap.data_dir().join("config.toml"),
        "[models]\ndir = \"shared-models\"\n",
    )
    .unwrap();
    assert_eq!(
        models_dir(&rap, &[("XDG_CACHE_HOME", &cache)]),
        s(&rap.data_dir().join("shared-models"))
    );
    let elsewhere = rap.dir.path().join("elsewhere");
    assert_eq!(
        models_dir(
            &rap,
            &[("XDG_CACHE_HOME", &cache), ("RAP_MODELS_DIR", &elsewhere)]
        ),
        s(&elsewhere)
    );
}

#[test]
fn json_errors_go_to_stdout_only_and_name_the_os_reason_once() {
    let rap = Rap::new();
    let out = rap.run(&["--json", "concept", "show", "nope"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nope"),
        "{v}"
    );

    let e = rap.fails(&["concept", "add", "bo", "--image", "missing.jpg"]);
    let reason = "No such file or directory";
    assert_eq!(e.matches(reason).count(), 1, "{e}");
    assert!(e.contains("missing.jpg"), "{e}");
}

#[test]
fn an_edit_that_changes_nothing_says_so() {
    let rap = Rap::new();
    let photo = rap.write("bo.png", &png(1, 40, 40));
    rap.ok(&[
        "concept",
        "add",
        "bo",
        "--image",
        s(&photo),
        "--info",
        "a dog",
    ]);
    let out = rap.ok(&["concept", "edit", "bo"]);
    assert!(out.starts_with("nothing to change for <bo>"), "{out}");
    let out = rap.ok(&["concept", "edit", "bo", "--info", "a dog"]);
    assert!(out.starts_with("no change to <bo>"), "{out}");
    let out = rap.ok(&["concept", "edit", "bo", "--info", "a red dog"]);
    assert!(out.starts_with("updated <bo>"), "{out}");
}

#[test]
fn bench_retrieval_runs_on_the_built_in_photos_from_any_folder() {
    let rap = Rap::with_default_encoder();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = rap
        .command()
        .current_dir(elsewhere.path())
        .args(["bench", "retrieval", "--queries", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Text, not JSON, without --json.
    assert!(!stdout.trim_start().starts_with('{'), "{stdout}");
    assert!(stdout.contains("dataset: "), "{stdout}");
}

/// The case: the question names Bo and the photo shows him. `rap retrieve` gives one
/// hit with both facts, and the text-only prompt tells the model where Bo is.
#[test]
fn a_concept_named_and_seen_is_one_hit_and_the_prompt_says_where() {
    let rap = Rap::with_default_encoder();
    let dog = shared("dreambooth-dev/dog");
    rap.ok(&[
        "concept",
        "add",
        "Bo",
        "--image",
        s(&dog.join("00.jpg")),
        "--info",
        "<Bo> is a corgi.",
    ]);
    let query = dog.join("03.jpg");
    let question = "What is <Bo> doing?";
    let v = rap.json(&["retrieve", s(&query), "--text", question]);
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(hits[0]["name"], "Bo");
    assert_eq!(hits[0]["via"], "text+image");
    let score = hits[0]["score"].as_f64().unwrap();
    assert!(score > 0.55 && score < 1.0, "{v}");
    assert_eq!(hits[0]["box"].as_array().unwrap().len(), 4);

    let p = rap.json(&["prompt", "--image", s(&query), "--text-only", question]);
    let prompt = p["prompt"].as_str().unwrap();
    assert!(
        prompt.contains(&format!(
            "The image shows <Bo> (similarity {score:.2}, region ["
        )),
        "{prompt}"
    );
    assert!(!prompt.contains("none of their saved concepts"), "{prompt}");
    assert_eq!(p["concepts"][0]["via"], "text+image");
}
