//! Checkpoint weights: the safetensors files of a folder, PEFT LoRA adapters merged into them at
//! load time, and the tensor-name prefixes of each layout.
//!
//! [`Checkpoint`] is a candle [`SimpleBackend`]: candle's modules ask for a tensor by name and
//! get the checkpoint's tensor, with `W += lora_alpha / r * B @ A` applied (in f32) when an
//! adapter targets it. Names mirror the checkpoint's; [`View`] only rewrites a prefix so that
//! candle's Llama (`model.layers.N...`, `lm_head`) reads e.g. llava-hf's
//! `model.language_model.layers.N...`.

use crate::llava::config::read_json;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use rap_core::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The safetensors files of `dir` that hold the model: the shards of
/// `model.safetensors.index.json`, else `model.safetensors`, else every `*.safetensors` except
/// an adapter's (so a separate `mm_projector.safetensors` is picked up too).
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let v = read_json(&index)?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::Model(format!("{}: no `weight_map` object", index.display())))?;
        let mut files: Vec<PathBuf> = Vec::new();
        for (name, f) in map {
            let f = f.as_str().ok_or_else(|| {
                Error::Model(format!(
                    "{}: weight_map entry `{name}` is not a file name",
                    index.display()
                ))
            })?;
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(Error::Model(format!(
                    "{}: weight_map names `{f}`, which is not a file in the folder",
                    index.display()
                )));
            }
            let p = dir.join(f);
            if !files.contains(&p) {
                files.push(p);
            }
        }
        for f in &files {
            if !f.is_file() {
                return Err(Error::Model(format!(
                    "{}: shard {} is missing",
                    index.display(),
                    f.display()
                )));
            }
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "safetensors")
                && p.file_name()
                    .is_some_and(|n| n != "adapter_model.safetensors")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        let has_bin = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".bin"));
        return Err(Error::Model(if has_bin {
            format!(
                "{}: the weights are PyTorch .bin files; only safetensors are read (convert them, \
                 e.g. load with transformers and save_pretrained(..., safe_serialization=True))",
                dir.display()
            )
        } else {
            format!("{}: no *.safetensors weights", dir.display())
        }));
    }
    Ok(files)
}

