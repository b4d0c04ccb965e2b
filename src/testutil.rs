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

/// `../shared/data/real-samples` (17 real street-number photos) when it is
/// beside the checkout; otherwise prints that the test is skipped.
pub fn real_samples() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/real-samples"
    ));
    if dir.join("labels.csv").is_file() {
        Some(dir.to_path_buf())
    } else {
        println!("skipped: ../shared/data not present");
        None
    }
}
