//! `resnet-mini`: a small residual CNN (He et al., "Deep Residual Learning
//! for Image Recognition", CVPR 2016, basic blocks) whose heads keep the
//! horizontal layout of the image.
//!
//! Stem: Conv(3→32, 3x3, stride 2, pad 1) BN ReLU. Basic blocks (two 3x3
//! pad-1 convs with BN, ReLU after the first and after the sum; a 1x1 conv +
//! BN projection on the shortcut when the shape changes): 32→32, 32→64
//! stride 2, 64→128 stride 2. Then the mean over the HEIGHT only, keeping the
//! width columns, so each head sees where along the number it looks (a global
//! average pool would throw that away); Dropout(p); one Linear(features, 11)
//! per head. Convolutions followed by BN have no bias. For 64x128 input:
//! 32x64 → 32x64 → 16x32 → 8x16, so 128 channels x 16 columns = 2,048
//! features.
//!
//! Training folds every BatchNorm into the layers that read its output
//! ([`Conv::forward_bn_relu`], [`BatchNorm::add_relu`]), so candle's graph
//! keeps only convolution and block outputs for the backward pass (see
//! docs/benchmarks.md, section "Training memory", step 1): conv1 reads
//! max(BN(stem conv), 0) and block 0's sum recomputes it as its shortcut;
//! each conv2 reads max(bn1(conv1), 0); each block ends in
//! max(bn2(conv2) + shortcut, 0).
//! Bit-identical to the separate layers except for the stem's gradients:
//! its BatchNorm's backward pass runs once per reader and the two are
//! summed, in another order than the separate layers' single pass.

use candle_core::{Device, Result, Tensor, Var};

use super::layers::{
    add_relu, dropout, mean_height, out_size, BatchNorm, Conv, Ctx, Heads, Network, Shortcut,
};
use crate::model::init::INIT_STREAM;
use crate::rng::Rng;

/// What a block reads: a stored tensor, or max(bn(t), 0) of a tensor `t`
/// whose normalised form is not stored (fused training only).
#[derive(Clone, Copy)]
enum Input<'a> {
    Stored(&'a Tensor),
    BnRelu(&'a Tensor, &'a BatchNorm),
}

struct Block {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    proj: Option<(Conv, BatchNorm)>,
}

