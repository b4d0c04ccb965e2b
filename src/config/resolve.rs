//! References, cycles, fan-out and expansion: turns checked [`RawNode`]s
//! into declared nodes and their instances.
//!
//! Guarantee: when no problem is reported, every edge points to an earlier
//! instance (instances are in a topological order that keeps file order
//! among independent nodes), every `Follow` of a fanned node or of a parts
//! node gives a per-fold instance with the matching fold, every `Follow`
//! or `Pick` of a grid node gives one instance per (selected) grid point
//! reading that point, every `name[each][*]` gives one instance per grid
//! point of `name` reading every instance (fold) of that point, instance
//! names are unique, no node has more than
//! [`MAX_INSTANCES`] instances, and the declared graph is acyclic.
//!
//! Grids are dimensions named by the node whose `matrix` made them (their
//! origin): a node runs over its own grid and over every grid it follows,
//! each once (a node following two nodes of the same grid runs once per
//! point, not per pair), then per fold.

use std::collections::HashMap;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::error::{Code, Problem, Source};
use super::grid::{selects, too_many, value_text, MAX_INSTANCES};
use super::parse::{RawNode, RawPipeline};
use super::suggest::{did_you_mean, list};
use super::{Edge, GridPoint, Instance, NodeDecl, RefMode};

/// A reference that names an existing node.
struct Link {
    /// Index of the reference site in the node's `refs`.
    site: usize,
    target: usize,
    mode: RefMode,
    /// Written `name[each][*]`: follows the target's grid points, each
    /// instance gathering every instance (fold) of its point.
    each: bool,
    /// False when the target is of a kind the parameter does not accept.
    ok: bool,
}

/// Each instance's grid points, as (origin node, point).
type Coords = Vec<Vec<(usize, usize)>>;

/// A grid a node runs over: the grid of node `origin`, the points kept
/// (all of them, or those a selection kept), in grid order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dim {
    origin: usize,
    points: Vec<usize>,
}

/// How many instances or parts each declared node has, and which links
/// can become edges.
struct Fanout {
    /// Instances of a node expanded per fold.
    fan: Vec<Option<usize>>,
    /// Parts a node's artifact offers.
    parts: Vec<Option<usize>>,
    /// Per node, per link: false when the link was reported as a problem.
    usable: Vec<Vec<bool>>,
    /// The grids each node runs over, followed ones first (in reference
    /// order), its own last.
    dims: Vec<Vec<Dim>>,
    /// Per node, per link: the target's grids as the link's selection
    /// leaves them (the target's own when it selects nothing).
    seen: Vec<Vec<Vec<Dim>>>,
    /// A node would have more than `MAX_INSTANCES` instances.
    too_many: bool,
}

impl Fanout {
    /// What one of `target`'s fold units is called in messages.
    fn unit(&self, target: usize) -> &'static str {
        if self.fan[target].is_some() {
            "instance"
        } else {
            "part"
        }
    }
}

/// Resolves references and expands nodes; `None` when problems were found
/// (they are appended to `problems`).
pub(crate) fn resolve(
    src: &Source,
    raw: &RawPipeline,
    problems: &mut Vec<Problem>,
) -> Option<(Vec<NodeDecl>, Vec<Instance>)> {
    let nodes = &raw.nodes;
    let links = find_links(src, nodes, problems);
    let cycles = cycles(src, nodes, &links);
    if !cycles.is_empty() {
        problems.extend(cycles);
        return None;
    }
    let order = topo_order(nodes.len(), &links);
    let fanout = fan_out(src, nodes, &links, &order, problems);
    if fanout.too_many {
        return None;
    }
    let (mut instances, first, coords) = expand(nodes, &order, &fanout);
    duplicates(src, nodes, &instances, problems);
    if !problems.is_empty() {
        return None;
    }
    for (i, inst) in instances.iter_mut().enumerate() {
        inst.inputs = edges(inst, &coords[i], &coords, nodes, &links, &fanout, &first);
    }
    let decls = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodeDecl {
            name: n.name.clone(),
            kind: n.kind.expect("no problems: every kind is known"),
            params: n.params.clone().expect("no problems: params are valid"),
            seed: n.seed.unwrap_or(raw.seed),
            fan: fanout.fan[i],
            parts: fanout.parts[i],
            resources: n.resources.clone(),
            grid: n
                .points
                .iter()
                .map(|(params, seed)| GridPoint {
                    params: params.clone(),
                    seed: seed.unwrap_or(n.seed.unwrap_or(raw.seed)),
                })
                .collect(),
        })
        .collect();
    Some((decls, instances))
}

