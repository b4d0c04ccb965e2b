//! The formats of the files that nodes hand each other, one file per
//! format: each owns its file names, its typed serde structs, reading and
//! writing, and its errors. Node kinds, the report and the command line
//! read and write artifacts only through these modules, never through each
//! other's files.
//!
//! Guarantee: every file is written through [`write_atomic`] (a temporary
//! name in the same folder, then a rename; the temporary file removed on
//! failure), so a reader sees a whole file or none; every read error names
//! the file.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::kind::NodeError;

pub mod dataset;
pub mod model;
pub mod prediction;
pub mod probs;
pub mod scores;
pub mod split;

/// Writes `bytes` to `path` atomically (see the module documentation).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    crate::store::write_atomic(path, bytes).map_err(|e| NodeError::io(path, e))
}

/// Writes `v` as pretty JSON with a final newline, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, v: &T) -> Result<(), NodeError> {
    write_atomic(path, &pretty_json(v))
}

/// `v` as pretty JSON with a final newline: the form of every JSON file in
/// an artifact.
pub fn pretty_json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(v).expect("artifact types serialise");
    bytes.push(b'\n');
    bytes
}

/// Reads a JSON file into `T`; `what` says what the file should hold
/// ("a train summary") in the error.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T, NodeError> {
    let bytes = std::fs::read(path).map_err(|e| NodeError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| NodeError::file(path, format!("not {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_leaves_no_temporary_file_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be: the rename fails.
        let target = dir.path().join("x.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"").unwrap();
        let err = write_json(&target, &[1, 2]).unwrap_err();
        assert_eq!(err.code(), crate::kind::codes::IO);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["x.json"]);

        let ok = dir.path().join("y.json");
        write_json(&ok, &[1, 2]).unwrap();
        assert_eq!(std::fs::read_to_string(&ok).unwrap(), "[\n  1,\n  2\n]\n");
        let back: Vec<u32> = read_json(&ok, "a list").unwrap();
        assert_eq!(back, [1, 2]);
        let bad = read_json::<String>(&ok, "a name").unwrap_err();
        assert!(bad
            .to_string()
            .starts_with(&format!("{}: not a name: ", ok.display())));
    }
}
