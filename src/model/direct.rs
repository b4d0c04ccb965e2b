//! Direct 3x3 convolution (padding 1, stride 1 or 2) of one image with
//! AVX-512: no im2col, no packing of the image. Used by [`super::conv`]
//! for the forward pass and, at stride 1, for the input gradient (then a
//! 3x3 stride-1 padding-1 convolution of the output gradient with the
//! flipped, transposed kernel) when the CPU has AVX-512F; every other
//! shape, and every other CPU, takes the im2col + `gemm` path.
//!
//! Layout: the image is copied once into a zero-bordered buffer
//! ([`Plan::prepare`]): `[cin][h+2][w+2]` at stride 1; at stride 2 each
//! padded row is split into its even and odd columns, so that every tap
//! still reads 16 consecutive values. The kernel keeps [`R`] output
//! channels × 3 vectors of 16 output columns (of one or more rows) in 24
//! registers and accumulates, for each input channel and each of the 9
//! taps, one broadcast weight times 16 input values. Each output is the
//! sum over (input channel, tap) in that fixed order, so the result
//! depends only on the inputs, never on threads. In evaluation the kernel
//! applies what follows the convolution ([`Post`]: BatchNorm's scale and
//! shift, ReLU, a residual sum) as it stores each vector.
//!
//! Guarantees: results equal the im2col path's up to rounding (the sums
//! are ordered differently; tested against the definition and by the
//! adjoint identity); [`supported`] says whether the kernel may be called.

use std::mem::MaybeUninit;

/// Output channels per register block.
pub(super) const R: usize = 8;
/// Lanes of one vector.
const L: usize = 16;

/// Whether this CPU can run the kernel (checked once).
pub(super) fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Weights `w` [cout][cin][3][3] rearranged for the kernel:
/// `[cout/R][cin][9][R]`, the channel count rounded up to a multiple of
/// [`R`] with zero weights. With `transpose`, the kernel of the input
/// gradient instead: out channel = `ci`, in channel = `co`, taps flipped
/// (`w'[ci][co][t] = w[co][ci][8 - t]`).
pub(super) fn pack_weights(w: &[f32], cout: usize, cin: usize, transpose: bool) -> Vec<f32> {
    let (oc, ic) = if transpose { (cin, cout) } else { (cout, cin) };
    let blocks = oc.div_ceil(R);
    let mut out = vec![0f32; blocks * ic * 9 * R];
    for o in 0..oc {
        let (cb, r) = (o / R, o % R);
        for i in 0..ic {
            for t in 0..9 {
                let v = if transpose {
                    w[(i * cin + o) * 9 + (8 - t)]
                } else {
                    w[(o * cin + i) * 9 + t]
                };
                out[((cb * ic + i) * 9 + t) * R + r] = v;
            }
        }
    }
    out
}

/// What the kernel applies to each output value of channel `o` as it stores
/// it, in this order: `v * scale[o]`, `+ shift[o]`, `max(·, 0)` when
/// `relu`, then `max(· + residual, 0)` with a residual (same layout as the
/// output). The operations and their order are those of
/// [`super::conv::Epilogue`], so the results are the same bit for bit.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Post<'a> {
    pub scale: Option<&'a [f32]>,
    pub shift: Option<&'a [f32]>,
    pub relu: bool,
    pub residual: Option<&'a [f32]>,
}

/// One 3x3 padding-1 convolution's geometry, laid out for the kernel.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    ic: usize,
    h: usize,
    w: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    /// Values per prepared row (a padded row, or one phase of it).
    row: usize,
    /// Prepared values per input channel.
    plane: usize,
    /// Per tap (di*3 + dj), its offset from a vector's first input.
    taps: [usize; 9],
    /// The output rows cut into vectors of up to 16 columns: (offset of
    /// the first input in a prepared plane, offset in an output plane,
    /// lane mask).
    vecs: Vec<(usize, usize, u16)>,
}

