//! The layers both architectures are built from: convolution, linear,
//! BatchNorm, seeded dropout, and the [`Network`] trait the model drives.
//!
//! Guarantees: parameters are candle [`Var`]s initialised by
//! [`super::init`]; BatchNorm uses batch statistics in training (biased
//! variance for normalising, unbiased for the running variance, momentum 0.1,
//! eps 1e-5, as PyTorch) and running statistics in evaluation; dropout masks
//! come from the project's [`Rng`] and exist only in training.

use candle_core::{Device, Result, Tensor, Var};

use super::conv::{bn_relu_conv, conv2d, conv2d_eval, Epilogue};
use super::fused::{
    batch_norm_eval, batch_norm_train, bias_relu_dropout, bn_add_relu, bn_eval_affine, ShortcutNorm,
};
use super::init::kaiming_uniform;
use super::{fused, pool, portable};
use crate::rng::Rng;

/// Per-forward state: the mode, the dropout stream, and the batch statistics
/// BatchNorm layers produced (applied to the running statistics afterwards,
/// so the forward pass itself can borrow the network immutably).
pub(crate) struct Ctx {
    pub train: bool,
    /// In evaluation: fuse each convolution with the layers after it
    /// ([`conv2d_eval`]; bit-identical, fewer passes). In training: fold
    /// each BatchNorm into the layers that read it
    /// ([`Conv::forward_bn_relu`], [`BatchNorm::add_relu`]), so its output
    /// is not kept for the backward pass. Off only to test the equality.
    pub fuse: bool,
    /// In training: let a network that can train in two stages do so
    /// ([`Network::stage1`]; the same results, bit for bit, less memory).
    /// Off only to test that equality.
    pub stage: bool,
    pub rng: Rng,
    /// Take the portable op path ([`super::portable`]) instead of the own
    /// CPU kernels: on a GPU always (with `fuse` and `stage` off), on the
    /// CPU only to test the two paths against each other.
    pub portable: bool,
    /// (BatchNorm index, batch mean, unbiased batch variance).
    pub bn_stats: Vec<(usize, Vec<f32>, Vec<f32>)>,
}

impl Ctx {
    pub fn eval() -> Ctx {
        Ctx {
            train: false,
            fuse: true,
            stage: false,
            rng: Rng::new(0),
            portable: false,
            bn_stats: Vec::new(),
        }
    }

    /// This context on the portable op path when `portable` (which turns
    /// the fused and staged paths off: they exist only as own kernels).
    pub fn portable(mut self, portable: bool) -> Ctx {
        if portable {
            self.portable = true;
            self.fuse = false;
            self.stage = false;
        }
        self
    }

    /// Evaluation through the separate layers (tests).
    #[cfg(test)]
    pub fn eval_unfused() -> Ctx {
        Ctx {
            fuse: false,
            ..Ctx::eval()
        }
    }

    /// Whether this forward pass takes the fused evaluation path.
    pub fn fused_eval(&self) -> bool {
        !self.train && self.fuse
    }

    /// Whether this forward pass takes the fused training path.
    pub fn fused_train(&self) -> bool {
        self.train && self.fuse
    }

    pub fn train(rng: Rng) -> Ctx {
        Ctx {
            train: true,
            fuse: true,
            stage: true,
            rng,
            portable: false,
            bn_stats: Vec::new(),
        }
    }

    /// Training in one piece, without [`Network::stage1`] (tests).
    #[cfg(test)]
    pub fn train_unstaged(rng: Rng) -> Ctx {
        Ctx {
            stage: false,
            ..Ctx::train(rng)
        }
    }

    /// Training through the separate layers (tests).
    #[cfg(test)]
    pub fn train_unfused(rng: Rng) -> Ctx {
        Ctx {
            fuse: false,
            ..Ctx::train(rng)
        }
    }
}

