//! The scores a run leaves behind, as flat `(name, value)` pairs: what
//! `diff` puts side by side and the run history keeps.
//!
//! - `evaluate` (`metrics.json`): `seq_acc`, `char_acc`, `len_acc`;
//! - `ladder` (`metrics.json`, rows with a `step`): `<step>.seq_acc` for
//!   every row (`single`, `snapshots`, `tta`, `folds`, and any later step
//!   such as post-processing).

use std::path::Path;

use serde_json::Value;

/// The file every scoring kind writes its scores to.
pub const METRICS_FILE: &str = "metrics.json";

/// Whether artifacts of `kind` hold scores.
pub fn scored(kind: &str) -> bool {
    matches!(kind, "evaluate" | "ladder")
}

/// `metrics.json` of an artifact folder, when readable.
pub fn read(dir: &Path) -> Option<Value> {
    let bytes = std::fs::read(dir.join(METRICS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The flat scores of a `kind` artifact's metrics.
pub fn scalars(kind: &str, m: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    match kind {
        "evaluate" => {
            for name in ["seq_acc", "char_acc", "len_acc"] {
                if let Some(v) = m.get(name).and_then(Value::as_f64) {
                    out.push((name.to_string(), v));
                }
            }
        }
        "ladder" => {
            for row in m
                .get("rows")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let step = row.get("step").and_then(Value::as_str);
                let acc = row.get("seq_acc").and_then(Value::as_f64);
                if let (Some(step), Some(acc)) = (step, acc) {
                    out.push((format!("{step}.seq_acc"), acc));
                }
            }
        }
        _ => {}
    }
    out
}

/// Whether a score named `name` answers a question about `metric`:
/// equal, or a ladder step's (`tta.seq_acc` for `seq_acc`).
pub fn matches(name: &str, metric: &str) -> bool {
    name == metric || name.strip_suffix(metric).is_some_and(|s| s.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluate_and_ladder_scores_flatten() {
        let m = json!({"seq_acc": 0.5, "char_acc": 0.75, "len_acc": 1.0, "n": 4});
        assert_eq!(
            scalars("evaluate", &m),
            [
                ("seq_acc".to_string(), 0.5),
                ("char_acc".to_string(), 0.75),
                ("len_acc".to_string(), 1.0)
            ]
        );
        let l =
            json!({"rows": [{"step": "single", "seq_acc": 0.25}, {"step": "tta", "seq_acc": 0.5}]});
        assert_eq!(
            scalars("ladder", &l),
            [
                ("single.seq_acc".to_string(), 0.25),
                ("tta.seq_acc".to_string(), 0.5)
            ]
        );
        assert!(matches("tta.seq_acc", "seq_acc"));
        assert!(matches("seq_acc", "seq_acc"));
        assert!(!matches("xseq_acc", "seq_acc"));
    }
}
