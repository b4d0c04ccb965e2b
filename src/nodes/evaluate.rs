//! The `evaluate` node kind: scores a prediction artifact (`predict` or
//! `ensemble`) against the labels of a data set.
//!
//! It reads `items.json` and `probs.fwprobs` of the predictions (and
//! `classes.json`, preferred when present: a voting ensemble's classes),
//! checks that every item is the data set's item of that index (same file
//! name), and scores with [`crate::predictions::metrics`].
//!
//! Artifact layout ([`crate::artifact::scores`], an evaluation):
//! - `metrics.json`: the [`Metrics`] (`seq_acc`, `char_acc`, `len_acc`,
//!   `per_position`, `confusion`, `n`, and `length_model_acc` when the
//!   prediction has a length model's probabilities);
//! - `report.txt`: a short table of the same numbers for people.
//!
//! Errors: unlabelled data, an item index outside the data, a file name that
//! differs from the data's, or prediction files that disagree; each names
//! the file concerned.

use std::path::Path;

use crate::artifact::prediction::{labelled_items, read_output};
use crate::artifact::scores::{evaluation_scores, read_evaluation, write_evaluation};
use crate::kind::schema::{Dflt, Param, Ty};
use crate::kind::{Kind, NodeError, ReportRole, RunCtx};
use crate::predictions::metrics::{evaluate_items, length_model_acc, Metrics};

pub struct Evaluate;

impl Kind for Evaluate {
    fn name(&self) -> &'static str {
        "evaluate"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Scores predictions against the labels of a data set: sequence (contest), character, length and per-position accuracy, per-head confusion. Uses a voting ensemble's `classes.json` when present. Writes `metrics.json` and `report.txt`."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        let pred = ctx.input("predictions")?;
        let data = ctx.input("data")?;
        let metrics = score(&pred.dir, &data.dir, &data.node)?;
        write_evaluation(ctx.out, &metrics)
    }
    fn scores(&self, dir: &Path) -> Option<Vec<(String, f64)>> {
        read_evaluation(dir).ok().map(|m| evaluation_scores(&m))
    }
    fn headline_score(&self) -> Option<&'static str> {
        Some("seq_acc")
    }
    fn report_role(&self) -> ReportRole {
        ReportRole::Evaluation
    }
}

static PARAMS: &[Param] = &[
    Param {
        name: "predictions",
        ty: Ty::Ref(&["predict", "ensemble", "postprocess"]),
        default: Dflt::Required,
        doc: "The predictions to score.",
    },
    Param {
        name: "data",
        ty: Ty::Ref(&["dataset", "synthetic"]),
        default: Dflt::Required,
        doc: "The labelled data set the predictions were made on.",
    },
];

