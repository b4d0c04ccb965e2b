//! Grids: a node's `matrix = { seed = [1, 2], "optimizer.lr" = [0.001, 0.003] }`
//! checked against its kind's schema, its points (one per combination) and
//! how grid values are written in instance names and matched in references.
//!
//! Guarantee: every axis names the node's `seed` or a parameter path of
//! its kind that holds no reference; every value is checked as if written
//! in place (same type, range and choice diagnostics, at the value); a
//! grid has at most [`MAX_INSTANCES`] points. Points come in row-major
//! order, the first axis slowest, and a point's values do not depend on the
//! other values of its axes, so adding a value leaves every earlier
//! point's parameters (hence its key) as they were.

use serde_json::Value as J;

use super::error::{Code, Problem};
use super::params::Checker;
use super::suggest::{did_you_mean, list};
use super::view::{Span, View};
use crate::kind::schema::{Param, Ty};
use crate::kind::Kind;

/// The most instances one node may have: its grid points × the grid
/// points it follows × its folds.
pub const MAX_INSTANCES: usize = 256;

/// One axis of a grid.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    /// `seed` or a dotted parameter path (`optimizer.lr`).
    pub path: String,
    /// How instance names show it: the last segment of `path`, or all of
    /// it when two axes would share the last segment.
    pub label: String,
    /// The checked values, canonical (integers made floats where a float
    /// is expected).
    pub values: Vec<J>,
    /// Span of the axis key.
    pub key_span: Span,
}

/// A node's checked grid.
#[derive(Debug, Clone)]
pub(crate) struct RawGrid {
    pub axes: Vec<Axis>,
    /// Span of the `matrix` value.
    pub span: Span,
}

impl RawGrid {
    /// The number of points.
    pub fn len(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }

    /// The value index on each axis of point `k` (the first axis slowest).
    pub fn coords(&self, mut k: usize) -> Vec<usize> {
        let mut out = vec![0; self.axes.len()];
        for (i, a) in self.axes.iter().enumerate().rev() {
            out[i] = k % a.values.len();
            k /= a.values.len();
        }
        out
    }

    /// The value of axis `a` at point `k`.
    pub fn value(&self, k: usize, a: usize) -> &J {
        &self.axes[a].values[self.coords(k)[a]]
    }
}

/// Checks the `matrix` table `view` of node `name` of `kind`. Returns the
/// paths of the axes found (so that a parameter given only by the grid is
/// not reported missing) and the grid when it checked out.
pub(crate) fn matrix(
    ck: &mut Checker<'_>,
    view: &View<'_>,
    node: &View<'_>,
    kind: &'static dyn Kind,
) -> (Vec<String>, Option<RawGrid>) {
    let Some(entries) = view.entries() else {
        ck.report(
            Problem::new(
                ck.src,
                Code::Type,
                format!("wrong type for `matrix`: expected a table of axes, found {}", view.found()),
            )
            .label(view.span.clone(), view.found())
            .help("write `matrix = { seed = [1, 2], \"optimizer.lr\" = [0.001, 0.003] }`: one list of values per parameter"),
        );
        return (Vec::new(), None);
    };
    let before = ck.problems.len();
    let mut axes: Vec<Axis> = Vec::new();
    let mut found: Vec<String> = Vec::new();
    let mut flat = Vec::new();
    flatten(&entries, "", &mut flat);
    for (path, key_span, value) in flat {
        found.push(path.clone());
        if let Some(a) = axis(ck, kind, &path, key_span, &value) {
            if let Some(prev) = axes.iter().find(|x| x.path == a.path) {
                ck.report(
                    Problem::new(
                        ck.src,
                        Code::Grid,
                        format!("`matrix` has the axis `{path}` twice"),
                    )
                    .label(a.key_span.clone(), "again here")
                    .label(prev.key_span.clone(), "first here")
                    .help("give each parameter one list of values"),
                );
                continue;
            }
            // A value also written in place would be overridden: ambiguous.
            if let Some(span) = super::parse::lookup(node, &path) {
                ck.report(
                    Problem::new(
                        ck.src,
                        Code::Grid,
                        format!("`{path}` is both set and a grid axis"),
                    )
                    .label(span, "set here")
                    .label(a.key_span.clone(), "and varied here")
                    .help(format!(
                        "remove `{path}` from the node's table or from its `matrix`"
                    )),
                );
                continue;
            }
            axes.push(a);
        }
    }
    if ck.problems.len() != before {
        return (found, None);
    }
    if axes.is_empty() {
        ck.report(
            Problem::new(ck.src, Code::Grid, "`matrix` has no axis")
                .label(view.span.clone(), "empty grid")
                .help("give at least one parameter a list of values, e.g. `matrix = { seed = [1, 2] }`, or remove `matrix`"),
        );
        return (found, None);
    }
    let n = axes
        .iter()
        .try_fold(1usize, |acc, a| acc.checked_mul(a.values.len()))
        .unwrap_or(usize::MAX);
    if n > MAX_INSTANCES {
        let sizes: Vec<String> = axes.iter().map(|a| a.values.len().to_string()).collect();
        ck.report(too_many(
            ck.src,
            view.span.clone(),
            &format!("{} points", sizes.join(" × ")),
            n,
        ));
        return (found, None);
    }
    let labels = labels(&axes);
    for (a, l) in axes.iter_mut().zip(labels) {
        a.label = l;
    }
    (
        found,
        Some(RawGrid {
            axes,
            span: view.span.clone(),
        }),
    )
}