/// One architecture: a backbone giving the features the heads read, and
/// the heads.
pub(crate) trait Network: Send + Sync {
    /// The features [N, F] the heads read (after dropout in training) for
    /// images [N, 3, H, W].
    fn features(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor>;
    /// For a network that trains in two stages (when `ctx.stage`): the
    /// first stage's output for images `x`, from which
    /// [`Network::stage2`] computes the features. The training step keeps
    /// only a copy of it while the second stage runs forward and backward,
    /// then recomputes the first stage for its own backward pass, so the
    /// two stages' activations never coexist. `None` (the default): one
    /// piece, through [`Network::features`].
    fn stage1(&self, _x: &Tensor, _ctx: &mut Ctx) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// The features from [`Network::stage1`]'s output.
    fn stage2(&self, _mid: &Tensor, _ctx: &mut Ctx) -> Result<Tensor> {
        candle_core::bail!("this network trains in one piece")
    }
    /// The digit heads.
    fn heads(&self) -> &Heads;
    /// Logits [N, heads, 11] for images [N, 3, H, W].
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.heads().forward(&self.features(x, ctx)?)
    }
    /// Every trainable parameter with a stable, unique name.
    fn params(&self) -> Vec<(String, Var)>;
    /// Every BatchNorm layer (index `i` is the one created with index `i`).
    fn bns_mut(&mut self) -> Vec<&mut BatchNorm>;
    /// The same layers as [`Network::bns_mut`], in the same order.
    fn bns(&self) -> Vec<&BatchNorm>;
}

fn var(v: Vec<f32>, shape: &[usize], dev: &Device) -> Result<Var> {
    Var::from_vec(v, shape, dev)
}

/// 2-D convolution, square kernel, optional bias.
pub(crate) struct Conv {
    pub w: Var,
    pub b: Option<Var>,
    stride: usize,
    pad: usize,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rng: &mut Rng,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
        dev: &Device,
    ) -> Result<Conv> {
        let fan_in = cin * k * k;
        let w = var(
            kaiming_uniform(rng, cout * fan_in, fan_in),
            &[cout, cin, k, k],
            dev,
        )?;
        let b = if bias {
            Some(var(kaiming_uniform(rng, cout, fan_in), &[cout], dev)?)
        } else {
            None
        };
        Ok(Conv { w, b, stride, pad })
    }

    /// The convolution without its bias: [`super::conv`], the project's
    /// own kernel, or the portable one when `ctx` says so.
    fn conv(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        if ctx.portable {
            portable::conv2d(x, self.w.as_tensor(), self.stride, self.pad)
        } else {
            conv2d(x, self.w.as_tensor(), self.stride, self.pad)
        }
    }

    /// The convolution, plus its bias when it has one.
    pub fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let y = self.conv(x, ctx)?;
        match &self.b {
            Some(b) => y.broadcast_add(&b.as_tensor().reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }

    /// Training only: the convolution of max(`bn`(x), 0) ([`bn_relu_conv`];
    /// bit-identical to `bn.forward(x, ctx, true)` and then
    /// [`Conv::forward`], without keeping the normalised tensor). Records
    /// `bn`'s batch statistics in `ctx`. The layer must have no bias.
    pub fn forward_bn_relu(&self, x: &Tensor, bn: &BatchNorm, ctx: &mut Ctx) -> Result<Tensor> {
        if self.b.is_some() || !ctx.train {
            candle_core::bail!("conv: forward_bn_relu is for training, without a bias");
        }
        let (y, m, v) = bn_relu_conv(
            x,
            self.w.as_tensor(),
            &bn.gamma_beta()?,
            self.stride,
            self.pad,
            BN_EPS,
        )?;
        ctx.bn_stats.push((bn.index, m, v));
        Ok(y)
    }

    /// Evaluation only: the convolution fused with what follows it
    /// ([`conv2d_eval`]).
    pub fn forward_eval(
        &self,
        x: &Tensor,
        epi: Epilogue,
        residual: Option<&Tensor>,
        pool: bool,
    ) -> Result<Tensor> {
        if self.b.is_some() && !matches!(epi, Epilogue::BiasRelu { .. }) {
            candle_core::bail!("conv: a layer with a bias needs the bias epilogue");
        }
        conv2d_eval(
            x,
            self.w.as_tensor(),
            self.stride,
            self.pad,
            epi,
            residual,
            pool,
        )
    }

    /// The bias + ReLU epilogue of this layer (which must have a bias).
    pub fn bias_relu(&self) -> Result<Epilogue> {
        let Some(b) = &self.b else {
            candle_core::bail!("conv: bias_relu needs a bias");
        };
        Ok(Epilogue::BiasRelu {
            bias: b.as_tensor().to_vec1::<f32>()?,
        })
    }

    /// relu(conv(x) + bias), then inverted dropout with probability `p` in
    /// training (mask from `ctx.rng`, drawn as [`dropout`] draws it), fused
    /// into one pass ([`super::fused`]). The layer must have a bias.
    pub fn forward_relu_dropout(&self, x: &Tensor, p: f32, ctx: &mut Ctx) -> Result<Tensor> {
        let Some(b) = &self.b else {
            candle_core::bail!("conv: forward_relu_dropout needs a bias");
        };
        let y = self.conv(x, ctx)?;
        let mask = (ctx.train && p > 0.0).then(|| dropout_mask(y.elem_count(), p, ctx));
        if ctx.portable {
            portable::bias_relu_dropout(&y, b.as_tensor(), mask)
        } else {
            bias_relu_dropout(&y, b.as_tensor(), mask)
        }
    }

    pub fn params(&self, name: &str, out: &mut Vec<(String, Var)>) {
        out.push((format!("{name}.weight"), self.w.clone()));
        if let Some(b) = &self.b {
            out.push((format!("{name}.bias"), b.clone()));
        }
    }
}

