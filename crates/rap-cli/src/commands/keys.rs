//! `rap keys create|list|revoke`: API keys for `rap serve`. Each key acts as one tenant; a
//! new key is printed once and only its hash is stored. Once any key exists, every request
//! to the server needs one.

use crate::context::Context;
use crate::output;
use anyhow::Result;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Make a key for the tenant given with --tenant (printed once; store it now).
    Create,
    /// Every key: id, tenant, created, revoked.
    List,
    /// Revoke a key by id (as `rap keys list` shows it) or by the whole key.
    Revoke {
        /// The key's id (or the whole key)
        id: String,
    },
}

fn time(ms: i64) -> String {
    let s = ms / 1000;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

pub fn run(ctx: &Context, cmd: KeysCommand) -> Result<()> {
    let engine = ctx.engine()?;
    match cmd {
        KeysCommand::Create => {
            let (key, info) = engine.create_api_key(&ctx.tenant)?;
            if ctx.json {
                return output::print_json(
                    &serde_json::json!({ "key": key, "tenant": info.tenant }),
                );
            }
            println!("{key}");
            eprintln!(
                "API key {} for tenant {}: shown only now, store it safely. Requests send it as `Authorization: Bearer KEY`.",
                info.id, info.tenant
            );
            Ok(())
        }
        KeysCommand::List => {
            let keys = engine.api_keys()?;
            if ctx.json {
                return output::print_json(&keys);
            }
            if keys.is_empty() {
                println!(
                    "no API keys (rap serve accepts requests without one, on loopback addresses)"
                );
                return Ok(());
            }
            let mut t = output::table(&["id", "tenant", "created", "state"]);
            for k in &keys {
                t.add_row(vec![
                    k.id.clone(),
                    k.tenant.to_string(),
                    time(k.created_at),
                    match k.revoked_at {
                        Some(r) => format!("revoked {}", time(r)),
                        None => "active".to_string(),
                    },
                ]);
            }
            println!("{t}");
            Ok(())
        }
        KeysCommand::Revoke { id } => {
            let info = engine.revoke_api_key(&id)?;
            if ctx.json {
                return output::print_json(&info);
            }
            println!("revoked API key {} (tenant {})", info.id, info.tenant);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_civil_utc() {
        assert_eq!(super::time(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::time(1_795_000_000_000), "2026-11-18 11:06 UTC");
    }
}