/// The node behind each reference of each node; a reference naming no
/// node, or a node of a kind its parameter does not accept, is a problem.
fn find_links(src: &Source, nodes: &[RawNode], problems: &mut Vec<Problem>) -> Vec<Vec<Link>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        index.entry(n.name.as_str()).or_insert(i);
    }
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut links: Vec<Vec<Link>> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let mut out = Vec::new();
        for (site, r) in n.refs.iter().enumerate() {
            // An exact node name wins over the bracket forms.
            let found = match (index.get(r.text.as_str()), &r.spec) {
                (Some(&t), _) => Some((t, RefMode::Follow, false)),
                (None, Some(spec)) => index
                    .get(spec.target.as_str())
                    .map(|&t| (t, spec.mode, spec.each)),
                (None, None) => {
                    problems.push(bad_ref(src, n, site));
                    continue;
                }
            };
            let Some((target, mode, each)) = found else {
                problems.push(missing_node(src, n, site, &names));
                continue;
            };
            if each && mode != RefMode::Gather {
                problems.push(each_without_gather(src, n, site, &nodes[target].name));
                continue;
            }
            let mut ok = true;
            if let Some(kind) = nodes[target].kind {
                if !r.kinds.is_empty() && !r.kinds.contains(&kind.name()) {
                    ok = false;
                    problems.push(wrong_kind(src, nodes, n, site, &nodes[target], kind.name()));
                }
            }
            out.push(Link {
                site,
                target,
                mode,
                each,
                ok,
            });
        }
        links.push(out);
    }
    links
}

