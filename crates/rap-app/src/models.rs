//! Models by name: the models directory (`rap-models`) says which files a name means, and the
//! crate with the model code loads them (`rap-vision` for encoders, `rap-detect` for
//! detectors). Names resolve in the one order of [`rap_models::catalogue`].

use candle_core::Device;
use rap_core::{Error, ImageEncoder, RegionProposer, Result};
use rap_detect::{CenterNet, DetectorSettings, Owlv2};
use rap_models::catalogue::{self, Named};
use rap_models::hub::{self, CheckpointFacts, HfKind, HfManifest, HubProgress, Problem};
use rap_models::{npm, pip, ModelKind, Tools};
use rap_vision::{EfficientNetLite0Encoder, HfEncoder, HfFolder};
use std::path::Path;
use std::sync::Arc;

/// The default image encoder's catalogue name.
pub const DEFAULT_ENCODER: &str = "efficientnet-lite0";

/// Loads a Hugging Face checkpoint folder (on the CPU) and says what it is: an OWLv2
/// detector, or an image encoder with its embedding space. What [`hub`] records.
pub fn probe(dir: &Path, weights_sha256: Option<&str>) -> Result<CheckpointFacts> {
    let model_type = HfFolder::open(dir)?.model_type()?;
    if model_type.starts_with("llava") {
        // A LLaVA generator: its config and tensor shapes are checked, not its gigabytes read.
        let config = rap_llm_local::llava::check_dir(dir)?;
        let lm = match config.text.family {
            rap_llm_local::llava::LmFamily::Llama => "llama",
            rap_llm_local::llava::LmFamily::Phi3 => "phi3",
        };
        return Ok(CheckpointFacts {
            kind: HfKind::Generator,
            model_type: format!("{model_type}-{lm}"),
            encoder_id: String::new(),
            dim: 0,
            has_text: true,
        });
    }
    if model_type == "owlv2" {
        // A detector: loading it checks the folder; it has no embeddings to key a memory.
        Owlv2::load_on(dir, &Device::Cpu)?;
        return Ok(CheckpointFacts {
            kind: HfKind::Detector,
            model_type: "owlv2".to_string(),
            encoder_id: String::new(),
            dim: 0,
            has_text: true,
        });
    }
    let enc = rap_vision::load_hf_encoder(dir, weights_sha256)?;
    Ok(CheckpointFacts {
        kind: HfKind::Encoder,
        model_type: enc.model_type().to_string(),
        encoder_id: enc.info().id.clone(),
        dim: enc.info().dim,
        has_text: enc.has_text(),
    })
}

/// Registers a checkpoint folder the user already has under `name` (`rap models add`): it
/// must load now.
pub fn add_folder(models_dir: &Path, name: &str, dir: &Path) -> Result<HfManifest> {
    hub::add_folder(models_dir, name, dir, &probe)
}

/// Re-hashes a registered checkpoint's files and checks it still loads as registered.
pub fn verify(models_dir: &Path, name: &str) -> Result<Vec<Problem>> {
    hub::verify(models_dir, name, &probe)
}

/// Installs a Hugging Face checkpoint from the Hub (a catalogue name or `org/name[@rev]`).
pub fn install_hub(
    models_dir: &Path,
    id: &str,
    tools: &Tools,
    progress: &mut dyn FnMut(HubProgress),
) -> Result<HfManifest> {
    hub::install(models_dir, id, tools, &probe, progress)
}

/// Loads a registered encoder checkpoint by name onto `device`; `Ok(None)` when `name` is not
/// registered. A detector, or a folder that changed since it was registered, is an error.
pub fn load_registered(
    models_dir: &Path,
    name: &str,
    device: &Device,
) -> Result<Option<HfEncoder>> {
    let Some(m) = hub::manifest(models_dir, name)? else {
        return Ok(None);
    };
    if m.kind == HfKind::Detector {
        return Err(Error::invalid(format!(
            "model {name} is a detector ({}), not an image encoder: use it as the retrieval \
             detector ([retrieval] detector = \"{name}\")",
            m.model_type
        )));
    }
    if m.kind == HfKind::Generator {
        return Err(Error::invalid(format!(
            "model {name} is a generator ({}), not an image encoder: use it with --model {name}",
            m.model_type
        )));
    }
    let folder = HfFolder::open(&m.dir)?.with_device(device.clone());
    let enc = rap_vision::load_hf_folder(folder, m.weights_sha256())?;
    if enc.info().id != m.encoder_id {
        return Err(Error::Model(format!(
            "model {name} ({}) changed since it was registered (encoder {} now, {} then): \
             run `rap models verify {name}`",
            m.dir.display(),
            enc.info().id,
            m.encoder_id
        )));
    }
    Ok(Some(enc))
}

/// Whether the default encoder is installed (cheap: no hashing, no loading).
pub fn default_encoder_installed(models_dir: &Path) -> bool {
    pip::list(models_dir)
        .into_iter()
        .any(|m| m.name == DEFAULT_ENCODER && m.state == pip::InstallState::Installed)
}

/// The installed EfficientNet-Lite0 as its concrete type (for GeM pooling, boxes and the
/// classifier), or an error that says how to install it.
pub fn load_efficientnet_lite0(
    models_dir: &Path,
    device: &Device,
) -> Result<EfficientNetLite0Encoder> {
    let path = pip::installed_path(models_dir, DEFAULT_ENCODER, "image encoder", "default")?;
    EfficientNetLite0Encoder::load_on(&path, device)
}

/// The default image encoder from `models_dir`.
pub fn load_default_encoder(models_dir: &Path, device: &Device) -> Result<Box<dyn ImageEncoder>> {
    Ok(Box::new(load_efficientnet_lite0(models_dir, device)?))
}

