//! Seeded weight initialisation, drawn only from the project's [`Rng`].
//!
//! candle's CPU generator cannot be seeded, so every initial value is drawn
//! here on the host. Guarantee: the same seed and architecture give
//! byte-identical initial weights, whatever the thread count. Scheme: like
//! PyTorch's default for conv and linear layers, weights and biases are
//! U(-b, b) with b = 1/sqrt(fan_in) (fan_in = in_channels * k * k, or
//! in_features); BatchNorm gamma = 1, beta = 0.

use crate::rng::Rng;

/// The stream of [`Rng::derive`] used for initial weights.
pub(crate) const INIT_STREAM: u64 = 0x1A17;
/// The stream of [`Rng::derive`] used for dropout masks.
pub(crate) const DROPOUT_STREAM: u64 = 0xD209;

/// `n` values drawn from U(-b, b), b = 1/sqrt(fan_in).
pub(crate) fn kaiming_uniform(rng: &mut Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let b = 1.0 / (fan_in as f32).sqrt();
    (0..n).map(|_| rng.range_f32(-b, b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_and_determinism() {
        let a = kaiming_uniform(&mut Rng::new(5), 1000, 16);
        let b = kaiming_uniform(&mut Rng::new(5), 1000, 16);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| v.abs() <= 0.25));
        assert!(a.iter().any(|v| v.abs() > 0.2), "uses the whole range");
        assert_ne!(a, kaiming_uniform(&mut Rng::new(6), 1000, 16));
    }
}
