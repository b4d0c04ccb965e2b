//! The `predict` node kind: class probabilities of trained models over a
//! data set, with test-time augmentation (TTA), snapshot selection and
//! out-of-fold prediction.
//!
//! Parameters: `models` (train artifacts; `"cnn"` follows a fold, `"cnn[*]"`
//! gathers every fold), `data`, `snapshots` (`"final"`, `"all"`,
//! `"last:M"`, `"best:M"` or a list of cycle indices), `oof` (a split: each
//! instance predicts only its fold's `valid` part, with that fold's models),
//! `tta` (`rounds`; round 0 is the clean view, round r > 0 a random
//! augmentation; `clean = false` augments round 0 too; `view = "resize"`
//! makes the clean view a plain resize to the input size), `batch` (images per forward pass; no effect on results).
//!
//! `batch` stays in the key: the engine hands `run` only the canonical
//! parameters, so a parameter dropped by [`Kind::canonical`] could not reach
//! `run`. Changing only `batch` therefore reruns the node, but every member
//! is then found in the derived folder and the artifact's bytes are the
//! same, so nothing downstream reruns.
//!
//! Artifact layout (the layout every prediction-producing kind shares, read
//! back with [`read_output`]):
//! - `probs.fwprobs`: the mean over all members (model files × rounds), one
//!   row per predicted item, in data-index order ([`crate::artifact::probs`]);
//! - `items.json`: `[{"index": i, "file": "…png"}, …]`, the predicted data
//!   items in the same order (all of them, or one fold's `valid` part);
//! - `codes.json`: the decoded code of every item (`["19", "", …]`);
//! - `members/<model>-<snapshot>-r<round>.fwprobs`: each member's
//!   probabilities (a hard link to the shared derived file, or a copy);
//!   `<model>` is the instance name with `[i]` written `.i` (`cnn.0`),
//!   `<snapshot>` is `final` or `c<cycle>`;
//! - `members.json`: `[{"file", "model", "snapshot", "cycle", "round",
//!   "valid_seq_acc", "length_file"}]` in member-file order; `valid_seq_acc`
//!   is the snapshot's (from `snapshots.json`) or, for `final`, the last
//!   epoch's of `metrics.json`, `null` when unknown;
//! - when every model has a length head (`train`'s `model.length_head`):
//!   `length.fwprobs`, the mean length probabilities, stored as
//!   probabilities of one 11-way head whose class k means "k digits"
//!   ([`LENGTH_FILE`]), and each member's as
//!   `members/<model>-<snapshot>-r<round>.length.fwprobs` (`length_file`).
//!
//! Reuse: each member (model file bytes, data digest, predicted indices,
//! round, TTA settings of that round, input size, normalisation) is stored
//! on its own in the shared derived folder as `pr-<blake3>.fwprobs`, written
//! atomically; a run finds existing ones, so raising `tta.rounds` computes
//! only the new rounds and overlapping nodes share work. Round 0 does not
//! depend on the TTA settings. The data set is decoded once per size into
//! `<blake3>.decset` there too (`imaging::shared_set`, the same file the
//! train kind uses), at the size the models were trained on (`train.json`'s
//! `decoded_height` x `decoded_width`); round 0 is its centre crop — exactly
//! the view validation saw — unless `view = "resize"` decodes it at the
//! input size instead. An augmented round depends on the settings and its
//! index only, so `clean = false` shares rounds 1.. with the clean variant.
//!
//! Guarantees: deterministic (round r of image i uses
//! `Rng::derive(seed, STREAM, r * 1_000_003 + i)` with a seed drawn from
//! the model and data digests and the TTA settings, so results depend on
//! neither the batch size nor the thread count nor the node's seed); every
//! model must agree on heads, height and width (an error names them).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::artifact::dataset::DataIndex;
use crate::artifact::model::{self, Summary as TrainSummary};
use crate::artifact::prediction::{
    items_of, write_length, write_output, write_probs, Member, RoundView, MEMBERS_DIR, MEMBERS_FILE,
};
use crate::artifact::split::load_fold;
use crate::artifact::{probs, write_json};
use crate::imaging::{self, Augment, DecodedSet, Norm};
use crate::kind::schema::{float_range, int_min, Dflt, Param, Ty};
use crate::kind::{
    codes, Appetite, InputArtifact, Kind, NodeError, ParamIssue, ReportRole, RunCtx,
};
use crate::model::{Device, Model, ModelError};
use crate::predictions::{ensemble, Probs};

/// Stream id for the TTA augmentation draws.
const STREAM: u64 = 0x7743_0001;

pub struct Predict;

impl Kind for Predict {
    fn name(&self) -> &'static str {
        "predict"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Class probabilities of trained models over a data set: snapshot selection, test-time augmentation (round 0 is the clean image), out-of-fold prediction with `oof`. Writes `probs.fwprobs` (mean over models × rounds), `items.json`, `codes.json`, `members/` and `members.json`. Each member is cached in the shared derived folder, so more TTA rounds compute only the new ones."
    }
    fn appetite(&self, _params: &Value) -> Appetite {
        Appetite::Scales
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn check(&self, params: &Value) -> Vec<ParamIssue> {
        match params.get("snapshots") {
            Some(v) => match Snapshots::parse(v) {
                Ok(_) => Vec::new(),
                Err(m) => vec![ParamIssue {
                    path: "snapshots".into(),
                    message: m,
                    help: Some(
                        "use \"final\", \"all\", \"last:M\", \"best:M\" or a list of cycle indices like [1, 2]".into(),
                    ),
                }],
            },
            None => Vec::new(),
        }
    }
    fn canonical(&self, mut params: Value) -> Value {
        if let Some(obj) = params.as_object_mut() {
            if let Some(tta) = obj.get_mut("tta").and_then(Value::as_object_mut) {
                // The defaults of the optional settings leave the key as
                // it was before they existed.
                if tta.get("clean") == Some(&Value::Bool(true)) {
                    tta.remove("clean");
                }
                let clean = tta.get("clean") != Some(&Value::Bool(false));
                if !clean || tta.get("view").and_then(Value::as_str) == Some("crop") {
                    tta.remove("view");
                }
                // With one clean round only the clean image is predicted.
                if clean && tta.get("rounds").and_then(Value::as_u64) == Some(1) {
                    tta.retain(|k, _| k == "rounds" || k == "view");
                }
            }
        }
        params
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        run(ctx)
    }
    fn report_role(&self) -> ReportRole {
        ReportRole::Members
    }
}

