//! The file level: TOML syntax, the `[pipeline]` table, and each
//! `[nodes.<name>]` table's name, `kind`, `seed` and parameters.
//!
//! Guarantee: produces one [`RawNode`] per declared node (in file order)
//! even when it has problems, so that references to it still resolve and
//! problems do not cascade; a node's `params` is `Some` only when its whole
//! table checked out.

use serde_json::Value as J;
use toml_edit::Document;

use super::error::{Code, Problem, Source};
use super::params::{Checker, Owner, RefSite};
use super::refs::valid_name;
use super::suggest::{did_you_mean, list};
use super::view::{Span, View};
use std::path::Path;

use crate::kind::{Kind, RequiredPath};

use super::CacheSettings;

/// A declared node, before references are resolved.
pub(crate) struct RawNode {
    pub name: String,
    pub name_span: Span,
    pub kind: Option<&'static dyn Kind>,
    /// Span of the `kind` value.
    pub kind_span: Option<Span>,
    /// Canonical parameters; `None` when the table has problems.
    pub params: Option<J>,
    pub seed: Option<u64>,
    /// The node's own `resources` (for Slurm jobs).
    pub resources: Option<super::Resources>,
    pub refs: Vec<RefSite>,
    /// The node's grid (`matrix`), when it has one that checked out.
    pub grid: Option<super::grid::RawGrid>,
    /// Per grid point (in the grid's order): its canonical parameters and
    /// seed (`None`: the node's); empty without a grid.
    pub points: Vec<PointParams>,
}

/// A grid point's canonical parameters and seed (`None`: the node's).
pub(crate) type PointParams = (J, Option<u64>);

/// The parsed file.
pub(crate) struct RawPipeline {
    pub name: Option<String>,
    pub seed: u64,
    pub cache: CacheSettings,
    pub executor: super::ExecutorSettings,
    pub device: crate::kind::DeviceChoice,
    pub nodes: Vec<RawNode>,
}

const TOP: &[&str] = &["pipeline", "cache", "executor", "nodes"];
pub(crate) const PIPELINE_KEYS: &[&str] = &["name", "seed", "device"];
pub(crate) const CACHE_KEYS: &[&str] = &["remote", "push"];
pub(crate) const NODE_KEYS: &[&str] = &["kind", "seed", "resources", "matrix"];

/// Parses and checks the file; problems are appended to `problems`.
/// With `paths` (the pipeline file's folder), the paths each node needs
/// are checked on disk too.
pub(crate) fn parse(
    src: &Source,
    text: &str,
    kinds: &[&'static dyn Kind],
    paths: Option<&Path>,
    problems: &mut Vec<Problem>,
) -> RawPipeline {
    let mut raw = RawPipeline {
        name: None,
        seed: 0,
        cache: CacheSettings::default(),
        executor: super::ExecutorSettings::default(),
        device: crate::kind::DeviceChoice::Auto,
        nodes: Vec::new(),
    };
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end().replace('\n', "; ");
            problems.push(
                Problem::new(src, Code::Syntax, format!("invalid TOML: {message}"))
                    .label(span, "here"),
            );
            return raw;
        }
    };
    let mut ck = Checker::new(src, text);
    ck.paths = paths;
    let root = View::of(doc.as_item(), &(0..0)).expect("the root is a table");
    for e in root.entries().unwrap_or_default() {
        match e.key {
            "pipeline" => pipeline_table(&mut ck, &e.value, &mut raw),
            "cache" => cache_table(&mut ck, &e.value, &mut raw.cache),
            "executor" => super::executor::executor_table(&mut ck, &e.value, &mut raw.executor),
            "nodes" => match e.value.entries() {
                Some(nodes) => {
                    for n in nodes {
                        if let Some(node) = node(&mut ck, n, kinds) {
                            raw.nodes.push(node);
                        }
                    }
                }
                None => ck.report(
                    Problem::new(
                        src,
                        Code::Type,
                        format!("`nodes` must be a table, found {}", e.value.found()),
                    )
                    .label(e.value.span.clone(), e.value.found())
                    .help("declare each node as a `[nodes.<name>]` table"),
                ),
            },
            other => {
                let what = if e.value.entries().is_some() {
                    "table"
                } else {
                    "key"
                };
                let help = match did_you_mean(other, TOP.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "a pipeline file has a `[pipeline]` table, `[cache]` and `[executor]` tables and `[nodes.<name>]` tables"
                        .to_string(),
                };
                ck.report(
                    Problem::new(
                        src,
                        Code::UnknownKey,
                        format!("unknown top-level {what} `{other}`"),
                    )
                    .label(e.key_span.clone(), format!("unknown {what}"))
                    .help(help),
                );
            }
        }
    }
    problems.append(&mut ck.problems);
    raw
}

