//! Output helpers: JSON or tables on stdout, one-line errors on stderr, logging, progress.

use serde::Serialize;

/// Logs go to stderr through tracing; `RUST_LOG` sets the level (default: warnings).
pub fn init_logging() {
    init_logging_default("warn")
}

/// Logging with `default` as the filter when `RUST_LOG` is not set.
pub fn init_logging_default(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints an error as one line (`--json`: `{"error": {"message": ...}}` on stdout too).
pub fn print_error(e: &anyhow::Error, json: bool) {
    // Each cause once: rap's errors end their message with their source's text already.
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.is_empty() {
            message = text;
        } else if !text.is_empty() && !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    let message = message.replace('\n', " ");
    if json {
        println!("{}", serde_json::json!({ "error": { "message": message } }));
    }
    eprintln!("error: {message}");
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A progress bar on a terminal; hidden with `--json` or when stderr is not a TTY.
pub fn progress(len: u64, json: bool, message: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_uppercase()));
    t
}
