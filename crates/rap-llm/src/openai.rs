//! A [`Generator`] backed by any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp's
//! server, Ollama, LM Studio, OpenAI).
//!
//! It POSTs `{base_url}/chat/completions` with `stream: true` and reads the server-sent events
//! (`data:` lines, `[DONE]`, `choices[0].delta.content`), calling `on_text` for each piece.
//! Messages keep the RAP layout: a message with images is sent as content parts, text and
//! `image_url` parts (data URLs) interleaved exactly where the layout has `<image>`; a message
//! with text only is sent as a plain string (what every server accepts).
//!
//! Robustness:
//! - connect timeout and read timeout (`timeout_secs` is the longest wait for the response
//!   headers or for the next piece of the stream);
//! - before the stream starts, connection failures and HTTP 429 / 500 / 502 / 503 / 504 are
//!   retried `max_retries` times with exponential backoff (`retry_backoff_ms`, doubling, at most
//!   8 s; a `Retry-After` header in seconds is honoured up to 30 s). A timeout is not retried: the
//!   server may still be working on it;
//! - errors say what failed: "cannot reach the generator at URL: ...", the server's HTTP error
//!   body, a model that does not accept images (detected from the server's error message), a
//!   stream that ends before the answer does;
//! - cancellation: when `on_text` returns `false` the response is dropped, which closes the
//!   connection, and the generation ends as [`FinishReason::Cancelled`].
//!
//! The client is reqwest's blocking client, so a generator must not be created or used on an
//! async runtime's worker thread: async callers use `spawn_blocking`.

use crate::neutralize::neutralize;
use base64::Engine as _;
use rap_core::{
    Error, FinishReason, Generation, GenerationParams, Generator, GeneratorInfo, Message, Part,
    Result, Role,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// Configuration of an OpenAI-compatible backend (a section of the TOML config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API root, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The model name the server knows.
    pub model: String,
    /// The NAME of the environment variable that holds the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Longest wait, in seconds, for the response to start or for the next piece of the stream.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Longest wait, in seconds, to connect.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Retries on connection errors and HTTP 429/5xx before the stream starts.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First backoff delay in milliseconds; doubles at each retry.
    #[serde(default = "default_backoff")]
    pub retry_backoff_ms: u64,
    /// Whether the model takes images. When false, a conversation with images is refused
    /// before anything is sent.
    #[serde(default = "yes")]
    pub accepts_images: bool,
    /// The model's context length, when known.
    #[serde(default)]
    pub context_length: Option<usize>,
    /// Also send `max_completion_tokens` (newer OpenAI models want it; most servers read
    /// `max_tokens`, which is always sent).
    #[serde(default)]
    pub send_max_completion_tokens: bool,
    /// Ask for token usage in the last chunk (`stream_options.include_usage`).
    #[serde(default = "yes")]
    pub stream_usage: bool,
    /// Stream the answer (server-sent events). When false the whole answer comes at once and
    /// `on_text` is called once; the read timeout then covers the whole generation.
    #[serde(default = "yes")]
    pub stream: bool,
}

fn default_timeout() -> u64 {
    120
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_retries() -> u32 {
    2
}
fn default_backoff() -> u64 {
    500
}
fn yes() -> bool {
    true
}

impl OpenAiConfig {
    /// A config with the defaults for everything but the server and the model.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            timeout_secs: default_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            max_retries: default_retries(),
            retry_backoff_ms: default_backoff(),
            accepts_images: true,
            context_length: None,
            send_max_completion_tokens: false,
            stream_usage: true,
            stream: true,
        }
    }
}

/// The OpenAI-compatible generator.
pub struct OpenAiGenerator {
    cfg: OpenAiConfig,
    base: String,
    client: reqwest::blocking::Client,
    api_key: Option<String>,
    info: GeneratorInfo,
}

impl std::fmt::Debug for OpenAiGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("OpenAiGenerator")
            .field("base_url", &self.base)
            .field("model", &self.cfg.model)
            .finish()
    }
}

impl OpenAiGenerator {
    /// [`Self::with_key_lookup`] with nothing to look keys up in: for servers without keys (a
    /// config that names `api_key_env` is refused).
    pub fn new(cfg: OpenAiConfig) -> Result<Self> {
        Self::with_key_lookup(cfg, |_| None)
    }