impl Plan {
    /// The plan for `ic` planes of `h` x `w` at `stride` 1 or 2; None for
    /// other strides or an empty image.
    pub(super) fn new(ic: usize, h: usize, w: usize, stride: usize) -> Option<Plan> {
        if !(stride == 1 || stride == 2) || h == 0 || w == 0 {
            return None;
        }
        let (oh, ow) = ((h - 1) / stride + 1, (w - 1) / stride + 1);
        // Stride 1: rows of w + 2. Stride 2: each padded row as its even
        // then its odd columns, `row` values each.
        let row = if stride == 1 { w + 2 } else { (w + 3) / 2 };
        let plane = (h + 2) * row * stride;
        let mut taps = [0; 9];
        for di in 0..3 {
            for dj in 0..3 {
                taps[di * 3 + dj] = if stride == 1 {
                    di * row + dj
                } else {
                    (di * 2 + dj % 2) * row + dj / 2
                };
            }
        }
        let mut vecs = Vec::with_capacity(oh * ow.div_ceil(L));
        for oy in 0..oh {
            for x0 in (0..ow).step_by(L) {
                let n = (ow - x0).min(L);
                let mask = if n == L { u16::MAX } else { (1u16 << n) - 1 };
                vecs.push((oy * stride * stride * row + x0, oy * ow + x0, mask));
            }
        }
        Some(Plan {
            ic,
            h,
            w,
            stride,
            oh,
            ow,
            row,
            plane,
            taps,
            vecs,
        })
    }

    /// Length of the prepared buffer: the planes, plus slack so that whole
    /// 16-lane loads past the last row stay inside it.
    pub(super) fn len(&self) -> usize {
        self.ic * self.plane + 2 * L
    }

    /// Copies `x` [ic][h][w] into `buf` ([`Plan::len`]) with a zero
    /// border (and, at stride 2, its columns split by parity).
    pub(super) fn prepare(&self, x: &[f32], buf: &mut [f32]) {
        let (h, w, row) = (self.h, self.w, self.row);
        // One padded row's values (stride 1), or its two phases (stride 2).
        let span = row * self.stride;
        for c in 0..self.ic {
            let plane = &mut buf[c * self.plane..(c + 1) * self.plane];
            plane[..span].fill(0.0);
            plane[(h + 1) * span..].fill(0.0);
            for y in 0..h {
                let src = &x[(c * h + y) * w..][..w];
                let dst = &mut plane[(y + 1) * span..(y + 2) * span];
                if self.stride == 1 {
                    dst[0] = 0.0;
                    dst[1..=w].copy_from_slice(src);
                    dst[w + 1] = 0.0;
                } else {
                    // Padded column j (x[j - 1], 0 at j = 0 and j > w) goes
                    // to phase j % 2, index j / 2: x[2k] to odd[k], x[2k + 1]
                    // to even[k + 1].
                    let (even, odd) = dst.split_at_mut(row);
                    even.fill(0.0);
                    odd.fill(0.0);
                    for ((pair, o), e) in src
                        .chunks_exact(2)
                        .zip(odd.iter_mut())
                        .zip(even[1..].iter_mut())
                    {
                        *o = pair[0];
                        *e = pair[1];
                    }
                    if w % 2 == 1 {
                        odd[w / 2] = src[w - 1];
                    }
                }
            }
        }
        buf[self.ic * self.plane..self.len()].fill(0.0);
    }