/// Fully connected layer: y = x W^T + b, W [out, in].
pub(crate) struct Linear {
    pub w: Var,
    pub b: Var,
}

impl Linear {
    /// Linear(features, out), drawn as PyTorch's default (U(-b, b), b =
    /// 1/sqrt(features), weights then bias).
    pub fn new(rng: &mut Rng, features: usize, out: usize, dev: &Device) -> Result<Linear> {
        let w = kaiming_uniform(rng, out * features, features);
        let b = kaiming_uniform(rng, out, features);
        Ok(Linear {
            w: var(w, &[out, features], dev)?,
            b: var(b, &[out], dev)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w.as_tensor().t()?)?
            .broadcast_add(self.b.as_tensor())
    }

    pub fn params(&self, name: &str, out: &mut Vec<(String, Var)>) {
        out.push((format!("{name}.weight"), self.w.clone()));
        out.push((format!("{name}.bias"), self.b.clone()));
    }
}

/// `heads` independent Linear(features, 11) classifiers, stored as one
/// [heads*11, features] matrix (head h owns rows 11h..11h+11) and applied in
/// one matmul. Drawn head by head, so each head's init equals a separate
/// Linear(features, 11).
pub(crate) struct Heads {
    lin: Linear,
    heads: usize,
}

impl Heads {
    pub fn new(rng: &mut Rng, features: usize, heads: usize, dev: &Device) -> Result<Heads> {
        let mut w = Vec::with_capacity(heads * 11 * features);
        let mut b = Vec::with_capacity(heads * 11);
        for _ in 0..heads {
            w.extend(kaiming_uniform(rng, 11 * features, features));
            b.extend(kaiming_uniform(rng, 11, features));
        }
        let lin = Linear {
            w: var(w, &[heads * 11, features], dev)?,
            b: var(b, &[heads * 11], dev)?,
        };
        Ok(Heads { lin, heads })
    }

    /// Input features per image.
    pub fn features(&self) -> usize {
        self.lin.w.dims()[1]
    }

    /// [N, features] → logits [N, heads, 11].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        self.lin.forward(x)?.reshape((n, self.heads, 11))
    }

    pub fn params(&self, name: &str, out: &mut Vec<(String, Var)>) {
        self.lin.params(name, out)
    }
}

/// 2-D batch normalisation over NCHW.
pub(crate) struct BatchNorm {
    pub index: usize,
    pub gamma: Var,
    pub beta: Var,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
}

pub(crate) const BN_EPS: f64 = 1e-5;
pub(crate) const BN_MOMENTUM: f32 = 0.1;

