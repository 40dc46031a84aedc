//! The OpenAI-compatible backend against an in-process protocol server (axum on loopback, an
//! ephemeral port) that replays responses recorded from a real llama.cpp server
//! (`tests/fixtures/llamacpp/`, see its README) and plays the failures a real deployment has:
//! 429 then success, 500s, a server that hangs, a closed port, a stream cut mid-way.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rap_core::{FinishReason, GenerationParams, Generator, ImageData, Message, Part, Role};
use rap_llm::layout::{first_turn, LayoutConcept};
use rap_llm::openai::{OpenAiConfig, OpenAiGenerator};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llamacpp")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What the fake server saw.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
    auth: Mutex<Vec<Option<String>>>,
    /// Chunks sent by the endless stream (cancellation test).
    sent: AtomicUsize,
}

type Shared = Arc<Seen>;

/// Runs `router` on 127.0.0.1 with an ephemeral port on its own runtime; returns the base URL.
fn serve(router: Router) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, router).await.unwrap();
        });
    });
    format!("http://{addr}/v1")
}

fn record(seen: &Seen, headers: &HeaderMap, body: &Value) {
    seen.calls.fetch_add(1, Ordering::SeqCst);
    seen.bodies.lock().unwrap().push(body.clone());
    seen.auth.lock().unwrap().push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
}

fn sse(body: String) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(body))
        .unwrap()
}

fn config(base: &str) -> OpenAiConfig {
    let mut c = OpenAiConfig::new(base, "smollm2");
    c.timeout_secs = 2;
    c.connect_timeout_secs = 2;
    c.max_retries = 2;
    c.retry_backoff_ms = 10;
    c
}

fn ask(
    generator: &OpenAiGenerator,
    text: &str,
) -> rap_core::Result<(rap_core::Generation, Vec<String>)> {
    let mut pieces = Vec::new();
    let g = generator.generate(
        &[Message::text(Role::User, text)],
        &GenerationParams::default(),
        &mut |t| {
            pieces.push(t.to_string());
            true
        },
    )?;
    Ok((g, pieces))
}

fn img(bytes: &[u8]) -> ImageData {
    ImageData {
        bytes: Arc::new(bytes.to_vec()),
        mime: "image/png".into(),
    }
}

#[test]
fn replays_a_recorded_llamacpp_stream() {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |State(s): State<Shared>, h: HeaderMap, Json(b): Json<Value>| async move {
                    record(&s, &h, &b);
                    sse(fixture("stream.sse"))
                },
            ),
        )
        .with_state(seen.clone());
    let base = serve(app);
    let g = OpenAiGenerator::new(config(&base)).unwrap();
    let (gen, pieces) = ask(&g, "What is the capital of France? Answer in one word.").unwrap();
    let expected = fixture("stream.expected.txt");
    assert_eq!(gen.text, expected.trim_end_matches('\n'));
    assert_eq!(pieces.concat(), gen.text);
    assert!(pieces.len() > 1, "streamed in pieces: {pieces:?}");
    assert_eq!(gen.finish_reason, FinishReason::Stop);
    let body = &seen.bodies.lock().unwrap()[0];
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "smollm2");
    assert_eq!(body["max_tokens"], 512);
    assert_eq!(
        body["messages"][0]["content"],
        "What is the capital of France? Answer in one word."
    );
}

#[test]
fn replays_a_recorded_non_streaming_answer() {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(fixture("nonstream.json")))
                .unwrap()
        }),
    );
    let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
    let (gen, pieces) = ask(&g, "hi").unwrap();
    let v: Value = serde_json::from_str(&fixture("nonstream.json")).unwrap();
    assert_eq!(
        gen.text,
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(pieces, vec![gen.text.clone()]);
    assert_eq!(
        gen.prompt_tokens as u64,
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        gen.completion_tokens as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
}

#[test]
fn images_are_data_url_parts_in_layout_order_and_params_are_sent() {
    std::env::set_var("RAP_TEST_OPENAI_KEY_A", "sk-test-123");
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |State(s): State<Shared>, h: HeaderMap, Json(b): Json<Value>| async move {
                    record(&s, &h, &b);
                    sse(fixture("stream.sse"))
                },
            ),
        )
        .with_state(seen.clone());
    let mut cfg = config(&serve(app));
    cfg.api_key_env = Some("RAP_TEST_OPENAI_KEY_A".into());
    cfg.send_max_completion_tokens = true;
    let g = OpenAiGenerator::with_key_lookup(cfg, |k| std::env::var(k).ok()).unwrap();
    let parts = first_turn(
        Some(&img(b"Q")),
        &[LayoutConcept::new("bo", "a dog", Some(img(b"B")))],
        "Who?",
    );
    let params = GenerationParams {
        max_tokens: 7,
        temperature: 0.0,
        top_p: 0.5,
        seed: Some(42),
        stop: vec!["</s>".into()],
        ..Default::default()
    };
    let msgs = vec![
        Message {
            role: Role::User,
            parts,
        },
        Message::text(Role::Assistant, "It is <bo>."),
        Message::text(Role::User, "Sure?"),
    ];
    g.generate(&msgs, &params, &mut |_| true).unwrap();
    let body = seen.bodies.lock().unwrap()[0].clone();
    let content = body["messages"][0]["content"].as_array().unwrap();
    let kinds: Vec<&str> = content
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["image_url", "text", "image_url", "text"]);
    assert_eq!(content[0]["image_url"]["url"], "data:image/png;base64,UQ==");
    assert_eq!(content[1]["text"], "\n[1.");
    assert_eq!(content[2]["image_url"]["url"], "data:image/png;base64,Qg==");
    assert_eq!(content[3]["text"], "\n Name: <bo>, Info: a dog\n]Who?");
    // Later turns are plain strings.
    assert_eq!(body["messages"][1]["content"], "It is <bo>.");
    assert_eq!(body["messages"][1]["role"], "assistant");
    assert_eq!(body["messages"][2]["content"], "Sure?");
    assert_eq!(body["max_tokens"], 7);
    assert_eq!(body["max_completion_tokens"], 7);
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["top_p"], 0.5);
    assert_eq!(body["seed"], 42);
    assert_eq!(body["stop"], serde_json::json!(["</s>"]));
    assert_eq!(
        seen.auth.lock().unwrap()[0].as_deref(),
        Some("Bearer sk-test-123")
    );
}

