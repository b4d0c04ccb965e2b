//! Model input from images of any size and colour mode.
//!
//! The path from an image file to the f32 tensor a model reads:
//!
//! 1. [`decode`]: any PNG or JPEG the `image` crate reads (RGB, RGBA, grey,
//!    grey+alpha, 8- or 16-bit, palette) becomes packed RGB u8 (HWC).
//!    Transparent pixels are composited over **white** (plates are printed
//!    on a light background; dropping alpha would expose whatever colour
//!    the encoder left under transparent pixels, often black).
//! 2. [`resize`]: our own separable resampler — bilinear (triangle filter)
//!    when enlarging, and the same triangle filter widened by the shrink
//!    factor (area-averaging, antialiased, as PIL's `BILINEAR`) when
//!    shrinking. Plain sequential f32 arithmetic: the bytes are the same on
//!    every machine and thread count.
//! 3. [`cache`]: a whole data artifact decoded once per (dataset, size) into
//!    one packed file of u8 HWC pixels at the *pre-augmentation* size (e.g.
//!    68x136 for a 64x128 model), so training never decodes PNGs per epoch.
//! 4. [`augment`]: from the decoded u8 image to the normalised f32 CHW model
//!    input, with random crop, zoom, rotation (one combined affine transform,
//!    sampled once, bilinear, edge replicate) and colour jitter; or the clean
//!    centre crop when no generator is given.
//! 5. [`batch`]: N images into one N x C x H x W buffer, in parallel, each
//!    image with its own generator derived from (seed, stream, epoch, item
//!    index) — the result does not depend on thread count or on which other
//!    items share the batch.
//!
//! Guarantees: every function here is deterministic for its inputs (all
//! randomness comes from [`crate::rng::Rng`]); every error about a file
//! names the file.

use rayon::prelude::*;

use crate::rng::Rng;

pub mod augment;
pub mod cache;
pub mod decode;
pub mod resize;

/// The input normalisation is part of the train artifact's format.
pub use crate::artifact::model::Norm;
pub use augment::{to_input, Augment};
pub use cache::{decode_set, shared_set, DecodedSet};
pub use decode::{decode_rgb, RgbImage};
pub use resize::resize_rgb;

/// Channels of every image here (RGB).
pub const CHANNELS: usize = 3;

/// Writes a u8 HWC RGB image as normalised f32 CHW into `out`
/// (`out.len() == 3 * h * w`).
pub fn to_chw(img: &[u8], h: usize, w: usize, norm: &Norm, out: &mut [f32]) {
    assert_eq!(img.len(), h * w * CHANNELS, "to_chw: image size");
    assert_eq!(out.len(), h * w * CHANNELS, "to_chw: output size");
    let aff = norm.affine();
    let plane = h * w;
    for (c, &(s, b)) in aff.iter().enumerate() {
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (d, px) in dst.iter_mut().zip(img.chunks_exact(CHANNELS)) {
            *d = px[c] as f32 * s + b;
        }
    }
}

