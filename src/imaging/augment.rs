//! Augmentation: from a decoded u8 HWC image to the normalised f32 CHW
//! model input, optionally with random geometry and colour.
//!
//! Geometry is one combined affine map from output to source pixels —
//! crop offset, zoom and rotation about the crop window's centre — sampled
//! once with bilinear interpolation; source pixels outside the image are
//! the nearest edge pixel (edge replicate). Nothing is resampled twice.
//!
//! Colour jitter (torchvision's definitions, applied in this order):
//! brightness `v * b`, contrast `(v - m) * c + m` with `m` the mean grey
//! level of the image, saturation `g + (v - g) * s` with `g` the pixel's
//! grey level (grey = 0.299 R + 0.587 G + 0.114 B). The three are linear,
//! so they are folded into one per-pixel map with a single clamp to
//! [0, 255] at the end (torchvision clamps after each step; results differ
//! only where an intermediate step saturates).
//!
//! Each call draws exactly seven uniforms from the generator (crop y, crop
//! x, zoom, angle, brightness, contrast, saturation), whatever is enabled,
//! so switching one augmentation on or off leaves the others' draws alone.
//!
//! Guarantees: the output depends only on the image, the parameters and
//! the generator's state; without a generator (or with [`Augment::none`])
//! the output is the clean centre crop — bit for bit the pixels of the
//! centred `out_h` x `out_w` window (offset `(h_src - out_h) / 2`, rounded
//! down) when the source is at least that large.

use serde::{Deserialize, Serialize};

use super::{Norm, CHANNELS};
use crate::rng::Rng;

/// Training augmentation settings. Each range is symmetric: a value `x`
/// means a factor (or angle) drawn uniformly from `[1 - x, 1 + x]`
/// (`[-x, x]` degrees for the rotation). Missing fields take the
/// [`Default`] values (the reference training recipe).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Augment {
    /// Random crop position (integer offset inside the source); when off,
    /// the centre crop.
    pub crop: bool,
    /// Zoom factor range `1 ± scale` (> 1 enlarges the content).
    pub scale: f32,
    /// Rotation range `± rotation_deg` degrees.
    pub rotation_deg: f32,
    /// Brightness factor range `1 ± brightness`.
    pub brightness: f32,
    /// Contrast factor range `1 ± contrast`.
    pub contrast: f32,
    /// Saturation factor range `1 ± saturation`.
    pub saturation: f32,
}

impl Default for Augment {
    /// Random crop, zoom 0.9-1.1, ±5°, brightness/contrast/saturation ±0.2.
    fn default() -> Self {
        Augment {
            crop: true,
            scale: 0.1,
            rotation_deg: 5.0,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
        }
    }
}

impl Augment {
    /// No augmentation at all: centre crop, no zoom, rotation or jitter.
    pub fn none() -> Augment {
        Augment {
            crop: false,
            scale: 0.0,
            rotation_deg: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
        }
    }
}

/// The random choices for one image.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Draw {
    /// Top-left of the crop window in the source (may be fractional only
    /// when the source is smaller than the output).
    oy: f32,
    ox: f32,
    zoom: f32,
    angle_rad: f32,
    brightness: f32,
    contrast: f32,
    saturation: f32,
}

fn draw(aug: &Augment, rng: Option<&mut Rng>, h: u32, w: u32, oh: u32, ow: u32) -> Draw {
    // Without a generator every uniform is 0.5: the middle of each range,
    // i.e. factor 1 and angle 0; the crop is then the centre crop.
    let random_crop = aug.crop && rng.is_some();
    let u: [f32; 7] = match rng {
        Some(r) => std::array::from_fn(|_| r.f32()),
        None => [0.5; 7],
    };
    let offset = |src: u32, out: u32, u: f32| -> f32 {
        if src < out {
            (src as f32 - out as f32) / 2.0
        } else if random_crop {
            let range = src - out;
            ((u * (range + 1) as f32) as u32).min(range) as f32
        } else {
            ((src - out) / 2) as f32
        }
    };
    // In [-1, 1); exactly 0 for u = 0.5.
    let sym = |i: usize| u[i] * 2.0 - 1.0;
    let factor = |x: f32, i: usize| (1.0 + x * sym(i)).max(0.0);
    Draw {
        oy: offset(h, oh, u[0]),
        ox: offset(w, ow, u[1]),
        zoom: factor(aug.scale, 2).max(1e-3),
        angle_rad: (aug.rotation_deg * sym(3)).to_radians(),
        brightness: factor(aug.brightness, 4),
        contrast: factor(aug.contrast, 5),
        saturation: factor(aug.saturation, 6),
    }
}

