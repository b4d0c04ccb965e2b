//! The portable op path: every layer the models use, composed from ops
//! candle implements on every device, so a model runs on a GPU where the
//! project's own kernels (CPU custom ops: [`super::conv`], [`super::fused`],
//! [`super::pool`]) cannot. [`super::layers`] takes this path when the
//! forward pass's [`super::layers::Ctx`] says so: always on CUDA, and on
//! the CPU only in the tests that compare it with the own kernels.
//!
//! Guarantees (tested on the CPU against the own kernels, which are tested
//! against numpy): the numpy reference values of convolution and BatchNorm
//! to 1e-5 relative; whole networks' probabilities to 1e-5 and every
//! gradient to 1e-5 of its tensor's largest magnitude; max pooling sends each window's gradient to its first maximum in
//! row-major order (PyTorch's choice; candle's own `max_pool2d` backward is
//! wrong, see `docs/tensor-engine.md`); convolutions are correct for any
//! input size, although candle's conv2d backward assumes that height and
//! width leave the same remainder under the stride; a ReLU passes no
//! gradient at 0 (as the own kernels and PyTorch).

use candle_core::{DType, Result, Tensor, D};

/// 2-D convolution of NCHW `x` by `w` [cout, cin, k, k], no bias.
///
/// candle's conv2d backward gives the input gradient the output padding
/// of the height's remainder `(h + 2p - k) mod s` on both axes; when the
/// width's differs, the input is padded explicitly and cut to the rows and
/// columns the windows reach (the others get no gradient either way), so
/// both remainders are 0.
pub(crate) fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let rest = |n: usize| (n + 2 * pad).checked_sub(k).map(|d| d % stride);
    let (Some(rh), Some(rw)) = (rest(h), rest(wd)) else {
        candle_core::bail!("conv: a {k}x{k} kernel does not fit {h}x{wd} with padding {pad}");
    };
    if rh == rw {
        return x.conv2d(w, pad, stride, 1, 1);
    }
    let x = x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?;
    let x = x
        .narrow(2, 0, h + 2 * pad - rh)?
        .narrow(3, 0, wd + 2 * pad - rw)?;
    x.conv2d(w, 0, stride, 1, 1)
}

/// max(x, 0), with no gradient where x <= 0.
pub(crate) fn relu(x: &Tensor) -> Result<Tensor> {
    x.mul(&x.gt(0f64)?.to_dtype(x.dtype())?)
}

/// Per-channel view [1, C, 1, 1] of a vector of C values.
fn per_channel(v: &Tensor) -> Result<Tensor> {
    v.reshape((1, (), 1, 1))
}

/// Training BatchNorm over NCHW `x` (+ ReLU when `relu`): normalised with
/// the biased batch variance; the batch mean and unbiased variance are
/// returned beside the output (for the running statistics).
pub(crate) fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu_after: bool,
) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
    let (n, _, h, w) = x.dims4()?;
    let count = n * h * w;
    if count < 2 {
        candle_core::bail!("batchnorm: {count} value per channel; training needs at least 2");
    }
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
    let inv = (var.clone() + eps)?.sqrt()?.recip()?;
    let y = centred
        .broadcast_mul(&inv)?
        .broadcast_mul(&per_channel(gamma)?)?
        .broadcast_add(&per_channel(beta)?)?;
    let y = if relu_after { relu(&y)? } else { y };
    let unbiased = count as f64 / (count - 1) as f64;
    let mean_v = mean.detach().flatten_all()?.to_vec1::<f32>()?;
    let var_v = (var.detach() * unbiased)?.flatten_all()?.to_vec1::<f32>()?;
    Ok((y, mean_v, var_v))
}

/// y = x * scale[c] + shift[c] over NCHW `x` (+ ReLU): evaluation
/// BatchNorm with its per-channel affine form precomputed on the host.
pub(crate) fn affine(x: &Tensor, scale: &[f32], shift: &[f32], relu_after: bool) -> Result<Tensor> {
    let dev = x.device();
    let scale = Tensor::from_slice(scale, (1, scale.len(), 1, 1), dev)?;
    let shift = Tensor::from_slice(shift, (1, shift.len(), 1, 1), dev)?;
    let y = x.broadcast_mul(&scale)?.broadcast_add(&shift)?;
    if relu_after {
        relu(&y)
    } else {
        Ok(y)
    }
}

/// relu(a + b).
pub(crate) fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    relu(&(a + b)?)
}

/// relu(x + b[c]) over NCHW `x`, times `mask` (inverted-dropout scales,
/// one per element) when given.
pub(crate) fn bias_relu_dropout(x: &Tensor, b: &Tensor, mask: Option<Vec<f32>>) -> Result<Tensor> {
    let y = relu(&x.broadcast_add(&per_channel(b)?)?)?;
    match mask {
        Some(m) => y.mul(&Tensor::from_vec(m, y.shape(), y.device())?),
        None => Ok(y),
    }
}

/// The mean over the height of NCHW `x`: [N, C, W].
pub(crate) fn mean_height(x: &Tensor) -> Result<Tensor> {
    x.mean(2)
}

/// Max pooling of NCHW `x` with a `k`x`k` window and stride `s`, floor
/// mode (windows that do not fit are dropped). Each output is the sum of
/// its window times a one-hot mask of the window's first maximum (the mask
/// is a constant), so the gradient reaches that element only.
pub(crate) fn max_pool(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if k == 0 || s == 0 || h < k || w < k {
        candle_core::bail!("max pool: a {k}x{k} window with stride {s} does not fit {h}x{w}");
    }
    let (ho, wo) = ((h - k) / s + 1, (w - k) / s + 1);
    // [N, C, Ho, Wo, k*k], each window's elements in row-major order.
    let windows = if k == s {
        x.narrow(2, 0, ho * k)?
            .narrow(3, 0, wo * k)?
            .reshape((n, c, ho, k, wo, k))?
            .permute((0, 1, 2, 4, 3, 5))?
            .reshape((n, c, ho, wo, k * k))?
    } else {
        let dev = x.device();
        let taps = |len: usize, off: usize| -> Result<Tensor> {
            let idx: Vec<u32> = (0..len).map(|i| (i * s + off) as u32).collect();
            Tensor::from_vec(idx, len, dev)
        };
        let mut parts = Vec::with_capacity(k * k);
        for di in 0..k {
            let rows = x.index_select(&taps(ho, di)?, 2)?;
            for dj in 0..k {
                parts.push(rows.index_select(&taps(wo, dj)?, 3)?);
            }
        }
        Tensor::stack(&parts, 4)?
    };
    let detached = windows.detach();
    let top = detached.max_keepdim(D::Minus1)?;
    let hits = detached.broadcast_eq(&top)?.to_dtype(DType::F32)?;
    // The first hit: a hit whose running count of hits is 1.
    let first = (hits.cumsum(D::Minus1)?.eq(1f64)?.to_dtype(DType::F32)? * &hits)?;
    windows.mul(&first.to_dtype(x.dtype())?)?.sum(D::Minus1)
}
