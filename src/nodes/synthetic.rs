//! The `synthetic` node kind: the embedded default data set, so that a
//! pipeline runs on a fresh machine with no download. It generates
//! street-number plates in the shape of the Tianchi "mchar" contest data.
//!
//! Each plate carries 1-6 digits (length drawn from `length_weights`
//! restricted to `min_digits..=max_digits`, digits uniform). Glyphs are drawn
//! from vector strokes — no font files — in five visibly different styles
//! (`sans`, `serif`, `condensed`, `segment`, `rounded`, see the `glyphs` submodule) with
//! per-plate stroke widths, cell widths and bowl shapes, then laid out with
//! spacing and baseline jitter, slanted (shear), rotated, scaled to a height
//! drawn from `height`, painted over a gradient background, optionally with
//! clutter (lines, blobs, texture, stripes, a plate frame) beneath and cut
//! neighbouring digits at the plate edges, then blurred and noised.
//!
//! Output: the data-artifact layout of [`crate::artifact::dataset`]: `images/000000.png`,
//! `images/000001.png`, … (8-bit RGB PNG, names zero-padded to 6 digits, or
//! more when `count` needs it so that name order is index order), and a
//! labelled `index.json` plus mchar `labels.json` with one box per digit.
//!
//! Guarantees:
//! - deterministic: plate `i` is a pure function of the parameters, the seed
//!   and `i` (its own [`Rng::derive`] stream), and PNGs are encoded with
//!   fixed settings, so the same parameters and seed give byte-identical
//!   artifacts whatever the thread count;
//! - labels hold only the plate's own digits: cut neighbouring digits are
//!   not part of the label and every labelled digit lies fully inside the
//!   image;
//! - boxes are `[left, top, width, height]` in pixels of the final image:
//!   the axis-aligned bounding box of the digit's cell after shear and
//!   rotation, rounded to integers and clipped to the image;
//! - the glyph colour differs in luma from every point of the background
//!   gradient by at least [`MIN_CONTRAST`] (before clutter, blur and noise);
//! - every digit 0-9 is drawn distinctly in every style (pinned by a test).

mod glyphs;
mod render;

use std::path::Path;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::artifact::dataset::{DataIndex, DataItem, IMAGES_DIR};
#[allow(unused_imports)]
use crate::kind::schema::{float_range, int_min, int_range, Dflt, Param, Ty, RATIO};
use crate::kind::{Appetite, Kind, NodeError, ParamIssue, Progress, RunCtx};
use crate::rng::Rng;

pub use glyphs::Style;
pub use render::MIN_CONTRAST;

use glyphs::{Look, Pt};
use render::{sample_colours, Canvas, Frame};

/// The random stream id of plate generation (see [`Rng::derive`]).
pub const STREAM: u64 = 0x5359_4E54_4845_5449; // "SYNTHETI"

pub struct Synthetic;

impl Kind for Synthetic {
    fn name(&self) -> &'static str {
        "synthetic"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "The embedded data set: generated street-number plates with 1-6 digits in several glyph styles, colours, sizes, spacing, rotation, shear, blur, noise and clutter, written in the mchar format (boxes included). Deterministic for a seed, whatever the thread count."
    }
    fn appetite(&self, _params: &Value) -> Appetite {
        Appetite::Scales
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn check(&self, params: &Value) -> Vec<ParamIssue> {
        check_params(params)
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        if let Some(issue) = check_params(ctx.params).into_iter().next() {
            let e = NodeError::new(
                "foldwise::synthetic::params",
                format!("parameter `{}`: {}", issue.path, issue.message),
            );
            return Err(match issue.help {
                Some(help) => e.with_help(help),
                None => e,
            });
        }
        let params: SyntheticParams = ctx.typed()?;
        let job = || write_dataset(&params, ctx.seed, ctx.out, ctx.progress).map(|_| ());
        match rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads.max(1))
            .build()
        {
            Ok(pool) => pool.install(job),
            Err(_) => job(),
        }
    }
}

/// The typed parameters of a `synthetic` node (canonical parameters).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SyntheticParams {
    pub count: u64,
    pub min_digits: usize,
    pub max_digits: usize,
    pub length_weights: Vec<f64>,
    pub height: Vec<u32>,
    pub styles: Vec<Style>,
    pub rotation: f64,
    pub shear: f64,
    pub blur: f64,
    pub noise: f64,
    pub clutter: f64,
    pub neighbours: f64,
}

