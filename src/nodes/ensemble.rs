//! The `ensemble` node kind: combines prediction artifacts (`predict` or
//! other `ensemble`s) over the same items.
//!
//! Methods:
//! - `mean`: the plain average of the inputs' `probs.fwprobs`;
//! - `weighted`: the weighted average; the weights are `weights` (one per
//!   input instance, in the order the references are written, a gathered
//!   `x[*]` giving its instances in index order) or else each input's
//!   validation accuracy: the mean `valid_seq_acc` of its `members.json`
//!   (an error when an input has none and no `weights` are given);
//! - `vote`: per image and head the most frequent argmax class among the
//!   *members*: an input's member files as its `members.json` lists them
//!   (a `predict`'s model × round files), or its `probs.fwprobs` when it
//!   lists none (an ensemble). `probs.fwprobs` is then the plain mean (for
//!   later use), while `codes.json` and `classes.json` hold the vote, which
//!   `evaluate` and `submit` prefer.
//!
//! - `select`: greedy forward selection with replacement (Caruana et al.,
//!   2004) over a library of members, by `metric` (`seq_acc` or
//!   `log_loss`), from a sorted start of the best `start` members, for
//!   `rounds` additions, keeping the best prefix; the weights are the
//!   counts ([`crate::predictions::fit::select`]);
//! - `stack`: non-negative weights summing to one that minimise the
//!   out-of-fold log loss ([`crate::predictions::fit::stack`]).
//!
//! `select` and `stack` are fitted on out-of-fold predictions, never on the
//! items they combine: `oof` names one reference per `inputs` reference, in
//! the same order (the `i`-th `oof` node's instances, concatenated, are the
//! out-of-fold predictions of the `i`-th `inputs` node's model), and
//! `labels` the labelled training data they predict. A member is one
//! `inputs` reference: its prediction is the mean of its instances. Every
//! member's out-of-fold predictions must cover the same items, none of them
//! twice. The fitted weights then combine the members' predictions as
//! `weighted` does; `fit.json` and `report.txt` say which members were
//! chosen, their weights and their out-of-fold scores, and the ensemble's.
//! The fit does not depend on the order the members are written in: they
//! are fitted in the order of their input digests.
//!
//! Length probabilities: when every input has `length.fwprobs`, the
//! artifact has their combination too — the weighted mean under
//! `weighted`, else the plain mean (a vote averages them).
//!
//! Artifact layout (as `predict`'s): `probs.fwprobs`, `items.json`,
//! `codes.json`, `classes.json` (vote only), `length.fwprobs` (see above),
//! and `members.json`: one entry
//! per input, `{"input": digest, "valid_seq_acc"}` (the input's mean
//! validation accuracy, `null` when unknown), in digest order.
//!
//! Guarantees: every input must list the same items in the same order
//! (error naming the first input that differs); the artifact does not depend
//! on the order of the inputs, bit for bit: inputs are sorted by digest
//! (carrying explicit weights along), and the combination itself is
//! order-independent ([`crate::predictions::ensemble`]).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use crate::artifact::prediction::{
    gather_oof, labelled_items, mean_valid_acc, read_member_probs, read_members, read_output,
    write_length, write_output, EnsembleInput, Item, Output, ITEMS_FILE, MEMBERS_FILE,
};
use crate::artifact::scores::{write_fit, FitMember, FitReport, REPORT_FILE};
use crate::artifact::write_json;
use crate::kind::schema::{Dflt, Param, Ty};
use crate::kind::{codes, InputArtifact, Kind, NodeError, ParamIssue, RunCtx};
use crate::predictions::fit::{self, Metric, Truth};
use crate::predictions::{ensemble, Probs};

pub struct Ensemble;

impl Kind for Ensemble {
    fn name(&self) -> &'static str {
        "ensemble"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Combines predictions over the same items: `mean` of probabilities, `weighted` mean (explicit `weights`, else each input's validation accuracy), per-character `vote` over the inputs' members, or weights fitted on out-of-fold predictions (`oof`, one per input, scored against `labels`): `select` (greedy forward selection with replacement, by `metric`) or `stack` (non-negative weights minimising log loss). Writes the same files as `predict` (`classes.json` too for a vote; `fit.json` and `report.txt` for a fitted ensemble)."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn canonical(&self, mut params: Value) -> Value {
        if let Some(obj) = params.as_object_mut() {
            let method = obj
                .get("method")
                .and_then(Value::as_str)
                .map(str::to_string);
            if method.as_deref() != Some("weighted") {
                obj.remove("weights");
            }
            if method.as_deref() != Some("select") {
                for k in ["metric", "start", "rounds"] {
                    obj.remove(k);
                }
            }
        }
        params
    }
    fn check(&self, params: &Value) -> Vec<ParamIssue> {
        check(params)
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        run(ctx)
    }
    fn closing_table(&self) -> Option<&'static str> {
        // Only a fitted ensemble writes one.
        Some(REPORT_FILE)
    }
    /// A fitted ensemble's out-of-fold scores (for the history, `log` and
    /// `diff`); the other methods score nothing.
    fn scores(&self, dir: &std::path::Path) -> Option<Vec<(String, f64)>> {
        crate::artifact::scores::read_fit(dir).ok().map(|f| {
            vec![
                ("oof_seq_acc".to_string(), f.oof_seq_acc),
                ("oof_log_loss".to_string(), f.oof_log_loss),
            ]
        })
    }
}

