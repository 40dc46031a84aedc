//! Output helpers: JSON or text on stdout, one-line errors (on stdout as JSON with `--json`),
//! logging, progress (a bar on a terminal, plain lines otherwise).

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

/// Prints an error as one line: `error: ...` on stderr, or with `--json` only
/// `{"error": {"message": ...}}` on stdout (a script reads one stream).
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
    } else {
        eprintln!("error: {message}");
    }
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Progress on stderr: a bar on a terminal; where stderr is not a terminal (a log, CI) a plain
/// line now and then ([`PlainLines`]); nothing with `--json`.
pub fn progress(len: u64, json: bool, message: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if json {
        return indicatif::ProgressBar::hidden();
    }
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::with_draw_target(
            Some(len),
            indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(PlainLines::default()), 1),
        )
    };
    let template = if terminal {
        "{msg} [{bar:30}] {pos}/{len} ({eta})"
    } else {
        "{msg}: {pos}/{len} ({elapsed} elapsed)"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// A spinner for a step of unknown length (loading a model) on a terminal, turning until
/// cleared; nothing with `--json` or where stderr is not a terminal (a step of seconds is not
/// worth a line in a log, and a failing command's stderr stays its one error line).
pub fn spinner(json: bool, message: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("{message}..."));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// indicatif's output for a stderr that is not a terminal: no cursor moves, no redraws in
/// place; the bar's text as a plain line once every [`PlainLines::EVERY`], the first one
/// [`PlainLines::EVERY`] after the bar first drew, so a log gets a few readable lines instead
/// of control codes, and a command that ends (or fails) sooner writes none. (indicatif has no
/// such mode of its own; its hidden target would print nothing at all.)
#[derive(Debug, Default)]
pub struct PlainLines {
    state: std::sync::Mutex<PlainState>,
}

#[derive(Debug, Default)]
struct PlainState {
    pending: String,
    last: Option<String>,
    /// When the last line was written (at first: when the bar first drew).
    written: Option<std::time::Instant>,
}

impl PlainLines {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    fn state(&self) -> std::sync::MutexGuard<'_, PlainState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl indicatif::TermLike for PlainLines {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        let mut st = self.state();
        st.pending.push_str(s);
        st.pending.push(' ');
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.state().pending.push_str(s.trim_start_matches('\r'));
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        use std::io::Write;
        let mut st = self.state();
        let line = std::mem::take(&mut st.pending).trim().to_string();
        let since = *st.written.get_or_insert_with(std::time::Instant::now);
        let due = since.elapsed() >= Self::EVERY;
        if line.is_empty() || !due || st.last.as_deref() == Some(line.as_str()) {
            return Ok(());
        }
        writeln!(std::io::stderr(), "{line}")?;
        st.written = Some(std::time::Instant::now());
        st.last = Some(line);
        Ok(())
    }
}

/// A JSON report as text: `key: value` lines (keys in alphabetical order, as serde_json keeps
/// them), nested objects indented under their key, lists
/// of plain values on one line, lists of objects as `-` items. For commands whose result is a
/// report of figures (`rap bench`) when `--json` is not given.
pub fn print_report(value: &serde_json::Value) {
    let mut out = String::new();
    report_lines(value, 0, &mut out);
    print!("{out}");
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Null => Some("-".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if n.is_f64() => format!("{}", (f * 1000.0).round() / 1000.0),
            _ => n.to_string(),
        }),
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => Some(
            items
                .iter()
                .filter_map(scalar)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

fn report_lines(value: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match scalar(v) {
                    Some(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        report_lines(v, indent + 1, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}-\n"));
                        report_lines(item, indent + 1, out);
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other).unwrap_or_default())),
    }
}

/// A plain table (no borders) with upper-case headers.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_uppercase()));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_as_indented_lines() {
        let v = serde_json::json!({
            "machine": {"cpus": 2, "avx2": true},
            "query_ms": {"p50": 12.34567, "p99": 20},
            "scales": [0.5, 0.3],
            "rows": [{"figure": "qps", "value": 10}],
            "missing": null,
        });
        let mut out = String::new();
        report_lines(&v, 0, &mut out);
        assert_eq!(
            out,
            "machine:\n  avx2: true\n  cpus: 2\nmissing: -\nquery_ms:\n  p50: 12.346\n  p99: 20\n\
             rows:\n  -\n    figure: qps\n    value: 10\nscales: 0.5, 0.3\n"
        );
    }

    #[test]
    fn plain_lines_write_a_line_every_few_seconds_and_none_sooner() {
        use indicatif::TermLike;
        let t = PlainLines::default();
        t.write_str("\rquerying: 1/10").unwrap();
        t.flush().unwrap();
        assert_eq!(t.state().last, None, "nothing before the first interval");
        let earlier = std::time::Instant::now() - PlainLines::EVERY;
        t.state().written = Some(earlier);
        t.write_str("querying: 2/10").unwrap();
        t.flush().unwrap();
        assert_eq!(t.state().last.as_deref(), Some("querying: 2/10"));
        // Too soon after that line: kept back.
        t.write_str("querying: 3/10").unwrap();
        t.flush().unwrap();
        assert_eq!(t.state().last.as_deref(), Some("querying: 2/10"));
        t.state().written = Some(earlier);
        t.write_str("querying: 4/10").unwrap();
        t.flush().unwrap();
        assert_eq!(t.state().last.as_deref(), Some("querying: 4/10"));
    }
}
