//! The `submit` node kind: the contest submission CSV of a prediction
//! artifact (`predict` or `ensemble`).
//!
//! Artifact layout: `submission.csv`, `file_name,file_code`, rows sorted by
//! file name ([`crate::predictions::submission`]). The codes are those of
//! `classes.json` when present (a voting ensemble), else the argmax of
//! `probs.fwprobs` — the same as the artifact's `codes.json`.
//!
//! Side effect: with `path`, the finished CSV is also copied to that path
//! (relative to the pipeline file's folder; parent folders are created) as
//! the very last step of `run`, through a temporary name and a rename. This
//! is the one write outside the cache: it happens only when the node runs
//! (a cache hit does not copy again; changing `path` changes the key, so
//! the node runs and copies). A failed copy fails the node.

use std::fs;
use std::path::Path;

use serde::Deserialize;

use crate::artifact::prediction::read_output;
use crate::artifact::write_atomic;
use crate::kind::resolve_path;
use crate::kind::schema::{Dflt, Param, Ty};
use crate::kind::{Kind, NodeError, RunCtx};
use crate::predictions::decode;
use crate::predictions::submission::{to_csv, Row};

/// The CSV inside a submit artifact.
pub const SUBMISSION_FILE: &str = "submission.csv";

pub struct Submit;

impl Kind for Submit {
    fn name(&self) -> &'static str {
        "submit"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "The contest CSV (`file_name,file_code`, sorted by file name) of some predictions, as `submission.csv`; with `path`, also copied there once the node has run (the one write outside the cache)."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        let p: SubmitParams = ctx.typed()?;
        let pred = ctx.input("predictions")?;
        let csv = csv_of(&pred.dir)?;
        let path = ctx.out.join(SUBMISSION_FILE);
        write_atomic(&path, csv.as_bytes())?;
        if let Some(dst) = p.path {
            copy_out(&csv, &resolve_path(ctx.base_dir, &dst))?;
        }
        Ok(())
    }
}

static PARAMS: &[Param] = &[
    Param {
        name: "predictions",
        ty: Ty::Ref(&["predict", "ensemble", "postprocess"]),
        default: Dflt::Required,
        doc: "The predictions to submit.",
    },
    Param {
        name: "path",
        ty: Ty::Path,
        default: Dflt::Optional,
        doc: "Also copy the CSV here (relative to the pipeline file) after the node has run.",
    },
];

#[derive(Debug, Deserialize)]
struct SubmitParams {
    #[serde(default)]
    path: Option<String>,
}

/// The CSV text of a prediction artifact.
pub fn csv_of(pred_dir: &Path) -> Result<String, NodeError> {
    let out = read_output(pred_dir)?;
    let rows: Vec<Row> = out
        .items
        .iter()
        .zip(out.final_classes())
        .map(|(it, c)| Row::new(it.file.clone(), decode::code(&c)))
        .collect();
    to_csv(&rows)
}

/// Writes `csv` to `dst` atomically, creating its folder.
fn copy_out(csv: &str, dst: &Path) -> Result<(), NodeError> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|e| NodeError::io(parent, e))?;
    }
    write_atomic(dst, csv.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::prediction::testutil::{input, run_kind};
    use crate::artifact::prediction::{write_output, Item, CLASSES_FILE};
    use crate::predictions::{Probs, CLASSES};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn pred(root: &Path) -> std::path::PathBuf {
        let dir = root.join("pred");
        fs::create_dir_all(&dir).unwrap();
        // Items out of name order; classes [[1, 9], [10, 10], [0, 10]].
        let items = vec![
            Item {
                index: 4,
                file: "b.png".into(),
            },
            Item {
                index: 1,
                file: "a.png".into(),
            },
            Item {
                index: 7,
                file: "c.png".into(),
            },
        ];
        let mut data = Vec::new();
        for c in [1usize, 9, 10, 10, 0, 10] {
            let mut r = vec![0.0f32; CLASSES];
            r[c] = 1.0;
            data.extend(r);
        }
        write_output(&dir, &items, &Probs::new(3, 2, data).unwrap(), None).unwrap();
        dir
    }

    fn submit(
        root: &Path,
        pred: &Path,
        params: serde_json::Value,
    ) -> Result<std::path::PathBuf, NodeError> {
        let mut inputs = BTreeMap::new();
        inputs.insert("predictions".to_string(), vec![input("pred", pred, "p")]);
        let mut p = json!({"predictions": "pred"});
        for (k, v) in params.as_object().unwrap() {
            p[k] = v.clone();
        }
        run_kind(&Submit, p, inputs, root, "submit", None)
    }

    #[test]
    fn writes_the_sorted_csv_and_copies_it() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let p = pred(r);
        let out = submit(r, &p, json!({"path": "out/sub.csv"})).unwrap();
        let want = "file_name,file_code\na.png,\nb.png,19\nc.png,0\n";
        assert_eq!(fs::read_to_string(out.join(SUBMISSION_FILE)).unwrap(), want);
        assert_eq!(fs::read_to_string(r.join("out/sub.csv")).unwrap(), want);
        assert_eq!(
            fs::read_dir(r.join("out")).unwrap().count(),
            1,
            "no temporary left"
        );
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1);

        // Without `path` nothing is written outside the artifact; a voting
        // ensemble's classes win.
        fs::write(p.join(CLASSES_FILE), "[[1,10],[3,10],[0,10]]").unwrap();
        fs::remove_dir_all(&out).unwrap();
        fs::remove_dir_all(r.join("out")).unwrap();
        let out = submit(r, &p, json!({})).unwrap();
        assert_eq!(
            fs::read_to_string(out.join(SUBMISSION_FILE)).unwrap(),
            "file_name,file_code\na.png,3\nb.png,1\nc.png,0\n"
        );
        assert!(!r.join("out").exists());
    }
}
