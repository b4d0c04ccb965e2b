//! Renderings of a [`Pipeline`]'s instance graph for `foldwise dag`: text
//! (one line per instance with its inputs), Graphviz DOT and Mermaid.
//!
//! Nothing here is walked to run a pipeline: the executor reads the
//! instances (already in topological order) and their input edges from the
//! [`Pipeline`] itself.
//!
//! Guarantee: a rendering depends only on the pipeline (instances in their
//! topological order, inputs in parameter order), never on hashing order.
//!
//! [`Pipeline`]: crate::config::Pipeline

mod render;

pub use render::{render, Format};
