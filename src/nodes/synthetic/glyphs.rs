//! Digit glyphs drawn as vector strokes, in five styles, without font files.
//!
//! A glyph is built in three steps:
//! 1. a style-independent *skeleton*: polylines and (super-)elliptic arcs in
//!    a unit box, x right and y down, with a "squareness" knob that turns the
//!    round bowls boxy (the `condensed` style);
//! 2. the skeleton is placed into its *glyph cell* (`w` × 1 layout units:
//!    one layout unit is the digit height), inset by the stroke radius so the
//!    ink stays inside the cell;
//! 3. it becomes *primitives* — round-capped capsules and filled polygons —
//!    that the renderer covers with analytic anti-aliasing (signed distance).
//!
//! `segment` skips the skeleton and builds seven hexagonal bars instead;
//! `serif` adds stroke contrast (thick verticals, thin horizontals), bars on
//! straight vertical stroke ends, beaks on horizontal ones and ball
//! terminals on curved ones.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// A point in layout units.
pub type Pt = [f32; 2];

/// A glyph style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Plain strokes of even, medium width.
    Sans,
    /// Thick/thin contrast, bars, beaks and ball terminals.
    Serif,
    /// Narrow cells, boxy bowls, thinner strokes.
    Condensed,
    /// Seven-segment display bars.
    Segment,
    /// Wide cells, thick round strokes.
    Rounded,
}

impl Style {
    /// Every style, in schema order.
    pub const ALL: [Style; 5] = [
        Style::Sans,
        Style::Serif,
        Style::Condensed,
        Style::Segment,
        Style::Rounded,
    ];

    /// The name used in the `styles` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Style::Sans => "sans",
            Style::Serif => "serif",
            Style::Condensed => "condensed",
            Style::Segment => "segment",
            Style::Rounded => "rounded",
        }
    }
}

/// A drawable primitive in layout units.
#[derive(Debug, Clone)]
pub enum Prim {
    /// The set of points within `r` of the segment `a`–`b` (a disc when
    /// `a == b`).
    Capsule { a: Pt, b: Pt, r: f32 },
    /// A filled simple polygon.
    Poly(Vec<Pt>),
}

impl Prim {
    /// Signed distance from `q` to the primitive's outline (negative inside).
    pub fn sdf(&self, q: Pt) -> f32 {
        match self {
            Prim::Capsule { a, b, r } => {
                let pa = sub(q, *a);
                let ba = sub(*b, *a);
                let bb = dot(ba, ba);
                let h = if bb > 0.0 {
                    (dot(pa, ba) / bb).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                len(sub(pa, scale(ba, h))) - r
            }
            Prim::Poly(v) => sd_poly(v, q),
        }
    }

    /// Bounding box `[min_x, min_y, max_x, max_y]`.
    pub fn bbox(&self) -> [f32; 4] {
        match self {
            Prim::Capsule { a, b, r } => [
                a[0].min(b[0]) - r,
                a[1].min(b[1]) - r,
                a[0].max(b[0]) + r,
                a[1].max(b[1]) + r,
            ],
            Prim::Poly(v) => v
                .iter()
                .fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |bb, p| {
                    [
                        bb[0].min(p[0]),
                        bb[1].min(p[1]),
                        bb[2].max(p[0]),
                        bb[3].max(p[1]),
                    ]
                }),
        }
    }

    /// Moves every defining point through `f` (an affine map such as a
    /// shear); capsule radii are kept, so strokes keep their width.
    pub fn map(&mut self, f: impl Fn(Pt) -> Pt) {
        match self {
            Prim::Capsule { a, b, .. } => {
                *a = f(*a);
                *b = f(*b);
            }
            Prim::Poly(v) => v.iter_mut().for_each(|p| *p = f(*p)),
        }
    }
}

/// Signed distance to a polygon (after Inigo Quilez's `sdPolygon`).
fn sd_poly(v: &[Pt], p: Pt) -> f32 {
    let n = v.len();
    let mut d = dot(sub(p, v[0]), sub(p, v[0]));
    let mut s = 1.0f32;
    let mut j = n - 1;
    for i in 0..n {
        let e = sub(v[j], v[i]);
        let w = sub(p, v[i]);
        let t = (dot(w, e) / dot(e, e).max(1e-12)).clamp(0.0, 1.0);
        let b = sub(w, scale(e, t));
        d = d.min(dot(b, b));
        let c1 = p[1] >= v[i][1];
        let c2 = p[1] < v[j][1];
        let c3 = e[0] * w[1] > e[1] * w[0];
        if (c1 && c2 && c3) || (!c1 && !c2 && !c3) {
            s = -s;
        }
        j = i;
    }
    s * d.sqrt()
}

