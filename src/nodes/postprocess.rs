//! The `postprocess` node kind: corrects the decoded codes of a prediction
//! (`predict`, `ensemble` or another `postprocess`) with well-formedness
//! rules, a length model and per-position character statistics
//! ([`crate::predictions::postprocess`] defines each step).
//!
//! Parameters: `predictions`; `steps`, applied in the order written, each
//! at most once: `"rules"`, `"length"`, `"position_prior"`; the tables
//! `length` (`mode` `"joint"` or `"force"`, `weight` for joint, `threshold`
//! for force) and `position_prior` (`weight`), where each setting is a
//! number or `"fit"` (the default); `length_from` (a prediction whose
//! `length.fwprobs` to use; default the input's own); `labels` (the
//! labelled training data: the position statistics are counted on it, and
//! the `oof` predictions are scored against it); `oof` (out-of-fold
//! predictions of `labels`' items, e.g. `["oof[*]"]`, concatenated); `truth`
//! (labelled data the input predicts, for the fixed/broken counts).
//!
//! Fitting: with `oof`, each step is first applied to the out-of-fold
//! predictions under "off" and every candidate setting (`rules`: "on"), in
//! step order; the setting with the best out-of-fold sequence
//! accuracy wins among the settings that fix more out-of-fold codes than
//! they break with a sign-test p-value of at most `significance` (0.05),
//! the mildest on ties, and "off" when none does
//! ([`crate::predictions::postprocess::fit`]). So by default a step is
//! applied only where out-of-fold evidence says it helps; a `"fit"` setting
//! without `oof` is an error. An explicit number is applied as given, and
//! with `oof` its out-of-fold effect is still reported.
//!
//! Artifact layout: the prediction layout ([`super::predict`]):
//! `probs.fwprobs` (reweighted by a position prior), `items.json`,
//! `codes.json`, `classes.json` (the corrected classes, which `evaluate`,
//! `submit` and `ladder` use) and the input's `length.fwprobs` when it had
//! one; `postprocess.json` ([`PostReport`]); `report.txt`, the table `foldwise
//! run` prints at the end.
//!
//! Errors name the input: a prediction without length probabilities for a
//! `length` step, `length_from` or `oof` predictions of other items,
//! unlabelled `labels` or `truth`, labels longer than the heads, an item
//! out of fold in two `oof` nodes (within one node's instances, the
//! out-of-bag predictions of bootstrap bags, an item's predictions are
//! averaged).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use crate::artifact::dataset::DataIndex;
use crate::artifact::prediction::{
    gather_oof, labelled_items, read_output, write_length, write_output, Item, ITEMS_FILE,
    LENGTH_FILE,
};
use crate::artifact::scores::{write_postprocess, PostReport, StepReport, REPORT_FILE};
use crate::kind::schema::{Dflt, Param, Ty};
use crate::kind::{InputArtifact, Kind, NodeError, ParamIssue, ReportRole, RunCtx};
use crate::predictions::postprocess::{
    apply, candidates, change, fit, seq_acc, Aids, Change, Prior, Setting, State, Tried,
};
use crate::predictions::Probs;

/// The step names `steps` accepts.
const STEPS: &[&str] = &["rules", "length", "position_prior"];

pub struct Postprocess;

impl Kind for Postprocess {
    fn name(&self) -> &'static str {
        "postprocess"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Corrects decoded codes, in the order of `steps`: `rules` (no digit after a blank, no empty code), `length` (a length model, `joint` with the heads or `force`d above a threshold), `position_prior` (per-position character frequencies of `labels`). Settings are fitted on out-of-fold predictions (`oof`) so a step applies only where it helps there. Writes the prediction layout with `classes.json`, plus `postprocess.json` and `report.txt` (each step's setting, codes changed, fixed and broken)."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn check(&self, params: &Value) -> Vec<ParamIssue> {
        check(params)
    }
    fn canonical(&self, mut params: Value) -> Value {
        let steps: Vec<String> = params["steps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(obj) = params.as_object_mut() {
            // Settings of steps not taken cannot matter.
            if !steps.iter().any(|s| s == "length") {
                obj.remove("length");
            } else if let Some(l) = obj.get_mut("length").and_then(Value::as_object_mut) {
                let drop = if l.get("mode").and_then(Value::as_str) == Some("force") {
                    "weight"
                } else {
                    "threshold"
                };
                l.remove(drop);
            }
            if !steps.iter().any(|s| s == "position_prior") {
                obj.remove("position_prior");
            }
            // Nothing is fitted without out-of-fold predictions.
            if !obj.contains_key("oof") {
                obj.remove("significance");
            }
        }
        params
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        run(ctx)
    }
    fn closing_table(&self) -> Option<&'static str> {
        Some(REPORT_FILE)
    }
    fn report_role(&self) -> ReportRole {
        ReportRole::PostProcessing
    }
}

