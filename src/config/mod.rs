//! Pipeline files: parse TOML (keeping spans), validate against the kinds'
//! schemas, resolve references, expand folds, and produce a span-free
//! [`Pipeline`]. Nothing outside this module sees TOML.
//!
//! Guarantee: `load` either returns a pipeline whose every node has
//! canonical parameters (defaults filled in, refs resolved, acyclic) or
//! reports every problem found, each with a labelled span in the file.

pub mod schema;

use std::path::PathBuf;

use serde_json::Value;

use crate::nodes::Kind;

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
}

/// One instance of a node: the node itself, or one fold of an expanded node.
pub struct Instance {
    /// `name` or `name[i]`.
    pub name: String,
    /// Index into `Pipeline::nodes`.
    pub node: usize,
    /// The fold this instance follows.
    pub fold: Option<usize>,
    /// Inputs in parameter order (a gathered reference gives several edges
    /// with the same `param`).
    pub inputs: Vec<Edge>,
}

/// A dependency of an instance.
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
    pub fn instance(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.name == name)
    }
}
