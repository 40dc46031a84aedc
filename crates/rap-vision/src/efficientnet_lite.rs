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
//! Two ways to run it. On the CPU, [`EfficientNetLite0`] runs on this crate's own kernels
//! ([`crate::kernels`]): activations NHWC in reused buffers, the stem as patches times weight,
//! each 1x1 convolution as one matrix product over the whole batch with the bias, ReLU6 and
//! residual applied tile by tile, and a vectorised depthwise kernel (AVX2 + FMA chosen at run
//! time). On other devices (CUDA) it runs on candle's ops as the blocks below; their depthwise
//! convolution is a direct loop rather than candle's grouped convolution, which runs one
//! convolution per group (hundreds of tiny ones). Both load through the same code (the
//! folding of batch norm included); the CPU network takes its arrays from the candle one.

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
///
/// On the CPU the network runs on this crate's own NHWC kernels ([`crate::kernels`]); on any
/// other device on candle's ops (the blocks above).
pub struct EfficientNetLite0 {
    net: Net,
    fc: candle_nn::Linear,
}

enum Net {
    Cpu(Box<cpu::Network>),
    Candle(CandleNet),
}

/// The network as candle ops: the path for devices other than the CPU.
struct CandleNet {
    stem_weight: Tensor,
    stem_bias: Vec<f32>,
    blocks: Vec<MbConvBlock>,
    head: Pointwise,
}

impl CandleNet {
    fn new(vb: &VarBuilder) -> Result<Self> {
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
        Ok(CandleNet {
            stem_weight,
            stem_bias,
            blocks,
            head,
        })
    }

    fn forward_features(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.conv2d(&self.stem_weight, 1, 2, 1, 1)?;
        let mut x = bias_act(&x, &self.stem_bias, true)?;
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        self.head.forward(&x)
    }
}

impl EfficientNetLite0 {
    /// The network on `vb`'s device: the CPU kernels on the CPU, candle's ops elsewhere.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let cpu = vb.device().is_cpu();
        Self::with_kernels(vb, cpu)
    }

    /// With `cpu_kernels`, the network runs on [`crate::kernels`] (the weights must be on the
    /// CPU); without, on candle's ops.
    pub(crate) fn with_kernels(vb: VarBuilder, cpu_kernels: bool) -> Result<Self> {
        let candle = CandleNet::new(&vb)?;
        let net = if cpu_kernels {
            Net::Cpu(Box::new(cpu::Network::from_candle(&candle)?))
        } else {
            Net::Candle(candle)
        };
        let fc = candle_nn::linear(FEATURE_DIM, NUM_CLASSES, vb.pp("_fc"))?;
        Ok(EfficientNetLite0 { net, fc })
    }

    /// The final feature map, (N, 1280, H/32, W/32), after the head's ReLU6.
    pub fn forward_features(&self, x: &Tensor) -> Result<Tensor> {
        match &self.net {
            Net::Cpu(net) if x.device().is_cpu() => net.forward_features(x),
            Net::Cpu(_) => candle_core::bail!(
                "efficientnet-lite0: the weights are on the CPU, the input on {:?}",
                x.device()
            ),
            Net::Candle(net) => net.forward_features(x),
        }
    }

    /// Class logits (N, 1000) from pooled features (N, 1280).
    pub fn classify(&self, pooled: &Tensor) -> Result<Tensor> {
        self.fc.forward(pooled)
    }
}

/// The network on the CPU: the weights as plain arrays in the kernels' layouts, activations
/// NHWC in buffers reused from one layer (and one call) to the next.
mod cpu {
    use super::{CandleNet, Depthwise, Pointwise, Result, FEATURE_DIM, STEM_CHANNELS};
    use crate::kernels::depthwise::{depthwise_relu6, DwShape};
    use crate::kernels::packed::PackedPointwise;
    use crate::kernels::pointwise::im2col_nchw;
    use candle_core::{Device, Tensor};
    use std::sync::Mutex;

    /// A 1x1 convolution: the transpose of the checkpoint's weight, (cin, cout), packed for
    /// this CPU's kernels.
    struct Conv1x1 {
        packed: PackedPointwise,
        relu6: bool,
    }

