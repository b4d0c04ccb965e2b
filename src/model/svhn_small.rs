//! `svhn-small`: the brief's reference small CNN, exactly.
//!
//! Conv(3→16, 3x3, stride 2) ReLU Dropout(p) MaxPool(2)
//! Conv(16→32, 3x3, stride 2) ReLU Dropout(p) MaxPool(2), flatten, one
//! Linear(features, 11) per head. Padding 0 (PyTorch's default), convolutions
//! with bias, pooling 2x2 stride 2 in floor mode (see [`super::pool`]).
//! For a 64x128 input: 31x63 → 15x31 → 7x15 → 3x7, so 32*3*7 = 672 features
//! and 49,506 parameters with 6 heads.

use candle_core::{Device, Result, Tensor, Var};

use super::layers::{max_pool, out_size, Conv, Ctx, Heads, Network};
use crate::model::init::INIT_STREAM;
use crate::rng::Rng;

pub(crate) struct SvhnSmall {
    conv1: Conv,
    conv2: Conv,
    heads: Heads,
    dropout: f32,
}

/// (channels, height, width) of the flattened features, or None when the
/// input is too small.
pub(crate) fn feature_dims(h: usize, w: usize) -> Option<(usize, usize, usize)> {
    let step = |n: usize| out_size(n, 3, 2, 0).and_then(|n| out_size(n, 2, 2, 0));
    let (h, w) = (step(step(h)?)?, step(step(w)?)?);
    Some((32, h, w))
}

impl SvhnSmall {
    pub fn new(
        seed: u64,
        heads: usize,
        (h, w): (usize, usize),
        p: f32,
        dev: &Device,
    ) -> Result<SvhnSmall> {
        let Some((c, fh, fw)) = feature_dims(h, w) else {
            candle_core::bail!("svhn-small: input {h}x{w} is too small");
        };
        let mut rng = Rng::derive(seed, INIT_STREAM, 0);
        Ok(SvhnSmall {
            conv1: Conv::new(&mut rng, 3, 16, 3, 2, 0, true, dev)?,
            conv2: Conv::new(&mut rng, 16, 32, 3, 2, 0, true, dev)?,
            heads: Heads::new(&mut rng, c * fh * fw, heads, dev)?,
            dropout: p,
        })
    }
}

impl Network for SvhnSmall {
    fn features(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        if ctx.fused_eval() {
            let x = self
                .conv1
                .forward_eval(x, self.conv1.bias_relu()?, None, true)?;
            let x = self
                .conv2
                .forward_eval(&x, self.conv2.bias_relu()?, None, true)?;
            return x.flatten_from(1);
        }
        let x = self.conv1.forward_relu_dropout(x, self.dropout, ctx)?;
        let x = max_pool(&x, 2, 2, ctx)?;
        let x = self.conv2.forward_relu_dropout(&x, self.dropout, ctx)?;
        let x = max_pool(&x, 2, 2, ctx)?;
        x.flatten_from(1)
    }

    fn heads(&self) -> &Heads {
        &self.heads
    }

    fn params(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        self.conv1.params("conv1", &mut out);
        self.conv2.params("conv2", &mut out);
        self.heads.params("heads", &mut out);
        out
    }

    fn bns_mut(&mut self) -> Vec<&mut super::layers::BatchNorm> {
        Vec::new()
    }

    fn bns(&self) -> Vec<&super::layers::BatchNorm> {
        Vec::new()
    }
}