/// Scores the prediction artifact `pred_dir` against the data artifact
/// `data_dir` (`data_node` names it in errors).
pub fn score(pred_dir: &Path, data_dir: &Path, data_node: &str) -> Result<Metrics, NodeError> {
    let out = read_output(pred_dir)?;
    let items = labelled_items(pred_dir, &out.items, data_dir, data_node)?;
    let mut m = evaluate_items(&items, &out.final_classes())?;
    if let Some(l) = &out.length {
        let truth: Vec<&[u8]> = items
            .iter()
            .map(|it| it.label.as_deref().unwrap_or(&[]))
            .collect();
        m.length_model_acc = Some(length_model_acc(l, &truth));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::dataset::{DataIndex, DataItem};
    use crate::artifact::prediction::testutil::{input, run_kind};
    use crate::artifact::prediction::{write_output, Item, CLASSES_FILE, ITEMS_FILE};
    use crate::artifact::scores::{EVALUATION_FILE, REPORT_FILE};
    use crate::predictions::{Probs, CLASSES};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::PathBuf;

    /// Probabilities putting 0.9 on each listed class.
    fn probs(classes: &[Vec<u8>]) -> Probs {
        let heads = classes[0].len();
        let mut data = Vec::new();
        for v in classes {
            for &c in v {
                let mut row = vec![0.01f32; CLASSES];
                row[c as usize] = 0.9;
                data.extend(row);
            }
        }
        Probs::new(classes.len(), heads, data).unwrap()
    }

    fn data(root: &Path, labels: &[Option<Vec<u8>>]) -> PathBuf {
        let dir = root.join("data");
        fs::create_dir_all(&dir).unwrap();
        DataIndex {
            labelled: labels.iter().all(Option::is_some),
            items: labels
                .iter()
                .enumerate()
                .map(|(i, l)| DataItem {
                    file: format!("{i}.png"),
                    width: 10,
                    height: 10,
                    label: l.clone(),
                    boxes: None,
                })
                .collect(),
        }
        .save(&dir)
        .unwrap();
        dir
    }

    fn eval(root: &Path, pred: &Path, data: &Path) -> Result<PathBuf, NodeError> {
        let mut inputs = BTreeMap::new();
        inputs.insert("predictions".to_string(), vec![input("pred", pred, "p")]);
        inputs.insert("data".to_string(), vec![input("plates", data, "d")]);
        let p = json!({"predictions": "pred", "data": "plates"});
        run_kind(&Evaluate, p, inputs, root, "eval", None)
    }

    const B: u8 = 10;

    #[test]
    fn scores_a_hand_checked_case() {
        let root = tempfile::tempdir().unwrap();
        let d = data(
            root.path(),
            &[
                Some(vec![1, 9]),
                Some(vec![2]),
                Some(vec![3, 4]),
                Some(vec![5]),
            ],
        );
        // Predict items 0, 2, 3 (as an oof fold would): "19" right, "3" (one
        // digit short), "56" (one extra).
        let pred = root.path().join("pred");
        fs::create_dir_all(&pred).unwrap();
        let items: Vec<Item> = [0, 2, 3]
            .iter()
            .map(|&i| Item {
                index: i,
                file: format!("{i}.png"),
            })
            .collect();
        let p = probs(&[vec![1, 9, B], vec![3, B, B], vec![5, 6, B]]);
        write_output(&pred, &items, &p, None).unwrap();
        let out = eval(root.path(), &pred, &d).unwrap();
        let m: Metrics =
            serde_json::from_slice(&fs::read(out.join(EVALUATION_FILE)).unwrap()).unwrap();
        assert_eq!(m.n, 3);
        assert!((m.seq_acc - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.len_acc - 1.0 / 3.0).abs() < 1e-12);
        // positions: 2 + 2 + 2, correct: 2 + 1 + 1
        assert!((m.char_acc - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(m.per_position, vec![Some(1.0), Some(1.0 / 3.0), None]);
        let report = fs::read_to_string(out.join(REPORT_FILE)).unwrap();
        assert!(report.contains("sequence accuracy  33.33%"), "{report}");
        assert!(report.contains("  2                     -"), "{report}");
        assert_eq!(m.length_model_acc, None);
        assert!(!report.contains("length model"), "{report}");
        // With a length model's probabilities: "2" (right: "19"), "2"
        // (right: "34"), "3" (wrong: "5").
        let mut l = Vec::new();
        for k in [2usize, 2, 3] {
            let mut r = [0.0f32; 11];
            r[k] = 1.0;
            l.extend(r);
        }
        crate::artifact::prediction::write_length(&pred, &Probs::new(3, 1, l).unwrap()).unwrap();
        let out = eval(root.path(), &pred, &d).unwrap();
        let m: Metrics =
            serde_json::from_slice(&fs::read(out.join(EVALUATION_FILE)).unwrap()).unwrap();
        assert_eq!(m.length_model_acc, Some(2.0 / 3.0));
        let report = fs::read_to_string(out.join(REPORT_FILE)).unwrap();
        assert!(report.contains("length model acc.  66.67%"), "{report}");

        // classes.json wins over the probabilities: now all three are right.
        fs::write(pred.join(CLASSES_FILE), "[[1,9,10],[3,4,10],[5,10,10]]").unwrap();
        fs::remove_dir_all(&out).unwrap();
        let out = eval(root.path(), &pred, &d).unwrap();
        let m: Metrics =
            serde_json::from_slice(&fs::read(out.join(EVALUATION_FILE)).unwrap()).unwrap();
        assert_eq!((m.seq_acc, m.char_acc, m.len_acc), (1.0, 1.0, 1.0));
    }

    #[test]
    fn errors_name_the_files() {
        let root = tempfile::tempdir().unwrap();
        let pred = root.path().join("pred");
        fs::create_dir_all(&pred).unwrap();
        let items = vec![Item {
            index: 1,
            file: "1.png".into(),
        }];
        write_output(&pred, &items, &probs(&[vec![1, B]]), None).unwrap();

        let d = data(root.path(), &[Some(vec![1]), None]);
        let e = eval(root.path(), &pred, &d).unwrap_err().to_string();
        assert!(
            e.contains("index.json: data `plates` is unlabelled (`1.png` has no label)"),
            "{e}"
        );

        let d = data(root.path(), &[Some(vec![1])]);
        let e = eval(root.path(), &pred, &d).unwrap_err().to_string();
        assert!(
            e.contains("items.json: item 1 is outside data `plates`"),
            "{e}"
        );

        let items = vec![Item {
            index: 0,
            file: "other.png".into(),
        }];
        write_output(&pred, &items, &probs(&[vec![1, B]]), None).unwrap();
        let e = eval(root.path(), &pred, &d).unwrap_err().to_string();
        assert!(
            e.contains("items.json: item 0 is `other.png`, but in"),
            "{e}"
        );

        // probs and items disagree
        fs::write(pred.join(ITEMS_FILE), "[]").unwrap();
        let e = eval(root.path(), &pred, &d).unwrap_err().to_string();
        assert!(e.contains("probs.fwprobs: 1 rows, but"), "{e}");
    }
}
