//! The score artifacts: what `evaluate`, `ladder` and `postprocess` write
//! about predictions, beside (or instead of) predictions themselves.
//!
//! - an evaluation (`evaluate`): `metrics.json` ([`EVALUATION_FILE`], a
//!   [`Metrics`]) and `report.txt` ([`REPORT_FILE`], [`evaluation_text`]);
//! - a ladder (`ladder`): `metrics.json` ([`LADDER_FILE`], a ladder
//!   [`Ladder`] with its `rows`) and `report.txt`
//!   ([`crate::predictions::ladder::report`]);
//! - a post-processing report (`postprocess`, besides the prediction
//!   layout): `postprocess.json` ([`POSTPROCESS_FILE`], a [`PostReport`])
//!   and `report.txt` ([`postprocess_text`]).
//!
//! `report.txt` is always the table for people; `foldwise run` prints a
//! ladder's and a post-processing's at the end of a run.
//!
//! Guarantees: files are written atomically, JSON pretty with a final
//! newline ([`crate::artifact::write_json`]); read errors name the file.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::artifact::{read_json, write_atomic, write_json};
use crate::kind::NodeError;
pub use crate::predictions::ladder::Scores as Ladder;
use crate::predictions::ladder::{self};
pub use crate::predictions::metrics::Metrics;
use crate::predictions::postprocess::{Prior, Setting, Tried};

/// The metrics of an evaluation (`evaluate`).
pub const EVALUATION_FILE: &str = "metrics.json";
/// The scores of a ladder (`ladder`), rows included.
pub const LADDER_FILE: &str = "metrics.json";
/// The step report of a post-processing (`postprocess`).
pub const POSTPROCESS_FILE: &str = "postprocess.json";
/// The human-readable table of every score artifact.
pub const REPORT_FILE: &str = "report.txt";

/// Writes an evaluation: [`EVALUATION_FILE`] and its [`REPORT_FILE`].
pub fn write_evaluation(out: &Path, m: &Metrics) -> Result<(), NodeError> {
    write_json(&out.join(EVALUATION_FILE), m)?;
    write_atomic(&out.join(REPORT_FILE), evaluation_text(m).as_bytes())
}

/// Reads the metrics of the evaluation in `dir`.
pub fn read_evaluation(dir: &Path) -> Result<Metrics, NodeError> {
    read_json(&dir.join(EVALUATION_FILE), "the metrics of an evaluation")
}

/// The flat scores of an evaluation: `seq_acc`, `char_acc`, `len_acc`.
pub fn evaluation_scores(m: &Metrics) -> Vec<(String, f64)> {
    vec![
        ("seq_acc".to_string(), m.seq_acc),
        ("char_acc".to_string(), m.char_acc),
        ("len_acc".to_string(), m.len_acc),
    ]
}

fn pct6(x: f64) -> String {
    format!("{:6.2}%", 100.0 * x)
}

/// The `report.txt` text of an evaluation.
pub fn evaluation_text(m: &Metrics) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "images            {:>7}", m.n);
    let _ = writeln!(s, "sequence accuracy {}", pct6(m.seq_acc));
    let _ = writeln!(s, "character acc.    {}", pct6(m.char_acc));
    let _ = writeln!(s, "length accuracy   {}", pct6(m.len_acc));
    if let Some(a) = m.length_model_acc {
        let _ = writeln!(s, "length model acc. {}", pct6(a));
    }
    let _ = writeln!(s, "per position:");
    for (k, a) in m.per_position.iter().enumerate() {
        match a {
            Some(a) => {
                let _ = writeln!(s, "  {k}               {}", pct6(*a));
            }
            None => {
                let _ = writeln!(s, "  {k}                     -");
            }
        }
    }
    s
}

/// Writes a ladder: [`LADDER_FILE`] and its [`REPORT_FILE`].
pub fn write_ladder(out: &Path, l: &Ladder) -> Result<(), NodeError> {
    write_json(&out.join(LADDER_FILE), l)?;
    write_atomic(&out.join(REPORT_FILE), ladder::report(l).as_bytes())
}

/// Reads the scores of the ladder in `dir`.
pub fn read_ladder(dir: &Path) -> Result<Ladder, NodeError> {
    read_json(&dir.join(LADDER_FILE), "the scores of a ladder")
}

