//! `rap bench scale`'s report: written to `--out` if asked, then printed as JSON (`--json`) or
//! as a table of the headline figures.

use super::args::ScaleArgs;
use super::Bars;
use crate::output;
use anyhow::{Context as _, Result};

pub fn run(json: bool, args: ScaleArgs, bars: &Bars) -> Result<()> {
    let url = std::env::var("RAP_DATABASE_URL").ok();
    let out = args.out.clone();
    let report = rap_bench::scale::run(&args.options(url), bars)?;
    if let Some(path) = &out {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        return output::print_json(&report);
    }
    print_table(&report);
    Ok(())
}

/// The headline figures of a scale report, one row each.
fn print_table(report: &serde_json::Value) {
    let mut table = output::table(&["figure", "value"]);
    let w = &report["workload"];
    table.add_row(vec![
        "workload".to_owned(),
        format!(
            "{} concepts, {} tenants (large: {}, median {}), dim {}, {} backend",
            w["concepts"],
            w["tenants"],
            w["large_tenant_concepts"],
            w["median_tenant_concepts"],
            w["dim"],
            report["backend"].as_str().unwrap_or("?")
        ),
    ]);
    table.add_row(vec![
        "insert".to_owned(),
        format!(
            "{:.0} concepts/s ({:.0} s)",
            report["insert"]["concepts_per_s"].as_f64().unwrap_or(0.0),
            report["insert"]["seconds"].as_f64().unwrap_or(0.0)
        ),
    ]);
    table.add_row(vec![
        "disk".to_owned(),
        format!(
            "{:.1} MiB",
            report["disk"]["total_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
        ),
    ]);
    let s = &report["search"];
    let k = s["k"].as_u64().unwrap_or(10);
    let line = |g: &serde_json::Value| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, recall@{k} {:.3}, foreign results {}",
            g["p50_ms"].as_f64().unwrap_or(0.0),
            g["p99_ms"].as_f64().unwrap_or(0.0),
            g[format!("recall_at_{k}")].as_f64().unwrap_or(0.0),
            g["foreign_results"]
        )
    };
    table.add_row(vec![
        "top-k, random tenants".to_owned(),
        line(&s["random_tenants"]),
    ]);
    if let Some(large) = s["large_tenants"].as_object() {
        for (name, g) in large {
            table.add_row(vec![format!("top-k, large tenants, {name}"), line(g)]);
        }
    }
    table.add_row(vec![
        "top-k, 10-concept tenant".to_owned(),
        line(&s["ten_concept_tenant"]),
    ]);
    println!("{table}");
}