impl SyntheticParams {
    /// The schema defaults, with `count` plates.
    pub fn with_count(count: u64) -> SyntheticParams {
        let mut m = serde_json::Map::new();
        m.insert("count".into(), count.into());
        for p in PARAMS {
            if let Dflt::Value(v) = p.default {
                m.insert(
                    p.name.into(),
                    serde_json::from_str(v).expect("schema default is JSON"),
                );
            }
        }
        serde_json::from_value(Value::Object(m)).expect("schema defaults fit")
    }

    /// `min_digits..=max_digits`, clamped to 1..=6 and ordered.
    fn length_range(&self) -> (usize, usize) {
        let a = self.min_digits.clamp(1, 6);
        let b = self.max_digits.clamp(1, 6);
        (a.min(b), a.max(b))
    }

    /// The height range, ordered (defaults when malformed).
    fn height_range(&self) -> (u32, u32) {
        match self.height[..] {
            [a, b] => (a.min(b).max(8), a.max(b).max(8)),
            _ => (48, 80),
        }
    }
}

/// Cross-parameter checks on canonical parameters.
fn check_params(v: &Value) -> Vec<ParamIssue> {
    let mut out = Vec::new();
    let issue = |path: &str, message: String, help: Option<&str>| ParamIssue {
        path: path.into(),
        message,
        help: help.map(String::from),
    };
    let min = v.get("min_digits").and_then(Value::as_u64);
    let max = v.get("max_digits").and_then(Value::as_u64);
    let ordered = match (min, max) {
        (Some(a), Some(b)) if a > b => {
            out.push(issue(
                "min_digits",
                format!("`min_digits` ({a}) is greater than `max_digits` ({b})"),
                Some("make `min_digits` <= `max_digits`"),
            ));
            None
        }
        (Some(a), Some(b)) => Some((a as usize, b as usize)),
        _ => None,
    };
    if let Some(h) = v.get("height").and_then(Value::as_array) {
        let hs: Vec<u64> = h.iter().filter_map(Value::as_u64).collect();
        if hs.len() != 2 {
            out.push(issue(
                "height",
                format!(
                    "expected `[min, max]` (2 entries), found {} entries",
                    h.len()
                ),
                Some("for example `height = [48, 80]`"),
            ));
        } else if hs[0] > hs[1] {
            out.push(issue(
                "height",
                format!("min ({}) is greater than max ({})", hs[0], hs[1]),
                Some("write the range as `[min, max]`"),
            ));
        }
    }
    if let Some(w) = v.get("length_weights").and_then(Value::as_array) {
        let ws: Vec<f64> = w.iter().map(|x| x.as_f64().unwrap_or(0.0)).collect();
        if ws.len() != 6 {
            out.push(issue(
                "length_weights",
                format!(
                    "expected 6 entries (plates of 1 to 6 digits), found {}",
                    ws.len()
                ),
                None,
            ));
        } else if let Some((a, b)) = ordered {
            let a = a.clamp(1, 6);
            let b = b.clamp(1, 6);
            if ws[a - 1..b].iter().sum::<f64>() <= 0.0 {
                out.push(issue(
                    "length_weights",
                    format!("the weights of lengths {a} to {b} sum to zero"),
                    Some("give a positive weight to at least one length in `min_digits..=max_digits`"),
                ));
            }
        }
    }
    if let Some(s) = v.get("styles").and_then(Value::as_array) {
        if s.is_empty() {
            out.push(issue(
                "styles",
                "no glyph style given".into(),
                Some("name at least one of \"sans\", \"serif\", \"condensed\", \"segment\", \"rounded\""),
            ));
        }
    }
    out
}

/// Draws a plate's label: its length from `length_weights` over
/// `min_digits..=max_digits`, then uniform digits. This is the first use of
/// a plate's random stream, so `sample_label(p, &mut Rng::derive(seed,
/// STREAM, i))` is plate `i`'s label.
pub fn sample_label(p: &SyntheticParams, rng: &mut Rng) -> Vec<u8> {
    let (lo, hi) = p.length_range();
    let w: Vec<f64> = (lo..=hi)
        .map(|n| p.length_weights.get(n - 1).copied().unwrap_or(0.0).max(0.0))
        .collect();
    let n = if w.iter().sum::<f64>() > 0.0 {
        lo + rng.weighted(&w)
    } else {
        lo + rng.below((hi - lo + 1) as u64) as usize
    };
    (0..n).map(|_| rng.below(10) as u8).collect()
}

/// One glyph cell in layout units: digit, left, top, width (height 1).
#[derive(Debug, Clone, Copy)]
struct Cell {
    d: u8,
    x: f32,
    y: f32,
    w: f32,
}

