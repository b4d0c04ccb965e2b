//! Comparing and reporting experiments, from the cache alone (nothing
//! runs): [`project`] computes every instance's key as a run would,
//! [`diff`] compares two pipelines by those keys, [`metrics`] flattens the
//! scores that `diff` and the run history show, [`table`] lists every
//! model, prediction and ensemble with its time and scores, and [`html`]
//! writes the
//! self-contained HTML report (graph picture in [`dag`], charts by
//! `plotters` in `plots`, image thumbnails in `thumbs`).

pub mod dag;
pub mod diff;
pub mod html;
pub mod metrics;
mod plots;
pub mod project;
pub mod table;
mod thumbs;

pub use html::render;
