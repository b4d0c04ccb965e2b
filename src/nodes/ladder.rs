//! The `ladder` node kind: how accuracy grows from the best single model to
//! the full ensemble, over the members of one `predict` artifact on a
//! labelled data set.
//!
//! It reads the prediction's `members.json` (model, snapshot, round and
//! file of every member) and each member's probabilities, checks the
//! predicted items against the data set (as `evaluate` does), and scores
//! four rows ([`crate::predictions::ladder`]): the best single model on the
//! clean image; + the other snapshots of its model; + every TTA round of
//! those; + every other model (the full ensemble, the same mean as the
//! prediction's own `probs.fwprobs`). With `post`, a fifth row scores a
//! `postprocess` artifact of the full ensemble's items: "+ post-processing".
//!
//! Artifact layout:
//! - `metrics.json`: the [`Scores`] (`n`, `rows` with `step`, `members`,
//!   `seq_acc`, `char_acc`, `len_acc`; `best`, `snapshots`, `rounds`,
//!   `models`, `singles`, `single_mean_seq_acc`, `single_min_seq_acc`);
//! - `report.txt`: the table for people; `foldwise run` prints it at the
//!   end of every run that reaches the node.
//!
//! Errors: a prediction without members (an `ensemble`'s, or damaged), a
//! member file that does not hold the predicted items, and everything
//! `evaluate` refuses (unlabelled data, other data); each names its file.

use std::path::Path;

use crate::artifact::prediction::{
    labelled_items, read_member_probs, read_output, read_predict_members, RoundView, MEMBERS_FILE,
};
use crate::artifact::scores::{ladder_scores, read_ladder, write_ladder, REPORT_FILE};
use crate::kind::schema::{Dflt, Param, Ty};
use crate::kind::{Kind, NodeError, ReportRole, RunCtx};
use crate::predictions::ladder::{ladder, Member, Scores, Step};
use crate::predictions::metrics::evaluate_items;

pub struct Ladder;

impl Kind for Ladder {
    fn name(&self) -> &'static str {
        "ladder"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "How accuracy grows as the ensemble grows, from one `predict` node's members on a labelled data set: the best single model (clean image), + the other snapshots of its model, + TTA rounds, + the other folds' models (the full ensemble), with the mean of the single models for context. Writes `metrics.json` and `report.txt`; `foldwise run` prints the table at the end."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        let pred = ctx.input("predictions")?;
        let data = ctx.input("data")?;
        let mut l = compute(&pred.dir, &pred.node, &data.dir, &data.node)?;
        if ctx.inputs.contains_key("post") {
            let post = ctx.input("post")?;
            l.rows.push(post_row(
                &pred.dir, &pred.node, post, &data.dir, &data.node, &l,
            )?);
        }
        write_ladder(ctx.out, &l)
    }
    fn scores(&self, dir: &Path) -> Option<Vec<(String, f64)>> {
        read_ladder(dir).ok().map(|l| ladder_scores(&l))
    }
    fn headline_score(&self) -> Option<&'static str> {
        Some("folds.seq_acc")
    }
    fn closing_table(&self) -> Option<&'static str> {
        Some(REPORT_FILE)
    }
    fn report_role(&self) -> ReportRole {
        ReportRole::Ladder
    }
}

static PARAMS: &[Param] = &[
    Param {
        name: "predictions",
        ty: Ty::Ref(&["predict"]),
        default: Dflt::Required,
        doc: "The prediction whose members (models × snapshots × TTA rounds) make the ladder.",
    },
    Param {
        name: "data",
        ty: Ty::Ref(&["dataset", "synthetic"]),
        default: Dflt::Required,
        doc: "The labelled data set the predictions were made on.",
    },
    Param {
        name: "post",
        ty: Ty::Ref(&["postprocess"]),
        default: Dflt::Optional,
        doc: "A `postprocess` node over the same items: its score becomes the last row, \"+ post-processing\".",
    },
];

/// The "+ post-processing" row: the `postprocess` artifact `post`, which
/// must predict the items of the prediction in `pred_dir`, scored on the
/// data; its member count is the full ensemble's.
fn post_row(
    pred_dir: &Path,
    pred_node: &str,
    post: &crate::kind::InputArtifact,
    data_dir: &Path,
    data_node: &str,
    l: &Scores,
) -> Result<Step, NodeError> {
    let pred_items = read_output(pred_dir)?.items;
    let out = read_output(&post.dir)?;
    if out.items != pred_items {
        return Err(NodeError::file(
            post.dir.join(crate::artifact::prediction::ITEMS_FILE),
            format!(
                "post: `{}` corrects other items than `{pred_node}` predicts; point it at the same data",
                post.node
            ),
        ));
    }
    let items = labelled_items(&post.dir, &out.items, data_dir, data_node)?;
    let m = evaluate_items(&items, &out.final_classes())?;
    Ok(Step {
        step: "post_processing".into(),
        members: l.rows.last().map_or(0, |r| r.members),
        seq_acc: m.seq_acc,
        char_acc: m.char_acc,
        len_acc: m.len_acc,
    })
}

