//! `RAP_DEVICE` from the command line: `cpu` by name gives exactly the default's embeddings; a
//! GPU in a build without the `cuda` feature, or a name that is no device, is a one-line error
//! that says what to do - never a silent fall-back to the CPU.

use crate::common;

use common::Rap;
use std::path::PathBuf;

fn tiny_clip() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../rap-vision/tests/fixtures/hf/clip")
        .display()
        .to_string()
}

/// `rap ARGS --json` with RAP_DEVICE set to `device` (or unset).
fn embed(rap: &Rap, device: Option<&str>, image: &str) -> std::process::Output {
    let mut cmd = rap.command();
    cmd.env_remove("RAP_DEVICE");
    if let Some(d) = device {
        cmd.env("RAP_DEVICE", d);
    }
    let model = tiny_clip();
    cmd.args(["embed", "--model", &model, image, "--json"])
        .output()
        .unwrap()
}

/// The error of a failed `--json` command: one JSON object on stdout, nothing on stderr.
fn json_error(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.trim().is_empty(),
        "nothing on stderr expected: {stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["error"]["message"].as_str().unwrap().to_string()
}

#[test]
fn rap_device_selects_the_cpu_and_refuses_what_it_cannot_honour() {
    let rap = Rap::new();
    let image = rap.write("a.png", &common::png(7, 64, 48));
    let image = common::s(&image);

    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let default = json(embed(&rap, None, image));
    let cpu = json(embed(&rap, Some("cpu"), image));
    assert_eq!(default["dim"], cpu["dim"]);
    assert_eq!(default["embeddings"], cpu["embeddings"]);

    let err = json_error(&embed(&rap, Some("tpu"), image));
    assert!(
        err.contains("RAP_DEVICE") && err.contains("cuda:N"),
        "{err}"
    );

    if !cfg!(feature = "cuda") {
        let err = json_error(&embed(&rap, Some("cuda"), image));
        assert!(
            err.contains("no CUDA support") && err.contains("--features cuda"),
            "{err}"
        );
    }
}