/// `select` and `stack` need `oof` (one reference per input) and
/// `labels`; the other methods take neither.
fn check(params: &Value) -> Vec<ParamIssue> {
    let mut out = Vec::new();
    let method = params["method"].as_str().unwrap_or("mean");
    let refs = |k: &str| -> Option<Vec<&str>> {
        params
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
    };
    let inputs = refs("inputs").unwrap_or_default();
    let fitted = matches!(method, "select" | "stack");
    if !fitted {
        for k in ["oof", "labels"] {
            if params.get(k).is_some() {
                out.push(ParamIssue {
                    path: k.into(),
                    message: format!(
                        "`{k}` is for `method = \"select\"` or `\"stack\"`, not `{method}`"
                    ),
                    help: Some(
                        "remove it, or choose a method fitted on out-of-fold predictions".into(),
                    ),
                });
            }
        }
        return out;
    }
    let twice = |list: &[&str], k: &str, out: &mut Vec<ParamIssue>| {
        let mut seen = BTreeSet::new();
        for (i, r) in list.iter().enumerate() {
            let node = crate::kind::node_of(r);
            if !seen.insert(node) {
                out.push(ParamIssue {
                    path: format!("{k}[{i}]"),
                    message: format!("node `{node}` is named twice in `{k}`"),
                    help: Some(
                        "each member is one node: name it once (`\"x[*]\"` gathers its instances)"
                            .into(),
                    ),
                });
            }
        }
    };
    twice(&inputs, "inputs", &mut out);
    match refs("oof") {
        None => out.push(ParamIssue {
            path: "method".into(),
            message: format!("`{method}` is fitted on out-of-fold predictions, and there is no `oof`"),
            help: Some("give `oof`: one reference per input, in the same order, e.g. `oof = [\"oof_a[*]\", \"oof_b[*]\"]`, and `labels`, the training data they predict".into()),
        }),
        Some(oof) => {
            if oof.len() != inputs.len() {
                out.push(ParamIssue {
                    path: "oof".into(),
                    message: format!(
                        "{} out-of-fold reference(s) for {} input(s): `{method}` needs one per input, in the same order",
                        oof.len(),
                        inputs.len()
                    ),
                    help: Some("the i-th `oof` node holds the out-of-fold predictions of the i-th input's model".into()),
                });
            }
            twice(&oof, "oof", &mut out);
            if params.get("labels").is_none() {
                out.push(ParamIssue {
                    path: "oof".into(),
                    message: "`oof` needs `labels`: the labelled data the out-of-fold predictions were made on".into(),
                    help: Some("add `labels = \"<the training data node>\"`".into()),
                });
            }
        }
    }
    out
}

