//! EfficientNet-Lite0 (ImageNet-1k) in candle, inference only.
//!
//! Weight names mirror the EfficientNet-PyTorch checkpoint (`_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv` / `_bn0` / `_depthwise_conv` / `_bn1` / `_project_conv` / `_bn2`,
//! `_conv_head`, `_bn1`, `_fc`), so the checkpoint loads without a renaming table.
//!
//! Architecture (Lite: no squeeze-excite, ReLU6, fixed stem and head): a 3x3 stride-2 stem to
//! 32 channels; seven MBConv stages of (kernel, stride, expansion, out channels, repeats) =
//! (3,1,1,16,1) (3,2,6,24,2) (5,2,6,40,2) (3,2,6,80,3) (5,1,6,112,3) (5,2,6,192,4) (3,1,6,320,1);
//! ReLU6 after the stem, expand and depthwise convolutions, none after the projection; a
//! residual add where the stride is 1 and the shapes match; a 1x1 head to 1280 channels with
//! batch norm and ReLU6; global pooling; `_fc` to 1000 classes. Convolutions pad symmetrically
//! by `kernel / 2`; batch norm (eps 1e-3) runs in inference mode and is folded into the
//! preceding convolution's weights at load time.
//!
//! The depthwise convolution is written here rather than taken from candle: candle runs a
//! grouped convolution as one convolution per group (hundreds of tiny ones), which is far
//! slower than the direct loop below.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use rayon::prelude::*;

type Result<T> = candle_core::Result<T>;

const BN_EPS: f64 = 1e-3;
/// (kernel, stride, expansion, out channels, repeats) per stage.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
];
const STEM_CHANNELS: usize = 32;
/// Channels of the final feature map (the pooled embedding's dimension).
pub const FEATURE_DIM: usize = 1280;
pub const NUM_CLASSES: usize = 1000;

/// Folds an inference-mode batch norm `bn` into the weights of the convolution before it:
/// returns (weight scaled per output channel, bias).
fn fold_bn(weight: Tensor, out_ch: usize, bn: VarBuilder) -> Result<(Tensor, Tensor)> {
    let gamma = bn.get(out_ch, "weight")?;
    let beta = bn.get(out_ch, "bias")?;
    let mean = bn.get(out_ch, "running_mean")?;
    let var = bn.get(out_ch, "running_var")?;
    let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
    let bias = (beta - (mean * &scale)?)?;
    let mut shape = vec![out_ch];
    shape.resize(weight.rank(), 1);
    let weight = weight.broadcast_mul(&scale.reshape(shape)?)?;
    Ok((weight, bias))
}

/// A 1x1 convolution with folded batch norm, run as one matrix product per image (candle's
/// gemm), then bias and ReLU6 in one pass.
struct Pointwise {
    /// (out, in)
    weight: Tensor,
    bias: Vec<f32>,
    relu6: bool,
}

impl Pointwise {
    fn new(cin: usize, cout: usize, conv: VarBuilder, bn: VarBuilder, relu6: bool) -> Result<Self> {
        let w = conv.get((cout, cin, 1, 1), "weight")?;
        let (w, b) = fold_bn(w, cout, bn)?;
        Ok(Pointwise {
            weight: w.reshape((cout, cin))?,
            bias: b.to_vec1()?,
            relu6,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let x = x.reshape((n, c, h * w))?;
        let per_image = (0..n)
            .map(|i| self.weight.matmul(&x.get(i)?))
            .collect::<Result<Vec<_>>>()?;
        let y = Tensor::stack(&per_image, 0)?;
        bias_act(&y, &self.bias, self.relu6)?.reshape((n, (), h, w))
    }
}

/// Adds a per-channel bias to (N, C, ...) and optionally applies ReLU6, in one pass. (candle's
/// `clamp` and broadcast ops take several slow passes; this is the hot path of the network.)
fn bias_act(y: &Tensor, bias: &[f32], relu6: bool) -> Result<Tensor> {
    let dims = y.dims().to_vec();
    let c = bias.len();
    let plane = y.elem_count() / (dims[0] * c).max(1);
    let mut data = y.flatten_all()?.to_vec1::<f32>()?;
    data.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i, p)| {
            let b = bias[i % c];
            if relu6 {
                p.iter_mut().for_each(|v| *v = (*v + b).clamp(0.0, 6.0));
            } else {
                p.iter_mut().for_each(|v| *v += b);
            }
        });
    Tensor::from_vec(data, dims, y.device())
}

/// A depthwise k x k convolution (stride 1 or 2, padding k/2) with folded batch norm and ReLU6.
struct Depthwise {
    /// (channels * k * k) weights.
    weight: Vec<f32>,
    bias: Vec<f32>,
    channels: usize,
    kernel: usize,
    stride: usize,
}