fn pipeline_table(ck: &mut Checker<'_>, view: &View<'_>, raw: &mut RawPipeline) {
    let Some(entries) = view.entries() else {
        ck.report(
            Problem::new(
                ck.src,
                Code::Type,
                format!("`pipeline` must be a table, found {}", view.found()),
            )
            .label(view.span.clone(), view.found())
            .help("write `[pipeline]` followed by `name = \"…\"` and `seed = …`"),
        );
        return;
    };
    for e in entries {
        match e.key {
            "name" => match e.value.as_str() {
                Some(s) => raw.name = Some(s.to_string()),
                None => type_problem(ck, "name", "a string", &e.value),
            },
            "seed" => {
                if let Some(seed) = seed(ck, &e.value) {
                    raw.seed = seed;
                }
            }
            "device" => match e.value.as_str() {
                Some(s) => match crate::kind::DeviceChoice::parse(s) {
                    Some(d) => raw.device = d,
                    None => ck.report(
                        Problem::new(
                            ck.src,
                            Code::Choice,
                            format!(
                                "`device` is \"{s}\", not one of {}",
                                crate::kind::DEVICE_VALUES
                            ),
                        )
                        .label(e.value.span.clone(), "not a device")
                        .help("\"auto\" (the default) picks the best device this foldwise can use; \"cuda:N\" names the N-th GPU"),
                    ),
                },
                None => type_problem(ck, "device", "a string", &e.value),
            },
            _ => unknown_key(ck, "[pipeline]", PIPELINE_KEYS, &e),
        }
    }
}

/// The `[cache]` table: `remote` (a URL foldwise knows) and `push`.
fn cache_table(ck: &mut Checker<'_>, view: &View<'_>, cache: &mut CacheSettings) {
    let Some(entries) = view.entries() else {
        ck.report(
            Problem::new(
                ck.src,
                Code::Type,
                format!("`cache` must be a table, found {}", view.found()),
            )
            .label(view.span.clone(), view.found())
            .help(
                "write `[cache]` followed by `remote = \"s3://BUCKET/PREFIX\"` and `push = true`",
            ),
        );
        return;
    };
    for e in entries {
        match e.key {
            "remote" => match e.value.as_str() {
                Some(url) => match remote_url_problem(url) {
                    None => cache.remote = Some(url.to_string()),
                    Some(why) => ck.report(
                        Problem::new(ck.src, Code::Remote, format!("`remote` is not a remote foldwise knows: {why}"))
                            .label(e.value.span.clone(), "this remote")
                            .help("write `s3://BUCKET[/PREFIX]` (any S3-compatible service, configured by AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) or `file:///PATH` (a shared folder)"),
                    ),
                },
                None => type_problem(ck, "remote", "a string", &e.value),
            },
            "push" => match e.value.as_bool() {
                Some(b) => cache.push = b,
                None => type_problem(ck, "push", "a boolean", &e.value),
            },
            _ => unknown_key(ck, "[cache]", CACHE_KEYS, &e),
        }
    }
}

/// Why `url` is not a remote foldwise can open, if it is not.
pub fn remote_url_problem(url: &str) -> Option<String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        return bucket
            .is_empty()
            .then(|| "`s3://` needs a bucket: `s3://BUCKET[/PREFIX]`".to_string());
    }
    if let Some(path) = url.strip_prefix("file://") {
        return (!path.starts_with('/'))
            .then(|| "a folder remote needs an absolute path: `file:///PATH`".to_string());
    }
    Some("it must start with `s3://` or `file://`".to_string())
}

/// An unknown key in a fixed table (`[pipeline]`, `[cache]`,
/// `[executor]`, a `resources` table), with the nearest known one or the
/// list of them.
pub(super) fn unknown_key(
    ck: &mut Checker<'_>,
    table: &str,
    keys: &[&str],
    e: &super::view::Entry<'_>,
) {
    let help = match did_you_mean(e.key, keys.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("`{table}` takes {}", list(keys)),
    };
    ck.report(
        Problem::new(
            ck.src,
            Code::UnknownKey,
            format!("unknown key `{}` in `{table}`", e.key),
        )
        .label(e.key_span.clone(), "unknown key")
        .help(help),
    );
}

pub(super) fn type_problem(ck: &mut Checker<'_>, key: &str, expected: &str, view: &View<'_>) {
    ck.report(
        Problem::new(
            ck.src,
            Code::Type,
            format!(
                "wrong type for `{key}`: expected {expected}, found {}",
                view.found()
            ),
        )
        .label(view.span.clone(), view.found()),
    );
}