    impl Conv1x1 {
        fn from_candle(p: &Pointwise) -> Result<Self> {
            let (cout, cin) = p.weight.dims2()?;
            let weight: Vec<f32> = p.weight.t()?.contiguous()?.flatten_all()?.to_vec1()?;
            Ok(Conv1x1 {
                packed: PackedPointwise::new(&weight, cin, cout, &p.bias),
                relu6: p.relu6,
            })
        }

        fn cout(&self) -> usize {
            self.packed.n()
        }

        /// `x` holds `m` rows of `cin`; the first `m * cout` values of `out` get the result.
        fn run(&self, x: &[f32], m: usize, residual: Option<&[f32]>, out: &mut Vec<f32>) {
            let out = sized(out, m * self.packed.n());
            self.packed.run(x, m, residual, self.relu6, out);
        }
    }

    /// A depthwise convolution: weight (k, k, c).
    struct DwConv {
        weight: Vec<f32>,
        bias: Vec<f32>,
        c: usize,
        k: usize,
        stride: usize,
    }

    impl DwConv {
        fn from_candle(d: &Depthwise) -> Self {
            let (c, kk) = (d.channels, d.kernel * d.kernel);
            let mut weight = vec![0f32; c * kk];
            for ch in 0..c {
                for t in 0..kk {
                    weight[t * c + ch] = d.weight[ch * kk + t];
                }
            }
            DwConv {
                weight,
                bias: d.bias.clone(),
                c,
                k: d.kernel,
                stride: d.stride,
            }
        }
    }

    struct Block {
        expand: Option<Conv1x1>,
        depthwise: DwConv,
        project: Conv1x1,
        residual: bool,
    }

    /// Activation buffers, grown to the largest layer once and reused.
    #[derive(Default)]
    struct Scratch {
        /// The block's input and output (swapped after each block).
        x: Vec<f32>,
        y: Vec<f32>,
        /// Expanded activations (and the stem's patches).
        e: Vec<f32>,
        /// Depthwise output.
        d: Vec<f32>,
        /// The whole batch's activations where the per-image layers end.
        batch: Vec<f32>,
    }

    /// Blocks whose input has at least this many pixels run one image at a time
    /// ([`Network::run`]).
    const BATCH_FROM: usize = 28 * 28;

    pub(super) struct Network {
        /// (27, 32): the stem's weight (32, 3, 3, 3) flattened per output channel, transposed.
        stem: Conv1x1,
        blocks: Vec<Block>,
        head: Conv1x1,
        scratch: Mutex<Scratch>,
    }

