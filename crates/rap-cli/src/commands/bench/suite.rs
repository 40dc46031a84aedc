//! `rap bench` without a subcommand: the performance suite. Runs each benchmark as its own
//! `rap bench SUBCOMMAND --json` process (so one's memory and threads do not disturb the next,
//! and each figure comes from the same code as the single command), then lists the headline
//! figures with their units, the machine, and every benchmark's full report:
//! - `retrieval`: add-concept latency, retrieve latency p50/p95/p99 on full-size photos,
//!   encoder images/s;
//! - `vectors`: the key index on synthetic unit vectors at each `--sizes` (build time, QPS,
//!   p99, recall@10 against exact search, memory);
//! - `memory`: store open time (and index build/reopen) at `--memory-concepts` concepts;
//! - `generate`: local GGUF prompt and generation tokens/s.
//!
//! A benchmark that cannot run (no model installed, say) is reported with its error and the
//! others still run.

use crate::context::Context;
use crate::output;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

const SECTIONS: &[&str] = &["retrieval", "vectors", "memory", "generate"];

#[derive(clap::Args)]
pub struct SuiteArgs {
    /// Vector index sizes (keys), comma-separated; 1000000 needs about 13 GiB and 20 minutes
    /// of HNSW building on 2 cores
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000])]
    sizes: Vec<usize>,
    /// Concepts in the store for the store-open figure
    #[arg(long, default_value_t = 10_000)]
    memory_concepts: usize,
    /// Photos for the retrieve figures (one folder per subject) [default: the built-in demo
    /// photos, as `rap bench retrieval`]
    #[arg(long, value_name = "DIR")]
    dataset: Option<PathBuf>,
    /// Retrieve queries to time at most (0 = every photo that is not a reference)
    #[arg(long, default_value_t = 0)]
    queries: usize,
    /// Benchmarks to leave out (comma-separated: retrieval, vectors, memory, generate)
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
}

/// Runs `rap bench ARGS --json` and returns its report (or the error it printed).
fn sub(ctx: &Context, args: &[String]) -> Value {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return json!({ "error": format!("cannot find the rap binary: {e}") }),
    };
    let out = Command::new(exe)
        .arg("--data-dir")
        .arg(&ctx.data_dir)
        .arg("--tenant")
        .arg(ctx.tenant.to_string())
        .arg("bench")
        .args(args)
        .arg("--json")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output();
    match out {
        Err(e) => json!({ "error": e.to_string() }),
        Ok(o) => match serde_json::from_slice::<Value>(&o.stdout) {
            Ok(v) if o.status.success() => v,
            Ok(v) if v.get("error").is_some() => json!({ "error": v["error"]["message"] }),
            _ => json!({ "error": format!("exited with {}", o.status) }),
        },
    }
}

/// One headline figure.
fn fig(rows: &mut Vec<Value>, name: String, value: &Value, unit: &str) {
    if let Some(v) = value.as_f64() {
        rows.push(json!({ "figure": name, "value": v, "unit": unit }));
    }
}

