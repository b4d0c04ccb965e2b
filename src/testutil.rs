//! Helpers shared by the unit tests (compiled for tests only).

use std::path::{Path, PathBuf};

/// Every file below `dir` with its bytes, sorted by relative path: compare
/// two of these to prove two outputs byte-identical.
pub fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `../shared/data` beside the checkout, after checking that every path
/// the test reads below it (`paths`, relative to it) is there; fails naming
/// the missing ones. The tests that call it are ignored unless
/// `FOLDWISE_FULL_SUITE=1` (`build.rs`), which `.ci/run` sets.
pub fn shared_data(paths: &[&str]) -> PathBuf {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data"));
    let missing: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| !dir.join(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "this test reads {} below {}, and these are missing: {}",
        paths.join(", "),
        dir.display(),
        missing.join(", ")
    );
    dir.to_path_buf()
}
