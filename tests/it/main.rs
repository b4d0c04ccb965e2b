//! The integration-test binary: one module per feature, shared helpers in
//! `common`.

mod common;
mod diagnostics;
mod docs;
mod engine;
mod folds;
mod mchar;
mod real_data;
mod resume;
mod robustness;
mod train;