    /// Checks the config, takes the API key from `lookup` of the variable `api_key_env` names
    /// (the application passes the process's environment), and builds the HTTP client.
    /// Nothing is sent yet.
    pub fn with_key_lookup(
        cfg: OpenAiConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let base = cfg.base_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "generator base_url {:?} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)",
                cfg.base_url
            )));
        }
        if cfg.model.trim().is_empty() {
            return Err(Error::invalid(format!(
                "generator at {base}: no model name given"
            )));
        }
        let api_key = match &cfg.api_key_env {
            None => None,
            Some(name) => match lookup(name) {
                Some(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
                _ => {
                    return Err(Error::invalid(format!(
                        "the environment variable {name} (api_key_env of the generator at {base}) is not set"
                    )))
                }
            },
        };
        crate::http::install_tls_provider();
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs.max(1)))
            .timeout(Duration::from_secs(cfg.timeout_secs.max(1)))
            .build()
            .map_err(|e| Error::Model(format!("cannot build the HTTP client: {}", chain(&e))))?;
        let info = GeneratorInfo {
            model: cfg.model.clone(),
            accepts_images: cfg.accepts_images,
            context_length: cfg.context_length,
        };
        Ok(OpenAiGenerator {
            cfg,
            base,
            client,
            api_key,
            info,
        })
    }

    /// The config this generator was built from.
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// The model ids the server lists (`GET {base_url}/models`).
    pub fn list_models(&self) -> Result<Vec<String>> {
        let url = format!("{}/models", self.base);
        let resp = self.send_with_retries(|| self.authorize(self.client.get(&url)), false)?;
        let v: Value = resp.json().map_err(|e| {
            Error::Model(format!(
                "the generator at {} sent an unreadable model list: {}",
                self.base,
                chain(&e)
            ))
        })?;
        let ids = v
            .get("data")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .ok_or_else(|| {
                Error::Model(format!(
                    "the generator at {} sent a model list without `data`: {}",
                    self.base,
                    truncate(&v.to_string(), 500)
                ))
            })?;
        Ok(ids)
    }

    /// The JSON body sent for a conversation (public so that tools can show it).
    pub fn request_body(&self, messages: &[Message], params: &GenerationParams) -> Value {
        let msgs: Vec<Value> = messages.iter().map(message_json).collect();
        let mut body = json!({
            "model": self.cfg.model,
            "messages": msgs,
            "stream": self.cfg.stream,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        });
        if self.cfg.send_max_completion_tokens {
            body["max_completion_tokens"] = json!(params.max_tokens);
        }
        if self.cfg.stream && self.cfg.stream_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(seed) = params.seed {
            body["seed"] = json!(seed);
        }
        if !params.stop.is_empty() {
            body["stop"] = json!(params.stop);
        }
        body
    }

    fn authorize(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ms = self
            .cfg
            .retry_backoff_ms
            .saturating_mul(1u64 << attempt.min(16));
        Duration::from_millis(ms.min(8_000))
    }

    /// Sends a request, retrying connection errors and 429/5xx; returns a 2xx response.
    fn send_with_retries<F>(&self, make: F, has_images: bool) -> Result<reqwest::blocking::Response>
    where
        F: Fn() -> reqwest::blocking::RequestBuilder,
    {
        let mut attempt = 0u32;
        loop {
            let last = attempt >= self.cfg.max_retries;
            match make().send() {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let retryable = matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504);
                    let wait = retry_after(&resp)
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(Duration::from_secs(30));
                    let body = resp.text().unwrap_or_default();
                    let msg = server_message(&body);
                    // A refused image is final: asking again gives the same answer.
                    let refused = has_images && looks_like_image_refusal(status.as_u16(), &msg);
                    if retryable && !last && !refused {
                        tracing::warn!(
                            "generator at {} answered HTTP {status}; retrying in {:?}",
                            self.base,
                            wait
                        );
                        std::thread::sleep(wait);
                    } else {
                        return Err(self.http_error(status, &msg, has_images));
                    }
                }
                // A connect timeout is a connection failure (below); this is a slow answer.
                Err(e) if e.is_timeout() && !e.is_connect() => {
                    return Err(Error::unavailable(format!(
                        "the generator at {} did not answer within {} s (timeout_secs): {}",
                        self.base,
                        self.cfg.timeout_secs,
                        chain(&e)
                    )))
                }
                Err(e) => {
                    if last {
                        return Err(Error::unavailable(format!(
                            "cannot reach the generator at {}: {}{}",
                            self.base,
                            chain(&e),
                            if self.cfg.max_retries > 0 {
                                format!(" (after {} retries)", self.cfg.max_retries)
                            } else {
                                String::new()
                            }
                        )));
                    }
                    let wait = self.backoff(attempt);
                    tracing::warn!(
                        "cannot reach the generator at {}: {}; retrying in {:?}",
                        self.base,
                        chain(&e),
                        wait
                    );
                    std::thread::sleep(wait);
                }
            }
            attempt += 1;
        }
    }

    fn http_error(&self, status: reqwest::StatusCode, msg: &str, has_images: bool) -> Error {
        if has_images && looks_like_image_refusal(status.as_u16(), msg) {
            return self.image_refusal(&format!("the server said: {}", truncate(msg, 1000)));
        }
        let hint = match status.as_u16() {
            401 | 403 => match &self.cfg.api_key_env {
                Some(n) => format!(" (check the API key in {n})"),
                None => " (the server wants an API key: set api_key_env)".to_string(),
            },
            404 => format!(
                " (is {} the API root, and is the model {:?} served there?)",
                self.base, self.cfg.model
            ),
            _ => String::new(),
        };
        Error::Model(format!(
            "the generator at {} answered HTTP {}: {}{hint}",
            self.base,
            status,
            truncate(msg, 2000)
        ))
    }
}

