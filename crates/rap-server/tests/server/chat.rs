//! The OpenAI-compatible endpoint with a text-only echoing generator: the first user turn is
//! rewritten by the engine (retrieved concepts as text), the answer streams or not, `rap` and
//! `x-rap-concepts` name the concepts, bad requests are JSON errors, and a full worker pool
//! answers 503 with Retry-After.

use crate::common::*;
use std::io::{BufRead, BufReader};

const RED: [u8; 3] = [200, 30, 30];

fn data_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn with_bo(s: &Server) {
    let c = client();
    json(
        post_form(
            &c,
            &s.url("/v1/concepts"),
            None,
            Multipart::new()
                .text("name", "bo")
                .text("info", "<bo> is a red fox plush.")
                .file("image", "bo.png", &photo(RED, 90, 90, 1)),
        ),
        201,
    );
}

fn ask(image: &[u8], stream: bool) -> serde_json::Value {
    ask_about(image, stream, "Who is this?")
}

fn ask_about(image: &[u8], stream: bool, question: &str) -> serde_json::Value {
    serde_json::json!({
        "model": "anything",
        "stream": stream,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": question},
                {"type": "image_url", "image_url": {"url": data_url(image)}}
            ]}
        ]
    })
}

/// A concept the question names and the photo shows is one concept with both facts: the model
/// is told where it is in the photo, not that nothing was recognised.
#[test]
fn a_concept_named_and_seen_keeps_its_place_in_the_photo() {
    let s = Server::start();
    with_bo(&s);
    let query = photo(RED, 110, 100, 7);
    let v = json(
        client()
            .post(s.url("/v1/chat/completions"))
            .json(&ask_about(&query, false, "What is <bo> doing?"))
            .send()
            .unwrap(),
        200,
    );
    let answer = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        answer.starts_with("The image shows <bo> (similarity "),
        "{answer}"
    );
    assert!(answer.contains(", region ["), "{answer}");
    assert!(!answer.contains("none of their saved concepts"), "{answer}");
    let concepts = v["rap"]["concepts"].as_array().unwrap();
    assert_eq!(concepts.len(), 1, "{v}");
    assert_eq!(concepts[0]["via"], "text+image");
    assert!(concepts[0]["score"].as_f64().unwrap() < 1.0, "{v}");
    assert_eq!(concepts[0]["box"].as_array().unwrap().len(), 4);
}

#[test]
fn chat_answers_with_the_retrieved_concept_streamed_or_not() {
    let s = Server::start();
    with_bo(&s);
    let c = client();
    let models = json(c.get(s.url("/v1/models")).send().unwrap(), 200);
    assert_eq!(models["data"][0]["id"], "echo-1");

    let query = photo(RED, 110, 100, 7);
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&ask(&query, false))
        .send()
        .unwrap();
    assert_eq!(res.headers()["x-rap-concepts"], "bo");
    let v = json(res, 200);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "echo-1");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let answer = v["choices"][0]["message"]["content"].as_str().unwrap();
    // The generator got the engine's text-only RAP turn with the retrieved concept.
    assert!(
        answer.starts_with("The image shows <bo> (similarity "),
        "{answer}"
    );
    assert!(answer.contains(", region ["), "{answer}");
    assert!(answer.contains("\n<bo> is a red fox plush.\n"), "{answer}");
    assert!(answer.ends_with("\n\nWho is this?"), "{answer}");
    assert_eq!(v["rap"]["mode"], "text-only");
    assert_eq!(v["rap"]["concepts"][0]["name"], "bo");
    assert_eq!(v["rap"]["concepts"][0]["via"], "image");
    assert_eq!(v["rap"]["concepts"][0]["box"].as_array().unwrap().len(), 4);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 5);

    // Streamed: the same text in chunks, `rap` in the first, then finish and [DONE].
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&ask(&query, true))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(res.headers()["x-rap-concepts"], "bo");
    let mut chunks = Vec::new();
    let mut done = false;
    for line in BufReader::new(res).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            break;
        }
        chunks.push(serde_json::from_str::<serde_json::Value>(data).unwrap());
    }
    assert!(done, "no [DONE]");
    assert_eq!(chunks[0]["rap"]["concepts"][0]["name"], "bo");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, answer);
    assert!(chunks.len() > 5);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // max_tokens is honoured; a photo of nothing known retrieves nothing.
    let mut short = ask(&photo([20, 20, 20], 80, 80, 3), false);
    short["max_tokens"] = serde_json::json!(3);
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&short)
        .send()
        .unwrap();
    assert_eq!(res.headers()["x-rap-concepts"], "");
    let v = json(res, 200);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["rap"]["concepts"], serde_json::json!([]));
}

