//! The `synthetic` node kind. (Being written.)

#[allow(unused_imports)]
use crate::config::schema::{float_range, int_min, int_range, Dflt, Param, Ty, RATIO};
use crate::nodes::{Kind, NodeError, RunCtx};

pub struct Synthetic;

impl Kind for Synthetic {
    fn name(&self) -> &'static str {
        "synthetic"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "The embedded data set: generated street-number plates with 1-6 digits in several glyph styles, colours, sizes, spacing, rotation, shear, blur, noise and clutter, written in the mchar format (boxes included). Deterministic for a seed, whatever the thread count."
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
        name: "count",
        ty: int_min(1),
        default: Dflt::Required,
        doc: "Number of plates.",
    },
    Param {
        name: "min_digits",
        ty: int_range(1, 6),
        default: Dflt::Value("1"),
        doc: "Fewest digits on a plate.",
    },
    Param {
        name: "max_digits",
        ty: int_range(1, 6),
        default: Dflt::Value("6"),
        doc: "Most digits on a plate.",
    },
    Param {
        name: "length_weights",
        ty: Ty::List(&float_range(0.0, f64::INFINITY)),
        default: Dflt::Value("[0.15, 0.54, 0.26, 0.04, 0.007, 0.003]"),
        doc: "Relative frequency of plates with 1, 2, … 6 digits (like the contest: mostly 2-3).",
    },
    Param {
        name: "height",
        ty: Ty::List(&int_range(16, 512)),
        default: Dflt::Value("[48, 80]"),
        doc: "Plate height range in pixels, `[min, max]`.",
    },
    Param {
        name: "styles",
        ty: Ty::List(&Ty::Choice(&[
            "sans",
            "serif",
            "condensed",
            "segment",
            "rounded",
        ])),
        default: Dflt::Value("[\"sans\", \"serif\", \"condensed\", \"segment\", \"rounded\"]"),
        doc: "Glyph styles to draw from.",
    },
    Param {
        name: "rotation",
        ty: float_range(0.0, 45.0),
        default: Dflt::Value("6.0"),
        doc: "Largest rotation in degrees.",
    },
    Param {
        name: "shear",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.2"),
        doc: "Largest horizontal shear (slant), as a fraction of height.",
    },
    Param {
        name: "blur",
        ty: float_range(0.0, 5.0),
        default: Dflt::Value("1.0"),
        doc: "Largest Gaussian blur sigma in pixels.",
    },
    Param {
        name: "noise",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.06"),
        doc: "Largest per-pixel noise amplitude (fraction of full scale).",
    },
    Param {
        name: "clutter",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.5"),
        doc: "Probability of background clutter (lines, blobs, texture).",
    },
    Param {
        name: "neighbours",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.3"),
        doc: "Probability of partial neighbouring digits cut by the plate edges.",
    },
];