    /// Output values per channel.
    pub(super) fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// `y` [oc][oh][ow] = the convolution of `buf` (from
    /// [`Plan::prepare`]) with `packed` (from [`pack_weights`], `oc`
    /// output channels), then `post`; every value of `y`'s first `oc`
    /// planes is written, nothing past them.
    ///
    /// # Panics
    /// If a buffer is shorter than the shapes say, or [`supported`] is
    /// false.
    pub(super) fn run(
        &self,
        buf: &[f32],
        packed: &[f32],
        oc: usize,
        y: &mut [MaybeUninit<f32>],
        post: Post,
    ) {
        assert!(supported(), "direct 3x3 convolution needs AVX-512F");
        assert!(buf.len() >= self.len());
        assert!(packed.len() >= oc.div_ceil(R) * self.ic * 9 * R);
        assert!(y.len() >= oc * self.out_plane());
        let per_channel = |v: Option<&[f32]>| v.is_none_or(|v| v.len() >= oc);
        assert!(per_channel(post.scale) && per_channel(post.shift));
        assert!(post
            .residual
            .is_none_or(|r| r.len() >= oc * self.out_plane()));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F is present (asserted); the buffer sizes are
        // asserted above, and `avx512::run` stays inside them.
        unsafe {
            avx512::run(self, buf, packed, oc, y, post)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Plan, Post, R};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// SAFETY: AVX-512F present; the sizes [`Plan::run`] asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run(
        plan: &Plan,
        buf: &[f32],
        packed: &[f32],
        oc: usize,
        y: &mut [MaybeUninit<f32>],
        post: Post,
    ) {
        for cb in 0..oc.div_ceil(R) {
            let wblock = &packed[cb * plan.ic * 9 * R..];
            for group in plan.vecs.chunks(3) {
                // SAFETY (all three): see `block`.
                unsafe {
                    match *group {
                        [a, b, c] => block([a, b, c], plan, buf, wblock, (oc, cb), y, post),
                        [a, b] => block([a, b], plan, buf, wblock, (oc, cb), y, post),
                        [a] => block([a], plan, buf, wblock, (oc, cb), y, post),
                        _ => unreachable!(),
                    }
                }
            }
        }
    }

