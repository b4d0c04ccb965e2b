//! 2-D convolution as the project's own candle [`CustomOp2`], with its
//! backward passes.
//!
//! candle 0.11's CPU convolution computes the input gradient with a direct
//! transposed-convolution loop and fails on some odd sizes
//! (docs/tensor-engine.md). Here every pass is one matrix product per image
//! over an im2col buffer:
//! - forward: `y_n = W · col(x_n)`;
//! - input gradient: `dx_n = col2im(Wᵀ · dy_n)`;
//! - weight gradient: `dW = Σ_n dy_n · col(x_n)ᵀ`.
//!
//! On a CPU with AVX-512F, 3x3 padding-1 kernels (stride 1 or 2) take the
//! direct kernel of [`super::direct`] for the forward pass instead, and at
//! stride 1 for the input gradient too (no im2col, no col2im): faster per
//! layer (see docs/benchmarks.md, section "Inference").
//!
//! Guarantees: NCHW f32, square kernel, any stride ≥ 1 and padding, any input
//! size the kernel fits (`out = (in + 2p - k) / s + 1`). Work is split over
//! images on rayon's current pool, each product single-threaded; the weight
//! gradient sums fixed groups of [`GROUP`] images and then the groups in
//! order, so results are byte-identical whatever the thread count. im2col
//! buffers are per thread and reused across calls. Pinned against numpy
//! reference values, candle's forward, and finite differences (tests below).
//!
//! [`bn_relu_conv`] (training) convolves max(BatchNorm(x), 0), BatchNorm
//! with batch statistics, without storing the normalised tensor: each
//! image is normalised into a per-thread buffer just before its product,
//! forward and again for the weight gradient, and the BatchNorm backward
//! pass recomputes its ReLU mask from x. Forward and every gradient are
//! bit-identical to [`super::fused::batch_norm_train`] followed by
//! [`conv2d`] (tested: strides 1 and 2, 1x1 and 3x3, partial weight
//! gradient groups, 1 and 2 threads), and match finite differences.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Result, Shape, Tensor};
use rayon::prelude::*;

use super::direct;
use super::fused::{
    affine_plane, bn_backward_unstored, grad_like, with_batch_stats, BatchStats, BnMask,
    SharedStats,
};
use super::op::{custom_op, f32_slice, Grads, Input, Output};

/// Images per partial weight gradient (fixed, so the summation order does
/// not depend on the number of threads).
const GROUP: usize = 4;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static INPUT_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer resized to `len` (contents
/// unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_buffer(&SCRATCH, len, f)
}

fn with_buffer<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    key.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

/// A per-channel map applied to each input image before the convolution
/// reads it: `x·scale[c] + shift[c]`, then max(·, 0) when `relu` — a
/// training BatchNorm (+ ReLU) folded into the convolution after it, with
/// the arithmetic of the separate layer ([`affine_plane`]).
#[derive(Debug, Clone)]
struct Prologue {
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu: bool,
}

impl Prologue {
    /// Runs `f` on image `x` mapped into this thread's input buffer.
    fn with_image<R>(&self, g: &Geom, x: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
        let hw = g.h * g.w;
        with_buffer(&INPUT_SCRATCH, g.in_len(), |buf| {
            for c in 0..g.cin {
                let (src, dst) = (&x[c * hw..][..hw], &mut buf[c * hw..][..hw]);
                affine_plane(src, dst, self.scale[c], self.shift[c], self.relu);
            }
            f(buf)
        })
    }
}

