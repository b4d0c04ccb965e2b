//! Optimizers, run on the host in f64 arithmetic per element (f32 state), so
//! a step is sequential and independent of the thread count.
//!
//! - Adam (Kingma & Ba, 2015; betas 0.9/0.999, eps 1e-8, bias-corrected) with
//!   *decoupled* weight decay as in AdamW (Loshchilov & Hutter, 2019) and
//!   candle-nn's `AdamW`: θ ← θ - lr·wd·θ before the Adam update;
//!   `weight_decay = 0` is plain Adam.
//! - SGD with momentum and optional Nesterov, exactly PyTorch's `torch.optim.SGD`
//!   (candle's SGD has neither): g ← g + wd·θ; b ← μ·b + g (b = g on the first
//!   step); g ← g + μ·b if Nesterov else b; θ ← θ - lr·g.
//!
//! The state (step count, first/second moments or momentum buffers) is
//! saved with the model, so a resumed run continues exactly.

use candle_core::{backprop::GradStore, Result, Tensor, Var};

use super::Optimizer;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// Per-parameter state, in the order of the network's parameters.
pub(crate) struct OptState {
    pub kind: Optimizer,
    pub step: u64,
    /// Adam: first moment; SGD: momentum buffer.
    pub m: Vec<Vec<f32>>,
    /// Adam: second moment; SGD: unused (empty vectors).
    pub v: Vec<Vec<f32>>,
}

impl OptState {
    pub fn new(kind: Optimizer, sizes: &[usize]) -> OptState {
        let v_sizes = |n: usize| match kind {
            Optimizer::Adam { .. } => n,
            Optimizer::Sgd { .. } => 0,
        };
        OptState {
            kind,
            step: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; v_sizes(n)]).collect(),
        }
    }

    /// One update of every parameter that received a gradient.
    pub fn step(&mut self, params: &[(String, Var)], grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as f64;
        for (i, (_, p)) in params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let g = g.flatten_all()?.to_vec1::<f32>()?;
            let mut w = p.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            match self.kind {
                Optimizer::Adam { weight_decay } => {
                    let (m, v) = (&mut self.m[i], &mut self.v[i]);
                    let c1 = 1.0 - BETA1.powf(t);
                    let c2 = 1.0 - BETA2.powf(t);
                    for j in 0..w.len() {
                        let gj = g[j] as f64;
                        let mj = BETA1 * m[j] as f64 + (1.0 - BETA1) * gj;
                        let vj = BETA2 * v[j] as f64 + (1.0 - BETA2) * gj * gj;
                        m[j] = mj as f32;
                        v[j] = vj as f32;
                        let mut wj = w[j] as f64;
                        wj -= lr * weight_decay * wj;
                        wj -= lr * (mj / c1) / ((vj / c2).sqrt() + ADAM_EPS);
                        w[j] = wj as f32;
                    }
                }
                Optimizer::Sgd {
                    momentum,
                    nesterov,
                    weight_decay,
                } => {
                    let b = &mut self.m[i];
                    for j in 0..w.len() {
                        let wj = w[j] as f64;
                        let mut gj = g[j] as f64 + weight_decay * wj;
                        if momentum != 0.0 {
                            let bj = if self.step == 1 {
                                gj
                            } else {
                                momentum * b[j] as f64 + gj
                            };
                            b[j] = bj as f32;
                            gj = if nesterov { gj + momentum * bj } else { bj };
                        }
                        w[j] = (wj - lr * gj) as f32;
                    }
                }
            }
            p.set(&Tensor::from_vec(w, p.shape(), p.device())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Minimises f(w) = w^2 / 2 (gradient w) from w = 1 by hand-computed steps.
    fn run(kind: Optimizer, steps: usize, lr: f64) -> Vec<f32> {
        let p = Var::from_vec(vec![1.0f32], 1, &Device::Cpu).unwrap();
        let params = vec![("w".to_string(), p.clone())];
        let mut st = OptState::new(kind, &[1]);
        let mut out = Vec::new();
        for _ in 0..steps {
            let loss = (p.as_tensor().sqr().unwrap() * 0.5)
                .unwrap()
                .sum_all()
                .unwrap();
            st.step(&params, &loss.backward().unwrap(), lr).unwrap();
            out.push(p.as_tensor().to_vec1::<f32>().unwrap()[0]);
        }
        out
    }

    fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> Optimizer {
        Optimizer::Sgd {
            momentum,
            nesterov,
            weight_decay,
        }
    }

    /// Asserts each step's weight is within 1e-6 of the expected one.
    fn assert_steps(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn sgd_momentum_and_nesterov_match_pytorch_formulas() {
        // Momentum 0.9, lr 0.1: b1 = 1, w1 = 0.9; g2 = 0.9, b2 = 1.8, w2 = 0.72.
        assert_steps(&run(sgd(0.9, false, 0.0), 2, 0.1), &[0.9, 0.72]);
        // Nesterov: step 1 g = 1 + 0.9*1 = 1.9, w1 = 0.81; g2 = 0.81,
        // b2 = 0.9 + 0.81 = 1.71, g = 0.81 + 0.9*1.71 = 2.349, w2 = 0.5751.
        assert_steps(&run(sgd(0.9, true, 0.0), 2, 0.1), &[0.81, 0.5751]);
        // Weight decay 1 doubles the gradient: w1 = 1 - 0.1*2 = 0.8.
        assert_steps(&run(sgd(0.0, false, 1.0), 1, 0.1), &[0.8]);
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // Bias-corrected first step is lr * g/|g| (up to eps).
        assert_steps(
            &run(Optimizer::Adam { weight_decay: 0.0 }, 1, 0.01),
            &[0.99],
        );
        // Decoupled decay 0.5: w = 1 - 0.01*0.5 = 0.995, then - 0.01.
        assert_steps(
            &run(Optimizer::Adam { weight_decay: 0.5 }, 1, 0.01),
            &[0.985],
        );
        let many = run(Optimizer::Adam { weight_decay: 0.0 }, 300, 0.05);
        assert!(many[299].abs() < 0.05, "{:?}", &many[290..]);
    }
}