static LENGTH: &[Param] = &[
    Param {
        name: "mode",
        ty: Ty::Choice(&["joint", "force"]),
        default: Dflt::Value("\"joint\""),
        doc: "`joint`: the heads' own length probabilities times the length model's to the power `weight`; `force`: the length model's length wherever its probability reaches `threshold`.",
    },
    Param {
        name: "weight",
        ty: Ty::Any,
        default: Dflt::Value("\"fit\""),
        doc: "For `joint`: a number >= 0 (0 = the heads alone) or `\"fit\"` (chosen on `oof`).",
    },
    Param {
        name: "threshold",
        ty: Ty::Any,
        default: Dflt::Value("\"fit\""),
        doc: "For `force`: a probability in [0, 1] or `\"fit\"` (chosen on `oof`).",
    },
];

static PRIOR: &[Param] = &[Param {
    name: "weight",
    ty: Ty::Any,
    default: Dflt::Value("\"fit\""),
    doc: "Exponent of the position frequencies: a number >= 0 (0 = no change) or `\"fit\"` (chosen on `oof`).",
}];

static PARAMS: &[Param] = &[
    Param {
        name: "predictions",
        ty: Ty::Ref(&["predict", "ensemble", "postprocess"]),
        default: Dflt::Required,
        doc: "The predictions to correct.",
    },
    Param {
        name: "steps",
        ty: Ty::List(&Ty::Choice(STEPS)),
        default: Dflt::Required,
        doc: "The steps, applied in this order, each at most once: `\"rules\"`, `\"length\"`, `\"position_prior\"`.",
    },
    Param {
        name: "length",
        ty: Ty::Table(LENGTH),
        default: Dflt::Value("{}"),
        doc: "Settings of the `length` step.",
    },
    Param {
        name: "position_prior",
        ty: Ty::Table(PRIOR),
        default: Dflt::Value("{}"),
        doc: "Settings of the `position_prior` step.",
    },
    Param {
        name: "significance",
        ty: Ty::Float {
            min: 0.0,
            max: 1.0,
            min_open: true,
            max_open: false,
        },
        default: Dflt::Value("0.05"),
        doc: "Fitting: a setting counts as helping only when it fixes more out-of-fold codes than it breaks with a one-sided sign-test p-value at most this (1 accepts any net gain).",
    },
    Param {
        name: "length_from",
        ty: Ty::Ref(&["predict", "ensemble", "postprocess"]),
        default: Dflt::Optional,
        doc: "A prediction of the same items whose `length.fwprobs` the `length` step uses (default: the input's own; a model trained with `model.length_head = true` gives them).",
    },
    Param {
        name: "labels",
        ty: Ty::Ref(&["dataset", "synthetic"]),
        default: Dflt::Optional,
        doc: "Labelled training data: `position_prior` counts its labels, and `oof` is scored against them.",
    },
    Param {
        name: "oof",
        ty: Ty::List(&Ty::Ref(&["predict", "ensemble", "postprocess"])),
        default: Dflt::Optional,
        doc: "Out-of-fold predictions of `labels`' items (`[\"oof[*]\"]` gathers every fold's), on which each step's setting is fitted.",
    },
    Param {
        name: "truth",
        ty: Ty::Ref(&["dataset", "synthetic"]),
        default: Dflt::Optional,
        doc: "The labelled data the input predicts: the report then counts the codes each step fixed and broke.",
    },
];

/// A setting as written: a number or `"fit"`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Given {
    Fit,
    Value(f64),
}

fn given(v: &Value) -> Option<Given> {
    match v {
        Value::String(s) if s == "fit" => Some(Given::Fit),
        v => v.as_f64().map(Given::Value),
    }
}

fn check(params: &Value) -> Vec<ParamIssue> {
    let mut out = Vec::new();
    let steps: Vec<&str> = params["steps"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if params["steps"].as_array().is_some_and(|a| a.is_empty()) {
        out.push(ParamIssue {
            path: "steps".into(),
            message: "no steps: the node would change nothing".into(),
            help: Some(format!("list some of {}", quoted(STEPS))),
        });
    }
    let mut seen = BTreeSet::new();
    for (k, s) in steps.iter().enumerate() {
        if !seen.insert(*s) {
            out.push(ParamIssue {
                path: format!("steps[{k}]"),
                message: format!("step `{s}` is listed twice"),
                help: Some("each step runs at most once".into()),
            });
        }
    }
    let mut number = |path: &str, v: &Value, max: Option<f64>| {
        let ok = match given(v) {
            Some(Given::Fit) => true,
            Some(Given::Value(x)) => x >= 0.0 && x.is_finite() && max.is_none_or(|m| x <= m),
            None => false,
        };
        if !ok {
            let range = match max {
                Some(m) => format!("a number in [0, {m}]"),
                None => "a number >= 0".into(),
            };
            out.push(ParamIssue {
                path: path.into(),
                message: format!("expected {range} or \"fit\", found {v}"),
                help: Some("\"fit\" chooses it on the `oof` predictions".into()),
            });
        }
    };
    if let Some(v) = params["length"].get("weight") {
        number("length.weight", v, None);
    }
    if let Some(v) = params["length"].get("threshold") {
        number("length.threshold", v, Some(1.0));
    }
    if let Some(v) = params["position_prior"].get("weight") {
        number("position_prior.weight", v, None);
    }
    out
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Deserialize)]
struct Params {
    steps: Vec<String>,
    #[serde(default)]
    length: Option<Value>,
    #[serde(default)]
    position_prior: Option<Value>,
    /// Dropped by `canonical` without `oof` (nothing is fitted then).
    #[serde(default = "default_significance")]
    significance: f64,
}