fn sub(a: Pt, b: Pt) -> Pt {
    [a[0] - b[0], a[1] - b[1]]
}
fn dot(a: Pt, b: Pt) -> f32 {
    a[0] * b[0] + a[1] * b[1]
}
fn scale(a: Pt, k: f32) -> Pt {
    [a[0] * k, a[1] * k]
}
fn len(a: Pt) -> f32 {
    dot(a, a).sqrt()
}

/// How a stroke end may be decorated by the serif style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    /// Decided by the end's shape: ball on a curve, bar or beak on a line.
    Auto,
    /// Never decorated (joins, crossbar ends).
    Plain,
}

/// A skeleton stroke in the unit box.
#[derive(Debug, Clone)]
struct Stroke {
    pts: Vec<Pt>,
    closed: bool,
    curved_start: bool,
    curved_end: bool,
    start: Term,
    end: Term,
}

/// Builds one stroke from lines and arcs.
struct B {
    s: Stroke,
    square: f32,
}

impl B {
    fn new(square: f32) -> B {
        B {
            s: Stroke {
                pts: Vec::new(),
                closed: false,
                curved_start: false,
                curved_end: false,
                start: Term::Auto,
                end: Term::Auto,
            },
            square,
        }
    }
    /// Appends a point (the first call sets the start).
    fn to(mut self, x: f32, y: f32) -> B {
        self.s.pts.push([x, y]);
        self.s.curved_end = false;
        self
    }
    /// Appends a super-elliptic arc from angle `a0` to `a1` (degrees; 0 is
    /// right, 90 is down, so increasing angles run clockwise on screen).
    fn arc(mut self, c: Pt, rx: f32, ry: f32, a0: f32, a1: f32) -> B {
        let first = self.s.pts.is_empty();
        let steps = ((a1 - a0).abs() / 6.0).ceil().max(2.0) as usize;
        let e = 2.0 / self.square;
        for i in 0..=steps {
            let a = (a0 + (a1 - a0) * i as f32 / steps as f32).to_radians();
            let (s, co) = a.sin_cos();
            self.s.pts.push([
                c[0] + rx * co.signum() * co.abs().powf(e),
                c[1] + ry * s.signum() * s.abs().powf(e),
            ]);
        }
        if first {
            self.s.curved_start = true;
        }
        self.s.curved_end = true;
        self
    }
    fn closed(mut self) -> B {
        self.s.closed = true;
        self
    }
    fn plain_start(mut self) -> B {
        self.s.start = Term::Plain;
        self
    }
    fn plain_end(mut self) -> B {
        self.s.end = Term::Plain;
        self
    }
    fn done(self) -> Stroke {
        self.s
    }
}

/// The skeleton of digit `d` in the unit box.
fn skeleton(d: u8, sq: f32) -> Vec<Stroke> {
    let b = || B::new(sq);
    match d {
        0 => vec![b()
            .arc([0.5, 0.3], 0.5, 0.3, 180.0, 360.0)
            .to(1.0, 0.7)
            .arc([0.5, 0.7], 0.5, 0.3, 0.0, 180.0)
            .to(0.0, 0.3)
            .closed()
            .done()],
        1 => vec![b().to(0.08, 0.3).to(0.62, 0.0).to(0.62, 1.0).done()],
        2 => vec![b()
            .arc([0.5, 0.27], 0.48, 0.27, 200.0, 375.0)
            .to(0.0, 1.0)
            .to(1.0, 1.0)
            .plain_end()
            .done()],
        3 => vec![
            b().arc([0.48, 0.25], 0.46, 0.25, 205.0, 450.0)
                .to(0.36, 0.5)
                .plain_end()
                .done(),
            b().arc([0.5, 0.75], 0.5, 0.25, 270.0, 515.0)
                .plain_start()
                .done(),
        ],
        4 => vec![b()
            .to(0.76, 1.0)
            .to(0.76, 0.0)
            .to(0.0, 0.7)
            .to(1.0, 0.7)
            .plain_end()
            .done()],
        5 => vec![b()
            .to(0.92, 0.0)
            .to(0.14, 0.0)
            .to(0.1, 0.46)
            .arc([0.5, 0.68], 0.5, 0.32, 218.0, 520.0)
            .done()],
        6 => vec![six(sq)],
        7 => vec![b()
            .to(0.0, 0.0)
            .to(1.0, 0.0)
            .to(0.38, 1.0)
            .plain_end()
            .done()],
        8 => vec![
            b().arc([0.5, 0.24], 0.42, 0.24, 90.0, 450.0)
                .closed()
                .done(),
            b().arc([0.5, 0.73], 0.5, 0.27, -90.0, 270.0)
                .closed()
                .done(),
        ],
        _ => {
            // 9 is a 6 turned half a turn.
            let mut s = six(sq);
            for p in &mut s.pts {
                *p = [1.0 - p[0], 1.0 - p[1]];
            }
            vec![s]
        }
    }
}