/// Renders plate `index` of the data set for `seed`: the image, its label
/// and its per-digit boxes `[left, top, width, height]` (pixels, integers).
///
/// The steps draw from the plate's random stream in a fixed order (label,
/// look, colours, layout, pose, frame, background, clutter, blur, noise):
/// reordering them changes every generated plate.
pub fn render_plate(
    p: &SyntheticParams,
    seed: u64,
    index: u64,
) -> (RgbImage, Vec<u8>, Vec<[f32; 4]>) {
    let mut rng = Rng::derive(seed, STREAM, index);
    let label = sample_label(p, &mut rng);
    let style = match p.styles.len() {
        0 => Style::Sans,
        n => p.styles[rng.below(n as u64) as usize],
    };
    let look = Look::sample(style, &mut rng);
    let colours = sample_colours(&mut rng);
    let layout = Layout::sample(p, &look, &label, &mut rng);
    let mut pose = Pose::sample(p, layout.text_right, &mut rng);
    let (w, h) = pose.fit(p, &layout, &mut rng);
    let mut canvas = Canvas::gradient(
        w,
        h,
        colours.bg0,
        colours.bg1,
        rng.f32() * std::f32::consts::TAU,
    );
    if rng.chance(p.clutter) {
        for _ in 0..1 + rng.below(2) {
            clutter(&mut canvas, &mut rng, &colours);
        }
    }
    for c in layout.all_cells() {
        let mut prims = look.glyph(c.d, c.x, c.y, c.w);
        for pr in &mut prims {
            pr.map(|q| pose.slant(q));
        }
        canvas.fill_prims(&pose.frame, &prims, colours.fg, 1.0);
    }
    degrade(&mut canvas, p, &mut rng);
    let boxes = layout
        .cells
        .iter()
        .map(|c| pixel_box(pose.cell_box(c), w, h))
        .collect();
    (canvas.to_image(), label, boxes)
}

/// The glyph cells of a plate in layout units: its own digits, left to
/// right, and the neighbouring digits cut by the plate edges, if any.
struct Layout {
    cells: Vec<Cell>,
    left: Option<Cell>,
    right: Option<Cell>,
    /// The right edge of the last own digit.
    text_right: f32,
}

impl Layout {
    /// Cells left to right (digit height 1, y down) with jittered widths,
    /// baselines and gaps, then the neighbours (chance `p.neighbours`).
    fn sample(p: &SyntheticParams, look: &Look, label: &[u8], rng: &mut Rng) -> Layout {
        let gap = look.aspect * rng.range_f32(0.08, 0.4);
        let mut cells = Vec::with_capacity(label.len());
        let mut x = 0.0f32;
        for &d in label {
            let w = look.cell_width(d) * rng.range_f32(0.96, 1.04);
            let y = rng.range_f32(-0.025, 0.025);
            cells.push(Cell { d, x, y, w });
            x += w + (gap + look.aspect * rng.range_f32(-0.05, 0.05)).max(0.02);
        }
        let text_right = cells.last().map_or(0.0, |c| c.x + c.w);
        let (left_n, right_n) = if rng.chance(p.neighbours) {
            match rng.below(3) {
                0 => (true, false),
                1 => (false, true),
                _ => (true, true),
            }
        } else {
            (false, false)
        };
        let mut neighbour = |side_left: bool| {
            let d = rng.below(10) as u8;
            let w = look.cell_width(d);
            let x = if side_left {
                -gap - w
            } else {
                text_right + gap
            };
            Cell { d, x, y: 0.0, w }
        };
        let left = left_n.then(|| neighbour(true));
        let right = right_n.then(|| neighbour(false));
        Layout {
            cells,
            left,
            right,
            text_right,
        }
    }

    /// Every cell to draw: own digits, then the left and right neighbours.
    fn all_cells(&self) -> impl Iterator<Item = &Cell> {
        self.cells
            .iter()
            .chain(self.left.iter())
            .chain(self.right.iter())
    }
}

/// The slant and the layout → pixel frame of a plate.
struct Pose {
    shear: f32,
    frame: Frame,
}

impl Pose {
    /// Draws the shear and rotation; the frame's scale and origin are set
    /// by [`Pose::fit`].
    fn sample(p: &SyntheticParams, text_right: f32, rng: &mut Rng) -> Pose {
        let shear = if p.shear > 0.0 {
            rng.range_f32(-(p.shear as f32), p.shear as f32)
        } else {
            0.0
        };
        let theta = if p.rotation > 0.0 {
            rng.range_f32(-(p.rotation as f32), p.rotation as f32)
                .to_radians()
        } else {
            0.0
        };
        let (sin, cos) = theta.sin_cos();
        let frame = Frame {
            c: [text_right / 2.0, 0.5],
            cos,
            sin,
            k: 1.0,
            origin: [0.0, 0.0],
        };
        Pose { shear, frame }
    }