fn default_significance() -> f64 {
    0.05
}

/// A prediction read for post-processing: its items, its state and its
/// length probabilities.
struct Pred {
    items: Vec<Item>,
    state: State,
    length: Option<Probs>,
}

fn read_pred(a: &InputArtifact) -> Result<Pred, NodeError> {
    let out = read_output(&a.dir)?;
    let classes = out.final_classes();
    Ok(Pred {
        items: out.items,
        state: State::new(out.probs, classes),
        length: out.length,
    })
}

/// The true codes of `items` predicted in artifact `pred` on data `data`.
fn truth_codes(
    pred: &InputArtifact,
    items: &[Item],
    data: &InputArtifact,
) -> Result<Vec<Vec<u8>>, NodeError> {
    Ok(labelled_items(&pred.dir, items, &data.dir, &data.node)?
        .into_iter()
        .map(|d| d.label.unwrap_or_default())
        .collect())
}

/// Gathers the out-of-fold predictions ([`gather_oof`]: an item left out
/// of several bootstrap bags gets their mean; one predicted by two nodes is
/// an error) with the true codes of their items.
fn read_oof(
    arts: &[InputArtifact],
    labels: &InputArtifact,
) -> Result<(Pred, Vec<Vec<u8>>), NodeError> {
    let refs: Vec<&InputArtifact> = arts.iter().collect();
    let g = gather_oof(&refs, "oof")?;
    let first = refs
        .first()
        .ok_or_else(|| NodeError::new("foldwise::postprocess::oof", "oof: no predictions"))?;
    let truth = truth_codes(first, &g.items, labels)?;
    Ok((
        Pred {
            items: g.items,
            state: State::new(g.probs, g.classes),
            length: g.length,
        },
        truth,
    ))
}

/// The fixed setting, or the candidates to fit, of one step.
fn settings_of(
    step: &str,
    p: &Params,
    fitting: bool,
) -> Result<(String, Result<Setting, Vec<Setting>>), NodeError> {
    let g = |table: &Option<Value>, key: &str| -> Given {
        table
            .as_ref()
            .and_then(|t| t.get(key))
            .and_then(given)
            .unwrap_or(Given::Fit)
    };
    Ok(match step {
        // Fitted like the others when there is `oof`: applied only when
        // it fixes more out-of-fold codes than it breaks.
        "rules" if fitting => ("rules".into(), Err(candidates("rules"))),
        "rules" => ("rules".into(), Ok(Setting::Rules)),
        "length" => {
            let force = p
                .length
                .as_ref()
                .and_then(|t| t.get("mode"))
                .and_then(Value::as_str)
                == Some("force");
            if force {
                let s = match g(&p.length, "threshold") {
                    Given::Value(threshold) => Ok(Setting::LengthForce { threshold }),
                    Given::Fit => Err(candidates("length_force")),
                };
                ("length_force".into(), s)
            } else {
                let s = match g(&p.length, "weight") {
                    Given::Value(weight) => Ok(Setting::LengthJoint { weight }),
                    Given::Fit => Err(candidates("length_joint")),
                };
                ("length_joint".into(), s)
            }
        }
        "position_prior" => {
            let s = match g(&p.position_prior, "weight") {
                Given::Value(weight) => Ok(Setting::PositionPrior { weight }),
                Given::Fit => Err(candidates("position_prior")),
            };
            ("position_prior".into(), s)
        }
        other => {
            return Err(NodeError::new(
                "foldwise::postprocess::step",
                format!("unknown step `{other}`"),
            ))
        }
    })
}