/// The problem of a node that would have `n` instances.
pub(crate) fn too_many(src: &super::error::Source, span: Span, what: &str, n: usize) -> Problem {
    let n = if n == usize::MAX {
        "too many".to_string()
    } else {
        n.to_string()
    };
    Problem::new(
        src,
        Code::Grid,
        format!("this grid makes {n} instances of the node ({what}); the limit is {MAX_INSTANCES}"),
    )
    .label(span, format!("{n} instances"))
    .help(format!(
        "a node may have at most {MAX_INSTANCES} instances (grid points × the grid points it follows × folds): use fewer values, or split the grid over several nodes"
    ))
}

/// The axes of a matrix table: `"a.b" = [...]` and `a = { b = [...] }`
/// alike, as (dotted path, key span, value).
fn flatten<'a>(
    entries: &[super::view::Entry<'a>],
    prefix: &str,
    out: &mut Vec<(String, Span, View<'a>)>,
) {
    for e in entries {
        let path = if prefix.is_empty() {
            e.key.to_string()
        } else {
            format!("{prefix}.{}", e.key)
        };
        match e.value.entries() {
            Some(inner) => flatten(&inner, &path, out),
            None => out.push((path, e.key_span.clone(), e.value.clone())),
        }
    }
}

/// One axis: its parameter and its values, each checked in place.
fn axis(
    ck: &mut Checker<'_>,
    kind: &'static dyn Kind,
    path: &str,
    key_span: Span,
    value: &View<'_>,
) -> Option<Axis> {
    let (ty, param) = if path == "seed" {
        (None, None)
    } else {
        let (ty, param) = param_at(ck, kind, path, &key_span)?;
        (Some(ty), param)
    };
    if let Some(ty) = ty {
        if holds_ref(ty) {
            ck.report(
                Problem::new(
                    ck.src,
                    Code::Grid,
                    format!("`{path}` names other nodes, so it cannot be a grid axis"),
                )
                .label(key_span.clone(), "a reference parameter")
                .help("a grid varies a node's own values; to run over several upstream nodes, give each its own node, or gather them with \"name[*]\""),
            );
            return None;
        }
    }
    let Some(elements) = value.elements() else {
        ck.report(
            Problem::new(
                ck.src,
                Code::Type,
                format!(
                    "wrong type for grid axis `{path}`: expected a list of values, found {}",
                    value.found()
                ),
            )
            .label(value.span.clone(), value.found())
            .help(format!(
                "write `\"{path}\" = [a, b]`: the values to run, one instance each"
            )),
        );
        return None;
    };
    if elements.is_empty() {
        ck.report(
            Problem::new(
                ck.src,
                Code::Grid,
                format!("grid axis `{path}` has no value"),
            )
            .label(value.span.clone(), "empty list")
            .help(format!(
                "give `{path}` at least one value, or remove the axis"
            )),
        );
        return None;
    }
    let mut values = Vec::with_capacity(elements.len());
    let mut ok = true;
    for e in &elements {
        let v = match ty {
            None => super::parse::seed(ck, e).map(J::from),
            // With the parameter's doc as help, as when written in place.
            Some(ty) => ck.value(e, ty, path, path, param),
        };
        match v {
            Some(v) => values.push(v),
            None => ok = false,
        }
    }
    ok.then(|| Axis {
        path: path.to_string(),
        label: String::new(),
        values,
        key_span,
    })
}

/// The type of the parameter at dotted `path` of `kind`, and the parameter
/// itself unless `path` ends at an entry of a map (`params.NAME`), which
/// has no doc of its own; an unknown one is a problem at the axis key.
fn param_at(
    ck: &mut Checker<'_>,
    kind: &'static dyn Kind,
    path: &str,
    key_span: &Span,
) -> Option<(&'static Ty, Option<&'static Param>)> {
    let mut params: &'static [Param] = kind.params();
    let mut ty: Option<&'static Ty> = None;
    let mut param: Option<&'static Param> = None;
    let mut done = String::new();
    for seg in path.split('.') {
        let next = match ty {
            None => params
                .iter()
                .find(|p| p.name == seg)
                .map(|p| (&p.ty, Some(p))),
            Some(Ty::Table(ps)) => {
                params = ps;
                ps.iter().find(|p| p.name == seg).map(|p| (&p.ty, Some(p)))
            }
            Some(Ty::Map(elem)) if !seg.is_empty() => Some((*elem, None)),
            Some(_) => {
                ck.report(
                    Problem::new(
                        ck.src,
                        Code::UnknownKey,
                        format!("unknown grid axis `{path}`: `{done}` is not a table"),
                    )
                    .label(key_span.clone(), "unknown parameter")
                    .help(format!("`{done}` itself can be an axis")),
                );
                return None;
            }
        };
        match next {
            Some((t, p)) => (ty, param) = (Some(t), p),
            None => {
                let mut names: Vec<String> = params
                    .iter()
                    .map(|p| {
                        if done.is_empty() {
                            p.name.to_string()
                        } else {
                            format!("{done}.{}", p.name)
                        }
                    })
                    .collect();
                if done.is_empty() {
                    names.push("seed".into());
                }
                let help = match did_you_mean(path, names.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        let shown: Vec<&str> = names.iter().map(String::as_str).collect();
                        format!("a `{}` node's axes: {}", kind.name(), list(&shown))
                    }
                };
                ck.report(
                    Problem::new(
                        ck.src,
                        Code::UnknownKey,
                        format!(
                            "unknown grid axis `{path}`: a `{}` node has no parameter `{path}`",
                            kind.name()
                        ),
                    )
                    .label(key_span.clone(), "unknown parameter")
                    .help(help),
                );
                return None;
            }
        }
        if !done.is_empty() {
            done.push('.');
        }
        done.push_str(seg);
    }
    ty.map(|t| (t, param))
}