static PARAMS: &[Param] = &[
    Param {
        name: "inputs",
        ty: Ty::List(&Ty::Ref(&["predict", "ensemble"])),
        default: Dflt::Required,
        doc: "The predictions to combine; `\"pred[*]\"` gathers every fold's.",
    },
    Param {
        name: "method",
        ty: Ty::Choice(&["mean", "vote", "weighted", "select", "stack"]),
        default: Dflt::Value("\"mean\""),
        doc: "`mean` of probabilities, `weighted` mean, per-character `vote`, or weights fitted on `oof`: `select` (greedy forward selection with replacement) or `stack` (minimum log loss).",
    },
    Param {
        name: "weights",
        ty: Ty::List(&Ty::Float {
            min: 0.0,
            max: f64::INFINITY,
            min_open: false,
            max_open: false,
        }),
        default: Dflt::Optional,
        doc: "For `weighted`: one weight per input instance, in written order (default: each input's validation accuracy).",
    },
    Param {
        name: "oof",
        ty: Ty::List(&Ty::Ref(&["predict", "ensemble"])),
        default: Dflt::Optional,
        doc: "For `select` and `stack`: one reference per `inputs` reference, in the same order: the out-of-fold predictions of that input's model over `labels`' items (`\"oof_a[*]\"` gathers every fold's).",
    },
    Param {
        name: "labels",
        ty: Ty::Ref(&["dataset", "synthetic"]),
        default: Dflt::Optional,
        doc: "For `select` and `stack`: the labelled training data the `oof` predictions predict.",
    },
    Param {
        name: "metric",
        ty: Ty::Choice(&["seq_acc", "log_loss"]),
        default: Dflt::Value("\"seq_acc\""),
        doc: "For `select`: what each addition maximises, out of fold: sequence accuracy or (minus) log loss.",
    },
    Param {
        name: "start",
        ty: Ty::Int {
            min: 1,
            max: i64::MAX,
        },
        default: Dflt::Value("1"),
        doc: "For `select`: start from the best `start` members, each once (a sorted start).",
    },
    Param {
        name: "rounds",
        ty: Ty::Int {
            min: 0,
            max: i64::MAX,
        },
        default: Dflt::Value("30"),
        doc: "For `select`: additions after the start; the best prefix is kept.",
    },
];

#[derive(Debug, Deserialize)]
struct EnsembleParams {
    method: String,
    #[serde(default)]
    weights: Option<Vec<f64>>,
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    start: Option<usize>,
    #[serde(default)]
    rounds: Option<usize>,
}

/// One input, read.
struct In<'a> {
    art: &'a InputArtifact,
    out: Output,
    /// Mean validation accuracy of its members, when all are known.
    acc: Option<f64>,
    weight: Option<f64>,
}

fn run(ctx: &RunCtx<'_>) -> Result<(), NodeError> {
    let p: EnsembleParams = ctx.typed()?;
    let arts = match ctx.inputs.get("inputs") {
        Some(v) if !v.is_empty() => v,
        _ => return Err(NodeError::new(codes::INPUT, "missing input `inputs`")),
    };
    if matches!(p.method.as_str(), "select" | "stack") {
        return run_fitted(ctx, &p, arts);
    }
    if let Some(w) = &p.weights {
        check_weight_count(w, arts)?;
    }
    let ins = read_inputs(arts, p.weights.as_deref())?;
    let first = &ins[0];
    for i in &ins[1..] {
        check_same_items(first, i)?;
    }
    let (mean, classes, length) = combine(&p.method, &ins)?;
    write_output(ctx.out, &first.out.items, &mean, classes.as_deref())?;
    if let Some(l) = &length {
        write_length(ctx.out, l)?;
    }
    let infos: Vec<EnsembleInput> = ins
        .iter()
        .map(|i| EnsembleInput {
            input: i.art.digest.clone(),
            valid_seq_acc: i.acc,
        })
        .collect();
    write_json(&ctx.out.join(MEMBERS_FILE), &infos)
}

/// One member of a fitted ensemble: its reference's position in `inputs`
/// (and `oof`), its input instances and its out-of-fold instances.
struct Member<'a> {
    position: usize,
    inputs: Vec<&'a InputArtifact>,
    oof: Vec<&'a InputArtifact>,
}

/// Artifacts grouped by node (an instance `x[1]` belongs to node `x`), in
/// the order the nodes first appear (the order their references are
/// written in).
fn by_node(arts: &[InputArtifact]) -> Vec<Vec<&InputArtifact>> {
    let node = |a: &InputArtifact| crate::kind::node_of(&a.node).to_string();
    let mut groups: Vec<Vec<&InputArtifact>> = Vec::new();
    for a in arts {
        match groups.iter_mut().find(|g| node(g[0]) == node(a)) {
            Some(g) => g.push(a),
            None => groups.push(vec![a]),
        }
    }
    groups
}

/// A member's prediction: the mean of its instances (which must predict
/// the same items), with their mean length probabilities when all have
/// them.
fn member_prediction(m: &Member<'_>) -> Result<Output, NodeError> {
    let outs: Vec<(&InputArtifact, Output)> = m
        .inputs
        .iter()
        .map(|a| Ok((*a, read_output(&a.dir)?)))
        .collect::<Result<_, NodeError>>()?;
    let (first_art, first) = &outs[0];
    for (a, o) in &outs[1..] {
        if o.items != first.items {
            return Err(NodeError::file(
                a.dir.join(ITEMS_FILE),
                format!(
                    "`{}` predicts other items than `{}`; the instances of one member must predict the same items",
                    a.node, first_art.node
                ),
            ));
        }
    }
    let probs: Vec<&Probs> = outs.iter().map(|(_, o)| &o.probs).collect();
    let lengths: Option<Vec<&Probs>> = outs.iter().map(|(_, o)| o.length.as_ref()).collect();
    Ok(Output {
        items: first.items.clone(),
        probs: ensemble::mean(&probs)?,
        classes: None,
        length: match lengths {
            Some(l) => Some(ensemble::mean(&l)?),
            None => None,
        },
    })
}

