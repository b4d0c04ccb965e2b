//! Max pooling as a candle [`CustomOp1`] with a correct backward pass, and
//! the mean over the height that `resnet-mini` ends with.
//!
//! candle 0.11's built-in `max_pool2d` backward scales the gradient by the
//! window mean and misaligns it on odd input sizes (see
//! `docs/tensor-engine.md`). This op replaces it. candle's `mean(2)` on
//! NCHW reduces along a strided dimension on one thread; [`mean_height`]
//! does the same arithmetic (a sum in row order, times 1/H) over planes in
//! parallel.
//!
//! Guarantees: NCHW f32 input, kernel `k`, stride `s`, floor mode (no
//! padding: `out = (in - k) / s + 1`). The forward takes each window's
//! maximum; the backward routes each output gradient to the argmax of its
//! window, the *first* maximum in row-major order on ties, and sums where
//! overlapping windows pick the same input. Planes run in parallel, each
//! sequentially, so the result never depends on the thread count. Pinned
//! against numpy reference values and finite differences (tests below).

use candle_core::{CpuStorage, Result, Shape, Tensor};
use rayon::prelude::*;

use super::op::{custom_op, f32_slice, Grads, Input, Output};
use std::sync::{Arc, Mutex};

/// Max pooling with kernel `k` and stride `s` (floor mode). The forward
/// pass keeps each window's pick (its in-plane index) for the backward.
#[derive(Debug, Clone)]
pub(crate) struct MaxPool {
    pub k: usize,
    pub s: usize,
    picks: Arc<Mutex<Vec<u32>>>,
}

impl MaxPool {
    fn out_dims(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        if self.k == 0 || self.s == 0 || h < self.k || w < self.k {
            candle_core::bail!(
                "max-pool: kernel {} stride {} does not fit input {h}x{w}",
                self.k,
                self.s
            );
        }
        Ok(((h - self.k) / self.s + 1, (w - self.k) / self.s + 1))
    }

    /// For every output element, the in-plane index of its window's first
    /// maximum, and that maximum. Planes (one image, one channel) run in
    /// parallel; each is sequential, so the result is thread-independent.
    fn argmax(
        &self,
        x: &[f32],
        dims: (usize, usize, usize, usize),
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        let (n, c, h, w) = dims;
        let (ho, wo) = self.out_dims(h, w)?;
        if h * w > u32::MAX as usize {
            candle_core::bail!("max-pool: a {h}x{w} plane is too large");
        }
        let len = n * c * ho * wo;
        let (mut picks, mut vals) = (vec![0u32; len], vec![0f32; len]);
        picks
            .par_chunks_mut(ho * wo)
            .zip(vals.par_chunks_mut(ho * wo))
            .zip(x.par_chunks(h * w))
            .for_each(|((picks, vals), x)| {
                for i in 0..ho {
                    for j in 0..wo {
                        let mut best = (usize::MAX, f32::NEG_INFINITY);
                        for di in 0..self.k {
                            let row = (i * self.s + di) * w + j * self.s;
                            for (dj, &v) in x[row..row + self.k].iter().enumerate() {
                                // Strictly greater: ties keep the first; a NaN
                                // wins once so it propagates like PyTorch.
                                if best.0 == usize::MAX
                                    || v > best.1
                                    || (v.is_nan() && !best.1.is_nan())
                                {
                                    best = (row + dj, v);
                                }
                            }
                        }
                        picks[i * wo + j] = best.0 as u32;
                        vals[i * wo + j] = best.1;
                    }
                }
            });
        Ok((picks, vals))
    }
}

impl MaxPool {
    fn cpu(&self, [(storage, layout)]: [Input; 1]) -> Output {
        let (n, c, h, w) = layout.shape().dims4()?;
        let x = f32_slice(storage, layout, "max-pool: input")?;
        let (ho, wo) = self.out_dims(h, w)?;
        let (picks, y) = self.argmax(x, (n, c, h, w))?;
        *self.picks.lock().expect("max-pool picks") = picks;
        Ok((CpuStorage::F32(y), Shape::from((n, c, ho, wo))))
    }

    fn backward(&self, [arg]: [&Tensor; 1], _: &Tensor, grad_res: &Tensor) -> Grads<1> {
        let dims @ (n, c, h, w) = arg.dims4()?;
        let g = grad_res.flatten_all()?.to_vec1::<f32>()?;
        let (ho, wo) = self.out_dims(h, w)?;
        let mut picks = std::mem::take(&mut *self.picks.lock().expect("max-pool picks"));
        if picks.len() != n * c * ho * wo {
            picks = self.argmax(&arg.flatten_all()?.to_vec1::<f32>()?, dims)?.0;
        }
        let mut dx = vec![0f32; n * c * h * w];
        // Windows never leave their plane, so planes are independent.
        dx.par_chunks_mut(h * w)
            .zip(picks.par_chunks(ho * wo).zip(g.par_chunks(ho * wo)))
            .for_each(|(dx, (picks, g))| {
                for (idx, gv) in picks.iter().zip(g) {
                    dx[*idx as usize] += gv;
                }
            });
        Ok([Some(Tensor::from_vec(dx, arg.shape(), arg.device())?)])
    }
}

custom_op!(CustomOp1 for MaxPool, "foldwise-max-pool", cpu, backward);

/// Max pooling of an NCHW f32 tensor (made contiguous first).
pub(crate) fn max_pool(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool {
        k,
        s,
        picks: Arc::default(),
    })
}

/// [N, C, H, W] → [N, C, W]: each column's mean over the height.
struct MeanHeight;

