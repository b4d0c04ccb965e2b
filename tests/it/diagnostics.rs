//! Golden config diagnostics: `tests/fixtures/bad/` holds only
//! `<case>.toml` + `<case>.txt` pairs; every `<case>.toml` must fail to
//! load, and its rendering (no colour, width 100) must equal `<case>.txt`;
//! every diagnostic code (`config::Code::ALL`) is the code of a problem in
//! at least one case. Cases named `paths-*` are loaded as `foldwise check`
//! loads (paths checked on disk, the file named relative to the package
//! root, the tests' working folder). Run with `UPDATE_GOLDEN=1` to write the `.txt` files
//! (never in CI: `.ci/run` refuses it), then read every changed one:
//! precise, labelled at the right place, helpful.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use foldwise::config::{self, render_diagnostic, Code};
use foldwise::nodes::KINDS;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad")
}

/// The cases' names (file stems), after checking that the folder holds
/// nothing but `.toml` + `.txt` pairs (an orphaned golden file, or a case
/// without one, fails). With `update`, a `.toml` may lack its `.txt` yet.
fn case_names(dir: &Path, update: bool) -> Vec<String> {
    let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut strays = Vec::new();
    for e in std::fs::read_dir(dir).expect("fixtures folder") {
        let path = e.expect("fixture entry").path();
        match (path.file_stem(), path.extension()) {
            (Some(stem), Some(ext)) if ext == "toml" || ext == "txt" => {
                let (stem, ext) = (stem.to_string_lossy(), ext.to_string_lossy());
                files.entry(stem.into()).or_default().insert(ext.into());
            }
            _ => strays.push(path.display().to_string()),
        }
    }
    assert!(strays.is_empty(), "not a .toml or .txt fixture: {strays:?}");
    let unpaired: Vec<String> = files
        .iter()
        .filter(|(_, exts)| !exts.contains("toml") || !(update || exts.contains("txt")))
        .map(|(stem, exts)| format!("{stem} (only .{})", exts.iter().next().unwrap()))
        .collect();
    assert!(
        unpaired.is_empty(),
        "every case is a .toml + .txt pair (delete an orphaned .txt; \
         UPDATE_GOLDEN=1 writes a new case's .txt): {unpaired:?}"
    );
    files.into_keys().collect()
}

#[test]
fn golden_diagnostics() {
    let dir = fixtures();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = case_names(&dir, update);
    let mut failures = Vec::new();
    let mut codes = BTreeSet::new();
    for case in &cases {
        let name = format!("{case}.toml");
        let src = std::fs::read_to_string(dir.join(&name)).unwrap();
        let loaded = if case.starts_with("paths-") {
            config::load_checked(&Path::new("tests/fixtures/bad").join(&name), KINDS)
        } else {
            config::load_str(&name, &src, &dir, KINDS)
        };
        let actual = match loaded {
            Ok(_) => {
                failures.push(format!("{name}: loaded without problems"));
                continue;
            }
            Err(e) => {
                codes.extend(e.problems().iter().map(|p| p.code.as_str()));
                render_diagnostic(&e, false, 100)
            }
        };
        let golden = dir.join(format!("{case}.txt"));
        if update {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap();
        if expected != actual {
            failures.push(format!(
                "{name}: rendering differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
                golden.display()
            ));
        }
    }
    let uncovered: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !codes.contains(c))
        .collect();
    assert!(
        uncovered.is_empty(),
        "no case in {} has a problem with these codes (add one each): {uncovered:?}",
        dir.display()
    );
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
