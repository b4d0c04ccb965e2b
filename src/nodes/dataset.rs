//! The `dataset` node kind. (Being written.)

#[allow(unused_imports)]
use crate::config::schema::{float_range, int_min, int_range, Dflt, Param, Ty, RATIO};
use crate::nodes::{Kind, NodeError, RunCtx};

pub struct Dataset;

impl Kind for Dataset {
    fn name(&self) -> &'static str {
        "dataset"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "A folder of images with optional labels (an mchar JSON or a `file_name,file_code` CSV). Images of any size and colour mode (PNG, JPEG). The artifact holds the images (hard-linked or copied), `index.json` and the labels in mchar format."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn run(&self, _ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        Err(NodeError::msg("not written yet"))
    }
}

static PARAMS: &[Param] = &[
    Param { name: "images", ty: Ty::Path, default: Dflt::Required, doc: "Folder of images (png, jpg, jpeg), relative to the pipeline file." },
    Param { name: "labels", ty: Ty::Path, default: Dflt::Optional, doc: "Label file: mchar JSON (`.json`) or `file_name,file_code` CSV (`.csv`). Absent for a test set." },
    Param { name: "labels_format", ty: Ty::Choice(&["auto", "mchar", "csv"]), default: Dflt::Value("\"auto\""), doc: "How to read `labels`; `auto` goes by the file extension." },
    Param { name: "unlabelled", ty: Ty::Choice(&["error", "skip"]), default: Dflt::Value("\"error\""), doc: "What to do with images that have no label when `labels` is given." },
    Param { name: "limit", ty: int_min(1), default: Dflt::Optional, doc: "Keep only the first N images (by file name)." },
];