/// llama.cpp's server (llama-cpp-python 0.3.36) with a text-only GGUF, sent an image: HTTP 200
/// and an empty event stream when streaming, HTTP 500 (a Python TypeError) otherwise.
#[test]
fn recorded_image_refusals_become_a_clear_error() {
    for name in ["image_refused_stream.json", "image_refused.json"] {
        let v: Value = serde_json::from_str(&fixture(name)).unwrap();
        let status = v["status"].as_u64().unwrap() as u16;
        let ctype = v["content_type"].as_str().unwrap().to_string();
        let body = v["body"].as_str().unwrap().to_string();
        let seen: Shared = Arc::default();
        let app = Router::new()
            .route(
                "/v1/chat/completions",
                post(move |State(s): State<Shared>| async move {
                    s.calls.fetch_add(1, Ordering::SeqCst);
                    Response::builder()
                        .status(status)
                        .header("content-type", ctype)
                        .body(Body::from(body))
                        .unwrap()
                }),
            )
            .with_state(seen.clone());
        let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
        let msgs = vec![Message {
            role: Role::User,
            parts: vec![Part::Image(img(b"x")), Part::Text("\nWhat is this?".into())],
        }];
        let e = g
            .generate(&msgs, &GenerationParams::default(), &mut |_| true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not accept images") && e.contains("smollm2"),
            "{name}: {e}"
        );
        assert_eq!(
            seen.calls.load(Ordering::SeqCst),
            1,
            "{name}: a refusal is not retried"
        );
    }
}

#[test]
fn text_only_config_refuses_images_before_sending() {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(s): State<Shared>| async move {
                s.calls.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }),
        )
        .with_state(seen.clone());
    let mut cfg = config(&serve(app));
    cfg.accepts_images = false;
    let g = OpenAiGenerator::new(cfg).unwrap();
    assert!(!g.info().accepts_images);
    let msgs = vec![Message {
        role: Role::User,
        parts: vec![Part::Image(img(b"x")), Part::Text("hi".into())],
    }];
    let e = g
        .generate(&msgs, &GenerationParams::default(), &mut |_| true)
        .unwrap_err();
    assert!(e.to_string().contains("accepts_images = false"), "{e}");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn retries_429_then_succeeds() {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(s): State<Shared>| async move {
                let n = s.calls.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "0")],
                        "slow down",
                    )
                        .into_response()
                } else {
                    sse(fixture("stream.sse"))
                }
            }),
        )
        .with_state(seen.clone());
    let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
    let (gen, _) = ask(&g, "hi").unwrap();
    assert!(!gen.text.is_empty());
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn persistent_500s_give_the_server_message_after_the_retries() {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(s): State<Shared>| async move {
                s.calls.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(serde_json::json!({"error": {"message": "CUDA out of memory", "code": 500}})),
                )
            }),
        )
        .with_state(seen.clone());
    let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
    let e = ask(&g, "hi").unwrap_err().to_string();
    assert!(
        e.contains("HTTP 500") && e.contains("CUDA out of memory"),
        "{e}"
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 3, "1 try + 2 retries");
}

