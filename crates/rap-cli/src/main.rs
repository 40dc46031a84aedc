//! `rap`: a thin command line over the rap engine.
//!
//! Each subcommand lives in `commands/`; this file holds the global options, turns them into
//! an [`rap_engine::Engine`], and prints any error as one line with a non-zero exit status.

// Unsafe only where marked `#[allow(unsafe_code)]` (`pipe.rs`), with a `// SAFETY:` note.
#![deny(unsafe_code)]

mod commands;
mod context;
mod demo_photos;
mod output;
mod pipe;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Worked examples and where things live, after the options in `rap --help`.
const AFTER_HELP: &str = "\
Examples:
  rap demo                                    remember four built-in subjects, find them, ask
  rap concept add Bo --image bo1.jpg --info \"<Bo> is a Shiba Inu.\" --category dog
  rap retrieve photo.jpg                      which of your concepts are in the photo, where
  rap ask --image photo.jpg \"What is <Bo> doing?\"
  rap chat --image photo.jpg                  a conversation; Ctrl-C stops an answer
  rap models install qwen2.5-coder-1.5b-instruct && rap ask --model qwen2.5-coder-1.5b-instruct \"Who is <Bo>?\"
  rap serve                                   the web page and the HTTP API on 127.0.0.1:8080

Where things live:
  memory    --data-dir, else $RAP_DATA_DIR, else ~/.local/share/rap (config.toml is there too)
  models    $RAP_MODELS_DIR, else [models] dir in config.toml, else ~/.cache/rap/models
            ($XDG_CACHE_HOME/rap/models): one copy per user, shared by every data dir";

/// A personalized multimodal assistant that remembers your concepts.
#[derive(Parser)]
#[command(name = "rap", version, about, long_about = None, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: context::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add, list, show, edit and remove concepts.
    #[command(subcommand)]
    Concept(commands::concept::ConceptCommand),
    /// Import a reference database.json (or the folder holding it).
    Import(commands::transfer::ImportArgs),
    /// Export the memory as a reference database.json plus images into DIR.
    Export(commands::transfer::ExportArgs),
    /// Compute missing keys (embeddings) with the installed encoder.
    Reindex(commands::transfer::ReindexArgs),
    /// Counts of what the memory holds.
    Status,
    /// The main job end to end: remember concepts from photos, then find them in new ones.
    Demo(commands::demo::DemoArgs),
    /// Performance figures, measured on this machine (no subcommand: the whole suite).
    Bench(commands::bench::BenchArgs),
    /// Print the embeddings an encoder gives images (and texts).
    Embed(commands::embed::EmbedArgs),
    /// List and install models.
    #[command(subcommand)]
    Models(commands::models::ModelsCommand),
    /// The objects the COCO detector finds in an image (`rap models install centernet`).
    Detect(commands::detect::DetectArgs),
    /// A photo library: index folders once, then find any concept in them.
    #[command(subcommand)]
    Library(commands::library::LibraryCommand),
    /// Find the concepts in an image and/or named in a text.
    Retrieve(commands::retrieve::RetrieveArgs),
    /// Evaluate: the paper's metrics and the retriever.
    #[command(subcommand)]
    Eval(commands::eval::EvalCommand),
    /// Show exactly the prompt a model would get for a question (no model runs).
    Prompt(commands::prompt::PromptArgs),
    /// Show the configuration (DATA_DIR/config.toml plus RAP_* environment overrides).
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Ask a question: retrieve, lay out, generate (streams the answer).
    Ask(commands::ask::AskArgs),
    /// Serve the HTTP API, the OpenAI-compatible chat endpoint and the web page.
    Serve(commands::serve::ServeArgs),
    /// API keys for `rap serve` (each acts as one tenant).
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// A multi-turn conversation (`/image PATH`, `/concepts`, `/reset`, `/quit`).
    Chat(commands::chat::ChatArgs),
    /// Training data: build RAP training sets, validate and describe them.
    #[command(subcommand)]
    Dataset(commands::dataset::DatasetCommand),
    /// Copy the whole memory between the embedded store and PostgreSQL, verified.
    Migrate(commands::migrate::MigrateArgs),
    /// The shared memory's image objects (S3 blob store): `rap blobs gc`.
    #[command(subcommand)]
    Blobs(commands::blobs::BlobsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| pipe::exit_on_usage_error(e));
    if !matches!(cli.command, Command::Serve(_)) {
        pipe::die_quietly_on_closed_pipe();
    }
    if matches!(cli.command, Command::Serve(_)) {
        output::init_logging_default("info");
    } else {
        output::init_logging();
    }
    let json = cli.global.json;
    let result = context::Context::new(cli.global).and_then(|ctx| match cli.command {
        Command::Concept(cmd) => commands::concept::run(&ctx, cmd),
        Command::Import(args) => commands::transfer::import(&ctx, args),
        Command::Export(args) => commands::transfer::export(&ctx, args),
        Command::Reindex(args) => commands::transfer::reindex(&ctx, args),
        Command::Status => commands::transfer::status(&ctx),
        Command::Demo(args) => commands::demo::run(&ctx, args),
        Command::Bench(cmd) => commands::bench::run(&ctx, cmd),
        Command::Models(cmd) => commands::models::run(&ctx, cmd),
        Command::Embed(args) => commands::embed::run(&ctx, args),
        Command::Detect(args) => commands::detect::run(&ctx, args),
        Command::Library(cmd) => commands::library::run(&ctx, cmd),
        Command::Retrieve(args) => commands::retrieve::run(&ctx, args),
        Command::Eval(cmd) => commands::eval::run(&ctx, cmd),
        Command::Prompt(args) => commands::prompt::run(&ctx, args),
        Command::Config(cmd) => commands::config::run(&ctx, cmd),
        Command::Ask(args) => commands::ask::run(&ctx, args),
        Command::Serve(args) => commands::serve::run(&ctx, args),
        Command::Keys(cmd) => commands::keys::run(&ctx, cmd),
        Command::Chat(args) => commands::chat::run(&ctx, args),
        Command::Dataset(cmd) => commands::dataset::run(&ctx, cmd),
        Command::Migrate(args) => commands::migrate::run(&ctx, args),
        Command::Blobs(cmd) => commands::blobs::run(&ctx, cmd),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(&e, json);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument and command has help text, and clap finds the definitions consistent.
    #[test]
    fn every_argument_has_help() {
        fn check(cmd: &clap::Command, path: &str) -> Vec<String> {
            let mut missing: Vec<String> = cmd
                .get_arguments()
                .filter(|a| !a.is_hide_set() && a.get_help().is_none())
                .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
                .map(|a| format!("{path} {}", a.get_id()))
                .collect();
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                missing.extend(check(sub, &format!("{path} {}", sub.get_name())));
            }
            missing
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let missing = check(&cmd, "rap");
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }
}
