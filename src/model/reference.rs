//! Test-only helpers of the model's tests: random variables, flattened
//! values, and the numpy reference values in
//! `tests/fixtures/model/reference.json` (regenerate with `reference.py`
//! beside it).

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use serde_json::Value;

use crate::model::fused::batch_norm_train;
use crate::rng::Rng;

/// A variable of `shape` with values uniform in [-1, 1) from `rng`.
pub(crate) fn random(rng: &mut Rng, shape: &[usize]) -> Var {
    let len = shape.iter().product();
    let v: Vec<f32> = (0..len).map(|_| rng.f32() * 2.0 - 1.0).collect();
    Var::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Every value of `t`, flattened.
pub(crate) fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

pub(crate) fn reference() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/model/reference.json")).unwrap()
}

pub(crate) fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub(crate) fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// Asserts every element is within 1e-5 relative (with a 1e-5 absolute
/// floor for values near zero) of the reference.
pub(crate) fn assert_close(t: &Tensor, want: &Value, what: &str) {
    let got = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = want.as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let w = w.as_f64().unwrap();
        let tol = 1e-5 * w.abs().max(1.0);
        assert!(
            (*g as f64 - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Checks analytic gradients of `sum(f(vars) * r)` against central
/// differences for every element of every variable.
pub(crate) fn check_gradients(
    vars: &[&Var],
    f: &dyn Fn(&[Tensor]) -> Tensor,
    rng: &mut Rng,
    what: &str,
) {
    let inputs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&inputs);
    let r = random(rng, y.dims());
    let loss = |inputs: &[Tensor]| -> f64 {
        values(&f(inputs))
            .iter()
            .zip(values(r.as_tensor()))
            .map(|(a, b)| *a as f64 * b as f64)
            .sum()
    };
    let grads = weighted_sum_grads(&y, &r);
    for (vi, var) in vars.iter().enumerate() {
        let analytic = values(grads.get(var).unwrap());
        let base = values(var.as_tensor());
        for (i, a) in analytic.iter().enumerate() {
            let eps = 1e-3f32;
            let at = |d: f32| {
                let mut inputs = inputs.clone();
                let mut v = base.clone();
                v[i] += d;
                inputs[vi] = Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap();
                loss(&inputs)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            assert!(
                (numeric - *a as f64).abs() < 5e-3 * (1.0 + numeric.abs()),
                "{what}: input {vi} [{i}]: analytic {a} vs numeric {numeric}"
            );
        }
    }
}

/// The bit patterns of every value of `t` (for bit-identity checks, where
/// -0 and 0 differ and NaN equals itself).
pub(crate) fn bits(t: &Tensor) -> Vec<u32> {
    values(t).iter().map(|v| v.to_bits()).collect()
}

/// The gradients of `sum(y * r)`.
pub(crate) fn weighted_sum_grads(y: &Tensor, r: &Var) -> GradStore {
    (y * r.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

/// The bits of an output, its batch statistics, and the bits of the
/// gradients of each input: what a fused op and the separate layers it
/// replaces must agree on.
pub(crate) type Run = (Vec<u32>, Vec<Vec<f32>>, Vec<Vec<u32>>);

/// The [`Run`] of output `y` with `stats`, the gradients those of
/// `sum(y * r)` with respect to `vars`.
pub(crate) fn run_of(y: &Tensor, stats: Vec<Vec<f32>>, r: &Var, vars: &[&Var]) -> Run {
    let g = weighted_sum_grads(y, r);
    let grads = vars.iter().map(|v| bits(g.get(v).unwrap())).collect();
    (bits(y), stats, grads)
}

/// `f` run inside a rayon pool of `threads` threads.
pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// [`random`] variables of each shape, drawn in order.
pub(crate) fn randoms<const N: usize>(rng: &mut Rng, shapes: [&[usize]; N]) -> [Var; N] {
    shapes.map(|s| random(rng, s))
}

/// [`batch_norm_train`] of variables `[x, gamma, beta]`, eps 1e-5 (+ ReLU
/// when `relu`): the output, batch mean and unbiased variance.
pub(crate) fn bn_train([x, gamma, beta]: [&Var; 3], relu: bool) -> (Tensor, Vec<f32>, Vec<f32>) {
    batch_norm_train(
        x.as_tensor(),
        gamma.as_tensor(),
        beta.as_tensor(),
        1e-5,
        relu,
    )
    .unwrap()
}