/// A LoRA update of one weight.
struct Delta {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

/// Memory-mapped safetensors with LoRA deltas and replacement tensors from adapters.
pub struct Checkpoint {
    dir: PathBuf,
    st: MmapedSafetensors,
    deltas: HashMap<String, Vec<Delta>>,
    replaced: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Opens (memory-maps) the weights of `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let files = weight_files(dir)?;
        Self::open_files(dir, &files)
    }

    /// Opens the given safetensors files.
    pub fn open_files(dir: &Path, files: &[PathBuf]) -> Result<Self> {
        // SAFETY: the files are mapped read-only; like every safetensors reader we rely on them
        // not being truncated while the model is loaded.
        #[allow(unsafe_code)]
        let st = unsafe { MmapedSafetensors::multi(files) }.map_err(|e| {
            Error::Model(format!(
                "{}: unreadable safetensors weights: {e}",
                dir.display()
            ))
        })?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            st,
            deltas: HashMap::new(),
            replaced: HashMap::new(),
        })
    }

    /// The folder the weights are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the checkpoint has a tensor of this exact name.
    pub fn has(&self, name: &str) -> bool {
        self.replaced.contains_key(name) || self.st.get(name).is_ok()
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(t) = self.replaced.get(name) {
            return Some(t.dims().to_vec());
        }
        self.st.get(name).ok().map(|v| v.shape().to_vec())
    }

    /// Checks that `name` exists with shape `dims`.
    pub fn expect(&self, name: &str, dims: &[usize]) -> Result<()> {
        match self.shape(name) {
            None => Err(Error::Model(format!(
                "{}: tensor `{name}` is missing from the weights",
                self.dir.display()
            ))),
            Some(s) if s != dims => Err(Error::Model(format!(
                "{}: tensor `{name}` has shape {s:?}, expected {dims:?}",
                self.dir.display()
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Merges the PEFT LoRA adapter in `adapter_dir` (adapter_config.json +
    /// adapter_model.safetensors): for each `base_model.model.X.lora_A.weight` /
    /// `...lora_B.weight` pair, `X.weight += scale * B @ A` with `scale = lora_alpha / r`
    /// (`lora_alpha / sqrt(r)` with `use_rslora`). Other tensors of the adapter (PEFT's
    /// `modules_to_save`) replace the checkpoint's tensor of the same name. Every targeted
    /// tensor must exist in the checkpoint with a matching shape.
    pub fn add_lora(&mut self, adapter_dir: &Path) -> Result<usize> {
        let cfg_path = adapter_dir.join("adapter_config.json");
        if !cfg_path.is_file() {
            return Err(Error::Model(format!(
                "{}: no adapter_config.json; expected a PEFT LoRA adapter folder",
                adapter_dir.display()
            )));
        }
        let cfg = read_json(&cfg_path)?;
        let bad = |what: String| Error::Model(format!("{}: {what}", cfg_path.display()));
        if let Some(t) = cfg.get("peft_type").and_then(|v| v.as_str()) {
            if t != "LORA" {
                return Err(bad(format!(
                    "peft_type is `{t}`; only LORA adapters are supported"
                )));
            }
        }
        let r = cfg
            .get("r")
            .and_then(|v| v.as_u64())
            .filter(|r| *r > 0)
            .ok_or_else(|| bad("`r` is missing or not a positive integer".into()))?;
        let alpha = cfg
            .get("lora_alpha")
            .and_then(|v| v.as_f64())
            .ok_or_else(|| bad("`lora_alpha` is missing or not a number".into()))?;
        for key in ["fan_in_fan_out", "use_dora"] {
            if cfg.get(key).and_then(|v| v.as_bool()) == Some(true) {
                return Err(bad(format!("`{key}` is true, which is not supported")));
            }
        }
        if cfg
            .get("rank_pattern")
            .and_then(|v| v.as_object())
            .is_some_and(|o| !o.is_empty())
            || cfg
                .get("alpha_pattern")
                .and_then(|v| v.as_object())
                .is_some_and(|o| !o.is_empty())
        {
            return Err(bad(
                "per-module rank_pattern / alpha_pattern are not supported".into(),
            ));
        }
        let use_rslora = cfg.get("use_rslora").and_then(|v| v.as_bool()) == Some(true);
        let scale = if use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        let wpath = adapter_dir.join("adapter_model.safetensors");
        if !wpath.is_file() {
            let bin = adapter_dir.join("adapter_model.bin");
            return Err(Error::Model(if bin.is_file() {
                format!(
                    "{}: the adapter is a PyTorch .bin file; only adapter_model.safetensors is read",
                    bin.display()
                )
            } else {
                format!("{}: missing", wpath.display())
            }));
        }
        let tensors = candle_core::safetensors::load(&wpath, &Device::Cpu).map_err(|e| {
            Error::Model(format!("{}: unreadable safetensors: {e}", wpath.display()))
        })?;
        let wbad = |what: String| Error::Model(format!("{}: {what}", wpath.display()));
        let mut pairs: HashMap<String, (Option<Tensor>, Option<Tensor>)> = HashMap::new();
        let mut replaced = Vec::new();
        for (key, t) in tensors {
            let k = key
                .strip_prefix("base_model.model.")
                .unwrap_or(&key)
                .replace(".default.", ".");
            if k.contains("lora_embedding_") || k.contains("lora_magnitude") {
                return Err(wbad(format!(
                    "`{key}`: LoRA on embeddings and DoRA are not supported"
                )));
            }
            let t = t
                .to_dtype(DType::F32)
                .map_err(|e| wbad(format!("`{key}`: {e}")))?;
            if let Some(target) = k.strip_suffix(".lora_A.weight") {
                pairs.entry(format!("{target}.weight")).or_default().0 = Some(t);
            } else if let Some(target) = k.strip_suffix(".lora_B.weight") {
                pairs.entry(format!("{target}.weight")).or_default().1 = Some(t);
            } else if k.contains("lora_") {
                return Err(wbad(format!("`{key}` is not a lora_A / lora_B weight")));
            } else {
                let k = k
                    .replace(".modules_to_save.", ".")
                    .replace(".original_module.", ".");
                replaced.push((k, t));
            }
        }
        let mut count = 0;
        for (target, (a, b)) in pairs {
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    return Err(wbad(format!(
                        "`{target}` has only one of lora_A and lora_B"
                    )))
                }
            };
            let Some(shape) = self.shape(&target) else {
                return Err(wbad(format!(
                    "the adapter targets `{target}`, which the model at {} does not have (an adapter for another layout or model?)",
                    self.dir.display()
                )));
            };
            let (ad, bd) = (a.dims().to_vec(), b.dims().to_vec());
            if shape.len() != 2
                || ad.len() != 2
                || bd.len() != 2
                || ad[0] != r as usize
                || bd[1] != r as usize
                || bd[0] != shape[0]
                || ad[1] != shape[1]
            {
                return Err(wbad(format!(
                    "`{target}`: lora_A {ad:?} and lora_B {bd:?} with r = {r} do not fit the weight {shape:?}"
                )));
            }
            self.deltas
                .entry(target)
                .or_default()
                .push(Delta { a, b, scale });
            count += 1;
        }
        for (k, t) in replaced {
            match self.shape(&k) {
                Some(s) if s == t.dims() => {
                    self.replaced.insert(k, t);
                }
                Some(s) => {
                    return Err(wbad(format!(
                        "`{k}` has shape {:?}, the model's has {s:?}",
                        t.dims()
                    )))
                }
                None => {
                    return Err(wbad(format!(
                        "`{k}` replaces a tensor the model does not have"
                    )))
                }
            }
        }
        if count == 0 {
            return Err(wbad("no lora_A / lora_B weights".into()));
        }
        tracing::info!(adapter = %adapter_dir.display(), targets = count, scale, "merged LoRA adapter");
        Ok(count)
    }

    fn load(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let base = match self.replaced.get(name) {
            Some(t) => t.to_device(dev)?,
            None => self.st.load(name, dev)?,
        };
        match self.deltas.get(name) {
            None => base.to_dtype(dtype),
            Some(deltas) => {
                let mut w = base.to_dtype(DType::F32)?;
                for d in deltas {
                    let delta = d.b.to_device(dev)?.matmul(&d.a.to_device(dev)?)?;
                    w = (w + (delta * d.scale)?)?;
                }
                w.to_dtype(dtype)
            }
        }
    }
}

/// A view of a [`Checkpoint`] that rewrites one name prefix (candle's name -> checkpoint's).
pub struct View {
    pub ck: Arc<Checkpoint>,
    /// `(from, to)` prefix rewrites, the first match applies.
    pub rewrites: Vec<(String, String)>,
}

impl View {
    fn name(&self, name: &str) -> String {
        for (from, to) in &self.rewrites {
            if let Some(rest) = name.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        name.to_string()
    }
}

impl SimpleBackend for View {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let real = self.name(name);
        let t = self.ck.load(&real, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "{}: tensor `{real}` has shape {:?}, expected {:?}",
                self.ck.dir.display(),
                t.dims(),
                s.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.ck.load(&self.name(name), dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.ck.has(&self.name(name))
    }
}