fn run(ctx: &RunCtx<'_>) -> Result<(), NodeError> {
    let p: Params = ctx.typed()?;
    let input = ctx.input("predictions")?;
    let Pred {
        items,
        state: mut st,
        length: own_length,
    } = read_pred(input)?;
    let heads = st.probs.heads;
    let wants = |s: &str| p.steps.iter().any(|x| x == s);
    let length = length_probs(ctx, input, &items, &own_length, wants("length"))?;
    let labels = optional_input(ctx, "labels")?;
    let prior = position_prior(labels, heads, wants("position_prior"))?;
    let mut oof = out_of_fold(ctx, labels, input, heads, wants("length"))?;
    let truth = match optional_input(ctx, "truth")? {
        Some(t) => Some(truth_codes(input, &items, t)?),
        None => None,
    };

    // The steps, in order.
    let seq = |s: &State| truth.as_ref().map(|t| seq_acc(&s.classes, t));
    let seq_input = seq(&st);
    let aids = Aids {
        length: length.as_ref(),
        prior: prior.as_ref(),
    };
    let mut reports = Vec::new();
    for step in &p.steps {
        let (chosen, chosen_by, tried) = choose(step, &p, &oof, prior.as_ref())?;
        let (oof_before, oof_after) = match &mut oof {
            Some(o) => {
                let (before, after) = o.apply(chosen.as_ref(), prior.as_ref());
                (Some(before), Some(after))
            }
            None => (None, None),
        };
        let before = st.classes.clone();
        let acc_before = seq(&st);
        if let Some(c) = &chosen {
            st = apply(c, &st, aids);
        }
        let Change {
            changed,
            fixed,
            broke,
        } = change(&before, &st.classes, truth.as_deref());
        reports.push(StepReport {
            step: step.clone(),
            setting: chosen,
            chosen_by: chosen_by.into(),
            oof_before,
            oof_after,
            tried,
            changed,
            fixed: truth.as_ref().map(|_| fixed),
            broke: truth.as_ref().map(|_| broke),
            seq_acc_before: acc_before,
            seq_acc_after: seq(&st),
        });
    }
    let report = PostReport {
        n: items.len(),
        oof_items: oof.as_ref().map_or(0, |o| o.truth.len()),
        steps: reports,
        seq_acc_input: seq_input,
        seq_acc_final: seq(&st),
        position_prior: prior.clone(),
    };

    write_output(ctx.out, &items, &st.probs, Some(&st.classes))?;
    if let Some(l) = &own_length {
        write_length(ctx.out, l)?;
    }
    write_postprocess(ctx.out, &report)?;
    debug_assert!(st.classes.iter().all(|c| c.len() == heads));
    Ok(())
}

/// The single input behind the optional parameter `name`, when given.
fn optional_input<'a>(
    ctx: &'a RunCtx<'_>,
    name: &str,
) -> Result<Option<&'a InputArtifact>, NodeError> {
    match ctx.inputs.get(name) {
        Some(_) => ctx.input(name).map(Some),
        None => Ok(None),
    }
}

/// The length probabilities the `length` step uses: `length_from`'s
/// (which must predict the same items), else the input's own; an error
/// when the step is taken without them.
fn length_probs(
    ctx: &RunCtx<'_>,
    input: &InputArtifact,
    items: &[Item],
    own_length: &Option<Probs>,
    wanted: bool,
) -> Result<Option<Probs>, NodeError> {
    let length: Option<Probs> = match optional_input(ctx, "length_from")? {
        Some(a) => {
            let other = read_pred(a)?;
            if other.items != items {
                return Err(NodeError::file(
                    a.dir.join(ITEMS_FILE),
                    format!(
                        "length_from: `{}` predicts other items than `{}`; the length probabilities must be for the same items in the same order",
                        a.node, input.node
                    ),
                ));
            }
            match other.length {
                Some(l) => Some(l),
                None => {
                    return Err(NodeError::new("foldwise::postprocess::length", format!(
                        "length_from: `{}` has no {LENGTH_FILE}; train its models with `model.length_head = true`",
                        a.node
                    )))
                }
            }
        }
        None => own_length.clone(),
    };
    if wanted && length.is_none() {
        return Err(NodeError::new("foldwise::postprocess::length", format!(
            "step `length` needs length probabilities, but `{}` has no {LENGTH_FILE}: train its models with `model.length_head = true`, or name a prediction that has them in `length_from`",
            input.node
        )));
    }
    Ok(length)
}

/// The per-position frequencies of the `labels` data, when the
/// `position_prior` step is taken (which needs labelled `labels`).
fn position_prior(
    labels: Option<&InputArtifact>,
    heads: usize,
    wanted: bool,
) -> Result<Option<Prior>, NodeError> {
    let l = match (wanted, labels) {
        (false, _) => return Ok(None),
        (true, None) => {
            return Err(NodeError::new("foldwise::postprocess::labels", 
                "step `position_prior` needs `labels`: the labelled training data whose per-position frequencies it uses",
            ))
        }
        (true, Some(l)) => l,
    };
    let index = DataIndex::load(&l.dir)?;
    if !index.labelled {
        return Err(NodeError::new(
            "foldwise::postprocess::labels",
            format!("labels: data `{}` is unlabelled", l.node),
        ));
    }
    let codes: Vec<&[u8]> = index
        .items
        .iter()
        .map(|it| it.label.as_deref().unwrap_or(&[]))
        .collect();
    Prior::count(&codes, heads).map(Some).map_err(|m| {
        NodeError::new(
            "foldwise::postprocess::labels",
            format!("labels: data `{}`: {m}", l.node),
        )
    })
}

/// The out-of-fold predictions the settings are fitted on, with their
/// true codes, as the steps change them.
struct OutOfFold {
    state: State,
    truth: Vec<Vec<u8>>,
    length: Option<Probs>,
}