impl Generator for OpenAiGenerator {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if messages.is_empty() {
            return Err(Error::invalid("no message to send to the generator"));
        }
        let has_images = messages.iter().any(|m| m.images().next().is_some());
        if has_images && !self.cfg.accepts_images {
            return Err(Error::invalid(format!(
                "the model {} at {} is configured as text-only (accepts_images = false) but the \
                 conversation has images",
                self.cfg.model, self.base
            )));
        }
        let url = format!("{}/chat/completions", self.base);
        let body = self.request_body(messages, params);
        let resp = self.send_with_retries(
            || self.authorize(self.client.post(&url)).json(&body),
            has_images,
        )?;
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        if is_json {
            // The server ignored `stream: true`: one complete answer.
            let text = resp.text().map_err(|e| self.read_error(&e))?;
            return self.whole_answer(&text, on_text);
        }
        self.read_stream(resp, on_text, has_images)
    }
}

impl OpenAiGenerator {
    fn image_refusal(&self, detail: &str) -> Error {
        Error::Model(format!(
            "the model {} at {} does not accept images ({detail}); use a vision model, or a \
             text-only generator",
            self.cfg.model, self.base
        ))
    }

    fn read_error(&self, e: &dyn std::error::Error) -> Error {
        let s = chain(e);
        if s.to_lowercase().contains("timed out") || s.to_lowercase().contains("timeout") {
            Error::unavailable(format!(
                "the generator at {} stopped sending for {} s (timeout_secs): {s}",
                self.base, self.cfg.timeout_secs
            ))
        } else {
            Error::unavailable(format!(
                "lost the connection to the generator at {} while reading the answer: {s}",
                self.base
            ))
        }
    }

