//! foldwise: declarative, cached, comparable ensembling pipelines for
//! multi-digit street-number recognition.
//!
//! Code map:
//! - [`config`]: TOML → validated, span-free [`config::Pipeline`] with miette
//!   diagnostics; [`kind::schema`] the parameter schemas.
//! - [`graph`]: renderings of the instance graph (text, DOT, Mermaid).
//! - [`fingerprint`]: key pre-images, keys and stale reasons.
//! - [`store`]: the content-addressed cache.
//! - [`remote`]: a remote cache a team shares (S3-compatible or a shared
//!   folder): push, pull, verified downloads.
//! - [`exec`]: plans and runs instances, in parallel, with progress.
//! - [`nodes`]: the node kinds, one per file, and their registry
//!   [`nodes::KINDS`].
//! - [`rng`]: the project's seeded random numbers.
//! - [`imaging`]: model input from images of any size and colour mode —
//!   decoding, resizing, augmentation, the decoded-set cache (no tensors).
//! - [`model`]: the CNNs (svhn-small, resnet-mini) on candle — the only
//!   module that imports the tensor crate.
//! - [`predictions`]: the arithmetic after the network — decoding,
//!   ensembling (mean, weighted, vote), metrics, submission CSV, probability
//!   files (used by the learning nodes).
//! - [`report`]: comparing and reporting experiments from the cache —
//!   keys without running, `diff`, scores, the HTML report with plots.
//! - [`cli`]: the command-line front end (`main.rs` only calls it).

pub mod artifact;
pub mod cli;
pub mod config;

pub mod exec;
pub mod fingerprint;
pub mod graph;
pub mod imaging;
pub mod kind;
pub mod model;
pub mod nodes;
pub mod predictions;
pub mod remote;
pub mod report;
pub mod rng;
pub mod store;
#[cfg(test)]
mod testutil;
