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
//!   and `report.txt` ([`postprocess_text`]);
//! - a fitted ensemble (`ensemble` with `method = "select"` or `"stack"`,
//!   besides the prediction layout): `fit.json` ([`FIT_FILE`], a
//!   [`FitReport`]) and `report.txt` ([`fit_text`]). Members are named by
//!   the position of their reference in `inputs` as written (`inputs[1]`),
//!   never by node name, so the artifact depends on its key alone.
//!
//! `report.txt` is always the table for people; `foldwise run` prints a
//! ladder's, a post-processing's and a fitted ensemble's at the end of a
//! run.
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
/// What a fitted ensemble chose (`ensemble`, `select` or `stack`).
pub const FIT_FILE: &str = "fit.json";
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

/// One member of a fitted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitMember {
    /// Its reference's position in `inputs` (and in `oof`) as written.
    pub position: usize,
    /// The digests of its `inputs` artifacts and of its `oof` artifacts.
    pub inputs: Vec<String>,
    pub oof: Vec<String>,
    /// Its own out-of-fold scores.
    pub oof_seq_acc: f64,
    pub oof_log_loss: f64,
    /// Its weight in the ensemble (0 when not chosen).
    pub weight: f64,
    /// How many times selection chose it (`select` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<usize>,
}

/// `fit.json` of a fitted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// `select` or `stack`.
    pub method: String,
    /// What was optimised: `seq_acc` or `log_loss` (`stack`: `log_loss`).
    pub metric: String,
    /// Out-of-fold images fitted on.
    pub oof_items: usize,
    pub members: Vec<FitMember>,
    /// The ensemble's out-of-fold scores with the fitted weights.
    pub oof_seq_acc: f64,
    pub oof_log_loss: f64,
    /// `select`: the member positions in the order they were added (the
    /// sorted start first) with the score after each, the rounds beyond
    /// the best prefix included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<(usize, f64)>,
    /// `select`: how many additions the chosen ensemble has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// `stack`: iterations to convergence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
}

impl FitReport {
    /// How it was fitted, for people.
    pub fn how(&self) -> String {
        match (self.method.as_str(), self.size) {
            ("select", Some(n)) => format!(
                "greedy selection with replacement by {}, {n} addition(s)",
                self.metric
            ),
            _ => format!(
                "stacking: weights minimising log loss ({} iterations)",
                self.iterations.unwrap_or(0)
            ),
        }
    }
}

/// Writes a fitted ensemble's report: [`FIT_FILE`] and its [`REPORT_FILE`].
pub fn write_fit(out: &Path, r: &FitReport) -> Result<(), NodeError> {
    write_json(&out.join(FIT_FILE), r)?;
    write_atomic(&out.join(REPORT_FILE), fit_text(r).as_bytes())
}

/// Reads a fitted ensemble's report in `dir`.
pub fn read_fit(dir: &Path) -> Result<FitReport, NodeError> {
    read_json(&dir.join(FIT_FILE), "a fitted ensemble's report")
}

/// The table of a fitted ensemble: what was fitted on what, then one row
/// per member (its out-of-fold scores and its weight).
pub fn fit_text(r: &FitReport) -> String {
    let mut s = String::new();
    let best = r
        .members
        .iter()
        .map(|m| m.oof_seq_acc)
        .fold(f64::NEG_INFINITY, f64::max);
    let how = r.how();
    let _ = writeln!(
        s,
        "{how}, fitted on {} out-of-fold images: seq_acc {} (best member {}), log loss {:.4}",
        r.oof_items,
        pct(Some(r.oof_seq_acc)),
        pct(Some(best)),
        r.oof_log_loss
    );
    let chosen = r.method == "select";
    let _ = writeln!(
        s,
        "  {:<12} {:>12} {:>12} {:>8}{}",
        "member",
        "oof seq_acc",
        "oof log loss",
        "weight",
        if chosen { "  chosen" } else { "" }
    );
    for m in &r.members {
        let _ = write!(
            s,
            "  {:<12} {:>12} {:>12.4} {:>8.4}",
            format!("inputs[{}]", m.position),
            pct(Some(m.oof_seq_acc)),
            m.oof_log_loss,
            m.weight
        );
        if let Some(c) = m.chosen {
            let _ = write!(s, "  {c:>6}");
        }
        s.push('\n');
    }
    s
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