pub(super) fn seed(ck: &mut Checker<'_>, view: &View<'_>) -> Option<u64> {
    let Some(i) = view.as_int() else {
        type_problem(ck, "seed", "an integer >= 0", view);
        return None;
    };
    match u64::try_from(i) {
        Ok(s) => Some(s),
        Err(_) => {
            ck.report(
                Problem::new(
                    ck.src,
                    Code::Range,
                    format!("`seed` is out of range: expected an integer >= 0, found {i}"),
                )
                .label(view.span.clone(), "out of range"),
            );
            None
        }
    }
}

/// One `[nodes.<name>]` table: its name, `kind`, `seed` and parameters;
/// `None` only when it is not a table.
fn node(
    ck: &mut Checker<'_>,
    e: super::view::Entry<'_>,
    kinds: &[&'static dyn Kind],
) -> Option<RawNode> {
    let name = e.key.to_string();
    if !valid_name(&name) {
        ck.report(invalid_name(ck.src, &name, &e.key_span));
    }
    let Some(entries) = e.value.entries() else {
        ck.report(
            Problem::new(
                ck.src,
                Code::Type,
                format!("node `{name}` must be a table, found {}", e.value.found()),
            )
            .label(e.value.span.clone(), e.value.found())
            .help(format!(
                "declare it as `[nodes.{name}]` with `kind = \"…\"`"
            )),
        );
        return None;
    };
    let mut raw = RawNode {
        name: name.clone(),
        name_span: e.key_span.clone(),
        kind: None,
        kind_span: None,
        params: None,
        seed: None,
        resources: None,
        refs: Vec::new(),
        grid: None,
        points: Vec::new(),
    };
    match entries.iter().find(|x| x.key == "kind") {
        None => ck.report(missing_kind(ck.src, &name, &e.value.span, kinds)),
        Some(k) => match k.value.as_str() {
            None => type_problem(ck, "kind", "a string", &k.value),
            Some(s) => {
                raw.kind_span = Some(k.value.span.clone());
                raw.kind = find_kind(ck, s, &k.value.span, kinds);
            }
        },
    }
    if let Some(s) = entries.iter().find(|x| x.key == "seed") {
        raw.seed = seed(ck, &s.value);
    }
    if let Some(r) = entries.iter().find(|x| x.key == "resources") {
        raw.resources = Some(super::executor::resources(
            ck,
            &format!("[nodes.{name}] resources"),
            &r.value,
        ));
    }
    let mut grid_bad = false;
    if let (Some(kind), Some(m)) = (raw.kind, entries.iter().find(|x| x.key == "matrix")) {
        let (paths, grid) = super::grid::matrix(ck, &m.value, &e.value, kind);
        grid_bad = grid.is_none();
        ck.grid_paths = paths;
        raw.grid = grid;
    }
    if let Some(kind) = raw.kind {
        (raw.params, raw.refs, raw.points) =
            node_params(ck, &name, &e.value, kind, raw.grid.as_ref());
        if grid_bad {
            raw.params = None;
        }
    }
    ck.grid_paths.clear();
    Some(raw)
}

fn invalid_name(src: &Source, name: &str, span: &Span) -> Problem {
    Problem::new(
        src,
        Code::InvalidName,
        format!("invalid node name \"{name}\""),
    )
    .label(span.clone(), "not a valid node name")
    .help(
        "node names are made of letters, digits, `_`, `-`, `.`, `[` and `]` \
             (and must not be empty)",
    )
}

fn missing_kind(src: &Source, name: &str, header: &Span, kinds: &[&'static dyn Kind]) -> Problem {
    let kind_names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    Problem::new(
        src,
        Code::MissingKind,
        format!("node `{name}` has no `kind`"),
    )
    .label(header.clone(), "`kind` is required here")
    .help(format!("add `kind = \"…\"`, one of {}", list(&kind_names)))
}

/// The registered kind named `s`; an unknown name is a problem.
fn find_kind(
    ck: &mut Checker<'_>,
    s: &str,
    span: &Span,
    kinds: &[&'static dyn Kind],
) -> Option<&'static dyn Kind> {
    if let Some(kind) = kinds.iter().find(|x| x.name() == s) {
        return Some(*kind);
    }
    let kind_names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let known = format!("known kinds: {}", list(&kind_names));
    let help = match did_you_mean(s, kind_names.iter().copied()) {
        Some(m) => format!("did you mean \"{m}\"? ({known})"),
        None => known,
    };
    ck.report(
        Problem::new(
            ck.src,
            Code::UnknownKind,
            format!("unknown node kind \"{s}\""),
        )
        .label(span.clone(), "unknown kind")
        .help(help),
    );
    None
}

/// The canonical parameters of node `name` (table `view`) of `kind`, when
/// they check out against its schema and its own `check`, the references
/// found in them, and with a `grid`, each point's canonical parameters and
/// seed (the node's parameters are then its first point's).
fn node_params(
    ck: &mut Checker<'_>,
    name: &str,
    view: &View<'_>,
    kind: &'static dyn Kind,
    grid: Option<&super::grid::RawGrid>,
) -> (Option<J>, Vec<RefSite>, Vec<PointParams>) {
    let refs_before = ck.refs.len();
    let problems_before = ck.problems.len();
    let owner = Owner {
        what: format!("a `{}` node", kind.name()),
        extra: NODE_KEYS,
        path: String::new(),
    };
    let params = ck.table(view, kind.params(), &owner);
    let refs = ck.refs.split_off(refs_before);
    let Some(params) = params else {
        return (None, refs, Vec::new());
    };
    // Each grid point: the axis values substituted before `canonical`, as
    // if written in place.
    let points: Vec<PointParams> = match grid {
        None => vec![(kind.canonical(params), None)],
        Some(g) => (0..g.len())
            .map(|k| {
                let mut p = params.clone();
                let mut seed = None;
                for (a, axis) in g.axes.iter().enumerate() {
                    let v = g.value(k, a).clone();
                    if axis.path == "seed" {
                        seed = v.as_u64();
                    } else {
                        super::grid::substitute(&mut p, &axis.path, v);
                    }
                }
                (kind.canonical(p), seed)
            })
            .collect(),
    };
    // Where a problem at `path` points: the grid axis that sets it, else
    // the value written in place, else the node.
    let span_of = |path: &str| {
        grid.and_then(|g| g.axes.iter().find(|a| a.path == path))
            .map(|a| a.key_span.clone())
            .or_else(|| lookup(view, path))
            .unwrap_or_else(|| view.span.clone())
    };
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut clean = true;
    for (params, _) in &points {
        for issue in kind.check(params) {
            clean = false;
            let id = (issue.path.clone(), issue.message.clone());
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            ck.report(
                Problem::new(
                    ck.src,
                    Code::Check,
                    format!("node `{name}`: {}", issue.message),
                )
                .label(span_of(&issue.path), format!("`{}`", issue.path))
                .help_opt(issue.help.clone()),
            );
        }
    }
    let clean = clean && ck.problems.len() == problems_before;
    if let (true, Some(base)) = (clean, ck.paths) {
        let mut seen: Vec<String> = Vec::new();
        for (params, _) in &points {
            for need in kind.required_paths(params, base) {
                if let Some((message, help)) = path_problem(&need) {
                    let text = format!("node `{name}`: `{}`: {message}", need.param);
                    if seen.contains(&text) {
                        continue;
                    }
                    seen.push(text.clone());
                    ck.report(
                        Problem::new(ck.src, Code::Path, text)
                            .label(span_of(&need.param), format!("`{}`", need.param))
                            .help(help.unwrap_or_else(|| {
                                format!(
                                    "paths are relative to the pipeline file's folder, `{}`",
                                    base.display()
                                )
                            })),
                    );
                }
            }
        }
    }
    if !clean {
        return (None, refs, Vec::new());
    }
    let first = points[0].0.clone();
    let points = if grid.is_some() { points } else { Vec::new() };
    (Some(first), refs, points)
}

/// What is wrong with a path a node needs, and help when the default
/// (where relative paths start) is not the point; `None` when it is fine.
fn path_problem(need: &RequiredPath) -> Option<(String, Option<String>)> {
    use std::os::unix::fs::PermissionsExt;
    // Below the working folder, shown relative to it (as the user typed it).
    let cwd = std::env::current_dir().unwrap_or_default();
    let shown = need.path.strip_prefix(&cwd).unwrap_or(&need.path).display();
    let meta = match std::fs::metadata(&need.path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some((format!("{shown} does not exist"), None))
        }
        Err(e) => return Some((format!("{shown} cannot be read: {e}"), None)),
    };
    let readable = if meta.is_dir() {
        std::fs::read_dir(&need.path).map(|_| ())
    } else {
        std::fs::File::open(&need.path).map(|_| ())
    };
    if let Err(e) = readable {
        return Some((format!("{shown} cannot be read: {e}"), None));
    }
    if need.executable && (!meta.is_file() || meta.permissions().mode() & 0o111 == 0) {
        return Some((
            format!("{shown} is not an executable file"),
            Some("make it executable (`chmod +x`), or run it through its interpreter (`argv = [\"sh\", \"script.sh\"]`)".into()),
        ));
    }
    None
}

/// The span of the value at a dotted path (`model.heads`, `height.1` or
/// `height[1]`).
pub(super) fn lookup(view: &View<'_>, path: &str) -> Option<Span> {
    let normalized = path.replace('[', ".").replace(']', "");
    let mut at = view.clone();
    for seg in normalized.split('.').filter(|s| !s.is_empty()) {
        at = at.child(seg)?;
    }
    Some(at.span)
}