static TTA: &[Param] = &[
    Param {
        name: "rounds",
        ty: int_min(1),
        default: Dflt::Value("1"),
        doc: "Predictions per image and model; round 0 is the clean view (see `clean`, `view`), the others are augmented.",
    },
    Param {
        name: "clean",
        ty: Ty::Bool,
        default: Dflt::Optional,
        doc: "Whether round 0 is the clean image (unset: true); false augments every round, as recipes without a clean round do.",
    },
    Param {
        name: "view",
        ty: Ty::Choice(&["crop", "resize"]),
        default: Dflt::Optional,
        doc: "The clean round's view: `crop` (unset), the centre crop of the image decoded with the training margin, exactly what validation saw; `resize`, the whole image resized to the input size (no margin), as recipes that validate on a plain resize do.",
    },
    Param {
        name: "crop",
        ty: Ty::Bool,
        default: Dflt::Value("true"),
        doc: "Random crop position inside the decoding margin.",
    },
    Param {
        name: "scale",
        ty: float_range(0.0, 0.5),
        default: Dflt::Value("0.05"),
        doc: "Zoom range `1 ± scale`.",
    },
    Param {
        name: "rotation",
        ty: float_range(0.0, 45.0),
        default: Dflt::Value("3.0"),
        doc: "Rotation range `± rotation` degrees.",
    },
    Param {
        name: "brightness",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.1"),
        doc: "Brightness factor range `1 ± brightness`.",
    },
    Param {
        name: "contrast",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.1"),
        doc: "Contrast factor range `1 ± contrast`.",
    },
    Param {
        name: "saturation",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.1"),
        doc: "Saturation factor range `1 ± saturation`.",
    },
];

static PARAMS: &[Param] = &[
    Param {
        name: "models",
        ty: Ty::Ref(&["train"]),
        default: Dflt::Required,
        doc: "Trained models: `\"cnn\"` follows a fold, `\"cnn[*]\"` uses every fold's model.",
    },
    Param {
        name: "data",
        ty: Ty::Ref(&["dataset", "synthetic"]),
        default: Dflt::Required,
        doc: "The data set to predict.",
    },
    Param {
        name: "snapshots",
        ty: Ty::Any,
        default: Dflt::Value("\"final\""),
        doc: "Which model files: `\"final\"`, `\"all\"` snapshots, `\"last:M\"`, `\"best:M\"` (by validation accuracy) or a list of cycle indices.",
    },
    Param {
        name: "oof",
        ty: Ty::Ref(&["split"]),
        default: Dflt::Optional,
        doc: "Out-of-fold: predict only each fold's held-out part, with that fold's models.",
    },
    Param {
        name: "tta",
        ty: Ty::Table(TTA),
        default: Dflt::Value("{}"),
        doc: "Test-time augmentation.",
    },
    Param {
        name: "batch",
        ty: int_min(1),
        default: Dflt::Value("64"),
        doc: "Images per forward pass. Results do not depend on it; changing it reruns this node from its cached members, and nothing downstream.",
    },
];

#[derive(Debug, Deserialize)]
struct PredictParams {
    snapshots: Value,
    #[serde(default)]
    batch: Option<usize>,
    tta: TtaParams,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct TtaParams {
    rounds: u64,
    #[serde(default = "yes")]
    clean: bool,
    #[serde(default)]
    view: View,
    #[serde(default = "yes")]
    crop: bool,
    #[serde(default)]
    scale: f32,
    #[serde(default)]
    rotation: f32,
    #[serde(default)]
    brightness: f32,
    #[serde(default)]
    contrast: f32,
    #[serde(default)]
    saturation: f32,
}

fn yes() -> bool {
    true
}

/// The clean round's view (`tta.view`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum View {
    /// The centre crop of the image decoded with the training margin.
    #[default]
    Crop,
    /// The whole image resized to the input size.
    Resize,
}

impl TtaParams {
    /// The augmentation settings (not `rounds`): what a round > 0 depends on.
    fn settings(&self) -> Value {
        json!({
            "crop": self.crop,
            "scale": self.scale,
            "rotation": self.rotation,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
        })
    }

    fn augment(&self) -> Augment {
        Augment {
            crop: self.crop,
            scale: self.scale,
            rotation_deg: self.rotation,
            brightness: self.brightness,
            contrast: self.contrast,
            saturation: self.saturation,
        }
    }
}

/// Which model files of a train artifact to use.
#[derive(Debug, Clone, PartialEq)]
pub enum Snapshots {
    Final,
    All,
    Last(usize),
    Best(usize),
    Cycles(Vec<u64>),
}

impl Snapshots {
    /// Parses the `snapshots` parameter; the message says what is wrong.
    pub fn parse(v: &Value) -> Result<Snapshots, String> {
        match v {
            Value::String(s) => {
                let count = |m: &str| -> Result<usize, String> {
                    match m.parse::<usize>() {
                        Ok(n) if n >= 1 => Ok(n),
                        _ => Err(format!("`{s}`: M must be a whole number of at least 1")),
                    }
                };
                match s.as_str() {
                    "final" => Ok(Snapshots::Final),
                    "all" => Ok(Snapshots::All),
                    _ => {
                        if let Some(m) = s.strip_prefix("last:") {
                            Ok(Snapshots::Last(count(m)?))
                        } else if let Some(m) = s.strip_prefix("best:") {
                            Ok(Snapshots::Best(count(m)?))
                        } else {
                            Err(format!("unknown snapshot selection \"{s}\""))
                        }
                    }
                }
            }
            Value::Array(items) => {
                if items.is_empty() {
                    return Err("the list of cycles is empty".into());
                }
                let mut cycles = Vec::with_capacity(items.len());
                for it in items {
                    match it.as_u64() {
                        Some(c) if !cycles.contains(&c) => cycles.push(c),
                        Some(c) => return Err(format!("cycle {c} is listed twice")),
                        None => {
                            return Err(format!(
                                "cycle indices must be whole numbers >= 0, found {it}"
                            ))
                        }
                    }
                }
                cycles.sort_unstable();
                Ok(Snapshots::Cycles(cycles))
            }
            other => Err(format!(
                "expected a string or a list of cycle indices, found {other}"
            )),
        }
    }
}

/// One model file chosen from a train artifact.
#[derive(Debug, Clone)]
struct ModelFile {
    /// Instance name of the train node.
    node: String,
    /// `final` or `c<cycle>`.
    snapshot: String,
    cycle: Option<u64>,
    path: PathBuf,
    valid_seq_acc: Option<f64>,
}