/// The geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Geom {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn new(x: &[usize], wt: &[usize], stride: usize, pad: usize) -> Result<Geom> {
        let (&[n, cin, h, w], &[cout, wcin, k, k2]) = (x, wt) else {
            candle_core::bail!("conv: input {x:?} and weight {wt:?} must both be 4-D");
        };
        if wcin != cin || k != k2 || k == 0 || stride == 0 {
            candle_core::bail!("conv: weight {wt:?} does not fit input {x:?} (stride {stride})");
        }
        let out = |len: usize| (len + 2 * pad).checked_sub(k).map(|d| d / stride + 1);
        let (Some(oh), Some(ow)) = (out(h), out(w)) else {
            candle_core::bail!("conv: kernel {k} does not fit input {h}x{w} with padding {pad}");
        };
        Ok(Geom {
            n,
            cin,
            h,
            w,
            cout,
            k,
            stride,
            pad,
            oh,
            ow,
        })
    }

    /// Rows of the im2col matrix (`cin * k * k`).
    fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Output positions per image (`oh * ow`).
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    /// A 1x1, stride-1, unpadded convolution: the image is its own im2col.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// For kernel offset `d`, the output range whose input index
    /// `o * stride + d - pad` lies in `0..len`.
    fn valid(&self, d: usize, len: usize, out: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        // o * s + d >= p  ⇔  o >= ceil((p - d) / s)
        let lo = if d >= p { 0 } else { (p - d).div_ceil(s) };
        // o * s + d - p <= len - 1  ⇔  o <= (len - 1 + p - d) / s
        let hi = if len + p > d {
            ((len - 1 + p - d) / s + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// col[(c*k + di)*k + dj][oy*ow + ox] = x[c][oy*s + di - p][ox*s + dj - p]
    /// (0 outside the image).
    fn im2col(&self, x: &[f32], col: &mut [f32]) {
        let (k, s, p, ow, p_len) = (self.k, self.stride, self.pad, self.ow, self.p());
        for c in 0..self.cin {
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for di in 0..k {
                let (ylo, yhi) = self.valid(di, self.h, self.oh);
                for dj in 0..k {
                    let (xlo, xhi) = self.valid(dj, self.w, ow);
                    let row = &mut col[((c * k + di) * k + dj) * p_len..][..p_len];
                    row[..ylo * ow].fill(0.0);
                    row[yhi * ow..].fill(0.0);
                    for oy in ylo..yhi {
                        let dst = &mut row[oy * ow..(oy + 1) * ow];
                        dst[..xlo].fill(0.0);
                        dst[xhi..].fill(0.0);
                        let src = &plane[(oy * s + di - p) * self.w..][..self.w];
                        if s == 1 {
                            let first = xlo + dj - p;
                            dst[xlo..xhi].copy_from_slice(&src[first..first + (xhi - xlo)]);
                        } else {
                            for (ox, d) in dst.iter_mut().enumerate().take(xhi).skip(xlo) {
                                *d = src[ox * s + dj - p];
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geom::im2col`]: dx[c][y][x] += Σ col entries that
    /// read it (`dx` comes zeroed).
    fn col2im(&self, col: &[f32], dx: &mut [f32]) {
        let (k, s, p, ow, p_len) = (self.k, self.stride, self.pad, self.ow, self.p());
        for c in 0..self.cin {
            let plane = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
            for di in 0..k {
                let (ylo, yhi) = self.valid(di, self.h, self.oh);
                for dj in 0..k {
                    let (xlo, xhi) = self.valid(dj, self.w, ow);
                    let row = &col[((c * k + di) * k + dj) * p_len..][..p_len];
                    for oy in ylo..yhi {
                        let src = &row[oy * ow..(oy + 1) * ow];
                        let dst = &mut plane[(oy * s + di - p) * self.w..][..self.w];
                        if s == 1 {
                            let first = xlo + dj - p;
                            for (d, v) in dst[first..first + (xhi - xlo)]
                                .iter_mut()
                                .zip(&src[xlo..xhi])
                            {
                                *d += v;
                            }
                        } else {
                            for (ox, v) in src.iter().enumerate().take(xhi).skip(xlo) {
                                dst[ox * s + dj - p] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst[m×n] (=|+=) a[m×k] · b[k×n]`, each matrix given by (pointer,
/// row stride, column stride); single-threaded.
#[allow(clippy::too_many_arguments)]
fn matmul(
    dims: (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
) {
    // SAFETY: an initialised slice is a valid uninitialised one, and
    // nothing uninitialised is written into it.
    let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
    // SAFETY: with `accumulate`, dst is initialised (it came as `[f32]`).
    unsafe { product(dims, dst, accumulate, a, a_strides, b, b_strides) }
}

/// As [`matmul`] without accumulating, into an uninitialised `dst`, every
/// value of whose first `m×n` it writes.
fn matmul_into(
    dims: (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
) {
    // SAFETY: without accumulating, dst is only written.
    unsafe { product(dims, dst, false, a, a_strides, b, b_strides) }
}

/// SAFETY: with `accumulate`, the first `m×n` values of `dst` must be
/// initialised.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    accumulate: bool,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
) {
    assert!(dst.len() >= m * n);
    debug_assert!(m == 0 || k == 0 || a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    debug_assert!(k == 0 || n == 0 || b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for v in &mut dst[..m * n] {
                v.write(0.0);
            }
        }
        return;
    }
    // SAFETY: the bounds above hold (dst asserted; a and b checked in
    // debug builds, and by construction from `Geom` in every caller); dst
    // does not alias a or b; without `accumulate`, gemm does not read dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `chunks` chunks of `len` values, chunk `i` computed by `fill(i, chunk)`
/// in parallel, without zeroing them first.
///
/// SAFETY: `fill` must write every value of its chunk.
unsafe fn par_filled(
    chunks: usize,
    len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let total = chunks * len;
    let mut v = Vec::with_capacity(total);
    v.spare_capacity_mut()[..total]
        .par_chunks_mut(len.max(1))
        .enumerate()
        .for_each(|(i, c)| fill(i, c));
    // SAFETY: every value was written (the caller's contract).
    unsafe { v.set_len(total) };
    v
}

/// The initialised view of `s`.
///
/// SAFETY: every value of `s` must have been written.
unsafe fn assume_init(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: the caller's contract; the layouts are the same.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// How a call computes its products: im2col + `gemm` on the weights as
/// given, or the direct 3x3 kernel ([`direct`]) on weights packed once per
/// call.
enum Kernel<'a> {
    Gemm(&'a [f32]),
    Direct(direct::Plan, Vec<f32>),
}

impl Geom {
    /// The direct kernel's plan for this convolution's input, when it
    /// computes it: a 3x3 padding-1 kernel at stride 1 or 2 on a CPU with
    /// AVX-512F.
    fn direct(&self) -> Option<direct::Plan> {
        if self.k == 3 && self.pad == 1 && direct::supported() {
            direct::Plan::new(self.cin, self.h, self.w, self.stride)
        } else {
            None
        }
    }

    /// The forward kernel for weights `wt` [Cout,Cin,k,k].
    fn kernel<'a>(&self, wt: &'a [f32]) -> Kernel<'a> {
        match self.direct() {
            Some(plan) => {
                Kernel::Direct(plan, direct::pack_weights(wt, self.cout, self.cin, false))
            }
            None => Kernel::Gemm(wt),
        }
    }
}

/// One image's forward convolution, `y` [Cout, OH*OW] = W · col(x), every
/// value of `y` written. The training forward and the fused evaluation
/// both call it, so their products are the same bit for bit.
fn conv_image(g: &Geom, x: &[f32], kernel: &Kernel, y: &mut [MaybeUninit<f32>]) {
    conv_image_post(g, x, kernel, y, direct::Post::default());
}

/// [`conv_image`], then `post` applied as the direct kernel stores each
/// value (the im2col path ignores `post`: callers apply it themselves).
fn conv_image_post(
    g: &Geom,
    x: &[f32],
    kernel: &Kernel,
    y: &mut [MaybeUninit<f32>],
    post: direct::Post,
) {
    let (kd, p) = (g.kdim(), g.p());
    match kernel {
        Kernel::Direct(plan, packed) => with_scratch(plan.len(), |buf| {
            plan.prepare(x, buf);
            plan.run(buf, packed, g.cout, y, post);
        }),
        Kernel::Gemm(wt) if g.pointwise() => {
            matmul_into((g.cout, p, kd), y, wt, (kd, 1), x, (p, 1))
        }
        Kernel::Gemm(wt) => with_scratch(kd * p, |col| {
            g.im2col(x, col);
            matmul_into((g.cout, p, kd), y, wt, (kd, 1), col, (p, 1));
        }),
    }
}

/// Forward: (x [N,Cin,H,W], w [Cout,Cin,k,k]) → y [N,Cout,OH,OW].
#[derive(Debug, Clone, Copy)]
struct Conv2d {
    stride: usize,
    pad: usize,
}

impl Conv2d {
    fn cpu(&self, [(s1, l1), (s2, l2)]: [Input; 2]) -> Output {
        let g = Geom::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let x = f32_slice(s1, l1, "conv: input")?;
        let wt = f32_slice(s2, l2, "conv: weight")?;
        let y = conv_forward(&g, x, wt, None);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.cout, g.oh, g.ow))))
    }

    fn backward(&self, [x, w]: [&Tensor; 2], _y: &Tensor, dy: &Tensor) -> Grads<2> {
        let dy = dy.contiguous()?;
        // The input images need no gradient: skip it for the first layer.
        let dx = if x.track_op() {
            Some(w.apply_op2_no_bwd(
                &dy,
                &ConvBackwardData {
                    conv: *self,
                    x_dims: x.dims4()?,
                },
            )?)
        } else {
            None
        };
        let dw = x.apply_op2_no_bwd(
            &dy,
            &ConvBackwardFilter {
                conv: *self,
                w_dims: w.dims4()?,
                pre: None,
            },
        )?;
        Ok([dx, Some(dw)])
    }
}

custom_op!(CustomOp2 for Conv2d, "foldwise-conv2d", cpu, backward);

/// The forward convolution of every image (each mapped by `pre` first),
/// images in parallel.
fn conv_forward(g: &Geom, x: &[f32], wt: &[f32], pre: Option<&Prologue>) -> Vec<f32> {
    let kernel = g.kernel(wt);
    let in_len = g.in_len();
    let fill = |i: usize, y: &mut [MaybeUninit<f32>]| {
        let x = &x[i * in_len..(i + 1) * in_len];
        match pre {
            None => conv_image(g, x, &kernel, y),
            Some(pre) => pre.with_image(g, x, |x| conv_image(g, x, &kernel, y)),
        }
    };
    // SAFETY: conv_image writes every value of its image's output.
    unsafe { par_filled(g.n, g.cout * g.p(), fill) }
}

/// Input gradient: (w, dy) → dx.
struct ConvBackwardData {
    conv: Conv2d,
    x_dims: (usize, usize, usize, usize),
}

impl ConvBackwardData {
    fn cpu(&self, [(s1, l1), (s2, l2)]: [Input; 2]) -> Output {
        let (n, c, h, w) = self.x_dims;
        let g = Geom::new(&[n, c, h, w], l1.dims(), self.conv.stride, self.conv.pad)?;
        if l2.dims() != [g.n, g.cout, g.oh, g.ow] {
            candle_core::bail!("conv backward: gradient {:?} does not fit {g:?}", l2.dims());
        }
        let wt = f32_slice(s1, l1, "conv: weight")?;
        let dy = f32_slice(s2, l2, "conv: gradient")?;
        let (kd, p) = (g.kdim(), g.p());
        // For a 3x3 stride-1 padding-1 kernel, dx is the same convolution
        // of dy with the kernel transposed and flipped.
        let flipped = if g.stride == 1 {
            Geom::new(&[n, g.cout, g.oh, g.ow], &[g.cin, g.cout, 3, 3], 1, 1)
                .ok()
                .and_then(|back| back.direct())
                .filter(|_| g.k == 3 && g.pad == 1)
                .map(|plan| (plan, direct::pack_weights(wt, g.cout, g.cin, true)))
        } else {
            None
        };
        let out_len = g.cout * p;
        let fill = |i: usize, dx: &mut [MaybeUninit<f32>]| {
            let dy = &dy[i * out_len..(i + 1) * out_len];
            if let Some((plan, packed)) = &flipped {
                with_scratch(plan.len(), |buf| {
                    plan.prepare(dy, buf);
                    plan.run(buf, packed, g.cin, dx, direct::Post::default());
                })
            } else if g.pointwise() {
                // dx [kd × p] = Wᵀ [kd × cout] · dy [cout × p]
                matmul_into((kd, p, g.cout), dx, wt, (1, kd), dy, (p, 1));
            } else {
                for v in dx.iter_mut() {
                    v.write(0.0);
                }
                // dcol [kd × p] = Wᵀ [kd × cout] · dy [cout × p]
                with_scratch(kd * p, |col| {
                    matmul((kd, p, g.cout), col, false, wt, (1, kd), dy, (p, 1));
                    // SAFETY: zeroed just above.
                    g.col2im(col, unsafe { assume_init(dx) });
                })
            }
        };
        // SAFETY: each path writes every value of its image's dx: the
        // direct kernel and the product all of it; the col2im path zeroes
        // it first.
        let dx = unsafe { par_filled(g.n, g.in_len(), fill) };
        Ok((CpuStorage::F32(dx), Shape::from((n, c, h, w))))
    }
}

custom_op!(CustomOp2 for ConvBackwardData, "foldwise-conv2d-backward-data", cpu);

/// Weight gradient: (x, dy) → dw, over the images mapped by `pre` when
/// given.
struct ConvBackwardFilter {
    conv: Conv2d,
    w_dims: (usize, usize, usize, usize),
    pre: Option<Prologue>,
}

impl ConvBackwardFilter {
    fn cpu(&self, [(s1, l1), (s2, l2)]: [Input; 2]) -> Output {
        let (co, ci, k, k2) = self.w_dims;
        let g = Geom::new(l1.dims(), &[co, ci, k, k2], self.conv.stride, self.conv.pad)?;
        if l2.dims() != [g.n, g.cout, g.oh, g.ow] {
            candle_core::bail!("conv backward: gradient {:?} does not fit {g:?}", l2.dims());
        }
        let x = f32_slice(s1, l1, "conv: input")?;
        let dy = f32_slice(s2, l2, "conv: gradient")?;
        let (kd, p) = (g.kdim(), g.p());
        let wlen = g.cout * kd;
        let groups = g.n.div_ceil(GROUP);
        let mut partial = vec![0f32; groups * wlen];
        partial
            .par_chunks_mut(wlen.max(1))
            .enumerate()
            .for_each(|(gi, dw)| {
                let first = gi * GROUP;
                for (i, img) in (first..(first + GROUP).min(g.n)).enumerate() {
                    let x = &x[img * g.in_len()..(img + 1) * g.in_len()];
                    let dy = &dy[img * g.cout * p..(img + 1) * g.cout * p];
                    // dW [cout × kd] += dy [cout × p] · colᵀ [p × kd]
                    let mut product = |x: &[f32]| {
                        if g.pointwise() {
                            matmul((g.cout, kd, p), dw, i > 0, dy, (p, 1), x, (1, p));
                        } else {
                            with_scratch(kd * p, |col| {
                                g.im2col(x, col);
                                matmul((g.cout, kd, p), dw, i > 0, dy, (p, 1), col, (1, p));
                            })
                        }
                    };
                    match &self.pre {
                        None => product(x),
                        Some(pre) => pre.with_image(&g, x, product),
                    }
                }
            });
        let mut dw = vec![0f32; wlen];
        for part in partial.chunks(wlen.max(1)) {
            for (d, v) in dw.iter_mut().zip(part) {
                *d += v;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from((co, ci, k, k2))))
    }
}

custom_op!(CustomOp2 for ConvBackwardFilter, "foldwise-conv2d-backward-filter", cpu);

/// What the evaluation-mode convolution ([`conv2d_eval`]) does to each
/// output value of channel `c` before storing it. Each is the same
/// arithmetic, in the same order, as the separate layer it replaces, so
/// the fused result is bit-identical to the unfused one (tested).
#[derive(Debug, Clone)]
pub(crate) enum Epilogue {
    /// `v·scale[c] + shift[c]`, then max(·, 0) when `relu`: BatchNorm with
    /// running statistics (as [`super::fused::batch_norm_eval`]).
    Affine {
        scale: Vec<f32>,
        shift: Vec<f32>,
        relu: bool,
    },
    /// `max(v + bias[c], 0)`: bias + ReLU without dropout (as
    /// [`super::fused::bias_relu_dropout`] in evaluation).
    BiasRelu { bias: Vec<f32> },
}

impl Epilogue {
    fn channels(&self) -> usize {
        match self {
            Epilogue::Affine { scale, .. } => scale.len(),
            Epilogue::BiasRelu { bias } => bias.len(),
        }
    }

    /// The same arithmetic for the direct kernel to apply as it stores
    /// ([`direct::Post`]), with an image's `residual`.
    fn post<'a>(&'a self, residual: Option<&'a [f32]>) -> direct::Post<'a> {
        match self {
            Epilogue::Affine { scale, shift, relu } => direct::Post {
                scale: Some(scale),
                shift: Some(shift),
                relu: *relu,
                residual,
            },
            Epilogue::BiasRelu { bias } => direct::Post {
                scale: None,
                shift: Some(bias),
                relu: true,
                residual,
            },
        }
    }

    /// Applies the epilogue to channel `c`'s plane, then, with `residual`,
    /// `max(v + r, 0)` (as [`super::fused::add_relu`]).
    fn apply(&self, c: usize, plane: &mut [f32], residual: Option<&[f32]>) {
        match self {
            Epilogue::Affine { scale, shift, relu } => {
                let (a, b) = (scale[c], shift[c]);
                for v in plane.iter_mut() {
                    let y = *v * a + b;
                    *v = if *relu { y.max(0.0) } else { y };
                }
            }
            Epilogue::BiasRelu { bias } => {
                let b = bias[c];
                for v in plane.iter_mut() {
                    *v = (*v + b).max(0.0);
                }
            }
        }
        if let Some(r) = residual {
            for (v, r) in plane.iter_mut().zip(r) {
                *v = (*v + r).max(0.0);
            }
        }
    }
}

thread_local! {
    static OUT_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Forward only, for evaluation: the convolution, its [`Epilogue`], an
/// optional residual (`max(v + r, 0)`) and an optional 2x2 stride-2 max
/// pool (as [`super::pool::max_pool`]), per image while its output is in
/// cache — no intermediate tensor is written.
#[derive(Debug, Clone)]
struct ConvEval {
    conv: Conv2d,
    epi: Epilogue,
    pool: bool,
}

impl ConvEval {
    /// Inputs (x, w) or (x, w, residual).
    fn cpu<const N: usize>(&self, inputs: [Input; N]) -> Output {
        let ((s1, l1), (s2, l2)) = (inputs[0], inputs[1]);
        let residual = inputs.get(2).copied();
        let g = Geom::new(l1.dims(), l2.dims(), self.conv.stride, self.conv.pad)?;
        if self.epi.channels() != g.cout {
            candle_core::bail!(
                "conv: {} output channels, an epilogue for {}",
                g.cout,
                self.epi.channels()
            );
        }
        let x = f32_slice(s1, l1, "conv: input")?;
        let wt = f32_slice(s2, l2, "conv: weight")?;
        let res = match residual {
            Some((s3, l3)) => {
                if l3.dims() != [g.n, g.cout, g.oh, g.ow] {
                    candle_core::bail!(
                        "conv: residual {:?} does not match the output {:?}",
                        l3.dims(),
                        [g.n, g.cout, g.oh, g.ow]
                    );
                }
                Some(f32_slice(s3, l3, "conv: residual")?)
            }
            None => None,
        };
        let p = g.p();
        let (ph, pw) = if self.pool {
            if g.oh < 2 || g.ow < 2 {
                candle_core::bail!("max-pool: a {}x{} plane is too small", g.oh, g.ow);
            }
            ((g.oh - 2) / 2 + 1, (g.ow - 2) / 2 + 1)
        } else {
            (g.oh, g.ow)
        };
        let out_len = g.cout * ph * pw;
        let kernel = g.kernel(wt);
        let in_len = g.in_len();
        let fill = |i: usize, y: &mut [MaybeUninit<f32>]| {
            let x = &x[i * in_len..(i + 1) * in_len];
            let r = res.map(|r| &r[i * g.cout * p..(i + 1) * g.cout * p]);
            let epilogue = |dst: &mut [f32]| {
                for c in 0..g.cout {
                    let plane = &mut dst[c * p..(c + 1) * p];
                    self.epi.apply(c, plane, r.map(|r| &r[c * p..(c + 1) * p]));
                }
            };
            if !self.pool {
                if let Kernel::Direct(..) = kernel {
                    // The kernel applies the epilogue as it stores.
                    conv_image_post(&g, x, &kernel, y, self.epi.post(r));
                } else {
                    conv_image(&g, x, &kernel, y);
                    // SAFETY: conv_image wrote all of y.
                    epilogue(unsafe { assume_init(y) });
                }
                return;
            }
            OUT_SCRATCH.with(|buf| {
                let mut buf = buf.borrow_mut();
                if buf.len() < g.cout * p {
                    buf.resize(g.cout * p, 0.0);
                }
                let full = &mut buf[..g.cout * p];
                // SAFETY: initialised values viewed as uninitialised,
                // then written by conv_image.
                conv_image(&g, x, &kernel, unsafe {
                    &mut *(full as *mut [f32] as *mut [MaybeUninit<f32>])
                });
                epilogue(full);
                for c in 0..g.cout {
                    let src = &full[c * p..(c + 1) * p];
                    let dst = &mut y[c * ph * pw..(c + 1) * ph * pw];
                    pool2(src, g.ow, ph, pw, dst);
                }
            });
        };
        // SAFETY: every path below writes every value of the image's
        // output: conv_image all of it, pool2 every pooled value.
        let y = unsafe { par_filled(g.n, out_len, fill) };
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.cout, ph, pw))))
    }
}

custom_op!(CustomOp2 for ConvEval, "foldwise-conv2d-eval", cpu);
custom_op!(CustomOp3 for ConvEval, "foldwise-conv2d-eval-residual", cpu);

/// 2x2 stride-2 max pool of one plane of width `w` into `ph` x `pw`; the
/// comparison of [`super::pool`] (strictly greater, a NaN wins once).
fn pool2(src: &[f32], w: usize, ph: usize, pw: usize, dst: &mut [MaybeUninit<f32>]) {
    for i in 0..ph {
        for j in 0..pw {
            let mut best = (false, f32::NEG_INFINITY);
            for di in 0..2 {
                let row = (i * 2 + di) * w + j * 2;
                for &v in &src[row..row + 2] {
                    if !best.0 || v > best.1 || (v.is_nan() && !best.1.is_nan()) {
                        best = (true, v);
                    }
                }
            }
            dst[i * pw + j].write(best.1);
        }
    }
}

/// Evaluation only (no gradient): `x` [N,Cin,H,W] convolved with `w`
/// [Cout,Cin,k,k], then `epi`, then `max(v + residual, 0)` when a residual
/// [N,Cout,OH,OW] is given, then a 2x2 stride-2 max pool when `pool` — one
/// pass per image instead of one per layer. Bit-identical to the separate
/// layers.
pub(crate) fn conv2d_eval(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: usize,
    epi: Epilogue,
    residual: Option<&Tensor>,
    pool: bool,
) -> Result<Tensor> {
    let op = ConvEval {
        conv: Conv2d { stride, pad },
        epi,
        pool,
    };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match residual {
        Some(r) => x.apply_op3_no_bwd(&w, &r.contiguous()?, &op),
        None => x.apply_op2_no_bwd(&w, &op),
    }
}

/// The convolution of `x` [N,Cin,H,W] with `w` [Cout,Cin,k,k] (no bias).
pub(crate) fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2d { stride, pad })
}

/// Training only: the convolution (no bias) of max(BatchNorm(x), 0), the
/// BatchNorm with batch statistics and `gb` = [γ, β]; the batch mean and
/// unbiased variance of `x` are returned beside the output. Bit-identical,
/// forward and backward, to [`super::fused::batch_norm_train`] (with ReLU)
/// and then [`conv2d`], without storing the normalised tensor.
pub(crate) fn bn_relu_conv(
    x: &Tensor,
    w: &Tensor,
    gb: &Tensor,
    stride: usize,
    pad: usize,
    eps: f64,
) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
    let conv = Conv2d { stride, pad };
    let (y, [(mean, var)]) =
        with_batch_stats([x, w, gb], |[stats]| BnReluConv { conv, eps, stats })?;
    Ok((y, mean, var))
}

/// Training only: the convolution of max(BatchNorm(x), 0), the BatchNorm
/// with batch statistics: (x, w, gb) → y, gb = [γ, β]. Each image is
/// normalised into a per-thread buffer just before it is convolved (and
/// again for the weight gradient), so the normalised tensor never exists.
struct BnReluConv {
    conv: Conv2d,
    eps: f64,
    stats: SharedStats,
}

impl BnReluConv {
    fn prologue(&self) -> Prologue {
        let st = self.stats.get();
        Prologue {
            scale: st.scale.clone(),
            shift: st.shift.clone(),
            relu: true,
        }
    }

    fn cpu(&self, [(s1, l1), (s2, l2), (s3, l3)]: [Input; 3]) -> Output {
        let g = Geom::new(l1.dims(), l2.dims(), self.conv.stride, self.conv.pad)?;
        let x = f32_slice(s1, l1, "conv: input")?;
        let wt = f32_slice(s2, l2, "conv: weight")?;
        let gb = f32_slice(s3, l3, "batchnorm: weights")?;
        if gb.len() != 2 * g.cin {
            candle_core::bail!("batchnorm: {} channels but {} weights", g.cin, gb.len());
        }
        let (gamma, beta) = gb.split_at(g.cin);
        let st = BatchStats::measure(x, (g.n, g.cin, g.h * g.w), gamma, beta, self.eps)?;
        self.stats.set(st);
        let y = conv_forward(&g, x, wt, Some(&self.prologue()));
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.cout, g.oh, g.ow))))
    }

    fn backward(&self, [x, w, gb]: [&Tensor; 3], _y: &Tensor, dy: &Tensor) -> Grads<3> {
        let dy = dy.contiguous()?;
        let dw = x.apply_op2_no_bwd(
            &dy,
            &ConvBackwardFilter {
                conv: self.conv,
                w_dims: w.dims4()?,
                pre: Some(self.prologue()),
            },
        )?;
        // The gradient of the normalised input, then BatchNorm's backward
        // pass with the ReLU mask recomputed from x.
        let da = w.apply_op2_no_bwd(
            &dy,
            &ConvBackwardData {
                conv: self.conv,
                x_dims: x.dims4()?,
            },
        )?;
        let gamma = gb.narrow(0, 0, x.dim(1)?)?.to_vec1::<f32>()?;
        let (dx, dgb) = bn_backward_unstored(x, &da, BnMask::Recompute, gamma, &self.stats)?;
        Ok([Some(dx), Some(dw), Some(grad_like(dgb, gb)?)])
    }
}

