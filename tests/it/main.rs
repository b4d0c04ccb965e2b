//! The integration-test binary: one module per feature, shared helpers in
//! `common` (and the unit tests' `testutil`, for `shared_data`).

mod common;
mod diagnostics;
mod diff;
mod docs;
mod engine;
mod fitted;
mod folds;
mod grid;
mod history;
mod keys;
mod layers;
mod mchar;
mod real_data;
mod reliability;
mod remote;
mod report;
mod resume;
mod robustness;
mod schema;
mod slurm;
#[allow(dead_code)]
#[path = "../../src/testutil.rs"]
mod testutil;
mod threads;
mod train;
mod watch;
