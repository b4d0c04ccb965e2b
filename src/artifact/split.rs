//! The split artifact: which items of a data set each fold trains and
//! validates on (written by the `split` kind, read by `train`, `predict`
//! and every node that follows a split).
//!
//! A split artifact folder holds:
//! - `folds/fold-{i}.json` for each fold `i` (a hold-out writes only
//!   `folds/fold-0.json`): a [`Fold`], `{"train": [..], "valid": [..]}` as
//!   compact JSON, indices into the data index's `items`, each list sorted
//!   ascending; these are the split's parts ([`fold_file`]);
//! - `split.json`: a [`Summary`] (method, k or ratio, stratify, item count,
//!   per fold the train/valid counts and the valid part's counts per code
//!   length, and the data's counts per code length), pretty JSON.
//!
//! Guarantees: [`write`] writes every file atomically and equal folds give
//! byte-identical files; read errors name the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{read_json, write_atomic, write_json};
use crate::kind::{InputArtifact, NodeError};

/// Folder of the fold files inside a split artifact.
pub const FOLDS_DIR: &str = "folds";
/// The summary file inside a split artifact.
pub const SUMMARY_FILE: &str = "split.json";

/// The artifact-relative path of fold `i` (the split's part `i`).
pub fn fold_file(i: usize) -> String {
    format!("{FOLDS_DIR}/fold-{i}.json")
}

/// One fold: indices into the data index's `items`, each list sorted. A
/// bootstrap bag's `train` holds an item as often as it was drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
}

/// `split.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `holdout`, `kfold` or `bootstrap`.
    pub method: String,
    /// The number of folds (k-fold only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// The share held out (hold-out only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The number of bags (bootstrap only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bags: Option<usize>,
    pub stratify: bool,
    /// Items in the data set the split was made from.
    pub items: usize,
    /// Items per code length (labelled data only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_length: Option<BTreeMap<usize, usize>>,
    pub folds: Vec<FoldSummary>,
}

/// One fold's counts in `split.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldSummary {
    pub train: usize,
    pub valid: usize,
    /// Valid items per code length (labelled data only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_by_length: Option<BTreeMap<usize, usize>>,
}

/// Writes the fold files and `split.json` into `out`.
pub fn write(out: &Path, folds: &[Fold], summary: &Summary) -> Result<(), NodeError> {
    let dir = out.join(FOLDS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| NodeError::io(&dir, e))?;
    for (i, f) in folds.iter().enumerate() {
        let json = serde_json::to_vec(f).expect("fold serialises");
        write_atomic(&out.join(fold_file(i)), &json)?;
    }
    write_json(&out.join(SUMMARY_FILE), summary)
}

/// Reads `split.json` of the split artifact in `dir`.
pub fn read_summary(dir: &Path) -> Result<Summary, NodeError> {
    read_json(&dir.join(SUMMARY_FILE), "a split summary")
}

/// Reads the fold a node instance works on: `input.part` when set (a node
/// following a k-fold split), else `folds/fold-0.json` (a hold-out).
pub fn load_fold(input: &InputArtifact) -> Result<Fold, NodeError> {
    let path: PathBuf = match &input.part {
        Some(p) => p.clone(),
        None => input.dir.join(fold_file(0)),
    };
    read_json(&path, "a fold file")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(dir: &Path, part: Option<PathBuf>) -> InputArtifact {
        InputArtifact {
            digest: String::new(),
            node: "folds".into(),
            dir: dir.to_path_buf(),
            part,
        }
    }

    #[test]
    fn folds_and_summary_round_trip_in_their_forms() {
        let d = tempfile::tempdir().unwrap();
        let folds = [
            Fold {
                train: vec![1, 2],
                valid: vec![0],
            },
            Fold {
                train: vec![0],
                valid: vec![1, 2],
            },
        ];
        let summary = Summary {
            method: "kfold".into(),
            k: Some(2),
            ratio: None,
            bags: None,
            stratify: false,
            items: 3,
            by_length: None,
            folds: vec![
                FoldSummary {
                    train: 2,
                    valid: 1,
                    valid_by_length: None,
                },
                FoldSummary {
                    train: 1,
                    valid: 2,
                    valid_by_length: None,
                },
            ],
        };
        write(d.path(), &folds, &summary).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join(fold_file(1))).unwrap(),
            r#"{"train":[0],"valid":[1,2]}"#
        );
        let text = std::fs::read_to_string(d.path().join(SUMMARY_FILE)).unwrap();
        assert!(text.starts_with("{\n  \"method\": \"kfold\",\n  \"k\": 2,\n  \"stratify\""));
        assert!(text.ends_with("}\n"));
        assert_eq!(read_summary(d.path()).unwrap(), summary);
        // Without a part, the hold-out's fold 0.
        assert_eq!(load_fold(&input(d.path(), None)).unwrap(), folds[0]);
        let part = d.path().join(fold_file(1));
        assert_eq!(load_fold(&input(d.path(), Some(part))).unwrap(), folds[1]);
    }

    #[test]
    fn read_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let e = read_summary(d.path()).unwrap_err().to_string();
        assert!(
            e.starts_with(&d.path().join(SUMMARY_FILE).display().to_string()),
            "{e}"
        );
        std::fs::write(d.path().join(SUMMARY_FILE), "{}").unwrap();
        let e = read_summary(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("split.json: not a split summary: missing field"),
            "{e}"
        );

        let hold_out = input(d.path(), None);
        let e = load_fold(&hold_out).unwrap_err().to_string();
        assert!(
            e.starts_with(&d.path().join("folds/fold-0.json").display().to_string()),
            "{e}"
        );
        std::fs::create_dir(d.path().join(FOLDS_DIR)).unwrap();
        std::fs::write(d.path().join(fold_file(0)), "{}").unwrap();
        let e = load_fold(&hold_out).unwrap_err().to_string();
        assert!(
            e.contains("fold-0.json: not a fold file: missing field"),
            "{e}"
        );
    }
}
