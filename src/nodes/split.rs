//! The `split` node kind. (Being written.)

#[allow(unused_imports)]
use crate::config::schema::{float_range, int_min, int_range, Dflt, Param, Ty, RATIO};
use crate::nodes::{Kind, NodeError, RunCtx};

pub struct Split;

impl Kind for Split {
    fn name(&self) -> &'static str {
        "split"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Hold-out or k-fold split of a labelled data set, stratified by code length, seeded. A k-fold split offers k parts: a node that refers to it as `\"folds\"` runs once per fold."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn run(&self, _ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        Err(NodeError::msg("not written yet"))
    }
}

static PARAMS: &[Param] = &[
    Param {
        name: "data",
        ty: Ty::Ref(&["dataset", "synthetic"]),
        default: Dflt::Required,
        doc: "The data set to split.",
    },
    Param {
        name: "method",
        ty: Ty::Choice(&["holdout", "kfold"]),
        default: Dflt::Value("\"kfold\""),
        doc: "`holdout`: one train/valid split; `kfold`: k folds.",
    },
    Param {
        name: "k",
        ty: int_min(2),
        default: Dflt::Value("5"),
        doc: "Number of folds (kfold only).",
    },
    Param {
        name: "ratio",
        ty: RATIO,
        default: Dflt::Value("0.2"),
        doc: "Share of the data held out for validation (holdout only).",
    },
    Param {
        name: "stratify",
        ty: Ty::Bool,
        default: Dflt::Value("true"),
        doc: "Keep the code-length mix equal across folds.",
    },
];
