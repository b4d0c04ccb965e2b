//! Fused elementwise kernels as the project's own candle custom ops:
//! batch normalisation with an optional ReLU (training and evaluation), the
//! residual `relu(a + b)`, and in training the two together
//! ([`bn_add_relu`]).
//!
//! Composed from candle's primitives, one training BatchNorm is about ten
//! passes over the activation (its reductions over N, H, W are slow
//! strided loops) plus as many temporaries; here it is two passes forward and
//! two backward.
//!
//! Guarantees: NCHW f32. Training statistics are per channel over (N, H, W),
//! accumulated in f64 in a fixed order (channels in parallel, each channel
//! sequential), so results are byte-identical whatever the thread count;
//! biased variance for normalising, the unbiased one reported for the running
//! statistics (PyTorch's convention). With ReLU, gradients flow where the
//! output is positive. Pinned against numpy reference values (the BatchNorm
//! tests in `layers`) and finite differences (below).
//!
//! [`bn_add_relu`] computes max(BatchNorm(c) + t, 0) with t = s,
//! BatchNorm(s) or max(BatchNorm(s), 0) without storing either normalised
//! tensor (candle keeps every op input until the backward pass ends; these
//! are recomputed from c, s and the per-channel scale and shift). Forward
//! and every gradient are bit-identical to the separate layers (the same
//! f32 expressions, the same statistics, the same backward function; the
//! recomputed ReLU mask equals the stored output's), tested on odd sizes,
//! with finite differences and on 1 and 2 threads.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::op::{custom_op, f32_slice, Grads, Input, Output};

/// (N, C, H*W) of an NCHW layout.
fn nc_hw(l: &Layout) -> Result<(usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    Ok((n, c, h * w))
}

/// Per-channel sums over the planes of that channel: `f(plane, channel)`
/// gives one plane's contribution; channels run in parallel, each summing
/// its planes (images) in order.
fn channel_sums<const K: usize>(
    (n, c, _): (usize, usize, usize),
    f: impl Fn(usize, usize) -> [f64; K] + Sync,
) -> Vec<[f64; K]> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut acc = [0f64; K];
            for img in 0..n {
                for (a, v) in acc.iter_mut().zip(f(img * c + ch, ch)) {
                    *a += v;
                }
            }
            acc
        })
        .collect()
}

/// Lanes of the per-plane partial sums: f32 accumulators the compiler
/// vectorises, added up in f64 at the end of each plane.
const LANES: usize = 16;

/// Σ f(i)[0] and Σ f(i)[1] over `0..len`, in [`LANES`] f32 lanes, then f64.
#[inline(always)]
fn lane_sums(len: usize, f: impl Fn(usize) -> [f32; 2]) -> [f64; 2] {
    let (mut acc0, mut acc1) = ([0f32; LANES], [0f32; LANES]);
    let full = len / LANES * LANES;
    for base in (0..full).step_by(LANES) {
        for (l, (a0, a1)) in acc0.iter_mut().zip(&mut acc1).enumerate() {
            let [a, b] = f(base + l);
            *a0 += a;
            *a1 += b;
        }
    }
    let mut out = [0f64; 2];
    for i in full..len {
        let [a, b] = f(i);
        out[0] += a as f64;
        out[1] += b as f64;
    }
    for (o, lanes) in out.iter_mut().zip([acc0, acc1]) {
        *o += lanes.iter().map(|v| *v as f64).sum::<f64>();
    }
    out
}

/// Σ(x - k) and Σ(x - k)² of one plane (shifted by `k` for precision).
fn plane_moments(x: &[f32], k: f32) -> [f64; 2] {
    lane_sums(x.len(), |i| {
        let d = x[i] - k;
        [d, d * d]
    })
}

/// What a training BatchNorm's forward pass measured, per channel: mean and
/// 1/sqrt(biased variance + eps) for its backward pass, the unbiased
/// variance for the running statistics, and the map it applied,
/// `y = x·scale + shift` (in f32, from f64 coefficients).
#[derive(Default)]
pub(super) struct BatchStats {
    mean: Vec<f64>,
    invstd: Vec<f64>,
    unbiased: Vec<f64>,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl BatchStats {
    /// The statistics of NCHW `x` (`dims` = (N, C, H*W)) and the map they
    /// give with `gamma`, `beta`.
    pub(super) fn measure(
        x: &[f32],
        dims @ (n, c, hw): (usize, usize, usize),
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
    ) -> Result<BatchStats> {
        if gamma.len() != c || beta.len() != c {
            candle_core::bail!("batchnorm: {c} channels but {} weights", gamma.len());
        }
        let m = (n * hw) as f64;
        // Moments about a value of the channel (its first in the batch), so
        // E[d²] - E[d]² does not cancel even when the mean is far from 0.
        let shift: Vec<f32> = (0..c).map(|ch| x[ch * hw]).collect();
        let moments = channel_sums(dims, |plane, ch| {
            plane_moments(&x[plane * hw..][..hw], shift[ch])
        });
        let mean: Vec<f64> = (0..c)
            .map(|ch| shift[ch] as f64 + moments[ch][0] / m)
            .collect();
        let var: Vec<f64> = moments
            .iter()
            .map(|[s, q]| (q / m - (s / m) * (s / m)).max(0.0))
            .collect();
        let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        let (scale, shift): (Vec<f32>, Vec<f32>) = (0..c)
            .map(|ch| {
                let a = gamma[ch] as f64 * invstd[ch];
                (a as f32, (beta[ch] as f64 - mean[ch] * a) as f32)
            })
            .unzip();
        let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
        Ok(BatchStats {
            unbiased: var.iter().map(|v| v * unbias).collect(),
            mean,
            invstd,
            scale,
            shift,
        })
    }

    /// The batch mean and unbiased variance in f32.
    pub(super) fn running(&self) -> BatchMoments {
        (
            self.mean.iter().map(|v| *v as f32).collect(),
            self.unbiased.iter().map(|v| *v as f32).collect(),
        )
    }
}

/// A training BatchNorm's batch mean and unbiased variance, as the running
/// statistics take them.
pub(crate) type BatchMoments = (Vec<f32>, Vec<f32>);

/// Where a training op's forward pass leaves the statistics it measured,
/// for its backward pass.
#[derive(Default, Clone)]
pub(super) struct SharedStats(Arc<Mutex<BatchStats>>);

impl SharedStats {
    /// The statistics last recorded.
    pub(super) fn get(&self) -> MutexGuard<'_, BatchStats> {
        self.0.lock().expect("batch statistics")
    }