impl BatchNorm {
    pub fn new(index: usize, c: usize, dev: &Device) -> Result<BatchNorm> {
        Ok(BatchNorm {
            index,
            gamma: var(vec![1.0; c], &[c], dev)?,
            beta: var(vec![0.0; c], &[c], dev)?,
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
        })
    }

    /// The normalisation ([`super::fused`]), followed by a ReLU when
    /// `relu`. In training it records the batch statistics in `ctx`.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx, relu: bool) -> Result<Tensor> {
        let (gamma, beta) = (self.gamma.as_tensor(), self.beta.as_tensor());
        if ctx.train {
            let (y, m, v) = if ctx.portable {
                portable::batch_norm_train(x, gamma, beta, BN_EPS, relu)?
            } else {
                batch_norm_train(x, gamma, beta, BN_EPS, relu)?
            };
            ctx.bn_stats.push((self.index, m, v));
            return Ok(y);
        }
        let (gamma, beta) = (gamma.to_vec1::<f32>()?, beta.to_vec1::<f32>()?);
        let (mean, var) = (&self.running_mean, &self.running_var);
        if ctx.portable {
            let (scale, shift) = bn_eval_affine(&gamma, &beta, mean, var, BN_EPS);
            portable::affine(x, &scale, &shift, relu)
        } else {
            batch_norm_eval(x, &gamma, &beta, mean, var, BN_EPS, relu)
        }
    }

    /// Training only: max(this(x) + t, 0), t from `shortcut`
    /// ([`bn_add_relu`]; bit-identical to the separate layers and then
    /// [`super::fused::add_relu`], without keeping either normalised
    /// tensor). Records this layer's batch statistics in `ctx`, and those
    /// of a [`Shortcut::Bn`] layer; a [`Shortcut::BnRelu`] layer's are
    /// recorded by the convolution that reads the same input
    /// ([`Conv::forward_bn_relu`]), so they are applied once.
    pub fn add_relu(&self, x: &Tensor, shortcut: Shortcut<'_>, ctx: &mut Ctx) -> Result<Tensor> {
        if !ctx.train {
            candle_core::bail!("batchnorm: add_relu is for training");
        }
        let (s, kind, other) = match shortcut {
            Shortcut::Identity(s) => (s, ShortcutNorm::Identity, None),
            Shortcut::Bn(s, bn) => (s, ShortcutNorm::Bn, Some(bn)),
            Shortcut::BnRelu(s, bn) => (s, ShortcutNorm::BnRelu, Some(bn)),
        };
        let gb = match other {
            Some(bn) => Tensor::cat(
                &[
                    self.gamma.as_tensor(),
                    self.beta.as_tensor(),
                    bn.gamma.as_tensor(),
                    bn.beta.as_tensor(),
                ],
                0,
            )?,
            None => self.gamma_beta()?,
        };
        let (y, stats) = bn_add_relu(x, s, &gb, kind, BN_EPS)?;
        let mut stats = stats.into_iter();
        if let Some((m, v)) = stats.next() {
            ctx.bn_stats.push((self.index, m, v));
        }
        if let (Shortcut::Bn(_, bn), Some((m, v))) = (shortcut, stats.next()) {
            ctx.bn_stats.push((bn.index, m, v));
        }
        Ok(y)
    }

    /// [γ, β] as one tensor (gradients flow back to both).
    fn gamma_beta(&self) -> Result<Tensor> {
        Tensor::cat(&[self.gamma.as_tensor(), self.beta.as_tensor()], 0)
    }

    /// This layer in evaluation as a convolution epilogue (+ ReLU when
    /// `relu`): the arithmetic of [`batch_norm_eval`].
    pub fn epilogue(&self, relu: bool) -> Result<Epilogue> {
        let (scale, shift) = bn_eval_affine(
            &self.gamma.as_tensor().to_vec1::<f32>()?,
            &self.beta.as_tensor().to_vec1::<f32>()?,
            &self.running_mean,
            &self.running_var,
            BN_EPS,
        );
        Ok(Epilogue::Affine { scale, shift, relu })
    }

    /// running = (1 - momentum) * running + momentum * batch.
    pub fn update(&mut self, mean: &[f32], var: &[f32]) {
        for (r, m) in self.running_mean.iter_mut().zip(mean) {
            *r = (1.0 - BN_MOMENTUM) * *r + BN_MOMENTUM * m;
        }
        for (r, v) in self.running_var.iter_mut().zip(var) {
            *r = (1.0 - BN_MOMENTUM) * *r + BN_MOMENTUM * v;
        }
    }

    pub fn params(&self, name: &str, out: &mut Vec<(String, Var)>) {
        out.push((format!("{name}.weight"), self.gamma.clone()));
        out.push((format!("{name}.bias"), self.beta.clone()));
    }
}

