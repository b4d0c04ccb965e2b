//! Golden config diagnostics: every `tests/fixtures/bad/<case>.toml` must
//! fail to load, and its rendering (no colour, width 100) must equal
//! `<case>.txt`. Run with `UPDATE_GOLDEN=1` to rewrite the `.txt` files,
//! then read every changed one: precise, labelled at the right place,
//! helpful.

use std::path::{Path, PathBuf};

use foldwise::config::{self, render_diagnostic};
use foldwise::nodes::KINDS;

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
        let actual = match config::load_str(&name, &src, &dir, KINDS) {
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
    let err = config::load(&path, KINDS).expect_err("missing file must fail");
    let text = render_diagnostic(&err, false, 100);
    assert!(text.contains("pipeline::read"), "{text}");
    assert!(text.contains("no-such-pipeline.toml"), "{text}");
    assert!(err.problems().is_empty());
}

/// Every prefix of the example pipelines and of a few bad cases, and every
/// one-byte deletion of the quickstart, loads or fails with diagnostics —
/// never a panic. The examples' comment lines are left out first (mangled
/// comments are still valid files).
#[test]
fn mangled_files_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    for f in ["pipelines/quickstart.toml", "pipelines/command.toml"] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        let code: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        sources.push(code.join("\n") + "\n");
    }
    for case in ["several", "cycle", "fan_mismatch", "duplicate_instance"] {
        sources.push(std::fs::read_to_string(fixtures().join(format!("{case}.toml"))).unwrap());
    }
    let mut variants = Vec::new();
    for src in &sources {
        for (i, _) in src.char_indices() {
            variants.push(src[..i].to_string());
        }
    }
    let q = &sources[0];
    for (i, c) in q.char_indices() {
        variants.push(format!("{}{}", &q[..i], &q[i + c.len_utf8()..]));
    }
    assert!(variants.len() > 3000, "{} variants", variants.len());
    let mut failed = 0;
    for v in &variants {
        if let Err(e) = config::load_str("m.toml", v, root, KINDS) {
            failed += 1;
            let text = render_diagnostic(&e, false, 100);
            assert!(text.contains("pipeline::"), "{text}");
        }
    }
    assert!(
        failed > variants.len() / 2,
        "most mangled files are invalid"
    );
}
