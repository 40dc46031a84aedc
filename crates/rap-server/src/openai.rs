//! The OpenAI-compatible, personalized endpoint: `GET /v1/models` and
//! `POST /v1/chat/completions` (streamed as server-sent events, or not).
//!
//! A request's messages are read as OpenAI clients send them (text, and `image_url` parts
//! with `data:` URLs; http(s) URLs only when the server allows them). The first user turn's
//! text and the conversation's first image go to [`rap_engine::Engine::conversation`], which
//! retrieves the tenant's concepts and lays that turn out in the RAP format (or its text-only
//! variant for a model that cannot see images); system messages before it and later turns
//! (as text) are kept around it. The configured generator answers. The response is standard,
//! plus a `rap` object (`concepts` with scores and boxes, `mode`, `warnings`) and the header
//! `x-rap-concepts` (the names used, percent-encoded, comma-separated). Streams carry `rap`
//! in their first chunk.

use crate::auth::RequestTenant;
use crate::{ApiError, AppState};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use rap_core::{FinishReason, Generation, GenerationParams, Message, Role};
use rap_engine::{Question, Target, UsedConcept};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

/// The response header naming the concepts used.
pub const CONCEPTS_HEADER: &str = "x-rap-concepts";

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    /// How many choices; only 1 is supported.
    pub n: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub image_url: Option<ImageUrl>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl {
    Object { url: String },
    Plain(String),
}

impl ImageUrl {
    fn url(&self) -> &str {
        match self {
            ImageUrl::Object { url } | ImageUrl::Plain(url) => url,
        }
    }
}

/// Where the query image comes from.
#[derive(Debug, Clone)]
enum ImageSource {
    Bytes(Vec<u8>),
    Remote(String),
}

/// The request, read: messages around the first user turn, that turn's text, the image.
#[derive(Debug)]
struct Parsed {
    before: Vec<Message>,
    first_text: String,
    image: Option<ImageSource>,
    after: Vec<Message>,
    ignored_images: usize,
}

fn role_of(s: &str) -> Result<Role, ApiError> {
    match s {
        "system" | "developer" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        other => Err(ApiError::bad_request(format!(
            "messages: role {other:?} is not supported (use system, user or assistant)"
        ))),
    }
}

/// Decodes a `data:image/...;base64,...` URL.
pub fn decode_data_url(url: &str) -> Result<Vec<u8>, ApiError> {
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| ApiError::bad_request("image_url: not a data: URL"))?;
    let (meta, data) = rest.split_once(',').ok_or_else(|| {
        ApiError::bad_request("image_url: a data: URL needs a comma before its data")
    })?;
    if !meta.ends_with(";base64") {
        return Err(ApiError::bad_request(
            "image_url: only base64 data: URLs are supported (data:image/png;base64,...)",
        ));
    }
    let clean: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| {
            ApiError::bad_request(format!("image_url: the data: URL is not valid base64: {e}"))
        })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("image_url: the image is empty"));
    }
    Ok(bytes)
}

/// The chat limits, checked before anything else reads the messages: at most `max_text`
/// bytes of text and `max_images` images in all.
fn check_limits(req: &ChatRequest, max_text: usize, max_images: usize) -> Result<(), ApiError> {
    let (mut text, mut images) = (0usize, 0usize);
    for m in &req.messages {
        match &m.content {
            None => {}
            Some(Content::Text(t)) => text += t.len(),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    text += p.text.as_ref().map_or(0, String::len);
                    images += usize::from(p.kind == "image_url");
                }
            }
        }
    }
    rap_core::Limits::check("max_chat_text_bytes", max_text as u64, text as u64, || {
        format!("the messages hold {text} bytes of text")
    })?;
    rap_core::Limits::check("max_chat_images", max_images as u64, images as u64, || {
        format!("the messages hold {images} images")
    })?;
    Ok(())
}

