//! `rap migrate --to postgres|embedded`: copies the whole memory (every tenant, concept, image
//! and embedding) from the embedded store into the PostgreSQL one (`RAP_DATABASE_URL`, with
//! `RAP_BLOB_STORE` if set), or back, with the server API keys, and prints the verified counts
//! and checksums. The work
//! is `rap_memory::migrate`; this only opens the two stores and prints.

use crate::context::Context;
use crate::output;
use anyhow::{bail, Result};
use rap_core::Tenant;
use rap_memory::migrate::{MigrateOptions, MigrateReport};
use rap_memory::SqliteStore;
use rap_memory_postgres::PgStore;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// From the embedded memory (DATA_DIR/memory.sqlite) into PostgreSQL.
    Postgres,
    /// From PostgreSQL back into the embedded memory.
    #[value(alias = "sqlite")]
    Embedded,
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// Which backend to copy into (the other is the source).
    #[arg(long)]
    pub to: Target,
    /// Replace what the target holds for the migrated tenants (otherwise a target that holds
    /// any of them is refused).
    #[arg(long)]
    pub replace: bool,
    /// Only this tenant (repeatable); default: every tenant of the source.
    #[arg(long = "only-tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
}

pub fn run(ctx: &Context, args: MigrateArgs) -> Result<()> {
    let tenants = args
        .tenants
        .iter()
        .map(|t| Tenant::new(t.as_str()))
        .collect::<rap_core::Result<Vec<_>>>()?;
    let sqlite_path = rap_app::store::sqlite_path(&ctx.data_dir);
    let postgres = ctx.app().open_postgres()?;
    let options = MigrateOptions {
        replace: args.replace,
        tenants,
    };
    let report = match args.to {
        Target::Postgres => {
            if !sqlite_path.is_file() {
                bail!(
                    "there is no embedded memory to migrate: {} does not exist",
                    sqlite_path.display()
                );
            }
            let sqlite = SqliteStore::open(&sqlite_path)?;
            // An earlier version's encoders.json: into the memory first, so it travels too.
            rap_engine::migrate_encoders_file(&ctx.data_dir, &sqlite)?;
            rap_memory::migrate::migrate(&sqlite, &postgres, &options)?
        }
        Target::Embedded => {
            let sqlite = SqliteStore::open(&sqlite_path)?;
            rap_memory::migrate::migrate(&postgres, &sqlite, &options)?
        }
    };
    print(ctx, &report, args.to, &postgres)
}

fn print(ctx: &Context, report: &MigrateReport, to: Target, postgres: &PgStore) -> Result<()> {
    if ctx.json {
        return output::print_json(report);
    }
    let (from, into) = match to {
        Target::Postgres => ("embedded", "postgres"),
        Target::Embedded => ("postgres", "embedded"),
    };
    let images_at = match (to, postgres.blob_store()) {
        (Target::Postgres, Some(b)) => {
            format!(" (image bytes in {})", rap_memory::BlobStore::location(b))
        }
        _ => String::new(),
    };
    println!(
        "migrated {} tenant(s) from {from} to {into}{images_at}; every count and checksum matches:",
        report.tenants.len()
    );
    for t in &report.tenants {
        println!(
            "  {}: {} concepts (sha256 {}), {} images, {} bytes (sha256 {})",
            t.tenant,
            t.concepts,
            &t.concepts_checksum[..16],
            t.images,
            t.image_bytes,
            &t.images_checksum[..16]
        );
        for e in &t.encoders {
            println!(
                "    keys of {}: {} (sha256 {})",
                e.encoder,
                e.keys,
                &e.checksum[..16]
            );
        }
    }
    println!(
        "  API keys: {} (hashes only, revoked ones included)",
        report.api_keys
    );
    Ok(())
}
