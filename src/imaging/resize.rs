//! Resizing packed RGB u8 images: our own separable resampler.
//!
//! The filter is a triangle (tent). When enlarging it is plain bilinear
//! interpolation (radius 1 source pixel). When shrinking by a factor `s` the
//! tent is widened to radius `s` source pixels, so every source pixel
//! contributes (area-averaging, antialiased) — the same filter as PIL's
//! `Image.resize(..., BILINEAR)`. Pixel centres are aligned
//! (`src = (dst + 0.5) * s - 0.5`); taps that fall outside the image are
//! dropped and the remaining weights renormalised. The horizontal pass runs
//! first, into f32; the vertical pass rounds to the nearest u8.
//!
//! Guarantee: plain sequential f32 arithmetic in a fixed order, so the same
//! input gives the same bytes on every machine and thread count. A constant
//! image stays exactly constant; a linear ramp is reproduced exactly (up to
//! rounding) away from the borders.

use super::CHANNELS;

/// The taps of one output coordinate: first source index and its weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Filter taps for resampling `src` samples to `dst` samples.
fn taps(src: usize, dst: usize) -> Vec<Taps> {
    let s = src as f64 / dst as f64;
    let radius = s.max(1.0);
    (0..dst)
        .map(|i| {
            let center = (i as f64 + 0.5) * s;
            let lo = ((center - radius).floor() as i64).max(0) as usize;
            let hi = ((center + radius).ceil() as i64).min(src as i64) as usize;
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 + 0.5 - center) / radius).abs()).max(0.0))
                .collect();
            let total: f64 = w.iter().sum();
            for x in &mut w {
                *x /= total;
            }
            // Trim zero weights at both ends.
            let first = w.iter().position(|&x| x > 0.0).unwrap_or(0);
            let last = w.iter().rposition(|&x| x > 0.0).map_or(first, |p| p + 1);
            Taps {
                start: lo + first,
                weights: w[first..last].iter().map(|&x| x as f32).collect(),
            }
        })
        .collect()
}

/// Resizes a packed RGB u8 image (HWC, `h` x `w`) to `out_h` x `out_w`.
/// Panics if `src.len() != h * w * 3` or a size is zero.
pub fn resize_rgb(src: &[u8], h: u32, w: u32, out_h: u32, out_w: u32) -> Vec<u8> {
    let (h, w, oh, ow) = (h as usize, w as usize, out_h as usize, out_w as usize);
    assert!(h > 0 && w > 0 && oh > 0 && ow > 0, "resize_rgb: empty size");
    assert_eq!(src.len(), h * w * CHANNELS, "resize_rgb: image size");
    if (h, w) == (oh, ow) {
        return src.to_vec();
    }
    // Horizontal pass: h rows of ow pixels, f32.
    let xt = taps(w, ow);
    let mut tmp = vec![0.0f32; h * ow * CHANNELS];
    for (row, trow) in src
        .chunks_exact(w * CHANNELS)
        .zip(tmp.chunks_exact_mut(ow * CHANNELS))
    {
        for (t, out) in xt.iter().zip(trow.chunks_exact_mut(CHANNELS)) {
            let mut acc = [0.0f32; CHANNELS];
            let px = &row[t.start * CHANNELS..];
            for (k, &wt) in t.weights.iter().enumerate() {
                for c in 0..CHANNELS {
                    acc[c] += px[k * CHANNELS + c] as f32 * wt;
                }
            }
            out.copy_from_slice(&acc);
        }
    }
    // Vertical pass: oh rows, rounded to u8.
    let yt = taps(h, oh);
    let stride = ow * CHANNELS;
    let mut out = vec![0u8; oh * stride];
    let mut acc = vec![0.0f32; stride];
    for (t, orow) in yt.iter().zip(out.chunks_exact_mut(stride)) {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (k, &wt) in t.weights.iter().enumerate() {
            let r = &tmp[(t.start + k) * stride..(t.start + k + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(r) {
                *a += v * wt;
            }
        }
        for (o, &a) in orow.iter_mut().zip(&acc) {
            *o = a.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(h: usize, w: usize, v: [u8; 3]) -> Vec<u8> {
        (0..h * w).flat_map(|_| v).collect()
    }

    #[test]
    fn constant_image_stays_constant() {
        for &(h, w, oh, ow) in &[
            (50, 200, 64, 128),
            (350, 741, 68, 136),
            (32, 32, 64, 128),
            (7, 3, 1, 1),
            (1, 1, 5, 9),
        ] {
            let src = constant(h, w, [13, 200, 255]);
            let out = resize_rgb(&src, h as u32, w as u32, oh, ow);
            assert_eq!(out, constant(oh as usize, ow as usize, [13, 200, 255]));
        }
    }

    fn ramp_row(w: usize, step: u8) -> Vec<u8> {
        (0..w).flat_map(|x| [x as u8 * step; 3]).collect()
    }

    #[test]
    fn shrinking_a_ramp_matches_hand_computed_values() {
        // 8 → 4 wide: radius 2 tent. Output 1 centres at source 2.5: taps
        // 1..=4 with weights 1/8, 3/8, 3/8, 1/8 of 30, 60, 90, 120 → 75.
        let out = resize_rgb(&ramp_row(8, 30), 1, 8, 1, 4);
        assert_eq!(out[3], 75);
        assert_eq!(out[6], 135);
        // Output 0 centres at 0.5: taps 0, 1, 2 weighted 0.75, 0.75, 0.25
        // (tap -1 dropped) → (22.5 + 15) / 1.75 = 21.43 → 21.
        assert_eq!(out[0], 21);
        assert!(out.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    }

    #[test]
    fn enlarging_a_ramp_is_bilinear() {
        // 4 → 8 wide: output 3 maps to source 1.25 → 0.75*40 + 0.25*80 = 50.
        let out = resize_rgb(&ramp_row(4, 40), 1, 4, 1, 8);
        assert_eq!(out[3 * 3], 50);
        // Output 4 maps to 1.75 → 0.25*40 + 0.75*80 = 70.
        assert_eq!(out[4 * 3], 70);
        // The first output clamps to the first pixel.
        assert_eq!(out[0], 0);
    }

    #[test]
    fn vertical_ramp_in_two_dimensions() {
        // 4 rows x 2 cols, rows valued 0, 40, 80, 120 → 2 rows: each output
        // row averages a tent over all rows (radius 2 source rows).
        let src: Vec<u8> = (0..4u8).flat_map(|y| [y * 40; 6]).collect();
        let out = resize_rgb(&src, 4, 2, 2, 2);
        // Row 1 centres at 2.5 → taps 1, 2, 3 weights .25, .75, .75 (tap 4 dropped).
        let want1 = (40.0 * 0.25 + 80.0 * 0.75 + 120.0 * 0.75) / 1.75f32;
        assert_eq!(out[6], want1.round() as u8);
        assert!(out.chunks_exact(6).all(|r| r.iter().all(|&v| v == r[0])));
    }

    #[test]
    fn big_shrink_averages_an_area() {
        // A 1-pixel checkerboard shrunk 8x becomes (close to) mid grey.
        let (h, w) = (64, 64);
        let src: Vec<u8> = (0..h * w)
            .flat_map(|i| [if (i / w + i % w) % 2 == 0 { 255u8 } else { 0 }; 3])
            .collect();
        let out = resize_rgb(&src, h as u32, w as u32, 8, 8);
        assert!(out.iter().all(|&v| (120..=135).contains(&v)), "{out:?}");
    }
}