    fn whole_answer(
        &self,
        body: &str,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let v: Value = serde_json::from_str(body).map_err(|e| {
            Error::Model(format!(
                "the generator at {} sent unreadable JSON ({e}): {}",
                self.base,
                truncate(body, 500)
            ))
        })?;
        if let Some(err) = v.get("error") {
            return Err(Error::Model(format!(
                "the generator at {} reported an error: {}",
                self.base,
                error_text(err)
            )));
        }
        let choice = &v["choices"][0];
        let text = choice["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let finish = finish_reason(choice["finish_reason"].as_str()).unwrap_or(FinishReason::Stop);
        let (prompt_tokens, completion_tokens) = usage(&v);
        if !text.is_empty() && !on_text(&text) {
            return Ok(Generation {
                text,
                finish_reason: FinishReason::Cancelled,
                prompt_tokens,
                completion_tokens,
            });
        }
        Ok(Generation {
            text,
            finish_reason: finish,
            prompt_tokens,
            completion_tokens,
        })
    }

    fn read_stream(
        &self,
        resp: reqwest::blocking::Response,
        on_text: &mut dyn FnMut(&str) -> bool,
        has_images: bool,
    ) -> Result<Generation> {
        let mut any_event = false;
        let mut reader = BufReader::new(resp);
        let mut events = SseParser::default();
        let mut text = String::new();
        let mut finish: Option<FinishReason> = None;
        let mut chunks = 0usize;
        let (mut prompt_tokens, mut completion_tokens) = (0usize, None::<usize>);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| self.read_error(&e))?;
            let eof = n == 0;
            let event = if eof {
                events.finish()
            } else {
                let l = String::from_utf8_lossy(&line);
                events.push_line(&l)
            };
            if let Some(ev) = event {
                any_event = true;
                match self.handle_event(&ev)? {
                    StreamItem::Done => break,
                    StreamItem::Chunk {
                        content,
                        finish_reason,
                        usage: u,
                    } => {
                        if let Some((p, c)) = u {
                            prompt_tokens = p;
                            completion_tokens = Some(c);
                        }
                        if finish_reason.is_some() {
                            finish = finish_reason;
                        }
                        if let Some(c) = content.filter(|c| !c.is_empty()) {
                            text.push_str(&c);
                            chunks += 1;
                            if !on_text(&c) {
                                // Dropping the reader drops the response and closes the stream.
                                drop(reader);
                                return Ok(Generation {
                                    text,
                                    finish_reason: FinishReason::Cancelled,
                                    prompt_tokens,
                                    completion_tokens: completion_tokens.unwrap_or(chunks),
                                });
                            }
                        }
                    }
                    StreamItem::Nothing => {}
                }
            }
            if eof {
                break;
            }
        }
        if !any_event && has_images {
            // llama.cpp's server (llama-cpp-python) answers a text-only model's image request
            // with HTTP 200 and an empty event stream.
            return Err(
                self.image_refusal("the server closed the stream without a word when sent images")
            );
        }
        let Some(finish) = finish else {
            return Err(Error::Model(format!(
                "the generator at {} ended the stream before the answer was finished \
                 (after {} characters)",
                self.base,
                text.chars().count()
            )));
        };
        Ok(Generation {
            text,
            finish_reason: finish,
            prompt_tokens,
            completion_tokens: completion_tokens.unwrap_or(chunks),
        })
    }

    fn handle_event(&self, ev: &SseEvent) -> Result<StreamItem> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            return Ok(StreamItem::Done);
        }
        if data.is_empty() {
            return Ok(StreamItem::Nothing);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            Error::Model(format!(
                "the generator at {} sent an unreadable stream chunk ({e}): {}",
                self.base,
                truncate(data, 500)
            ))
        })?;
        if ev.event.as_deref() == Some("error") || v.get("error").is_some() {
            let err = v.get("error").unwrap_or(&v);
            return Err(Error::Model(format!(
                "the generator at {} reported an error mid-stream: {}",
                self.base,
                error_text(err)
            )));
        }
        let choice = v.get("choices").and_then(|c| c.get(0));
        let content = choice
            .and_then(|c| c.get("delta"))
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let fr = finish_reason(
            choice
                .and_then(|c| c.get("finish_reason"))
                .and_then(Value::as_str),
        );
        let u = v.get("usage").filter(|u| !u.is_null()).map(|_| usage(&v));
        Ok(StreamItem::Chunk {
            content,
            finish_reason: fr,
            usage: u,
        })
    }
}

enum StreamItem {
    Done,
    Nothing,
    Chunk {
        content: Option<String>,
        finish_reason: Option<FinishReason>,
        usage: Option<(usize, usize)>,
    },
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    /// The `event:` field, when given.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// A line-by-line parser of `text/event-stream` (comments, `event:`, multi-line `data:`,
/// events ended by a blank line).
#[derive(Debug, Default)]
pub struct SseParser {
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds one line (with or without its line ending); returns an event when the line ends one.
    pub fn push_line(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            return self.finish();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => self.data.push(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        None
    }

    /// Ends the current event (at a blank line or the end of the stream).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.data.is_empty() {
            self.event = None;
            return None;
        }
        let ev = SseEvent {
            event: self.event.take(),
            data: self.data.join("\n"),
        };
        self.data.clear();
        Some(ev)
    }
}

fn message_json(m: &Message) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let has_images = m.images().next().is_some();
    if !has_images {
        let text: String = m
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(neutralize(t)),
                Part::Image(_) => None,
            })
            .collect();
        return json!({"role": role, "content": text});
    }
    let parts: Vec<Value> = m
        .parts
        .iter()
        .filter(|p| !matches!(p, Part::Text(t) if t.is_empty()))
        .map(|p| match p {
            Part::Text(t) => json!({"type": "text", "text": neutralize(t)}),
            Part::Image(img) => json!({
                "type": "image_url",
                "image_url": {"url": data_url(&img.mime, &img.bytes)},
            }),
        })
        .collect();
    json!({"role": role, "content": parts})
}

/// `data:{mime};base64,{bytes}`.
pub fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{};base64,{}",
        mime,
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn finish_reason(s: Option<&str>) -> Option<FinishReason> {
    match s? {
        "length" => Some(FinishReason::Length),
        _ => Some(FinishReason::Stop),
    }
}

fn usage(v: &Value) -> (usize, usize) {
    let u = &v["usage"];
    let get = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
    (get("prompt_tokens"), get("completion_tokens"))
}