/// Writes the model input for one decoded image into `out`
/// (`out.len() == 3 * out_h * out_w`, CHW, normalised with `norm`).
///
/// `img` is packed RGB u8 HWC of `h_src` x `w_src`, normally a little
/// larger than the output (e.g. 68x136 for a 64x128 input). With `rng` =
/// `None` the result is clean: centre crop, no augmentation (validation,
/// TTA round 0). Panics if a buffer has the wrong size.
#[allow(clippy::too_many_arguments)]
pub fn to_input(
    img: &[u8],
    h_src: u32,
    w_src: u32,
    aug: &Augment,
    rng: Option<&mut Rng>,
    out_h: u32,
    out_w: u32,
    norm: &Norm,
    out: &mut [f32],
) {
    let (h, w) = (h_src as usize, w_src as usize);
    let (oh, ow) = (out_h as usize, out_w as usize);
    assert!(h > 0 && w > 0, "to_input: empty source");
    assert_eq!(img.len(), h * w * CHANNELS, "to_input: image size");
    assert_eq!(out.len(), oh * ow * CHANNELS, "to_input: output size");
    let d = draw(aug, rng, h_src, w_src, out_h, out_w);
    let plane = oh * ow;

    // Output pixel centre p_o = (x + 0.5, y + 0.5) maps to the source point
    // c + M (p_o - c_o), with c_o the output centre, c the crop window's
    // centre in the source and M = R(angle) / zoom. In pixel-index
    // coordinates (centre - 0.5): u = m00 x + m01 y + tx, v = m10 x + m11 y + ty.
    let (sin, cos) = d.angle_rad.sin_cos();
    let (m00, m01, m10, m11) = (cos / d.zoom, -sin / d.zoom, sin / d.zoom, cos / d.zoom);
    let (cox, coy) = (ow as f32 / 2.0, oh as f32 / 2.0);
    let (cx, cy) = (d.ox + cox, d.oy + coy);
    let tx = cx + m00 * (0.5 - cox) + m01 * (0.5 - coy) - 0.5;
    let ty = cy + m10 * (0.5 - cox) + m11 * (0.5 - coy) - 0.5;

    let (r_out, rest) = out.split_at_mut(plane);
    let (g_out, b_out) = rest.split_at_mut(plane);
    let (wmax, hmax) = (w as i32 - 1, h as i32 - 1);
    let px = |yy: i32, xx: i32| -> usize {
        (yy.clamp(0, hmax) as usize * w + xx.clamp(0, wmax) as usize) * CHANNELS
    };
    let mut grey_sum = 0.0f64;
    for y in 0..oh {
        let (yf, row) = (y as f32, y * ow);
        let mut grey_row = 0.0f32;
        for x in 0..ow {
            let xf = x as f32;
            let u = m00 * xf + m01 * yf + tx;
            let v = m10 * xf + m11 * yf + ty;
            let (u0, v0) = (u.floor(), v.floor());
            let (fx, fy) = (u - u0, v - v0);
            let (xi, yi) = (u0 as i32, v0 as i32);
            let (p00, p01) = (px(yi, xi), px(yi, xi + 1));
            let (p10, p11) = (px(yi + 1, xi), px(yi + 1, xi + 1));
            let mut s = [0.0f32; 3];
            for (c, sc) in s.iter_mut().enumerate() {
                let top = img[p00 + c] as f32 * (1.0 - fx) + img[p01 + c] as f32 * fx;
                let bot = img[p10 + c] as f32 * (1.0 - fx) + img[p11 + c] as f32 * fx;
                *sc = top * (1.0 - fy) + bot * fy;
            }
            r_out[row + x] = s[0];
            g_out[row + x] = s[1];
            b_out[row + x] = s[2];
            grey_row += grey(s[0], s[1], s[2]);
        }
        grey_sum += grey_row as f64;
    }

    // Colour jitter folded into v' = a v + b grey(v) + k, then normalise.
    let aff = norm.affine();
    let jitter = (d.brightness, d.contrast, d.saturation) != (1.0, 1.0, 1.0);
    if !jitter {
        for (c, ch) in [r_out, g_out, b_out].into_iter().enumerate() {
            let (s, b) = aff[c];
            ch.iter_mut().for_each(|v| *v = *v * s + b);
        }
        return;
    }
    let mean_grey = (grey_sum / plane.max(1) as f64) as f32;
    let (bf, cf, sf) = (d.brightness, d.contrast, d.saturation);
    let a = sf * cf * bf;
    let bg = (1.0 - sf) * cf * bf;
    let k = (1.0 - cf) * bf * mean_grey;
    for i in 0..plane {
        let (r, g, b) = (r_out[i], g_out[i], b_out[i]);
        let gr = bg * grey(r, g, b) + k;
        r_out[i] = (a * r + gr).clamp(0.0, 255.0) * aff[0].0 + aff[0].1;
        g_out[i] = (a * g + gr).clamp(0.0, 255.0) * aff[1].0 + aff[1].1;
        b_out[i] = (a * b + gr).clamp(0.0, 255.0) * aff[2].0 + aff[2].1;
    }
}

