//! The op table of the TF.js graph interpreter: each supported TensorFlow op, by name, with
//! TensorFlow's semantics (NHWC layout, `SAME`/`VALID` padding, the reference runtime's
//! bilinear resize and top-k tie order). Each op gets its node (for attributes) and its input
//! values, and returns its outputs; an attribute or input it cannot honour is an error that
//! says which, never a silent approximation.

use super::Node;
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// An op's error message (the caller adds the node's name and op).
pub type OpResult = std::result::Result<Vec<Tensor>, String>;
/// An op: its node and its inputs in, its outputs out.
pub type OpFn = fn(&Node, &[Tensor]) -> OpResult;

/// Every supported op (besides `Const` and `Placeholder`, which the interpreter handles).
const OPS: &[(&str, OpFn)] = &[
    ("Identity", identity),
    ("_FusedConv2D", fused_conv2d),
    ("Conv2D", conv2d),
    ("FusedDepthwiseConv2dNative", fused_depthwise),
    ("DepthwiseConv2dNative", depthwise),
    ("Add", add),
    ("AddV2", add),
    ("BiasAdd", add),
    ("Sub", sub),
    ("Mul", mul),
    ("Relu", relu),
    ("Relu6", relu6),
    ("Sigmoid", sigmoid),
    ("Mean", mean),
    ("ConcatV2", concat),
    ("Reshape", reshape),
    ("Cast", cast),
    ("ExpandDims", expand_dims),
    ("StridedSlice", strided_slice),
    ("ResizeBilinear", resize_bilinear_op),
    ("FloorDiv", floor_div),
    ("FloorMod", floor_mod),
    ("MaxPool", max_pool),
    ("Equal", equal),
    ("TopKV2", top_k),
    ("GatherV2", gather),
];

/// The implementation of `op`, if there is one.
pub fn find(op: &str) -> Option<OpFn> {
    match op {
        "Const" | "Placeholder" => Some(identity),
        _ => OPS.iter().find(|(n, _)| *n == op).map(|(_, f)| *f),
    }
}

/// The names of the supported ops.
pub fn supported() -> Vec<&'static str> {
    OPS.iter().map(|(n, _)| *n).collect()
}

fn c<T>(r: candle_core::Result<T>) -> std::result::Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn arg(args: &[Tensor], i: usize) -> std::result::Result<&Tensor, String> {
    args.get(i)
        .ok_or_else(|| format!("expects at least {} inputs, got {}", i + 1, args.len()))
}

/// The values of a small integer tensor (shapes, axes, sizes).
fn ints(t: &Tensor) -> std::result::Result<Vec<i64>, String> {
    c(t.flatten_all()
        .and_then(|t| t.to_dtype(DType::I64))
        .and_then(|t| t.to_vec1::<i64>()))
}

fn int(t: &Tensor) -> std::result::Result<i64, String> {
    let v = ints(t)?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(format!("expects a scalar, got {} values", v.len())),
    }
}

fn axis_index(axis: i64, rank: usize) -> std::result::Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

fn f32_data(t: &Tensor) -> std::result::Result<Vec<f32>, String> {
    if t.dtype() != DType::F32 {
        return Err(format!("expects float32, got {:?}", t.dtype()));
    }
    c(t.flatten_all().and_then(|t| t.to_vec1::<f32>()))
}

fn nhwc(t: &Tensor) -> std::result::Result<(usize, usize, usize, usize), String> {
    c(t.dims4()).map_err(|e| format!("expects an NHWC tensor: {e}"))
}

fn check_nhwc(node: &Node) -> std::result::Result<(), String> {
    match node.attrs.string("data_format") {
        None => Ok(()),
        Some(f) if f == "NHWC" => Ok(()),
        Some(f) => Err(format!("data_format {f} is not supported (only NHWC)")),
    }
}

fn identity(_: &Node, args: &[Tensor]) -> OpResult {
    Ok(vec![arg(args, 0)?.clone()])
}

// ---- convolutions ---------------------------------------------------------------------------