    pub(super) fn set(&self, stats: BatchStats) {
        *self.get() = stats;
    }
}

/// The gradient of `t` from its values.
pub(super) fn grad_like(values: Vec<f32>, t: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(values, t.shape(), t.device())
}

/// The op `op(stats)` makes applied to `inputs` (made contiguous), its
/// forward pass recording `K` BatchNorms' statistics into `stats`: the
/// output and each one's batch mean and unbiased variance.
pub(super) fn with_batch_stats<const K: usize, Op: CustomOp3 + Send + Sync + 'static>(
    [a, b, c]: [&Tensor; 3],
    op: impl FnOnce([SharedStats; K]) -> Op,
) -> Result<(Tensor, [BatchMoments; K])> {
    let stats: [SharedStats; K] = std::array::from_fn(|_| SharedStats::default());
    let y = a
        .contiguous()?
        .apply_op3(&b.contiguous()?, &c.contiguous()?, op(stats.clone()))?;
    Ok((y, stats.map(|s| s.get().running())))
}

/// Training BatchNorm (+ ReLU): (x, gamma, beta) → y.
struct BnTrain {
    eps: f64,
    relu: bool,
    stats: SharedStats,
}

impl BnTrain {
    fn cpu(&self, [(s1, l1), (s2, l2), (s3, l3)]: [Input; 3]) -> Output {
        let dims = nc_hw(l1)?;
        let x = f32_slice(s1, l1, "batchnorm: input")?;
        let gamma = f32_slice(s2, l2, "batchnorm: weight")?;
        let beta = f32_slice(s3, l3, "batchnorm: bias")?;
        let st = BatchStats::measure(x, dims, gamma, beta, self.eps)?;
        let y = affine(x, dims, &st.scale, &st.shift, self.relu);
        self.stats.set(st);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn backward(&self, [x, gamma, _beta]: [&Tensor; 3], y: &Tensor, dy: &Tensor) -> Grads<3> {
        let c = gamma.elem_count();
        let len = x.elem_count();
        let packed = x.apply_op3_no_bwd(
            y,
            &dy.contiguous()?,
            &BnBackward {
                mask: if self.relu {
                    BnMask::Output
                } else {
                    BnMask::None
                },
                gamma: gamma.flatten_all()?.to_vec1()?,
                stats: self.stats.clone(),
            },
        )?;
        let dx = packed.narrow(0, 0, len)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, len, c)?.reshape(gamma.shape())?;
        let dbeta = packed.narrow(0, len + c, c)?.reshape(gamma.shape())?;
        Ok([Some(dx), Some(dgamma), Some(dbeta)])
    }
}

custom_op!(CustomOp3 for BnTrain, "foldwise-batchnorm-train", cpu, backward);

/// One plane of [`affine`]: y = x * a + b (then max(0, ·) with `relu`).
/// Every training and evaluation BatchNorm output, stored or recomputed,
/// is this expression.
#[inline]
pub(super) fn affine_plane(x: &[f32], y: &mut [f32], a: f32, b: f32, relu: bool) {
    for (y, x) in y.iter_mut().zip(x) {
        let v = x * a + b;
        *y = if relu { v.max(0.0) } else { v };
    }
}

/// y = x * scale[c] + shift[c] (then max(0, ·) with `relu`), planes in
/// parallel.
fn affine(
    x: &[f32],
    (_, c, hw): (usize, usize, usize),
    scale: &[f32],
    shift: &[f32],
    relu: bool,
) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(hw.max(1))
        .zip(x.par_chunks(hw.max(1)))
        .enumerate()
        .for_each(|(plane, (y, x))| affine_plane(x, y, scale[plane % c], shift[plane % c], relu));
    y
}

/// Where a training BatchNorm's backward pass lets the output gradient
/// through: everywhere (no ReLU after it), where its stored output is
/// positive, or where that output, recomputed from the input and the
/// forward pass's scale and shift, is positive. The two ReLU masks are the
/// same bit for bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum BnMask {
    None,
    Output,
    Recompute,
}