    /// A layout point after the horizontal shear.
    fn slant(&self, q: Pt) -> Pt {
        [q[0] + self.shear * (0.5 - q[1]), q[1]]
    }

    /// The bounding box `[left, top, right, bottom]` of a cell in the frame.
    fn cell_box(&self, c: &Cell) -> [f32; 4] {
        [
            [c.x, c.y],
            [c.x + c.w, c.y],
            [c.x, c.y + 1.0],
            [c.x + c.w, c.y + 1.0],
        ]
        .iter()
        .map(|&q| self.frame.to_px(self.slant(q)))
        .fold(EMPTY_BOX, |a, p| union(a, [p[0], p[1], p[0], p[1]]))
    }

    /// Draws the margins, the visible share of each neighbour and the plate
    /// height, then scales and places the frame so that the plate spans
    /// `(width, height)` pixels; returns that size.
    fn fit(&mut self, p: &SyntheticParams, layout: &Layout, rng: &mut Rng) -> (usize, usize) {
        let u = layout
            .cells
            .iter()
            .map(|c| self.cell_box(c))
            .fold(EMPTY_BOX, union);
        let top = u[1] - rng.range_f32(0.1, 0.45);
        let bottom = u[3] + rng.range_f32(0.1, 0.45);
        let cut = |c: &Option<Cell>, margin: f32, vis: f32, left: bool| -> f32 {
            match c {
                Some(c) => {
                    let b = self.cell_box(c);
                    if left {
                        (b[2] - vis * (b[2] - b[0])).min(u[0] - 0.03)
                    } else {
                        (b[0] + vis * (b[2] - b[0])).max(u[2] + 0.03)
                    }
                }
                None if left => u[0] - margin,
                None => u[2] + margin,
            }
        };
        let (ml, vl) = (rng.range_f32(0.1, 0.45), rng.range_f32(0.25, 0.55));
        let (mr, vr) = (rng.range_f32(0.1, 0.45), rng.range_f32(0.25, 0.55));
        let left = cut(&layout.left, ml, vl, true);
        let right = cut(&layout.right, mr, vr, false);
        let (hmin, hmax) = p.height_range();
        let h = rng.int_in(hmin as i64, hmax as i64) as usize;
        self.frame.k = h as f32 / (bottom - top);
        self.frame.origin = [left, top];
        let w = (((right - left) * self.frame.k).round() as usize).max(8);
        (w, h)
    }
}

/// The start of a [`union`] fold: contains nothing.
const EMPTY_BOX: [f32; 4] = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];

/// The smallest box `[left, top, right, bottom]` holding both.
fn union(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    [
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[2].max(b[2]),
        a[3].max(b[3]),
    ]
}

/// A `[left, top, right, bottom]` box as a `[left, top, width, height]`
/// label box: rounded to whole pixels and clipped to the `w`×`h` image.
fn pixel_box(b: [f32; 4], w: usize, h: usize) -> [f32; 4] {
    let l = b[0].round().clamp(0.0, w as f32);
    let t = b[1].round().clamp(0.0, h as f32);
    let r = b[2].round().clamp(0.0, w as f32);
    let bt = b[3].round().clamp(0.0, h as f32);
    [l, t, r - l, bt - t]
}

/// Blurs (sigma up to `p.blur`, skipped under 0.25) and noises (amplitude
/// up to `p.noise`) the painted plate.
fn degrade(canvas: &mut Canvas, p: &SyntheticParams, rng: &mut Rng) {
    if p.blur > 0.0 {
        let sigma = rng.range_f32(0.0, p.blur as f32);
        if sigma >= 0.25 {
            canvas.blur(sigma);
        }
    }
    if p.noise > 0.0 {
        let amp = rng.range_f32(0.0, p.noise as f32);
        canvas.noise(rng, amp);
    }
}