fn parse(req: &ChatRequest, allow_urls: bool) -> Result<Parsed, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("messages: give at least one message"));
    }
    let first_user = req
        .messages
        .iter()
        .position(|m| m.role == "user")
        .ok_or_else(|| ApiError::bad_request("messages: there is no user message"))?;
    let mut parsed = Parsed {
        before: Vec::new(),
        first_text: String::new(),
        image: None,
        after: Vec::new(),
        ignored_images: 0,
    };
    for (i, m) in req.messages.iter().enumerate() {
        let role = role_of(&m.role)?;
        let mut texts = Vec::new();
        let mut images = Vec::new();
        match &m.content {
            None => {}
            Some(Content::Text(t)) => texts.push(t.clone()),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match p.kind.as_str() {
                        "text" => texts.push(p.text.clone().unwrap_or_default()),
                        "image_url" => {
                            let url = p
                                .image_url
                                .as_ref()
                                .map(ImageUrl::url)
                                .ok_or_else(|| ApiError::bad_request(format!("messages[{i}]: an image_url part needs image_url.url")))?;
                            if role != Role::User {
                                return Err(ApiError::bad_request(format!(
                                    "messages[{i}]: only user messages may carry images"
                                )));
                            }
                            let source = if url.starts_with("data:") {
                                ImageSource::Bytes(decode_data_url(url)?)
                            } else if url.starts_with("http://") || url.starts_with("https://") {
                                if !allow_urls {
                                    return Err(ApiError::bad_request(
                                        "image_url: http(s) image URLs are disabled on this server; send the image as a data: URL (or set [server] allow_image_urls = true in config.toml)",
                                    ));
                                }
                                ImageSource::Remote(url.to_string())
                            } else {
                                return Err(ApiError::bad_request(
                                    "image_url: use a data:image/...;base64 URL",
                                ));
                            };
                            images.push(source);
                        }
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "messages[{i}]: content part type {other:?} is not supported (use text or image_url)"
                            )))
                        }
                    }
                }
            }
        }
        for img in images {
            if parsed.image.is_none() {
                parsed.image = Some(img);
            } else {
                parsed.ignored_images += 1;
            }
        }
        let text = texts.join("\n");
        if i == first_user {
            parsed.first_text = text;
        } else {
            let msg = Message::text(role, text);
            if i < first_user {
                parsed.before.push(msg);
            } else {
                parsed.after.push(msg);
            }
        }
    }
    Ok(parsed)
}

/// Fetches an http(s) image (only when the server allows it), bounded in size and time.
fn fetch_image(url: &str, max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    rap_llm::http::install_tls_provider();
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .map_err(|e| ApiError::internal(format!("HTTP client: {e}")))?;
    let res = client
        .get(url)
        .send()
        .map_err(|e| ApiError::bad_request(format!("image_url: could not fetch {url}: {e}")))?;
    if !res.status().is_success() {
        return Err(ApiError::bad_request(format!(
            "image_url: {url} answered {}",
            res.status()
        )));
    }
    let mut bytes = Vec::new();
    res.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ApiError::bad_request(format!("image_url: reading {url}: {e}")))?;
    if bytes.len() > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("image_url: {url} is larger than {max_bytes} bytes"),
        ));
    }
    Ok(bytes)
}

/// What the generator's worker reports.
enum Event {
    Started(RapInfo),
    Text(String),
    Done(Generation),
    Failed(ApiError),
}