/// Any image encoder by name or path: the built-in model (`efficientnet-lite0`, `default`), a
/// registered Hugging Face checkpoint, or a checkpoint folder given by path.
pub fn resolve_encoder(
    models_dir: &Path,
    name_or_path: &str,
    device: &Device,
) -> Result<Box<dyn ImageEncoder>> {
    if name_or_path == DEFAULT_ENCODER || name_or_path == "default" {
        return load_default_encoder(models_dir, device);
    }
    if let Some(enc) = load_registered(models_dir, name_or_path, device)? {
        return Ok(Box::new(enc));
    }
    let path = Path::new(name_or_path);
    if path.is_dir() {
        let folder = HfFolder::open(path)?.with_device(device.clone());
        return Ok(Box::new(rap_vision::load_hf_folder(folder, None)?));
    }
    let mut known: Vec<String> = vec![DEFAULT_ENCODER.into()];
    known.extend(
        hub::list(models_dir)
            .into_iter()
            .filter(|m| m.kind == HfKind::Encoder)
            .map(|m| m.name),
    );
    let hint = match hub::find(name_or_path) {
        Some(e) => format!(" (install it with `rap models install {}`)", e.name),
        None => String::new(),
    };
    Err(Error::not_found(
        "encoder",
        format!(
            "{name_or_path}{hint}; installed: {}; or give the path of a checkpoint folder",
            known.join(", ")
        ),
    ))
}

/// The installed CenterNet (checked by size; `rap models verify` hashes it), or an error that
/// says how to install it.
pub fn load_centernet(models_dir: &Path, device: &Device) -> Result<CenterNet> {
    let entry = npm::find("centernet")
        .ok_or_else(|| Error::Model("centernet is not in the catalogue".into()))?;
    if !npm::is_installed(models_dir, entry) {
        return Err(Error::not_installed(
            "centernet",
            format!(
                "no detector installed in {}: run `rap models install centernet`",
                models_dir.display()
            ),
        ));
    }
    CenterNet::load_on(&models_dir.join(entry.name), device)
}

/// The detector `spec` names, as a region proposer: `centernet` (installed in `models_dir`),
/// a registered OWLv2 checkpoint's name, or an OWLv2 checkpoint folder's path. Checked now
/// (installed? a detector?), loaded at the first proposal.
pub fn resolve_detector(
    models_dir: &Path,
    spec: &str,
    settings: DetectorSettings,
    device: &Device,
) -> Result<Arc<dyn RegionProposer>> {
    settings.check()?;
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(Error::invalid(
            "the detector setting is empty: name one (\"centernet\", or an OWLv2 model or \
             folder), or remove it",
        ));
    }
    match catalogue::lookup(models_dir, spec)? {
        Some(Named::Npm(entry)) if entry.kind == ModelKind::Detector => {
            if !npm::is_installed(models_dir, entry) {
                return Err(Error::not_found(
                    "detector",
                    format!(
                        "{spec} is not installed in {}: run `rap models install {spec}`",
                        models_dir.display()
                    ),
                ));
            }
            return rap_detect::centernet_proposer(
                models_dir.join(entry.name),
                settings,
                device.clone(),
            );
        }
        Some(Named::Registered(m)) => {
            if m.kind != HfKind::Detector {
                return Err(Error::invalid(format!(
                    "model {spec} is an image encoder ({}), not a detector: the detector is \
                     \"centernet\" or an OWLv2 checkpoint",
                    m.model_type
                )));
            }
            return rap_detect::owlv2_proposer(m.dir, settings, device.clone());
        }
        _ => {}
    }
    let path = Path::new(spec);
    if path.is_dir() {
        let model_type = HfFolder::open(path)?.model_type()?;
        if model_type != "owlv2" {
            return Err(Error::invalid(format!(
                "{spec} holds a {model_type} checkpoint, not a detector: the detector is \
                 \"centernet\" or an OWLv2 checkpoint"
            )));
        }
        return rap_detect::owlv2_proposer(path.to_path_buf(), settings, device.clone());
    }
    Err(Error::not_found(
        "detector",
        format!(
            "{spec} (not installed in {}): use \"centernet\" (`rap models install centernet`), \
             or register an OWLv2 folder with `rap models add {spec} --path DIR`, or give the \
             folder's path",
            models_dir.display()
        ),
    ))
}

/// Checks an installed model of any source: its files against their pins or records, and
/// that it still loads. Returns the problems, empty when all is well.
pub fn verify_any(models_dir: &Path, name: &str, tools: &Tools) -> Result<Vec<String>> {
    Ok(match catalogue::lookup(models_dir, name)? {
        Some(Named::Npm(entry)) => {
            let mut p: Vec<String> = npm::verify(models_dir, entry)
                .err()
                .map(|e| e.to_string())
                .into_iter()
                .collect();
            // And it must still load (every op of its graph known).
            if p.is_empty() && entry.name == "centernet" {
                if let Err(e) = CenterNet::load_on(&models_dir.join(entry.name), &Device::Cpu) {
                    p.push(e.to_string());
                }
            }
            p
        }
        // Offline install = verify the installed copy's sha256 against the catalogue.
        Some(Named::Wheel(_)) => match pip::install(name, models_dir, tools, true, &mut |_| {}) {
            Ok(_) => vec![],
            Err(e) => vec![e.to_string()],
        },
        _ => verify(models_dir, name)?
            .into_iter()
            .map(|p| format!("{}: {}", p.file.display(), p.problem))
            .collect(),
    })
}
