//! `rap config show|path`: the effective configuration (`rap_app::config`: the file plus the
//! environment overrides) and where its file is.

use crate::context::Context;
use crate::output;
use anyhow::Result;
use rap_app::config::FILE_NAME;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (the file plus environment overrides).
    Show,
    /// Print where the config file is.
    Path,
}

pub fn path(ctx: &Context) -> PathBuf {
    ctx.data_dir.join(FILE_NAME)
}

pub fn run(ctx: &Context, cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Show => {
            let config = ctx.config()?;
            if ctx.json {
                output::print_json(&config)
            } else {
                print!("{}", toml::to_string_pretty(&config)?);
                Ok(())
            }
        }
        ConfigCommand::Path => {
            let p = path(ctx);
            if ctx.json {
                output::print_json(&serde_json::json!({ "path": p }))
            } else {
                println!("{}", p.display());
                Ok(())
            }
        }
    }
}