/// Instance and part counts, in topological `order`: a node following
/// per-fold nodes or parts runs once per fold; gathering or picking from a
/// single instance, a pick out of range and following different fold
/// counts are problems.
fn fan_out(
    src: &Source,
    nodes: &[RawNode],
    links: &[Vec<Link>],
    order: &[usize],
    problems: &mut Vec<Problem>,
) -> Fanout {
    let mut f = Fanout {
        fan: vec![None; nodes.len()],
        parts: vec![None; nodes.len()],
        usable: links
            .iter()
            .map(|l| l.iter().map(|x| x.ok).collect())
            .collect(),
        dims: vec![Vec::new(); nodes.len()],
        seen: links.iter().map(|l| vec![Vec::new(); l.len()]).collect(),
        too_many: false,
    };
    // Nodes whose instance count cannot be known (problems of their own, or
    // following such a node): references to them are not checked further,
    // so that one mistake gives one problem.
    let mut unknown: Vec<bool> = nodes.iter().map(|n| n.params.is_none()).collect();
    for &n in order {
        let node = &nodes[n];
        if let (Some(kind), Some(params)) = (node.kind, &node.params) {
            f.parts[n] = kind.parts(params);
        }
        let mut follows: Vec<(usize, usize)> = Vec::new(); // (count, link)
        let mut dims: Vec<(Dim, usize)> = Vec::new(); // (grid, link)
        for (li, l) in links[n].iter().enumerate() {
            if !l.ok || unknown[l.target] {
                if l.mode == RefMode::Follow || l.each {
                    unknown[n] = true;
                }
                continue;
            }
            let count = f.fan[l.target].or(f.parts[l.target]);
            let Some(seen) = select(nodes, node, l, &f.dims[l.target]) else {
                f.usable[n][li] = false;
                unknown[n] = true;
                problems.push(selection_problem(
                    src,
                    nodes,
                    node,
                    l,
                    &f.dims[l.target],
                    count,
                ));
                continue;
            };
            let gridded = !f.dims[l.target].is_empty();
            if l.mode == RefMode::Follow {
                follows.extend(count.map(|c| (c, li)));
            } else if let Some(p) =
                count_problem(src, nodes, node, l, count, gridded, f.unit(l.target))
            {
                f.usable[n][li] = false;
                problems.push(p);
                continue;
            }
            // `[each][*]` follows the grid points it gathers from.
            if l.mode != RefMode::Gather || l.each {
                dims.extend(seen.iter().map(|d| (d.clone(), li)));
            }
            f.seen[n][li] = seen;
        }
        let mut counts: Vec<usize> = follows.iter().map(|f| f.0).collect();
        counts.dedup();
        counts.sort_unstable();
        counts.dedup();
        match counts.as_slice() {
            [] => {}
            [c] => f.fan[n] = Some(*c),
            _ => problems.push(fan_mismatch(src, nodes, n, &links[n], &follows, &f)),
        }
        let mut mine: Vec<Dim> = Vec::new();
        for (d, li) in &dims {
            match mine.iter().find(|m| m.origin == d.origin) {
                None => mine.push(d.clone()),
                Some(m) if m == d => {}
                Some(_) => {
                    let r = &node.refs[links[n][*li].site];
                    problems.push(
                        Problem::new(
                            src,
                            Code::Grid,
                            format!(
                                "`{}` follows the grid of `{}` through references that keep different grid points",
                                node.name, nodes[d.origin].name
                            ),
                        )
                        .label(r.span.clone(), "other grid points than an earlier reference")
                        .help("select the same grid points in every reference that follows this grid, or gather with \"name[*]\""),
                    );
                }
            }
        }
        if let Some(g) = &node.grid {
            if node.params.is_some() {
                mine.push(Dim {
                    origin: n,
                    points: (0..g.len()).collect(),
                });
            }
        }
        let total = mine
            .iter()
            .map(|d| d.points.len())
            .chain(f.fan[n])
            .try_fold(1usize, |a, b| a.checked_mul(b))
            .unwrap_or(usize::MAX);
        if total > MAX_INSTANCES {
            f.too_many = true;
            let span = node
                .grid
                .as_ref()
                .map_or(node.name_span.clone(), |g| g.span.clone());
            let mut parts: Vec<String> = mine
                .iter()
                .map(|d| {
                    format!(
                        "{} points of `{}`'s grid",
                        d.points.len(),
                        nodes[d.origin].name
                    )
                })
                .collect();
            parts.extend(f.fan[n].map(|k| format!("{k} folds")));
            problems.push(too_many(src, span, &parts.join(" × "), total));
        }
        f.dims[n] = mine;
    }
    f
}

/// The grid axes of `dims` as (dim, axis, label): each axis's own label,
/// prefixed with its node's name where two grids share it.
fn dim_labels(nodes: &[RawNode], dims: &[Dim]) -> Vec<(usize, usize, String)> {
    let axes = |d: &Dim| {
        nodes[d.origin]
            .grid
            .as_ref()
            .map_or(&[][..], |g| &g.axes[..])
    };
    let mut out = Vec::new();
    for (di, d) in dims.iter().enumerate() {
        for (ai, a) in axes(d).iter().enumerate() {
            let shared = dims
                .iter()
                .enumerate()
                .any(|(dj, e)| dj != di && axes(e).iter().any(|b| b.label == a.label));
            let label = if shared {
                format!("{}.{}", nodes[d.origin].name, a.label)
            } else {
                a.label.clone()
            };
            out.push((di, ai, label));
        }
    }
    out
}