/// Training BatchNorm gradients: (x, y, dy) with [`BnMask::Output`] (a
/// `CustomOp3`), or (x, dy) otherwise (a `CustomOp2`) → [dx, dgamma, dbeta]
/// packed into one vector.
struct BnBackward {
    mask: BnMask,
    gamma: Vec<f32>,
    stats: SharedStats,
}

impl BnBackward {
    /// Inputs (x, y, dy) or (x, dy).
    fn cpu<const N: usize>(&self, inputs: [Input; N]) -> Output {
        let ((s1, l1), (s3, l3)) = (inputs[0], inputs[N - 1]);
        let y = (N == 3).then(|| inputs[1]);
        let dims @ (_, c, _) = nc_hw(l1)?;
        let x = f32_slice(s1, l1, "batchnorm: input")?;
        let dy = f32_slice(s3, l3, "batchnorm: gradient")?;
        let y = match y {
            Some((s2, l2)) => Some(f32_slice(s2, l2, "batchnorm: output")?),
            None => None,
        };
        if dy.len() != x.len()
            || y.is_some_and(|y| y.len() != x.len())
            || (self.mask == BnMask::Output && y.is_none())
            || self.gamma.len() != c
        {
            candle_core::bail!("batchnorm backward: mismatched sizes");
        }
        let stats = self.stats.get();
        if stats.mean.len() != c {
            candle_core::bail!("batchnorm backward: the forward pass did not run");
        }
        let len = x.len();
        let mut out = vec![0f32; len + 2 * c];
        let (dx, rest) = out.split_at_mut(len);
        let gate = Gate {
            mask: self.mask,
            x,
            y: y.unwrap_or(x),
            dy,
            stats: &stats,
            hw: dims.2,
        };
        let sums = bn_backward(&gate, dims, &self.gamma, dx);
        for ch in 0..c {
            rest[ch] = sums[ch][1] as f32;
            rest[c + ch] = sums[ch][0] as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(len + 2 * c)))
    }
}

custom_op!(CustomOp3 for BnBackward, "foldwise-batchnorm-backward", cpu);
custom_op!(CustomOp2 for BnBackward, "foldwise-batchnorm-backward", cpu);

thread_local! {
    static GATED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The gradient a training BatchNorm's backward pass works on: the output
/// gradient `dy` where the ReLU after it (per [`BnMask`]) let it through,
/// else 0.
struct Gate<'a> {
    mask: BnMask,
    x: &'a [f32],
    /// The stored output ([`BnMask::Output`]; any same-sized slice
    /// otherwise).
    y: &'a [f32],
    dy: &'a [f32],
    stats: &'a BatchStats,
    hw: usize,
}

impl Gate<'_> {
    /// Runs `f` on the gated gradient of plane `plane` (channel `ch`).
    fn plane<R>(&self, plane: usize, ch: usize, f: impl FnOnce(&[f32]) -> R) -> R {
        let hw = self.hw;
        let (x, y, dy) = (
            &self.x[plane * hw..][..hw],
            &self.y[plane * hw..][..hw],
            &self.dy[plane * hw..][..hw],
        );
        if self.mask == BnMask::None {
            return f(dy);
        }
        GATED.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < hw {
                buf.resize(hw, 0.0);
            }
            let g = &mut buf[..hw];
            // dy or 0.0 by a bit mask (all ones or zero), so the loops
            // vectorise.
            let masked = |dy: f32, mask: u32| f32::from_bits(dy.to_bits() & mask);
            if self.mask == BnMask::Output {
                for ((g, y), dy) in g.iter_mut().zip(y).zip(dy) {
                    *g = masked(*dy, ((*y <= 0.0) as u32).wrapping_sub(1));
                }
            } else {
                // The stored output is max(v, 0), v = x·a + b as
                // `affine_plane` computes it; max(v, 0) <= 0 exactly where
                // v > 0 fails (v <= 0, -0 or NaN).
                let (a, b) = (self.stats.scale[ch], self.stats.shift[ch]);
                for ((g, x), dy) in g.iter_mut().zip(x).zip(dy) {
                    *g = masked(*dy, ((x * a + b > 0.0) as u32).wrapping_neg());
                }
            }
            f(g)
        })
    }
}

/// The training BatchNorm backward pass over the gradient `gate` gives,
/// written to `dx`; returns per channel [Σg, Σg·x̂] (dbeta, dgamma).
fn bn_backward(
    gate: &Gate,
    dims @ (n, c, hw): (usize, usize, usize),
    gamma: &[f32],
    dx: &mut [f32],
) -> Vec<[f64; 2]> {
    let m = (n * hw) as f64;
    let (x, mean, invstd) = (gate.x, &gate.stats.mean, &gate.stats.invstd);
    // Σ g and Σ g·x̂ per channel.
    let sums = channel_sums(dims, |plane, ch| {
        let mu = mean[ch] as f32;
        let x = &x[plane * hw..][..hw];
        let [sg, sgx] = gate.plane(plane, ch, |g| lane_sums(hw, |j| [g[j], g[j] * (x[j] - mu)]));
        [sg, sgx * invstd[ch]]
    });
    dx.par_chunks_mut(hw.max(1))
        .enumerate()
        .for_each(|(plane, dx)| {
            let ch = plane % c;
            let [sg, sgx] = sums[ch];
            // dx = k·(g - Σg/m - x̂·Σg·x̂/m), x̂ = (x - μ)·invstd, in f32
            // from f64 coefficients: dx = k·g + a·x + b.
            let (mu, is) = (mean[ch], invstd[ch]);
            let k = gamma[ch] as f64 * is;
            let a = -k * is * sgx / m;
            let b = -k * sg / m - a * mu;
            let (k, a, b) = (k as f32, a as f32, b as f32);
            let x = &x[plane * hw..][..hw];
            gate.plane(plane, ch, |g| {
                for ((d, g), x) in dx.iter_mut().zip(g).zip(x) {
                    *d = k * g + a * x + b;
                }
            });
        });
    sums
}