/// The flat scores of a ladder: `<step>.seq_acc` for every row (`single`,
/// `snapshots`, `tta`, `folds`, and any later step such as
/// post-processing).
pub fn ladder_scores(l: &Ladder) -> Vec<(String, f64)> {
    l.rows
        .iter()
        .map(|r| (format!("{}.seq_acc", r.step), r.seq_acc))
        .collect()
}

/// What happened to one post-processing step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// `rules`, `length` or `position_prior`.
    pub step: String,
    /// The setting applied; `null` when the step was off.
    pub setting: Option<Setting>,
    /// `"given"` (written in the pipeline) or `"oof"` (fitted).
    pub chosen_by: String,
    /// Out-of-fold sequence accuracy before and after the step (with
    /// `oof`).
    pub oof_before: Option<f64>,
    pub oof_after: Option<f64>,
    /// Every candidate tried on `oof` (fitting only), "off" first.
    pub tried: Vec<Tried>,
    /// On the input: codes changed, and with `truth` fixed and broken.
    pub changed: usize,
    pub fixed: Option<usize>,
    pub broke: Option<usize>,
    /// With `truth`: sequence accuracy before and after the step.
    pub seq_acc_before: Option<f64>,
    pub seq_acc_after: Option<f64>,
}

/// `postprocess.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostReport {
    pub n: usize,
    /// Out-of-fold items used for fitting (0 without `oof`).
    pub oof_items: usize,
    pub steps: Vec<StepReport>,
    /// With `truth`: the input's and the final sequence accuracy.
    pub seq_acc_input: Option<f64>,
    pub seq_acc_final: Option<f64>,
    /// The per-position frequencies `position_prior` used (when a step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_prior: Option<Prior>,
}

/// Writes a post-processing report: [`POSTPROCESS_FILE`] and its
/// [`REPORT_FILE`].
pub fn write_postprocess(out: &Path, r: &PostReport) -> Result<(), NodeError> {
    write_json(&out.join(POSTPROCESS_FILE), r)?;
    write_atomic(&out.join(REPORT_FILE), postprocess_text(r).as_bytes())
}

/// Reads the post-processing report in `dir`.
pub fn read_postprocess(dir: &Path) -> Result<PostReport, NodeError> {
    read_json(&dir.join(POSTPROCESS_FILE), "a post-processing report")
}

fn pct(x: Option<f64>) -> String {
    match x {
        Some(x) => format!("{:.2}%", 100.0 * x),
        None => "-".into(),
    }
}

/// `a → b` in percent, or `-` unless both are known.
fn pct_change(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(_), Some(_)) => format!("{} → {}", pct(a), pct(b)),
        _ => "-".into(),
    }
}

/// One step's row of the post-processing table.
fn step_row(st: &StepReport) -> String {
    let setting = match &st.setting {
        Some(x) => format!(
            "{}{}",
            x.describe(),
            if st.chosen_by == "oof" {
                " (fitted)"
            } else {
                ""
            }
        ),
        None => "off (no oof evidence)".into(),
    };
    let name = match st.setting {
        Some(Setting::LengthForce { .. }) => "length (force)".to_string(),
        Some(Setting::LengthJoint { .. }) => "length (joint)".to_string(),
        _ => st.step.clone(),
    };
    let opt = |x: Option<usize>| x.map_or("-".to_string(), |v| v.to_string());
    format!(
        "{:<16} {:<26} {:>17} {:>8} {:>6} {:>6} {:>17}",
        name,
        setting,
        pct_change(st.oof_before, st.oof_after),
        st.changed,
        opt(st.fixed),
        opt(st.broke),
        pct_change(st.seq_acc_before, st.seq_acc_after)
    )
}

/// The `report.txt` table of a post-processing.
pub fn postprocess_text(r: &PostReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "post-processing of {} images{}",
        r.n,
        if r.oof_items > 0 {
            format!(", fitted on {} out-of-fold predictions", r.oof_items)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "{:<16} {:<26} {:>17} {:>8} {:>6} {:>6} {:>17}",
        "step", "setting", "oof", "changed", "fixed", "broke", "accuracy"
    );
    for st in &r.steps {
        let _ = writeln!(s, "{}", step_row(st));
    }
    if let (Some(a), Some(b)) = (r.seq_acc_input, r.seq_acc_final) {
        let _ = writeln!(
            s,
            "sequence accuracy {} → {} ({:+.2} points)",
            pct(Some(a)),
            pct(Some(b)),
            100.0 * (b - a)
        );
    }
    s
}
