//! A real server on 127.0.0.1 (port 0) over a real store in a temporary data dir, with a
//! small deterministic image encoder and an echoing generator so that API tests are fast;
//! the real models are exercised by the CLI's serve tests.
#![allow(dead_code)]

use rap_core::{
    Embedding, EncoderInfo, FinishReason, Generation, GenerationParams, Generator, GeneratorInfo,
    ImageEncoder, Message, Role,
};
use rap_engine::{Engine, EngineConfig};
use rap_server::{AppState, ChatGenerator, ServerConfig};
use std::sync::Arc;

/// Colour layout: the mean colour of each cell of a 3x3 grid, centred and normalised.
/// Two photos of the same coloured subject land close; different colours far apart.
pub struct GridEncoder(EncoderInfo);

impl GridEncoder {
    pub fn new() -> Self {
        GridEncoder(EncoderInfo {
            id: "test-grid@1".into(),
            dim: 27,
        })
    }
}

impl ImageEncoder for GridEncoder {
    fn info(&self) -> &EncoderInfo {
        &self.0
    }

    fn embed(&self, images: &[image::RgbImage]) -> rap_core::Result<Vec<Embedding>> {
        images
            .iter()
            .map(|img| {
                let (w, h) = img.dimensions();
                let mut v = vec![0f32; 27];
                let mut n = [0f32; 9];
                for (x, y, p) in img.enumerate_pixels() {
                    let cell = ((y * 3 / h.max(1)).min(2) * 3 + (x * 3 / w.max(1)).min(2)) as usize;
                    n[cell] += 1.0;
                    for c in 0..3 {
                        v[cell * 3 + c] += p.0[c] as f32 / 255.0;
                    }
                }
                for cell in 0..9 {
                    for c in 0..3 {
                        v[cell * 3 + c] = v[cell * 3 + c] / n[cell].max(1.0) - 0.5;
                    }
                }
                Embedding::normalized(v)
            })
            .collect::<rap_core::Result<Vec<_>>>()
    }
}

/// Answers with the text of the prompt's first user turn, word by word (so tests see what the
/// model got), up to `max_tokens` words. Text-only, like the default local model.
pub struct EchoGenerator {
    pub info: GeneratorInfo,
    pub delay: std::time::Duration,
}

impl Generator for EchoGenerator {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> rap_core::Result<Generation> {
        let prompt = messages
            .iter()
            .find(|m| m.role == Role::User)
            .map(|m| rap_llm::render_parts(&m.parts))
            .unwrap_or_default();
        let mut text = String::new();
        let mut n = 0;
        let mut finish = FinishReason::Stop;
        for word in prompt.split_inclusive(' ') {
            if n == params.max_tokens {
                finish = FinishReason::Length;
                break;
            }
            std::thread::sleep(self.delay);
            text.push_str(word);
            n += 1;
            if !on_text(word) {
                finish = FinishReason::Cancelled;
                break;
            }
        }
        Ok(Generation {
            text,
            finish_reason: finish,
            prompt_tokens: prompt.split(' ').count(),
            completion_tokens: n,
        })
    }
}

pub struct Server {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(|_| {})
    }

    pub fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Server {
        let (dir, engine) = Self::engine();
        Self::start_engine(dir, engine, configure)
    }

    /// A fresh engine over a temporary data dir, with the test encoder.
    pub fn engine() -> (tempfile::TempDir, Arc<Engine>) {
        let dir = tempfile::tempdir().unwrap();
        let encoder: Arc<dyn ImageEncoder> = Arc::new(GridEncoder::new());
        let engine = Arc::new(
            Engine::open(
                EngineConfig::new(dir.path()),
                Box::new(move || Ok(Some(encoder.clone()))),
            )
            .unwrap(),
        );
        (dir, engine)
    }

    pub fn start_engine(
        dir: tempfile::TempDir,
        engine: Arc<Engine>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Server {
        Self::start_full(dir, engine, configure, std::time::Duration::from_millis(1))
    }

    /// `delay`: the echo generator's time per word.
    pub fn start_full(
        dir: tempfile::TempDir,
        engine: Arc<Engine>,
        configure: impl FnOnce(&mut ServerConfig),
        delay: std::time::Duration,
    ) -> Server {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        configure(&mut config);
        let generator = ChatGenerator {
            generator: Arc::new(EchoGenerator {
                info: GeneratorInfo {
                    model: "echo-1".into(),
                    accepts_images: false,
                    context_length: Some(4096),
                },
                delay,
            }),
            stop: vec![],
            count_tokens: None,
            temperature: 0.0,
            repetition_penalty: 1.0,
        };
        let state = AppState::new(engine.clone(), Ok(generator), config);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?).unwrap();
                rap_server::serve(listener, state, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx.recv().unwrap();
        Server {
            base: format!("http://{addr}"),
            dir,
            engine,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts a graceful shutdown (what SIGINT/SIGTERM do) and waits until the server has
    /// finished the requests in flight and stopped.
    pub fn shut_down(&mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().expect("the server thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn client() -> reqwest::blocking::Client {
    rap_llm::http::install_tls_provider();
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A PNG of a coloured subject: `color` fills a block at (`x`, `y`) fractions of a
/// `w` x `h` grey background with some texture.
pub fn photo(color: [u8; 3], w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let inside = x > w / 8 && x < w * 7 / 8 && y > h / 8 && y < h * 7 / 8;
        let noise = ((x * 31 + y * 17 + seed * 7) % 23) as u8;
        if inside {
            image::Rgb([
                color[0].saturating_add(noise),
                color[1].saturating_add(noise),
                color[2].saturating_add(noise),
            ])
        } else {
            image::Rgb([120 + noise, 120, 120])
        }
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A multipart/form-data body written by hand (so tests can also write broken ones).
pub struct Multipart {
    pub boundary: String,
    pub body: Vec<u8>,
}

impl Multipart {
    pub fn new() -> Self {
        Multipart {
            boundary: "rapTestBoundary7MA4YWxkTrZu0gW".into(),
            body: Vec::new(),
        }
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    pub fn file(mut self, name: &str, filename: &str, bytes: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

/// Sends a multipart form.
pub fn post_form(
    c: &reqwest::blocking::Client,
    url: &str,
    key: Option<&str>,
    form: Multipart,
) -> reqwest::blocking::Response {
    let (ct, body) = form.finish();
    let mut req = c.post(url).header("content-type", ct).body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().unwrap()
}

/// The JSON of a response, asserting its status.
pub fn json(res: reqwest::blocking::Response, status: u16) -> serde_json::Value {
    let got = res.status().as_u16();
    let text = res.text().unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts an error response: status, `error.type`, and that the message contains `want`.
pub fn error(res: reqwest::blocking::Response, status: u16, kind: &str, want: &str) -> String {
    let v = json(res, status);
    assert_eq!(v["error"]["type"], kind, "{v}");
    let msg = v["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains(want),
        "message {msg:?} should contain {want:?}"
    );
    msg
}

pub use rap_image::testing::png_bomb;
