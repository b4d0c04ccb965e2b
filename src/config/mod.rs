//! Pipeline files: parse TOML (keeping spans), validate against the kinds'
//! schemas, resolve references, expand folds, and produce a span-free
//! [`Pipeline`]. Nothing outside this module sees TOML.
//!
//! Guarantee: `load` either returns a pipeline whose every node has
//! canonical parameters (defaults filled in, refs resolved, acyclic) or
//! reports every problem found, each with a labelled span in the file.
//! It never panics on any input.
//!
//! The stages, one file each: `parse` (file level: syntax, `[pipeline]`,
//! node names, `kind`, `seed`) → `params` (schema walk into canonical JSON,
//! collecting references) → `resolve` (references, cycles, fan-out,
//! expansion, topological order); `view` hides toml_edit's shapes,
//! `refs` the reference syntax, `suggest` the "did you mean", `error` the
//! diagnostics and their codes; `json_schema` describes the format to
//! editors.

mod error;
mod executor;
mod grid;
mod json_schema;
mod params;
mod parse;
mod refs;
mod resolve;
mod suggest;
#[cfg(test)]
pub(crate) mod testkinds;
#[cfg(test)]
mod tests;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::NamedSource;
use serde_json::Value;

use crate::kind::Kind;

pub use error::{render_diagnostic, Code, ConfigError, Problem};
pub use executor::{ExecutorKind, ExecutorSettings, Resources};
pub use grid::{value_text, MAX_INSTANCES};
pub use json_schema::json_schema;
pub use parse::remote_url_problem;

/// A validated pipeline.
pub struct Pipeline {
    pub name: String,
    pub seed: u64,
    /// The pipeline file (as given).
    pub path: PathBuf,
    /// Folder of the pipeline file; relative paths in parameters start here.
    pub base_dir: PathBuf,
    /// Nodes as declared, in file order.
    pub nodes: Vec<NodeDecl>,
    /// Expanded node instances in a topological order (inputs first).
    pub instances: Vec<Instance>,
    /// The `[cache]` table: where the remote cache is, and whether a run
    /// pushes what it computes. Never part of a key.
    pub cache: CacheSettings,
    /// The `[executor]` table. Never part of a key.
    pub executor: ExecutorSettings,
    /// `[pipeline] device`: where models train and predict. Never part of
    /// a key.
    pub device: crate::kind::DeviceChoice,
}

/// The `[cache]` table of a pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSettings {
    /// `s3://bucket/prefix` or `file:///path`, checked for its form.
    pub remote: Option<String>,
    /// Push every artifact a run computes to the remote.
    pub push: bool,
}

/// A declared node.
pub struct NodeDecl {
    pub name: String,
    pub kind: &'static dyn Kind,
    /// Canonical parameters: defaults filled in, integers coerced where a
    /// float is expected, `Kind::canonical` applied. Reference strings stay
    /// as written.
    pub params: Value,
    /// The node's seed (its own `seed` key, else the pipeline's).
    pub seed: u64,
    /// Number of instances when the node is expanded per fold.
    pub fan: Option<usize>,
    /// Number of parts its artifact offers (`Kind::parts`).
    pub parts: Option<usize>,
    /// Its own `resources` for Slurm jobs (over `[executor] resources`).
    pub resources: Option<Resources>,
    /// Its grid points (`matrix`), in the grid's order; empty without a
    /// grid. `params` and `seed` above are then the first point's.
    pub grid: Vec<GridPoint>,
}

/// One point of a node's grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GridPoint {
    /// Canonical parameters, the point's axis values substituted.
    pub params: Value,
    pub seed: u64,
}

/// One instance of a node: the node itself, or one fold, grid point, or
/// grid point and fold of an expanded node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `name`, `name[i]`, `name[seed=2,lr=0.003]` or
    /// `name[seed=2,lr=0.003][i]`.
    pub name: String,
    /// Index into `Pipeline::nodes`.
    pub node: usize,
    /// The fold this instance follows.
    pub fold: Option<usize>,
    /// The point of its node's own grid (index into `NodeDecl::grid`).
    pub point: Option<usize>,
    /// The grid values it runs with or follows, as (label, value) in the
    /// order its name shows them; empty outside any grid.
    pub grid: Vec<(String, Value)>,
    /// Inputs in parameter order (a gathered reference gives several edges
    /// with the same `param`).
    pub inputs: Vec<Edge>,
}

/// A dependency of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Dotted parameter path the reference was written at (`data`,
    /// `inputs.fold`, `members`).
    pub param: String,
    /// Index into `Pipeline::instances`.
    pub from: usize,
    /// The part of `from`'s artifact used (fold i of a k-fold split).
    pub part: Option<usize>,
    /// How the reference was written.
    pub mode: RefMode,
}