#[test]
fn client_errors_are_not_retried_and_show_the_body() {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(s): State<Shared>| async move {
                s.calls.fetch_add(1, Ordering::SeqCst);
                (StatusCode::BAD_REQUEST, "max_tokens is too large")
            }),
        )
        .with_state(seen.clone());
    let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
    let e = ask(&g, "hi").unwrap_err().to_string();
    assert!(
        e.contains("HTTP 400") && e.contains("max_tokens is too large"),
        "{e}"
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_hanging_server_times_out() {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let mut cfg = config(&serve(app));
    cfg.timeout_secs = 1;
    let g = OpenAiGenerator::new(cfg).unwrap();
    let t = Instant::now();
    let e = ask(&g, "hi").unwrap_err().to_string();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(e.contains("did not answer within 1 s"), "{e}");
}

#[test]
fn a_stream_that_stalls_times_out() {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let first = Bytes::from(
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Par\"}}]}\n\n",
            );
            let stream = futures_util::stream::unfold(0, move |i| {
                let first = first.clone();
                async move {
                    if i == 0 {
                        Some((Ok::<_, std::io::Error>(first), 1))
                    } else {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        None
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }),
    );
    let mut cfg = config(&serve(app));
    cfg.timeout_secs = 1;
    let g = OpenAiGenerator::new(cfg).unwrap();
    let e = ask(&g, "hi").unwrap_err().to_string();
    assert!(e.contains("stopped sending for 1 s"), "{e}");
}

#[test]
fn a_closed_port_says_it_cannot_reach_the_server() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(&format!("http://127.0.0.1:{port}/v1"));
    cfg.max_retries = 1;
    let g = OpenAiGenerator::new(cfg).unwrap();
    let e = ask(&g, "hi").unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "cannot reach the generator at http://127.0.0.1:{port}/v1: "
        )),
        "{e}"
    );
    assert!(e.contains("after 1 retries"), "{e}");
    let e = g.list_models().unwrap_err().to_string();
    assert!(e.contains("cannot reach the generator"), "{e}");
}

#[test]
fn an_https_server_that_does_not_speak_tls_is_a_clear_error() {
    // A plain TCP peer that answers the TLS handshake with HTTP text: the client must have a
    // TLS provider (no panic) and report a failed connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write;
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let mut cfg = config(&format!("https://127.0.0.1:{port}/v1"));
    cfg.max_retries = 0;
    let g = OpenAiGenerator::new(cfg).unwrap();
    let e = ask(&g, "hi").unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "cannot reach the generator at https://127.0.0.1:{port}/v1: "
        )),
        "{e}"
    );
}

#[test]
fn a_stream_cut_before_the_end_is_an_error() {
    // Ends cleanly but without finish_reason or [DONE].
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            sse("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Par\"}}]}\n\n".into())
        }),
    );
    let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
    let e = ask(&g, "hi").unwrap_err().to_string();
    assert!(
        e.contains("ended the stream before the answer was finished"),
        "{e}"
    );
    assert!(e.contains("after 3 characters"), "{e}");
}

#[test]
fn a_connection_dropped_mid_stream_is_an_error() {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            // One chunk, then the worker dies (after the headers and the chunk went out).
            let stream = futures_util::stream::unfold(0, |i| async move {
                match i {
                    0 => Some((
                        Ok(Bytes::from(
                            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Par\"}}]}\n\n",
                        )),
                        1,
                    )),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Some((Err(std::io::Error::other("worker crashed")), 2))
                    }
                    _ => None,
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }),
    );
    let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
    let e = ask(&g, "hi").unwrap_err().to_string();
    assert!(
        e.contains("lost the connection") || e.contains("ended the stream before"),
        "{e}"
    );
}

#[test]
fn an_error_event_mid_stream_is_reported() {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            sse(
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Par\"}}]}\n\n\
                 data: {\"error\":{\"message\":\"context length exceeded\"}}\n\n"
                    .into(),
            )
        }),
    );
    let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
    let e = ask(&g, "hi").unwrap_err().to_string();
    assert!(e.contains("context length exceeded"), "{e}");
}

#[test]
fn cancelling_drops_the_stream() {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(s): State<Shared>| async move {
                let stream = futures_util::stream::unfold(s, |s| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    s.sent.fetch_add(1, Ordering::SeqCst);
                    let chunk = Bytes::from(
                        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"la \"}}]}\n\n",
                    );
                    Some((Ok::<_, std::io::Error>(chunk), s))
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .unwrap()
            }),
        )
        .with_state(seen.clone());
    let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
    let mut n = 0;
    let gen = g
        .generate(
            &[Message::text(Role::User, "sing")],
            &GenerationParams::default(),
            &mut |_| {
                n += 1;
                n < 3
            },
        )
        .unwrap();
    assert_eq!(gen.finish_reason, FinishReason::Cancelled);
    assert_eq!(gen.text, "la la la ");
    // The server notices the closed connection and stops producing.
    std::thread::sleep(Duration::from_millis(300));
    let a = seen.sent.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    let b = seen.sent.load(Ordering::SeqCst);
    assert_eq!(
        a, b,
        "the server kept streaming after cancellation ({a} -> {b})"
    );
}

#[test]
fn lists_models_from_a_recorded_answer() {
    let app = Router::new().route(
        "/v1/models",
        get(|| async {
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(fixture("models.json")))
                .unwrap()
        }),
    );
    let g = OpenAiGenerator::new(config(&serve(app))).unwrap();
    let models = g.list_models().unwrap();
    assert_eq!(models, vec!["smollm2".to_string()]);
}