    /// The first `len` values of `v`, grown (never shrunk) to hold them.
    fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
        if v.len() < len {
            v.resize(len, 0.0);
        }
        &mut v[..len]
    }

    impl Network {
        pub(super) fn from_candle(net: &CandleNet) -> Result<Self> {
            let stem = Pointwise {
                weight: net.stem_weight.reshape((STEM_CHANNELS, 27))?,
                bias: net.stem_bias.clone(),
                relu6: true,
            };
            let blocks = net
                .blocks
                .iter()
                .map(|b| {
                    Ok(Block {
                        expand: b.expand.as_ref().map(Conv1x1::from_candle).transpose()?,
                        depthwise: DwConv::from_candle(&b.depthwise),
                        project: Conv1x1::from_candle(&b.project)?,
                        residual: b.residual,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Network {
                stem: Conv1x1::from_candle(&stem)?,
                blocks,
                head: Conv1x1::from_candle(&net.head)?,
                scratch: Mutex::new(Scratch::default()),
            })
        }

        /// (N, 3, H, W) -> (N, 1280, H/32, W/32), NCHW at both ends, NHWC in between.
        pub(super) fn forward_features(&self, input: &Tensor) -> Result<Tensor> {
            let (n, c, h, w) = input.dims4()?;
            if c != 3 {
                candle_core::bail!("efficientnet-lite0 expects 3 input channels, got {c}")
            }
            if h == 0 || w == 0 {
                candle_core::bail!("efficientnet-lite0: empty {h}x{w} input")
            }
            let input = input.flatten_all()?.to_vec1::<f32>()?;
            // A concurrent call gets fresh buffers rather than waiting.
            let mut s = match self.scratch.try_lock() {
                Ok(mut guard) => std::mem::take(&mut *guard),
                Err(_) => Scratch::default(),
            };
            // The whole pass on one of rayon's threads: each layer's parallel loop then starts
            // from inside the pool, rather than handing its work over from this thread and
            // sleeping until it is done (two thread switches per layer, some 50 per image).
            let (h, w) = rayon::scope(|_| self.run(&input, n, h, w, &mut s));
            let fmap = &s.y[..n * h * w * FEATURE_DIM];
            // NHWC -> NCHW (the feature map is small: 7 x 7 at 224).
            let mut nchw = vec![0f32; fmap.len()];
            for img in 0..n {
                let src = &fmap[img * h * w * FEATURE_DIM..(img + 1) * h * w * FEATURE_DIM];
                let dst = &mut nchw[img * h * w * FEATURE_DIM..(img + 1) * h * w * FEATURE_DIM];
                for (p, px) in src.chunks_exact(FEATURE_DIM).enumerate() {
                    for (ch, v) in px.iter().enumerate() {
                        dst[ch * h * w + p] = *v;
                    }
                }
            }
            if let Ok(mut guard) = self.scratch.try_lock() {
                *guard = s;
            }
            Tensor::from_vec(nchw, (n, FEATURE_DIM, h, w), &Device::Cpu)
        }

        /// The layers; returns the feature map's size and leaves it (NHWC) in `s.y`.
        ///
        /// The layers with large feature maps (the stem and the blocks whose input is at
        /// least [`BATCH_FROM`] pixels) run one image at a time: their products are large
        /// enough already, and a whole batch of their activations would not stay in cache.
        /// The rest (14 x 14 and 7 x 7 at 224) run on the whole batch at once: there one
        /// image's products are small, and a batch makes them efficient.
        fn run(
            &self,
            input: &[f32],
            n: usize,
            h: usize,
            w: usize,
            s: &mut Scratch,
        ) -> (usize, usize) {
            let (ih, iw) = (h, w);
            let split = self.split(ih, iw);
            let early = &self.blocks[..split];
            let (mut h, mut w, mut c) = (0, 0, 0);
            if n == 1 {
                (h, w, c) = self.stem_and_blocks(input, ih, iw, early, s);
            } else {
                let plane = 3 * ih * iw;
                for img in 0..n {
                    let x = &input[img * plane..(img + 1) * plane];
                    (h, w, c) = self.stem_and_blocks(x, ih, iw, early, s);
                    let len = h * w * c;
                    sized(&mut s.batch, n * len)[img * len..(img + 1) * len]
                        .copy_from_slice(&s.x[..len]);
                }
                std::mem::swap(&mut s.x, &mut s.batch);
            }
            (h, w, c) = self.blocks(&self.blocks[split..], n, h, w, c, s);
            let m = n * h * w;
            self.head.run(&s.x[..m * c], m, None, &mut s.y);
            (h, w)
        }

        /// How many blocks run one image at a time for an `h` x `w` input.
        fn split(&self, h: usize, w: usize) -> usize {
            let (mut h, mut w) = ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1);
            for (i, b) in self.blocks.iter().enumerate() {
                if h * w < BATCH_FROM {
                    return i;
                }
                let pad = b.depthwise.k / 2;
                h = (h + 2 * pad - b.depthwise.k) / b.depthwise.stride + 1;
                w = (w + 2 * pad - b.depthwise.k) / b.depthwise.stride + 1;
            }
            self.blocks.len()
        }

        /// The stem then `blocks` on one image; the output is left in `s.x`.
        fn stem_and_blocks(
            &self,
            input: &[f32],
            h: usize,
            w: usize,
            blocks: &[Block],
            s: &mut Scratch,
        ) -> (usize, usize, usize) {
            // Stem: 3x3 stride 2 as patches x weight.
            let oh = (h + 2 - 3) / 2 + 1;
            let ow = (w + 2 - 3) / 2 + 1;
            let m = oh * ow;
            im2col_nchw(input, 1, 3, h, w, 3, 2, 1, sized(&mut s.e, m * 27));
            self.stem.run(&s.e[..m * 27], m, None, &mut s.x);
            self.blocks(blocks, 1, oh, ow, STEM_CHANNELS, s)
        }

        /// `blocks` on `n` images (`h` x `w` x `c` each) in `s.x`; the output is left there.
        fn blocks(
            &self,
            blocks: &[Block],
            n: usize,
            mut h: usize,
            mut w: usize,
            mut c: usize,
            s: &mut Scratch,
        ) -> (usize, usize, usize) {
            for b in blocks {
                let m = n * h * w;
                let mid = b.depthwise.c;
                if let Some(e) = &b.expand {
                    e.run(&s.x[..m * c], m, None, &mut s.e);
                }
                let dw_in = if b.expand.is_some() { &s.e } else { &s.x };
                let shape = DwShape {
                    n,
                    h,
                    w,
                    c: mid,
                    k: b.depthwise.k,
                    stride: b.depthwise.stride,
                };
                let (oh, ow) = (shape.out_h(), shape.out_w());
                let d = sized(&mut s.d, shape.output_len());
                let dw = &b.depthwise;
                depthwise_relu6(&dw_in[..m * mid], shape, &dw.weight, &dw.bias, d);
                let m2 = n * oh * ow;
                let residual = b.residual.then(|| &s.x[..m * c]);
                b.project.run(&s.d[..m2 * mid], m2, residual, &mut s.y);
                std::mem::swap(&mut s.x, &mut s.y);
                (h, w, c) = (oh, ow, b.project.cout());
            }
            (h, w, c)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Weights of the real shapes with random values: the names and shapes come from building
    /// the network once on a `VarMap` (which creates every tensor it is asked for).
    fn random_weights() -> HashMap<String, Tensor> {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        EfficientNetLite0::with_kernels(vb, false).unwrap();
        let data = varmap.data().lock().unwrap();
        let mut out = HashMap::new();
        for (seed, (name, var)) in data.iter().enumerate() {
            let dims = var.dims().to_vec();
            let n: usize = dims.iter().product();
            let v = crate::kernels::test_values(n, seed as u64 + 7);
            let v: Vec<f32> = if name.ends_with("running_var") {
                v.iter().map(|x| 0.5 + x.abs()).collect()
            } else if name.ends_with(".weight") && dims.len() == 4 {
                // Keeps the activations in ReLU6's working range layer after layer.
                let fan_in: usize = dims[1..].iter().product();
                let scale = (3.0 / fan_in as f32).sqrt();
                v.iter().map(|x| x * scale).collect()
            } else if name.contains("_bn") && name.ends_with(".weight") {
                v.iter().map(|x| 1.0 + 0.2 * x).collect()
            } else {
                v.iter().map(|x| 0.1 * x).collect()
            };
            out.insert(
                name.clone(),
                Tensor::from_vec(v, dims, &Device::Cpu).unwrap(),
            );
        }
        out
    }

    /// The CPU kernels compute what the candle network computes, on whole batches, on sizes
    /// that are not multiples of 32 (odd borders at every stride-2 layer) and one image alone.
    #[test]
    fn cpu_kernels_match_the_candle_network() {
        let weights = random_weights();
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let fast = EfficientNetLite0::with_kernels(vb.clone(), true).unwrap();
        let slow = EfficientNetLite0::with_kernels(vb, false).unwrap();
        assert!(matches!(fast.net, Net::Cpu(_)) && matches!(slow.net, Net::Candle(_)));
        for (n, h, w) in [(2, 64, 64), (1, 45, 71), (3, 33, 33)] {
            let count = n * 3 * h * w;
            let x = Tensor::from_vec(
                crate::kernels::test_values(count, (h * w) as u64),
                (n, 3, h, w),
                &Device::Cpu,
            )
            .unwrap();
            let a = fast.forward_features(&x).unwrap();
            let b = slow.forward_features(&x).unwrap();
            assert_eq!(a.dims(), b.dims());
            let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.1, "degenerate test activations ({scale})");
            let worst = a
                .iter()
                .zip(&b)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst < 1e-4 * scale.max(1.0),
                "{n}x{h}x{w}: max diff {worst}"
            );
            // Running again reuses the buffers; the answer must not change.
            let again: Vec<f32> = fast
                .forward_features(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(a, again);
        }
    }
}
