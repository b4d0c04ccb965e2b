//! Node kinds for unit tests: a split with k-fold parts (whatever the real
//! one implements yet) and made-up `train`/`ensemble` kinds exercising
//! nested tables, lists, maps, `canonical` and `check`.

use serde_json::Value;

use crate::kind::schema::{int_min, int_range, Dflt, Param, Ty, RATIO};
use crate::kind::{Kind, NodeError, ParamIssue, RunCtx};
use crate::nodes::synthetic;

pub(crate) struct Split;

impl Kind for Split {
    fn name(&self) -> &'static str {
        "split"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "test split"
    }
    fn params(&self) -> &'static [Param] {
        crate::nodes::split::Split.params()
    }
    /// Drops what the method does not use.
    fn canonical(&self, params: Value) -> Value {
        crate::nodes::split::Split.canonical(params)
    }
    fn parts(&self, params: &Value) -> Option<usize> {
        (params["method"] == "kfold").then(|| params["k"].as_u64().unwrap_or(0) as usize)
    }
    fn run(&self, _ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        Ok(())
    }
}

pub(crate) struct Train;

static MODEL: &[Param] = &[
    Param {
        name: "heads",
        ty: int_range(1, 6),
        default: Dflt::Value("5"),
        doc: "Heads.",
    },
    Param {
        name: "dropout",
        ty: RATIO,
        default: Dflt::Value("0.25"),
        doc: "Dropout.",
    },
    Param {
        name: "arch",
        ty: Ty::Choice(&["small", "resnet-mini"]),
        default: Dflt::Required,
        doc: "Backbone.",
    },
];

static TRAIN: &[Param] = &[
    Param {
        name: "split",
        ty: Ty::Ref(&["split"]),
        default: Dflt::Required,
        doc: "Folds.",
    },
    Param {
        name: "model",
        ty: Ty::Table(MODEL),
        default: Dflt::Value(r#"{"arch": "small"}"#),
        doc: "Model.",
    },
    Param {
        name: "lr",
        ty: Ty::Float {
            min: 0.0,
            max: 10.0,
            min_open: true,
            max_open: false,
        },
        default: Dflt::Value("1"),
        doc: "Learning rate.",
    },
    Param {
        name: "epochs",
        ty: int_min(1),
        default: Dflt::Value("3"),
        doc: "Epochs.",
    },
];

impl Kind for Train {
    fn name(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "test train"
    }
    fn params(&self) -> &'static [Param] {
        TRAIN
    }
    fn check(&self, params: &Value) -> Vec<ParamIssue> {
        let mut out = Vec::new();
        if params["model"]["arch"] == "small" && params["model"]["heads"].as_i64() == Some(6) {
            out.push(ParamIssue {
                path: "model.heads".into(),
                message: "the small model has at most 5 heads".into(),
                help: Some("use `arch = \"resnet-mini\"`".into()),
            });
        }
        if params["epochs"].as_i64() == Some(14) {
            out.push(ParamIssue {
                path: "model.arch".into(),
                message: "14 epochs need an explicit architecture".into(),
                help: None,
            });
        }
        if params["epochs"].as_i64() == Some(13) {
            out.push(ParamIssue {
                path: "epochs".into(),
                message: "unlucky".into(),
                help: None,
            });
        }
        out
    }
    fn run(&self, _ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        Ok(())
    }
}

pub(crate) struct Ensemble;

static ENSEMBLE: &[Param] = &[
    Param {
        name: "members",
        ty: Ty::List(&Ty::Ref(&[])),
        default: Dflt::Value("[]"),
        doc: "Members.",
    },
    Param {
        name: "inputs",
        ty: Ty::Map(&Ty::Ref(&[])),
        default: Dflt::Value("{}"),
        doc: "Named inputs.",
    },
    Param {
        name: "extra",
        ty: Ty::Any,
        default: Dflt::Optional,
        doc: "Anything.",
    },
];

impl Kind for Ensemble {
    fn name(&self) -> &'static str {
        "ensemble"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "test ensemble"
    }
    fn params(&self) -> &'static [Param] {
        ENSEMBLE
    }
    fn run(&self, _ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        Ok(())
    }
}

pub(crate) static KINDS: &[&dyn Kind] = &[
    &crate::nodes::dataset::Dataset,
    &synthetic::Synthetic,
    &Split,
    &Train,
    &Ensemble,
];

/// Loads with the test kinds.
pub(crate) fn load(src: &str) -> Result<crate::config::Pipeline, crate::config::ConfigError> {
    crate::config::load_str("test.toml", src, std::path::Path::new("/base"), KINDS)
}

/// A small pipeline with a per-fold node, a parts node, a gather and picks.
pub(crate) const TINY: &str = r#"
[pipeline]
name = "tiny"

[nodes.plates]
kind = "synthetic"
count = 10

[nodes.folds]
kind = "split"
data = "plates"
k = 2

[nodes.cnn]
kind = "train"
split = "folds"

[nodes.ens]
kind = "ensemble"
members = ["cnn[*]"]
inputs = { best = "cnn[1]", fold0 = "folds[0]", all = "folds[*]" }
"#;

/// [`TINY`], loaded with the test kinds.
pub(crate) fn tiny() -> crate::config::Pipeline {
    load(TINY).unwrap_or_else(|e| panic!("{}", crate::config::render_diagnostic(&e, false, 100)))
}