/// The shortcut term of [`BatchNorm::add_relu`].
#[derive(Clone, Copy)]
pub(crate) enum Shortcut<'a> {
    /// The tensor itself.
    Identity(&'a Tensor),
    /// The tensor through this BatchNorm (a projection shortcut).
    Bn(&'a Tensor, &'a BatchNorm),
    /// The tensor through this BatchNorm and a ReLU (the block input, kept
    /// only before its normalisation).
    BnRelu(&'a Tensor, &'a BatchNorm),
}

/// relu(a + b) for same-shaped tensors, on `ctx`'s op path.
pub(crate) fn add_relu(a: &Tensor, b: &Tensor, ctx: &Ctx) -> Result<Tensor> {
    if ctx.portable {
        portable::add_relu(a, b)
    } else {
        fused::add_relu(a, b)
    }
}

/// Max pooling (`k`x`k` window, stride `s`, floor mode), on `ctx`'s op path.
pub(crate) fn max_pool(x: &Tensor, k: usize, s: usize, ctx: &Ctx) -> Result<Tensor> {
    if ctx.portable {
        portable::max_pool(x, k, s)
    } else {
        pool::max_pool(x, k, s)
    }
}

/// The mean over the height of NCHW `x` ([N, C, W]), on `ctx`'s op path.
pub(crate) fn mean_height(x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
    if ctx.portable {
        portable::mean_height(x)
    } else {
        pool::mean_height(x)
    }
}

/// Inverted dropout with probability `p`: in training, each element is kept
/// with probability 1 - p (mask drawn from `ctx.rng`) and scaled by 1/(1-p);
/// the identity otherwise.
pub(crate) fn dropout(x: &Tensor, p: f32, ctx: &mut Ctx) -> Result<Tensor> {
    if !ctx.train || p <= 0.0 {
        return Ok(x.clone());
    }
    let mask = dropout_mask(x.elem_count(), p, ctx);
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}

/// `len` inverted-dropout scales: 0 with probability `p`, else 1/(1-p).
fn dropout_mask(len: usize, p: f32, ctx: &mut Ctx) -> Vec<f32> {
    let scale = 1.0 / (1.0 - p);
    (0..len)
        .map(|_| if ctx.rng.f32() < p { 0.0 } else { scale })
        .collect()
}

/// Output size of a convolution or pooling window along one axis, or None
/// when the window does not fit.
pub(crate) fn out_size(n: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    (n + 2 * pad).checked_sub(k).map(|d| d / stride + 1)
}