    /// Output channels `cb*R..` (those below `oc`) at the `B` output
    /// vectors `vecs`.
    ///
    /// SAFETY: AVX-512F present; `buf` holds the prepared planes and the
    /// slack of [`Plan::len`] (a vector's load at its last tap reads at
    /// most L + 1 values past the end of its prepared row, inside the
    /// next row or the slack); `wblock` holds `ic * 9 * R` values; `y`
    /// holds `oc` output planes, and only the masked lanes of channels
    /// below `oc` are stored.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const B: usize>(
        vecs: [(usize, usize, u16); B],
        plan: &Plan,
        buf: &[f32],
        wblock: &[f32],
        (oc, cb): (usize, usize),
        y: &mut [MaybeUninit<f32>],
        post: Post,
    ) {
        let mut acc = [[_mm512_setzero_ps(); B]; R];
        let xbase = buf.as_ptr();
        let wbase = wblock.as_ptr();
        for ci in 0..plan.ic {
            // SAFETY: in bounds by the function's contract.
            unsafe {
                let xci = xbase.add(ci * plan.plane);
                let wci = wbase.add(ci * 9 * R);
                for (t, &tap) in plan.taps.iter().enumerate() {
                    let mut v = [_mm512_setzero_ps(); B];
                    for (v, &(src, _, _)) in v.iter_mut().zip(&vecs) {
                        *v = _mm512_loadu_ps(xci.add(src + tap));
                    }
                    let wt = wci.add(t * R);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let k = _mm512_set1_ps(*wt.add(r));
                        for b in 0..B {
                            acc[b] = _mm512_fmadd_ps(k, v[b], acc[b]);
                        }
                    }
                }
            }
        }
        let out_plane = plan.out_plane();
        let zero = _mm512_setzero_ps();
        for (r, acc) in acc.iter().enumerate() {
            let o = cb * R + r;
            if o >= oc {
                break;
            }
            for (&a, &(_, dst, mask)) in acc.iter().zip(&vecs) {
                let at = o * out_plane + dst;
                let mut v = a;
                if let Some(scale) = post.scale {
                    v = _mm512_mul_ps(v, _mm512_set1_ps(scale[o]));
                }
                if let Some(shift) = post.shift {
                    v = _mm512_add_ps(v, _mm512_set1_ps(shift[o]));
                }
                // max(v, 0) returns the 0 for a NaN v, as f32::max does.
                if post.relu {
                    v = _mm512_max_ps(v, zero);
                }
                if let Some(res) = post.residual {
                    // SAFETY: the mask keeps the lanes inside the row.
                    let r = unsafe { _mm512_maskz_loadu_ps(mask, res.as_ptr().add(at)) };
                    v = _mm512_max_ps(_mm512_add_ps(v, r), zero);
                }
                // SAFETY: channel o < oc; the mask keeps the lanes inside
                // the output row.
                unsafe {
                    _mm512_mask_storeu_ps(y.as_mut_ptr().add(at).cast::<f32>(), mask, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// (input channels, output channels, height, width).
    type Dims = (usize, usize, usize, usize);

    fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.f32() * 2.0 - 1.0).collect()
    }

    /// A random image [cin][h][w] and weights [cout][cin][3][3].
    fn image_and_weights(rng: &mut Rng, (cin, cout, h, w): Dims) -> (Vec<f32>, Vec<f32>) {
        (random(rng, cin * h * w), random(rng, cout * cin * 9))
    }

    /// A random image and weights of `dims` from `seed`, with the generator
    /// for more (the kernel must be able to run here).
    fn inputs(seed: u64, dims: Dims) -> (Rng, Vec<f32>, Vec<f32>) {
        assert_runs_here();
        let mut rng = Rng::new(seed);
        let (x, wt) = image_and_weights(&mut rng, dims);
        (rng, x, wt)
    }

    /// Fails where the kernel cannot run: the tests that call it are
    /// ignored unless the build's CPU has AVX-512F (`build.rs`).
    fn assert_runs_here() {
        assert!(
            supported(),
            "this CPU has no AVX-512F: the test was built on a CPU with it (rebuild here) \
             or forced with --include-ignored"
        );
    }

    /// `got` within `tol` of `want`, relative to 1 + |want|.
    fn near(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * (1.0 + want.abs())
    }

    /// The padding-1 3x3 convolution by its definition, in f64.
    fn definition(x: &[f32], w: &[f32], (cin, cout, h, wd): Dims, s: usize) -> Vec<f64> {
        let (oh, ow) = ((h - 1) / s + 1, (wd - 1) / s + 1);
        let mut y = vec![0f64; cout * oh * ow];
        for o in 0..cout {
            for i in 0..cin {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for di in 0..3 {
                            for dj in 0..3 {
                                // Padded coordinates; 0 and h + 1 are the border.
                                let (iy, ix) = (oy * s + di, ox * s + dj);
                                if iy == 0 || ix == 0 || iy > h || ix > wd {
                                    continue;
                                }
                                y[(o * oh + oy) * ow + ox] += x[(i * h + iy - 1) * wd + ix - 1]
                                    as f64
                                    * w[((o * cin + i) * 3 + di) * 3 + dj] as f64;
                            }
                        }
                    }
                }
            }
        }
        y
    }

    fn run(x: &[f32], packed: &[f32], (ic, oc, h, w): Dims, s: usize) -> Vec<f32> {
        let plan = Plan::new(ic, h, w, s).unwrap();
        // NaN everywhere the preparation must overwrite or never read.
        let mut buf = vec![f32::NAN; plan.len() + 7];
        plan.prepare(x, &mut buf);
        let mut y = vec![MaybeUninit::new(f32::NAN); oc * plan.out_plane() + 5];
        plan.run(&buf, packed, oc, &mut y, Post::default());
        // SAFETY: initialised with NaN, then written.
        let mut y: Vec<f32> = y.into_iter().map(|v| unsafe { v.assume_init() }).collect();
        assert!(
            y[oc * plan.out_plane()..].iter().all(|v| v.is_nan()),
            "wrote past the output"
        );
        y.truncate(oc * plan.out_plane());
        y
    }

    #[test]
    #[cfg_attr(not(avx512f_host), ignore = "needs a CPU with AVX-512F")]
    fn matches_the_definition_for_odd_sizes_strides_and_channel_counts() {
        assert_runs_here();
        let mut rng = Rng::new(7);
        for s in [1, 2] {
            for dims @ (cin, cout, _, _) in [
                (1, 1, 1, 1),
                (3, 5, 4, 7),
                (2, 9, 3, 16),
                (4, 8, 5, 17),
                (3, 16, 2, 33),
                (5, 11, 3, 48),
                (2, 8, 6, 49),
                (3, 3, 4, 64),
                (2, 17, 3, 97),
                (3, 32, 7, 66),
            ] {
                let (x, wt) = image_and_weights(&mut rng, dims);
                let y = run(&x, &pack_weights(&wt, cout, cin, false), dims, s);
                let want = definition(&x, &wt, dims, s);
                assert_eq!(y.len(), want.len());
                for (i, (g, e)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        near(*g as f64, *e, 1e-5),
                        "stride {s} {dims:?} at {i}: {g} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    #[cfg_attr(not(avx512f_host), ignore = "needs a CPU with AVX-512F")]
    fn transposed_weights_give_the_input_gradient() {
        // dx = conv(dy, flipped wᵀ) ⇔ <conv(x, w), dy> = <x, dx> for all x, dy.
        let dims @ (cin, cout, h, w) = (3, 5, 4, 19);
        let (mut rng, x, wt) = inputs(8, dims);
        let dy = random(&mut rng, cout * h * w);
        let lhs: f64 = definition(&x, &wt, dims, 1)
            .iter()
            .zip(&dy)
            .map(|(a, b)| a * *b as f64)
            .sum();
        let dx = run(
            &dy,
            &pack_weights(&wt, cout, cin, true),
            (cout, cin, h, w),
            1,
        );
        let rhs: f64 = dx.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(near(rhs, lhs, 1e-4), "{lhs} vs {rhs}");
    }

    #[test]
    #[cfg_attr(not(avx512f_host), ignore = "needs a CPU with AVX-512F")]
    fn post_is_the_scalar_epilogue_bit_for_bit() {
        let dims @ (cin, cout, h, w) = (3, 11, 5, 21);
        let (mut rng, x, wt) = inputs(12, dims);
        let packed = pack_weights(&wt, cout, cin, false);
        let (scale, shift) = (random(&mut rng, cout), random(&mut rng, cout));
        let residual = random(&mut rng, cout * h * w);
        let plain = run(&x, &packed, dims, 1);
        let plan = Plan::new(cin, h, w, 1).unwrap();
        let mut buf = vec![0f32; plan.len()];
        plan.prepare(&x, &mut buf);
        for relu in [false, true] {
            for res in [None, Some(&residual[..])] {
                let post = Post {
                    scale: Some(&scale),
                    shift: Some(&shift),
                    relu,
                    residual: res,
                };
                let mut y = vec![MaybeUninit::new(0f32); cout * h * w];
                plan.run(&buf, &packed, cout, &mut y, post);
                for (i, (got, v)) in y.iter().zip(&plain).enumerate() {
                    // SAFETY: initialised, then written.
                    let got = unsafe { got.assume_init() };
                    let c = i / (h * w);
                    let mut want = *v * scale[c] + shift[c];
                    if relu {
                        want = want.max(0.0);
                    }
                    if let Some(r) = res {
                        want = (want + r[i]).max(0.0);
                    }
                    assert_eq!(got.to_bits(), want.to_bits(), "relu {relu} at {i}");
                }
            }
        }
    }

    #[test]
    fn plans_only_strides_one_and_two() {
        assert!(Plan::new(3, 4, 4, 3).is_none());
        assert!(Plan::new(3, 0, 4, 1).is_none());
        let p = Plan::new(2, 5, 7, 2).unwrap();
        assert_eq!((p.oh, p.ow, p.out_plane()), (3, 4, 12));
    }
}
