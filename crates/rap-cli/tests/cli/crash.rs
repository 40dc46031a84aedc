//! Crash safety: a stream of `rap concept add` is killed with SIGKILL at random moments, and
//! afterwards every acknowledged add is there whole and nothing is half-written.

use crate::common;
use common::{png, s, Rap};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigkill_during_adds_never_loses_or_half_writes() {
    let rap = Rap::new();
    // Big-ish, distinct images, so that kills land inside writes as well as between them.
    let images: Vec<_> = (0..4u8)
        .map(|i| rap.write(&format!("img{i}.png"), &png(i * 50 + 1, 700, 500)))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut acknowledged = Vec::new();
    let mut next = 0usize;
    for round in 0..6 {
        // A shell loop of adds; each line `ack N` is printed only after `rap` exited 0.
        let mut script = String::new();
        for n in next..next + 200 {
            script.push_str(&format!(
                "\"$RAP\" concept add c{n} --info 'concept number {n}' --category test --alias a{n} --image '{}' --image '{}' && echo ack {n}\n",
                s(&images[n % 4]),
                s(&images[(n + 1) % 4]),
            ));
        }
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(&script)
            .env("RAP_DATA_DIR", rap.data_dir())
            // No encoder (whatever the environment has): the adds are about the store.
            .env("RAP_MODELS_DIR", &rap.models_dir)
            .env("RAP", env!("CARGO_BIN_EXE_rap"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = shell.spawn().unwrap();
        let pid = child.id() as i32;
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ack ").and_then(|n| n.parse::<usize>().ok()))
                .collect::<Vec<_>>()
        });
        let wait = Duration::from_millis(rng.random_range(150..1200));
        let start = Instant::now();
        while start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: kill(2) on the process group we created; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        eprintln!(
            "round {round}: {} adds acknowledged before the kill",
            acks.len()
        );
        next = acks.last().map(|n| n + 1).unwrap_or(next) + 1;
        acknowledged.extend(acks);
    }
    assert!(acknowledged.len() >= 6, "too few adds ran to test anything");

    // Reopen: every acknowledged add is there whole.
    let list = rap.json(&["concept", "list"]);
    let list = list.as_array().unwrap();
    for n in &acknowledged {
        let c = list
            .iter()
            .find(|c| c["name"] == format!("c{n}"))
            .unwrap_or_else(|| panic!("acknowledged add c{n} is missing"));
        assert_eq!(c["info"], format!("concept number {n}"));
        assert_eq!(c["aliases"], serde_json::json!([format!("a{n}")]));
        assert_eq!(c["images"].as_array().unwrap().len(), 2);
    }
    // Nothing is half-written: every concept present (acknowledged or caught mid-flight but
    // committed) is complete, and every image it names can be read back.
    for c in list {
        let n: usize = c["name"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(c["info"], format!("concept number {n}"));
        assert_eq!(c["aliases"].as_array().unwrap().len(), 1);
        assert_eq!(c["images"].as_array().unwrap().len(), 2);
    }
    let status = rap.json(&["status"]);
    assert_eq!(status["concepts"].as_u64().unwrap() as usize, list.len());
    assert_eq!(status["images"], 4, "each distinct image is stored once");
    // The store still takes writes.
    rap.ok(&["concept", "add", "after", "--image", s(&images[0])]);
}
