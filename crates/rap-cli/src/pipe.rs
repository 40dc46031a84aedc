//! Command-line process setup: a closed output pipe ends the process quietly, and a usage
//! error prints one line.
//!
//! Rust ignores SIGPIPE, so `rap concept list | head -1` got EPIPE on the next write and
//! `println!` panicked ("failed printing to stdout: Broken pipe", exit 101). Restoring the
//! default action makes rap behave like `ls` or `cat`: killed by SIGPIPE, which the shell
//! reports as status 141 (128 + 13) and which `set -o pipefail` scripts already expect from
//! every Unix tool. The alternative, status 0, would need every print site to handle EPIPE.
//! Sockets are unaffected (Rust writes them with MSG_NOSIGNAL), and `rap serve` keeps
//! ignoring SIGPIPE anyway: a server must never die of one.

/// Restores SIGPIPE's default action (terminate) for a command whose output may be piped.
#[cfg(unix)]
#[allow(unsafe_code)]
pub fn die_quietly_on_closed_pipe() {
    // SAFETY: `signal` with a valid signal number and SIG_DFL only changes this process's
    // signal disposition; it is called at the start of `main`, before any thread is spawned,
    // and no Rust code relies on SIGPIPE being ignored other than through write errors.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
pub fn die_quietly_on_closed_pipe() {}

/// Exits on a command-line usage error with its one-line message (`error: ...`, status 2);
/// `--help` and `--version` print as clap prints them.
pub fn exit_on_usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    // clap's message runs over several lines (the missing arguments each on its own line,
    // tips, the usage): keep the message and its arguments, joined, up to the usage.
    let text = e.render().to_string();
    let line = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    let line = if line.is_empty() {
        "invalid arguments"
    } else {
        line
    };
    eprintln!("error: {line} (see rap --help)");
    std::process::exit(2);
}