/// Output size and padding before, for one spatial dimension.
fn window(
    node: &Node,
    dim: usize,
    size: usize,
    k: usize,
    s: usize,
) -> std::result::Result<(usize, usize), String> {
    let padding = node.attrs.string("padding").unwrap_or_default();
    match padding.as_str() {
        "SAME" => {
            let out = size.div_ceil(s);
            let total = ((out - 1) * s + k).saturating_sub(size);
            Ok((out, total / 2))
        }
        "VALID" => {
            if size < k {
                return Err(format!("input {size} is smaller than the kernel {k}"));
            }
            Ok(((size - k) / s + 1, 0))
        }
        "EXPLICIT" => {
            let p = node.attrs.ints("explicit_paddings").unwrap_or_default();
            // [n_before, n_after, h_before, h_after, w_before, w_after, c_before, c_after]
            let (b, a) = match (p.get(2 * dim + 2), p.get(2 * dim + 3)) {
                (Some(&b), Some(&a)) if b >= 0 && a >= 0 => (b as usize, a as usize),
                _ => return Err(format!("bad explicit_paddings {p:?}")),
            };
            let padded = size + b + a;
            if padded < k {
                return Err(format!(
                    "padded input {padded} is smaller than the kernel {k}"
                ));
            }
            Ok(((padded - k) / s + 1, b))
        }
        other => Err(format!("padding {other:?} is not supported")),
    }
}

/// (stride_h, stride_w) from `strides`, with dilations required to be 1.
fn strides(node: &Node) -> std::result::Result<(usize, usize), String> {
    check_nhwc(node)?;
    if let Some(d) = node.attrs.ints("dilations") {
        if d.iter().any(|&x| x != 1) {
            return Err(format!("dilations {d:?} are not supported (only 1)"));
        }
    }
    let s = node
        .attrs
        .ints("strides")
        .unwrap_or_else(|| vec![1, 1, 1, 1]);
    match s.as_slice() {
        [1, sh, sw, 1] if *sh > 0 && *sw > 0 => Ok((*sh as usize, *sw as usize)),
        _ => Err(format!("strides {s:?} are not supported")),
    }
}

/// The fused ops after a convolution: bias, then an activation.
fn apply_fused(node: &Node, y: Tensor, extra: &[Tensor]) -> OpResult {
    let fused = node.attrs.strings("fused_ops").unwrap_or_default();
    let mut y = y;
    let mut next = 0usize;
    let mut take = |what: &str| {
        let t = extra
            .get(next)
            .cloned()
            .ok_or_else(|| format!("fused {what} has no argument"));
        next += 1;
        t
    };
    for f in &fused {
        y = match f.as_str() {
            "BiasAdd" => c(y.broadcast_add(&take("BiasAdd")?))?,
            "Relu" => c(y.relu())?,
            "Relu6" => c(y.clamp(0f32, 6f32))?,
            "Sigmoid" => c(candle_nn::ops::sigmoid(&y))?,
            "Elu" => c(y.elu(1.0))?,
            "LeakyRelu" => {
                let a = node.attrs.float("leakyrelu_alpha").unwrap_or(0.2);
                c(y.maximum(&c(y.affine(a, 0.0))?))?
            }
            "Prelu" => {
                let alpha = take("Prelu")?;
                let neg = c(c(y.minimum(0f32))?.broadcast_mul(&alpha))?;
                c(c(y.relu())? + neg)?
            }
            other => return Err(format!("fused op {other} is not supported")),
        };
    }
    Ok(vec![y])
}

