//! The integration-test binary: one module per feature, shared helpers in
//! `common`.

mod common;
mod diagnostics;
mod engine;
mod folds;
mod robustness;