#[inline]
fn grey(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::to_chw;

    const H: u32 = 68;
    const W: u32 = 136;
    const OH: u32 = 64;
    const OW: u32 = 128;

    /// A smooth, colourful test image.
    fn smooth() -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..H {
            for x in 0..W {
                let r = 128.0 + 100.0 * ((x as f32) / 20.0).sin();
                let g = 128.0 + 100.0 * ((y as f32) / 15.0).cos();
                let b = (x + y) as f32 * 255.0 / (H + W) as f32;
                v.extend([r as u8, g as u8, b as u8]);
            }
        }
        v
    }

    fn run(img: &[u8], aug: &Augment, rng: Option<&mut Rng>) -> Vec<f32> {
        let mut out = vec![0.0; (3 * OH * OW) as usize];
        to_input(img, H, W, aug, rng, OH, OW, &Norm::default(), &mut out);
        out
    }

    fn crop(img: &[u8], oy: usize, ox: usize) -> Vec<f32> {
        let mut px = Vec::new();
        for y in oy..oy + OH as usize {
            let s = (y * W as usize + ox) * 3;
            px.extend_from_slice(&img[s..s + OW as usize * 3]);
        }
        let mut out = vec![0.0; px.len()];
        to_chw(&px, OH as usize, OW as usize, &Norm::default(), &mut out);
        out
    }

    fn mean(v: &[f32]) -> f32 {
        v.iter().sum::<f32>() / v.len() as f32
    }

    #[test]
    fn clean_path_is_the_exact_centre_crop() {
        let img = smooth();
        assert_eq!(run(&img, &Augment::default(), None), crop(&img, 2, 4));
    }

    #[test]
    fn none_with_a_generator_equals_the_clean_path() {
        let img = smooth();
        let mut rng = Rng::new(5);
        let clean = run(&img, &Augment::none(), None);
        for _ in 0..3 {
            assert_eq!(run(&img, &Augment::none(), Some(&mut rng)), clean);
        }
    }

    #[test]
    fn random_crop_alone_is_an_exact_integer_crop() {
        let img = smooth();
        let aug = Augment {
            crop: true,
            ..Augment::none()
        };
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let got = run(&img, &aug, Some(&mut Rng::new(seed)));
            let hit = (0..=4)
                .flat_map(|oy| (0..=8).map(move |ox| (oy, ox)))
                .find(|&(oy, ox)| crop(&img, oy, ox) == got)
                .expect("an exact crop");
            seen.insert(hit);
        }
        assert!(seen.len() > 10, "{seen:?}");
    }

    #[test]
    fn rotation_keeps_the_mean() {
        let img = smooth();
        let clean = run(&img, &Augment::none(), None);
        let zero = Augment {
            rotation_deg: 0.0,
            ..Augment::none()
        };
        assert_eq!(run(&img, &zero, Some(&mut Rng::new(1))), clean);
        let small = Augment {
            rotation_deg: 5.0,
            ..Augment::none()
        };
        for seed in 0..5 {
            let got = run(&img, &small, Some(&mut Rng::new(seed)));
            assert_ne!(got, clean);
            assert!((mean(&got) - mean(&clean)).abs() < 0.03, "seed {seed}");
            assert!(got.iter().all(|v| (-1.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn zoom_and_rotation_keep_a_constant_image_constant() {
        let img: Vec<u8> = (0..H * W).flat_map(|_| [30u8, 60, 90]).collect();
        let aug = Augment {
            crop: true,
            scale: 0.2,
            rotation_deg: 10.0,
            ..Augment::none()
        };
        let got = run(&img, &aug, Some(&mut Rng::new(3)));
        assert_eq!(got, run(&img, &Augment::none(), None));
    }

    #[test]
    fn colour_jitter_stays_in_bounds() {
        let grey_img: Vec<u8> = (0..H * W).flat_map(|_| [100u8; 3]).collect();
        let plane = (OH * OW) as usize;
        // Brightness: 100 * [0.7, 1.3] → [70, 130].
        let bright = Augment {
            brightness: 0.3,
            ..Augment::none()
        };
        let (mut lo, mut hi) = (f32::MAX, f32::MIN);
        for seed in 0..50 {
            let got = run(&grey_img, &bright, Some(&mut Rng::new(seed)));
            let v = (got[0] + 1.0) * 127.5;
            assert!(got.iter().all(|&x| (x - got[0]).abs() < 1e-6));
            assert!((70.0 - 1e-3..=130.0 + 1e-3).contains(&v), "{v}");
            (lo, hi) = (lo.min(v), hi.max(v));
        }
        assert!(lo < 80.0 && hi > 120.0, "{lo} {hi}");
        // Contrast and saturation leave a uniform grey image alone.
        let cs = Augment {
            contrast: 0.5,
            saturation: 0.5,
            ..Augment::none()
        };
        let clean = run(&grey_img, &Augment::none(), None);
        for seed in 0..10 {
            let got = run(&grey_img, &cs, Some(&mut Rng::new(seed)));
            assert!(got.iter().zip(&clean).all(|(a, b)| (a - b).abs() < 1e-4));
        }
        // Strong jitter on a colourful image stays inside [-1, 1].
        let strong = Augment {
            brightness: 0.9,
            contrast: 0.9,
            saturation: 0.9,
            ..Augment::none()
        };
        let img = smooth();
        for seed in 0..20 {
            let got = run(&img, &strong, Some(&mut Rng::new(seed)));
            assert!(got
                .iter()
                .all(|v| v.is_finite() && (-1.0..=1.0).contains(v)));
            assert_eq!(got.len(), 3 * plane);
        }
    }

    #[test]
    fn same_seed_same_output() {
        let img = smooth();
        let aug = Augment::default();
        let a = run(&img, &aug, Some(&mut Rng::derive(7, 1, 2)));
        let b = run(&img, &aug, Some(&mut Rng::derive(7, 1, 2)));
        let c = run(&img, &aug, Some(&mut Rng::derive(7, 1, 3)));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn smaller_source_is_centred_with_edges_replicated() {
        // 2x2 source into a 4x4 output: the centre 2x2 holds the source.
        let img = [0u8, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255];
        let mut out = vec![0.0; 48];
        to_input(
            &img,
            2,
            2,
            &Augment::none(),
            None,
            4,
            4,
            &Norm::default(),
            &mut out,
        );
        let red = &out[..16];
        assert_eq!(red[5], -1.0);
        assert_eq!(red[6], 1.0);
        assert_eq!(red[4], -1.0);
        assert_eq!(red[7], 1.0);
    }

    #[test]
    fn deserialises_with_defaults() {
        let a: Augment = serde_json::from_str(r#"{"rotation_deg": 0}"#).unwrap();
        assert_eq!(
            a,
            Augment {
                rotation_deg: 0.0,
                ..Augment::default()
            }
        );
        assert!(serde_json::from_str::<Augment>(r#"{"rotate": 1}"#).is_err());
    }

    /// Speed of a training batch: `cargo test --release --lib
    /// imaging::augment -- --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark: run it with --ignored --nocapture"]
    fn speed_of_a_batch_of_64() {
        use crate::imaging::{batch, DecodedSet};
        let one = smooth();
        let px: Vec<u8> = (0..64).flat_map(|_| one.iter().copied()).collect();
        let set = DecodedSet::from_pixels(H, W, px).unwrap();
        let idx: Vec<usize> = (0..64).collect();
        let norm = Norm::default();
        for (name, aug) in [("none", Augment::none()), ("default", Augment::default())] {
            let mut best = f64::MAX;
            for epoch in 0..20 {
                let t = std::time::Instant::now();
                let out = batch(&set, &idx, &aug, 1, 0, epoch, OH, OW, &norm);
                best = best.min(t.elapsed().as_secs_f64());
                assert_eq!(out.len(), 64 * 3 * (OH * OW) as usize);
            }
            let single = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let mut best1 = f64::MAX;
            for epoch in 0..20 {
                let t = std::time::Instant::now();
                single.install(|| batch(&set, &idx, &aug, 1, 0, epoch, OH, OW, &norm));
                best1 = best1.min(t.elapsed().as_secs_f64());
            }
            println!(
                "batch 64 x 68x136 -> 64x128, {name}: {:.2} ms (pool), {:.2} ms (1 thread)",
                best * 1e3,
                best1 * 1e3
            );
        }
    }
}
