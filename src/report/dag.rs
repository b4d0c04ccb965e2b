//! The instance graph as an inline SVG picture: a layered drawing, left to
//! right (a node's column is its longest path from a source; within a
//! column nodes are ordered by the mean row of their inputs), each node
//! coloured by what the last run did with it.

use std::fmt::Write as _;

use crate::config::Pipeline;

use super::html::esc;

/// What a node's box says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Computed by the last recorded run.
    Executed,
    /// Its artifact is in the cache and the last run reused it (or ran
    /// before).
    Cached,
    /// No artifact for its current key.
    NotRun,
}

impl Mark {
    pub fn label(self) -> &'static str {
        match self {
            Mark::Executed => "executed",
            Mark::Cached => "cached",
            Mark::NotRun => "not run",
        }
    }
    fn colors(self) -> (&'static str, &'static str) {
        match self {
            Mark::Executed => ("#fff7ed", "#ea580c"),
            Mark::Cached => ("#f0fdf4", "#16a34a"),
            Mark::NotRun => ("#f9fafb", "#9ca3af"),
        }
    }
}

const W: f64 = 150.0;
const H: f64 = 40.0;
const GAP_X: f64 = 60.0;
const GAP_Y: f64 = 14.0;
const PAD: f64 = 10.0;

/// Column and row of every instance.
pub fn layout(p: &Pipeline) -> Vec<(usize, usize)> {
    let n = p.instances.len();
    let mut col = vec![0usize; n];
    for (i, inst) in p.instances.iter().enumerate() {
        col[i] = inst
            .inputs
            .iter()
            .map(|e| col[e.from] + 1)
            .max()
            .unwrap_or(0);
    }
    let cols = col.iter().copied().max().map_or(0, |c| c + 1);
    let mut row = vec![0usize; n];
    for c in 0..cols {
        let mut members: Vec<(f64, usize)> = (0..n)
            .filter(|&i| col[i] == c)
            .map(|i| {
                let ins = &p.instances[i].inputs;
                let bary = if ins.is_empty() {
                    i as f64
                } else {
                    ins.iter().map(|e| row[e.from] as f64).sum::<f64>() / ins.len() as f64
                };
                (bary, i)
            })
            .collect();
        members.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (r, (_, i)) in members.into_iter().enumerate() {
            row[i] = r;
        }
    }
    col.into_iter().zip(row).collect()
}

/// The picture; `marks` is parallel to the pipeline's instances and
/// `seconds` gives each node's recorded time, when known.
pub fn svg(p: &Pipeline, marks: &[Mark], seconds: &[Option<f64>]) -> String {
    let pos = layout(p);
    let cols = pos.iter().map(|p| p.0 + 1).max().unwrap_or(1);
    let rows = pos.iter().map(|p| p.1 + 1).max().unwrap_or(1);
    let width = PAD * 2.0 + cols as f64 * W + (cols - 1) as f64 * GAP_X;
    let height = PAD * 2.0 + rows as f64 * H + (rows - 1) as f64 * GAP_Y;
    // Centre each column vertically.
    let col_rows: Vec<usize> = (0..cols)
        .map(|c| pos.iter().filter(|p| p.0 == c).count())
        .collect();
    let xy = |i: usize| {
        let (c, r) = pos[i];
        let offset = (rows - col_rows[c]) as f64 * (H + GAP_Y) / 2.0;
        (
            PAD + c as f64 * (W + GAP_X),
            PAD + offset + r as f64 * (H + GAP_Y),
        )
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="pipeline graph">"#
    );
    s.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7280"/></marker></defs>"##);
    for (i, inst) in p.instances.iter().enumerate() {
        let mut froms: Vec<usize> = inst.inputs.iter().map(|e| e.from).collect();
        froms.dedup();
        for f in froms {
            let (x0, y0) = xy(f);
            let (x1, y1) = xy(i);
            let (ax, ay, bx, by) = (x0 + W, y0 + H / 2.0, x1, y1 + H / 2.0);
            let mid = (ax + bx) / 2.0;
            let _ = write!(
                s,
                r##"<path d="M {ax} {ay} C {mid} {ay}, {mid} {by}, {bx} {by}" fill="none" stroke="#9ca3af" stroke-width="1.5" marker-end="url(#arrow)"/>"##
            );
        }
    }
    for (i, inst) in p.instances.iter().enumerate() {
        let (x, y) = xy(i);
        let mark = marks.get(i).copied().unwrap_or(Mark::NotRun);
        let (fill, stroke) = mark.colors();
        let dash = if mark == Mark::NotRun {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let kind = p.decl(inst).kind.name();
        let time = seconds
            .get(i)
            .copied()
            .flatten()
            .map(|t| format!(" · {}", super::html::secs(t)))
            .unwrap_or_default();
        let _ = write!(
            s,
            r##"<g class="node {cls}"><title>{name} ({kind}): {label}{time}</title><rect x="{x}" y="{y}" width="{W}" height="{H}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="2"{dash}/><text x="{tx}" y="{ty1}" text-anchor="middle" font-size="13" font-weight="600">{name}</text><text x="{tx}" y="{ty2}" text-anchor="middle" font-size="11" fill="#4b5563">{kind}{time}</text></g>"##,
            cls = mark.label().replace(' ', "-"),
            name = esc(&inst.name),
            label = mark.label(),
            tx = x + W / 2.0,
            ty1 = y + 17.0,
            ty2 = y + 32.0,
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_follow_the_longest_path() {
        let p = crate::config::testkinds::tiny();
        let pos = layout(&p);
        let cols: Vec<usize> = pos.iter().map(|p| p.0).collect();
        assert_eq!(cols, [0, 1, 2, 2, 3]);
        let marks = vec![Mark::Cached, Mark::Executed, Mark::NotRun, Mark::NotRun];
        let s = svg(&p, &marks, &[Some(1.5), None, None, None]);
        assert_eq!(s.matches("<rect").count(), 5);
        // One arrow per input edge; consecutive edges from one upstream share it.
        assert_eq!(s.matches("marker-end").count(), 8);
        assert!(s.contains("cnn[1]") && s.contains("class=\"node executed\""));
    }
}
