//! Fuzzing of the request parsers over HTTP (see `rap_fuzz`): multipart forms on
//! `POST /v1/concepts` and `POST /v1/retrieve`, chat JSON on `POST /v1/chat/completions`.
//! Any input may be refused; none may make the server answer 500, hang or die.

use crate::common::*;
use rap_fuzz::fuzz;

const RED: [u8; 3] = [220, 30, 30];

fn form(parts: Multipart) -> Vec<u8> {
    parts.finish().1
}

fn post(c: &reqwest::blocking::Client, url: &str, content_type: &str, body: &[u8]) {
    let res = c
        .post(url)
        .header("content-type", content_type)
        .body(body.to_vec())
        .send()
        .unwrap_or_else(|e| panic!("no answer from {url}: {e}"));
    let status = res.status().as_u16();
    let text = res.text().unwrap_or_default();
    assert!(status != 500, "{url} answered 500: {text}");
}

#[test]
fn request_parsers_never_fail_the_server() {
    let s = Server::start();
    let c = client();
    let photo = photo(RED, 24, 20, 1);
    json(
        post_form(
            &c,
            &s.url("/v1/concepts"),
            None,
            Multipart::new()
                .text("name", "Bo")
                .file("image", "bo.png", &photo),
        ),
        201,
    );
    let content_type = Multipart::new().finish().0;

    let concepts = [
        form(
            Multipart::new()
                .text("name", "Rex")
                .text("info", "<Rex> is a red fox plush.")
                .text("category", "toy")
                .text("alias", "foxy")
                .file("image", "rex.png", &photo),
        ),
        form(
            Multipart::new()
                .text("name", "")
                .file("image", "x.png", b"not an image"),
        ),
    ];
    fuzz("server_concepts_multipart", &concepts, |body| {
        post(&c, &s.url("/v1/concepts"), &content_type, body);
    });

    let retrieve = [
        form(
            Multipart::new()
                .file("image", "q.png", &photo)
                .text("top_k", "2")
                .text("text", "is <bo> here?"),
        ),
        form(
            Multipart::new()
                .text("threshold", "0.5")
                .text("margin", "-1"),
        ),
    ];
    fuzz("server_retrieve_multipart", &retrieve, |body| {
        post(&c, &s.url("/v1/retrieve"), &content_type, body);
    });

    let data_url = {
        use base64::Engine as _;
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&photo)
        )
    };
    let chats = [
        serde_json::json!({
            "model": "anything", "stream": false, "temperature": 0, "max_tokens": 8,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Who is <bo>?"},
                    {"type": "image_url", "image_url": {"url": data_url}}
                ]}
            ]
        }),
        serde_json::json!({
            "messages": [{"role": "user", "content": "one two"}, {"role": "assistant", "content": "x"},
                         {"role": "user", "content": "and <Bo>?"}],
            "stream": true, "max_tokens": 4, "stop": ["two"]
        }),
    ]
    .map(|v| v.to_string().into_bytes());
    fuzz("server_chat_json", &chats, |body| {
        post(&c, &s.url("/v1/chat/completions"), "application/json", body);
    });

    // Still answering.
    json(c.get(s.url("/v1/concepts")).send().unwrap(), 200);
}
