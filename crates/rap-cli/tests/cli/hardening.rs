//! Issue 20, end to end: each finding's original input against the `rap` binary. A closed
//! pipe, a FIFO, a device, a foreign file or a link in the export folder, oversized inputs,
//! usage errors, and over HTTP the hostile strip, a huge chat text and a slow-header client.

use crate::common::{multipart, png, s, Rap, Serve};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs `rap args` and fails the test (killing it) if it has not ended within `limit`:
/// what blocked forever before must now end.
fn ends_within(rap: &Rap, args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = rap
        .command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rap {args:?} blocked for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn one_line_error(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "should fail");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: ") && !stderr.contains("panicked"));
    lines[0].to_string()
}

fn mkfifo(path: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo").arg(path).status();
    assert!(ok.unwrap().success());
}

/// `rap concept list | head -1` panicked ("failed printing to stdout: Broken pipe", 101).
/// Now the process ends as Unix tools do on a closed pipe: SIGPIPE, no message.
#[test]
fn a_closed_pipe_ends_the_process_quietly() {
    let rap = Rap::new();
    let img = rap.write("a.png", &png(1, 16, 16));
    for i in 0..30 {
        rap.ok(&["concept", "add", &format!("c{i}"), "--image", s(&img)]);
    }
    for args in [&["concept", "list"][..], &["concept", "list", "--json"]] {
        let mut child = rap
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before rap writes
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.trim().is_empty(), "{args:?}: {stderr}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

/// A FIFO as an image or as database.json blocked forever; a device (`/dev/zero`) was read
/// until memory ran out. Each is refused up front.
#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let rap = Rap::new();
    let fifo = rap.dir.path().join("fifo.jpg");
    mkfifo(&fifo);
    let limit = Duration::from_secs(20);
    for image in [s(&fifo), "/dev/zero"] {
        let out = ends_within(&rap, &["concept", "add", "x", "--image", image], limit);
        assert!(one_line_error(&out).contains("not a regular file"));
        let out = ends_within(&rap, &["retrieve", image], limit);
        assert!(one_line_error(&out).contains("not a regular file"));
    }
    let db = rap.dir.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    mkfifo(&db.join("database.json"));
    let out = ends_within(&rap, &["import", s(&db)], limit);
    assert!(one_line_error(&out).contains("not a regular file (a FIFO)"));
    assert!(rap
        .json(&["concept", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

/// `rap export DIR` overwrote a foreign file in a non-empty folder and followed
/// `DIR/bo.png -> ../v.txt` out of it.
#[test]
fn export_keeps_foreign_files_and_never_follows_links() {
    let rap = Rap::new();
    let img = rap.write("bo-src.png", &png(3, 16, 16));
    rap.ok(&["concept", "add", "bo", "--image", s(&img)]);
    let out = rap.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let victim = rap.write("v.txt", b"precious");
    std::os::unix::fs::symlink("../v.txt", out.join("bo.png")).unwrap();
    let err = rap.fails(&["export", s(&out)]);
    assert!(err.contains("bo.png") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    rap.ok(&["export", s(&out), "--force"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(out.join("bo.png"))
        .unwrap()
        .is_file());
    // A file of the user's is not overwritten without --force.
    let mine = rap.dir.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("database.json"), b"{}").unwrap();
    rap.fails(&["export", s(&mine)]);
    assert_eq!(std::fs::read(mine.join("database.json")).unwrap(), b"{}");
}

/// Limits from `[limits]` in config.toml, each error naming the limit and its value; clap
/// usage errors in one line.
#[test]
fn configured_limits_and_usage_errors_give_one_named_line() {
    let rap = Rap::new();
    std::fs::create_dir_all(rap.data_dir()).unwrap();
    std::fs::write(
        rap.data_dir().join("config.toml"),
        "[limits]\nmax_info_bytes = 10\nmax_image_bytes = 2000\n",
    )
    .unwrap();
    let small = rap.write("small.png", &png(1, 8, 8));
    let err = rap.fails(&[
        "concept",
        "add",
        "bo",
        "--image",
        s(&small),
        "--info",
        "eleven byte",
    ]);
    assert!(err.contains("max_info_bytes = 10"), "{err}");
    // Noise does not compress: well over 2000 bytes as a PNG.
    let mut seed = 12345u32;
    let noise = image::RgbImage::from_fn(64, 64, |_, _| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        image::Rgb([(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8])
    });
    let mut noisy = Vec::new();
    noise
        .write_to(
            &mut std::io::Cursor::new(&mut noisy),
            image::ImageFormat::Png,
        )
        .unwrap();
    let big = rap.write("big.png", &noisy);
    let err = rap.fails(&["concept", "add", "bo", "--image", s(&big)]);
    assert!(err.contains("max_image_bytes = 2000"), "{err}");
    let strip = rap.write("strip.png", &rap_image::testing::strip_png(1, 40_000));
    let err = rap.fails(&["concept", "add", "bo", "--image", s(&strip)]);
    assert!(err.contains("max_aspect_ratio = 50"), "{err}");
    assert!(rap
        .json(&["concept", "list"])
        .as_array()
        .unwrap()
        .is_empty());
    std::fs::write(
        rap.data_dir().join("config.toml"),
        "[limits]\nmax_pixels = 0\n",
    )
    .unwrap();
    let err = rap.fails(&["config", "show"]);
    assert!(err.contains("limits.max_pixels"), "{err}");

    // Each keeps what clap said was wrong (the missing argument on a line of its own there).
    for (args, names) in [
        (&["concept", "add"][..], "<NAME>"),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["concept", "frobnicate"], "frobnicate"),
    ] {
        let out = rap.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let line = one_line_error(&out);
        assert!(line.contains(names), "{args:?}: {line}");
    }
}

fn http() -> reqwest::blocking::Client {
    rap_llm::http::install_tls_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Over HTTP: the strip that grew the server to 6.7 GB (and the 1 x 100000 one that killed
/// it) gets a 413 naming the limit; a 300 KB chat text too; a client that never finishes its
/// request head is disconnected.
#[test]
fn the_server_refuses_hostile_bodies_and_drops_slow_headers() {
    // With an encoder, as in the issue (without one, retrieval answers 503 before decoding).
    let rap = Rap::with_default_encoder();
    std::fs::create_dir_all(rap.data_dir()).unwrap();
    std::fs::write(
        rap.data_dir().join("config.toml"),
        "[limits]\nheader_read_timeout_secs = 1\n",
    )
    .unwrap();
    let server = Serve::start(rap.command(), &[]);
    let client = http();
    for (w, h) in [(1, 40_000), (1, 100_000), (100_000, 1)] {
        let strip = rap_image::testing::strip_png(w, h);
        let (ctype, body) = multipart(&[("image", &strip)]);
        let res = client
            .post(format!("{}/v1/retrieve", server.url))
            .header("content-type", ctype)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(res.status().as_u16(), 413, "{w}x{h}");
        let v: serde_json::Value = res.json().unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("max_aspect_ratio"), "{msg}");
    }
    let text = "a".repeat(300 * 1024);
    let res = client
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&serde_json::json!({"model": "x", "messages": [{"role": "user", "content": text}]}))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    let v: serde_json::Value = res.json().unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_chat_text_bytes"));

    // A slow-header client: half a request head, then nothing. The server closes it.
    let addr = server.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = conn.read_to_end(&mut buf);
    assert!(
        read.is_ok(),
        "the server must close the connection: {read:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    // The server is still healthy.
    let ok = client.get(format!("{}/health", server.url)).send().unwrap();
    assert!(ok.status().is_success());
}