/// A member's out-of-fold predictions: its `oof` instances gathered (an
/// item left out of several bootstrap bags gets their mean), rows in item
/// order.
fn member_oof(m: &Member<'_>) -> Result<(Vec<Item>, Probs), NodeError> {
    let g = gather_oof(&m.oof, &format!("oof of inputs[{}]", m.position))?;
    let mut order: Vec<usize> = (0..g.items.len()).collect();
    order.sort_by_key(|&r| g.items[r].index);
    let width = g.probs.heads * crate::predictions::CLASSES;
    let items: Vec<Item> = order.iter().map(|&r| g.items[r].clone()).collect();
    let data: Vec<f32> = order
        .iter()
        .flat_map(|&r| g.probs.data[r * width..(r + 1) * width].iter().copied())
        .collect();
    let probs = Probs::new(items.len(), g.probs.heads, data)?;
    Ok((items, probs))
}

/// `select` and `stack`: fit weights on the members' out-of-fold
/// predictions, then combine their predictions with them.
fn run_fitted(
    ctx: &RunCtx<'_>,
    p: &EnsembleParams,
    arts: &[InputArtifact],
) -> Result<(), NodeError> {
    let oof_arts = match ctx.inputs.get("oof") {
        Some(v) if !v.is_empty() => v,
        _ => {
            return Err(NodeError::new(
                codes::INPUT,
                format!("`{}` needs `oof`", p.method),
            ))
        }
    };
    let labels = ctx.input("labels")?;
    let (ins, oofs) = (by_node(arts), by_node(oof_arts));
    if ins.len() != oofs.len() {
        return Err(NodeError::new(
            "foldwise::ensemble::oof",
            format!(
                "{} input node(s) but {} out-of-fold node(s): `{}` needs one `oof` reference per input",
                ins.len(),
                oofs.len(),
                p.method
            ),
        ));
    }
    let mut members: Vec<Member<'_>> = ins
        .into_iter()
        .zip(oofs)
        .enumerate()
        .map(|(position, (inputs, oof))| Member {
            position,
            inputs,
            oof,
        })
        .collect();
    // A canonical order: the fit does not depend on the written order.
    let digests =
        |m: &Member<'_>| -> Vec<String> { m.inputs.iter().map(|a| a.digest.clone()).collect() };
    members.sort_by_key(|m| digests(m));

    let preds: Vec<Output> = members
        .iter()
        .map(member_prediction)
        .collect::<Result<_, _>>()?;
    for (m, o) in members.iter().zip(&preds).skip(1) {
        if o.items != preds[0].items {
            return Err(NodeError::file(
                m.inputs[0].dir.join(ITEMS_FILE),
                format!(
                    "inputs[{}] (`{}`) predicts other items than inputs[{}] (`{}`); an ensemble needs the same items in the same order",
                    m.position, m.inputs[0].node, members[0].position, members[0].inputs[0].node
                ),
            ));
        }
    }
    let oof: Vec<(Vec<Item>, Probs)> = members.iter().map(member_oof).collect::<Result<_, _>>()?;
    for (m, (items, _)) in members.iter().zip(&oof).skip(1) {
        if *items != oof[0].0 {
            let other: BTreeSet<usize> = oof[0].0.iter().map(|i| i.index).collect();
            let mine: BTreeSet<usize> = items.iter().map(|i| i.index).collect();
            let differ = mine
                .symmetric_difference(&other)
                .next()
                .copied()
                .unwrap_or(0);
            return Err(NodeError::new(
                "foldwise::ensemble::oof",
                format!(
                    "oof: the out-of-fold predictions of inputs[{}] (`{}`) cover other items than those of inputs[{}] (`{}`): {} against {} items, e.g. item {differ} is in one only",
                    m.position, m.oof[0].node, members[0].position, members[0].oof[0].node,
                    items.len(), oof[0].0.len()
                ),
            ).with_help("every member's out-of-fold predictions must cover the same training items (the same split)"));
        }
    }
    let items = &oof[0].0;
    let heads = oof[0].1.heads;
    let labelled = labelled_items(&members[0].oof[0].dir, items, &labels.dir, &labels.node)?;
    let mut codes = Vec::with_capacity(labelled.len());
    for d in labelled {
        match d.label {
            Some(l) => codes.push(l),
            None => {
                return Err(NodeError::new(
                    "foldwise::ensemble::labels",
                    format!(
                        "labels: `{}` in data `{}` has no label",
                        d.file, labels.node
                    ),
                ))
            }
        }
    }
    let truth = Truth::new(&codes, heads).map_err(|e| {
        NodeError::new(
            "foldwise::ensemble::labels",
            format!("labels `{}`: {e}", labels.node),
        )
    })?;
    let oof_probs: Vec<&Probs> = oof.iter().map(|(_, p)| p).collect();
    let metric =
        Metric::parse(p.metric.as_deref().unwrap_or("log_loss")).unwrap_or(Metric::LogLoss);
    let (weights, chosen, path, size, iterations) = match p.method.as_str() {
        "select" => {
            let s = fit::select(
                &oof_probs,
                &truth,
                metric,
                p.start.unwrap_or(1),
                p.rounds.unwrap_or(30),
            )?;
            let size = s.counts.iter().sum::<usize>();
            let path = s
                .path
                .iter()
                .map(|&(j, sc)| (members[j].position, metric.shown(sc)))
                .collect();
            (s.weights, Some(s.counts), path, Some(size), None)
        }
        _ => {
            let k = fit::stack(&oof_probs, &truth)?;
            (k.weights, None, Vec::new(), None, Some(k.iterations))
        }
    };
    let mixed = ensemble::weighted(&oof_probs, &weights)?;
    let scores = |p: &Probs| -> Result<(f64, f64), NodeError> {
        Ok((
            fit::score(p, &truth, Metric::SeqAcc)?,
            Metric::LogLoss.shown(fit::score(p, &truth, Metric::LogLoss)?),
        ))
    };
    let (oof_seq_acc, oof_log_loss) = scores(&mixed)?;
    let mut fitted = Vec::with_capacity(members.len());
    for (j, m) in members.iter().enumerate() {
        let (acc, loss) = scores(oof_probs[j])?;
        fitted.push(FitMember {
            position: m.position,
            inputs: m.inputs.iter().map(|a| a.digest.clone()).collect(),
            oof: m.oof.iter().map(|a| a.digest.clone()).collect(),
            oof_seq_acc: acc,
            oof_log_loss: loss,
            weight: weights[j],
            chosen: chosen.as_ref().map(|c| c[j]),
        });
    }
    fitted.sort_by_key(|f| f.position);

    let test: Vec<&Probs> = preds.iter().map(|o| &o.probs).collect();
    let combined = ensemble::weighted(&test, &weights)?;
    write_output(ctx.out, &preds[0].items, &combined, None)?;
    let lengths: Option<Vec<&Probs>> = preds.iter().map(|o| o.length.as_ref()).collect();
    if let Some(l) = lengths {
        write_length(ctx.out, &ensemble::weighted(&l, &weights)?)?;
    }
    let mut infos: Vec<EnsembleInput> = Vec::new();
    for a in arts {
        infos.push(EnsembleInput {
            input: a.digest.clone(),
            valid_seq_acc: mean_valid_acc(&a.dir)?,
        });
    }
    infos.sort_by(|a, b| a.input.cmp(&b.input));
    write_json(&ctx.out.join(MEMBERS_FILE), &infos)?;
    write_fit(
        ctx.out,
        &FitReport {
            method: p.method.clone(),
            metric: if p.method == "select" {
                metric.name()
            } else {
                "log_loss"
            }
            .to_string(),
            oof_items: items.len(),
            members: fitted,
            oof_seq_acc,
            oof_log_loss,
            path,
            size,
            iterations,
        },
    )
}

