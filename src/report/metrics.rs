//! The scores a run leaves behind, as flat `(name, value)` pairs: what
//! `diff` puts side by side and the run history keeps. Each kind says what
//! its artifacts offer ([`crate::kind::Kind::scores`]): an evaluation its
//! `seq_acc`, `char_acc`, `len_acc`; a ladder `<step>.seq_acc` for every
//! row (`single`, `snapshots`, `tta`, `folds`, and any later step such as
//! post-processing).

use std::path::Path;

/// The scores of the artifact in `dir` of the kind named `kind` (as a run
/// report records it), or `None` when that kind scores nothing or the
/// artifact cannot be read.
pub fn recorded(kind: &str, dir: &Path) -> Option<Vec<(String, f64)>> {
    crate::nodes::kind(kind)?.scores(dir)
}

/// Whether a score named `name` answers a question about `metric`:
/// equal, or a ladder step's (`tta.seq_acc` for `seq_acc`).
pub fn matches(name: &str, metric: &str) -> bool {
    name == metric || name.strip_suffix(metric).is_some_and(|s| s.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::scores::{EVALUATION_FILE, LADDER_FILE};
    use serde_json::json;

    #[test]
    fn evaluate_and_ladder_scores_flatten() {
        let dir = tempfile::tempdir().unwrap();
        let m = json!({"seq_acc": 0.5, "char_acc": 0.75, "len_acc": 1.0, "n": 4,
            "per_position": [], "confusion": []});
        std::fs::write(dir.path().join(EVALUATION_FILE), m.to_string()).unwrap();
        assert_eq!(
            recorded("evaluate", dir.path()).unwrap(),
            [
                ("seq_acc".to_string(), 0.5),
                ("char_acc".to_string(), 0.75),
                ("len_acc".to_string(), 1.0)
            ]
        );
        let single = json!({"model": "a", "snapshot": "final", "seq_acc": 0.25, "char_acc": 0.5});
        let l = json!({"n": 4, "rows": [
                {"step": "single", "members": 1, "seq_acc": 0.25, "char_acc": 0.5, "len_acc": 1.0},
                {"step": "tta", "members": 2, "seq_acc": 0.5, "char_acc": 0.5, "len_acc": 1.0}],
            "best": single, "snapshots": ["final"], "rounds": 2, "models": ["a"],
            "singles": [single], "single_mean_seq_acc": 0.25, "single_min_seq_acc": 0.25});
        std::fs::write(dir.path().join(LADDER_FILE), l.to_string()).unwrap();
        assert_eq!(
            recorded("ladder", dir.path()).unwrap(),
            [
                ("single.seq_acc".to_string(), 0.25),
                ("tta.seq_acc".to_string(), 0.5)
            ]
        );
        assert_eq!(recorded("predict", dir.path()), None);
        assert!(matches("tta.seq_acc", "seq_acc"));
        assert!(matches("seq_acc", "seq_acc"));
        assert!(!matches("xseq_acc", "seq_acc"));
    }
}