/// The `rap` object of a response.
#[derive(Debug, Clone, serde::Serialize)]
struct RapInfo {
    concepts: Vec<UsedConcept>,
    mode: &'static str,
    warnings: Vec<String>,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

fn concepts_header(concepts: &[UsedConcept]) -> HeaderValue {
    let names: Vec<String> = concepts
        .iter()
        .map(|c| {
            c.name
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        })
        .collect();
    HeaderValue::from_str(&names.join(",")).unwrap_or(HeaderValue::from_static(""))
}

/// `GET /v1/models`: the configured generator's model.
pub async fn models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let data: Vec<serde_json::Value> = match state.generator() {
        Ok(g) => vec![serde_json::json!({
            "id": g.generator.info().model,
            "object": "model",
            "created": 0,
            "owned_by": "rap",
            "rap": {
                "accepts_images": g.generator.info().accepts_images,
                "context_length": g.generator.info().context_length,
            }
        })],
        Err(_) => vec![],
    };
    Ok(Json(serde_json::json!({ "object": "list", "data": data })).into_response())
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(RequestTenant(tenant)): Extension<RequestTenant>,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    check_limits(
        &req,
        state.config().max_chat_text_bytes,
        state.config().max_chat_images,
    )?;
    let generator = state
        .generator()
        .map_err(|why| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_unavailable", why))?
        .clone();
    if req.n.unwrap_or(1) != 1 {
        return Err(ApiError::bad_request(
            "n: only one choice (n = 1) is supported",
        ));
    }
    let parsed = parse(&req, state.config().allow_image_urls)?;
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(state.config().default_max_tokens);
    if max_tokens == 0 {
        return Err(ApiError::bad_request("max_tokens must be at least 1"));
    }
    let temperature = req.temperature.unwrap_or(generator.temperature);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_request("temperature must be between 0 and 2"));
    }
    let mut stop = generator.stop.clone();
    match &req.stop {
        Some(Stop::One(s)) => stop.push(s.clone()),
        Some(Stop::Many(v)) => stop.extend(v.iter().cloned()),
        None => {}
    }
    let params = GenerationParams {
        max_tokens,
        temperature,
        top_p: req.top_p.unwrap_or(1.0),
        seed: req.seed,
        stop,
        repetition_penalty: generator.repetition_penalty,
    };
    let model = generator.generator.info().model.clone();
    let retrieve = state.config().retrieve.clone();
    let max_body = state.config().max_body_bytes;
    let engine = state.engine().clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(256);
    state.pool().submit(move |admitted| {
        if let Err(e) = admitted {
            let _ = tx.blocking_send(Event::Failed(e));
            return;
        }
        let run = || -> Result<(), ApiError> {
            let image = match parsed.image {
                Some(ImageSource::Bytes(b)) => Some(b),
                Some(ImageSource::Remote(url)) => Some(fetch_image(&url, max_body)?),
                None => None,
            };
            let question = Question {
                text: &parsed.first_text,
                image: image.as_deref(),
                concepts: Vec::new(),
                retrieve,
            };
            let surround = |first: &[Message]| -> Vec<Message> {
                let mut all = parsed.before.clone();
                all.extend_from_slice(first);
                all.extend(parsed.after.iter().cloned());
                all
            };
            let count = |first: &[Message]| -> rap_core::Result<usize> {
                let all = surround(first);
                match &generator.count_tokens {
                    Some(c) => c(&all),
                    None => Ok(rap_engine::answer::estimate_tokens(&all)),
                }
            };
            let info = generator.generator.info();
            let target = Target {
                accepts_images: info.accepts_images,
                context_length: info.context_length,
                reserve: params.max_tokens,
                count_tokens: Some(&count),
            };
            let conv = engine
                .conversation(&tenant, &question, &target)
                .map_err(|e| match e {
                    rap_core::Error::InvalidInput(m) => ApiError::bad_request(m),
                    other => other.into(),
                })?;
            let mut warnings = conv.warnings.clone();
            if parsed.ignored_images > 0 {
                warnings.push(format!(
                    "{} more image(s) ignored: rap uses the conversation's first image",
                    parsed.ignored_images
                ));
            }
            let started = RapInfo {
                concepts: conv.concepts.clone(),
                mode: conv.mode.as_str(),
                warnings,
            };
            if tx.blocking_send(Event::Started(started)).is_err() {
                return Ok(()); // the client went away
            }
            let messages = surround(&conv.messages);
            // An answer that starts by copying an earlier assistant turn (small models echo)
            // is asked again as the latest question alone, with the concepts' facts.
            let retry = || -> rap_core::Result<Vec<Message>> {
                let latest = parsed
                    .after
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map(|m| rap_llm::render_parts_with(&m.parts, ""))
                    .unwrap_or_else(|| parsed.first_text.clone());
                let question = Question {
                    text: &latest,
                    image: image.as_deref(),
                    concepts: conv.concepts.iter().map(|c| c.name.clone()).collect(),
                    retrieve: question.retrieve.clone(),
                };
                let mut all = parsed.before.clone();
                all.extend(engine.conversation(&tenant, &question, &target)?.messages);
                Ok(all)
            };
            let (generation, _echoed) = rap_engine::chat::generate_without_echo(
                generator.generator.as_ref(),
                &messages,
                &params,
                &mut |t| tx.blocking_send(Event::Text(t.to_string())).is_ok(),
                retry,
            )?;
            let _ = tx.blocking_send(Event::Done(generation));
            Ok(())
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Event::Failed(e));
        }
    })?;

    let rap = match rx.recv().await {
        Some(Event::Started(info)) => info,
        Some(Event::Failed(e)) => return Err(e),
        _ => {
            return Err(ApiError::internal(
                "the answer failed unexpectedly (see the server log)",
            ))
        }
    };
    let id = format!("chatcmpl-{:x}{:08x}", now_s(), rand_u32());
    let created = now_s();
    let header = concepts_header(&rap.concepts);

    if !req.stream {
        let mut text = String::new();
        let generation = loop {
            match rx.recv().await {
                Some(Event::Text(t)) => text.push_str(&t),
                Some(Event::Done(g)) => break g,
                Some(Event::Failed(e)) => return Err(e),
                _ => return Err(ApiError::internal("the answer ended unexpectedly")),
            }
        };
        let body = serde_json::json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": generation.text },
                "finish_reason": finish_str(generation.finish_reason),
            }],
            "usage": {
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": generation.completion_tokens,
                "total_tokens": generation.prompt_tokens + generation.completion_tokens,
            },
            "rap": rap,
        });
        let mut res = Json(body).into_response();
        res.headers_mut()
            .insert(HeaderName::from_static(CONCEPTS_HEADER), header);
        return Ok(res);
    }

    let chunk = move |delta: serde_json::Value, finish: Option<&str>, extra: Option<&RapInfo>| {
        let mut v = serde_json::json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        if let Some(r) = extra {
            v["rap"] = serde_json::to_value(r).unwrap_or_default();
        }
        SseEvent::default().data(v.to_string())
    };
    let first = chunk(
        serde_json::json!({ "role": "assistant", "content": "" }),
        None,
        Some(&rap),
    );
    enum St {
        First(SseEvent),
        Running,
        Done,
    }
    let stream = futures_util::stream::unfold(
        (St::First(first), rx, chunk),
        |(st, mut rx, chunk)| async move {
            match st {
                St::First(ev) => Some((Ok::<_, Infallible>(ev), (St::Running, rx, chunk))),
                St::Done => None,
                St::Running => match rx.recv().await {
                    Some(Event::Text(t)) => {
                        let ev = chunk(serde_json::json!({ "content": t }), None, None);
                        Some((Ok(ev), (St::Running, rx, chunk)))
                    }
                    Some(Event::Done(g)) => {
                        let ev = chunk(
                            serde_json::json!({}),
                            Some(finish_str(g.finish_reason)),
                            None,
                        );
                        // Followed by the [DONE] marker, then the end.
                        Some((Ok(ev), (St::Done, rx, chunk)))
                    }
                    Some(Event::Failed(e)) => {
                        let ev = SseEvent::default().data(e.body().to_string());
                        Some((Ok(ev), (St::Done, rx, chunk)))
                    }
                    Some(Event::Started(_)) | None => None,
                },
            }
        },
    );
    let done = futures_util::stream::once(async {
        Ok::<_, Infallible>(SseEvent::default().data("[DONE]"))
    });
    use futures_util::StreamExt;
    let mut res = Sse::new(stream.chain(done))
        .keep_alive(KeepAlive::default())
        .into_response();
    res.headers_mut()
        .insert(HeaderName::from_static(CONCEPTS_HEADER), header);
    Ok(res)
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_s());
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> ChatRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_text_and_image_parts_around_the_first_user_turn() {
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNGfake");
        let r = req(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Who is this?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}
                ]},
                {"role": "assistant", "content": "A dog."},
                {"role": "user", "content": "Which one?"}
            ]
        }));
        let p = parse(&r, false).unwrap();
        assert_eq!(p.first_text, "Who is this?");
        assert!(matches!(&p.image, Some(ImageSource::Bytes(b)) if b == b"\x89PNGfake"));
        assert_eq!(p.before, vec![Message::text(Role::System, "Be brief.")]);
        assert_eq!(
            p.after,
            vec![
                Message::text(Role::Assistant, "A dog."),
                Message::text(Role::User, "Which one?")
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_use_with_clear_messages() {
        let cases = [
            (serde_json::json!({"messages": []}), "at least one message"),
            (
                serde_json::json!({"messages": [{"role": "system", "content": "x"}]}),
                "no user message",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "x"}]}),
                "not supported",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]}]}),
                "disabled",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]}]}),
                "base64",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}),
                "data:image",
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "audio", "text": "x"}]}]}),
                "not supported",
            ),
        ];
        for (json, want) in cases {
            let e = parse(&req(json.clone()), false).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{json}");
            assert!(e.message.contains(want), "{json}: {}", e.message);
        }
        let r = req(
            serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]}]}),
        );
        assert!(matches!(
            parse(&r, true).unwrap().image,
            Some(ImageSource::Remote(_))
        ));
    }
}