impl Block {
    fn new(
        rng: &mut Rng,
        bn: &mut usize,
        (cin, cout, stride): (usize, usize, usize),
        dev: &Device,
    ) -> Result<Block> {
        let mut next_bn = |c| {
            *bn += 1;
            BatchNorm::new(*bn - 1, c, dev)
        };
        let conv1 = Conv::new(rng, cin, cout, 3, stride, 1, false, dev)?;
        let bn1 = next_bn(cout)?;
        let conv2 = Conv::new(rng, cout, cout, 3, 1, 1, false, dev)?;
        let bn2 = next_bn(cout)?;
        let proj = if stride != 1 || cin != cout {
            Some((
                Conv::new(rng, cin, cout, 1, stride, 0, false, dev)?,
                next_bn(cout)?,
            ))
        } else {
            None
        };
        Ok(Block {
            conv1,
            bn1,
            conv2,
            bn2,
            proj,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        if ctx.fused_eval() {
            let y = self
                .conv1
                .forward_eval(x, self.bn1.epilogue(true)?, None, false)?;
            let short = match &self.proj {
                Some((conv, bn)) => conv.forward_eval(x, bn.epilogue(false)?, None, false)?,
                None => x.clone(),
            };
            return self
                .conv2
                .forward_eval(&y, self.bn2.epilogue(false)?, Some(&short), false);
        }
        let y = self.bn1.forward(&self.conv1.forward(x, ctx)?, ctx, true)?;
        let y = self
            .bn2
            .forward(&self.conv2.forward(&y, ctx)?, ctx, false)?;
        let short = match &self.proj {
            Some((conv, bn)) => bn.forward(&conv.forward(x, ctx)?, ctx, false)?,
            None => x.clone(),
        };
        add_relu(&y, &short, ctx)
    }

    /// The fused training forward pass: the same values as
    /// [`Block::forward`] on the input `x` stands for, keeping neither
    /// BatchNorm output nor (for [`Input::BnRelu`]) the normalised input.
    fn forward_train(&self, x: Input<'_>, ctx: &mut Ctx) -> Result<Tensor> {
        let y = match x {
            Input::Stored(x) => self.conv1.forward(x, ctx)?,
            Input::BnRelu(t, bn) => self.conv1.forward_bn_relu(t, bn, ctx)?,
        };
        let y = self.conv2.forward_bn_relu(&y, &self.bn1, ctx)?;
        let proj;
        let short = match (&self.proj, x) {
            (None, Input::Stored(x)) => Shortcut::Identity(x),
            (None, Input::BnRelu(t, bn)) => Shortcut::BnRelu(t, bn),
            (Some((conv, bn)), Input::Stored(x)) => {
                proj = conv.forward(x, ctx)?;
                Shortcut::Bn(&proj, bn)
            }
            (Some(_), Input::BnRelu(..)) => {
                candle_core::bail!("resnet-mini: a block with a projection needs a stored input")
            }
        };
        self.bn2.add_relu(&y, short, ctx)
    }

    fn params(&self, name: &str, out: &mut Vec<(String, Var)>) {
        self.conv1.params(&format!("{name}.conv1"), out);
        self.bn1.params(&format!("{name}.bn1"), out);
        self.conv2.params(&format!("{name}.conv2"), out);
        self.bn2.params(&format!("{name}.bn2"), out);
        if let Some((conv, bn)) = &self.proj {
            conv.params(&format!("{name}.proj"), out);
            bn.params(&format!("{name}.proj_bn"), out);
        }
    }

    fn bns_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v = vec![&mut self.bn1, &mut self.bn2];
        if let Some((_, bn)) = &mut self.proj {
            v.push(bn);
        }
        v
    }

    fn bns(&self) -> Vec<&BatchNorm> {
        let mut v = vec![&self.bn1, &self.bn2];
        if let Some((_, bn)) = &self.proj {
            v.push(bn);
        }
        v
    }
}

pub(crate) struct ResnetMini {
    stem: Conv,
    stem_bn: BatchNorm,
    blocks: Vec<Block>,
    heads: Heads,
    dropout: f32,
}

/// (channels, columns) of the features, or None when the input is too small.
pub(crate) fn feature_dims(h: usize, w: usize) -> Option<(usize, usize)> {
    let down = |n: usize| out_size(n, 3, 2, 1);
    let (h, w) = (down(down(down(h)?)?)?, down(down(down(w)?)?)?);
    (h > 0 && w > 0).then_some((128, w))
}

impl ResnetMini {
    pub fn new(
        seed: u64,
        heads: usize,
        (h, w): (usize, usize),
        p: f32,
        dev: &Device,
    ) -> Result<ResnetMini> {
        let Some((c, cols)) = feature_dims(h, w) else {
            candle_core::bail!("resnet-mini: input {h}x{w} is too small");
        };
        let mut rng = Rng::derive(seed, INIT_STREAM, 0);
        let mut bn = 0;
        let stem = Conv::new(&mut rng, 3, 32, 3, 2, 1, false, dev)?;
        let stem_bn = BatchNorm::new(bn, 32, dev)?;
        bn += 1;
        let blocks = vec![
            Block::new(&mut rng, &mut bn, (32, 32, 1), dev)?,
            Block::new(&mut rng, &mut bn, (32, 64, 2), dev)?,
            Block::new(&mut rng, &mut bn, (64, 128, 2), dev)?,
        ];
        Ok(ResnetMini {
            stem,
            stem_bn,
            blocks,
            heads: Heads::new(&mut rng, c * cols, heads, dev)?,
            dropout: p,
        })
    }
}

impl ResnetMini {
    /// Fused training, first stage: the stem and block 0 (which reads
    /// max(stem_bn(stem conv), 0) without it being stored).
    fn first_stage(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let stem = self.stem.forward(x, ctx)?;
        let first = self.blocks.first().expect("resnet-mini has blocks");
        first.forward_train(Input::BnRelu(&stem, &self.stem_bn), ctx)
    }

    /// Fused training, second stage: the other blocks, from block 0's
    /// output, then the pooling and dropout of [`ResnetMini::head_input`].
    fn second_stage(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut x = x.clone();
        for b in &self.blocks[1..] {
            x = b.forward_train(Input::Stored(&x), ctx)?;
        }
        self.head_input(&x, ctx)
    }

    /// The mean over the height only ([N, C, H, W] → [N, C, W] → [N,
    /// C*W]), then dropout.
    fn head_input(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let x = mean_height(x, ctx)?.flatten_from(1)?;
        dropout(&x, self.dropout, ctx)
    }
}

impl Network for ResnetMini {
    fn features(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        if ctx.fused_train() {
            let mid = self.first_stage(x, ctx)?;
            return self.second_stage(&mid, ctx);
        }
        let mut x = if ctx.fused_eval() {
            self.stem
                .forward_eval(x, self.stem_bn.epilogue(true)?, None, false)?
        } else {
            self.stem_bn
                .forward(&self.stem.forward(x, ctx)?, ctx, true)?
        };
        for b in &self.blocks {
            x = b.forward(&x, ctx)?;
        }
        self.head_input(&x, ctx)
    }

    fn stage1(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Option<Tensor>> {
        if ctx.fused_train() && ctx.stage {
            Ok(Some(self.first_stage(x, ctx)?))
        } else {
            Ok(None)
        }
    }

    fn stage2(&self, mid: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.second_stage(mid, ctx)
    }

    fn heads(&self) -> &Heads {
        &self.heads
    }

    fn params(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        self.stem.params("stem", &mut out);
        self.stem_bn.params("stem_bn", &mut out);
        for (i, b) in self.blocks.iter().enumerate() {
            b.params(&format!("block{i}"), &mut out);
        }
        self.heads.params("heads", &mut out);
        out
    }

    fn bns_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v = vec![&mut self.stem_bn];
        for b in &mut self.blocks {
            v.extend(b.bns_mut());
        }
        v
    }

    fn bns(&self) -> Vec<&BatchNorm> {
        let mut v = vec![&self.stem_bn];
        for b in &self.blocks {
            v.extend(b.bns());
        }
        v
    }
}