/// NHWC convolution with a [kh, kw, in, out] filter: a matrix product for 1x1 stride-1
/// unpadded convolutions, im2col then a matrix product otherwise.
fn conv_nhwc(node: &Node, x: &Tensor, w: &Tensor) -> std::result::Result<Tensor, String> {
    let (n, h, wd, ci) = nhwc(x)?;
    let (kh, kw, wi, co) = c(w.dims4()).map_err(|e| format!("filter: {e}"))?;
    if wi != ci {
        return Err(format!("filter expects {wi} input channels, got {ci}"));
    }
    let (sh, sw) = strides(node)?;
    let (oh, pt) = window(node, 0, h, kh, sh)?;
    let (ow, pl) = window(node, 1, wd, kw, sw)?;
    let wmat = c(w.reshape((kh * kw * ci, co)))?;
    if kh == 1 && kw == 1 && sh == 1 && sw == 1 && oh == h && ow == wd {
        let y = c(x.reshape((n * h * wd, ci)).and_then(|x| x.matmul(&wmat)))?;
        return c(y.reshape((n, h, wd, co)));
    }
    let src = f32_data(x)?;
    let cols = kh * kw * ci;
    let mut col = vec![0f32; n * oh * ow * cols];
    col.par_chunks_mut(ow * cols)
        .enumerate()
        .for_each(|(row, out)| {
            let (b, oy) = (row / oh, row % oh);
            for ox in 0..ow {
                let dst = &mut out[ox * cols..(ox + 1) * cols];
                for ky in 0..kh {
                    let iy = (oy * sh + ky) as isize - pt as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * sw + kx) as isize - pl as isize;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        let s = ((b * h + iy as usize) * wd + ix as usize) * ci;
                        let d = (ky * kw + kx) * ci;
                        dst[d..d + ci].copy_from_slice(&src[s..s + ci]);
                    }
                }
            }
        });
    let col = c(Tensor::from_vec(col, (n * oh * ow, cols), x.device()))?;
    c(col.matmul(&wmat).and_then(|y| y.reshape((n, oh, ow, co))))
}

fn conv2d(node: &Node, args: &[Tensor]) -> OpResult {
    Ok(vec![conv_nhwc(node, arg(args, 0)?, arg(args, 1)?)?])
}

fn fused_conv2d(node: &Node, args: &[Tensor]) -> OpResult {
    let y = conv_nhwc(node, arg(args, 0)?, arg(args, 1)?)?;
    apply_fused(node, y, &args[2..])
}

/// NHWC depthwise convolution with a [kh, kw, in, multiplier] filter (output channel
/// c * multiplier + m), as a direct loop over output rows.
fn depthwise_nhwc(node: &Node, x: &Tensor, w: &Tensor) -> std::result::Result<Tensor, String> {
    let (n, h, wd, ci) = nhwc(x)?;
    let (kh, kw, wi, m) = c(w.dims4()).map_err(|e| format!("filter: {e}"))?;
    if wi != ci {
        return Err(format!("filter expects {wi} channels, got {ci}"));
    }
    let (sh, sw) = strides(node)?;
    let (oh, pt) = window(node, 0, h, kh, sh)?;
    let (ow, pl) = window(node, 1, wd, kw, sw)?;
    let src = f32_data(x)?;
    let wv = f32_data(w)?;
    let co = ci * m;
    let mut out = vec![0f32; n * oh * ow * co];
    out.par_chunks_mut(ow * co)
        .enumerate()
        .for_each(|(row, o)| {
            let (b, oy) = (row / oh, row % oh);
            for ox in 0..ow {
                let dst = &mut o[ox * co..(ox + 1) * co];
                for ky in 0..kh {
                    let iy = (oy * sh + ky) as isize - pt as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * sw + kx) as isize - pl as isize;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        let s = ((b * h + iy as usize) * wd + ix as usize) * ci;
                        let px = &src[s..s + ci];
                        let wk = &wv[(ky * kw + kx) * co..(ky * kw + kx + 1) * co];
                        if m == 1 {
                            for ((d, p), k) in dst.iter_mut().zip(px).zip(wk) {
                                *d += p * k;
                            }
                        } else {
                            for (cc, p) in px.iter().enumerate() {
                                for j in 0..m {
                                    dst[cc * m + j] += p * wk[cc * m + j];
                                }
                            }
                        }
                    }
                }
            }
        });
    c(Tensor::from_vec(out, (n, oh, ow, co), x.device()))
}

fn depthwise(node: &Node, args: &[Tensor]) -> OpResult {
    Ok(vec![depthwise_nhwc(node, arg(args, 0)?, arg(args, 1)?)?])
}

fn fused_depthwise(node: &Node, args: &[Tensor]) -> OpResult {
    let y = depthwise_nhwc(node, arg(args, 0)?, arg(args, 1)?)?;
    apply_fused(node, y, &args[2..])
}