/// Whether a value of type `ty` holds a node reference (so it cannot be
/// a grid axis).
pub(crate) fn holds_ref(ty: &Ty) -> bool {
    match ty {
        Ty::Ref(_) => true,
        Ty::List(t) | Ty::Map(t) => holds_ref(t),
        Ty::Table(ps) => ps.iter().any(|p| holds_ref(&p.ty)),
        _ => false,
    }
}

/// Each axis's label: the last segment of its path, or the whole path
/// where two axes share a last segment.
fn labels(axes: &[Axis]) -> Vec<String> {
    let last = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
    axes.iter()
        .map(|a| {
            let l = last(&a.path);
            let shared = axes.iter().filter(|b| last(&b.path) == l).count() > 1;
            if shared {
                a.path.clone()
            } else {
                l
            }
        })
        .collect()
}

/// `params` with `value` at dotted `path` (tables made where missing).
pub(crate) fn substitute(params: &mut J, path: &str, value: J) {
    let mut at = params;
    let mut segs = path.split('.').peekable();
    while let Some(seg) = segs.next() {
        if !at.is_object() {
            *at = J::Object(Default::default());
        }
        let map = at.as_object_mut().expect("made an object");
        if segs.peek().is_none() {
            map.insert(seg.to_string(), value);
            return;
        }
        at = map
            .entry(seg.to_string())
            .or_insert(J::Object(Default::default()));
    }
}

