//! The instance DAG of a [`Pipeline`] (petgraph) and its renderings.
//!
//! Guarantee: node index `i` of [`dag`] is instance `i` of the pipeline
//! (so topological order is index order) and every edge carries its index
//! in the target instance's `inputs`; renderings are deterministic.

mod render;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

use crate::config::Pipeline;

pub use render::{render, Format};

/// The instance graph: node weight = instance index, edge `from → to`
/// weight = index of the edge in `to`'s `inputs`.
pub fn dag(p: &Pipeline) -> DiGraph<usize, usize> {
    let mut g = DiGraph::with_capacity(p.instances.len(), 0);
    for i in 0..p.instances.len() {
        g.add_node(i);
    }
    for (to, inst) in p.instances.iter().enumerate() {
        for (k, e) in inst.inputs.iter().enumerate() {
            g.add_edge(NodeIndex::new(e.from), NodeIndex::new(to), k);
        }
    }
    g
}

/// Every instance downstream of `instance` (not itself), in topological
/// (index) order.
pub fn descendants(p: &Pipeline, instance: usize) -> Vec<usize> {
    let g = dag(p);
    reach(&g, instance)
}

/// Every instance `instance` depends on, directly or not, in index order.
pub fn ancestors(p: &Pipeline, instance: usize) -> Vec<usize> {
    let g = dag(p);
    reach(Reversed(&g), instance)
}

fn reach<G>(g: G, start: usize) -> Vec<usize>
where
    G: petgraph::visit::NodeCount,
    G: petgraph::visit::IntoNeighbors<NodeId = NodeIndex>
        + petgraph::visit::Visitable<NodeId = NodeIndex>,
    G::Map: petgraph::visit::VisitMap<NodeIndex>,
{
    if start >= g.node_count() {
        return Vec::new();
    }
    let mut dfs = Dfs::new(g, NodeIndex::new(start));
    let mut out = Vec::new();
    while let Some(n) = dfs.next(g) {
        if n.index() != start {
            out.push(n.index());
        }
    }
    out.sort_unstable();
    out
}