impl OutOfFold {
    /// Applies the chosen setting (if any) to the out-of-fold predictions;
    /// their sequence accuracy before and after.
    fn apply(&mut self, chosen: Option<&Setting>, prior: Option<&Prior>) -> (f64, f64) {
        let before = seq_acc(&self.state.classes, &self.truth);
        if let Some(c) = chosen {
            let aids = Aids {
                length: self.length.as_ref(),
                prior,
            };
            self.state = apply(c, &self.state, aids);
        }
        (before, seq_acc(&self.state.classes, &self.truth))
    }
}

/// The `oof` predictions when given (which need `labels`, the input's
/// heads and, for a `length` step, length probabilities).
fn out_of_fold(
    ctx: &RunCtx<'_>,
    labels: Option<&InputArtifact>,
    input: &InputArtifact,
    heads: usize,
    wants_length: bool,
) -> Result<Option<OutOfFold>, NodeError> {
    let arts = match ctx.inputs.get("oof") {
        Some(arts) if !arts.is_empty() => arts,
        _ => return Ok(None),
    };
    let Some(l) = labels else {
        return Err(NodeError::new(
            "foldwise::postprocess::labels",
            "`oof` needs `labels`: the labelled data the out-of-fold predictions were made on",
        ));
    };
    let (pred, truth) = read_oof(arts, l)?;
    if pred.state.probs.heads != heads {
        return Err(NodeError::new(
            "foldwise::postprocess::oof",
            format!(
                "oof: the out-of-fold predictions have {} heads, `{}` has {heads}",
                pred.state.probs.heads, input.node
            ),
        ));
    }
    if wants_length && pred.length.is_none() {
        return Err(NodeError::new("foldwise::postprocess::length", format!(
            "oof: fitting the `length` step needs {LENGTH_FILE} in every out-of-fold prediction; train their models with `model.length_head = true`"
        )));
    }
    Ok(Some(OutOfFold {
        state: pred.state,
        truth,
        length: pred.length,
    }))
}