fn six(sq: f32) -> Stroke {
    B::new(sq)
        .arc([0.5, 0.5], 0.5, 0.5, 305.0, 180.0)
        .to(0.0, 0.68)
        .arc([0.5, 0.68], 0.5, 0.32, 180.0, 540.0)
        .plain_end()
        .done()
}

/// Seven-segment bits: a=1 (top), b=2 (top right), c=4 (bottom right),
/// d=8 (bottom), e=16 (bottom left), f=32 (top left), g=64 (middle).
const SEGMENTS: [u8; 10] = [0x3F, 0x06, 0x5B, 0x4F, 0x66, 0x6D, 0x7D, 0x07, 0x7F, 0x6F];

/// The look of every glyph on one plate.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    pub style: Style,
    /// Cell width of a normal digit, in digit heights.
    pub aspect: f32,
    /// Stroke radius (segment style: bar thickness), in digit heights.
    pub thick: f32,
    /// Thin stroke radius (serif contrast and serif bars).
    pub thin: f32,
    /// Superellipse exponent of bowls: 2 round, larger boxier.
    pub square: f32,
}

impl Look {
    /// Draws a look for `style`.
    pub fn sample(style: Style, rng: &mut Rng) -> Look {
        let (aspect, thick, square) = match style {
            Style::Sans => (rng.range_f32(0.5, 0.6), rng.range_f32(0.05, 0.075), 2.0),
            Style::Serif => (rng.range_f32(0.54, 0.64), rng.range_f32(0.055, 0.075), 2.0),
            Style::Condensed => (
                rng.range_f32(0.34, 0.42),
                rng.range_f32(0.04, 0.058),
                rng.range_f32(3.0, 4.5),
            ),
            Style::Segment => (rng.range_f32(0.48, 0.58), rng.range_f32(0.09, 0.125), 2.0),
            Style::Rounded => (rng.range_f32(0.56, 0.66), rng.range_f32(0.085, 0.11), 2.0),
        };
        let contrast = match style {
            Style::Serif => rng.range_f32(0.3, 0.45),
            _ => 1.0,
        };
        Look::new(style, aspect, thick, contrast, square)
    }

    /// The middle of the ranges `sample` draws from (specimens).
    pub fn typical(style: Style) -> Look {
        let (aspect, thick, square) = match style {
            Style::Sans => (0.55, 0.0625, 2.0),
            Style::Serif => (0.59, 0.065, 2.0),
            Style::Condensed => (0.38, 0.049, 3.75),
            Style::Segment => (0.53, 0.1075, 2.0),
            Style::Rounded => (0.61, 0.0975, 2.0),
        };
        let contrast = if style == Style::Serif { 0.375 } else { 1.0 };
        Look::new(style, aspect, thick, contrast, square)
    }

    /// A look whose thin strokes are `contrast` times the thick ones.
    fn new(style: Style, aspect: f32, thick: f32, contrast: f32, square: f32) -> Look {
        Look {
            style,
            aspect,
            thick,
            thin: thick * contrast,
            square,
        }
    }

    /// Cell width of digit `d` (a `1` is narrower).
    pub fn cell_width(&self, d: u8) -> f32 {
        let one = match self.style {
            Style::Sans | Style::Rounded => 0.62,
            Style::Serif => 0.7,
            Style::Condensed => 0.75,
            Style::Segment => 0.55,
        };
        self.aspect * if d == 1 { one } else { 1.0 }
    }