/// The gradients of a training BatchNorm over `x` whose output was not
/// kept (`mask` is [`BnMask::None`] or [`BnMask::Recompute`]), given the
/// gradient `dy` of its output: dx, and [dgamma, dbeta] as plain values (so
/// they hold no reference to dx's storage).
pub(super) fn bn_backward_unstored(
    x: &Tensor,
    dy: &Tensor,
    mask: BnMask,
    gamma: Vec<f32>,
    stats: &SharedStats,
) -> Result<(Tensor, Vec<f32>)> {
    let (c, len) = (gamma.len(), x.elem_count());
    let packed = x.contiguous()?.apply_op2_no_bwd(
        &dy.contiguous()?,
        &BnBackward {
            mask,
            gamma,
            stats: stats.clone(),
        },
    )?;
    let dparams = packed.narrow(0, len, 2 * c)?.to_vec1::<f32>()?;
    Ok((packed.narrow(0, 0, len)?.reshape(x.shape())?, dparams))
}

/// Training BatchNorm over NCHW `x` (+ ReLU when `relu`); the batch mean and
/// unbiased variance are returned beside the output.
pub(crate) fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
    let (y, [(mean, var)]) =
        with_batch_stats([x, gamma, beta], |[stats]| BnTrain { eps, relu, stats })?;
    Ok((y, mean, var))
}

/// Evaluation BatchNorm: y = x * scale[c] + shift[c] (+ ReLU); no gradient.
struct BnEval {
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu: bool,
}

impl BnEval {
    fn cpu(&self, [(s, l)]: [Input; 1]) -> Output {
        let dims = nc_hw(l)?;
        if dims.1 != self.scale.len() {
            candle_core::bail!(
                "batchnorm: {} channels but {} statistics",
                dims.1,
                self.scale.len()
            );
        }
        let x = f32_slice(s, l, "batchnorm: input")?;
        let y = affine(x, dims, &self.scale, &self.shift, self.relu);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
}

custom_op!(CustomOp1 for BnEval, "foldwise-batchnorm-eval", cpu);

/// Evaluation BatchNorm with running statistics (+ ReLU when `relu`).
pub(crate) fn batch_norm_eval(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let (scale, shift) = bn_eval_affine(gamma, beta, mean, var, eps);
    x.contiguous()?
        .apply_op1_no_bwd(&BnEval { scale, shift, relu })
}

/// The per-channel (scale, shift) of evaluation BatchNorm: scale = γ /
/// sqrt(var + eps), shift = β − mean · scale (computed in f64).
pub(crate) fn bn_eval_affine(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    (0..gamma.len())
        .map(|c| {
            let a = gamma[c] as f64 / (var[c] as f64 + eps).sqrt();
            (a as f32, (beta[c] as f64 - mean[c] as f64 * a) as f32)
        })
        .unzip()
}

/// `f(a[i], b[i])` for every `i` of same-length `a` and `b`, in parallel
/// chunks.
#[inline]
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut y = vec![0f32; a.len()];
    y.par_chunks_mut(1 << 14)
        .zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14)))
        .for_each(|(y, (a, b))| {
            for ((y, a), b) in y.iter_mut().zip(a).zip(b) {
                *y = f(*a, *b);
            }
        });
    y
}

/// relu(a + b): (a, b) → y; both gradients are dy where y > 0.
struct AddRelu;

impl AddRelu {
    fn cpu(&self, [(s1, l1), (s2, l2)]: [Input; 2]) -> Output {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "add-relu: shapes {:?} and {:?} differ",
                l1.dims(),
                l2.dims()
            );
        }
        let a = f32_slice(s1, l1, "add-relu: input")?;
        let b = f32_slice(s2, l2, "add-relu: input")?;
        let y = zip_map(a, b, |a, b| (a + b).max(0.0));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn backward(&self, _: [&Tensor; 2], y: &Tensor, dy: &Tensor) -> Grads<2> {
        let g = y
            .contiguous()?
            .apply_op2_no_bwd(&dy.contiguous()?, &ReluMask)?;
        Ok([Some(g.clone()), Some(g)])
    }
}

custom_op!(CustomOp2 for AddRelu, "foldwise-add-relu", cpu, backward);

/// (y, dy) → dy where y > 0, else 0.
struct ReluMask;

impl ReluMask {
    fn cpu(&self, [(s1, l1), (s2, l2)]: [Input; 2]) -> Output {
        let y = f32_slice(s1, l1, "relu mask: output")?;
        let dy = f32_slice(s2, l2, "relu mask: gradient")?;
        if y.len() != dy.len() {
            candle_core::bail!("relu mask: sizes differ");
        }
        let g = zip_map(y, dy, |y, dy| if y > 0.0 { dy } else { 0.0 });
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }
}