/// The setting of one step: as given, or fitted on the out-of-fold
/// predictions (with every candidate tried); a `"fit"` setting without
/// `oof` is an error.
fn choose(
    step: &str,
    p: &Params,
    oof: &Option<OutOfFold>,
    prior: Option<&Prior>,
) -> Result<(Option<Setting>, &'static str, Vec<Tried>), NodeError> {
    let (kind, setting) = settings_of(step, p, oof.is_some())?;
    match (setting, oof) {
        (Ok(s), _) => Ok((Some(s), "given", Vec::new())),
        (Err(cands), Some(o)) => {
            let aids = Aids {
                length: o.length.as_ref(),
                prior,
            };
            let (tried, best) = fit(&cands, &o.state, aids, &o.truth, p.significance);
            Ok((best, "oof", tried))
        }
        (Err(_), None) => {
            let what = match kind.as_str() {
                "length_force" => "length.threshold",
                "length_joint" => "length.weight",
                _ => "position_prior.weight",
            };
            Err(NodeError::new("foldwise::postprocess::fit", format!(
                "step `{step}`: `{what}` is \"fit\" (the default), but there is no `oof` input to fit it on; give out-of-fold predictions in `oof` (with `labels`), or set `{what}` to a number"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::prediction::testutil::{dataset, input, run_kind};
    use crate::artifact::prediction::{items_of, CLASSES_FILE};
    use crate::artifact::scores::POSTPROCESS_FILE;
    use crate::predictions::{BLANK, CLASSES};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;

    const HEADS: usize = 6;

    /// Probabilities for the labels of `codes`: sure digits and blanks,
    /// except that for `damaged` items the last digit is a near tie with
    /// the blank (0.45 vs 0.5), so the argmax drops it.
    fn probs_for(codes: &[Vec<u8>], damaged: &dyn Fn(usize) -> bool) -> Probs {
        let mut data = Vec::new();
        for (i, c) in codes.iter().enumerate() {
            for h in 0..HEADS {
                let mut r = [0.0f32; CLASSES];
                if h < c.len() {
                    let weak = damaged(i) && h + 1 == c.len();
                    let (p, b) = if weak { (0.45, 0.5) } else { (0.8, 0.1) };
                    r[c[h] as usize] = p;
                    r[BLANK as usize] = b;
                    let rest = (1.0 - p - b) / 9.0;
                    for (k, x) in r.iter_mut().enumerate() {
                        if k != c[h] as usize && k != BLANK as usize {
                            *x = rest;
                        }
                    }
                } else {
                    r = [0.01; CLASSES];
                    r[BLANK as usize] = 0.9;
                }
                data.extend(r);
            }
        }
        Probs::new(codes.len(), HEADS, data).unwrap()
    }

    /// Length probabilities: 0.9 on the true length.
    fn lengths_for(codes: &[Vec<u8>]) -> Probs {
        let mut data = Vec::new();
        for c in codes {
            let mut r = [0.01f32; CLASSES];
            r[c.len()] = 0.9;
            data.extend(r);
        }
        Probs::new(codes.len(), 1, data).unwrap()
    }

    /// A prediction artifact of `indices` of `index` in `dir`.
    fn prediction(
        dir: &Path,
        index: &DataIndex,
        indices: &[usize],
        damaged: &dyn Fn(usize) -> bool,
        length: bool,
    ) {
        fs::create_dir_all(dir).unwrap();
        let codes: Vec<Vec<u8>> = indices
            .iter()
            .map(|&i| index.items[i].label.clone().unwrap())
            .collect();
        let items = items_of(index, indices);
        let p = probs_for(&codes, &|k| damaged(indices[k]));
        write_output(dir, &items, &p, None).unwrap();
        if length {
            write_length(dir, &lengths_for(&codes)).unwrap();
        }
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: std::path::PathBuf,
        inputs: BTreeMap<String, Vec<InputArtifact>>,
    }

    /// 12 plates; the input predicts all of them, odd items damaged; two
    /// out-of-fold artifacts (items 0-5 and 6-11) damaged the same way.
    fn fixture(length: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let index = dataset(&root.join("data"), 12, 5);
        let odd = |i: usize| i % 2 == 1;
        for (name, items) in [("pred", 0..12), ("oof0", 0..6), ("oof1", 6..12)] {
            let items: Vec<usize> = items.collect();
            prediction(&root.join(name), &index, &items, &odd, length);
        }
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "predictions".into(),
            vec![input("pred", &root.join("pred"), "p")],
        );
        inputs.insert(
            "labels".into(),
            vec![input("plates", &root.join("data"), "d")],
        );
        inputs.insert(
            "truth".into(),
            vec![input("plates", &root.join("data"), "d")],
        );
        inputs.insert(
            "oof".into(),
            vec![
                input("oof[0]", &root.join("oof0"), "o0"),
                input("oof[1]", &root.join("oof1"), "o1"),
            ],
        );
        Fixture {
            _tmp: tmp,
            root,
            inputs,
        }
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn fitted_steps_apply_only_where_they_help_out_of_fold() {
        let f = fixture(true);
        let out = run_kind(
            &Postprocess,
            json!({"predictions": "pred", "steps": ["rules", "length"], "labels": "plates",
                   "oof": ["oof[*]"], "truth": "plates"}),
            f.inputs.clone(),
            &f.root,
            "post",
            None,
        )
        .unwrap();
        let r = read_json(&out.join(POSTPROCESS_FILE));
        // Every decoding is well formed: rules change nothing out of fold,
        // so they stay off.
        assert_eq!(r["steps"][0]["step"], "rules");
        // Present and null: `r[..]` of a missing field would be null too.
        assert_eq!(r["steps"][0].get("setting"), Some(&Value::Null));
        assert_eq!(r["steps"][0]["chosen_by"], "oof");
        assert_eq!(r["steps"][0]["changed"], 0);
        // The joint length fixes every damaged item; the heads alone
        // (weight 0) cannot break the tie, so the mildest helping weight
        // is 0.25.
        let l = &r["steps"][1];
        assert_eq!(
            l["setting"],
            json!({"kind": "length_joint", "weight": 0.25})
        );
        assert_eq!(l["oof_before"], 0.5);
        assert_eq!(l["oof_after"], 1.0);
        assert_eq!(l["tried"].as_array().unwrap().len(), 7);
        assert_eq!(
            (l["changed"].clone(), l["fixed"].clone(), l["broke"].clone()),
            (json!(6), json!(6), json!(0))
        );
        assert_eq!(r["seq_acc_input"], 0.5);
        assert_eq!(r["seq_acc_final"], 1.0);
        assert_eq!(r["oof_items"], 12);
        // The corrected classes are what evaluate and submit read.
        let out_pred = read_output(&out).unwrap();
        assert!(out_pred.classes.is_some());
        let codes: Vec<String> =
            serde_json::from_value(read_json(&out.join("codes.json"))).unwrap();
        let index = DataIndex::load(&f.root.join("data")).unwrap();
        let want: Vec<String> = index
            .items
            .iter()
            .map(|it| crate::predictions::code_string(it.label.as_ref().unwrap()))
            .collect();
        assert_eq!(codes, want);
        assert!(out.join(CLASSES_FILE).exists() && out.join(LENGTH_FILE).exists());
        let text = fs::read_to_string(out.join(REPORT_FILE)).unwrap();
        assert!(
            text.starts_with(
                "post-processing of 12 images, fitted on 12 out-of-fold predictions\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("length (joint)   weight 0.25 (fitted)"),
            "{text}"
        );
        assert!(
            text.contains("rules            off (no oof evidence)"),
            "{text}"
        );
        assert!(
            text.ends_with("sequence accuracy 50.00% → 100.00% (+50.00 points)\n"),
            "{text}"
        );
    }

    #[test]
    fn a_harmful_step_stays_off_and_a_given_setting_is_applied_and_reported() {
        let f = fixture(true);
        // A length model that always says one digit: forcing it only breaks.
        let index = DataIndex::load(&f.root.join("data")).unwrap();
        for (name, range) in [("oof0", 0..6), ("oof1", 6..12), ("pred", 0..12)] {
            let ones: Vec<Vec<u8>> = range.map(|_| vec![1u8]).collect();
            write_length(&f.root.join(name), &lengths_for(&ones)).unwrap();
        }
        let params = |threshold: Value| {
            json!({"predictions": "pred", "steps": ["length"], "length": {"mode": "force", "threshold": threshold},
                   "labels": "plates", "oof": ["oof[*]"], "truth": "plates"})
        };
        let out = run_kind(
            &Postprocess,
            params(json!("fit")),
            f.inputs.clone(),
            &f.root,
            "a",
            None,
        )
        .unwrap();
        let r = read_json(&out.join(POSTPROCESS_FILE));
        assert_eq!(r["steps"][0].get("setting"), Some(&Value::Null));
        assert_eq!(
            r["seq_acc_final"].as_f64().unwrap(),
            r["seq_acc_input"].as_f64().unwrap()
        );
        // Given explicitly, it is applied, and the out-of-fold loss shows.
        let out = run_kind(
            &Postprocess,
            params(json!(0.5)),
            f.inputs.clone(),
            &f.root,
            "b",
            None,
        )
        .unwrap();
        let r = read_json(&out.join(POSTPROCESS_FILE));
        let s = &r["steps"][0];
        assert_eq!(
            s["setting"],
            json!({"kind": "length_force", "threshold": 0.5})
        );
        assert_eq!(s["chosen_by"], "given");
        let multi = index
            .items
            .iter()
            .filter(|it| it.label.as_ref().unwrap().len() > 1)
            .count();
        let right_before = (0..12)
            .filter(|i| i % 2 == 0)
            .filter(|&i| index.items[i].label.as_ref().unwrap().len() > 1)
            .count();
        assert_eq!(s["broke"], right_before);
        assert!(s["oof_after"].as_f64().unwrap() < s["oof_before"].as_f64().unwrap());
        assert!(multi > 0);
    }

    /// The scored predictions differ from the out-of-fold ones: out of
    /// fold the length model is right (forcing it fixes every damaged
    /// item), on the scored items it always says one digit (forcing it only
    /// breaks). Fitting on the scored set would leave the step off; the
    /// out-of-fold choice must be the one applied, even though it hurts
    /// the scored set.
    #[test]
    fn settings_are_fitted_out_of_fold_never_on_the_scored_set() {
        let f = fixture(true);
        let index = DataIndex::load(&f.root.join("data")).unwrap();
        let ones: Vec<Vec<u8>> = (0..12).map(|_| vec![1u8]).collect();
        let wrong_length = lengths_for(&ones);
        write_length(&f.root.join("pred"), &wrong_length).unwrap();
        let truth: Vec<Vec<u8>> = index
            .items
            .iter()
            .map(|it| it.label.clone().unwrap())
            .collect();

        // The fixture discriminates: on the scored set the fit says off.
        let scored = read_output(&f.root.join("pred")).unwrap();
        let scored = State::new(scored.probs.clone(), scored.final_classes());
        let aids = Aids {
            length: Some(&wrong_length),
            prior: None,
        };
        let (_, on_scored) = fit(&candidates("length_force"), &scored, aids, &truth, 0.05);
        assert_eq!(on_scored, None);

        let out = run_kind(
            &Postprocess,
            json!({"predictions": "pred", "steps": ["length"], "length": {"mode": "force"},
                   "labels": "plates", "oof": ["oof[*]"], "truth": "plates"}),
            f.inputs.clone(),
            &f.root,
            "post",
            None,
        )
        .unwrap();
        let r = read_json(&out.join(POSTPROCESS_FILE));
        let s = &r["steps"][0];
        assert_eq!(s["chosen_by"], "oof");
        let chosen: Setting = serde_json::from_value(s["setting"].clone())
            .unwrap_or_else(|e| panic!("the out-of-fold fit turns the step on ({e}): {s}"));
        assert!(matches!(chosen, Setting::LengthForce { .. }), "{chosen:?}");
        assert_eq!(
            (s["oof_before"].as_f64(), s["oof_after"].as_f64()),
            (Some(0.5), Some(1.0))
        );
        // Applied to the scored items, where it breaks codes.
        let broke = s["broke"].as_u64().unwrap();
        assert!(broke > 0, "{s}");
        assert!(
            r["seq_acc_final"].as_f64().unwrap() < r["seq_acc_input"].as_f64().unwrap(),
            "{r}"
        );
    }

    #[test]
    fn position_statistics_are_counted_from_the_labels() {
        let f = fixture(false);
        let mut inputs = f.inputs.clone();
        inputs.remove("oof");
        let out = run_kind(
            &Postprocess,
            json!({"predictions": "pred", "steps": ["position_prior"], "position_prior": {"weight": 1.0},
                   "labels": "plates", "truth": "plates"}),
            inputs,
            &f.root,
            "prior",
            None,
        )
        .unwrap();
        let r = read_json(&out.join(POSTPROCESS_FILE));
        let index = DataIndex::load(&f.root.join("data")).unwrap();
        let pr = &r["position_prior"];
        assert_eq!(pr["labels"], 12);
        for h in 0..HEADS {
            for c in 0..CLASSES {
                let count = index
                    .items
                    .iter()
                    .filter(|it| {
                        let l = it.label.as_ref().unwrap();
                        l.get(h).copied().unwrap_or(BLANK) as usize == c
                    })
                    .count();
                let want = (count + 1) as f64 / (12 + CLASSES) as f64;
                assert!(
                    (pr["freq"][h][c].as_f64().unwrap() - want).abs() < 1e-12,
                    "{h} {c}"
                );
            }
        }
        assert_eq!(r["steps"][0]["chosen_by"], "given");
        assert_eq!(
            r["steps"][0]["setting"],
            json!({"kind": "position_prior", "weight": 1.0})
        );
    }

    #[test]
    fn missing_aids_are_errors_that_say_what_to_do() {
        let f = fixture(false);
        let err = |params: Value, inputs: &BTreeMap<String, Vec<InputArtifact>>| {
            run_kind(&Postprocess, params, inputs.clone(), &f.root, "x", None)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(json!({"predictions": "pred", "steps": ["length"]}), &f.inputs),
            "step `length` needs length probabilities, but `pred` has no length.fwprobs: train its models with `model.length_head = true`, or name a prediction that has them in `length_from`"
        );
        let mut no_oof = f.inputs.clone();
        no_oof.remove("oof");
        assert_eq!(
            err(json!({"predictions": "pred", "steps": ["position_prior"]}), &no_oof),
            "step `position_prior`: `position_prior.weight` is \"fit\" (the default), but there is no `oof` input to fit it on; give out-of-fold predictions in `oof` (with `labels`), or set `position_prior.weight` to a number"
        );
        let mut no_labels = no_oof.clone();
        no_labels.remove("labels");
        assert_eq!(
            err(json!({"predictions": "pred", "steps": ["position_prior"], "position_prior": {"weight": 0.5}}), &no_labels),
            "step `position_prior` needs `labels`: the labelled training data whose per-position frequencies it uses"
        );
        // The same item out of fold twice.
        let mut dup = f.inputs.clone();
        dup.insert(
            "oof".into(),
            vec![
                input("oof[0]", &f.root.join("oof0"), "o0"),
                input("pred", &f.root.join("pred"), "p"),
            ],
        );
        let m = err(json!({"predictions": "pred", "steps": ["rules"]}), &dup);
        assert!(m.contains("pred/items.json: oof: item 0 ("), "{m}");
        assert!(
            m.contains(
                "is predicted by `oof[0]` and by `pred`; give one node's out-of-fold predictions"
            ),
            "{m}"
        );
        // Without oof, rules apply as given.
        let out = run_kind(
            &Postprocess,
            json!({"predictions": "pred", "steps": ["rules"]}),
            no_labels,
            &f.root,
            "r",
            None,
        )
        .unwrap();
        assert_eq!(
            read_json(&out.join(POSTPROCESS_FILE))["steps"][0]["setting"],
            json!({"kind": "rules"})
        );
    }

    #[test]
    fn check_and_canonical() {
        let issues = check(
            &json!({"steps": ["rules", "rules"], "length": {"weight": -1}, "position_prior": {"weight": "often"}}),
        );
        let got: Vec<(String, String)> = issues.into_iter().map(|i| (i.path, i.message)).collect();
        assert_eq!(
            got,
            vec![
                (
                    "steps[1]".to_string(),
                    "step `rules` is listed twice".to_string()
                ),
                (
                    "length.weight".to_string(),
                    "expected a number >= 0 or \"fit\", found -1".to_string()
                ),
                (
                    "position_prior.weight".to_string(),
                    "expected a number >= 0 or \"fit\", found \"often\"".to_string()
                ),
            ]
        );
        assert_eq!(
            check(&json!({"steps": []}))[0].message,
            "no steps: the node would change nothing"
        );
        assert_eq!(
            check(&json!({"steps": ["length"], "length": {"threshold": 1.5}}))[0].message,
            "expected a number in [0, 1] or \"fit\", found 1.5"
        );
        // Settings of steps not taken, and of the other length mode, drop out.
        let k = Postprocess;
        assert_eq!(
            k.canonical(json!({"steps": ["rules"], "length": {"mode": "joint", "weight": "fit", "threshold": "fit"}, "position_prior": {"weight": "fit"}})),
            json!({"steps": ["rules"]})
        );
        assert_eq!(
            k.canonical(json!({"steps": ["length"], "length": {"mode": "force", "weight": "fit", "threshold": 0.9}})),
            json!({"steps": ["length"], "length": {"mode": "force", "threshold": 0.9}})
        );
    }
}