// ---- element-wise ---------------------------------------------------------------------------

fn same_dtype(a: &Tensor, b: &Tensor) -> std::result::Result<(), String> {
    if a.dtype() != b.dtype() {
        return Err(format!(
            "inputs have different types ({:?} and {:?})",
            a.dtype(),
            b.dtype()
        ));
    }
    Ok(())
}

fn add(_: &Node, args: &[Tensor]) -> OpResult {
    let (a, b) = (arg(args, 0)?, arg(args, 1)?);
    same_dtype(a, b)?;
    Ok(vec![c(a.broadcast_add(b))?])
}

fn sub(_: &Node, args: &[Tensor]) -> OpResult {
    let (a, b) = (arg(args, 0)?, arg(args, 1)?);
    same_dtype(a, b)?;
    Ok(vec![c(a.broadcast_sub(b))?])
}

fn mul(_: &Node, args: &[Tensor]) -> OpResult {
    let (a, b) = (arg(args, 0)?, arg(args, 1)?);
    same_dtype(a, b)?;
    Ok(vec![c(a.broadcast_mul(b))?])
}

fn relu(_: &Node, args: &[Tensor]) -> OpResult {
    Ok(vec![c(arg(args, 0)?.relu())?])
}

fn relu6(_: &Node, args: &[Tensor]) -> OpResult {
    Ok(vec![c(arg(args, 0)?.clamp(0f32, 6f32))?])
}

fn sigmoid(_: &Node, args: &[Tensor]) -> OpResult {
    Ok(vec![c(candle_nn::ops::sigmoid(arg(args, 0)?))?])
}

fn equal(_: &Node, args: &[Tensor]) -> OpResult {
    let (a, b) = (arg(args, 0)?, arg(args, 1)?);
    same_dtype(a, b)?;
    Ok(vec![c(a.broadcast_eq(b))?])
}

/// Integer or float floor division / modulo with broadcasting (integers: Python semantics).
fn floor_binary(args: &[Tensor], modulo: bool) -> OpResult {
    let (a, b) = (arg(args, 0)?, arg(args, 1)?);
    same_dtype(a, b)?;
    let shape = c(a.shape().broadcast_shape_binary_op(b.shape(), "floor"))?;
    let a = c(a.broadcast_as(&shape))?;
    let b = c(b.broadcast_as(&shape))?;
    match a.dtype() {
        DType::I64 => {
            let av = c(a.flatten_all().and_then(|t| t.to_vec1::<i64>()))?;
            let bv = c(b.flatten_all().and_then(|t| t.to_vec1::<i64>()))?;
            let mut out = Vec::with_capacity(av.len());
            for (x, y) in av.iter().zip(&bv) {
                if *y == 0 {
                    return Err("integer division by zero".into());
                }
                let q = if x % y != 0 && ((*x < 0) != (*y < 0)) {
                    x / y - 1
                } else {
                    x / y
                };
                out.push(if modulo { x - q * y } else { q });
            }
            Ok(vec![c(Tensor::from_vec(out, shape, a.device()))?])
        }
        DType::F32 => {
            let q = c((&a / &b).and_then(|q| q.floor()))?;
            if modulo {
                Ok(vec![c(&a - c(q * &b)?)?])
            } else {
                Ok(vec![q])
            }
        }
        d => Err(format!("unsupported type {d:?}")),
    }
}

fn floor_div(_: &Node, args: &[Tensor]) -> OpResult {
    floor_binary(args, false)
}

fn floor_mod(_: &Node, args: &[Tensor]) -> OpResult {
    floor_binary(args, true)
}

fn cast(node: &Node, args: &[Tensor]) -> OpResult {
    let x = arg(args, 0)?;
    let to = node.attrs.dtype("DstT").unwrap_or_default();
    let y = match to.as_str() {
        "DT_FLOAT" => c(x.to_dtype(DType::F32))?,
        "DT_INT32" | "DT_INT64" => c(x.to_dtype(DType::I64))?,
        "DT_BOOL" => c(x.ne(&c(x.zeros_like())?))?,
        other => return Err(format!("cast to {other} is not supported")),
    };
    Ok(vec![y])
}