/// Reads the members of the prediction in `pred_dir` (`pred_node` names it
/// in errors) and computes the ladder over the data in `data_dir`.
pub fn compute(
    pred_dir: &Path,
    pred_node: &str,
    data_dir: &Path,
    data_node: &str,
) -> Result<Scores, NodeError> {
    let out = read_output(pred_dir)?;
    let items = labelled_items(pred_dir, &out.items, data_dir, data_node)?;
    let entries = read_predict_members(pred_dir, pred_node)?;
    if entries.is_empty() {
        return Err(NodeError::file(
            pred_dir.join(MEMBERS_FILE),
            "lists no members",
        ));
    }
    if entries.iter().any(|e| e.view == Some(RoundView::Augmented)) {
        return Err(NodeError::file(
            pred_dir.join(MEMBERS_FILE),
            format!(
                "round 0 of `{pred_node}` is augmented (`tta.clean = false`), but the ladder starts from the clean image: give the prediction a clean round"
            ),
        ));
    }
    let shape = (out.probs.n, out.probs.heads);
    let mut members = Vec::with_capacity(entries.len());
    for e in entries {
        let probs = read_member_probs(pred_dir, &e.file, shape, |n, heads| {
            format!(
                "holds {n} images × {heads} heads, but the prediction has {} × {}",
                shape.0, shape.1
            )
        })?;
        members.push(Member {
            model: e.model,
            snapshot: e.snapshot,
            round: e.round,
            probs,
        });
    }
    ladder(&members, &items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::prediction::testutil::{dataset, input, run_kind, train_artifact};
    use crate::artifact::prediction::PROBS_FILE;
    use crate::artifact::probs;
    use crate::artifact::scores::LADDER_FILE;
    use crate::nodes::predict::Predict;
    use crate::nodes::KINDS;
    use crate::predictions::ladder::report;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::PathBuf;

    /// Plates, two fake train artifacts with two snapshots each, and a
    /// prediction over both with two TTA rounds.
    fn predicted(root: &Path) -> PathBuf {
        predicted_with(root, json!({"rounds": 2}))
    }

    /// [`predicted`] with these TTA settings.
    fn predicted_with(root: &Path, tta: Value) -> PathBuf {
        dataset(&root.join("data"), 6, 3);
        train_artifact(&root.join("cnn0"), 4, 1, &[0.3, 0.6]);
        train_artifact(&root.join("cnn1"), 4, 2, &[0.5, 0.4]);
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "models".to_string(),
            vec![
                input("cnn[0]", &root.join("cnn0"), "m0"),
                input("cnn[1]", &root.join("cnn1"), "m1"),
            ],
        );
        inputs.insert(
            "data".to_string(),
            vec![input("plates", &root.join("data"), "d")],
        );
        let p = json!({"models": "cnn[*]", "data": "plates", "snapshots": "all", "tta": tta});
        run_kind(&Predict, p, inputs, root, "pred", None).unwrap()
    }

    fn run_ladder(root: &Path, pred: &Path) -> Result<PathBuf, NodeError> {
        let mut inputs = BTreeMap::new();
        inputs.insert("predictions".to_string(), vec![input("pred", pred, "p")]);
        inputs.insert(
            "data".to_string(),
            vec![input("plates", &root.join("data"), "d")],
        );
        let p = json!({"predictions": "pred", "data": "plates"});
        run_kind(&Ladder, p, inputs, root, "ladder", None)
    }

    #[test]
    fn reads_a_prediction_and_its_last_row_is_the_evaluation() {
        let root = tempfile::tempdir().unwrap();
        let pred = predicted(root.path());
        let out = run_ladder(root.path(), &pred).unwrap();
        let l: Scores = serde_json::from_slice(&fs::read(out.join(LADDER_FILE)).unwrap()).unwrap();
        assert_eq!(l.n, 6);
        let members: Vec<usize> = l.rows.iter().map(|r| r.members).collect();
        assert_eq!(members, [1, 2, 4, 8]);
        assert_eq!(l.singles.len(), 4);
        assert_eq!(l.models, ["cnn[0]", "cnn[1]"]);
        assert_eq!(l.snapshots, ["c0", "c1"]);
        assert_eq!(l.rounds, 2);
        let m = crate::nodes::evaluate::score(&pred, &root.path().join("data"), "plates").unwrap();
        assert_eq!(l.rows[3].seq_acc, m.seq_acc);
        assert_eq!(l.rows[3].char_acc, m.char_acc);
        assert_eq!(
            fs::read_to_string(out.join(REPORT_FILE)).unwrap(),
            report(&l)
        );
        assert!(KINDS.iter().any(|k| k.name() == "ladder"));
    }

    #[test]
    fn round_0_must_be_clean_and_may_be_a_plain_resize() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let pred = predicted_with(r, json!({"rounds": 2, "clean": false}));
        let e = run_ladder(r, &pred).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: round 0 of `pred` is augmented (`tta.clean = false`), but the ladder starts from the clean image: give the prediction a clean round",
                pred.join(MEMBERS_FILE).display()
            )
        );
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let pred = predicted_with(r, json!({"rounds": 2, "view": "resize"}));
        let members: Value =
            serde_json::from_slice(&fs::read(pred.join(MEMBERS_FILE)).unwrap()).unwrap();
        let views: Vec<&Value> = members
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["view"])
            .collect();
        assert_eq!(
            views.iter().filter(|v| **v == "resize").count(),
            4,
            "{views:?}"
        );
        assert_eq!(views.iter().filter(|v| v.is_null()).count(), 4, "{views:?}");
        let out = run_ladder(r, &pred).unwrap();
        let l: Scores = serde_json::from_slice(&fs::read(out.join(LADDER_FILE)).unwrap()).unwrap();
        assert_eq!(l.singles.len(), 4);
    }

    #[test]
    fn a_postprocess_artifact_becomes_the_last_row() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let pred = predicted(r);
        // A "postprocess" output: the prediction's files with every item
        // corrected to its true code.
        let post = r.join("post");
        fs::create_dir_all(&post).unwrap();
        let o = read_output(&pred).unwrap();
        let index = crate::artifact::dataset::DataIndex::load(&r.join("data")).unwrap();
        let classes: Vec<Vec<u8>> = o
            .items
            .iter()
            .map(|it| {
                let mut c = index.items[it.index].label.clone().unwrap();
                c.resize(4, crate::predictions::BLANK);
                c
            })
            .collect();
        crate::artifact::prediction::write_output(&post, &o.items, &o.probs, Some(&classes))
            .unwrap();
        let mut inputs = BTreeMap::new();
        inputs.insert("predictions".to_string(), vec![input("pred", &pred, "p")]);
        inputs.insert(
            "data".to_string(),
            vec![input("plates", &r.join("data"), "d")],
        );
        inputs.insert("post".to_string(), vec![input("post", &post, "q")]);
        let p = json!({"predictions": "pred", "data": "plates", "post": "post"});
        let out = run_kind(&Ladder, p.clone(), inputs.clone(), r, "ladder", None).unwrap();
        let l: Scores = serde_json::from_slice(&fs::read(out.join(LADDER_FILE)).unwrap()).unwrap();
        let last = l.rows.last().unwrap();
        assert_eq!(
            (last.step.as_str(), last.members, last.seq_acc),
            ("post_processing", 8, 1.0)
        );
        let text = report(&l);
        let row = text
            .lines()
            .find(|l| l.starts_with("+ post-processing"))
            .unwrap();
        assert!(
            row.ends_with(&format!("{:+.2}", 100.0 * (1.0 - l.rows[3].seq_acc))),
            "{row}"
        );
        assert!(
            text.contains("full ensemble (8 members) vs best single model"),
            "{text}"
        );
        // Other items: an error naming the post artifact's item list.
        fs::remove_file(post.join(crate::artifact::prediction::CLASSES_FILE)).unwrap();
        crate::artifact::prediction::write_output(
            &post,
            &o.items[..3],
            &crate::predictions::Probs::new(3, 4, o.probs.data[..3 * 44].to_vec()).unwrap(),
            None,
        )
        .unwrap();
        let e = run_kind(&Ladder, p, inputs, r, "ladder2", None)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("items.json: post: `post` corrects other items than `pred` predicts; point it at the same data"), "{e}");
    }

    #[test]
    fn errors_name_the_files() {
        let root = tempfile::tempdir().unwrap();
        let pred = predicted(root.path());
        // A member that predicts other items.
        let member = pred.join("members/cnn.1-c0-r1.fwprobs");
        let mut p = probs::read(&member).unwrap();
        p.n = 5;
        p.data.truncate(5 * 4 * 11);
        fs::remove_file(&member).unwrap();
        fs::write(&member, probs::to_bytes(&p)).unwrap();
        let e = run_ladder(root.path(), &pred).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "cnn.1-c0-r1.fwprobs: holds 5 images × 4 heads, but the prediction has 6 × 4"
            ),
            "{e}"
        );
        // No member list: an ensemble's output, say.
        fs::remove_file(pred.join(MEMBERS_FILE)).unwrap();
        let e = run_ladder(root.path(), &pred).unwrap_err().to_string();
        assert!(e.contains("members.json: "), "{e}");
        fs::write(pred.join(MEMBERS_FILE), "[]").unwrap();
        let e = run_ladder(root.path(), &pred).unwrap_err().to_string();
        assert!(e.ends_with("members.json: lists no members"), "{e}");
        assert!(pred.join(PROBS_FILE).exists());
    }
}