/// Errors unless there is one weight per input.
fn check_weight_count(w: &[f64], arts: &[InputArtifact]) -> Result<(), NodeError> {
    if w.len() == arts.len() {
        return Ok(());
    }
    Err(NodeError::new(
        "foldwise::ensemble::weights",
        format!(
            "weights: {} weights for {} inputs ({})",
            w.len(),
            arts.len(),
            arts.iter()
                .map(|a| format!("`{}`", a.node))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// Reads every input with its mean validation accuracy and its explicit
/// weight, in digest order: the same set of inputs gives the same
/// artifact.
fn read_inputs<'a>(
    arts: &'a [InputArtifact],
    weights: Option<&[f64]>,
) -> Result<Vec<In<'a>>, NodeError> {
    let mut ins = Vec::with_capacity(arts.len());
    for (k, art) in arts.iter().enumerate() {
        let out = read_output(&art.dir)?;
        ins.push(In {
            art,
            out,
            acc: mean_valid_acc(&art.dir)?,
            weight: weights.map(|w| w[k]),
        });
    }
    ins.sort_by(|a, b| a.art.digest.cmp(&b.art.digest));
    Ok(ins)
}

/// Errors unless input `i` predicts the items of input `first`, in order.
fn check_same_items(first: &In<'_>, i: &In<'_>) -> Result<(), NodeError> {
    if i.out.items == first.out.items {
        return Ok(());
    }
    Err(NodeError::file(
        i.art.dir.join(ITEMS_FILE),
        format!(
            "input `{}` predicts other items than input `{}` ({} vs {} items, or another order); an ensemble needs the same items in the same order",
            i.art.node,
            first.art.node,
            i.out.items.len(),
            first.out.items.len()
        ),
    ))
}

/// The combined probabilities, the vote's classes (`vote` only) and, when
/// every input has them, the combined length probabilities.
type Combined = (Probs, Option<Vec<Vec<u8>>>, Option<Probs>);

/// Combines the inputs by `method`.
fn combine(method: &str, ins: &[In<'_>]) -> Result<Combined, NodeError> {
    let probs: Vec<&Probs> = ins.iter().map(|i| &i.out.probs).collect();
    let lengths: Option<Vec<&Probs>> = ins.iter().map(|i| i.out.length.as_ref()).collect();
    let (mean, classes, length) = match method {
        "weighted" => {
            let weights = weights_of(ins)?;
            let length = match &lengths {
                Some(l) => Some(ensemble::weighted(l, &weights)?),
                None => None,
            };
            (ensemble::weighted(&probs, &weights)?, None, length)
        }
        "vote" => {
            let mut voters: Vec<Probs> = Vec::new();
            for i in ins {
                voters.extend(members_of(i)?);
            }
            let refs: Vec<&Probs> = voters.iter().collect();
            let mean = ensemble::mean(&probs)?;
            (mean, Some(ensemble::vote(&refs)?), None)
        }
        _ => (ensemble::mean(&probs)?, None, None),
    };
    let length = match (length, &lengths) {
        (None, Some(l)) => Some(ensemble::mean(l)?),
        (length, _) => length,
    };
    Ok((mean, classes, length))
}

/// The weight of every input: explicit, else its validation accuracy.
fn weights_of(ins: &[In<'_>]) -> Result<Vec<f64>, NodeError> {
    ins.iter()
        .map(|i| {
            i.weight.or(i.acc).ok_or_else(|| {
                NodeError::file(
                    i.art.dir.join(MEMBERS_FILE),
                    format!(
                        "input `{}` has no validation accuracy for every member, so it has no default weight; give `weights`",
                        i.art.node
                    ),
                )
            })
        })
        .collect()
}

/// The voters of one input: its member files, or its mean probabilities.
fn members_of(i: &In<'_>) -> Result<Vec<Probs>, NodeError> {
    let files: Vec<String> = read_members(&i.art.dir)?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.file)
        .collect();
    if files.is_empty() {
        return Ok(vec![i.out.probs.clone()]);
    }
    let shape = (i.out.probs.n, i.out.probs.heads);
    files
        .iter()
        .map(|f| {
            read_member_probs(&i.art.dir, f, shape, |n, heads| {
                format!(
                    "{n} images × {heads} heads, but the input's probs.fwprobs has {} × {}",
                    shape.0, shape.1
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::prediction::testutil::{files, input, run_kind};
    use crate::artifact::prediction::{Item, CLASSES_FILE, CODES_FILE, PROBS_FILE};
    use crate::artifact::probs;
    use crate::predictions::CLASSES;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;
    use std::path::PathBuf;

    /// One item, one head: `pairs` of (class, probability).
    fn row(pairs: &[(usize, f32)]) -> Vec<f32> {
        let mut r = vec![0.0; CLASSES];
        for &(c, p) in pairs {
            r[c] = p;
        }
        r
    }

    fn items(n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                index: i,
                file: format!("{i}.png"),
            })
            .collect()
    }

    /// A prediction artifact of one item × one head with `data`, and
    /// optionally member files with their accuracies.
    fn artifact(
        root: &Path,
        name: &str,
        data: Vec<f32>,
        members: &[(Vec<f32>, Option<f64>)],
    ) -> PathBuf {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("members")).unwrap();
        write_output(&dir, &items(1), &Probs::new(1, 1, data).unwrap(), None).unwrap();
        let mut list = Vec::new();
        for (k, (d, acc)) in members.iter().enumerate() {
            let f = format!("members/m{k}.fwprobs");
            fs::write(
                dir.join(&f),
                probs::to_bytes(&Probs::new(1, 1, d.clone()).unwrap()),
            )
            .unwrap();
            list.push(json!({"file": f, "valid_seq_acc": acc}));
        }
        if !members.is_empty() {
            fs::write(dir.join(MEMBERS_FILE), serde_json::to_vec(&list).unwrap()).unwrap();
        }
        dir
    }

    #[test]
    fn length_probabilities_are_combined_when_every_input_has_them() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let a = artifact(
            root,
            "a",
            row(&[(1, 1.0)]),
            &[(row(&[(1, 1.0)]), Some(0.5))],
        );
        let b = artifact(
            root,
            "b",
            row(&[(2, 1.0)]),
            &[(row(&[(2, 1.0)]), Some(0.25))],
        );
        let c = artifact(root, "c", row(&[(3, 1.0)]), &[]);
        let la = Probs::new(1, 1, row(&[(1, 0.8), (2, 0.2)])).unwrap();
        let lb = Probs::new(1, 1, row(&[(2, 0.4), (3, 0.6)])).unwrap();
        write_length(&a, &la).unwrap();
        write_length(&b, &lb).unwrap();
        let length = |dir: &Path| read_output(dir).unwrap().length;
        for method in ["mean", "vote"] {
            let out = ens(
                root,
                &[("a", &a), ("b", &b)],
                json!({"method": method}),
                method,
            )
            .unwrap();
            assert_eq!(
                length(&out),
                Some(ensemble::mean(&[&la, &lb]).unwrap()),
                "{method}"
            );
        }
        let out = ens(
            root,
            &[("a", &a), ("b", &b)],
            json!({"method": "weighted"}),
            "w",
        )
        .unwrap();
        assert_eq!(
            length(&out),
            Some(ensemble::weighted(&[&la, &lb], &[0.5, 0.25]).unwrap())
        );
        // One input without: none.
        let out = ens(root, &[("a", &a), ("c", &c)], json!({}), "none").unwrap();
        assert_eq!(length(&out), None);
    }

    fn ens(
        root: &Path,
        arts: &[(&str, &Path)],
        params: Value,
        out: &str,
    ) -> Result<PathBuf, NodeError> {
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "inputs".to_string(),
            arts.iter()
                .map(|(n, d)| input(n, d, &format!("digest-{n}")))
                .collect(),
        );
        let mut p = json!({"inputs": arts.iter().map(|(n, _)| *n).collect::<Vec<_>>()});
        for (k, v) in params.as_object().unwrap() {
            p[k] = v.clone();
        }
        run_kind(&Ensemble, p, inputs, root, out, None)
    }

    fn codes(dir: &Path) -> Vec<String> {
        serde_json::from_slice(&fs::read(dir.join(CODES_FILE)).unwrap()).unwrap()
    }

    #[test]
    fn mean_and_vote_differ_and_vote_wins_codes() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let a = artifact(r, "a", row(&[(1, 0.51), (2, 0.49)]), &[]);
        let b = artifact(r, "b", row(&[(1, 0.51), (2, 0.49)]), &[]);
        let c = artifact(r, "c", row(&[(2, 1.0)]), &[]);
        let arts = [("a", a.as_path()), ("b", b.as_path()), ("c", c.as_path())];
        let mean = ens(r, &arts, json!({}), "mean").unwrap();
        assert_eq!(codes(&mean), ["2"]);
        assert!(!mean.join(CLASSES_FILE).exists());
        let vote = ens(r, &arts, json!({"method": "vote"}), "vote").unwrap();
        assert_eq!(codes(&vote), ["1"]);
        assert_eq!(
            fs::read_to_string(vote.join(CLASSES_FILE)).unwrap(),
            "[\n  [\n    1\n  ]\n]\n"
        );
        // The vote's probabilities are the mean, for later use.
        assert_eq!(
            fs::read(vote.join(PROBS_FILE)).unwrap(),
            fs::read(mean.join(PROBS_FILE)).unwrap()
        );
        let o = read_output(&vote).unwrap();
        assert_eq!(o.final_classes(), vec![vec![1]]);
    }

    #[test]
    fn vote_counts_an_inputs_members() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // One predict-like input whose mean says 2 but whose members say 1, 1, 2.
        let m1 = row(&[(1, 0.6), (2, 0.4)]);
        let m3 = row(&[(2, 1.0)]);
        let p = artifact(
            r,
            "p",
            row(&[(1, 0.4), (2, 0.6)]),
            &[(m1.clone(), None), (m1, None), (m3, None)],
        );
        let vote = ens(r, &[("p", p.as_path())], json!({"method": "vote"}), "vote").unwrap();
        assert_eq!(codes(&vote), ["1"]);
        let mean = ens(r, &[("p", p.as_path())], json!({}), "mean").unwrap();
        assert_eq!(codes(&mean), ["2"]);
    }

    #[test]
    fn independent_of_input_order() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let a = artifact(r, "a", row(&[(1, 0.3), (3, 0.7)]), &[]);
        let b = artifact(r, "b", row(&[(1, 0.1), (4, 0.9)]), &[]);
        let c = artifact(r, "c", row(&[(1, 0.7), (2, 0.3)]), &[]);
        for method in ["mean", "vote", "weighted"] {
            let w = |ws: [f64; 3]| json!({"method": method, "weights": ws});
            let x = ens(
                r,
                &[("a", &a), ("b", &b), ("c", &c)],
                w([1.0, 2.0, 3.0]),
                &format!("{method}-x"),
            )
            .unwrap();
            let y = ens(
                r,
                &[("c", &c), ("a", &a), ("b", &b)],
                w([3.0, 1.0, 2.0]),
                &format!("{method}-y"),
            )
            .unwrap();
            let z = ens(
                r,
                &[("b", &b), ("c", &c), ("a", &a)],
                w([2.0, 3.0, 1.0]),
                &format!("{method}-z"),
            )
            .unwrap();
            assert_eq!(files(&x), files(&y), "{method}");
            assert_eq!(files(&x), files(&z), "{method}");
        }
    }

    /// The artifact in `out` weighs class 1 by 1/4 and class 2 by 3/4.
    fn assert_one_to_three(out: &Path) {
        let p = probs::read(&out.join(PROBS_FILE)).unwrap();
        assert!(
            (p.data[1] - 0.25).abs() < 1e-6 && (p.data[2] - 0.75).abs() < 1e-6,
            "{:?}",
            p.data
        );
    }

    #[test]
    fn weighted_with_explicit_and_default_weights() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let a = artifact(r, "a", row(&[(1, 1.0)]), &[(row(&[(1, 1.0)]), Some(0.2))]);
        let b = artifact(r, "b", row(&[(2, 1.0)]), &[(row(&[(2, 1.0)]), Some(0.6))]);
        let out = ens(
            r,
            &[("a", &a), ("b", &b)],
            json!({"method": "weighted", "weights": [1.0, 3.0]}),
            "w",
        )
        .unwrap();
        assert_one_to_three(&out);
        // Default: the validation accuracies, 0.2 and 0.6.
        let out = ens(
            r,
            &[("a", &a), ("b", &b)],
            json!({"method": "weighted"}),
            "acc",
        )
        .unwrap();
        assert_one_to_three(&out);
        let m: Value = serde_json::from_slice(&fs::read(out.join(MEMBERS_FILE)).unwrap()).unwrap();
        assert_eq!(
            m,
            json!([{"input": "digest-a", "valid_seq_acc": 0.2}, {"input": "digest-b", "valid_seq_acc": 0.6}])
        );
        // Neither: an error naming the input; wrong count: an error.
        let c = artifact(r, "c", row(&[(3, 1.0)]), &[]);
        let e = ens(
            r,
            &[("a", &a), ("c", &c)],
            json!({"method": "weighted"}),
            "e1",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("members.json: input `c` has no validation accuracy"),
            "{e}"
        );
        let e = ens(
            r,
            &[("a", &a), ("c", &c)],
            json!({"method": "weighted", "weights": [1.0]}),
            "e2",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "weights: 1 weights for 2 inputs (`a`, `c`)");
        // `weights` only enters the key of a weighted ensemble.
        let c = Ensemble.canonical(json!({"inputs": ["a"], "method": "mean", "weights": [1.0]}));
        assert!(c.get("weights").is_none());
    }

    #[test]
    fn inputs_must_cover_the_same_items() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let a = artifact(r, "a", row(&[(1, 1.0)]), &[]);
        let b = r.join("b");
        fs::create_dir_all(&b).unwrap();
        let two = Probs::new(2, 1, [row(&[(1, 1.0)]), row(&[(2, 1.0)])].concat()).unwrap();
        write_output(&b, &items(2), &two, None).unwrap();
        let e = ens(r, &[("a", &a), ("b", &b)], json!({}), "x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("items.json: input `b` predicts other items than input `a` (2 vs 1 items"),
            "{e}"
        );
    }
}