/// A clean specimen of `digits` in `style` (typical look, black on white,
/// no slant, rotation or degradation), `height` px high.
pub fn specimen(style: Style, digits: &[u8], height: u32) -> RgbImage {
    let look = Look::typical(style);
    let margin = 0.2;
    let gap = look.aspect * 0.2;
    let mut x = margin;
    let mut prims = Vec::new();
    for &d in digits {
        let w = look.cell_width(d);
        prims.extend(look.glyph(d, x, 0.0, w));
        x += w + gap;
    }
    let right = x - gap + margin;
    let k = height as f32 / (1.0 + 2.0 * margin);
    let frame = Frame {
        c: [0.0, 0.0],
        cos: 1.0,
        sin: 0.0,
        k,
        origin: [0.0, -margin],
    };
    let w = ((right * k).round() as usize).max(8);
    let mut canvas = Canvas::gradient(w, height as usize, [1.0; 3], [1.0; 3], 0.0);
    canvas.fill_prims(&frame, &prims, [0.0; 3], 1.0);
    canvas.to_image()
}

/// Paints one random clutter element beneath the glyphs.
fn clutter(canvas: &mut Canvas, rng: &mut Rng, colours: &render::Colours) {
    let (w, h) = (canvas.w as f32, canvas.h as f32);
    let mix = |a: [f32; 3], b: [f32; 3], t: f32| {
        [
            a[0] + (b[0] - a[0]) * t,
            a[1] + (b[1] - a[1]) * t,
            a[2] + (b[2] - a[2]) * t,
        ]
    };
    match rng.below(4) {
        0 => {
            for _ in 0..1 + rng.below(3) {
                let a = [rng.range_f32(-0.2, 1.2) * w, rng.range_f32(-0.2, 1.2) * h];
                let b = [rng.range_f32(-0.2, 1.2) * w, rng.range_f32(-0.2, 1.2) * h];
                let width = rng.range_f32(0.7, 1.0 + 0.04 * h);
                let c = mix(colours.bg0, colours.fg, rng.range_f32(0.15, 0.45));
                let alpha = rng.range_f32(0.4, 0.9);
                canvas.line(a, b, width, c, alpha);
            }
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                let centre = [rng.f32() * w, rng.f32() * h];
                let rx = rng.range_f32(0.1, 0.6) * h;
                let ry = rng.range_f32(0.1, 0.6) * h;
                let mut c = colours.bg0;
                for ch in &mut c {
                    *ch = (*ch + rng.range_f32(-0.25, 0.25)).clamp(0.0, 1.0);
                }
                let alpha = rng.range_f32(0.2, 0.5);
                let soft = rng.range_f32(0.2, 1.0);
                canvas.blob(centre, rx, ry, c, alpha, soft);
            }
        }
        2 => {
            if rng.chance(0.3) {
                let period = rng.range_f32(3.0, 15.0);
                let angle = rng.f32() * std::f32::consts::PI;
                let amp = rng.range_f32(0.015, 0.05);
                canvas.stripes(period, angle, amp);
            } else {
                let cell = rng.range_f32(2.0, 10.0);
                let amp = rng.range_f32(0.02, 0.08);
                canvas.texture(rng, cell, amp);
            }
        }
        _ => {
            let inset = rng.range_f32(1.0, 1.0 + 0.1 * h);
            let width = rng.range_f32(1.0, 3.0);
            let c = mix(colours.bg0, colours.fg, rng.range_f32(0.2, 0.6));
            let (x0, y0, x1, y1) = (inset, inset, w - inset, h - inset);
            canvas.line([x0, y0], [x1, y0], width, c, 1.0);
            canvas.line([x1, y0], [x1, y1], width, c, 1.0);
            canvas.line([x1, y1], [x0, y1], width, c, 1.0);
            canvas.line([x0, y1], [x0, y0], width, c, 1.0);
        }
    }
}

/// Encodes an RGB image as PNG with fixed settings (byte-stable).
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    encode_png_with(img, CompressionType::Default)
}

/// Encodes an RGB image as PNG with `compression` and adaptive filtering.
pub fn encode_png_with(
    img: &RgbImage,
    compression: CompressionType,
) -> Result<Vec<u8>, image::ImageError> {
    let mut buf = Vec::new();
    PngEncoder::new_with_quality(&mut buf, compression, FilterType::Adaptive).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(buf)
}