impl MeanHeight {
    fn cpu(&self, [(s, l)]: [Input; 1]) -> Output {
        let (n, c, h, w) = l.shape().dims4()?;
        let x = f32_slice(s, l, "mean over the height: input")?;
        if h == 0 {
            candle_core::bail!("mean over the height: the input has no rows");
        }
        // As candle's mean: the sum, then times 1/H rounded to f32.
        let scale = (1.0 / h as f64) as f32;
        let mut y = vec![0f32; n * c * w];
        y.par_chunks_mut(w.max(1))
            .zip(x.par_chunks((h * w).max(1)))
            .for_each(|(y, plane)| {
                for row in plane.chunks(w.max(1)) {
                    for (s, v) in y.iter_mut().zip(row) {
                        *s += v;
                    }
                }
                for s in y.iter_mut() {
                    *s *= scale;
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((n, c, w))))
    }

    fn backward(&self, [x]: [&Tensor; 1], _y: &Tensor, dy: &Tensor) -> Grads<1> {
        let (_, _, h, _) = x.dims4()?;
        let scale = 1.0 / h as f64;
        // dx[n, c, i, j] = dy[n, c, j] / H for every row i.
        let dx = (dy.unsqueeze(2)? * scale)?
            .broadcast_as(x.shape())?
            .contiguous()?;
        Ok([Some(dx)])
    }
}

custom_op!(CustomOp1 for MeanHeight, "foldwise-mean-height", cpu, backward);

/// [N, C, H, W] → [N, C, W]: the mean over the height, planes in parallel.
pub(crate) fn mean_height(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(MeanHeight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::{assert_close, reference, values};
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    #[test]
    fn matches_numpy_reference_forward_and_backward() {
        let r = reference();
        for case in r["pool"].as_array().unwrap() {
            let shape = crate::model::reference::usizes(&case["x_shape"]);
            let (k, s) = (
                case["k"].as_u64().unwrap() as usize,
                case["s"].as_u64().unwrap() as usize,
            );
            let x = Var::from_vec(
                crate::model::reference::f32s(&case["x"]),
                shape,
                &Device::Cpu,
            )
            .unwrap();
            let y = max_pool(x.as_tensor(), k, s).unwrap();
            assert_eq!(
                y.dims(),
                crate::model::reference::usizes(&case["y_shape"]).as_slice()
            );
            assert_close(&y, &case["y"], "pool y");
            let dy = Tensor::from_vec(
                crate::model::reference::f32s(&case["dy"]),
                y.shape(),
                &Device::Cpu,
            )
            .unwrap();
            let grads = (y * dy).unwrap().sum_all().unwrap().backward().unwrap();
            assert_close(grads.get(&x).unwrap(), &case["dx"], "pool dx");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // Values at least 0.1 apart (no ties) so the function is
        // differentiable at x and a step of 0.01 never changes an argmax.
        let (n, c, h, w) = (1, 2, 7, 5);
        let mut rng = crate::rng::Rng::new(3);
        let mut xs: Vec<f32> = (0..n * c * h * w).map(|i| i as f32 * 0.1 - 3.5).collect();
        rng.shuffle(&mut xs);
        let wts: Vec<f32> = (0..n * c * 3 * 2)
            .map(|_| rng.range_f32(-1.0, 1.0))
            .collect();
        let dev = Device::Cpu;
        let f = |v: &[f32]| -> f64 {
            let t = Tensor::from_vec(v.to_vec(), (n, c, h, w), &dev).unwrap();
            let y = max_pool(&t, 2, 2)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            y.iter()
                .zip(&wts)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let x = Var::from_vec(xs.clone(), (n, c, h, w), &dev).unwrap();
        let y = max_pool(x.as_tensor(), 2, 2).unwrap();
        let wt = Tensor::from_vec(wts.clone(), y.shape(), &dev).unwrap();
        let g = (y * wt).unwrap().sum_all().unwrap().backward().unwrap();
        let g = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let eps = 1e-2f32;
        for i in 0..xs.len() {
            let mut p = xs.clone();
            p[i] += eps;
            let mut m = xs.clone();
            m[i] -= eps;
            let fd = (f(&p) - f(&m)) / (2.0 * eps as f64);
            assert!(
                (fd - g[i] as f64).abs() < 1e-3,
                "index {i}: fd {fd} vs analytic {}",
                g[i]
            );
        }
        // Odd sizes: the last row (7 = 3*2+1) and column (5 = 2*2+1) get no gradient.
        for ch in 0..c {
            for j in 0..w {
                assert_eq!(g[ch * h * w + 6 * w + j], 0.0);
            }
        }
    }

    #[test]
    fn mean_height_equals_candles_mean_and_its_gradient() {
        let mut rng = Rng::new(11);
        for dims in [(2, 3, 5, 7), (1, 1, 1, 4), (3, 2, 8, 16)] {
            let x = crate::model::reference::random(&mut rng, &[dims.0, dims.1, dims.2, dims.3]);
            let dy = crate::model::reference::random(&mut rng, &[dims.0, dims.1, dims.3]);
            let ours = mean_height(x.as_tensor()).unwrap();
            let theirs = x.as_tensor().mean(2).unwrap();
            assert_eq!(values(&ours), values(&theirs), "{dims:?}");
            let grad = |t: &Tensor| {
                let g = (t * dy.as_tensor())
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                values(g.get(x.as_tensor()).unwrap())
            };
            assert_eq!(grad(&ours), grad(&theirs), "{dims:?}");
        }
    }

    #[test]
    fn rejects_a_window_larger_than_the_input() {
        let t = Tensor::zeros((1, 1, 1, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool(&t, 2, 2).is_err());
    }
}