fn headline(sections: &serde_json::Map<String, Value>) -> Vec<Value> {
    let mut rows = Vec::new();
    if let Some(r) = sections
        .get("retrieval")
        .filter(|r| r.get("error").is_none())
    {
        for p in ["p50_ms", "p95_ms"] {
            fig(
                &mut rows,
                format!("add concept, one photo, {}", &p[..3]),
                &r["add_concept_one_photo"][p],
                "ms",
            );
        }
        for p in ["p50_ms", "p95_ms", "p99_ms"] {
            fig(
                &mut rows,
                format!(
                    "retrieve, full-size photo ({:.1} MP), {}",
                    r["mean_query_megapixels"].as_f64().unwrap_or(0.0),
                    &p[..3]
                ),
                &r["retrieve"][p],
                "ms",
            );
        }
        for b in ["batch_1", "batch_16"] {
            fig(
                &mut rows,
                format!("encoder {}, {b}", r["encoder"].as_str().unwrap_or("?")),
                &r["encoder_images_per_second"][b],
                "images/s",
            );
        }
    }
    if let Some(v) = sections.get("vectors").filter(|r| r.get("error").is_none()) {
        let dim = v["dim"].as_u64().unwrap_or(0);
        for s in v["sizes"].as_array().into_iter().flatten() {
            let n = s["keys"].as_u64().unwrap_or(0);
            let at = format!("{n} keys x {dim}");
            fig(
                &mut rows,
                format!("exact search, {at}, QPS"),
                &s["exact"]["qps"],
                "queries/s",
            );
            fig(
                &mut rows,
                format!("exact search, {at}, p99"),
                &s["exact"]["p99_ms"],
                "ms",
            );
            let h = &s["hnsw"];
            fig(&mut rows, format!("HNSW build, {at}"), &h["build_s"], "s");
            if let Some(bytes) = h["memory_bytes"].as_f64() {
                fig(
                    &mut rows,
                    format!("HNSW memory, {at}"),
                    &json!(bytes / 1048576.0),
                    "MiB",
                );
            }
            let ef64 = h["search"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["ef"] == 64).or(a.last()));
            if let Some(e) = ef64 {
                let ef = e["ef"].as_u64().unwrap_or(0);
                fig(
                    &mut rows,
                    format!("HNSW search ef {ef}, {at}, QPS"),
                    &e["qps"],
                    "queries/s",
                );
                fig(
                    &mut rows,
                    format!("HNSW search ef {ef}, {at}, p99"),
                    &e["p99_ms"],
                    "ms",
                );
                fig(
                    &mut rows,
                    format!("HNSW search ef {ef}, {at}, recall@10 vs exact"),
                    &e["recall_at_10"],
                    "fraction",
                );
            }
        }
    }
    if let Some(m) = sections.get("memory").filter(|r| r.get("error").is_none()) {
        let n = m["concepts"].as_u64().unwrap_or(0);
        fig(
            &mut rows,
            format!("store open, {n} concepts"),
            &m["open_ms"],
            "ms",
        );
        fig(
            &mut rows,
            format!("key index, first build, {n} concepts"),
            &m["first_index_build_ms"],
            "ms",
        );
        fig(
            &mut rows,
            format!("key index, open in next process, {n} concepts"),
            &m["index_open_in_next_process_ms"],
            "ms",
        );
    }
    if let Some(g) = sections
        .get("generate")
        .filter(|r| r.get("error").is_none())
    {
        let model = g["model"].as_str().unwrap_or("?");
        fig(
            &mut rows,
            format!("{model}, prompt"),
            &g["prompt_tokens_per_s"],
            "tokens/s",
        );
        fig(
            &mut rows,
            format!("{model}, generation"),
            &g["generated_tokens_per_s"],
            "tokens/s",
        );
    }
    rows
}

pub fn run(ctx: &Context, args: SuiteArgs) -> Result<()> {
    if let Some(bad) = args.skip.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        bail!("--skip {bad}: not a benchmark (retrieval, vectors, memory, generate)");
    }
    let sizes = args
        .sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut sections = serde_json::Map::new();
    let started = std::time::Instant::now();
    for name in SECTIONS {
        if args.skip.iter().any(|s| s == name) {
            continue;
        }
        if !ctx.json {
            eprintln!("rap bench: running {name}...");
        }
        let sub_args: Vec<String> = match *name {
            "retrieval" => {
                let mut a = vec!["retrieval".into()];
                if let Some(dataset) = &args.dataset {
                    a.extend(["--dataset".into(), dataset.display().to_string()]);
                }
                a.extend(["--queries".into(), args.queries.to_string()]);
                a
            }
            "vectors" => vec!["vectors".into(), "--sizes".into(), sizes.clone()],
            "memory" => vec![
                "memory".into(),
                "--concepts".into(),
                args.memory_concepts.to_string(),
            ],
            _ => vec!["generate".into()],
        };
        sections.insert(name.to_string(), sub(ctx, &sub_args));
    }
    let figures = headline(&sections);
    let errors: Vec<String> = sections
        .iter()
        .filter_map(|(k, v)| Some(format!("{k}: {}", v.get("error")?.as_str()?)))
        .collect();
    let report = json!({
        "machine": rap_bench::machine(),
        "seconds": started.elapsed().as_secs_f64(),
        "figures": figures,
        "errors": errors,
        "reports": sections,
    });
    if ctx.json {
        return output::print_json(&report);
    }
    let mut t = output::table(&["figure", "value", "unit"]);
    for f in &figures {
        let v = f["value"].as_f64().unwrap_or(f64::NAN);
        let shown = if v.abs() >= 100.0 {
            format!("{v:.0}")
        } else if v.abs() >= 1.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.4}")
        };
        t.add_row(vec![
            f["figure"].as_str().unwrap_or("").to_string(),
            shown,
            f["unit"].as_str().unwrap_or("").to_string(),
        ]);
    }
    println!("{t}");
    for e in &errors {
        println!("not measured: {e}");
    }
    println!(
        "machine: {}",
        serde_json::to_string(&report["machine"]).unwrap_or_default()
    );
    println!("(every report in full: rap bench --json)");
    Ok(())
}
