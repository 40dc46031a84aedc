//! `rap` on the shared PostgreSQL memory (`RAP_MEMORY_BACKEND=postgres`, `RAP_DATABASE_URL`; a
//! real server on loopback): commands run from different data dirs share one memory, and two
//! `rap serve` processes on one database serve the same tenants consistently - a concept
//! added through one is found through the other on the next request, a deletion through
//! either is seen by both.

use crate::common;
use common::{multipart, s, shared, Rap, Serve};
use rap_memory_postgres::testing::TestDb;
use std::process::{Command, Output};

fn dreambooth(rel: &str) -> std::path::PathBuf {
    shared("dreambooth-dev").join(rel)
}

/// `rap` on `rap`'s data dir, with the memory in `db`.
fn cmd(rap: &Rap, db: &TestDb) -> Command {
    let mut c = rap.command();
    c.env("RAP_MEMORY_BACKEND", "postgres")
        .env("RAP_DATABASE_URL", &db.url);
    c
}

fn ok(mut c: Command, args: &[&str]) -> serde_json::Value {
    let out: Output = c.args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "rap {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn names(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[test]
fn commands_from_different_data_dirs_share_one_memory() {
    let db = TestDb::new();
    let (one, two) = (Rap::new(), Rap::new());
    ok(
        cmd(&one, &db),
        &[
            "concept",
            "add",
            "bo",
            "--image",
            s(&dreambooth("dog/00.jpg")),
            "--alias",
            "shiba",
        ],
    );
    let list = ok(cmd(&two, &db), &["concept", "list"]);
    assert_eq!(names(&list), vec!["bo"]);
    assert_eq!(list[0]["aliases"][0], "shiba");
    // Tenants stay apart on the shared database too.
    let other = ok(cmd(&two, &db), &["--tenant", "other", "concept", "list"]);
    assert_eq!(other, serde_json::json!([]));
    ok(cmd(&two, &db), &["concept", "rm", "SHIBA"]);
    assert_eq!(
        ok(cmd(&one, &db), &["concept", "list"]),
        serde_json::json!([])
    );
    // Nothing was written to the embedded store.
    assert!(!one.data_dir().join("memory.sqlite").exists());

    // A postgres backend without a URL is a one-line error that says what to set.
    let mut c = one.command();
    c.env("RAP_MEMORY_BACKEND", "postgres")
        .env_remove("RAP_DATABASE_URL");
    let out = c.args(["concept", "list"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.trim().starts_with("error: ") && err.contains("RAP_DATABASE_URL"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

fn post(
    http: &reqwest::blocking::Client,
    url: &str,
    parts: &[(&str, &[u8])],
) -> (u16, serde_json::Value) {
    let (content_type, body) = multipart(parts);
    let r = http
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn retrieve(http: &reqwest::blocking::Client, server: &Serve, photo: &str) -> Vec<String> {
    let bytes = std::fs::read(dreambooth(photo)).unwrap();
    let (status, v) = post(
        http,
        &format!("{}/v1/retrieve", server.url),
        &[("image", &bytes), ("top_k", b"1")],
    );
    assert_eq!(status, 200, "{v}");
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_servers_on_one_database_stay_consistent() {
    let db = TestDb::new();
    let (one, two) = (Rap::with_default_encoder(), Rap::with_default_encoder());
    ok(
        cmd(&one, &db),
        &[
            "concept",
            "add",
            "rex",
            "--image",
            s(&dreambooth("dog/00.jpg")),
        ],
    );
    let (a, b) = (
        Serve::start(cmd(&one, &db), &[]),
        Serve::start(cmd(&two, &db), &[]),
    );
    rap_llm::http::install_tls_provider();
    let http = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap();

    assert_eq!(retrieve(&http, &b, "dog/02.jpg"), vec!["rex"]);
    // Added through A: B finds it on its very next request.
    let can = std::fs::read(dreambooth("can/00.jpg")).unwrap();
    let (status, created) = post(
        &http,
        &format!("{}/v1/concepts", a.url),
        &[("name", b"tin"), ("category", b"can"), ("image", &can)],
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(retrieve(&http, &b, "can/01.jpg"), vec!["tin"]);
    let listed: serde_json::Value = http
        .get(format!("{}/v1/concepts", b.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let listed = listed.get("concepts").unwrap_or(&listed);
    assert_eq!(names(listed), vec!["rex", "tin"]);

    // Deleted through B: gone for A at once (by name and from search).
    let r = http
        .delete(format!("{}/v1/concepts/tin", b.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .get(format!("{}/v1/concepts/tin", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(!retrieve(&http, &a, "can/01.jpg").contains(&"tin".to_string()));
    assert_eq!(retrieve(&http, &a, "dog/02.jpg"), vec!["rex"]);
}
