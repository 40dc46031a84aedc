//! `rap chat`: a multi-turn conversation in the terminal, with the configured generator.
//!
//! Lines read from standard input are questions, or commands: `/image PATH` (the next question
//! looks at this image), `/concepts` (what the conversation retrieved), `/reset`, `/help`,
//! `/quit` (or end of input). Answers stream to the terminal; with `--json` each answer and
//! each command's result is one JSON object per line. A failed turn prints its error and the
//! conversation goes on as it was.
//!
//! Ctrl-C while an answer streams stops that answer (what was said so far stays in the
//! conversation) and the chat goes on; Ctrl-C at the prompt says how to leave, and a second
//! one in a row ends the chat ([`Interrupts`]).

use super::ask::{answer_json, concept_list, retrieve_options, stream_to_stdout, used_json};
use crate::context::Context;
use anyhow::{Context as _, Result};
use rap_core::Message;
use rap_engine::ChatSession;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ChatArgs {
    /// An image to talk about (`/image PATH` attaches another)
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Local model (catalogue name) [default: the config's generator]
    #[arg(long)]
    pub model: Option<String>,
    /// A local LLaVA model's weights: none, q8_0 or q4k, quantized while loading
    /// [default: the config's generator.llava.quantize]
    #[arg(long, value_name = "none|q8_0|q4k")]
    pub quantize: Option<String>,
    /// Most tokens in each answer [default: 256 for a local GGUF model, else 512]
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy [default: the config's, else 0.2]
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Random seed for sampling
    #[arg(long)]
    pub seed: Option<u64>,
    /// Penalty on repeated tokens, 1 = none [default: the config's, else 1.1 for a local GGUF
    /// model, 1 for LLaVA; a server is not sent it]
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
}

const HELP: &str = "Ask a question, or: /image PATH (look at this image), /concepts (what was retrieved), /reset, /quit";

/// Reads an image the way every command does: checked against the pixel limit, errors naming
/// the file.
fn read_image(ctx: &Context, path: &Path) -> Result<Vec<u8>> {
    let bytes = rap_image::read_file(path, ctx.limits())?;
    rap_image::inspect(&bytes, ctx.limits()).with_context(|| format!("{}", path.display()))?;
    Ok(bytes)
}

/// What Ctrl-C does in a chat: stop the answer in progress, else (at the prompt) warn once and
/// end the chat the second time in a row. A thread waits for the signal (tokio's handler, which
/// rap already builds for `rap serve`), so the work done on it is ordinary code, not a signal
/// handler's.
struct Interrupts {
    state: AtomicU8,
    /// Set by Ctrl-C during an answer; the answer's token callback stops it.
    stop: AtomicBool,
}

const AT_PROMPT: u8 = 0;
/// At the prompt, after one Ctrl-C: the next one ends the chat.
const WARNED: u8 = 1;
const ANSWERING: u8 = 2;

impl Interrupts {
    /// Starts handling Ctrl-C for the rest of the process (it no longer kills it at once).
    fn install(interactive: bool) -> Result<Arc<Interrupts>> {
        let shared = Arc::new(Interrupts {
            state: AtomicU8::new(AT_PROMPT),
            stop: AtomicBool::new(false),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context("starting the Ctrl-C handler")?;
        // Registered here, before the first prompt, so no Ctrl-C falls between.
        let mut signals = runtime
            .block_on(async {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            })
            .context("handling Ctrl-C")?;
        let handler = shared.clone();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                while signals.recv().await.is_some() {
                    handler.on_interrupt(interactive);
                }
            })
        });
        Ok(shared)
    }

    fn on_interrupt(&self, interactive: bool) {
        match self.state.load(Ordering::SeqCst) {
            ANSWERING => self.stop.store(true, Ordering::SeqCst),
            WARNED => {
                eprintln!();
                std::process::exit(0);
            }
            _ => {
                self.state.store(WARNED, Ordering::SeqCst);
                eprintln!("\n(Ctrl-C again, /quit or Ctrl-D to leave the chat)");
                if interactive {
                    print!("you> ");
                    let _ = std::io::stdout().flush();
                }
            }
        }
    }

    /// An answer starts: Ctrl-C now stops it.
    fn answering(&self) {
        self.stop.store(false, Ordering::SeqCst);
        self.state.store(ANSWERING, Ordering::SeqCst);
    }

    /// Back at the prompt (a line was read, or an answer ended): the count starts again.
    fn at_prompt(&self) {
        self.state.store(AT_PROMPT, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

pub fn run(ctx: &Context, args: ChatArgs) -> Result<()> {
    let mut config = ctx.config()?;
    crate::context::apply_quantize(&mut config, args.quantize.as_deref())?;
    let loaded = ctx.generator(&config, args.model.as_deref())?;
    let engine = ctx.engine()?;
    let image = args
        .image
        .as_deref()
        .map(|p| read_image(ctx, p))
        .transpose()?;
    let mut session = ChatSession::new(ctx.tenant.clone(), image, retrieve_options(&config));
    let params = loaded.command_params(
        &config,
        args.max_tokens,
        args.temperature,
        args.seed,
        args.repetition_penalty,
    );
    let count = |m: &[Message]| loaded.count_tokens(m);
    let json = ctx.json;
    let interactive = !json && std::io::stdin().is_terminal();
    let emit = |value: serde_json::Value| {
        println!("{value}");
    };
    if interactive {
        println!("{HELP}");
    }

    let interrupts = Interrupts::install(interactive)?;
    let mut turn = 0;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("you> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        interrupts.at_prompt();
        let line = line.context("reading standard input")?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        match command {
            "/quit" | "/exit" => break,
            "/help" => println!("{HELP}"),
            "/reset" => {
                session.reset();
                turn = 0;
                if json {
                    emit(serde_json::json!({ "reset": true }));
                } else {
                    println!("(conversation cleared)");
                }
            }
            "/concepts" => {
                if json {
                    emit(
                        serde_json::json!({ "concepts": session.concepts().iter().map(used_json).collect::<Vec<_>>() }),
                    );
                } else if session.concepts().is_empty() {
                    println!("(no concept retrieved yet)");
                } else {
                    println!("{}", concept_list(session.concepts()));
                }
            }
            "/image" if rest.trim().is_empty() => eprintln!("error: /image needs a path"),
            "/image" => match read_image(ctx, Path::new(rest.trim())) {
                Ok(bytes) => {
                    session.attach_image(bytes);
                    if json {
                        emit(serde_json::json!({ "image": rest.trim() }));
                    } else {
                        println!("(the next question looks at {})", rest.trim());
                    }
                }
                Err(e) => eprintln!("error: {e:#}"),
            },
            c if c.starts_with('/') => eprintln!("error: unknown command {c}; {HELP}"),
            _ => {
                let mut stream = stream_to_stdout(json);
                interrupts.answering();
                let answer = session.ask(
                    engine,
                    line,
                    loaded.generator(),
                    Some(&count),
                    &params,
                    &mut |t: &str| !interrupts.stopped() && stream(t),
                );
                interrupts.at_prompt();
                if interrupts.stopped() && !json {
                    print!(" (stopped)");
                }
                match answer {
                    Ok(answer) => {
                        turn += 1;
                        for w in &answer.warnings {
                            eprintln!("warning: {w}");
                        }
                        if json {
                            let mut value = answer_json(&answer);
                            value["turn"] = turn.into();
                            emit(value);
                        } else {
                            println!();
                            let mode = if answer.mode == rap_engine::Mode::TextOnly {
                                " [text-only]"
                            } else {
                                ""
                            };
                            let used = if answer.concepts.is_empty() {
                                "no concept used".to_string()
                            } else {
                                concept_list(&answer.concepts)
                            };
                            println!("-- {}{mode}: {used}", answer.model);
                        }
                    }
                    Err(e) => eprintln!("error: {e}"),
                }
            }
        }
    }
    Ok(())
}
