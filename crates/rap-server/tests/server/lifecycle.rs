//! Time limits and shutdown: a request that runs past its limit is answered 504 and its model
//! work is cancelled (the worker is free again), a streamed answer whose client goes away (the
//! page's Stop button) stops generating, and a graceful shutdown finishes the answer in flight
//! before the server stops, refusing new connections.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

fn chat(question: &str, max_tokens: usize, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "stream": stream,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": question}]
    })
}

/// Adds an SSE line's text to `text`; true at the closing `[DONE]`.
fn add_chunk(line: &str, text: &mut String) -> bool {
    let Some(data) = line.strip_prefix("data: ") else {
        return false;
    };
    if data == "[DONE]" {
        return true;
    }
    let chunk: serde_json::Value = serde_json::from_str(data).unwrap();
    if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
        text.push_str(t);
    }
    false
}

fn words(n: usize) -> String {
    (1..=n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_slow_answer_times_out_with_504_and_frees_its_worker() {
    let (dir, engine) = Server::engine();
    let s = Server::start_full(
        dir,
        engine,
        |cfg| {
            cfg.workers = 1;
            cfg.queue = 1;
            cfg.max_queue_wait = Duration::from_secs(3);
            cfg.model_timeout = Duration::from_secs(1);
        },
        Duration::from_millis(100),
    );
    let c = client();

    // 80 words at 100 ms each: 8 s of generation against a 1 s limit.
    let started = Instant::now();
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&chat(&words(80), 500, false))
        .send()
        .unwrap();
    let message = error(res, 504, "timeout", "longer than 1 s");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?}: {message}",
        started.elapsed()
    );

    // The timed-out generation was cancelled: the only worker takes the next request at once
    // (were it still generating, this one would wait past max_queue_wait and get a 503).
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&chat("short question", 2, false))
        .send()
        .unwrap();
    let body = json(res, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "short question");
}

#[test]
fn a_client_that_goes_away_stops_the_generation_and_frees_its_worker() {
    let (dir, engine) = Server::engine();
    let s = Server::start_full(
        dir,
        engine,
        |cfg| {
            cfg.workers = 1;
            cfg.queue = 1;
            cfg.max_queue_wait = Duration::from_secs(3);
        },
        Duration::from_millis(100),
    );
    let c = client();
    // 100 words at 100 ms each: 10 s of generation, unless it stops.
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&chat(&words(100), 500, true))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut lines = BufReader::new(res).lines();
    let mut text = String::new();
    while text.is_empty() {
        let line = lines.next().expect("stream ended early").unwrap();
        add_chunk(&line, &mut text);
    }
    // Gone, as a browser's aborted fetch is: the connection closes mid-answer.
    drop(lines);
    let gone = Instant::now();

    // The only worker takes the next request well before the 10 s answer would have ended
    // (were it still generating, this one would wait past max_queue_wait and get a 503).
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&chat("short question", 2, false))
        .send()
        .unwrap();
    let body = json(res, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "short question");
    assert!(
        gone.elapsed() < Duration::from_secs(4),
        "the next answer came {:?} after the client left",
        gone.elapsed()
    );
}

#[test]
fn shutdown_finishes_the_answer_in_flight_then_refuses_connections() {
    let (dir, engine) = Server::engine();
    let mut s = Server::start_full(dir, engine, |_| {}, Duration::from_millis(100));
    let question = words(15);
    let res = client()
        .post(s.url("/v1/chat/completions"))
        .json(&chat(&question, 500, true))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut lines = BufReader::new(res).lines();

    // Wait for the first token, so the answer is certainly in flight, then shut down.
    let mut text = String::new();
    loop {
        let line = lines.next().expect("stream ended early").unwrap();
        add_chunk(&line, &mut text);
        if !text.is_empty() {
            break;
        }
    }
    let base = s.base.clone();
    let shutting_down = std::thread::spawn(move || {
        let result = s.shut_down();
        (s, result)
    });

    // The answer in flight completes, whole.
    let mut done = false;
    for line in lines {
        if add_chunk(&line.unwrap(), &mut text) {
            done = true;
            break;
        }
    }
    assert!(done, "the stream ended without [DONE]; got {text:?}");
    assert_eq!(text, question);

    let (_s, result) = shutting_down.join().unwrap();
    result.expect("serve returned an error");
    // Stopped: a new connection is refused.
    let err = reqwest::blocking::Client::new()
        .get(format!("{base}/v1/models"))
        .timeout(Duration::from_secs(5))
        .send()
        .expect_err("the server still answers after shutting down");
    assert!(err.is_connect(), "{err}");
}