    /// The primitives of digit `d` in the cell `[x0, x0 + w] × [y0, y0 + 1]`.
    pub fn glyph(&self, d: u8, x0: f32, y0: f32, w: f32) -> Vec<Prim> {
        if self.style == Style::Segment {
            return self.segments(d, x0, y0, w);
        }
        let pad = self.thick;
        let place = |p: Pt| -> Pt {
            [
                x0 + pad + p[0] * (w - 2.0 * pad),
                y0 + pad + p[1] * (1.0 - 2.0 * pad),
            ]
        };
        let mut out = Vec::new();
        for s in skeleton(d % 10, self.square) {
            let pts: Vec<Pt> = s.pts.iter().map(|&p| place(p)).collect();
            for pair in pts.windows(2) {
                out.push(Prim::Capsule {
                    a: pair[0],
                    b: pair[1],
                    r: self.radius(pair[0], pair[1]),
                });
            }
            if self.style == Style::Serif && !s.closed && pts.len() >= 2 {
                let n = pts.len();
                self.terminal(&mut out, pts[0], pts[1], s.curved_start, s.start, y0, w);
                self.terminal(&mut out, pts[n - 1], pts[n - 2], s.curved_end, s.end, y0, w);
            }
        }
        out
    }

    /// Stroke radius of the segment `a`–`b`: even, except for serif, where
    /// vertical strokes are thick and horizontal ones thin.
    fn radius(&self, a: Pt, b: Pt) -> f32 {
        if self.style != Style::Serif {
            return self.thick;
        }
        let d = sub(b, a);
        let l = len(d);
        let v = if l > 0.0 { d[1].abs() / l } else { 1.0 };
        self.thin + (self.thick - self.thin) * v * v
    }

    /// Serif decoration of the stroke end `p` (`q` is its neighbour point).
    #[allow(clippy::too_many_arguments)]
    fn terminal(
        &self,
        out: &mut Vec<Prim>,
        p: Pt,
        q: Pt,
        curved: bool,
        term: Term,
        y0: f32,
        w: f32,
    ) {
        if term == Term::Plain {
            return;
        }
        if curved {
            out.push(Prim::Capsule {
                a: p,
                b: p,
                r: self.thick * 1.3,
            });
            return;
        }
        let d = sub(p, q);
        let l = len(d).max(1e-6);
        let (cx, cy) = (d[0].abs() / l, d[1].abs() / l);
        let r = (self.thin * 1.3).max(self.thick * 0.55);
        if cy > 0.75 {
            let h = (0.32 * w).max(0.08);
            out.push(Prim::Capsule {
                a: [p[0] - h, p[1]],
                b: [p[0] + h, p[1]],
                r,
            });
        } else if cx > 0.94 {
            let dy = if p[1] < y0 + 0.5 { 0.13 } else { -0.13 };
            out.push(Prim::Capsule {
                a: p,
                b: [p[0], p[1] + dy],
                r,
            });
        }
    }

    fn segments(&self, d: u8, x0: f32, y0: f32, w: f32) -> Vec<Prim> {
        let t = self.thick;
        let h = t / 2.0;
        let g = t * 0.18;
        let (xl, xr) = (x0 + h, x0 + w - h);
        let (yt, ym, yb) = (y0 + h, y0 + 0.5, y0 + 1.0 - h);
        let hbar = |y: f32| {
            let (a, b) = (xl + g, xr - g);
            Prim::Poly(vec![
                [a, y],
                [a + h, y - h],
                [b - h, y - h],
                [b, y],
                [b - h, y + h],
                [a + h, y + h],
            ])
        };
        let vbar = |x: f32, y1: f32, y2: f32| {
            let (a, b) = (y1 + g, y2 - g);
            Prim::Poly(vec![
                [x, a],
                [x + h, a + h],
                [x + h, b - h],
                [x, b],
                [x - h, b - h],
                [x - h, a + h],
            ])
        };
        let bits = SEGMENTS[(d % 10) as usize];
        let all = [
            hbar(yt),
            vbar(xr, yt, ym),
            vbar(xr, ym, yb),
            hbar(yb),
            vbar(xl, ym, yb),
            vbar(xl, yt, ym),
            hbar(ym),
        ];
        all.into_iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, p)| p)
            .collect()
    }
}