/// How a reference was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefMode {
    /// `"x"`: the plain node (or, for a fanned node, the same fold).
    Follow,
    /// `"x[*]"`: every instance (or the whole artifact of a parts node).
    Gather,
    /// `"x[i]"`: one instance or part.
    Pick(usize),
}

impl Pipeline {
    pub fn decl(&self, inst: &Instance) -> &NodeDecl {
        &self.nodes[inst.node]
    }
    /// The canonical parameters `inst` runs with: its grid point's, else
    /// its node's.
    pub fn params(&self, inst: &Instance) -> &Value {
        let decl = self.decl(inst);
        match inst.point {
            Some(k) => &decl.grid[k].params,
            None => &decl.params,
        }
    }
    /// The seed `inst` runs with: its grid point's, else its node's.
    pub fn seed(&self, inst: &Instance) -> u64 {
        let decl = self.decl(inst);
        match inst.point {
            Some(k) => decl.grid[k].seed,
            None => decl.seed,
        }
    }
    pub fn instance(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.name == name)
    }
    /// The declared node named `name`.
    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

impl std::fmt::Debug for NodeDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDecl")
            .field("name", &self.name)
            .field("kind", &self.kind.name())
            .field("params", &self.params)
            .field("seed", &self.seed)
            .field("fan", &self.fan)
            .field("parts", &self.parts)
            .field("grid", &self.grid)
            .finish()
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("seed", &self.seed)
            .field("path", &self.path)
            .field("base_dir", &self.base_dir)
            .field("nodes", &self.nodes)
            .field("instances", &self.instances)
            .finish()
    }
}

/// Reads and validates the pipeline file at `path`. The file name in
/// diagnostics is `path` as given; relative paths in parameters start at
/// its folder. `kinds` is the registry of node kinds the file may use
/// (`nodes::KINDS` for foldwise's own).
pub fn load(path: &Path, kinds: &[&'static dyn Kind]) -> Result<Pipeline, ConfigError> {
    load_file(path, kinds, false)
}

/// [`load`], and every path a node needs (data folders and label files,
/// a command's `deps` and program) checked on disk: each missing or
/// unreadable one is a problem at its parameter, beside all the others.
/// What `foldwise check` runs.
pub fn load_checked(path: &Path, kinds: &[&'static dyn Kind]) -> Result<Pipeline, ConfigError> {
    load_file(path, kinds, true)
}

fn load_file(
    path: &Path,
    kinds: &[&'static dyn Kind],
    check_paths: bool,
) -> Result<Pipeline, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.display().to_string();
    load_text(&name, &src, &base_dir, kinds, check_paths)
}

/// Validates pipeline text; `name` is the file name shown in diagnostics
/// (and, by its stem, the default pipeline name).
pub fn load_str(
    name: &str,
    src: &str,
    base_dir: &Path,
    kinds: &[&'static dyn Kind],
) -> Result<Pipeline, ConfigError> {
    load_text(name, src, base_dir, kinds, false)
}

fn load_text(
    name: &str,
    src: &str,
    base_dir: &Path,
    kinds: &[&'static dyn Kind],
    check_paths: bool,
) -> Result<Pipeline, ConfigError> {
    let source: error::Source = NamedSource::new(name, Arc::<str>::from(src));
    let mut problems = Vec::new();
    let paths = check_paths.then_some(base_dir);
    let raw = parse::parse(&source, src, kinds, paths, &mut problems);
    if raw.nodes.is_empty() && problems.is_empty() {
        problems.push(
            Problem::new(&source, Code::Empty, "the pipeline declares no node")
                .label(0..src.len(), "no `[nodes.<name>]` table")
                .help("declare at least one node, e.g. `[nodes.plates]` with `kind = \"synthetic\"`; `foldwise kinds` lists the node kinds"),
        );
    }
    let resolved = if problems.iter().any(|p| p.code == Code::Syntax) {
        None
    } else {
        resolve::resolve(&source, &raw, &mut problems)
    };
    match resolved {
        Some((nodes, instances)) if problems.is_empty() => Ok(Pipeline {
            name: raw.name.clone().unwrap_or_else(|| {
                Path::new(name)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| name.to_string())
            }),
            seed: raw.seed,
            path: PathBuf::from(name),
            base_dir: base_dir.to_path_buf(),
            nodes,
            instances,
            cache: raw.cache.clone(),
            executor: raw.executor.clone(),
            device: raw.device,
        }),
        _ => {
            // File order reads best; the sort is stable for equal starts.
            problems.sort_by_key(|p| p.labels.first().map_or(0, |l| l.0.start));
            Err(ConfigError::Invalid {
                file: name.to_string(),
                src: source,
                problems,
            })
        }
    }
}