custom_op!(CustomOp3 for BnReluConv, "foldwise-batchnorm-relu-conv2d", cpu, backward);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::{
        bn_train, check_gradients, on_threads, random, randoms, run_of, values, weighted_sum_grads,
        Run,
    };
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    /// Every (size, kernel, stride, padding) combination the tests cover:
    /// odd and even sizes, strides 1 and 2, padding 0 and 1, kernels 1-3.
    fn cases() -> Vec<([usize; 4], [usize; 4], usize, usize)> {
        let mut out = Vec::new();
        for (h, w) in [(5, 7), (6, 6), (7, 4), (3, 3)] {
            for k in [1, 2, 3] {
                for stride in [1, 2] {
                    for pad in [0, 1] {
                        if h + 2 * pad >= k && w + 2 * pad >= k {
                            out.push(([2, 3, h, w], [4, 3, k, k], stride, pad));
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_candles_convolution() {
        let mut rng = Rng::new(1);
        for (xs, ws, stride, pad) in cases() {
            let [x, w] = randoms(&mut rng, [&xs, &ws]);
            let ours = conv2d(x.as_tensor(), w.as_tensor(), stride, pad).unwrap();
            let theirs = x
                .as_tensor()
                .conv2d(w.as_tensor(), pad, stride, 1, 1)
                .unwrap();
            assert_eq!(ours.dims(), theirs.dims(), "{xs:?} {ws:?} s{stride} p{pad}");
            for (a, b) in values(&ours).iter().zip(values(&theirs)) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "{xs:?} {ws:?} s{stride} p{pad}: {a} vs {b}"
                );
            }
        }
    }

    /// Analytic gradients of `sum(conv(x, w) * r)` against central
    /// differences, on every case.
    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::new(2);
        for (xs, ws, stride, pad) in cases() {
            let [x, w] = randoms(&mut rng, [&xs, &ws]);
            check_gradients(
                &[&x, &w],
                &|t| conv2d(&t[0], &t[1], stride, pad).unwrap(),
                &mut rng,
                &format!("conv {xs:?} {ws:?} s{stride} p{pad}"),
            );
        }
    }

    #[test]
    fn weight_gradient_sums_groups_in_a_fixed_order() {
        // 9 images = groups of 4, 4, 1; the result must equal the sum of the
        // per-image gradients taken in that grouping, bit for bit, on 1 and
        // 2 threads.
        let mut rng = Rng::new(3);
        let [x, w] = randoms(&mut rng, [&[9, 2, 6, 5], &[3, 2, 3, 3]]);
        let run = |threads| {
            on_threads(threads, || {
                let y = conv2d(x.as_tensor(), w.as_tensor(), 1, 1).unwrap();
                let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                (values(g.get(&x).unwrap()), values(g.get(&w).unwrap()))
            })
        };
        let one = run(1);
        let two = run(2);
        assert_eq!(one.0, two.0);
        assert_eq!(one.1, two.1);
    }

    /// Layer-sized shapes (the matrix products take their blocked, packed
    /// paths) against a direct six-loop convolution and its gradients.
    #[test]
    #[cfg_attr(not(avx512f_host), ignore = "needs a CPU with AVX-512F")]
    fn im2col_path_agrees_with_the_direct_kernel() {
        // On a CPU with AVX-512F, 3x3 padding-1 layers take the direct
        // kernel; CPUs without it take im2col + gemm. Both must agree.
        assert!(direct::supported(), "this CPU has no AVX-512F");
        let mut rng = Rng::new(9);
        for (xs, co, stride) in [
            ([5, 20, 33], 24, 1),
            ([3, 17, 40], 16, 2),
            ([32, 8, 16], 32, 1),
        ] {
            let [ci, h, w] = xs;
            let g = Geom::new(&[1, ci, h, w], &[co, ci, 3, 3], stride, 1).unwrap();
            let x = values(random(&mut rng, &xs).as_tensor());
            let wt = values(random(&mut rng, &[co, ci, 3, 3]).as_tensor());
            let run = |kernel: &Kernel| {
                let mut y = vec![MaybeUninit::new(f32::NAN); co * g.p()];
                conv_image(&g, &x, kernel, &mut y);
                // SAFETY: initialised with NaN, then written.
                y.into_iter()
                    .map(|v| unsafe { v.assume_init() })
                    .collect::<Vec<f32>>()
            };
            let (gemm, direct) = (run(&Kernel::Gemm(&wt)), run(&g.kernel(&wt)));
            assert!(matches!(g.kernel(&wt), Kernel::Direct(..)));
            for (i, (a, b)) in gemm.iter().zip(&direct).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{xs:?} at {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn layer_sized_shapes_match_direct_loops() {
        let mut rng = Rng::new(4);
        for (xs, ws, stride, pad) in [
            ([2, 16, 20, 40], [32, 16, 3, 3], 1, 1),
            ([2, 24, 17, 33], [40, 24, 3, 3], 2, 1),
        ] {
            let [x, w] = randoms(&mut rng, [&xs, &ws]);
            let y = conv2d(x.as_tensor(), w.as_tensor(), stride, pad).unwrap();
            let (_, _, oh, ow) = y.dims4().unwrap();
            let dy = random(&mut rng, y.dims());
            let g = weighted_sum_grads(&y, &dy);
            let (xv, wv, yv, dyv) = (
                values(x.as_tensor()),
                values(w.as_tensor()),
                values(&y),
                values(dy.as_tensor()),
            );
            let (dxv, dwv) = (values(g.get(&x).unwrap()), values(g.get(&w).unwrap()));
            let [n, ci, h, wd] = xs;
            let [co, _, k, _] = ws;
            let mut want_y = vec![0f64; yv.len()];
            let mut want_dx = vec![0f64; xv.len()];
            let mut want_dw = vec![0f64; wv.len()];
            for b in 0..n {
                for o in 0..co {
                    for i in 0..oh {
                        for j in 0..ow {
                            let yi = ((b * co + o) * oh + i) * ow + j;
                            for c in 0..ci {
                                for di in 0..k {
                                    for dj in 0..k {
                                        let (r, q) = (
                                            (i * stride + di) as isize - pad as isize,
                                            (j * stride + dj) as isize - pad as isize,
                                        );
                                        if r < 0 || q < 0 || r >= h as isize || q >= wd as isize {
                                            continue;
                                        }
                                        let xi = ((b * ci + c) * h + r as usize) * wd + q as usize;
                                        let wi = ((o * ci + c) * k + di) * k + dj;
                                        want_y[yi] += xv[xi] as f64 * wv[wi] as f64;
                                        want_dx[xi] += dyv[yi] as f64 * wv[wi] as f64;
                                        want_dw[wi] += dyv[yi] as f64 * xv[xi] as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            for (what, got, want) in [
                ("y", &yv, &want_y),
                ("dx", &dxv, &want_dx),
                ("dw", &dwv, &want_dw),
            ] {
                for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (*a as f64 - b).abs() < 1e-3 * (1.0 + b.abs()),
                        "{what}[{i}] {xs:?}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn rejects_a_kernel_that_does_not_fit() {
        let x = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((1, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = conv2d(&x, &w, 1, 0).unwrap_err().to_string();
        assert!(
            err.contains("kernel 3 does not fit input 2x2 with padding 0"),
            "{err}"
        );
        let w = Tensor::zeros((1, 2, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = conv2d(&x, &w, 1, 0).unwrap_err().to_string();
        assert!(err.contains("does not fit input"), "{err}");
    }

    /// [`bn_relu_conv`] and the separate layers it replaces on the same
    /// inputs: (output, statistics, gradients of x, w, γ, β).
    fn bn_relu_conv_both_ways(
        xs: [usize; 4],
        ws: [usize; 4],
        stride: usize,
        pad: usize,
        rng: &mut Rng,
    ) -> [Run; 2] {
        let x = random(rng, &xs);
        let x = Var::from_tensor(&((x.as_tensor() * 3.0).unwrap() + 0.5).unwrap()).unwrap();
        let w = random(rng, &ws);
        let (gamma, beta) = (random(rng, &[xs[1]]), random(rng, &[xs[1]]));
        let gb = Tensor::cat(&[gamma.as_tensor(), beta.as_tensor()], 0).unwrap();
        let (fused, m, v) =
            bn_relu_conv(x.as_tensor(), w.as_tensor(), &gb, stride, pad, 1e-5).unwrap();
        let r = random(rng, fused.dims());
        let grads_of = |y: &Tensor, stats| run_of(y, stats, &r, &[&x, &w, &gamma, &beta]);
        let fused = grads_of(&fused, vec![m, v]);
        let (a, m, v) = bn_train([&x, &gamma, &beta], true);
        let plain = grads_of(&conv2d(&a, w.as_tensor(), stride, pad).unwrap(), vec![m, v]);
        [fused, plain]
    }

    #[test]
    fn bn_relu_conv_is_bit_identical_to_the_separate_layers() {
        let mut rng = Rng::new(5);
        // 5 and 9 images: a partial group of the weight gradient.
        for (xs, ws, stride, pad) in [
            ([5, 3, 7, 9], [4, 3, 3, 3], 1, 1),
            ([5, 3, 7, 9], [4, 3, 3, 3], 2, 1),
            ([9, 4, 6, 5], [3, 4, 1, 1], 1, 0),
            ([9, 4, 6, 5], [6, 4, 1, 1], 2, 0),
            ([2, 16, 17, 33], [24, 16, 3, 3], 2, 1),
        ] {
            let [fused, plain] = bn_relu_conv_both_ways(xs, ws, stride, pad, &mut rng);
            let what = format!("{xs:?} {ws:?} s{stride} p{pad}");
            assert_eq!(fused.0, plain.0, "{what}: output");
            assert_eq!(fused.1, plain.1, "{what}: statistics");
            for (i, name) in ["dx", "dw", "dgamma", "dbeta"].iter().enumerate() {
                assert_eq!(fused.2[i], plain.2[i], "{what}: {name}");
            }
        }
    }

    #[test]
    fn bn_relu_conv_gradients_match_finite_differences() {
        let mut rng = Rng::new(6);
        for (xs, ws, stride, pad) in [
            ([2, 2, 3, 5], [3, 2, 3, 3], 1, 1),
            ([3, 2, 5, 4], [2, 2, 3, 3], 2, 1),
            ([2, 3, 2, 3], [2, 3, 1, 1], 1, 0),
        ] {
            let [x, w] = randoms(&mut rng, [&xs, &ws]);
            let (gamma, beta) = (random(&mut rng, &[xs[1]]), random(&mut rng, &[xs[1]]));
            let f = |t: &[Tensor]| {
                let gb = Tensor::cat(&t[2..], 0).unwrap();
                bn_relu_conv(&t[0], &t[1], &gb, stride, pad, 1e-5)
                    .unwrap()
                    .0
            };
            check_gradients(
                &[&x, &w, &gamma, &beta],
                &f,
                &mut rng,
                &format!("{xs:?} {ws:?} s{stride} p{pad}"),
            );
        }
    }

    #[test]
    fn bn_relu_conv_is_identical_on_one_or_two_threads() {
        let run = |threads| {
            on_threads(threads, || {
                bn_relu_conv_both_ways([9, 3, 6, 7], [4, 3, 3, 3], 1, 1, &mut Rng::new(7))
            })
        };
        assert_eq!(run(1)[0], run(2)[0]);
    }
}