/// The BLAKE3 digest (hex) of model file `f`'s bytes.
fn model_digest(f: &ModelFile) -> Result<String, NodeError> {
    let bytes = fs::read(&f.path).map_err(|e| NodeError::io(&f.path, e))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

impl ModelFile {
    /// The final model of the train artifact `input`; its validation
    /// accuracy is the last epoch's (unknown when the metrics are unreadable).
    fn final_of(input: &InputArtifact) -> ModelFile {
        let valid_seq_acc = model::read_metrics(&input.dir)
            .ok()
            .and_then(|rows| rows.last().map(|e| e.valid_seq_acc));
        ModelFile {
            node: input.node.clone(),
            snapshot: "final".into(),
            cycle: None,
            path: input.dir.join(model::MODEL_FILE),
            valid_seq_acc,
        }
    }

    /// The snapshot model of the train artifact `input` that `s` lists.
    fn snapshot_of(input: &InputArtifact, s: &model::Snapshot) -> ModelFile {
        ModelFile {
            node: input.node.clone(),
            snapshot: format!("c{}", s.cycle),
            cycle: Some(s.cycle as u64),
            path: input.dir.join(model::snapshot_file(s.cycle)),
            valid_seq_acc: Some(s.valid_seq_acc),
        }
    }
}

/// Selects the model files of one train artifact.
fn select_models(input: &InputArtifact, sel: &Snapshots) -> Result<Vec<ModelFile>, NodeError> {
    if *sel == Snapshots::Final {
        return Ok(vec![ModelFile::final_of(input)]);
    }
    let list_path = input.dir.join(model::SNAPSHOTS_FILE);
    if !list_path.exists() {
        return Err(NodeError::file(
            &list_path,
            format!(
                "missing: model `{}` kept no snapshots (train it with the `cosine-restarts` schedule, or use snapshots = \"final\")",
                input.node
            ),
        ));
    }
    let mut all = model::read_snapshots(&input.dir)?;
    all.sort_by_key(|e| e.cycle);
    let chosen: Vec<model::Snapshot> = match sel {
        Snapshots::Final => unreachable!("handled above"),
        Snapshots::All => all,
        Snapshots::Last(m) | Snapshots::Best(m) if *m > all.len() => {
            return Err(NodeError::file(
                &list_path,
                format!("{m} snapshots asked for, but it lists {}", all.len()),
            ))
        }
        Snapshots::Last(m) => all[all.len() - m..].to_vec(),
        Snapshots::Best(m) => best_snapshots(all, *m),
        Snapshots::Cycles(cycles) => {
            let mut out = Vec::new();
            for c in cycles {
                match all.iter().find(|e| e.cycle as u64 == *c) {
                    Some(e) => out.push(e.clone()),
                    None => {
                        return Err(NodeError::file(
                            &list_path,
                            format!(
                                "has no cycle {c} (cycles: {})",
                                all.iter()
                                    .map(|e| e.cycle.to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ))
                    }
                }
            }
            out
        }
    };
    Ok(chosen
        .iter()
        .map(|s| ModelFile::snapshot_of(input, s))
        .collect())
}

/// The `m` snapshots of best validation accuracy (ties: the later cycle),
/// in cycle order.
fn best_snapshots(all: Vec<model::Snapshot>, m: usize) -> Vec<model::Snapshot> {
    let mut by_acc = all;
    by_acc.sort_by(|a, b| {
        b.valid_seq_acc
            .total_cmp(&a.valid_seq_acc)
            .then(b.cycle.cmp(&a.cycle))
    });
    let mut top: Vec<model::Snapshot> = by_acc.into_iter().take(m).collect();
    top.sort_by_key(|e| e.cycle);
    top
}

fn hex_digest(v: &Value) -> String {
    blake3::hash(&serde_json::to_vec(v).expect("json"))
        .to_hex()
        .to_string()
}

/// Instance names as file-name parts: `cnn[0]` → `cnn.0`.
fn file_part(node: &str) -> String {
    node.chars()
        .filter_map(|c| match c {
            '[' => Some('.'),
            ']' => None,
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => Some(c),
            _ => Some('_'),
        })
        .collect()
}

fn run(ctx: &RunCtx<'_>) -> Result<(), NodeError> {
    let device = super::model_device(ctx)?;
    let p: PredictParams = ctx.typed()?;
    let sel = Snapshots::parse(&p.snapshots)
        .map_err(|m| NodeError::new("foldwise::predict::snapshots", format!("snapshots: {m}")))?;
    let data = ctx.input("data")?;
    let index = DataIndex::load(&data.dir)?;
    let (model_inputs, indices) = models_and_items(ctx, data, &index)?;
    let files = model_files(&model_inputs, &sel)?;
    let mut job = Job::new(ctx, (data, &index), indices, &p, &files[0].1, device);
    let digests = files
        .iter()
        .map(|(f, _)| model_digest(f))
        .collect::<Result<Vec<_>, _>>()?;
    let todo = job.uncached(&files, &digests);
    if todo > 0 {
        // Every view the rounds read: the clean one and the augmented one.
        for r in 0..job.rounds.min(2) {
            job.decode(r)?;
        }
    }
    ctx.progress
        .stage("predicting", todo * job.indices.len() as u64);
    let members_dir = ctx.out.join(MEMBERS_DIR);
    fs::create_dir_all(&members_dir).map_err(|e| NodeError::io(&members_dir, e))?;
    let all_length = files.iter().all(|(_, s)| s.length_head);
    let mut members = Members::default();
    for ((f, summary), digest) in files.iter().zip(&digests) {
        job.predict_model(f, digest, summary, all_length, &mut members)?;
    }
    members.write(ctx.out, &index, &job.indices, all_length)
}

/// The train artifacts to use and the data indices to predict: every item,
/// or with `oof` this fold's `valid` part (a gathered model list then keeps
/// this fold's model).
fn models_and_items<'a>(
    ctx: &'a RunCtx<'_>,
    data: &InputArtifact,
    index: &DataIndex,
) -> Result<(Vec<&'a InputArtifact>, Vec<usize>), NodeError> {
    let mut model_inputs: Vec<&InputArtifact> = match ctx.inputs.get("models") {
        Some(v) if !v.is_empty() => v.iter().collect(),
        _ => return Err(NodeError::new(codes::INPUT, "missing input `models`")),
    };
    let indices: Vec<usize> = match ctx.inputs.get("oof") {
        Some(_) => {
            let split = ctx.input("oof")?;
            let fold = load_fold(split)?;
            if model_inputs.len() > 1 {
                keep_fold_models(&mut model_inputs, ctx.fold.unwrap_or(0))?;
            }
            if let Some(&bad) = fold.valid.iter().find(|&&i| i >= index.items.len()) {
                return Err(NodeError::new(
                    "foldwise::predict::oof",
                    format!(
                        "oof: split `{}` holds index {bad}, but data `{}` has {} items",
                        split.node,
                        data.node,
                        index.items.len()
                    ),
                ));
            }
            fold.valid
        }
        None => (0..index.items.len()).collect(),
    };
    if indices.is_empty() {
        return Err(NodeError::new(
            "foldwise::predict::empty",
            format!("no items to predict in data `{}`", data.node),
        ));
    }
    Ok((model_inputs, indices))
}

/// Keeps the gathered models of fold `f` (`…[f]`); none is an error.
fn keep_fold_models(model_inputs: &mut Vec<&InputArtifact>, f: usize) -> Result<(), NodeError> {
    let suffix = format!("[{f}]");
    model_inputs.retain(|m| m.node.ends_with(&suffix));
    if model_inputs.is_empty() {
        return Err(NodeError::new("foldwise::predict::oof", format!(
            "oof: none of the gathered models is fold {f}'s (`…{suffix}`); refer to the models as following the split (`models = \"cnn\"`)"
        )));
    }
    Ok(())
}

/// The selected model files of every train artifact, with their train
/// summaries; every model must have the first one's shape.
fn model_files(
    model_inputs: &[&InputArtifact],
    sel: &Snapshots,
) -> Result<Vec<(ModelFile, TrainSummary)>, NodeError> {
    let mut files: Vec<(ModelFile, TrainSummary)> = Vec::new();
    for m in model_inputs {
        let summary = model::read_summary(&m.dir)?;
        for f in select_models(m, sel)? {
            files.push((f, summary.clone()));
        }
    }
    let (first, shape) = (&files[0].0, &files[0].1);
    for (f, s) in &files[1..] {
        check_same_shape(first, shape, f, s)?;
    }
    Ok(files)
}

/// Errors when model `f` (summary `s`) differs from `first` in heads,
/// input size or decoded size.
fn check_same_shape(
    first: &ModelFile,
    shape: &TrainSummary,
    f: &ModelFile,
    s: &TrainSummary,
) -> Result<(), NodeError> {
    if (s.heads, s.height, s.width) != (shape.heads, shape.height, shape.width) {
        return Err(NodeError::new(
            "foldwise::predict::models",
            format!(
                "models disagree: `{}` has {} heads at {}x{}, `{}` has {} heads at {}x{}",
                first.node,
                shape.heads,
                shape.height,
                shape.width,
                f.node,
                s.heads,
                s.height,
                s.width
            ),
        ));
    }
    if (s.decoded_height, s.decoded_width) != (shape.decoded_height, shape.decoded_width) {
        return Err(NodeError::new("foldwise::predict::models", format!(
            "models disagree: `{}` was trained on images decoded at {}x{}, `{}` at {}x{} (set the same `margin`)",
            first.node,
            shape.decoded_height,
            shape.decoded_width,
            f.node,
            s.decoded_height,
            s.decoded_width
        )));
    }
    Ok(())
}

/// What every member of one run shares: the data, the predicted indices,
/// the TTA settings and the input shape, and the decoded data set (decoded
/// on first use: a run whose members are all cached decodes nothing).
struct Job<'a> {
    ctx: &'a RunCtx<'a>,
    data: &'a InputArtifact,
    index: &'a DataIndex,
    indices: Vec<usize>,
    tta: &'a TtaParams,
    batch: usize,
    rounds: u64,
    /// Model input size.
    h: u32,
    w: u32,
    /// Decoded size.
    dh: u32,
    dw: u32,
    norm: Norm,
    set: Option<DecodedSet>,
    /// The data set resized to the input size (`tta.view = "resize"`).
    plain: Option<DecodedSet>,
    /// Where the models compute ([`super::model_device`]).
    device: Device,
}

/// A member's probabilities and, with a length head, its length
/// probabilities.
type MemberProbs = (Probs, Option<Probs>);

impl<'a> Job<'a> {
    fn new(
        ctx: &'a RunCtx<'a>,
        (data, index): (&'a InputArtifact, &'a DataIndex),
        indices: Vec<usize>,
        p: &'a PredictParams,
        shape: &TrainSummary,
        device: Device,
    ) -> Job<'a> {
        let batch = p.batch.unwrap_or(64).max(1);
        Job {
            ctx,
            data,
            index,
            indices,
            tta: &p.tta,
            batch,
            rounds: p.tta.rounds.max(1),
            h: shape.height as u32,
            w: shape.width as u32,
            dh: shape.decoded_height,
            dw: shape.decoded_width,
            norm: shape.norm.unwrap_or_default(),
            set: None,
            plain: None,
            device,
        }
    }

    /// Every round of model file `f`: found in the derived folder or
    /// computed, linked into the artifact and listed in `members`.
    fn predict_model(
        &mut self,
        f: &ModelFile,
        model_digest: &str,
        summary: &TrainSummary,
        all_length: bool,
        members: &mut Members,
    ) -> Result<(), NodeError> {
        let seed = self.seed(model_digest);
        let mut model: Option<Model> = None;
        for r in 0..self.rounds {
            let (path, lpath) = self.member_paths(model_digest, r);
            let (probs, length) = match self.cached(&path, &lpath, summary) {
                Some(q) => q,
                None => {
                    if model.is_none() {
                        model = Some(load_model(f, summary, self.device)?);
                    }
                    let m = model.as_ref().expect("loaded");
                    let q = self.compute(f, m, summary, seed, r)?;
                    store_member(self.ctx.derived, &path, &lpath, &q)?;
                    q
                }
            };
            let member = link_member(
                &self.ctx.out.join(MEMBERS_DIR),
                f,
                (r, self.view_name(r)),
                (&path, &probs),
                length.as_ref().filter(|_| all_length).map(|l| (&*lpath, l)),
            )?;
            members.push(member, probs, length.filter(|_| all_length));
        }
        Ok(())
    }

    /// The derived-folder files of round `r` of a model: its probabilities
    /// and its length probabilities.
    fn member_paths(&self, model_digest: &str, r: u64) -> (PathBuf, PathBuf) {
        let name = self.member_name(model_digest, r);
        let derived = self.ctx.derived;
        (
            derived.join(format!("pr-{name}.fwprobs")),
            derived.join(format!("pl-{name}.fwprobs")),
        )
    }

    /// How many members (model file x round) are not in the derived folder
    /// yet, by the presence of their files: the work of the `predicting`
    /// stage.
    fn uncached(&self, files: &[(ModelFile, TrainSummary)], digests: &[String]) -> u64 {
        let mut todo = 0;
        for ((_, summary), digest) in files.iter().zip(digests) {
            for r in 0..self.rounds {
                let (path, lpath) = self.member_paths(digest, r);
                let present = path.is_file() && (!summary.length_head || lpath.is_file());
                todo += u64::from(!present);
            }
        }
        todo
    }

    /// Whether round `r` is the clean view (else an augmented one).
    fn is_clean(&self, r: u64) -> bool {
        r == 0 && self.tta.clean
    }

    /// Opens the data set round `r` reads, decoding it (a progress stage of
    /// its own) when no node has yet: decoded at the models' decoded size,
    /// or at their input size for a clean round of `view = "resize"`.
    fn decode(&mut self, r: u64) -> Result<(), NodeError> {
        let (slot, h, w) = if self.is_plain(r) {
            (&mut self.plain, self.h, self.w)
        } else {
            (&mut self.set, self.dh, self.dw)
        };
        if slot.is_none() {
            *slot = Some(imaging::shared_set(
                self.ctx.derived,
                &self.data.dir,
                &self.data.digest,
                self.index,
                h,
                w,
                self.ctx.progress,
            )?);
        }
        Ok(())
    }

    /// Round `r`'s view as `members.json` lists it: only for round 0, and
    /// only when it is not the centre crop.
    fn view_name(&self, r: u64) -> Option<RoundView> {
        match (r, self.is_clean(r), self.tta.view) {
            (0, false, _) => Some(RoundView::Augmented),
            (0, true, View::Resize) => Some(RoundView::Resize),
            _ => None,
        }
    }

    /// Whether round `r` reads the data set resized to the input size.
    fn is_plain(&self, r: u64) -> bool {
        self.is_clean(r) && self.tta.view == View::Resize
    }

    /// The seed of a model's augmentation draws: from the model and data
    /// digests and the TTA settings only.
    fn seed(&self, model_digest: &str) -> u64 {
        let seed_digest = blake3::hash(
            &serde_json::to_vec(&json!({
                "v": "foldwise-predict-seed-1",
                "model": model_digest,
                "data": self.data.digest,
                "tta": self.tta.settings(),
            }))
            .expect("json"),
        );
        u64::from_le_bytes(seed_digest.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// The derived-folder name of round `r` of a model: everything the
    /// member's probabilities depend on.
    fn member_name(&self, model_digest: &str, r: u64) -> String {
        hex_digest(&json!({
            "v": "foldwise-predict-1",
            "model": model_digest,
            "data": self.data.digest,
            "indices": self.indices,
            "round": r,
            "tta": match (self.is_clean(r), self.tta.view) {
                (true, View::Crop) => Value::Null,
                (true, View::Resize) => json!({"view": "resize"}),
                (false, _) => self.tta.settings(),
            },
            "height": self.h,
            "width": self.w,
            "decoded": [self.dh, self.dw],
            "norm": self.norm,
        }))
    }

    /// A member found in the derived folder, with its length probabilities
    /// when the model has a length head (else not found).
    fn cached(&self, path: &Path, lpath: &Path, summary: &TrainSummary) -> Option<MemberProbs> {
        let n = self.indices.len();
        let q = probs::read(path)
            .ok()
            .filter(|q| q.n == n && q.heads == summary.heads)?;
        if !summary.length_head {
            return Some((q, None));
        }
        let l = probs::read(lpath)
            .ok()
            .filter(|q| q.n == n && q.heads == 1)?;
        Some((q, Some(l)))
    }

    /// Round `r` of model `m`, computed batch by batch.
    fn compute(
        &mut self,
        f: &ModelFile,
        m: &Model,
        summary: &TrainSummary,
        seed: u64,
        r: u64,
    ) -> Result<MemberProbs, NodeError> {
        self.decode(r)?;
        let s = if self.is_plain(r) {
            self.plain.as_ref()
        } else {
            self.set.as_ref()
        }
        .expect("decoded");
        self.ctx.progress.message(&format!(
            "{} {} round {}/{}",
            f.node,
            f.snapshot,
            r + 1,
            self.rounds
        ));
        let aug = if self.is_clean(r) {
            Augment::none()
        } else {
            self.tta.augment()
        };
        let n = self.indices.len();
        let mut out = Vec::with_capacity(n * summary.heads * 11);
        let mut lout = Vec::new();
        let chunks: Vec<&[usize]> = self.indices.chunks(self.batch).collect();
        let (h, w, norm) = (self.h, self.w, &self.norm);
        let make = |b: usize| imaging::batch(s, chunks[b], &aug, seed, STREAM, r, h, w, norm);
        let ahead = self.device != Device::Cpu;
        super::pipelined(ahead, chunks.len(), make, |b, x| {
            let chunk = chunks[b];
            let (y, l) = m.forward_all(&x, chunk.len()).map_err(|e| match e {
                e @ ModelError::OutOfMemory(_) => {
                    super::model_error(e, self.ctx.instance, self.batch, self.device)
                }
                e => NodeError::new(codes::MODEL, format!("model `{}`: {e}", f.node)),
            })?;
            out.extend_from_slice(&y);
            if let Some(l) = l {
                lout.extend_from_slice(&l);
            }
            self.ctx.progress.inc(chunk.len() as u64);
            Ok::<(), NodeError>(())
        })?;
        let q = Probs::new(n, summary.heads, out)?;
        let l = if summary.length_head {
            Some(Probs::new(n, 1, lout)?)
        } else {
            None
        };
        Ok((q, l))
    }
}

/// Loads model file `f`, checking it is the model its `train.json` says.
fn load_model(f: &ModelFile, summary: &TrainSummary, device: Device) -> Result<Model, NodeError> {
    let m =
        Model::load_on(&f.path, device).map_err(|e| NodeError::new(codes::MODEL, e.to_string()))?;
    let c = m.config();
    if (c.heads, c.height, c.width, c.length_head)
        != (
            summary.heads,
            summary.height,
            summary.width,
            summary.length_head,
        )
    {
        return Err(NodeError::file(
            &f.path,
            format!(
                "holds a model of {} heads at {}x{}, but train.json of `{}` says {} heads at {}x{}",
                c.heads, c.height, c.width, f.node, summary.heads, summary.height, summary.width
            ),
        ));
    }
    Ok(m)
}

/// Stores a computed member in the derived folder: the length file first,
/// since the digit file is what marks the member as cached.
fn store_member(
    derived: &Path,
    path: &Path,
    lpath: &Path,
    (q, l): &MemberProbs,
) -> Result<(), NodeError> {
    fs::create_dir_all(derived).map_err(|e| NodeError::io(derived, e))?;
    if let Some(l) = l {
        write_probs(lpath, l)?;
    }
    write_probs(path, q)
}

/// Puts round `r` (with its `view`, see [`Member::view`]) of model file
/// `f` into the artifact's members folder (a hard link to the derived
/// file, or a copy), with its length file when given, and says what
/// `members.json` lists for it.
fn link_member(
    members_dir: &Path,
    f: &ModelFile,
    (r, view): (u64, Option<RoundView>),
    digits: (&Path, &Probs),
    length: Option<(&Path, &Probs)>,
) -> Result<Member, NodeError> {
    let stem = format!("{}-{}-r{r}", file_part(&f.node), f.snapshot);
    let file = format!("{stem}.fwprobs");
    link_or_copy(digits, &members_dir.join(&file))?;
    let length_file = match length {
        Some(l) => {
            let lfile = format!("{stem}.length.fwprobs");
            link_or_copy(l, &members_dir.join(&lfile))?;
            Some(format!("{MEMBERS_DIR}/{lfile}"))
        }
        None => None,
    };
    Ok(Member {
        file: format!("{MEMBERS_DIR}/{file}"),
        model: f.node.clone(),
        snapshot: f.snapshot.clone(),
        cycle: f.cycle,
        round: r,
        view,
        valid_seq_acc: f.valid_seq_acc,
        length_file,
    })
}

/// Hard-links the derived file `src` (holding `p`) to `dst`, or writes a
/// copy of `p` there.
fn link_or_copy((src, p): (&Path, &Probs), dst: &Path) -> Result<(), NodeError> {
    if fs::hard_link(src, dst).is_err() {
        write_probs(dst, p)?;
    }
    Ok(())
}

/// The members of a run, gathered in member-file order.
#[derive(Default)]
struct Members {
    list: Vec<Member>,
    probs: Vec<Probs>,
    lengths: Vec<Probs>,
}

impl Members {
    fn push(&mut self, member: Member, probs: Probs, length: Option<Probs>) {
        self.list.push(member);
        self.probs.push(probs);
        self.lengths.extend(length);
    }

    /// Writes the prediction layout: the mean of the members over the
    /// predicted items, their length mean when every model has a length
    /// head, and `members.json`.
    fn write(
        self,
        out: &Path,
        index: &DataIndex,
        indices: &[usize],
        all_length: bool,
    ) -> Result<(), NodeError> {
        let refs: Vec<&Probs> = self.probs.iter().collect();
        let mean = ensemble::mean(&refs)?;
        let items = items_of(index, indices);
        write_output(out, &items, &mean, None)?;
        if all_length {
            let refs: Vec<&Probs> = self.lengths.iter().collect();
            write_length(out, &ensemble::mean(&refs)?)?;
        }
        write_json(&out.join(MEMBERS_FILE), &self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::prediction::testutil::*;
    use crate::artifact::prediction::{read_output, Item, CLASSES_FILE, CODES_FILE};
    use crate::predictions::{code_string, decode};
    use std::collections::BTreeMap;

    struct Fixture {
        root: tempfile::TempDir,
    }

    impl Fixture {
        /// Data of 6 plates, two fake train artifacts (`cnn[0]`, `cnn[1]`;
        /// the first with three snapshots) and a 2-fold split.
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            dataset(&root.path().join("data"), 6, 3);
            train_artifact(&root.path().join("cnn0"), 4, 1, &[0.3, 0.6, 0.5]);
            train_artifact(&root.path().join("cnn1"), 4, 2, &[]);
            let folds = root.path().join("folds/folds");
            fs::create_dir_all(&folds).unwrap();
            fs::write(
                folds.join("fold-0.json"),
                r#"{"train":[1,3,5],"valid":[0,2,4]}"#,
            )
            .unwrap();
            fs::write(
                folds.join("fold-1.json"),
                r#"{"train":[0,2,4],"valid":[1,3,5]}"#,
            )
            .unwrap();
            Fixture { root }
        }
        fn p(&self) -> &Path {
            self.root.path()
        }
        fn model(&self, i: usize) -> InputArtifact {
            input(
                &format!("cnn[{i}]"),
                &self.p().join(format!("cnn{i}")),
                &format!("m{i}"),
            )
        }
        fn inputs(&self, models: Vec<InputArtifact>) -> BTreeMap<String, Vec<InputArtifact>> {
            let mut m = BTreeMap::new();
            m.insert("models".to_string(), models);
            m.insert(
                "data".to_string(),
                vec![input("plates", &self.p().join("data"), "d1")],
            );
            m
        }
        fn predict(
            &self,
            params: Value,
            models: Vec<InputArtifact>,
            out: &str,
        ) -> Result<PathBuf, NodeError> {
            let mut p = json!({"models": "cnn", "data": "plates"});
            for (k, v) in params.as_object().unwrap() {
                p[k] = v.clone();
            }
            run_kind(&Predict, p, self.inputs(models), self.p(), out, None)
        }
        fn derived_probs(&self) -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = fs::read_dir(self.p().join("derived"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pr-"))
                .collect();
            v.sort();
            v
        }
    }

    #[test]
    fn length_heads_give_length_probabilities_per_member_and_their_mean() {
        let fx = Fixture::new();
        let p = fx.p();
        train_artifact_as(&p.join("len0"), 4, 11, &[], true);
        train_artifact_as(&p.join("len1"), 4, 12, &[], true);
        let models = || {
            vec![
                input("len[0]", &p.join("len0"), "l0"),
                input("len[1]", &p.join("len1"), "l1"),
            ]
        };
        let out = fx
            .predict(json!({"tta": {"rounds": 2}}), models(), "pred")
            .unwrap();
        let o = read_output(&out).unwrap();
        let l = o.length.clone().expect("length.fwprobs");
        assert_eq!((l.n, l.heads), (6, 1));
        let members: Value =
            serde_json::from_slice(&fs::read(out.join(MEMBERS_FILE)).unwrap()).unwrap();
        let lfiles: Vec<&str> = members
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["length_file"].as_str().unwrap())
            .collect();
        assert_eq!(
            lfiles,
            [
                "members/len.0-final-r0.length.fwprobs",
                "members/len.0-final-r1.length.fwprobs",
                "members/len.1-final-r0.length.fwprobs",
                "members/len.1-final-r1.length.fwprobs"
            ]
        );
        let ms: Vec<Probs> = lfiles
            .iter()
            .map(|f| probs::read(&out.join(f)).unwrap())
            .collect();
        let refs: Vec<&Probs> = ms.iter().collect();
        assert_eq!(ensemble::mean(&refs).unwrap(), l);
        // The digit probabilities are those of the same models without the
        // head: a second run finds every member (digits and lengths) in
        // the derived folder and writes identical bytes.
        let again = fx
            .predict(json!({"tta": {"rounds": 2}}), models(), "again")
            .unwrap();
        assert_eq!(files(&out), files(&again));
        // A model without the head among them: no length file at all.
        let mixed = fx
            .predict(
                json!({}),
                vec![input("len[0]", &p.join("len0"), "l0"), fx.model(1)],
                "mixed",
            )
            .unwrap();
        assert!(read_output(&mixed).unwrap().length.is_none());
        let m: Value =
            serde_json::from_slice(&fs::read(mixed.join(MEMBERS_FILE)).unwrap()).unwrap();
        assert!(m[0].get("length_file").is_none());
    }

    #[test]
    fn writes_its_files_and_probabilities_sum_to_one() {
        let fx = Fixture::new();
        let out = fx
            .predict(json!({}), vec![fx.model(0), fx.model(1)], "pred")
            .unwrap();
        let o = read_output(&out).unwrap();
        assert_eq!(o.items.len(), 6);
        assert_eq!(
            o.items[2],
            Item {
                index: 2,
                file: "000002.png".into()
            }
        );
        assert_eq!(o.probs.heads, 4);
        o.probs.validate().unwrap();
        for i in 0..6 {
            for h in 0..4 {
                let s: f32 = o.probs.get(i, h).iter().sum();
                assert!((s - 1.0).abs() < 1e-4, "{s}");
            }
        }
        let codes: Vec<String> =
            serde_json::from_slice(&fs::read(out.join(CODES_FILE)).unwrap()).unwrap();
        let want: Vec<String> = decode::codes(&o.probs)
            .iter()
            .map(|c| code_string(c))
            .collect();
        assert_eq!(codes, want);
        assert!(!out.join(CLASSES_FILE).exists());
        let members: Value =
            serde_json::from_slice(&fs::read(out.join(MEMBERS_FILE)).unwrap()).unwrap();
        assert_eq!(members.as_array().unwrap().len(), 2);
        assert_eq!(members[0]["file"], "members/cnn.0-final-r0.fwprobs");
        assert_eq!(members[1]["model"], "cnn[1]");
        assert_eq!(members[0]["valid_seq_acc"], 0.5);
        // The mean of the members is the artifact's probabilities.
        let a = probs::read(&out.join("members/cnn.0-final-r0.fwprobs")).unwrap();
        let b = probs::read(&out.join("members/cnn.1-final-r0.fwprobs")).unwrap();
        assert_ne!(a, b);
        assert_eq!(ensemble::mean(&[&a, &b]).unwrap(), o.probs);
    }

    #[test]
    fn deterministic_and_independent_of_batch_size() {
        let fx = Fixture::new();
        let tta = json!({"rounds": 3});
        let a = fx
            .predict(json!({"tta": tta, "batch": 4}), vec![fx.model(0)], "a")
            .unwrap();
        // A fresh derived folder: computed again, not reused.
        fs::remove_dir_all(fx.p().join("derived")).unwrap();
        let b = fx
            .predict(json!({"tta": tta, "batch": 2}), vec![fx.model(0)], "b")
            .unwrap();
        assert_eq!(files(&a), files(&b));
        let derived = fx.derived_probs();
        let c = fx
            .predict(json!({"tta": tta, "batch": 64}), vec![fx.model(0)], "c")
            .unwrap();
        assert_eq!(files(&a), files(&c));
        assert_eq!(
            fx.derived_probs(),
            derived,
            "a batch change reuses every member"
        );
        // Augmented rounds differ from the clean one.
        let r0 = fs::read(a.join("members/cnn.0-final-r0.fwprobs")).unwrap();
        let r1 = fs::read(a.join("members/cnn.0-final-r1.fwprobs")).unwrap();
        let r2 = fs::read(a.join("members/cnn.0-final-r2.fwprobs")).unwrap();
        assert_ne!(r0, r1);
        assert_ne!(r1, r2);
        // One round drops the TTA settings from the key.
        let c = Predict.canonical(with_defaults(
            Predict.params(),
            json!({"models": "m", "data": "d"}),
        ));
        assert_eq!(c["batch"], 64);
        assert_eq!(c["tta"], json!({"rounds": 1}));
    }

    #[test]
    fn more_rounds_reuse_the_derived_rounds() {
        use std::os::unix::fs::MetadataExt;
        let fx = Fixture::new();
        let one = fx.predict(json!({}), vec![fx.model(0)], "one").unwrap();
        let files1 = fx.derived_probs();
        assert_eq!(files1.len(), 1);
        let ino = fs::metadata(&files1[0]).unwrap().ino();
        let two = fx
            .predict(json!({"tta": {"rounds": 2}}), vec![fx.model(0)], "two")
            .unwrap();
        let files2 = fx.derived_probs();
        assert_eq!(files2.len(), 2);
        assert!(files2.contains(&files1[0]));
        assert_eq!(
            fs::metadata(&files1[0]).unwrap().ino(),
            ino,
            "round 0 was not rewritten"
        );
        assert_eq!(
            fs::read(one.join("members/cnn.0-final-r0.fwprobs")).unwrap(),
            fs::read(two.join("members/cnn.0-final-r0.fwprobs")).unwrap()
        );
        // Three rounds add one more; round 1 is the same file as before.
        let three = fx
            .predict(json!({"tta": {"rounds": 3}}), vec![fx.model(0)], "three")
            .unwrap();
        assert_eq!(fx.derived_probs().len(), 3);
        assert_eq!(
            fs::read(two.join("members/cnn.0-final-r1.fwprobs")).unwrap(),
            fs::read(three.join("members/cnn.0-final-r1.fwprobs")).unwrap()
        );
        // Other TTA settings change rounds > 0 only.
        fx.predict(
            json!({"tta": {"rounds": 2, "rotation": 1.0}}),
            vec![fx.model(0)],
            "rot",
        )
        .unwrap();
        assert_eq!(fx.derived_probs().len(), 4);
    }

    #[test]
    fn clean_false_augments_round_0_and_view_resize_changes_the_clean_round_only() {
        let fx = Fixture::new();
        let m = || vec![fx.model(0)];
        let r = |d: &Path, i: u32| {
            fs::read(d.join(format!("members/cnn.0-final-r{i}.fwprobs"))).unwrap()
        };
        let with = fx
            .predict(json!({"tta": {"rounds": 3}}), m(), "with")
            .unwrap();
        assert_eq!(fx.derived_probs().len(), 3);
        // Without a clean round only round 0 is new: rounds 1.. are shared.
        let without = fx
            .predict(
                json!({"tta": {"rounds": 3, "clean": false}}),
                m(),
                "without",
            )
            .unwrap();
        assert_eq!(fx.derived_probs().len(), 4);
        assert_ne!(r(&with, 0), r(&without, 0));
        assert_eq!(r(&with, 1), r(&without, 1));
        assert_eq!(r(&with, 2), r(&without, 2));
        // A plain resize is another clean view; the augmented rounds stay.
        let plain = fx
            .predict(
                json!({"tta": {"rounds": 2, "view": "resize"}}),
                m(),
                "plain",
            )
            .unwrap();
        assert_eq!(fx.derived_probs().len(), 5);
        assert_ne!(r(&plain, 0), r(&with, 0));
        assert_ne!(r(&plain, 0), r(&without, 0));
        assert_eq!(r(&plain, 1), r(&with, 1));
        // Written out, the defaults keep the key they had before they existed.
        let canon = |tta: Value| {
            Predict.canonical(with_defaults(
                Predict.params(),
                json!({"models": "m", "data": "d", "tta": tta}),
            ))["tta"]
                .clone()
        };
        assert_eq!(
            canon(json!({"rounds": 3, "clean": true, "view": "crop"})),
            canon(json!({"rounds": 3}))
        );
        assert_eq!(
            canon(json!({"rounds": 1, "clean": true})),
            json!({"rounds": 1})
        );
        assert_eq!(
            canon(json!({"rounds": 1, "view": "resize", "rotation": 2.0})),
            json!({"rounds": 1, "view": "resize"})
        );
        // Without a clean round the view does not matter, the settings do.
        let c = canon(json!({"rounds": 1, "clean": false, "view": "resize"}));
        assert_eq!(c["clean"], false);
        assert!(c.get("view").is_none());
        assert!(c.get("rotation").is_some());
    }

    #[test]
    fn oof_covers_each_index_once_across_folds() {
        let fx = Fixture::new();
        let mut seen = vec![0; 6];
        for f in 0..2 {
            let mut inputs = fx.inputs(vec![fx.model(f)]);
            let mut split = input("folds", &fx.p().join("folds"), "s");
            split.part = Some(fx.p().join(format!("folds/folds/fold-{f}.json")));
            inputs.insert("oof".into(), vec![split]);
            let p = json!({"models": "cnn", "data": "plates", "oof": "folds"});
            let out = run_kind(&Predict, p, inputs, fx.p(), &format!("oof{f}"), Some(f)).unwrap();
            let o = read_output(&out).unwrap();
            assert_eq!(o.probs.n, 3);
            for it in &o.items {
                assert_eq!(it.index % 2, f);
                seen[it.index] += 1;
            }
        }
        assert_eq!(seen, vec![1; 6]);
        // A gathered model list keeps the fold's model.
        let mut inputs = fx.inputs(vec![fx.model(0), fx.model(1)]);
        let mut split = input("folds", &fx.p().join("folds"), "s");
        split.part = Some(fx.p().join("folds/folds/fold-1.json"));
        inputs.insert("oof".into(), vec![split]);
        let p = json!({"models": "cnn[*]", "data": "plates", "oof": "folds"});
        let out = run_kind(&Predict, p, inputs, fx.p(), "gathered", Some(1)).unwrap();
        assert_eq!(
            files(&out),
            files(&fx.p().join("oof1")),
            "the same as following the fold"
        );
    }

    #[test]
    fn snapshot_selection_forms() {
        let fx = Fixture::new();
        let names = |snap: Value| -> Vec<String> {
            let out = fx
                .predict(json!({"snapshots": snap}), vec![fx.model(0)], "s")
                .unwrap();
            let m: Vec<Value> =
                serde_json::from_slice(&fs::read(out.join(MEMBERS_FILE)).unwrap()).unwrap();
            fs::remove_dir_all(&out).unwrap();
            m.iter()
                .map(|e| e["snapshot"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(json!("final")), ["final"]);
        assert_eq!(names(json!("all")), ["c0", "c1", "c2"]);
        assert_eq!(names(json!("last:2")), ["c1", "c2"]);
        assert_eq!(names(json!("best:2")), ["c1", "c2"]);
        assert_eq!(names(json!("best:1")), ["c1"]);
        assert_eq!(names(json!([2, 0])), ["c0", "c2"]);

        let err = fx
            .predict(json!({"snapshots": "last:4"}), vec![fx.model(0)], "e1")
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("snapshots.json: 4 snapshots asked for, but it lists 3"),
            "{err}"
        );
        let err = fx
            .predict(json!({"snapshots": [5]}), vec![fx.model(0)], "e2")
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("snapshots.json: has no cycle 5 (cycles: 0, 1, 2)"),
            "{err}"
        );
        let err = fx
            .predict(json!({"snapshots": "all"}), vec![fx.model(1)], "e3")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("snapshots.json: missing: model `cnn[1]` kept no snapshots"),
            "{err}"
        );

        let issue = |v: Value| Predict.check(&json!({"snapshots": v}));
        assert!(issue(json!("final")).is_empty());
        assert!(issue(json!("best:3")).is_empty());
        assert!(issue(json!([0, 3])).is_empty());
        for bad in [
            json!("last:0"),
            json!("first:2"),
            json!("best:x"),
            json!([]),
            json!([1, 1]),
            json!([-1]),
            json!(3),
        ] {
            let i = issue(bad.clone());
            assert_eq!(i.len(), 1, "{bad}");
            assert_eq!(i[0].path, "snapshots");
        }
    }

    #[test]
    fn models_must_agree_on_shape() {
        let fx = Fixture::new();
        train_artifact(&fx.p().join("cnn5"), 5, 9, &[]);
        let odd = input("wide[0]", &fx.p().join("cnn5"), "m5");
        let err = fx
            .predict(json!({}), vec![fx.model(0), odd], "x")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "models disagree: `cnn[0]` has 4 heads at 32x64, `wide[0]` has 5 heads at 32x64"
        );

        // Same shape, but trained on images decoded with another margin.
        train_artifact(&fx.p().join("cnn4m"), 4, 9, &[]);
        let summary = fx.p().join("cnn4m/train.json");
        let mut s: Value = serde_json::from_slice(&fs::read(&summary).unwrap()).unwrap();
        s["decoded_height"] = json!(40);
        fs::write(&summary, serde_json::to_vec(&s).unwrap()).unwrap();
        let margin = input("big[0]", &fx.p().join("cnn4m"), "m4m");
        let err = fx
            .predict(json!({}), vec![fx.model(0), margin], "y")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "models disagree: `cnn[0]` was trained on images decoded at 36x72, `big[0]` at 40x72 (set the same `margin`)"
        );
    }

    #[test]
    #[cfg_attr(
        not(any(full_suite, shared_data)),
        ignore = "needs ../shared/data/real-samples"
    )]
    fn real_samples_decode_and_predict() {
        let dir = crate::testutil::shared_data(&["real-samples"]).join("real-samples");
        let dir = dir.as_path();
        let root = tempfile::tempdir().unwrap();
        let params = with_defaults(
            crate::nodes::dataset::Dataset.params(),
            json!({"images": dir.display().to_string()}),
        );
        let data = run_kind(
            &crate::nodes::dataset::Dataset,
            params,
            BTreeMap::new(),
            root.path(),
            "real",
            None,
        )
        .unwrap();
        assert_eq!(DataIndex::load(&data).unwrap().items.len(), 17);
        let model = root.path().join("small");
        fs::create_dir_all(&model).unwrap();
        let cfg = crate::model::ModelConfig::new(crate::model::Arch::SvhnSmall, 5);
        Model::new(cfg, 4)
            .unwrap()
            .save(&model.join("model.safetensors"))
            .unwrap();
        fs::write(
            model.join("train.json"),
            r#"{"arch":"svhn-small","heads":5,"height":64,"width":128,"decoded_height":68,"decoded_width":136}"#,
        )
        .unwrap();
        let mut inputs = BTreeMap::new();
        inputs.insert("models".to_string(), vec![input("small", &model, "m")]);
        inputs.insert("data".to_string(), vec![input("real", &data, "r")]);
        let p = json!({"models": "small", "data": "real", "tta": {"rounds": 2}});
        let out = run_kind(&Predict, p, inputs, root.path(), "pred", None).unwrap();
        let o = read_output(&out).unwrap();
        assert_eq!((o.probs.n, o.probs.heads), (17, 5));
    }
}