/// Generates the whole data set into `out` (an empty folder) on the current
/// rayon pool: `images/…png`, `index.json`, `labels.json`. Returns the index.
pub fn write_dataset(
    p: &SyntheticParams,
    seed: u64,
    out: &Path,
    progress: &dyn Progress,
) -> Result<DataIndex, NodeError> {
    let dir = out.join(IMAGES_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| NodeError::io(&dir, e))?;
    progress.stage("rendering", p.count);
    let pad = p.count.saturating_sub(1).to_string().len().max(6);
    let items = (0..p.count)
        .into_par_iter()
        .map(|i| {
            let (img, label, boxes) = render_plate(p, seed, i);
            let file = format!("{i:0pad$}.png");
            let path = dir.join(&file);
            let bytes = encode_png(&img)
                .map_err(|e| NodeError::file(&path, format!("cannot encode PNG: {e}")))?;
            std::fs::write(&path, bytes).map_err(|e| NodeError::io(&path, e))?;
            progress.inc(1);
            Ok(DataItem {
                file,
                width: img.width(),
                height: img.height(),
                label: Some(label),
                boxes: Some(boxes),
            })
        })
        .collect::<Result<Vec<_>, NodeError>>()?;
    let index = DataIndex {
        labelled: true,
        items,
    };
    index.save(out)?;
    Ok(index)
}

