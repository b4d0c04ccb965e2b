//! Raster side of the plate generator: a float RGB canvas, the layout→pixel
//! frame (rotation and scale), colour choice with a contrast guarantee,
//! anti-aliased coverage of glyph primitives, clutter, blur and noise.
//!
//! Everything here is plain sequential `f32` arithmetic driven by one
//! [`Rng`], so a plate is a pure function of its random stream.

use image::RgbImage;

use super::glyphs::{Prim, Pt};
use crate::rng::Rng;

/// An RGB colour, channels in `[0, 1]` (sRGB values).
pub type Rgb = [f32; 3];

/// Least luminance difference between the glyph colour and every point of
/// the background gradient.
pub const MIN_CONTRAST: f32 = 0.35;

/// Luma of an sRGB colour (Rec. 709 weights on the sRGB values).
pub fn luma(c: Rgb) -> f32 {
    0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
}

fn lerp(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Plate colours: a background gradient from `bg0` to `bg1` and the glyph
/// colour `fg`.
#[derive(Debug, Clone, Copy)]
pub struct Colours {
    pub bg0: Rgb,
    pub bg1: Rgb,
    pub fg: Rgb,
}

impl Colours {
    /// The luminance difference between `fg` and the nearest background
    /// colour (luma is linear along the gradient, so its end points bound it).
    #[cfg(test)]
    pub fn contrast(&self) -> f32 {
        let l = luma(self.fg);
        (l - luma(self.bg0)).abs().min((l - luma(self.bg1)).abs())
    }
}

fn random_colour(rng: &mut Rng) -> Rgb {
    if rng.chance(0.4) {
        // Near-neutral: white, black, greys, with a slight tint.
        let v = rng.f32();
        let mut c = [v; 3];
        for ch in &mut c {
            *ch = (*ch + rng.range_f32(-0.06, 0.06)).clamp(0.0, 1.0);
        }
        c
    } else {
        [rng.f32(), rng.f32(), rng.f32()]
    }
}

/// Draws plate colours whose contrast is at least [`MIN_CONTRAST`], the
/// glyph either darker or lighter than the whole background.
pub fn sample_colours(rng: &mut Rng) -> Colours {
    for _ in 0..32 {
        let bg0 = random_colour(rng);
        let mut bg1 = bg0;
        for ch in &mut bg1 {
            *ch = (*ch + rng.range_f32(-0.2, 0.2)).clamp(0.0, 1.0);
        }
        let (l0, l1) = (luma(bg0), luma(bg1));
        let (lo, hi) = (l0.min(l1), l0.max(l1));
        let dark_ok = lo >= MIN_CONTRAST;
        let light_ok = hi <= 1.0 - MIN_CONTRAST;
        if !dark_ok && !light_ok {
            continue;
        }
        for _ in 0..32 {
            let fg = random_colour(rng);
            let l = luma(fg);
            if (dark_ok && l <= lo - MIN_CONTRAST) || (light_ok && l >= hi + MIN_CONTRAST) {
                return Colours { bg0, bg1, fg };
            }
        }
        let fg = if dark_ok { [0.0; 3] } else { [1.0; 3] };
        return Colours { bg0, bg1, fg };
    }
    Colours {
        bg0: [0.9; 3],
        bg1: [0.8; 3],
        fg: [0.05; 3],
    }
}

/// Maps layout space (digit height 1, already sheared) to pixels: a
/// rotation about `c`, then a scale `k` and a shift so that `origin` (in
/// rotated layout units) lands on pixel (0, 0).
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub c: Pt,
    pub cos: f32,
    pub sin: f32,
    pub k: f32,
    pub origin: Pt,
}

impl Frame {
    /// Layout → rotated layout units.
    pub fn rot(&self, q: Pt) -> Pt {
        let (x, y) = (q[0] - self.c[0], q[1] - self.c[1]);
        [self.cos * x - self.sin * y, self.sin * x + self.cos * y]
    }
    /// Layout → pixel coordinates.
    pub fn to_px(self, q: Pt) -> Pt {
        let r = self.rot(q);
        [
            (r[0] - self.origin[0]) * self.k,
            (r[1] - self.origin[1]) * self.k,
        ]
    }
    /// Pixel coordinates → layout.
    pub fn to_layout(self, p: Pt) -> Pt {
        let r = [
            p[0] / self.k + self.origin[0],
            p[1] / self.k + self.origin[1],
        ];
        [
            self.c[0] + self.cos * r[0] + self.sin * r[1],
            self.c[1] - self.sin * r[0] + self.cos * r[1],
        ]
    }
    /// Pixel bounding box `[x0, y0, x1, y1]` of a layout box.
    pub fn px_bbox(&self, bb: [f32; 4]) -> [f32; 4] {
        let corners = [
            [bb[0], bb[1]],
            [bb[2], bb[1]],
            [bb[0], bb[3]],
            [bb[2], bb[3]],
        ];
        corners.iter().map(|&q| self.to_px(q)).fold(
            [f32::MAX, f32::MAX, f32::MIN, f32::MIN],
            |a, p| {
                [
                    a[0].min(p[0]),
                    a[1].min(p[1]),
                    a[2].max(p[0]),
                    a[3].max(p[1]),
                ]
            },
        )
    }
}