/// The target's grids `dims` as link `l`'s selection leaves them; `None`
/// when the selection is wrong (see [`selection_problem`]).
fn select(nodes: &[RawNode], node: &RawNode, l: &Link, dims: &[Dim]) -> Option<Vec<Dim>> {
    if l.each && dims.is_empty() {
        return None;
    }
    let r = &node.refs[l.site];
    let Some(spec) = &r.spec else {
        return Some(dims.to_vec());
    };
    let labels = dim_labels(nodes, dims);
    let mut out = dims.to_vec();
    for (label, text) in &spec.select {
        let &(di, ai, _) = labels.iter().find(|(_, _, x)| x == label)?;
        let g = nodes[dims[di].origin].grid.as_ref()?;
        out[di].points.retain(|&p| selects(text, g.value(p, ai)));
        if out[di].points.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// Why link `l`'s grid selection over the target's grids `dims` keeps
/// nothing: no grid (also for `[each]`, whose help depends on the
/// target's fold `count`), an unknown axis, or a value of no grid point.
fn selection_problem(
    src: &Source,
    nodes: &[RawNode],
    node: &RawNode,
    l: &Link,
    dims: &[Dim],
    count: Option<usize>,
) -> Problem {
    let r = &node.refs[l.site];
    let t = &nodes[l.target];
    let base = |message: String, label: &str| {
        Problem::new(src, Code::Grid, message).label(r.span.clone(), label.to_string())
    };
    if dims.is_empty() && l.each {
        let instead = match count {
            Some(_) => format!(
                "write \"{}[*]\" to gather every fold of `{}`",
                t.name, t.name
            ),
            None => format!("write \"{}\"", t.name),
        };
        return base(
            format!(
                "\"{}\" gathers each grid point of `{}`, but `{}` has no grid",
                r.text, t.name, t.name
            ),
            "no grid",
        )
        .help(format!(
            "{instead}; `[each]` is for nodes with a `matrix` and the nodes that follow them"
        ));
    }
    if dims.is_empty() {
        return base(
            format!("\"{}\" selects grid points of `{}`, but `{}` has no grid", r.text, t.name, t.name),
            "no grid",
        )
        .help(format!("write \"{}\"; a selection `[axis=value]` is for nodes with a `matrix` and the nodes that follow them", t.name));
    }
    let labels = dim_labels(nodes, dims);
    let names: Vec<&str> = labels.iter().map(|(_, _, x)| x.as_str()).collect();
    let spec = r.spec.as_ref().expect("only a parsed reference selects");
    let mut kept = dims.to_vec();
    for (label, text) in &spec.select {
        let Some(&(di, ai, _)) = labels.iter().find(|(_, _, x)| x == label) else {
            let help = match did_you_mean(label, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("`{}`'s grid axes: {}", t.name, list(&names)),
            };
            return base(
                format!("`{}` has no grid axis `{label}`", t.name),
                "unknown axis",
            )
            .help(help);
        };
        let g = nodes[dims[di].origin]
            .grid
            .as_ref()
            .expect("a dim has a grid");
        let before = kept[di].points.clone();
        kept[di].points.retain(|&p| selects(text, g.value(p, ai)));
        if kept[di].points.is_empty() {
            let mut values: Vec<String> =
                before.iter().map(|&p| value_text(g.value(p, ai))).collect();
            values.dedup();
            return base(
                format!(
                    "\"{}\" selects no grid point of `{}`: no `{label}` = {text}",
                    r.text, t.name
                ),
                "no such grid point",
            )
            .help(format!("`{label}` takes {}", values.join(", ")));
        }
    }
    base(
        format!("\"{}\" selects no grid point of `{}`", r.text, t.name),
        "no such grid point",
    )
}

/// The problem of a gathering or picking link `l` of `node` into a target
/// with `count` instances or parts (`None`: a single instance), if any.
fn count_problem(
    src: &Source,
    nodes: &[RawNode],
    node: &RawNode,
    l: &Link,
    count: Option<usize>,
    gridded: bool,
    unit: &str,
) -> Option<Problem> {
    let (t, r) = (&nodes[l.target], &node.refs[l.site]);
    match (l.mode, count) {
        (RefMode::Gather, None) if l.each => Some(
            Problem::new(
                src,
                Code::SingleInstance,
                format!(
                    "\"{}\" gathers the folds of each grid point of `{}`, but `{}` does not run per fold",
                    r.text, t.name, t.name
                ),
            )
            .label(r.span.clone(), "one instance per grid point")
            .help(format!(
                "write \"{}\" to follow each grid point, or \"{}[*]\" to gather every grid point",
                t.name, t.name
            )),
        ),
        (RefMode::Gather, None) if gridded => None,
        (RefMode::Pick(i), None) if gridded => Some(
            Problem::new(
                src,
                Code::SingleInstance,
                format!(
                    "\"{}\" picks fold {i} of `{}`, but `{}` does not run per fold",
                    r.text, t.name, t.name
                ),
            )
            .label(r.span.clone(), "no folds")
            .help(format!(
                "`[i]` picks a fold; select grid points by value, e.g. \"{}[seed=1]\", or gather them with \"{}[*]\"",
                t.name, t.name
            )),
        ),
        (RefMode::Gather | RefMode::Pick(_), None) => {
            let what = match l.mode {
                RefMode::Gather => "gathers every instance of",
                _ => "picks one instance of",
            };
            Some(
                Problem::new(
                    src,
                    Code::SingleInstance,
                    format!(
                        "\"{}\" {what} `{}`, but `{}` has a single instance",
                        r.text, t.name, t.name
                    ),
                )
                .label(r.span.clone(), "single instance")
                .help(format!(
                    "write \"{}\" to use it; `[*]` and `[i]` are for k-fold splits \
                     and the nodes that run once per fold",
                    t.name
                )),
            )
        }
        (RefMode::Pick(i), Some(c)) if i >= c => Some(
            Problem::new(
                src,
                Code::PickRange,
                format!(
                    "\"{}\" is out of range: `{}` has {c} {unit}s",
                    r.text, t.name
                ),
            )
            .label(r.span.clone(), format!("no {unit} {i}"))
            .help(format!("pick an index from 0 to {}", c.saturating_sub(1))),
        ),
        _ => None,
    }
}

/// Node `n` follows (`follows`: count, link) nodes of different fold counts.
fn fan_mismatch(
    src: &Source,
    nodes: &[RawNode],
    n: usize,
    links: &[Link],
    follows: &[(usize, usize)],
    f: &Fanout,
) -> Problem {
    let node = &nodes[n];
    let mut p = Problem::new(
        src,
        Code::FanMismatch,
        format!(
            "`{}` follows nodes with different numbers of folds",
            node.name
        ),
    )
    .help(
        "a node runs once per fold of the nodes it follows, so their counts must \
         agree; gather one of them with \"name[*]\" or pick a fold with \"name[i]\"",
    );
    for &(c, li) in follows {
        let l = &links[li];
        p = p.label(
            node.refs[l.site].span.clone(),
            format!("`{}` has {c} {}s", nodes[l.target].name, f.unit(l.target)),
        );
    }
    p
}

/// The instances of the declared nodes in `order` (one per grid point and
/// fold), without their inputs, the index of each node's first one, and
/// each instance's grid points as (origin, point).
fn expand(nodes: &[RawNode], order: &[usize], f: &Fanout) -> (Vec<Instance>, Vec<usize>, Coords) {
    let mut first = vec![0usize; nodes.len()];
    let mut instances: Vec<Instance> = Vec::new();
    let mut coords: Coords = Vec::new();
    for &n in order {
        first[n] = instances.len();
        let dims = &f.dims[n];
        let labels = dim_labels(nodes, dims);
        let combos: usize = dims.iter().map(|d| d.points.len()).product();
        for c in 0..combos {
            // Row-major over the grids, the first slowest.
            let mut at = Vec::with_capacity(dims.len());
            let mut rest = c;
            for d in dims.iter().rev() {
                at.push((d.origin, d.points[rest % d.points.len()]));
                rest /= d.points.len();
            }
            at.reverse();
            let grid: Vec<(String, serde_json::Value)> = labels
                .iter()
                .map(|(di, ai, label)| {
                    let g = nodes[dims[*di].origin]
                        .grid
                        .as_ref()
                        .expect("a dim has a grid");
                    (label.clone(), g.value(at[*di].1, *ai).clone())
                })
                .collect();
            let mut name = nodes[n].name.clone();
            if !grid.is_empty() {
                let shown: Vec<String> = grid
                    .iter()
                    .map(|(l, v)| format!("{l}={}", value_text(v)))
                    .collect();
                name = format!("{name}[{}]", shown.join(","));
            }
            let point = at.iter().find(|(o, _)| *o == n).map(|&(_, p)| p);
            let folds: Vec<Option<usize>> = match f.fan[n] {
                Some(k) => (0..k).map(Some).collect(),
                None => vec![None],
            };
            for fold in folds {
                instances.push(Instance {
                    name: match fold {
                        Some(i) => format!("{name}[{i}]"),
                        None => name.clone(),
                    },
                    node: n,
                    fold,
                    point,
                    grid: grid.clone(),
                    inputs: Vec::new(),
                });
                coords.push(at.clone());
            }
        }
    }
    (instances, first, coords)
}

/// The position of the grid points `at` among the combinations of `dims`
/// (`None` when `at` lacks one of them).
fn combo(dims: &[Dim], at: &[(usize, usize)]) -> Option<usize> {
    let mut c = 0;
    for d in dims {
        let p = at.iter().find(|x| x.0 == d.origin)?.1;
        c = c * d.points.len() + d.points.iter().position(|&q| q == p)?;
    }
    Some(c)
}

/// The input edges of `inst` (at grid points `at`), in reference order:
/// which instance (and part) each usable link reaches from this
/// instance's grid points and fold.
fn edges(
    inst: &Instance,
    at: &[(usize, usize)],
    coords: &[Vec<(usize, usize)>],
    nodes: &[RawNode],
    links: &[Vec<Link>],
    f: &Fanout,
    first: &[usize],
) -> Vec<Edge> {
    let n = inst.node;
    let mut out = Vec::new();
    for (li, l) in links[n].iter().enumerate() {
        if !f.usable[n][li] {
            continue;
        }
        let param = nodes[n].refs[l.site].param.clone();
        let t = l.target;
        let edge = |from: usize, part: Option<usize>| Edge {
            param: param.clone(),
            from,
            part,
            mode: l.mode,
        };
        let per = f.fan[t].unwrap_or(1);
        if l.each {
            // Every instance (fold) of the target at this instance's grid
            // points, whatever this instance's own fold.
            let Some(c) = combo(&f.dims[t], at) else {
                continue;
            };
            let base = first[t] + c * per;
            out.extend((base..base + per).map(|i| edge(i, None)));
            continue;
        }
        if l.mode == RefMode::Gather {
            // Every instance of the target at the grid points kept.
            let kept = &f.seen[n][li];
            let count: usize = f.dims[t].iter().map(|d| d.points.len()).product::<usize>() * per;
            for (i, c) in coords.iter().enumerate().skip(first[t]).take(count) {
                let inside = kept.iter().all(|d| {
                    c.iter()
                        .any(|&(o, p)| o == d.origin && d.points.contains(&p))
                });
                if inside {
                    out.push(edge(i, None));
                }
            }
            continue;
        }
        let Some(c) = combo(&f.dims[t], at) else {
            continue;
        };
        let base = first[t] + c * per;
        match (l.mode, f.fan[t], f.parts[t]) {
            (RefMode::Follow, Some(_), _) => out.push(edge(base + inst.fold.unwrap_or(0), None)),
            (RefMode::Follow, None, Some(_)) => out.push(edge(base, inst.fold)),
            (RefMode::Follow, None, None) => out.push(edge(base, None)),
            (RefMode::Pick(i), Some(_), _) => out.push(edge(base + i, None)),
            (RefMode::Pick(i), None, _) => out.push(edge(base, Some(i))),
            (RefMode::Gather, _, _) => unreachable!("gathered above"),
        }
    }
    out
}

fn bad_ref(src: &Source, n: &RawNode, site: usize) -> Problem {
    let r = &n.refs[site];
    Problem::new(
        src,
        Code::BadRef,
        format!("malformed reference \"{}\" in `{}`", r.text, r.param),
    )
    .label(r.span.clone(), "not a node reference")
    .help(
        "write \"name\" (the node, or the same fold of a per-fold node), \
         \"name[*]\" (every instance), \"name[2]\" (one instance or part) \
         or \"name[seed=2]\" (grid points by value)",
    )
}

/// `name[each]` or `name[each][i]`: `[each]` only comes before `[*]`.
fn each_without_gather(src: &Source, n: &RawNode, site: usize, target: &str) -> Problem {
    let r = &n.refs[site];
    let instead = match r.spec.as_ref().map(|s| s.mode) {
        Some(RefMode::Pick(i)) => {
            format!("write \"{target}[{i}]\" to pick fold {i} of every grid point of `{target}`")
        }
        _ => format!("write \"{target}\" to follow every grid point of `{target}` (and its folds)"),
    };
    Problem::new(
        src,
        Code::Grid,
        format!("\"{}\": `[each]` is only written before `[*]`", r.text),
    )
    .label(r.span.clone(), "`[each]` without `[*]`")
    .help(format!(
        "{instead}, or \"{target}[each][*]\" to gather the folds of each grid point"
    ))
}

fn missing_node(src: &Source, n: &RawNode, site: usize, names: &[&str]) -> Problem {
    let r = &n.refs[site];
    let target = r
        .spec
        .as_ref()
        .map_or(r.text.as_str(), |s| s.target.as_str());
    let help = match did_you_mean(target, names.iter().copied().filter(|&x| x != n.name)) {
        Some(s) => format!("did you mean \"{s}\"?"),
        None if names.is_empty() => "no nodes are declared".to_string(),
        None => format!("declared nodes: {}", list(names)),
    };
    Problem::new(
        src,
        Code::MissingNode,
        format!("`{}` refers to a missing node `{target}`", r.param),
    )
    .label(r.span.clone(), "no such node")
    .help(help)
}

fn wrong_kind(
    src: &Source,
    nodes: &[RawNode],
    n: &RawNode,
    site: usize,
    target: &RawNode,
    kind: &str,
) -> Problem {
    let r = &n.refs[site];
    let wanted = r.kinds.join(" or ");
    let fitting: Vec<&str> = nodes
        .iter()
        .filter(|m| m.kind.is_some_and(|k| r.kinds.contains(&k.name())))
        .map(|m| m.name.as_str())
        .collect();
    let help = if fitting.is_empty() {
        format!(
            "declare {} {wanted} node for `{}`",
            article(&wanted),
            r.param
        )
    } else {
        format!("`{}` can refer to {}", r.param, list(&fitting))
    };
    let mut p = Problem::new(
        src,
        Code::WrongKind,
        format!(
            "`{}` is {} {kind} node, but `{}` needs {} {wanted} node",
            target.name,
            article(kind),
            r.param,
            article(&wanted)
        ),
    )
    .label(r.span.clone(), format!("{} {kind} node", article(kind)))
    .help(help);
    if let Some(span) = &target.kind_span {
        p = p.label(span.clone(), format!("`{}` is declared here", target.name));
    }
    p
}

fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// One problem per strongly connected component that holds a cycle.
fn cycles(src: &Source, nodes: &[RawNode], links: &[Vec<Link>]) -> Vec<Problem> {
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    for i in 0..nodes.len() {
        g.add_node(i);
    }
    for (n, ls) in links.iter().enumerate() {
        for l in ls {
            g.add_edge(NodeIndex::new(n), NodeIndex::new(l.target), ());
        }
    }
    let mut sccs: Vec<Vec<usize>> = tarjan_scc(&g)
        .into_iter()
        .map(|c| {
            let mut c: Vec<usize> = c.into_iter().map(|i| i.index()).collect();
            c.sort_unstable();
            c
        })
        .filter(|c| c.len() > 1 || links[c[0]].iter().any(|l| l.target == c[0]))
        .collect();
    sccs.sort();
    sccs.into_iter()
        .map(|scc| cycle_problem(src, nodes, links, &scc))
        .collect()
}

fn cycle_problem(src: &Source, nodes: &[RawNode], links: &[Vec<Link>], scc: &[usize]) -> Problem {
    // Shortest way round from the earliest declared node, by BFS.
    let start = scc[0];
    let mut prev: HashMap<usize, (usize, usize)> = HashMap::new(); // node -> (from, link)
    let mut queue = std::collections::VecDeque::from([start]);
    let mut steps: Vec<(usize, usize)> = Vec::new(); // (node, link) along the cycle
    'bfs: while let Some(n) = queue.pop_front() {
        for (li, l) in links[n].iter().enumerate() {
            if !scc.contains(&l.target) {
                continue;
            }
            if l.target == start {
                steps.push((n, li));
                let mut at = n;
                while at != start {
                    let (from, via) = prev[&at];
                    steps.push((from, via));
                    at = from;
                }
                steps.reverse();
                break 'bfs;
            }
            if l.target != start && !prev.contains_key(&l.target) {
                prev.insert(l.target, (n, li));
                queue.push_back(l.target);
            }
        }
    }
    let label = |(n, li): (usize, usize)| {
        let l = &links[n][li];
        (
            nodes[n].refs[l.site].span.clone(),
            format!("`{}` needs `{}`", nodes[n].name, nodes[l.target].name),
        )
    };
    let mut p = if steps.len() == 1 {
        Problem::new(
            src,
            Code::Cycle,
            format!("node `{}` refers to itself", nodes[start].name),
        )
        .help("a node can only use nodes upstream of it")
    } else {
        // `steps` follows "needs"; show the data flow, upstream first.
        let path: Vec<String> = [start]
            .into_iter()
            .chain(steps.iter().rev().map(|&(n, _)| n))
            .map(|n| format!("`{}`", nodes[n].name))
            .collect();
        Problem::new(src, Code::Cycle, format!("cycle: {}", path.join(" → ")))
            .help("each node feeds the next, back to the first; remove one of these references")
    };
    for &s in &steps {
        let (span, text) = label(s);
        p = p.label(span, text);
    }
    p
}

/// Kahn's algorithm, always taking the earliest declared ready node.
fn topo_order(n: usize, links: &[Vec<Link>]) -> Vec<usize> {
    let mut missing: Vec<usize> = links
        .iter()
        .map(|ls| {
            let mut t: Vec<usize> = ls.iter().map(|l| l.target).collect();
            t.sort_unstable();
            t.dedup();
            t.len()
        })
        .collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ls) in links.iter().enumerate() {
        let mut t: Vec<usize> = ls.iter().map(|l| l.target).collect();
        t.sort_unstable();
        t.dedup();
        for t in t {
            users[t].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| missing[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            missing[u] -= 1;
            if missing[u] == 0 {
                ready.insert(u);
            }
        }
    }
    order
}

/// Instance names must be unique after expansion.
fn duplicates(
    src: &Source,
    nodes: &[RawNode],
    instances: &[Instance],
    problems: &mut Vec<Problem>,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for inst in instances {
        let Some(&other) = seen.get(inst.name.as_str()) else {
            seen.insert(&inst.name, inst.node);
            continue;
        };
        if other == inst.node {
            continue;
        }
        // Label the node literally named so first, then the expanded one.
        let (a, b) = if nodes[other].name == inst.name {
            (other, inst.node)
        } else {
            (inst.node, other)
        };
        let mut p = Problem::new(
            src,
            Code::Duplicate,
            format!("two node instances are named `{}`", inst.name),
        )
        .help("rename one of the nodes");
        p = p.label(nodes[a].name_span.clone(), "declared here");
        p = p.label(
            nodes[b].name_span.clone(),
            format!(
                "runs once per fold, as `{}[0]`, `{}[1]`, …",
                nodes[b].name, nodes[b].name
            ),
        );
        problems.push(p);
    }
}