// ---- shapes ---------------------------------------------------------------------------------

fn reshape(_: &Node, args: &[Tensor]) -> OpResult {
    let x = arg(args, 0)?;
    let spec = ints(arg(args, 1)?)?;
    let known: i64 = spec.iter().filter(|&&d| d >= 0).product();
    let n = x.elem_count() as i64;
    let mut dims = Vec::with_capacity(spec.len());
    for &d in &spec {
        dims.push(match d {
            -1 if known > 0 && n % known == 0 => (n / known) as usize,
            d if d >= 0 => d as usize,
            _ => return Err(format!("cannot reshape {:?} to {spec:?}", x.dims())),
        });
    }
    Ok(vec![c(x.reshape(dims))?])
}

fn expand_dims(_: &Node, args: &[Tensor]) -> OpResult {
    let x = arg(args, 0)?;
    let a = int(arg(args, 1)?)?;
    let rank = x.rank();
    let axis = axis_index(a, rank + 1)?;
    Ok(vec![c(x.unsqueeze(axis))?])
}

fn concat(_: &Node, args: &[Tensor]) -> OpResult {
    let (axis_t, parts) = args.split_last().ok_or("ConcatV2 without inputs")?;
    let first = parts.first().ok_or("ConcatV2 without values")?;
    let axis = axis_index(int(axis_t)?, first.rank())?;
    for p in parts {
        same_dtype(first, p)?;
    }
    Ok(vec![c(Tensor::cat(parts, axis))?])
}

fn mean(node: &Node, args: &[Tensor]) -> OpResult {
    let x = arg(args, 0)?;
    let rank = x.rank();
    let mut axes: Vec<usize> = ints(arg(args, 1)?)?
        .into_iter()
        .map(|a| axis_index(a, rank))
        .collect::<std::result::Result<_, _>>()?;
    axes.sort_unstable();
    axes.dedup();
    let mut y = x.clone();
    for &a in &axes {
        y = c(y.mean_keepdim(a))?;
    }
    if !node.attrs.bool("keep_dims").unwrap_or(false) {
        for &a in axes.iter().rev() {
            y = c(y.squeeze(a))?;
        }
    }
    Ok(vec![y])
}

/// StridedSlice with positive strides; `begin_mask`, `end_mask` and `shrink_axis_mask`
/// supported, `ellipsis_mask` and `new_axis_mask` refused.
fn strided_slice(node: &Node, args: &[Tensor]) -> OpResult {
    let x = arg(args, 0)?;
    let begin = ints(arg(args, 1)?)?;
    let end = ints(arg(args, 2)?)?;
    let step = ints(arg(args, 3)?)?;
    let mask = |k: &str| node.attrs.int(k).unwrap_or(0);
    if mask("ellipsis_mask") != 0 || mask("new_axis_mask") != 0 {
        return Err("ellipsis_mask and new_axis_mask are not supported".into());
    }
    let (bm, em, sm) = (
        mask("begin_mask"),
        mask("end_mask"),
        mask("shrink_axis_mask"),
    );
    let dims = x.dims().to_vec();
    if begin.len() > dims.len() || end.len() != begin.len() || step.len() != begin.len() {
        return Err(format!(
            "begin/end/strides {begin:?}/{end:?}/{step:?} do not fit shape {dims:?}"
        ));
    }
    let mut y = x.clone();
    for i in (0..begin.len()).rev() {
        let size = dims[i] as i64;
        let norm = |v: i64| if v < 0 { v + size } else { v };
        if sm & (1 << i) != 0 {
            let b = norm(begin[i]);
            if b < 0 || b >= size {
                return Err(format!("index {} is out of range for axis {i}", begin[i]));
            }
            y = c(y.narrow(i, b as usize, 1).and_then(|t| t.squeeze(i)))?;
            continue;
        }
        if step[i] <= 0 {
            return Err(format!(
                "stride {} is not supported (only positive)",
                step[i]
            ));
        }
        let b = if bm & (1 << i) != 0 {
            0
        } else {
            norm(begin[i]).clamp(0, size)
        };
        let e = if em & (1 << i) != 0 {
            size
        } else {
            norm(end[i]).clamp(0, size)
        };
        if e <= b {
            y = c(y.narrow(i, 0, 0))?;
            continue;
        }
        y = c(y.narrow(i, b as usize, (e - b) as usize))?;
        if step[i] > 1 {
            let idx: Vec<i64> = (0..(e - b)).step_by(step[i] as usize).collect();
            let n = idx.len();
            let idx = c(Tensor::from_vec(idx, n, y.device()))?;
            y = c(y.index_select(&idx, i))?;
        }
    }
    Ok(vec![y])
}