custom_op!(CustomOp2 for ReluMask, "foldwise-relu-mask", cpu);

/// relu(a + b) for same-shaped tensors.
pub(crate) fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}

/// The shortcut term `t` of [`bn_add_relu`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ShortcutNorm {
    /// t = s.
    Identity,
    /// t = BatchNorm(s): a projection shortcut.
    Bn,
    /// t = max(BatchNorm(s), 0): the block input itself, when that is a
    /// BatchNorm + ReLU output that is not stored.
    BnRelu,
}

/// Training only: max(BatchNorm(c) + t, 0) over same-shaped NCHW `c` and
/// `s`, t = s, BatchNorm(s) or max(BatchNorm(s), 0) as `shortcut` says;
/// `gb` = [γ, β] (identity) or [γ, β, γs, βs]. Bit-identical, forward and
/// backward, to [`batch_norm_train`] on each input and then [`add_relu`],
/// without storing the normalised tensors. Returns the batch mean and
/// unbiased variance of `c`, then of `s` when it is normalised.
pub(crate) fn bn_add_relu(
    c: &Tensor,
    s: &Tensor,
    gb: &Tensor,
    shortcut: ShortcutNorm,
    eps: f64,
) -> Result<(Tensor, Vec<BatchMoments>)> {
    let (y, [c, s]) = with_batch_stats([c, s, gb], |[c_stats, s_stats]| BnAddRelu {
        eps,
        shortcut,
        c_stats,
        s_stats,
    })?;
    let mut stats = vec![c];
    if shortcut != ShortcutNorm::Identity {
        stats.push(s);
    }
    Ok((y, stats))
}

/// Training only: max(BatchNorm(c) + t, 0) with t from `s` as
/// [`ShortcutNorm`] says: (c, s, gb) → y, gb = [γ, β] for the identity,
/// else [γ, β, γs, βs]. Neither BatchNorm's output is stored.
struct BnAddRelu {
    eps: f64,
    shortcut: ShortcutNorm,
    c_stats: SharedStats,
    s_stats: SharedStats,
}

impl BnAddRelu {
    fn cpu(&self, [(s1, l1), (s2, l2), (s3, l3)]: [Input; 3]) -> Output {
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "batchnorm-add-relu: shapes {:?} and {:?} differ",
                l1.dims(),
                l2.dims()
            );
        }
        let dims @ (_, c, hw) = nc_hw(l1)?;
        let x = f32_slice(s1, l1, "batchnorm-add-relu: input")?;
        let s = f32_slice(s2, l2, "batchnorm-add-relu: shortcut")?;
        let gb = f32_slice(s3, l3, "batchnorm-add-relu: weights")?;
        let identity = self.shortcut == ShortcutNorm::Identity;
        if gb.len() != if identity { 2 * c } else { 4 * c } {
            candle_core::bail!("batchnorm-add-relu: {c} channels but {} weights", gb.len());
        }
        let xs = BatchStats::measure(x, dims, &gb[..c], &gb[c..2 * c], self.eps)?;
        let ss = if identity {
            None
        } else {
            Some(BatchStats::measure(
                s,
                dims,
                &gb[2 * c..3 * c],
                &gb[3 * c..],
                self.eps,
            )?)
        };
        let relu = self.shortcut == ShortcutNorm::BnRelu;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(hw.max(1))
            .enumerate()
            .for_each(|(plane, y)| {
                let ch = plane % c;
                let base = plane * hw;
                let (x, s) = (&x[base..][..y.len()], &s[base..][..y.len()]);
                let (a, b) = (xs.scale[ch], xs.shift[ch]);
                // The expressions of `affine` and then `AddRelu`.
                match &ss {
                    None => {
                        for ((y, x), s) in y.iter_mut().zip(x).zip(s) {
                            *y = ((x * a + b) + s).max(0.0);
                        }
                    }
                    Some(ss) => {
                        let (sa, sb) = (ss.scale[ch], ss.shift[ch]);
                        for ((y, x), s) in y.iter_mut().zip(x).zip(s) {
                            let t = s * sa + sb;
                            let t = if relu { t.max(0.0) } else { t };
                            *y = ((x * a + b) + t).max(0.0);
                        }
                    }
                }
            });
        self.c_stats.set(xs);
        if let Some(ss) = ss {
            self.s_stats.set(ss);
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn backward(&self, [x, s, gb]: [&Tensor; 3], y: &Tensor, dy: &Tensor) -> Grads<3> {
        let c = x.dim(1)?;
        let gbv = gb.to_vec1::<f32>()?;
        // As AddRelu's backward: the gradient where the output is positive.
        let g = y
            .contiguous()?
            .apply_op2_no_bwd(&dy.contiguous()?, &ReluMask)?;
        let (dx, mut dgb) =
            bn_backward_unstored(x, &g, BnMask::None, gbv[..c].to_vec(), &self.c_stats)?;
        let ds = match self.shortcut {
            ShortcutNorm::Identity => g,
            kind => {
                let mask = if kind == ShortcutNorm::BnRelu {
                    BnMask::Recompute
                } else {
                    BnMask::None
                };
                let gamma = gbv[2 * c..3 * c].to_vec();
                let (ds, dp) = bn_backward_unstored(s, &g, mask, gamma, &self.s_stats)?;
                dgb.extend(dp);
                ds
            }
        };
        Ok([Some(dx), Some(ds), Some(grad_like(dgb, gb)?)])
    }
}