#[test]
fn chat_refuses_bad_requests_with_json_errors() {
    let s = Server::start();
    let c = client();
    let post = |body: &str| {
        c.post(s.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    error(
        post("{\"messages\": [{\"role\": \"user\""),
        400,
        "invalid_request_error",
        "request body",
    );
    error(
        post("{\"model\": \"m\"}"),
        400,
        "invalid_request_error",
        "messages",
    );
    error(
        post("{\"messages\": []}"),
        400,
        "invalid_request_error",
        "at least one message",
    );
    error(
        post(
            r#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/x.png"}}]}]}"#,
        ),
        400,
        "invalid_request_error",
        "disabled",
    );
    error(
        post(
            r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]}"#,
        ),
        400,
        "invalid_request_error",
        "query image",
    );
    error(
        post(r#"{"messages": [{"role": "user", "content": "   "}]}"#),
        400,
        "invalid_request_error",
        "question is empty",
    );
    error(
        post(r#"{"n": 2, "messages": [{"role": "user", "content": "hi"}]}"#),
        400,
        "invalid_request_error",
        "n:",
    );
    let res = c
        .post(s.url("/v1/chat/completions"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .unwrap();
    error(res, 415, "invalid_request_error", "Content-Type");
}

#[test]
fn a_full_pool_answers_503_with_retry_after() {
    let (dir, engine) = Server::engine();
    let s = Server::start_full(
        dir,
        engine,
        |cfg| {
            cfg.workers = 1;
            cfg.queue = 0;
        },
        std::time::Duration::from_millis(40),
    );
    let body = serde_json::json!({"messages": [{"role": "user", "content": "one two three four five six seven eight nine ten"}]});
    let results: Vec<(u16, Option<String>, serde_json::Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let body = body.clone();
                let url = s.url("/v1/chat/completions");
                scope.spawn(move || {
                    let res = client().post(url).json(&body).send().unwrap();
                    let status = res.status().as_u16();
                    let retry = res
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    (status, retry, res.json().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let busy: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert!(ok >= 1, "{results:?}");
    assert!(!busy.is_empty(), "{results:?}");
    assert_eq!(ok + busy.len(), 4, "{results:?}");
    for b in busy {
        assert_eq!(b.1.as_deref(), Some("1"));
        assert_eq!(b.2["error"]["type"], "server_busy");
    }
}

/// Serves `body` as `image/png` to every request on a loopback port; returns the port.
fn serve_image_once_per_request(body: Vec<u8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    port
}

#[test]
fn http_image_urls_are_fetched_only_when_allowed() {
    let port = serve_image_once_per_request(photo(RED, 110, 100, 7));
    let url = format!("http://127.0.0.1:{port}/q.png");
    let request = |url: &str| {
        serde_json::json!({
            "model": "anything",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Who is this?"},
                {"type": "image_url", "image_url": {"url": url}}
            ]}]
        })
    };
    let c = client();

    // Off by default: refused, nothing fetched.
    let s = Server::start();
    with_bo(&s);
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&request(&url))
        .send()
        .unwrap();
    error(res, 400, "invalid_request_error", "image URLs are disabled");

    // Allowed: the image is fetched and its concept retrieved.
    let s = Server::start_with(|config| config.allow_image_urls = true);
    with_bo(&s);
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&request(&url))
        .send()
        .unwrap();
    assert_eq!(res.headers()["x-rap-concepts"], "bo");
    let v = json(res, 200);
    assert_eq!(v["rap"]["concepts"][0]["via"], "image");

    // A URL nobody answers is a clear client error, not a hang or a 500.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let res = c
        .post(s.url("/v1/chat/completions"))
        .json(&request(&format!("http://127.0.0.1:{closed}/gone.png")))
        .send()
        .unwrap();
    assert!(
        res.status().is_client_error() || res.status() == 502,
        "{}",
        res.status()
    );
}