// ---- resampling and pooling -----------------------------------------------------------------

/// TensorFlow's bilinear resize of an NHWC float tensor, computed as the TF.js CPU kernel does
/// (source coordinate `o * in / out`, or with `align_corners` `o * (in - 1) / (out - 1)`, or
/// with `half_pixel_centers` `(o + 0.5) * in / out - 0.5`; floor/ceil neighbours clamped to
/// the image; top row, bottom row, then vertical interpolation).
pub fn resize_bilinear(
    x: &Tensor,
    out_h: usize,
    out_w: usize,
    align_corners: bool,
    half_pixel_centers: bool,
) -> candle_core::Result<Tensor> {
    let (n, h, w, ch) = x.dims4()?;
    let src = x.flatten_all()?.to_vec1::<f32>()?;
    let ratio = |i: usize, o: usize| {
        let (ei, eo) = if align_corners && o > 1 {
            (i - 1, o - 1)
        } else {
            (i, o)
        };
        ei as f64 / eo as f64
    };
    let (rh, rw) = (ratio(h, out_h), ratio(w, out_w));
    let coord = |o: usize, r: f64, size: usize| {
        let f = if half_pixel_centers {
            r * (o as f64 + 0.5) - 0.5
        } else {
            r * o as f64
        };
        let lo = f.floor().max(0.0) as usize;
        let hi = (f.ceil() as usize).min(size - 1);
        (lo.min(size - 1), hi, f - f.floor())
    };
    let cols: Vec<(usize, usize, f64)> = (0..out_w).map(|o| coord(o, rw, w)).collect();
    let mut out = vec![0f32; n * out_h * out_w * ch];
    out.par_chunks_mut(out_w * ch)
        .enumerate()
        .for_each(|(row, o)| {
            let (b, oy) = (row / out_h, row % out_h);
            let (y0, y1, fy) = coord(oy, rh, h);
            let base = b * h * w * ch;
            for (ox, &(x0, x1, fx)) in cols.iter().enumerate() {
                for k in 0..ch {
                    let at = |y: usize, x: usize| src[base + (y * w + x) * ch + k] as f64;
                    let tl = at(y0, x0);
                    let tr = at(y0, x1);
                    let bl = at(y1, x0);
                    let br = at(y1, x1);
                    let top = tl + (tr - tl) * fx;
                    let bottom = bl + (br - bl) * fx;
                    o[ox * ch + k] = (top + (bottom - top) * fy) as f32;
                }
            }
        });
    Tensor::from_vec(out, (n, out_h, out_w, ch), x.device())
}

fn resize_bilinear_op(node: &Node, args: &[Tensor]) -> OpResult {
    let x = arg(args, 0)?;
    nhwc(x)?;
    let size = ints(arg(args, 1)?)?;
    let [h, w] = size.as_slice() else {
        return Err(format!("size must be [height, width], got {size:?}"));
    };
    if *h <= 0 || *w <= 0 {
        return Err(format!("size {size:?} must be positive"));
    }
    let align = node.attrs.bool("align_corners").unwrap_or(false);
    let half = node.attrs.bool("half_pixel_centers").unwrap_or(false);
    Ok(vec![c(resize_bilinear(
        x,
        *h as usize,
        *w as usize,
        align,
        half,
    ))?])
}