/// A batch of model inputs, N x C x H x W, for the items `indices` of
/// `set`, filled in parallel. Item `i` is augmented with its own generator
/// `Rng::derive(seed, stream, epoch * 1_000_003 + i)`, so each image's
/// input depends only on (seed, stream, epoch, i) — not on the thread
/// count, nor on the other items of the batch. With [`Augment::none`] the
/// result is the clean centre crop.
#[allow(clippy::too_many_arguments)]
pub fn batch(
    set: &DecodedSet,
    indices: &[usize],
    aug: &Augment,
    seed: u64,
    stream: u64,
    epoch: u64,
    h: u32,
    w: u32,
    norm: &Norm,
) -> Vec<f32> {
    let per = CHANNELS * h as usize * w as usize;
    let mut out = vec![0.0f32; indices.len() * per];
    out.par_chunks_mut(per.max(1))
        .zip(indices.par_iter())
        .for_each(|(dst, &i)| {
            let mut rng = Rng::derive(
                seed,
                stream,
                epoch.wrapping_mul(1_000_003).wrapping_add(i as u64),
            );
            to_input(
                set.image(i),
                set.height(),
                set.width(),
                aug,
                Some(&mut rng),
                h,
                w,
                norm,
                dst,
            );
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_norm_maps_to_minus_one_one() {
        let img = [0u8, 255, 51];
        let mut out = [0.0f32; 3];
        to_chw(&img, 1, 1, &Norm::default(), &mut out);
        assert_eq!(out[0], -1.0);
        assert!((out[1] - 1.0).abs() < 1e-6);
        assert!((out[2] - (0.2 - 0.5) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn custom_norm_and_chw_layout() {
        let norm = Norm {
            mean: [0.0, 0.5, 1.0],
            std: [1.0, 0.25, 0.5],
        };
        // 1 x 2 image: pixels (255, 255, 255) and (0, 0, 0).
        let img = [255u8, 255, 255, 0, 0, 0];
        let mut out = [0.0f32; 6];
        to_chw(&img, 1, 2, &norm, &mut out);
        let want = [1.0, 0.0, 2.0, -2.0, 0.0, -2.0];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{out:?}");
        }
    }

    fn test_set(n: usize, h: u32, w: u32) -> DecodedSet {
        let mut px = Vec::new();
        for i in 0..n {
            for y in 0..h {
                for x in 0..w {
                    let v = ((x * 7 + y * 3) as usize + i * 31) % 256;
                    px.extend([v as u8, (255 - v) as u8, (v / 2) as u8]);
                }
            }
        }
        DecodedSet::from_pixels(h, w, px).unwrap()
    }

    #[test]
    fn batch_is_independent_of_threads_and_composition() {
        let set = test_set(6, 20, 36);
        let aug = Augment::default();
        let norm = Norm::default();
        let run = |threads: usize, idx: &[usize]| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| batch(&set, idx, &aug, 9, 2, 3, 16, 32, &norm))
        };
        let a = run(1, &[0, 1, 2, 3, 4, 5]);
        let b = run(2, &[0, 1, 2, 3, 4, 5]);
        assert_eq!(a, b);
        let per = 3 * 16 * 32;
        let c = run(2, &[4, 2]);
        assert_eq!(&c[..per], &a[4 * per..5 * per]);
        assert_eq!(&c[per..], &a[2 * per..3 * per]);
        // Another epoch gives other augmentations.
        let d = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| batch(&set, &[4], &aug, 9, 2, 4, 16, 32, &norm));
        assert_ne!(&d[..], &a[4 * per..5 * per]);
    }

    #[test]
    fn batch_without_augmentation_is_the_clean_input() {
        let set = test_set(2, 20, 36);
        let norm = Norm::default();
        let got = batch(&set, &[1], &Augment::none(), 1, 0, 0, 16, 32, &norm);
        let mut want = vec![0.0; got.len()];
        to_input(
            set.image(1),
            20,
            36,
            &Augment::none(),
            None,
            16,
            32,
            &norm,
            &mut want,
        );
        assert_eq!(got, want);
    }

    #[test]
    #[cfg_attr(
        not(any(full_suite, shared_data)),
        ignore = "needs ../shared/data/real-samples"
    )]
    fn real_samples_decode_resize_and_are_finite() {
        let dir = crate::testutil::shared_data(&["real-samples"]).join("real-samples");
        let dir = dir.as_path();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "jpg"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 17, "{files:?}");
        for f in &files {
            let img = decode_rgb(f).unwrap();
            let px = resize_rgb(&img.pixels, img.height, img.width, 64, 128);
            let mut x = vec![0.0; px.len()];
            to_chw(&px, 64, 128, &Norm::default(), &mut x);
            assert_eq!(x.len(), 3 * 64 * 128);
            assert!(
                x.iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)),
                "{f:?}"
            );
        }
    }
}