/// A float RGB image.
pub struct Canvas {
    pub w: usize,
    pub h: usize,
    px: Vec<Rgb>,
}

impl Canvas {
    /// A canvas filled with a linear gradient from `c0` to `c1` along
    /// `angle` (radians) across the whole image.
    pub fn gradient(w: usize, h: usize, c0: Rgb, c1: Rgb, angle: f32) -> Canvas {
        let (s, c) = angle.sin_cos();
        let span = (w as f32 * c.abs() + h as f32 * s.abs()).max(1.0);
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        let mut px = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let d = (x as f32 + 0.5 - cx) * c + (y as f32 + 0.5 - cy) * s;
                px.push(lerp(c0, c1, (0.5 + d / span).clamp(0.0, 1.0)));
            }
        }
        Canvas { w, h, px }
    }

    fn blend(&mut self, x: usize, y: usize, c: Rgb, a: f32) {
        let p = &mut self.px[y * self.w + x];
        *p = lerp(*p, c, a);
    }

    /// Integer pixel range covering `bb` (expanded by `pad`), clipped.
    fn range(&self, bb: [f32; 4], pad: f32) -> (usize, usize, usize, usize) {
        let cl = |v: f32, hi: usize| (v.max(0.0) as usize).min(hi);
        (
            cl((bb[0] - pad).floor(), self.w),
            cl((bb[1] - pad).floor(), self.h),
            cl((bb[2] + pad).ceil(), self.w),
            cl((bb[3] + pad).ceil(), self.h),
        )
    }

    /// Paints the union of `prims` (layout units) in colour `c` with
    /// anti-aliased edges: coverage = clamp(0.5 − signed distance in px).
    pub fn fill_prims(&mut self, frame: &Frame, prims: &[Prim], c: Rgb, alpha: f32) {
        if prims.is_empty() {
            return;
        }
        let boxes: Vec<[f32; 4]> = prims.iter().map(|p| p.bbox()).collect();
        let bb = boxes
            .iter()
            .fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |a, b| {
                [
                    a[0].min(b[0]),
                    a[1].min(b[1]),
                    a[2].max(b[2]),
                    a[3].max(b[3]),
                ]
            });
        let (x0, y0, x1, y1) = self.range(frame.px_bbox(bb), 1.0);
        let k = frame.k;
        let slack = 1.0 / k;
        for y in y0..y1 {
            for x in x0..x1 {
                let q = frame.to_layout([x as f32 + 0.5, y as f32 + 0.5]);
                let mut cov = 0.0f32;
                for (p, b) in prims.iter().zip(&boxes) {
                    if q[0] < b[0] - slack
                        || q[0] > b[2] + slack
                        || q[1] < b[1] - slack
                        || q[1] > b[3] + slack
                    {
                        continue;
                    }
                    cov = cov.max((0.5 - p.sdf(q) * k).clamp(0.0, 1.0));
                    if cov >= 1.0 {
                        break;
                    }
                }
                if cov > 0.0 {
                    self.blend(x, y, c, cov * alpha);
                }
            }
        }
    }

    /// A straight line in pixel space, `width` px wide.
    pub fn line(&mut self, a: Pt, b: Pt, width: f32, c: Rgb, alpha: f32) {
        let frame = Frame {
            c: [0.0, 0.0],
            cos: 1.0,
            sin: 0.0,
            k: 1.0,
            origin: [0.0, 0.0],
        };
        let prim = Prim::Capsule {
            a,
            b,
            r: width / 2.0,
        };
        self.fill_prims(&frame, &[prim], c, alpha);
    }

    /// A soft-edged filled ellipse in pixel space.
    pub fn blob(&mut self, centre: Pt, rx: f32, ry: f32, c: Rgb, alpha: f32, soft: f32) {
        let bb = [
            centre[0] - rx,
            centre[1] - ry,
            centre[0] + rx,
            centre[1] + ry,
        ];
        let (x0, y0, x1, y1) = self.range(bb, 1.0);
        for y in y0..y1 {
            for x in x0..x1 {
                let dx = (x as f32 + 0.5 - centre[0]) / rx;
                let dy = (y as f32 + 0.5 - centre[1]) / ry;
                let d = (dx * dx + dy * dy).sqrt();
                let a = ((1.0 - d) / soft).clamp(0.0, 1.0);
                if a > 0.0 {
                    self.blend(x, y, c, a * alpha);
                }
            }
        }
    }

    /// Adds a smooth value-noise texture of amplitude `amp` and cell size
    /// `cell` px (brightness only).
    pub fn texture(&mut self, rng: &mut Rng, cell: f32, amp: f32) {
        let gw = (self.w as f32 / cell).ceil() as usize + 2;
        let gh = (self.h as f32 / cell).ceil() as usize + 2;
        let grid: Vec<f32> = (0..gw * gh).map(|_| rng.f32() * 2.0 - 1.0).collect();
        for y in 0..self.h {
            let fy = y as f32 / cell;
            let (iy, ty) = (fy as usize, fy.fract());
            let ty = ty * ty * (3.0 - 2.0 * ty);
            for x in 0..self.w {
                let fx = x as f32 / cell;
                let (ix, tx) = (fx as usize, fx.fract());
                let tx = tx * tx * (3.0 - 2.0 * tx);
                let g = |i: usize, j: usize| grid[j * gw + i];
                let top = g(ix, iy) + (g(ix + 1, iy) - g(ix, iy)) * tx;
                let bot = g(ix, iy + 1) + (g(ix + 1, iy + 1) - g(ix, iy + 1)) * tx;
                let v = (top + (bot - top) * ty) * amp;
                let p = &mut self.px[y * self.w + x];
                for ch in p.iter_mut() {
                    *ch += v;
                }
            }
        }
    }

    /// Adds stripes (brightness only): period `period` px along `angle`.
    pub fn stripes(&mut self, period: f32, angle: f32, amp: f32) {
        let (s, c) = angle.sin_cos();
        for y in 0..self.h {
            for x in 0..self.w {
                let d = (x as f32 * c + y as f32 * s) / period;
                let v = (d * std::f32::consts::TAU).sin() * amp;
                for ch in self.px[y * self.w + x].iter_mut() {
                    *ch += v;
                }
            }
        }
    }

    /// Separable Gaussian blur with standard deviation `sigma` px (edges
    /// clamped).
    pub fn blur(&mut self, sigma: f32) {
        let r = (sigma * 3.0).ceil() as i64;
        let mut k: Vec<f32> = (-r..=r)
            .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
            .collect();
        let sum: f32 = k.iter().sum();
        k.iter_mut().for_each(|v| *v /= sum);
        let (w, h) = (self.w as i64, self.h as i64);
        let mut tmp = vec![[0.0f32; 3]; self.px.len()];
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 3];
                for (i, kv) in k.iter().enumerate() {
                    let sx = (x + i as i64 - r).clamp(0, w - 1);
                    let p = self.px[(y * w + sx) as usize];
                    for ch in 0..3 {
                        acc[ch] += p[ch] * kv;
                    }
                }
                tmp[(y * w + x) as usize] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 3];
                for (i, kv) in k.iter().enumerate() {
                    let sy = (y + i as i64 - r).clamp(0, h - 1);
                    let p = tmp[(sy * w + x) as usize];
                    for ch in 0..3 {
                        acc[ch] += p[ch] * kv;
                    }
                }
                self.px[(y * w + x) as usize] = acc;
            }
        }
    }

    /// Per-pixel noise: a shared brightness part and a smaller per-channel
    /// part, both uniform, peak amplitude `amp`.
    pub fn noise(&mut self, rng: &mut Rng, amp: f32) {
        for p in &mut self.px {
            let l = (rng.f32() * 2.0 - 1.0) * amp * 0.7;
            for ch in p.iter_mut() {
                *ch += l + (rng.f32() * 2.0 - 1.0) * amp * 0.3;
            }
        }
    }

    /// Quantises to 8-bit RGB.
    pub fn to_image(&self) -> RgbImage {
        let mut buf = Vec::with_capacity(self.px.len() * 3);
        for p in &self.px {
            for ch in p {
                buf.push((ch.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
        RgbImage::from_raw(self.w as u32, self.h as u32, buf).expect("buffer size")
    }
}