/// NHWC max pooling; padded positions never win (TensorFlow's `SAME` semantics).
fn max_pool(node: &Node, args: &[Tensor]) -> OpResult {
    let x = arg(args, 0)?;
    let (n, h, w, ch) = nhwc(x)?;
    let (sh, sw) = strides(node)?;
    let k = node.attrs.ints("ksize").unwrap_or_default();
    let (kh, kw) = match k.as_slice() {
        [1, kh, kw, 1] if *kh > 0 && *kw > 0 => (*kh as usize, *kw as usize),
        _ => return Err(format!("ksize {k:?} is not supported")),
    };
    let (oh, pt) = window(node, 0, h, kh, sh)?;
    let (ow, pl) = window(node, 1, w, kw, sw)?;
    let src = f32_data(x)?;
    let mut out = vec![f32::NEG_INFINITY; n * oh * ow * ch];
    out.par_chunks_mut(ow * ch)
        .enumerate()
        .for_each(|(row, o)| {
            let (b, oy) = (row / oh, row % oh);
            for ox in 0..ow {
                let dst = &mut o[ox * ch..(ox + 1) * ch];
                for ky in 0..kh {
                    let iy = (oy * sh + ky) as isize - pt as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * sw + kx) as isize - pl as isize;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let s = ((b * h + iy as usize) * w + ix as usize) * ch;
                        for (d, v) in dst.iter_mut().zip(&src[s..s + ch]) {
                            if *v > *d {
                                *d = *v;
                            }
                        }
                    }
                }
            }
        });
    Ok(vec![c(Tensor::from_vec(out, (n, oh, ow, ch), x.device()))?])
}

// ---- selection ------------------------------------------------------------------------------

/// Top k along the last axis, sorted, ties to the lower index (as TensorFlow); outputs the
/// values and the int32 indices.
fn top_k(node: &Node, args: &[Tensor]) -> OpResult {
    let x = arg(args, 0)?;
    let k = int(arg(args, 1)?)?;
    // `sorted = false` leaves the order unspecified in TensorFlow: sorted is a valid answer.
    let _ = node;
    let dims = x.dims().to_vec();
    let last = *dims.last().ok_or("TopKV2 of a scalar")?;
    if k < 0 || k as usize > last {
        return Err(format!("k = {k} but the last axis has {last} values"));
    }
    let k = k as usize;
    let data = f32_data(x)?;
    let rows = data.len() / last.max(1);
    let mut vals = Vec::with_capacity(rows * k);
    let mut idxs = Vec::with_capacity(rows * k);
    for r in 0..rows {
        let row = &data[r * last..(r + 1) * last];
        let mut order: Vec<usize> = (0..last).collect();
        // Descending by value, ties to the lower index (a stable sort).
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        for &i in &order[..k] {
            vals.push(row[i]);
            idxs.push(i as i64);
        }
    }
    let mut out_dims = dims.clone();
    *out_dims.last_mut().unwrap() = k;
    Ok(vec![
        c(Tensor::from_vec(vals, out_dims.clone(), x.device()))?,
        c(Tensor::from_vec(idxs, out_dims, x.device()))?,
    ])
}

/// `params` gathered along `axis` at `indices` (batch_dims 0): the result's shape is
/// params[..axis] + indices + params[axis + 1..].
fn gather(node: &Node, args: &[Tensor]) -> OpResult {
    let params = arg(args, 0)?;
    let indices = arg(args, 1)?;
    let axis = axis_index(int(arg(args, 2)?)?, params.rank())?;
    if node.attrs.int("batch_dims").unwrap_or(0) != 0 {
        return Err("batch_dims other than 0 is not supported".into());
    }
    let idx = ints(indices)?;
    let size = params.dims()[axis] as i64;
    if let Some(bad) = idx.iter().find(|&&i| i < 0 || i >= size) {
        return Err(format!("index {bad} is out of range for an axis of {size}"));
    }
    let n = idx.len();
    let flat = c(Tensor::from_vec(idx, n, params.device()))?;
    let y = c(params.index_select(&flat, axis))?;
    let mut dims = params.dims()[..axis].to_vec();
    dims.extend_from_slice(indices.dims());
    dims.extend_from_slice(&params.dims()[axis + 1..]);
    Ok(vec![c(y.reshape(dims))?])
}