/// A grid value as TOML writes it: `2`, `0.003`, `1.0`, `"resnet-mini"`,
/// `true`, `[1, 2]`, `{ a = 1 }`.
pub fn value_text(v: &J) -> String {
    match v {
        J::Null => "null".into(),
        J::Bool(b) => b.to_string(),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        J::String(s) => serde_json::to_string(s).unwrap_or_default(),
        J::Array(a) => format!(
            "[{}]",
            a.iter().map(value_text).collect::<Vec<_>>().join(", ")
        ),
        J::Object(m) => format!(
            "{{ {} }}",
            m.iter()
                .map(|(k, v)| format!("{k} = {}", value_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Whether the value written `text` in a reference selects the grid value
/// `v`: numbers by value (`0.003` = `3e-3`, `1` = `1.0`), strings with or
/// without quotes, anything else by its TOML form.
pub(crate) fn selects(text: &str, v: &J) -> bool {
    let text = text.trim();
    if let (Some(x), Ok(parsed)) = (v.as_f64(), text.parse::<toml_edit::Value>()) {
        let y = match parsed {
            toml_edit::Value::Integer(i) => Some(*i.value() as f64),
            toml_edit::Value::Float(f) => Some(*f.value()),
            _ => None,
        };
        return y == Some(x);
    }
    if let Some(s) = v.as_str() {
        return match text.parse::<toml_edit::Value>() {
            Ok(toml_edit::Value::String(t)) => t.value() == s,
            _ => text == s,
        };
    }
    let spaced: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let shown: String = value_text(v)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    spaced == shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_read_as_toml() {
        assert_eq!(value_text(&json!(2)), "2");
        assert_eq!(value_text(&json!(0.003)), "0.003");
        assert_eq!(value_text(&json!(1.0)), "1.0");
        assert_eq!(value_text(&json!("resnet-mini")), "\"resnet-mini\"");
        assert_eq!(value_text(&json!([1, 2])), "[1, 2]");
        assert_eq!(value_text(&json!(true)), "true");
    }

    #[test]
    fn selection_matches_by_value() {
        assert!(selects("0.003", &json!(0.003)));
        assert!(selects("3e-3", &json!(0.003)));
        assert!(selects("1", &json!(1.0)));
        assert!(!selects("2", &json!(1)));
        assert!(selects("resnet-mini", &json!("resnet-mini")));
        assert!(selects("\"resnet-mini\"", &json!("resnet-mini")));
        assert!(selects("true", &json!(true)));
        assert!(selects("[1,2]", &json!([1, 2])));
    }

    #[test]
    fn substitution_reaches_into_tables() {
        let mut p = json!({"optimizer": {"lr": 0.001, "kind": "adam"}, "epochs": 1});
        substitute(&mut p, "optimizer.lr", json!(0.003));
        substitute(&mut p, "tta.rounds", json!(2));
        assert_eq!(
            p,
            json!({"optimizer": {"lr": 0.003, "kind": "adam"}, "epochs": 1, "tta": {"rounds": 2}})
        );
    }

    #[test]
    fn points_are_row_major() {
        let axis = |path: &str, n: usize| Axis {
            path: path.into(),
            label: path.into(),
            values: (0..n).map(|i| json!(i)).collect(),
            key_span: 0..0,
        };
        let g = RawGrid {
            axes: vec![axis("a", 2), axis("b", 3)],
            span: 0..0,
        };
        assert_eq!(g.len(), 6);
        assert_eq!(g.coords(0), [0, 0]);
        assert_eq!(g.coords(1), [0, 1]);
        assert_eq!(g.coords(5), [1, 2]);
        assert_eq!(
            labels(&[
                axis("model.seed", 1),
                axis("seed", 1),
                axis("optimizer.lr", 1)
            ]),
            ["model.seed", "seed", "lr"]
        );
    }
}
