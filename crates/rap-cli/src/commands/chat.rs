//! `rap chat`: a multi-turn conversation in the terminal, with the configured generator.
//!
//! Lines read from standard input are questions, or commands: `/image PATH` (the next question
//! looks at this image), `/concepts` (what the conversation retrieved), `/reset`, `/help`,
//! `/quit` (or end of input). Answers stream to the terminal; with `--json` each answer and
//! each command's result is one JSON object per line. A failed turn prints its error and the
//! conversation goes on as it was.

use super::ask::{answer_json, concept_list, retrieve_options, stream_to_stdout};
use crate::context::Context;
use anyhow::{Context as _, Result};
use rap_core::Message;
use rap_engine::ChatSession;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ChatArgs {
    /// An image to talk about (`/image PATH` attaches another)
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Local model (catalogue name) [default: the config's generator]
    #[arg(long)]
    pub model: Option<String>,
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

pub fn run(ctx: &Context, args: ChatArgs) -> Result<()> {
    let config = ctx.config()?;
    let loaded = ctx.app().generator(&config, args.model.as_deref())?;
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

    let mut turn = 0;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("you> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
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
                        serde_json::json!({ "concepts": session.concepts().iter().map(|c| serde_json::json!({
                        "name": c.name, "score": c.score, "via": c.via,
                    })).collect::<Vec<_>>() }),
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
                let answer = session.ask(
                    engine,
                    line,
                    loaded.generator(),
                    Some(&count),
                    &params,
                    &mut stream_to_stdout(json),
                );
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