fn retry_after(resp: &reqwest::blocking::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: f64 = v.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The error message inside a server's error body (`{"error": {"message": ...}}`,
/// `{"error": "..."}`, `{"detail": ...}`, `{"message": ...}`), or the body itself.
fn server_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(e) = v.get("error") {
            return error_text(e);
        }
        for k in ["detail", "message"] {
            if let Some(d) = v.get(k) {
                return match d.as_str() {
                    Some(s) => s.to_string(),
                    None => d.to_string(),
                };
            }
        }
    }
    let t = body.trim();
    if t.is_empty() {
        "(empty body)".to_string()
    } else {
        t.to_string()
    }
}

fn error_text(e: &Value) -> String {
    if let Some(s) = e.as_str() {
        return s.to_string();
    }
    match e.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => e.to_string(),
    }
}

/// Whether a server's error says that the model cannot take images.
fn looks_like_image_refusal(status: u16, msg: &str) -> bool {
    if !(400..600).contains(&status) {
        return false;
    }
    let m = msg.to_lowercase();
    // llama-cpp-python renders a text model's chat template with the list of content parts
    // and fails in Python: "can only concatenate str (not \"list\") to str".
    if m.contains("(not \"list\")") {
        return true;
    }
    let about_images = ["image", "vision", "multimodal", "multi-modal", "mmproj"]
        .iter()
        .any(|k| m.contains(k));
    let refused = [
        "not support",
        "unsupported",
        "only supported",
        "not a multimodal",
        "not multimodal",
        "mmproj",
        "cannot",
        "can't",
        "invalid content type",
        "not enabled",
        "not allowed",
        "does not accept",
        "not accept",
    ]
    .iter()
    .any(|k| m.contains(k));
    about_images && refused
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max_chars).collect();
    t.push_str("...");
    t
}

/// An error and its sources, joined with `: `.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_handles_comments_crlf_multiline_and_eof() {
        let mut p = SseParser::default();
        assert_eq!(p.push_line(": ping\r\n"), None);
        assert_eq!(p.push_line("data: {\"a\":\r\n"), None);
        assert_eq!(p.push_line("data:1}\n"), None);
        assert_eq!(
            p.push_line("\r\n"),
            Some(SseEvent {
                event: None,
                data: "{\"a\":\n1}".into()
            })
        );
        assert_eq!(p.push_line("event: error"), None);
        assert_eq!(p.push_line("data: x"), None);
        assert_eq!(
            p.finish(),
            Some(SseEvent {
                event: Some("error".into()),
                data: "x".into()
            })
        );
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn image_refusals_are_recognised() {
        for m in [
            "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj",
            "Invalid content type. image_url is only supported by certain models.",
            "Qwen2ForCausalLM is not a multimodal model",
            "can only concatenate str (not \"list\") to str",
        ] {
            assert!(looks_like_image_refusal(400, m), "{m}");
        }
        assert!(!looks_like_image_refusal(
            400,
            "max_tokens must be positive"
        ));
        assert!(!looks_like_image_refusal(
            200,
            "image input is not supported"
        ));
    }

    #[test]
    fn server_messages_are_extracted() {
        assert_eq!(
            server_message(r#"{"error":{"message":"boom","code":1}}"#),
            "boom"
        );
        assert_eq!(server_message(r#"{"error":"bad"}"#), "bad");
        assert_eq!(server_message(r#"{"detail":"nope"}"#), "nope");
        assert_eq!(server_message("plain text"), "plain text");
        assert_eq!(server_message(""), "(empty body)");
    }

    #[test]
    fn config_defaults_from_toml_like_json() {
        let c: OpenAiConfig =
            serde_json::from_str(r#"{"base_url":"http://127.0.0.1:1/v1","model":"m"}"#).unwrap();
        assert_eq!(c, OpenAiConfig::new("http://127.0.0.1:1/v1", "m"));
        assert!(serde_json::from_str::<OpenAiConfig>(
            r#"{"base_url":"x","model":"m","api_key":"secret"}"#
        )
        .is_err());
    }

    #[test]
    fn bad_config_is_refused_with_the_reason() {
        let e = OpenAiGenerator::new(OpenAiConfig::new("127.0.0.1:8000", "m"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http://"), "{e}");
        let mut c = OpenAiConfig::new("http://127.0.0.1:8000/v1", "m");
        c.api_key_env = Some("RAP_TEST_SURELY_UNSET_KEY_VAR".into());
        let e = OpenAiGenerator::new(c).unwrap_err().to_string();
        assert!(e.contains("RAP_TEST_SURELY_UNSET_KEY_VAR"), "{e}");
    }
}