impl Depthwise {
    fn new(ch: usize, k: usize, stride: usize, conv: VarBuilder, bn: VarBuilder) -> Result<Self> {
        let w = conv.get((ch, 1, k, k), "weight")?;
        let (w, b) = fold_bn(w, ch, bn)?;
        Ok(Depthwise {
            weight: w.flatten_all()?.to_vec1()?,
            bias: b.to_vec1()?,
            channels: ch,
            kernel: k,
            stride,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if c != self.channels {
            candle_core::bail!("depthwise conv expects {} channels, got {c}", self.channels)
        }
        let (k, s) = (self.kernel, self.stride);
        let pad = k / 2;
        let oh = (h + 2 * pad - k) / s + 1;
        let ow = (w + 2 * pad - k) / s + 1;
        let input = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, o)| {
                let ci = plane % c;
                let src = &input[plane * h * w..(plane + 1) * h * w];
                let wk = &self.weight[ci * k * k..(ci + 1) * k * k];
                let b = self.bias[ci];
                for oy in 0..oh {
                    let y0 = (oy * s) as isize - pad as isize;
                    for ox in 0..ow {
                        let x0 = (ox * s) as isize - pad as isize;
                        let mut acc = 0f32;
                        for ky in 0..k {
                            let iy = y0 + ky as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let row = &src[iy as usize * w..(iy as usize + 1) * w];
                            let wrow = &wk[ky * k..(ky + 1) * k];
                            for (kx, wv) in wrow.iter().enumerate() {
                                let ix = x0 + kx as isize;
                                if ix >= 0 && ix < w as isize {
                                    acc += row[ix as usize] * wv;
                                }
                            }
                        }
                        o[oy * ow + ox] = (acc + b).clamp(0.0, 6.0);
                    }
                }
            });
        Tensor::from_vec(out, (n, c, oh, ow), x.device())
    }
}

/// One MBConv block (no squeeze-excite): optional 1x1 expand, depthwise, 1x1 project.
pub struct MbConvBlock {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
}

impl MbConvBlock {
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        expansion: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mid = cin * expansion;
        let expand = if expansion != 1 {
            Some(Pointwise::new(
                cin,
                mid,
                vb.pp("_expand_conv"),
                vb.pp("_bn0"),
                true,
            )?)
        } else {
            None
        };
        let depthwise =
            Depthwise::new(mid, kernel, stride, vb.pp("_depthwise_conv"), vb.pp("_bn1"))?;
        let project = Pointwise::new(mid, cout, vb.pp("_project_conv"), vb.pp("_bn2"), false)?;
        Ok(MbConvBlock {
            expand,
            depthwise,
            project,
            residual: stride == 1 && cin == cout,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.expand {
            Some(e) => e.forward(x)?,
            None => x.clone(),
        };
        let h = self.project.forward(&self.depthwise.forward(&h)?)?;
        if self.residual {
            h + x
        } else {
            Ok(h)
        }
    }
}

/// EfficientNet-Lite0: stem, 16 MBConv blocks, head, classifier.
pub struct EfficientNetLite0 {
    stem_weight: Tensor,
    stem_bias: Vec<f32>,
    blocks: Vec<MbConvBlock>,
    head: Pointwise,
    fc: candle_nn::Linear,
}

impl EfficientNetLite0 {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let w = vb.get((STEM_CHANNELS, 3, 3, 3), "_conv_stem.weight")?;
        let (stem_weight, b) = fold_bn(w, STEM_CHANNELS, vb.pp("_bn0"))?;
        let stem_bias = b.to_vec1()?;
        let mut blocks = Vec::new();
        let mut cin = STEM_CHANNELS;
        for (kernel, stride, expansion, cout, repeats) in STAGES {
            for r in 0..repeats {
                let stride = if r == 0 { stride } else { 1 };
                let vbb = vb.pp(format!("_blocks.{}", blocks.len()));
                blocks.push(MbConvBlock::new(cin, cout, kernel, stride, expansion, vbb)?);
                cin = cout;
            }
        }
        let head = Pointwise::new(cin, FEATURE_DIM, vb.pp("_conv_head"), vb.pp("_bn1"), true)?;
        let fc = candle_nn::linear(FEATURE_DIM, NUM_CLASSES, vb.pp("_fc"))?;
        Ok(EfficientNetLite0 {
            stem_weight,
            stem_bias,
            blocks,
            head,
            fc,
        })
    }

    /// The final feature map, (N, 1280, H/32, W/32), after the head's ReLU6.
    pub fn forward_features(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.conv2d(&self.stem_weight, 1, 2, 1, 1)?;
        let mut x = bias_act(&x, &self.stem_bias, true)?;
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        self.head.forward(&x)
    }

    /// Class logits (N, 1000) from pooled features (N, 1280).
    pub fn classify(&self, pooled: &Tensor) -> Result<Tensor> {
        self.fc.forward(pooled)
    }
}

/// How the feature map becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pooling {
    /// Global average pooling (what the classifier was trained with).
    Average,
    /// Generalised mean pooling, `(mean(x^p))^(1/p)`, often better for instance retrieval.
    Gem { p: f32 },
}

/// Pools (N, C, H, W) to (N, C).
pub fn pool(features: &Tensor, pooling: Pooling) -> Result<Tensor> {
    match pooling {
        Pooling::Average => features.flatten_from(2)?.mean(D::Minus1),
        Pooling::Gem { p } => {
            let x = features.flatten_from(2)?.clamp(1e-6f32, f32::MAX)?;
            x.powf(p as f64)?.mean(D::Minus1)?.powf(1.0 / p as f64)
        }
    }
}

/// Builds the model from a map of checkpoint tensors (as [`crate::torch_legacy`] returns) on
/// the CPU.
pub fn from_tensors(
    tensors: std::collections::HashMap<String, Tensor>,
) -> Result<EfficientNetLite0> {
    from_tensors_on(tensors, &Device::Cpu)
}

/// [`from_tensors`] with the weights moved to `device`.
pub fn from_tensors_on(
    tensors: std::collections::HashMap<String, Tensor>,
    device: &Device,
) -> Result<EfficientNetLite0> {
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    EfficientNetLite0::new(vb)
}