custom_op!(CustomOp3 for BnAddRelu, "foldwise-batchnorm-add-relu", cpu, backward);

/// relu(x + b[c]) · mask: (x, b) → y, the mask (inverted-dropout scales,
/// one per element) fixed in the op.
struct BiasReluMask {
    mask: Option<Arc<Vec<f32>>>,
}

impl BiasReluMask {
    fn cpu(&self, [(s1, l1), (s2, l2)]: [Input; 2]) -> Output {
        let (_, c, hw) = nc_hw(l1)?;
        let x = f32_slice(s1, l1, "bias-relu: input")?;
        let b = f32_slice(s2, l2, "bias-relu: bias")?;
        if b.len() != c || self.mask.as_ref().is_some_and(|m| m.len() != x.len()) {
            candle_core::bail!("bias-relu: {c} channels, {} biases", b.len());
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(hw.max(1))
            .zip(x.par_chunks(hw.max(1)))
            .enumerate()
            .for_each(|(plane, (y, x))| {
                let bias = b[plane % c];
                match &self.mask {
                    Some(m) => {
                        let m = &m[plane * hw..(plane + 1) * hw];
                        for ((y, x), m) in y.iter_mut().zip(x).zip(m) {
                            *y = (x + bias).max(0.0) * m;
                        }
                    }
                    None => {
                        for (y, x) in y.iter_mut().zip(x) {
                            *y = (x + bias).max(0.0);
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn backward(&self, [x, b]: [&Tensor; 2], _y: &Tensor, dy: &Tensor) -> Grads<2> {
        let len = x.elem_count();
        let c = b.elem_count();
        let packed = x.apply_op2_no_bwd(
            &dy.contiguous()?,
            &BiasReluMaskBackward {
                bias: b.flatten_all()?.to_vec1()?,
                mask: self.mask.clone(),
            },
        )?;
        let dx = packed.narrow(0, 0, len)?.reshape(x.shape())?;
        let db = packed.narrow(0, len, c)?.reshape(b.shape())?;
        Ok([Some(dx), Some(db)])
    }
}

custom_op!(CustomOp2 for BiasReluMask, "foldwise-bias-relu-dropout", cpu, backward);

/// (x, dy) → [dx, db] packed: dx = dy · mask where x + b > 0, db its sum per
/// channel.
struct BiasReluMaskBackward {
    bias: Vec<f32>,
    mask: Option<Arc<Vec<f32>>>,
}

impl BiasReluMaskBackward {
    fn cpu(&self, [(s1, l1), (s2, l2)]: [Input; 2]) -> Output {
        let dims @ (_, c, hw) = nc_hw(l1)?;
        let x = f32_slice(s1, l1, "bias-relu: input")?;
        let dy = f32_slice(s2, l2, "bias-relu: gradient")?;
        let len = x.len();
        let mut out = vec![0f32; len + c];
        let (dx, db) = out.split_at_mut(len);
        dx.par_chunks_mut(hw.max(1))
            .enumerate()
            .for_each(|(plane, dx)| {
                let bias = self.bias[plane % c];
                for (j, d) in dx.iter_mut().enumerate() {
                    let i = plane * hw + j;
                    let m = self.mask.as_ref().map_or(1.0, |m| m[i]);
                    *d = if x[i] + bias > 0.0 { dy[i] * m } else { 0.0 };
                }
            });
        let dx: &[f32] = dx;
        let sums = channel_sums(dims, |plane, _| {
            [dx[plane * hw..][..hw]
                .iter()
                .map(|v| *v as f64)
                .sum::<f64>()]
        });
        for (d, [s]) in db.iter_mut().zip(sums) {
            *d = s as f32;
        }
        Ok((CpuStorage::F32(out), Shape::from(len + c)))
    }
}

custom_op!(CustomOp2 for BiasReluMaskBackward, "foldwise-bias-relu-dropout-backward", cpu);

/// relu(x + b[c]) over NCHW `x`, then multiplied by `mask` (inverted-dropout
/// scales, one per element) when given.
pub(crate) fn bias_relu_dropout(x: &Tensor, b: &Tensor, mask: Option<Vec<f32>>) -> Result<Tensor> {
    x.contiguous()?.apply_op2(
        &b.contiguous()?,
        BiasReluMask {
            mask: mask.map(Arc::new),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::{
        bn_train, check_gradients, on_threads, random, randoms, run_of, values, weighted_sum_grads,
        Run,
    };
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    #[test]
    fn batch_norm_gradients_match_finite_differences_with_and_without_relu() {
        let mut rng = Rng::new(7);
        for shape in [[2, 3, 3, 5], [3, 2, 1, 1], [1, 4, 2, 3]] {
            for relu in [false, true] {
                let [x, gamma, beta] = randoms(&mut rng, [&shape, &[shape[1]], &[shape[1]]]);
                let f = |t: &[Tensor]| batch_norm_train(&t[0], &t[1], &t[2], 1e-5, relu).unwrap().0;
                check_gradients(
                    &[&x, &gamma, &beta],
                    &f,
                    &mut rng,
                    &format!("{shape:?} relu {relu}"),
                );
            }
        }
    }

    #[test]
    fn batch_norm_matches_the_composed_formula_and_reports_statistics() {
        let mut rng = Rng::new(8);
        let [x, gamma, beta] = randoms(&mut rng, [&[4, 3, 5, 7], &[3], &[3]]);
        let (y, mean, var) = bn_train([&x, &gamma, &beta], true);
        let xs = values(x.as_tensor());
        let (g, b) = (values(gamma.as_tensor()), values(beta.as_tensor()));
        let m = 4 * 35;
        for c in 0..3 {
            let vals: Vec<f64> = (0..4)
                .flat_map(|n| xs[(n * 3 + c) * 35..(n * 3 + c + 1) * 35].to_vec())
                .map(|v| v as f64)
                .collect();
            let mu = vals.iter().sum::<f64>() / m as f64;
            let v = vals.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / m as f64;
            assert!((mean[c] as f64 - mu).abs() < 1e-6);
            assert!((var[c] as f64 - v * m as f64 / (m - 1) as f64).abs() < 1e-6);
            for n in 0..4 {
                for j in 0..35 {
                    let i = (n * 3 + c) * 35 + j;
                    let want = (((xs[i] as f64 - mu) / (v + 1e-5).sqrt()) * g[c] as f64
                        + b[c] as f64)
                        .max(0.0);
                    assert!((values(&y)[i] as f64 - want).abs() < 1e-5);
                }
            }
        }
        // Evaluation with those statistics as the running ones equals the
        // training output up to the biased/unbiased variance.
        let biased: Vec<f32> = var.iter().map(|v| v * (m - 1) as f32 / m as f32).collect();
        let e = batch_norm_eval(x.as_tensor(), &g, &b, &mean, &biased, 1e-5, true).unwrap();
        for (a, b) in values(&e).iter().zip(values(&y)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// Planes larger than the lane width, against BatchNorm composed from
    /// candle's primitives (forward and every gradient).
    #[test]
    fn batch_norm_matches_candles_primitives_on_large_planes() {
        let mut rng = Rng::new(12);
        for relu in [false, true] {
            let x = random(&mut rng, &[4, 3, 9, 37]);
            let x = Var::from_tensor(&((x.as_tensor() * 3.0).unwrap() + 0.7).unwrap()).unwrap();
            let [gamma, beta, r] = randoms(&mut rng, [&[3], &[3], &[4, 3, 9, 37]]);
            let (ours, _, _) = bn_train([&x, &gamma, &beta], relu);
            let xt = x.as_tensor();
            let mean = xt.mean_keepdim((0, 2, 3)).unwrap();
            let xc = xt.broadcast_sub(&mean).unwrap();
            let var = xc.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
            let xh = xc
                .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap();
            let g = gamma.as_tensor().reshape((1, 3, 1, 1)).unwrap();
            let b = beta.as_tensor().reshape((1, 3, 1, 1)).unwrap();
            let mut theirs = xh.broadcast_mul(&g).unwrap().broadcast_add(&b).unwrap();
            if relu {
                theirs = theirs.relu().unwrap();
            }
            let close = |a: &Tensor, b: &Tensor, what: &str| {
                for (i, (a, b)) in values(a).iter().zip(values(b)).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                        "{what}[{i}] relu {relu}: {a} vs {b}"
                    );
                }
            };
            close(&ours, &theirs, "y");
            let (go, gt) = (
                weighted_sum_grads(&ours, &r),
                weighted_sum_grads(&theirs, &r),
            );
            for (v, what) in [(&x, "dx"), (&gamma, "dgamma"), (&beta, "dbeta")] {
                close(go.get(v).unwrap(), gt.get(v).unwrap(), what);
            }
        }
    }

    #[test]
    fn add_relu_forward_and_gradients() {
        let mut rng = Rng::new(9);
        let [a, b] = randoms(&mut rng, [&[2, 3, 4], &[2, 3, 4]]);
        let y = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
        let want = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
        assert_eq!(values(&y), values(&want));
        let f = |t: &[Tensor]| add_relu(&t[0], &t[1]).unwrap();
        check_gradients(&[&a, &b], &f, &mut rng, "add-relu");
    }

    #[test]
    fn bias_relu_dropout_forward_and_gradients() {
        let mut rng = Rng::new(11);
        let [x, b] = randoms(&mut rng, [&[2, 3, 2, 5], &[3]]);
        let mask: Vec<f32> = (0..60)
            .map(|i| if i % 3 == 0 { 0.0 } else { 1.5 })
            .collect();
        let y = bias_relu_dropout(x.as_tensor(), b.as_tensor(), Some(mask.clone())).unwrap();
        let want = x
            .as_tensor()
            .broadcast_add(&b.as_tensor().reshape((1, 3, 1, 1)).unwrap())
            .unwrap()
            .relu()
            .unwrap()
            .mul(&Tensor::from_vec(mask.clone(), (2, 3, 2, 5), &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(values(&y), values(&want));
        for m in [None, Some(mask)] {
            let f = |t: &[Tensor]| bias_relu_dropout(&t[0], &t[1], m.clone()).unwrap();
            check_gradients(&[&x, &b], &f, &mut rng, "bias-relu-dropout");
        }
    }

    #[test]
    fn batch_norm_is_identical_on_one_or_two_threads() {
        let mut rng = Rng::new(10);
        let [x, gamma, beta] = randoms(&mut rng, [&[8, 4, 6, 9], &[4], &[4]]);
        let run = |threads| {
            on_threads(threads, || {
                let (y, m, v) = bn_train([&x, &gamma, &beta], true);
                let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                (
                    values(&y),
                    m,
                    v,
                    values(g.get(&x).unwrap()),
                    values(g.get(&gamma).unwrap()),
                )
            })
        };
        assert_eq!(run(1), run(2));
    }

    /// [`bn_add_relu`] and the separate layers it replaces on the same
    /// inputs: (output, statistics, gradients of c, s, γ, β, γs, βs).
    fn add_relu_both_ways(shape: &[usize], kind: ShortcutNorm, rng: &mut Rng) -> [Run; 2] {
        let ch = shape[1];
        let spread = |v: Var, k: f64| {
            Var::from_tensor(&((v.as_tensor() * k).unwrap() + 0.3).unwrap()).unwrap()
        };
        let c = spread(random(rng, shape), 3.0);
        let s = spread(random(rng, shape), 2.0);
        let p: Vec<Var> = (0..4).map(|_| random(rng, &[ch])).collect();
        let r = random(rng, shape);
        let mut vars = vec![&c, &s, &p[0], &p[1]];
        if kind != ShortcutNorm::Identity {
            vars.extend([&p[2], &p[3]]);
        }
        let grads_of = |y: &Tensor, stats| run_of(y, stats, &r, &vars);
        let gb: Vec<&Tensor> = match kind {
            ShortcutNorm::Identity => p[..2].iter().map(Var::as_tensor).collect(),
            _ => p.iter().map(Var::as_tensor).collect(),
        };
        let gb = Tensor::cat(&gb, 0).unwrap();
        let (fused, stats) = bn_add_relu(c.as_tensor(), s.as_tensor(), &gb, kind, 1e-5).unwrap();
        let stats = stats.into_iter().flat_map(|(m, v)| [m, v]).collect();
        let fused = grads_of(&fused, stats);
        let (a, m, v) = bn_train([&c, &p[0], &p[1]], false);
        let mut stats = vec![m, v];
        let t = match kind {
            ShortcutNorm::Identity => s.as_tensor().clone(),
            _ => {
                let relu = kind == ShortcutNorm::BnRelu;
                let (t, m, v) = bn_train([&s, &p[2], &p[3]], relu);
                stats.extend([m, v]);
                t
            }
        };
        let plain = grads_of(&add_relu(&a, &t).unwrap(), stats);
        [fused, plain]
    }

    const SHORTCUTS: [ShortcutNorm; 3] = [
        ShortcutNorm::Identity,
        ShortcutNorm::Bn,
        ShortcutNorm::BnRelu,
    ];

    #[test]
    fn bn_add_relu_is_bit_identical_to_the_separate_layers() {
        let mut rng = Rng::new(13);
        for shape in [[5, 3, 7, 9], [2, 4, 1, 1], [9, 2, 5, 37]] {
            for kind in SHORTCUTS {
                let [fused, plain] = add_relu_both_ways(&shape, kind, &mut rng);
                assert!(fused.0.iter().any(|b| *b != 0), "an all-zero output");
                assert_eq!(fused.0, plain.0, "{shape:?} {kind:?}: output");
                assert_eq!(fused.1, plain.1, "{shape:?} {kind:?}: statistics");
                for (i, (f, p)) in fused.2.iter().zip(&plain.2).enumerate() {
                    assert_eq!(f, p, "{shape:?} {kind:?}: gradient {i}");
                }
            }
        }
    }

    #[test]
    fn bn_add_relu_gradients_match_finite_differences() {
        // A seed whose draws put no ReLU input within a difference step of
        // 0 (where central differences straddle the kink; about a third of
        // seeds do somewhere).
        let mut rng = Rng::new(19);
        for shape in [[2, 3, 3, 5], [3, 2, 1, 1]] {
            for kind in SHORTCUTS {
                let vars: Vec<Var> = [&shape[..], &shape[..]]
                    .into_iter()
                    .chain([&shape[1..2]; 4])
                    .map(|s| random(&mut rng, s))
                    .collect();
                let n = if kind == ShortcutNorm::Identity { 4 } else { 6 };
                let f = |t: &[Tensor]| {
                    let gb = Tensor::cat(&t[2..], 0).unwrap();
                    bn_add_relu(&t[0], &t[1], &gb, kind, 1e-5).unwrap().0
                };
                let vars: Vec<&Var> = vars[..n].iter().collect();
                check_gradients(&vars, &f, &mut rng, &format!("{shape:?} {kind:?}"));
            }
        }
    }

    #[test]
    fn bn_add_relu_is_identical_on_one_or_two_threads() {
        for kind in SHORTCUTS {
            let run = |threads| {
                on_threads(threads, || {
                    add_relu_both_ways(&[8, 4, 6, 9], kind, &mut Rng::new(15))
                })
            };
            assert_eq!(run(1)[0], run(2)[0], "{kind:?}");
        }
    }
}