static PARAMS: &[Param] = &[
    Param {
        name: "count",
        ty: int_min(1),
        default: Dflt::Required,
        doc: "Number of plates.",
    },
    Param {
        name: "min_digits",
        ty: int_range(1, 6),
        default: Dflt::Value("1"),
        doc: "Fewest digits on a plate.",
    },
    Param {
        name: "max_digits",
        ty: int_range(1, 6),
        default: Dflt::Value("6"),
        doc: "Most digits on a plate.",
    },
    Param {
        name: "length_weights",
        ty: Ty::List(&float_range(0.0, f64::INFINITY)),
        default: Dflt::Value("[0.15, 0.54, 0.26, 0.04, 0.007, 0.003]"),
        doc: "Relative frequency of plates with 1, 2, … 6 digits (like the contest: mostly 2-3).",
    },
    Param {
        name: "height",
        ty: Ty::List(&int_range(16, 512)),
        default: Dflt::Value("[48, 80]"),
        doc: "Plate height range in pixels, `[min, max]`.",
    },
    Param {
        name: "styles",
        ty: Ty::List(&Ty::Choice(&[
            "sans",
            "serif",
            "condensed",
            "segment",
            "rounded",
        ])),
        default: Dflt::Value("[\"sans\", \"serif\", \"condensed\", \"segment\", \"rounded\"]"),
        doc: "Glyph styles to draw from.",
    },
    Param {
        name: "rotation",
        ty: float_range(0.0, 45.0),
        default: Dflt::Value("6.0"),
        doc: "Largest rotation in degrees.",
    },
    Param {
        name: "shear",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.2"),
        doc: "Largest horizontal shear (slant), as a fraction of height.",
    },
    Param {
        name: "blur",
        ty: float_range(0.0, 5.0),
        default: Dflt::Value("1.0"),
        doc: "Largest Gaussian blur sigma in pixels.",
    },
    Param {
        name: "noise",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.06"),
        doc: "Largest per-pixel noise amplitude (fraction of full scale).",
    },
    Param {
        name: "clutter",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.5"),
        doc: "Probability of background clutter (lines, blobs, texture).",
    },
    Param {
        name: "neighbours",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.3"),
        doc: "Probability of partial neighbouring digits cut by the plate edges.",
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::kind::NoProgress;

    fn params(count: u64) -> SyntheticParams {
        SyntheticParams::with_count(count)
    }

    /// Canonical JSON of the defaults (what `check` and `run` see).
    fn canonical(count: u64) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("count".into(), count.into());
        for p in PARAMS {
            if let Dflt::Value(v) = p.default {
                m.insert(p.name.into(), serde_json::from_str(v).unwrap());
            }
        }
        Value::Object(m)
    }

    /// Runs the kind into a fresh folder on a rayon pool of `threads`.
    fn run_with(params: &Value, seed: u64, threads: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let inputs = BTreeMap::new();
        let ctx = RunCtx {
            instance: "plates",
            fold: None,
            params,
            seed,
            base_dir: dir.path(),
            inputs: &inputs,
            out: &out,
            progress: &NoProgress,
            threads,
            work: None,
            derived: Path::new("/nonexistent/derived"),
            device: crate::kind::DeviceChoice::Auto,
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| Synthetic.run(&ctx))
            .unwrap();
        (dir, out)
    }

    /// Every file under `dir`, by relative path.
    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e.path().strip_prefix(dir).unwrap();
                (rel.display().to_string(), std::fs::read(e.path()).unwrap())
            })
            .collect()
    }

    #[test]
    fn same_seed_same_bytes_whatever_the_thread_count() {
        let p = canonical(24);
        let (_a, one) = run_with(&p, 7, 1);
        let (_b, two) = run_with(&p, 7, 2);
        let (fa, fb) = (files(&one), files(&two));
        assert_eq!(fa.len(), 24 + 2, "{:?}", fa.keys().collect::<Vec<_>>());
        assert!(fa.contains_key("images/000000.png") && fa.contains_key("images/000023.png"));
        assert!(fa.contains_key("index.json") && fa.contains_key("labels.json"));
        assert!(fa == fb, "outputs differ between 1 and 2 threads");
        let index = DataIndex::load(&one).unwrap();
        assert!(index.labelled);
        let names: Vec<&str> = index.items.iter().map(|i| i.file.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        // The files are real RGB PNGs of the indexed size.
        let item = &index.items[3];
        let img = image::open(one.join(IMAGES_DIR).join(&item.file)).unwrap();
        assert_eq!(img.color(), image::ColorType::Rgb8);
        assert_eq!((img.width(), img.height()), (item.width, item.height));
    }

    #[test]
    fn different_seed_different_plates() {
        let p = params(8);
        let a: Vec<_> = (0..8).map(|i| render_plate(&p, 1, i)).collect();
        let b: Vec<_> = (0..8).map(|i| render_plate(&p, 2, i)).collect();
        assert!(a.iter().zip(&b).all(|(x, y)| x.0 != y.0));
        assert_ne!(
            a.iter().map(|x| x.1.clone()).collect::<Vec<_>>(),
            b.iter().map(|x| x.1.clone()).collect::<Vec<_>>()
        );
        // Same seed and index: the same plate.
        assert_eq!(render_plate(&p, 1, 5).0, a[5].0);
    }

    #[test]
    fn labels_and_boxes_are_well_formed() {
        let mut p = params(40);
        p.min_digits = 2;
        p.max_digits = 5;
        p.length_weights = vec![1.0; 6];
        p.neighbours = 0.8;
        p.rotation = 20.0;
        p.shear = 0.4;
        p.height = vec![30, 60];
        let mut seen_len = [false; 7];
        for i in 0..40 {
            let (img, label, boxes) = render_plate(&p, 11, i);
            assert!((2..=5).contains(&label.len()), "{label:?}");
            assert!(label.iter().all(|&d| d <= 9));
            assert_eq!(boxes.len(), label.len());
            assert!((30..=60).contains(&img.height()), "{}", img.height());
            seen_len[label.len()] = true;
            for b in &boxes {
                assert!(b.iter().all(|v| v.fract() == 0.0), "{b:?}");
                assert!(
                    b[0] >= 0.0 && b[1] >= 0.0 && b[2] >= 1.0 && b[3] >= 1.0,
                    "{b:?}"
                );
                assert!(
                    b[0] + b[2] <= img.width() as f32,
                    "{b:?} in {}",
                    img.width()
                );
                assert!(
                    b[1] + b[3] <= img.height() as f32,
                    "{b:?} in {}",
                    img.height()
                );
                // Labelled digits are never cut to slivers.
                assert!(b[3] >= 0.25 * img.height() as f32, "{b:?} {}", img.height());
            }
            // Boxes run left to right.
            for w in boxes.windows(2) {
                assert!(w[0][0] < w[1][0], "{boxes:?}");
            }
        }
        assert!(seen_len[2] && seen_len[3] && seen_len[4] && seen_len[5]);
    }

    #[test]
    fn length_distribution_follows_the_weights() {
        let p = params(2000);
        let mut counts = [0usize; 7];
        for i in 0..2000 {
            let label = sample_label(&p, &mut Rng::derive(3, STREAM, i));
            counts[label.len()] += 1;
        }
        let total: f64 = p.length_weights.iter().sum();
        for (i, w) in p.length_weights.iter().enumerate() {
            let want = w / total;
            let got = counts[i + 1] as f64 / 2000.0;
            assert!(
                (got - want).abs() < 0.03,
                "length {}: {got} vs {want}",
                i + 1
            );
        }
        // Restricted to 3..=4: only those lengths, in proportion 0.26 : 0.04.
        let mut p = params(2000);
        p.min_digits = 3;
        p.max_digits = 4;
        let mut c = [0usize; 7];
        for i in 0..2000 {
            c[sample_label(&p, &mut Rng::derive(3, STREAM, i)).len()] += 1;
        }
        assert_eq!(c[3] + c[4], 2000);
        let got = c[4] as f64 / 2000.0;
        assert!((got - 0.04 / 0.30).abs() < 0.03, "{got}");
        // The label is the first use of the plate's stream.
        let (_, label, _) = render_plate(&p, 3, 17);
        assert_eq!(label, sample_label(&p, &mut Rng::derive(3, STREAM, 17)));
    }

    #[test]
    fn check_names_each_problem() {
        let ok = canonical(10);
        assert!(
            Synthetic.check(&ok).is_empty(),
            "{:?}",
            Synthetic.check(&ok)
        );
        let paths = |edit: &dyn Fn(&mut Value)| {
            let mut v = ok.clone();
            edit(&mut v);
            Synthetic
                .check(&v)
                .into_iter()
                .map(|i| i.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(&|v| {
                v["min_digits"] = 4.into();
                v["max_digits"] = 2.into();
            }),
            ["min_digits"]
        );
        assert_eq!(
            paths(&|v| v["height"] = serde_json::json!([80, 48])),
            ["height"]
        );
        assert_eq!(
            paths(&|v| v["height"] = serde_json::json!([48])),
            ["height"]
        );
        assert_eq!(
            paths(&|v| v["height"] = serde_json::json!([48, 60, 80])),
            ["height"]
        );
        assert_eq!(
            paths(&|v| v["length_weights"] = serde_json::json!([1.0, 2.0])),
            ["length_weights"]
        );
        assert_eq!(
            paths(&|v| {
                v["length_weights"] = serde_json::json!([1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
                v["min_digits"] = 2.into();
                v["max_digits"] = 5.into();
            }),
            ["length_weights"]
        );
        assert_eq!(paths(&|v| v["styles"] = serde_json::json!([])), ["styles"]);
        // `run` refuses what `check` rejects.
        let mut bad = ok.clone();
        bad["styles"] = serde_json::json!([]);
        let dir = tempfile::tempdir().unwrap();
        let inputs = BTreeMap::new();
        let ctx = RunCtx {
            instance: "plates",
            fold: None,
            params: &bad,
            seed: 1,
            base_dir: dir.path(),
            inputs: &inputs,
            out: dir.path(),
            progress: &NoProgress,
            threads: 1,
            work: None,
            derived: Path::new("/nonexistent/derived"),
            device: crate::kind::DeviceChoice::Auto,
        };
        assert!(Synthetic.run(&ctx).is_err());
    }

    #[test]
    fn colours_keep_their_contrast() {
        for i in 0..5000 {
            let c = sample_colours(&mut Rng::derive(9, 1, i));
            assert!(c.contrast() >= MIN_CONTRAST, "{c:?}");
            for ch in c.bg0.iter().chain(&c.bg1).chain(&c.fg) {
                assert!((0.0..=1.0).contains(ch));
            }
        }
    }

    #[test]
    fn params_deserialise_from_canonical_json() {
        let p: SyntheticParams = serde_json::from_value(canonical(5)).unwrap();
        assert_eq!(p, SyntheticParams::with_count(5));
        assert_eq!(p.styles, Style::ALL.to_vec());
        assert_eq!((p.min_digits, p.max_digits), (1, 6));
    }

    /// A digit's ink mask in a clean specimen (`true` = dark).
    fn mask(style: Style, d: u8) -> Vec<bool> {
        let img = specimen(style, &[d], 40);
        // Centre every glyph in a fixed-width frame so masks compare.
        let w = 32usize;
        let off = (w as i64 - img.width() as i64) / 2;
        let mut m = vec![false; w * 40];
        for (x, y, p) in img.enumerate_pixels() {
            let xx = x as i64 + off;
            if (0..w as i64).contains(&xx) && p[0] < 128 {
                m[y as usize * w + xx as usize] = true;
            }
        }
        m
    }

    #[test]
    fn every_digit_is_distinct_in_every_style() {
        for style in Style::ALL {
            let masks: Vec<Vec<bool>> = (0..10).map(|d| mask(style, d)).collect();
            for (d, m) in masks.iter().enumerate() {
                let ink = m.iter().filter(|&&b| b).count();
                assert!(ink > 40, "{style:?} {d}: only {ink} px of ink");
            }
            for a in 0..10 {
                for b in a + 1..10 {
                    let (ma, mb) = (&masks[a], &masks[b]);
                    let inter = ma.iter().zip(mb).filter(|(x, y)| **x && **y).count();
                    let union = ma.iter().zip(mb).filter(|(x, y)| **x || **y).count();
                    let iou = inter as f64 / union as f64;
                    // Seven-segment 0 and 8 differ by one bar only (IoU ~0.83).
                    assert!(
                        iou < 0.88,
                        "{style:?}: {a} and {b} look alike (IoU {iou:.2})"
                    );
                }
            }
        }
    }
}
