//! Helpers shared by the CLI tests: running `rap` on a temporary data dir, making images.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Rap {
    pub dir: tempfile::TempDir,
    pub models_dir: PathBuf,
}

impl Rap {
    /// A fresh data dir with no models installed.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let models_dir = dir.path().join("no-models");
        Rap { dir, models_dir }
    }

    /// A fresh data dir using the default encoder, installed once per test binary into a
    /// models dir shared by the tests (through `rap models install`, i.e. pip).
    pub fn with_default_encoder() -> Self {
        static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        let models = INSTALLED.get_or_init(|| {
            let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let models = tmp.join("test-models");
            let out = Command::new(env!("CARGO_BIN_EXE_rap"))
                .args(["models", "install", "efficientnet-lite0"])
                .env("RAP_MODELS_DIR", &models)
                .env("RAP_DATA_DIR", tmp.join("unused-data"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "installing the default encoder failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            models
        });
        let mut rap = Rap::new();
        rap.models_dir = models.clone();
        rap
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rap"));
        cmd.env("RAP_DATA_DIR", self.data_dir())
            .env_remove("RAP_TENANT")
            .env("RAP_MODELS_DIR", &self.models_dir);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rap {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with --json and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Runs and expects failure with a one-line error; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "rap {args:?} should fail");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one-line error expected, got: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        lines[0].to_string()
    }

    /// What the memory holds, to compare before and after a failed command.
    pub fn snapshot(&self) -> (serde_json::Value, serde_json::Value) {
        let list = self.json(&["concept", "list"]);
        let mut status = self.json(&["status"]);
        status.as_object_mut().unwrap().remove("data_dir");
        (list, status)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

pub fn png(seed: u8, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            seed,
            (x * 7 % 256) as u8,
            ((y + seed as u32) * 3 % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(rel)
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub use rap_image::testing::png_bomb;

/// A running `rap serve` on a free loopback port; killed on drop.
pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
}

impl Serve {
    /// Runs `command` (a `rap` command, its environment set) as `rap serve --json` with `extra`
    /// arguments and waits for the line that says where it listens.
    pub fn start(mut command: Command, extra: &[&str]) -> Serve {
        let mut child = command
            .args(["serve", "--addr", "127.0.0.1:0", "--json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rap serve did not start ({e}): {line:?}");
            }
        };
        Serve {
            child,
            url: v["listening"].as_str().unwrap().to_string(),
        }
    }

    /// SIGTERM, then the exit status (within `limit`).
    pub fn stop(&mut self, limit: Duration) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "rap serve did not stop within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A multipart/form-data body (hand-built: the workspace's reqwest is built without its
/// multipart feature, and turning it on would rebuild it for every crate).
pub fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "rap-test-boundary-5d1c";
    let mut body = Vec::new();
    for (name, value) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if *name == "image" {
            body.extend_from_slice(
                b"Content-Disposition: form-data; name=\"image\"; filename=\"photo.jpg\"\r\n\
                  Content-Type: image/jpeg\r\n\r\n",
            );
        } else {
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