/// An f32 zero tensor (helper for tests).
#[cfg(test)]
pub(crate) fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::{assert_close, f32s, reference, usizes};

    /// Both op paths: the own kernels, then the portable one.
    const PATHS: [bool; 2] = [false, true];

    #[test]
    fn conv_matches_numpy_reference_forward_and_backward_on_both_paths() {
        let r = reference();
        let cpu = &Device::Cpu;
        for portable in PATHS {
            let ctx = Ctx::eval().portable(portable);
            for case in r["conv"].as_array().unwrap() {
                let what = |t: &str| format!("conv {t} (portable: {portable})");
                let stride = case["stride"].as_u64().unwrap() as usize;
                let pad = case["pad"].as_u64().unwrap() as usize;
                let x = var(f32s(&case["x"]), &usizes(&case["x_shape"]), cpu).unwrap();
                let conv = Conv {
                    w: var(f32s(&case["w"]), &usizes(&case["w_shape"]), cpu).unwrap(),
                    b: None,
                    stride,
                    pad,
                };
                let y = conv.forward(x.as_tensor(), &ctx).unwrap();
                assert_eq!(y.dims(), usizes(&case["y_shape"]).as_slice());
                assert_close(&y, &case["y"], &what("y"));
                let dy = Tensor::from_vec(f32s(&case["dy"]), y.shape(), cpu).unwrap();
                let g = (y * dy).unwrap().sum_all().unwrap().backward().unwrap();
                assert_close(g.get(&x).unwrap(), &case["dx"], &what("dx"));
                assert_close(g.get(&conv.w).unwrap(), &case["dw"], &what("dw"));
            }
        }
    }

    #[test]
    fn batchnorm_matches_numpy_reference_in_training_on_both_paths() {
        let r = reference();
        let cpu = &Device::Cpu;
        for portable in PATHS {
            for case in r["bn"].as_array().unwrap() {
                let what = |t: &str| format!("bn {t} (portable: {portable})");
                let shape = usizes(&case["x_shape"]);
                let x = var(f32s(&case["x"]), &shape, cpu).unwrap();
                let mut bn = BatchNorm::new(0, shape[1], cpu).unwrap();
                bn.gamma = var(f32s(&case["gamma"]), &[shape[1]], cpu).unwrap();
                bn.beta = var(f32s(&case["beta"]), &[shape[1]], cpu).unwrap();
                let mut ctx = Ctx::train(Rng::new(0)).portable(portable);
                let y = bn.forward(x.as_tensor(), &mut ctx, false).unwrap();
                assert_close(&y, &case["y"], &what("y"));
                let (_, m, v) = ctx.bn_stats.pop().unwrap();
                bn.update(&m, &v);
                let c = shape[1];
                let rm = Tensor::from_slice(&bn.running_mean, c, cpu).unwrap();
                let rv = Tensor::from_slice(&bn.running_var, c, cpu).unwrap();
                assert_close(&rm, &case["running_mean"], &what("running mean"));
                assert_close(&rv, &case["running_var"], &what("running var"));
                let dy = Tensor::from_vec(f32s(&case["dy"]), y.shape(), cpu).unwrap();
                let g = (y * dy).unwrap().sum_all().unwrap().backward().unwrap();
                assert_close(g.get(&x).unwrap(), &case["dx"], &what("dx"));
                assert_close(g.get(&bn.gamma).unwrap(), &case["dgamma"], &what("dgamma"));
                assert_close(g.get(&bn.beta).unwrap(), &case["dbeta"], &what("dbeta"));
            }
        }
    }

    #[test]
    fn batchnorm_eval_uses_running_statistics_on_both_paths() {
        let mut bn = BatchNorm::new(0, 2, &Device::Cpu).unwrap();
        bn.running_mean = vec![1.0, -2.0];
        bn.running_var = vec![4.0, 0.25];
        let x =
            Tensor::from_vec(vec![3.0f32, 5.0, -2.0, -1.5], (1, 2, 1, 2), &Device::Cpu).unwrap();
        for portable in PATHS {
            let y = bn
                .forward(&x, &mut Ctx::eval().portable(portable), false)
                .unwrap();
            let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = [1.0, 2.0, 0.0, 1.0];
            for (a, b) in y.iter().zip(want) {
                assert!((a - b).abs() < 1e-4, "{y:?} (portable: {portable})");
            }
        }
    }

    #[test]
    fn dropout_is_seeded_scaled_and_off_in_eval() {
        let x = (zeros(&[4, 1000]) + 1.0).unwrap();
        let run = |seed| {
            let mut ctx = Ctx::train(Rng::new(seed));
            dropout(&x, 0.25, &mut ctx)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert_ne!(a, run(2));
        let kept = a.iter().filter(|v| **v != 0.0).count();
        assert!((2850..3150).contains(&kept), "{kept}");
        assert!(a.iter().all(|v| *v == 0.0 || (*v - 4.0 / 3.0).abs() < 1e-6));
        let e = dropout(&x, 0.25, &mut Ctx::eval()).unwrap();
        assert_eq!(
            e.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![1.0; 4000]
        );
    }
}
