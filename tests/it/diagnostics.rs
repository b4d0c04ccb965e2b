//! Golden config diagnostics: every `tests/fixtures/bad/<case>.toml` must
//! fail to load, and its rendering (no colour, width 100) must equal
//! `<case>.txt`. Run with `UPDATE_GOLDEN=1` to rewrite the `.txt` files,
//! then read every changed one: precise, labelled at the right place,
//! helpful.

use std::path::{Path, PathBuf};

use foldwise::config::{self, render_diagnostic};
use foldwise::nodes::{command, dataset, split, synthetic, Kind, NodeError, ParamIssue, RunCtx};
use serde_json::Value;

/// The split kind, with k-fold parts even while `Split::parts` is not
/// written yet (it gives the same answer once it is).
struct SplitWithParts;

impl Kind for SplitWithParts {
    fn name(&self) -> &'static str {
        split::Split.name()
    }
    fn version(&self) -> u32 {
        split::Split.version()
    }
    fn doc(&self) -> &'static str {
        split::Split.doc()
    }
    fn params(&self) -> &'static [foldwise::config::schema::Param] {
        split::Split.params()
    }
    fn check(&self, params: &Value) -> Vec<ParamIssue> {
        split::Split.check(params)
    }
    fn canonical(&self, params: Value) -> Value {
        split::Split.canonical(params)
    }
    fn parts(&self, params: &Value) -> Option<usize> {
        split::Split.parts(params).or_else(|| {
            (params["method"] == "kfold").then(|| params["k"].as_u64().unwrap_or(0) as usize)
        })
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        split::Split.run(ctx)
    }
}

static KINDS: &[&dyn Kind] = &[
    &dataset::Dataset,
    &synthetic::Synthetic,
    &SplitWithParts,
    &command::Command,
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad")
}

#[test]
fn golden_diagnostics() {
    let dir = fixtures();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures folder")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 22, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let src = std::fs::read_to_string(case).unwrap();
        let actual = match config::load_str_with_kinds(&name, &src, &dir, KINDS) {
            Ok(_) => {
                failures.push(format!("{name}: loaded without problems"));
                continue;
            }
            Err(e) => render_diagnostic(&e, false, 100),
        };
        let golden = case.with_extension("txt");
        if update {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{name}: rendering differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
                golden.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed (UPDATE_GOLDEN=1 rewrites them):\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn an_unreadable_file_names_its_path() {
    let path = fixtures().join("no-such-pipeline.toml");
    let err = config::load(&path).expect_err("missing file must fail");
    let text = render_diagnostic(&err, false, 100);
    assert!(text.contains("pipeline::read"), "{text}");
    assert!(text.contains("no-such-pipeline.toml"), "{text}");
    assert!(err.problems().is_empty());
}

#[test]
fn cases_without_folds_render_the_same_with_the_crate_registry() {
    // Cases that do not depend on k-fold parts render identically with the
    // crate's own registry.
    let dir = fixtures();
    for case in ["unknown_kind", "syntax", "count_zero", "missing_node"] {
        let path = dir.join(format!("{case}.toml"));
        let src = std::fs::read_to_string(&path).unwrap();
        let name = format!("{case}.toml");
        let a = config::load_str(&name, &src, &dir).err().unwrap();
        let b = config::load_str_with_kinds(&name, &src, &dir, KINDS)
            .err()
            .unwrap();
        assert_eq!(
            render_diagnostic(&a, false, 100),
            render_diagnostic(&b, false, 100)
        );
    }
}
