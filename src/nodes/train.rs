//! The `train` node kind: trains one CNN (`svhn-small` or `resnet-mini`)
//! on a fold of a labelled data set, validating after every epoch.
//!
//! After a k-fold split the engine runs one instance per fold (`cnn[0]`,
//! `cnn[1]`, …); after a hold-out split, one instance.
//!
//! Input pipeline: the data set is decoded once at (height + margin[0]) x
//! (width + margin[1]) into the shared derived folder (named by the data
//! digest and the size), then every training image is randomly cropped to
//! height x width and augmented ([`crate::imaging::batch`], one generator per
//! image and epoch); validation images are the clean centre crop. Pixels are
//! normalised to [-1, 1], or per channel with the ImageNet mean and standard
//! deviation with `normalise = "imagenet"` ([`input_norm`]; recorded in
//! `train.json`, which `predict` follows).
//!
//! Learning rate: per batch, as the `schedule` submodule describes; under
//! `cosine-restarts` the model at the end of each cycle is a snapshot and
//! the number of epochs is cycle_epochs × cycles (`epochs` is dropped).
//!
//! Writes a train artifact ([`crate::artifact::model`]: the final model,
//! `metrics.json`, `train.json`, and the snapshots); in the working folder
//! (`ctx.work`, never hashed) the per-epoch checkpoints (the `checkpoint`
//! submodule) and `timings.json`.
//!
//! Guarantees:
//! - deterministic: the same data, fold, parameters and seed give
//!   byte-identical artifact files, whether or not the run resumed from a
//!   checkpoint (timings and resume facts stay in the working folder);
//! - resumable: a killed run continues from its last complete epoch; raising
//!   `schedule.cycles` (the work key ignores it) continues from the earlier
//!   run's cycles;
//! - a non-finite loss fails the node, naming the epoch, batch and rate.

use std::fs;
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use crate::artifact::dataset::DataIndex;
use crate::artifact::model::{
    self as model_artifact, snapshot_file, EpochMetrics, EpochTiming, Snapshot, Summary, Timings,
    MODEL_FILE, SNAPSHOTS_DIR,
};
use crate::artifact::split::{self as split_artifact, load_fold, Fold};
use crate::imaging::{self, Augment, DecodedSet, Norm};
use crate::kind::schema::{float_range, int_min, int_range, Dflt, Param, Ty};
use crate::kind::{
    codes, Appetite, InputArtifact, Kind, NodeError, ParamIssue, ReportRole, RunCtx,
};
use crate::model::{Arch, Device, Model, ModelConfig, ModelError, Optimizer, StepStats, BLANK};
use crate::predictions::{decode, metrics, Probs, CLASSES};
use crate::rng::Rng;

mod checkpoint;
mod schedule;

use checkpoint::{ckpt_model, State};
use schedule::Schedule;

/// Stream id of the per-epoch shuffles of the training indices.
pub const STREAM: u64 = 0x5452_4149_4E5F_5348; // "TRAIN_SH"
/// Stream id of the training augmentation.
const AUG_STREAM: u64 = 0x5452_4149_4E5F_4147; // "TRAIN_AG"
/// Stream id of the per-step dropout seeds.
const STEP_STREAM: u64 = 0x5452_4149_4E5F_5354; // "TRAIN_ST"
/// Stream id of the initial weights.
const INIT_STREAM: u64 = 0x5452_4149_4E5F_494E; // "TRAIN_IN"
/// Images per forward pass when validating.
const EVAL_CHUNK: usize = 64;

/// The input normalisation `normalise` names: `"imagenet"`, the ImageNet
/// per-channel mean and standard deviation (the reference recipe's), or
/// else (unset or `"unit"`) the [-1, 1] range. On mnist-seq plates the
/// ImageNet statistics give inputs a standard deviation near 1, the scale
/// the default initialisation and learning rate assume, where [-1, 1] gives
/// 0.49; that slowed `svhn-small` and cost it about 5 points of sequence
/// accuracy (docs/evaluation.md). [-1, 1] stays the default so that models
/// trained before the parameter existed keep their keys.
pub fn input_norm(normalise: Option<&str>) -> Norm {
    match normalise {
        Some("imagenet") => Norm::imagenet(),
        _ => Norm::default(),
    }
}

pub struct Train;

impl Kind for Train {
    fn name(&self) -> &'static str {
        "train"
    }
    fn report_role(&self) -> ReportRole {
        ReportRole::Training
    }
    fn device(&self, dir: &std::path::Path) -> Option<String> {
        model_artifact::read_summary(dir).ok()?.device
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Trains a CNN (`svhn-small` or `resnet-mini`, one 11-way head per digit position) on a fold of a labelled data set, validating after every epoch. A k-fold `split` makes one instance per fold. Checkpoints every epoch in a working folder, so a killed run resumes and raising `schedule.cycles` continues the earlier cycles; under `cosine-restarts` each cycle's end is kept as a snapshot. Writes `model.safetensors`, `metrics.json`, `train.json` (and `snapshots/`)."
    }
    fn appetite(&self, _params: &Value) -> Appetite {
        Appetite::Scales
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn check(&self, params: &Value) -> Vec<ParamIssue> {
        check_params(params)
    }
    fn canonical(&self, mut params: Value) -> Value {
        let restarts = params["schedule"]["kind"] == "cosine-restarts";
        if let Some(obj) = params.as_object_mut() {
            if restarts {
                obj.remove("epochs");
            }
            // "unit" is what an unset `normalise` means: one key for both.
            if obj.get("normalise").and_then(Value::as_str) == Some("unit") {
                obj.remove("normalise");
            }
            // So is `length_head = false`.
            if let Some(m) = obj.get_mut("model").and_then(Value::as_object_mut) {
                if m.get("length_head") == Some(&Value::Bool(false)) {
                    m.remove("length_head");
                }
            }
            if let Some(opt) = obj.get_mut("optimizer").and_then(Value::as_object_mut) {
                if opt.get("kind").and_then(Value::as_str) == Some("adam") {
                    opt.remove("momentum");
                    opt.remove("nesterov");
                }
            }
            if let Some(s) = obj.get_mut("schedule").and_then(Value::as_object_mut) {
                let keep: &[&str] = match s.get("kind").and_then(Value::as_str) {
                    Some("constant") => &["kind"],
                    Some("step") => &["kind", "step_epochs", "gamma"],
                    Some("cosine") => &["kind", "min_lr"],
                    Some("cosine-restarts") => &["kind", "cycle_epochs", "cycles", "min_lr"],
                    _ => &[],
                };
                if !keep.is_empty() {
                    s.retain(|k, _| keep.contains(&k.as_str()));
                }
            }
        }
        params
    }
    fn resumable(&self) -> Option<&'static [&'static str]> {
        Some(&["schedule.cycles"])
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        if let Some(issue) = check_params(ctx.params).into_iter().next() {
            return Err(NodeError::new(
                "foldwise::train::params",
                format!("parameter `{}`: {}", issue.path, issue.message),
            ));
        }
        let p: TrainParams = ctx.typed()?;
        let job = || train(ctx, &p, None).map(|_| ());
        match rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads.max(1))
            .build()
        {
            Ok(pool) => pool.install(job),
            Err(_) => job(),
        }
    }
}

const fn float(min: f64, max: f64, min_open: bool, max_open: bool) -> Ty {
    Ty::Float {
        min,
        max,
        min_open,
        max_open,
    }
}

static MODEL_PARAMS: &[Param] = &[
    Param {
        name: "arch",
        ty: Ty::Choice(&["svhn-small", "resnet-mini"]),
        default: Dflt::Value("\"resnet-mini\""),
        doc: "Backbone: the brief's reference small CNN or the residual one.",
    },
    Param {
        name: "heads",
        ty: int_range(4, 6),
        default: Dflt::Value("5"),
        doc: "Digit positions (one 11-way head each); longer codes are an error.",
    },
    Param {
        name: "height",
        ty: int_range(16, 512),
        default: Dflt::Value("64"),
        doc: "Model input height in pixels.",
    },
    Param {
        name: "width",
        ty: int_range(16, 1024),
        default: Dflt::Value("128"),
        doc: "Model input width in pixels.",
    },
    Param {
        name: "dropout",
        ty: float_range(0.0, 0.9),
        default: Dflt::Value("0.25"),
        doc: "Dropout probability (training only).",
    },
    Param {
        name: "length_head",
        ty: Ty::Bool,
        default: Dflt::Optional,
        doc: "Also learn the number of digits: a length classifier on the same features, its gradient stopped there so the digit model trains exactly as without it. `predict` then writes `length.fwprobs` (for `postprocess`). Unset means false.",
    },
];

static OPTIMIZER_PARAMS: &[Param] = &[
    Param {
        name: "kind",
        ty: Ty::Choice(&["adam", "sgd"]),
        default: Dflt::Value("\"adam\""),
        doc: "Adam (decoupled weight decay) or SGD with momentum.",
    },
    Param {
        name: "lr",
        ty: float(0.0, f64::INFINITY, true, false),
        default: Dflt::Value("0.001"),
        doc: "Base learning rate.",
    },
    Param {
        name: "momentum",
        ty: float(0.0, 1.0, false, true),
        default: Dflt::Value("0.9"),
        doc: "SGD momentum (sgd only).",
    },
    Param {
        name: "nesterov",
        ty: Ty::Bool,
        default: Dflt::Value("false"),
        doc: "Nesterov momentum (sgd only).",
    },
    Param {
        name: "weight_decay",
        ty: float_range(0.0, f64::INFINITY),
        default: Dflt::Value("0.0"),
        doc: "Weight decay (decoupled for adam, L2 for sgd).",
    },
];

static SCHEDULE_PARAMS: &[Param] = &[
    Param {
        name: "kind",
        ty: Ty::Choice(&["constant", "step", "cosine", "cosine-restarts"]),
        default: Dflt::Value("\"cosine\""),
        doc: "Learning-rate schedule, applied per batch.",
    },
    Param {
        name: "step_epochs",
        ty: int_min(1),
        default: Dflt::Value("10"),
        doc: "`step`: multiply by `gamma` every this many epochs.",
    },
    Param {
        name: "gamma",
        ty: float(0.0, 1.0, true, false),
        default: Dflt::Value("0.1"),
        doc: "`step`: the factor.",
    },
    Param {
        name: "cycle_epochs",
        ty: int_min(1),
        default: Dflt::Value("5"),
        doc: "`cosine-restarts`: epochs per cycle (each cycle's end is a snapshot).",
    },
    Param {
        name: "cycles",
        ty: int_min(1),
        default: Dflt::Value("2"),
        doc: "`cosine-restarts`: number of cycles; raising it continues from the cached cycles.",
    },
    Param {
        name: "min_lr",
        ty: float_range(0.0, f64::INFINITY),
        default: Dflt::Value("0.0"),
        doc: "`cosine`, `cosine-restarts`: the rate at the end of the (each) cosine.",
    },
];

static AUGMENT_PARAMS: &[Param] = &[
    Param {
        name: "crop",
        ty: Ty::Bool,
        default: Dflt::Value("true"),
        doc: "Random crop position inside the margin (else the centre crop).",
    },
    Param {
        name: "scale",
        ty: float_range(0.0, 0.5),
        default: Dflt::Value("0.1"),
        doc: "Zoom factor range 1 ± scale.",
    },
    Param {
        name: "rotation",
        ty: float_range(0.0, 45.0),
        default: Dflt::Value("5.0"),
        doc: "Rotation range ± degrees.",
    },
    Param {
        name: "brightness",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.2"),
        doc: "Brightness factor range 1 ± brightness.",
    },
    Param {
        name: "contrast",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.2"),
        doc: "Contrast factor range 1 ± contrast.",
    },
    Param {
        name: "saturation",
        ty: float_range(0.0, 1.0),
        default: Dflt::Value("0.2"),
        doc: "Saturation factor range 1 ± saturation.",
    },
];

static PARAMS: &[Param] = &[
    Param {
        name: "data",
        ty: Ty::Ref(&["dataset", "synthetic"]),
        default: Dflt::Required,
        doc: "The labelled data set.",
    },
    Param {
        name: "split",
        ty: Ty::Ref(&["split"]),
        default: Dflt::Required,
        doc: "The split of that data set; a k-fold split runs one instance per fold.",
    },
    Param {
        name: "model",
        ty: Ty::Table(MODEL_PARAMS),
        default: Dflt::Value("{}"),
        doc: "The network.",
    },
    Param {
        name: "epochs",
        ty: int_min(1),
        default: Dflt::Value("10"),
        doc: "Epochs (ignored under `cosine-restarts`: cycle_epochs × cycles).",
    },
    Param {
        name: "batch",
        ty: int_min(1),
        default: Dflt::Value("64"),
        doc: "Images per training step.",
    },
    Param {
        name: "optimizer",
        ty: Ty::Table(OPTIMIZER_PARAMS),
        default: Dflt::Value("{}"),
        doc: "The optimizer.",
    },
    Param {
        name: "schedule",
        ty: Ty::Table(SCHEDULE_PARAMS),
        default: Dflt::Value("{}"),
        doc: "The learning-rate schedule.",
    },
    Param {
        name: "normalise",
        ty: Ty::Choice(&["unit", "imagenet"]),
        default: Dflt::Optional,
        doc: "Input normalisation: `\"unit\"` maps pixels to [-1, 1] (the default when unset); `\"imagenet\"` uses the ImageNet per-channel mean and std, as the reference recipe (+5 points for `svhn-small` on mnist-seq, docs/evaluation.md).",
    },
    Param {
        name: "label_smoothing",
        ty: float(0.0, 1.0, false, true),
        default: Dflt::Value("0.0"),
        doc: "Label smoothing ε of the cross-entropy.",
    },
    Param {
        name: "augment",
        ty: Ty::Table(AUGMENT_PARAMS),
        default: Dflt::Value("{}"),
        doc: "Training augmentation.",
    },
    Param {
        name: "margin",
        ty: Ty::List(&int_range(0, 256)),
        default: Dflt::Value("[4, 8]"),
        doc: "[rows, columns] decoded beyond the input size, cropped away randomly (64x128 input: decode at 68x136).",
    },
];

/// Cross-parameter checks on canonical parameters.
fn check_params(v: &Value) -> Vec<ParamIssue> {
    let mut out = Vec::new();
    if let Some(m) = v.get("margin").and_then(Value::as_array) {
        if m.len() != 2 {
            out.push(ParamIssue {
                path: "margin".into(),
                message: format!(
                    "expected `[rows, columns]` (2 entries), found {} entries",
                    m.len()
                ),
                help: Some("for example `margin = [4, 8]`".into()),
            });
        }
    }
    let s = &v["schedule"];
    let lr = v["optimizer"]["lr"].as_f64();
    let min_lr = s["min_lr"].as_f64();
    if let (Some(lr), Some(min)) = (lr, min_lr) {
        if min > lr {
            out.push(ParamIssue {
                path: "schedule.min_lr".into(),
                message: format!("`min_lr` ({min}) is greater than `optimizer.lr` ({lr})"),
                help: Some("make `min_lr` <= `lr`".into()),
            });
        }
    }
    out
}

#[derive(Debug, Clone, Deserialize)]
struct TrainParams {
    model: ModelParams,
    epochs: Option<usize>,
    batch: usize,
    optimizer: OptimizerParams,
    schedule: ScheduleParams,
    normalise: Option<String>,
    label_smoothing: f64,
    augment: AugmentParams,
    margin: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
struct ModelParams {
    arch: String,
    heads: usize,
    height: u32,
    width: u32,
    dropout: f64,
    #[serde(default)]
    length_head: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct OptimizerParams {
    kind: String,
    lr: f64,
    momentum: Option<f64>,
    nesterov: Option<bool>,
    weight_decay: f64,
}

#[derive(Debug, Clone, Deserialize)]
struct ScheduleParams {
    kind: String,
    step_epochs: Option<usize>,
    gamma: Option<f64>,
    cycle_epochs: Option<usize>,
    cycles: Option<usize>,
    min_lr: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
struct AugmentParams {
    crop: bool,
    scale: f32,
    rotation: f32,
    brightness: f32,
    contrast: f32,
    saturation: f32,
}

/// What a run did (for tests).
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    resumed_from: Option<usize>,
    trained_epochs: usize,
}

fn model_err(e: ModelError) -> NodeError {
    NodeError::new(codes::MODEL, e.to_string())
}

/// One training batch: the images and their class vectors.
struct Batch {
    x: Vec<f32>,
    y: Vec<u8>,
}

/// The class vector of every item: its digits padded with [`BLANK`] to
/// `heads`. Unlabelled data and codes longer than `heads` are errors.
fn class_vectors(index: &DataIndex, heads: usize, node: &str) -> Result<Vec<Vec<u8>>, NodeError> {
    if !index.labelled {
        return Err(NodeError::new(
            "foldwise::train::unlabelled",
            format!("data `{node}` is unlabelled; training needs labels"),
        ));
    }
    let mut out = Vec::with_capacity(index.items.len());
    let mut long = Vec::new();
    for it in &index.items {
        let label = it.label.as_deref().unwrap_or(&[]);
        if label.len() > heads {
            long.push(it);
            continue;
        }
        if let Some(d) = label.iter().find(|d| **d > 9) {
            return Err(NodeError::new(
                "foldwise::train::label",
                format!(
                    "data `{node}`: image `{}` has label digit {d}, not 0-9",
                    it.file
                ),
            ));
        }
        let mut v = label.to_vec();
        v.resize(heads, BLANK);
        out.push(v);
    }
    if let Some(first) = long.first() {
        return Err(NodeError::new("foldwise::train::heads", format!(
            "{} image(s) of data `{node}` have codes longer than heads = {heads}, e.g. `{}` (code \"{}\", {} digits); raise `model.heads` (up to 6)",
            long.len(),
            first.file,
            first.code(),
            first.code().len()
        )));
    }
    Ok(out)
}

/// The fold of `split`, checked against the `n` items of `data`: the split
/// was made from as many items, refers to none beyond them, and neither
/// part is empty.
fn checked_fold(split: &InputArtifact, data: &InputArtifact, n: usize) -> Result<Fold, NodeError> {
    let bad_split = |message: String| NodeError::new("foldwise::train::split", message);
    let split_items = split_artifact::read_summary(&split.dir)?.items;
    if split_items != n {
        return Err(bad_split(format!(
            "split `{}` was made from {split_items} items, but data `{}` has {n}; point the split at the same data set",
            split.node, data.node
        )));
    }
    let fold = load_fold(split)?;
    if let Some(bad) = fold.train.iter().chain(&fold.valid).find(|&&i| i >= n) {
        return Err(bad_split(format!(
            "split `{}` refers to item {bad}, but data `{}` has {n}",
            split.node, data.node
        )));
    }
    for (part, items) in [("train", &fold.train), ("valid", &fold.valid)] {
        if items.is_empty() {
            return Err(bad_split(format!(
                "split `{}`: the fold's {part} part is empty",
                split.node
            )));
        }
    }
    Ok(fold)
}

/// The model configuration the parameters name.
fn model_config(m: &ModelParams, o: &OptimizerParams) -> ModelConfig {
    let optimizer = match o.kind.as_str() {
        "sgd" => Optimizer::Sgd {
            momentum: o.momentum.unwrap_or(0.9),
            nesterov: o.nesterov.unwrap_or(false),
            weight_decay: o.weight_decay,
        },
        _ => Optimizer::Adam {
            weight_decay: o.weight_decay,
        },
    };
    ModelConfig {
        arch: if m.arch == "svhn-small" {
            Arch::SvhnSmall
        } else {
            Arch::ResnetMini
        },
        heads: m.heads,
        height: m.height as usize,
        width: m.width as usize,
        dropout: m.dropout as f32,
        optimizer,
        length_head: m.length_head,
    }
}

/// The training augmentation the parameters name.
fn augment(a: &AugmentParams) -> Augment {
    Augment {
        crop: a.crop,
        scale: a.scale,
        rotation_deg: a.rotation,
        brightness: a.brightness,
        contrast: a.contrast,
        saturation: a.saturation,
    }
}

/// The epoch of the best validation sequence accuracy (ties: the lower
/// validation loss, then the earlier epoch).
fn best_epoch(records: &[EpochMetrics]) -> &EpochMetrics {
    records
        .iter()
        .max_by(|a, b| {
            a.valid_seq_acc
                .total_cmp(&b.valid_seq_acc)
                .then(b.valid_loss.total_cmp(&a.valid_loss))
                .then(b.epoch.cmp(&a.epoch))
        })
        .expect("at least one epoch")
}

/// One training run's inputs and settings, fixed before its first step.
struct Setup<'a> {
    ctx: &'a RunCtx<'a>,
    p: &'a TrainParams,
    index: DataIndex,
    fold: Fold,
    /// Every item's class vector ([`class_vectors`]).
    labels: Vec<Vec<u8>>,
    /// The data decoded at `decoded` (height, width).
    set: DecodedSet,
    decoded: (u32, u32),
    cfg: ModelConfig,
    sched: Schedule,
    /// Epochs in all.
    total: usize,
    aug: Augment,
    norm: Norm,
    batch: usize,
    /// Batches per epoch.
    per_epoch: usize,
    /// Where the model computes ([`super::model_device`]).
    device: Device,
}

/// Sums over one epoch's training steps.
#[derive(Default)]
struct Pass {
    loss_sum: f64,
    seq_correct: usize,
    seen: usize,
    /// The rate of the last batch.
    lr: f64,
}

impl<'a> Setup<'a> {
    /// Reads and checks the inputs, decodes the data set (once, into the
    /// shared derived folder) and derives the settings.
    fn new(ctx: &'a RunCtx<'a>, p: &'a TrainParams) -> Result<Setup<'a>, NodeError> {
        let device = super::model_device(ctx)?;
        let data = ctx.input("data")?;
        let split = ctx.input("split")?;
        let index = DataIndex::load(&data.dir)?;
        let fold = checked_fold(split, data, index.items.len())?;
        let m = &p.model;
        let labels = class_vectors(&index, m.heads, &data.node)?;
        let decoded = (m.height + p.margin[0], m.width + p.margin[1]);
        let set = imaging::shared_set(
            ctx.derived,
            &data.dir,
            &data.digest,
            &index,
            decoded.0,
            decoded.1,
            ctx.progress,
        )?;
        let sched = Schedule::from_params(p);
        let batch = p.batch.max(1);
        Ok(Setup {
            cfg: model_config(m, &p.optimizer),
            total: sched.epochs(p.epochs.unwrap_or(10)),
            aug: augment(&p.augment),
            norm: input_norm(p.normalise.as_deref()),
            per_epoch: fold.train.len().div_ceil(batch),
            batch,
            device,
            ctx,
            p,
            index,
            fold,
            labels,
            set,
            decoded,
            sched,
        })
    }

    /// The state after the latest usable checkpoint in the working folder
    /// and that checkpoint's epoch, or a freshly initialised model.
    fn start(&self) -> Result<(State, Option<usize>), NodeError> {
        let ctx = self.ctx;
        let Some((e, state)) = ctx
            .work
            .and_then(|w| checkpoint::latest(w, self.total, &self.sched, self.device))
        else {
            let seed = Rng::derive(ctx.seed, INIT_STREAM, 0).next_u64();
            let model = Model::new_on(self.cfg.clone(), seed, self.device)
                .map_err(|e| self.model_err(e))?;
            let state = State {
                model,
                records: Vec::new(),
                timings: Vec::new(),
            };
            return Ok((state, None));
        };
        if state.model.config() != &self.cfg {
            return Err(NodeError::file(
                ckpt_model(ctx.work.expect("resumed"), e),
                "checkpoint has another model configuration",
            ));
        }
        Ok((state, Some(e)))
    }

    /// Under `cosine-restarts`: makes the snapshot folder and copies into it
    /// the snapshots of the cycles that ended by epoch `start` (from their
    /// checkpoints).
    fn restore_snapshots(&self, start: usize) -> Result<(), NodeError> {
        if !matches!(self.sched, Schedule::Restarts { .. }) {
            return Ok(());
        }
        let out = self.ctx.out;
        let dir = out.join(SNAPSHOTS_DIR);
        fs::create_dir_all(&dir).map_err(|e| NodeError::io(&dir, e))?;
        for k in 1..=start {
            if let Some(c) = self.sched.snapshot_of(k) {
                let src = ckpt_model(self.ctx.work.expect("resumed"), k);
                fs::copy(&src, out.join(snapshot_file(c))).map_err(|e| NodeError::io(&src, e))?;
            }
        }
        Ok(())
    }

    /// Trains 0-based epoch `e0`, validates, and records the epoch's
    /// metrics and timing; saves the snapshot when the epoch ends a cycle.
    fn run_epoch(&self, state: &mut State, e0: usize) -> Result<(), NodeError> {
        let t0 = Instant::now();
        let pass = self.train_pass(&mut state.model, e0)?;
        let (valid_loss, vm, valid_length_acc) = self.validate(&state.model)?;
        let seconds = t0.elapsed().as_secs_f64();
        let epoch = e0 + 1;
        let seen = pass.seen as f64;
        state.records.push(EpochMetrics {
            epoch,
            lr: pass.lr,
            train_loss: pass.loss_sum / seen / self.p.model.heads as f64,
            train_seq_acc: pass.seq_correct as f64 / seen,
            valid_loss,
            valid_seq_acc: vm.seq_acc,
            valid_char_acc: vm.char_acc,
            valid_length_acc,
        });
        state.timings.push(EpochTiming {
            epoch,
            seconds,
            images_per_s: seen / seconds.max(1e-9),
        });
        if let Some(c) = self.sched.snapshot_of(epoch) {
            let dst = self.ctx.out.join(snapshot_file(c));
            state.model.save(&dst).map_err(|e| self.model_err(e))?;
        }
        Ok(())
    }

    /// A model error, naming this instance, the batch size and the device
    /// when the device ran out of memory.
    fn model_err(&self, e: ModelError) -> NodeError {
        super::model_error(e, self.ctx.instance, self.batch, self.device)
    }

    /// The training steps of 0-based epoch `e0`: the fold's training items
    /// in a seeded shuffle, a rate per batch; on a GPU the next batches are
    /// prepared while it computes ([`super::pipelined`]).
    fn train_pass(&self, model: &mut Model, e0: usize) -> Result<Pass, NodeError> {
        let ctx = self.ctx;
        let heads = self.p.model.heads as f64;
        let mut order = self.fold.train.clone();
        Rng::derive(ctx.seed, STREAM, e0 as u64).shuffle(&mut order);
        let batches: Vec<&[usize]> = order.chunks(self.batch).collect();
        let mut pass = Pass::default();
        let ahead = self.device != Device::Cpu;
        let make = |b: usize| self.batch_of(batches[b], e0);
        super::pipelined(ahead, batches.len(), make, |b, batch| {
            let idx = batches[b];
            pass.lr = self.sched.lr(self.p.optimizer.lr, e0, b, self.per_epoch);
            let stats = self.step(model, &batch, e0, b, pass.lr)?;
            pass.loss_sum += stats.loss as f64 * idx.len() as f64;
            pass.seq_correct += stats.seq_correct;
            pass.seen += idx.len();
            let seen = pass.seen as f64;
            ctx.progress.inc(idx.len() as u64);
            ctx.progress.message(&format!(
                "epoch {}/{} loss {:.3} acc {:.1}%",
                e0 + 1,
                self.total,
                pass.loss_sum / seen / heads,
                100.0 * pass.seq_correct as f64 / seen,
            ));
            Ok(())
        })?;
        Ok(pass)
    }

    /// The augmented images and class vectors of the items `idx` in
    /// 0-based epoch `e0`.
    fn batch_of(&self, idx: &[usize], e0: usize) -> Batch {
        let (ctx, m) = (self.ctx, &self.p.model);
        let x = imaging::batch(
            &self.set, idx, &self.aug, ctx.seed, AUG_STREAM, e0 as u64, m.height, m.width,
            &self.norm,
        );
        let y = idx
            .iter()
            .flat_map(|&i| self.labels[i].iter().copied())
            .collect();
        Batch { x, y }
    }

    /// One optimiser step on `batch`, batch `b` of 0-based epoch `e0`, at
    /// rate `lr`; a non-finite loss names the epoch and batch.
    fn step(
        &self,
        model: &mut Model,
        batch: &Batch,
        e0: usize,
        b: usize,
        lr: f64,
    ) -> Result<StepStats, NodeError> {
        let ctx = self.ctx;
        let step_seed =
            Rng::derive(ctx.seed, STEP_STREAM, ((e0 as u64) << 32) | b as u64).next_u64();
        let smoothing = self.p.label_smoothing as f32;
        model
            .train_step(&batch.x, &batch.y, step_seed, lr, smoothing)
            .map_err(|e| match e {
                ModelError::NonFiniteLoss { loss } => NodeError::new("foldwise::train::diverged", format!(
                    "loss is not finite at epoch {}, batch {} (lr {lr:e}, loss {loss}); lower `optimizer.lr`",
                    e0 + 1,
                    b + 1
                )),
                e => self.model_err(e),
            })
    }

    /// Validation: (mean −ln p(true class) over images and heads, metrics,
    /// the length head's accuracy when there is one).
    fn validate(&self, model: &Model) -> Result<(f64, metrics::Metrics, Option<f64>), NodeError> {
        let (valid, labels, heads) = (&self.fold.valid, &self.labels, self.cfg.heads);
        let (h, w) = (self.cfg.height as u32, self.cfg.width as u32);
        let mut data = Vec::with_capacity(valid.len() * heads * CLASSES);
        let mut length_hits = model.has_length_head().then_some(0usize);
        // On a GPU: chunks of the training batch (at least EVAL_CHUNK),
        // prepared ahead; on the CPU: EVAL_CHUNK, one after the other.
        let gpu = self.device != Device::Cpu;
        let size = if gpu {
            self.batch.max(EVAL_CHUNK)
        } else {
            EVAL_CHUNK
        };
        let chunks: Vec<&[usize]> = valid.chunks(size).collect();
        let none = Augment::none();
        let make =
            |b: usize| imaging::batch(&self.set, chunks[b], &none, 0, 0, 0, h, w, &self.norm);
        super::pipelined(gpu, chunks.len(), make, |b, x| {
            let chunk = chunks[b];
            let (probs, length) = model
                .forward_all(&x, chunk.len())
                .map_err(|e| self.model_err(e))?;
            data.extend(probs);
            if let (Some(hits), Some(length)) = (length_hits.as_mut(), length) {
                for (row, &item) in length.chunks(CLASSES).zip(chunk) {
                    let truth = labels[item].iter().filter(|&&c| c != BLANK).count();
                    *hits += (decode::argmax(row) as usize == truth) as usize;
                }
            }
            Ok::<(), NodeError>(())
        })?;
        let probs = Probs::new(valid.len(), heads, data)?;
        let mut loss = 0.0f64;
        for (i, &item) in valid.iter().enumerate() {
            for (hd, &c) in labels[item].iter().enumerate() {
                let p = probs.get(i, hd)[c as usize] as f64;
                loss -= p.max(1e-12).ln();
            }
        }
        loss /= (valid.len() * heads) as f64;
        let items = &self.index.items;
        let names: Vec<&str> = valid.iter().map(|&i| items[i].file.as_str()).collect();
        let truth: Vec<Option<&[u8]>> = valid.iter().map(|&i| items[i].label.as_deref()).collect();
        let m = metrics::evaluate(&names, &truth, &decode::classes(&probs))?;
        let length_acc = length_hits.map(|h| h as f64 / valid.len() as f64);
        Ok((loss, m, length_acc))
    }

    /// Writes the artifact: the final model, the metrics, the summary and,
    /// under `cosine-restarts`, the snapshot list.
    fn write_artifact(&self, state: &State) -> Result<(), NodeError> {
        let out = self.ctx.out;
        state
            .model
            .save(&out.join(MODEL_FILE))
            .map_err(|e| self.model_err(e))?;
        let snapshots: Vec<Snapshot> = state
            .records
            .iter()
            .filter_map(|r| {
                self.sched.snapshot_of(r.epoch).map(|c| Snapshot {
                    cycle: c,
                    epoch: r.epoch,
                    valid_seq_acc: r.valid_seq_acc,
                    valid_loss: r.valid_loss,
                })
            })
            .collect();
        let summary = self.summary(state, snapshots.len());
        let restarts = matches!(self.sched, Schedule::Restarts { .. });
        model_artifact::write(
            out,
            &state.records,
            &summary,
            restarts.then_some(&snapshots),
        )
    }

    /// `train.json` of the trained `state`.
    fn summary(&self, state: &State, snapshots: usize) -> Summary {
        let m = &self.p.model;
        let last = state.records.last().expect("at least one epoch");
        let best = best_epoch(&state.records);
        Summary {
            arch: m.arch.clone(),
            heads: m.heads,
            height: m.height as usize,
            width: m.width as usize,
            decoded_height: self.decoded.0,
            decoded_width: self.decoded.1,
            norm: Some(self.norm),
            parameters: state.model.param_count(),
            train_images: self.fold.train.len(),
            valid_images: self.fold.valid.len(),
            epochs: self.total,
            schedule: self.p.schedule.kind.clone(),
            best_epoch: best.epoch,
            best_valid_seq_acc: best.valid_seq_acc,
            final_valid_seq_acc: last.valid_seq_acc,
            final_valid_char_acc: last.valid_char_acc,
            final_valid_loss: last.valid_loss,
            length_head: m.length_head,
            final_valid_length_acc: last.valid_length_acc,
            snapshots,
            device: Some(self.device.to_string()),
        }
    }
}

/// Trains and writes the artifact. `stop_after` (tests) stops right after
/// that epoch's checkpoint, as a kill would, without writing the artifact.
fn train(
    ctx: &RunCtx<'_>,
    p: &TrainParams,
    stop_after: Option<usize>,
) -> Result<Outcome, NodeError> {
    let setup = Setup::new(ctx, p)?;
    let (mut state, resumed_from) = setup.start()?;
    let start = resumed_from.unwrap_or(0);
    setup.restore_snapshots(start)?;
    let images = (setup.total - start) * setup.fold.train.len();
    ctx.progress.stage("training", images as u64);
    for e0 in start..setup.total {
        let epoch = e0 + 1;
        setup.run_epoch(&mut state, e0)?;
        if let Some(work) = ctx.work {
            checkpoint::save(work, epoch, &state, &setup.sched)?;
        }
        if stop_after == Some(epoch) {
            return Ok(Outcome {
                resumed_from,
                trained_epochs: epoch - start,
            });
        }
    }
    let trained_epochs = setup.total - start;
    setup.write_artifact(&state)?;
    if let Some(work) = ctx.work {
        let timings = Timings {
            resumed_from_epoch: resumed_from,
            trained_epochs,
            epochs: state.timings,
        };
        model_artifact::write_timings(work, &timings)?;
    }
    Ok(Outcome {
        resumed_from,
        trained_epochs,
    })
}

#[cfg(test)]
mod tests {
    use super::checkpoint::ckpt_info;
    use super::*;
    use crate::artifact::model::{
        read_timings, METRICS_FILE, SNAPSHOTS_FILE, SUMMARY_FILE, TIMINGS_FILE,
    };
    use crate::kind::NoProgress;
    use crate::nodes::split::Split;
    use crate::nodes::synthetic::{write_dataset, SyntheticParams};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::path::Path;

    /// The schema defaults of `params` as canonical JSON (nested tables
    /// filled in).
    fn defaults(params: &[Param]) -> Value {
        let mut m = serde_json::Map::new();
        for p in params {
            match (&p.ty, &p.default) {
                (Ty::Table(inner), _) => {
                    m.insert(p.name.into(), defaults(inner));
                }
                (_, Dflt::Value(lit)) => {
                    m.insert(p.name.into(), serde_json::from_str(lit).unwrap());
                }
                _ => {}
            }
        }
        Value::Object(m)
    }

    fn merge(base: &mut Value, over: &Value) {
        match (base, over) {
            (Value::Object(b), Value::Object(o)) => {
                for (k, v) in o {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (b, o) => *b = o.clone(),
        }
    }

    /// Canonical parameters: defaults, then the tiny test recipe, then
    /// `over`.
    fn params(over: Value) -> Value {
        let mut p = defaults(PARAMS);
        p["data"] = json!("plates");
        p["split"] = json!("folds");
        merge(
            &mut p,
            &json!({"model": {"arch": "svhn-small", "height": 32, "width": 64},
                    "batch": 8, "epochs": 1}),
        );
        merge(&mut p, &over);
        Train.canonical(p)
    }

    /// A data artifact of `count` synthetic plates with `lo..=hi` digits,
    /// and a hold-out split of it.
    struct Fixture {
        data: tempfile::TempDir,
        split: tempfile::TempDir,
        derived: tempfile::TempDir,
    }

    fn fixture(count: u64, lo: usize, hi: usize) -> Fixture {
        let data = tempfile::tempdir().unwrap();
        let mut sp = SyntheticParams::with_count(count);
        sp.min_digits = lo;
        sp.max_digits = hi;
        write_dataset(&sp, 1, data.path(), &NoProgress).unwrap();
        let split = tempfile::tempdir().unwrap();
        let sparams = Split.canonical(
            json!({"data": "plates", "method": "holdout", "k": 5, "ratio": 0.25, "stratify": false}),
        );
        let inputs = BTreeMap::from([("data".to_string(), vec![input("plates", data.path())])]);
        let derived = tempfile::tempdir().unwrap();
        Split
            .run(&RunCtx {
                instance: "folds",
                fold: None,
                params: &sparams,
                seed: 3,
                base_dir: Path::new("."),
                inputs: &inputs,
                out: split.path(),
                progress: &NoProgress,
                threads: 1,
                work: None,
                derived: derived.path(),
                device: crate::kind::DeviceChoice::Auto,
            })
            .unwrap();
        Fixture {
            data,
            split,
            derived,
        }
    }

    fn input(node: &str, dir: &Path) -> InputArtifact {
        InputArtifact {
            node: node.into(),
            dir: dir.to_path_buf(),
            part: None,
            digest: format!("digest-of-{}", dir.display()),
        }
    }

    /// Runs `train` into a fresh output folder with working folder `work`.
    fn run_in(
        f: &Fixture,
        p: &Value,
        work: &Path,
        stop_after: Option<usize>,
    ) -> (tempfile::TempDir, Result<Outcome, NodeError>) {
        let inputs = BTreeMap::from([
            ("data".to_string(), vec![input("plates", f.data.path())]),
            ("split".to_string(), vec![input("folds", f.split.path())]),
        ]);
        let out = tempfile::tempdir().unwrap();
        let ctx = RunCtx {
            instance: "cnn",
            fold: None,
            params: p,
            seed: 11,
            base_dir: Path::new("."),
            inputs: &inputs,
            out: out.path(),
            progress: &NoProgress,
            threads: 2,
            work: Some(work),
            derived: f.derived.path(),
            device: crate::kind::DeviceChoice::Auto,
        };
        let r = match check_params(p).into_iter().next() {
            Some(i) => Err(NodeError::new("foldwise::train::params", i.message)),
            None => ctx.typed().and_then(|tp| train(&ctx, &tp, stop_after)),
        };
        (out, r)
    }

    /// Asserts that two artifact folders hold the same files, byte for byte.
    fn assert_same_files(a: &Path, b: &Path) {
        assert_eq!(crate::testutil::all_bytes(a), crate::testutil::all_bytes(b));
    }

    fn names(files: &[(String, Vec<u8>)]) -> Vec<&str> {
        files.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn json_file(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn trains_writes_the_artifact_and_is_deterministic() {
        let f = fixture(24, 1, 5);
        let p = params(json!({"epochs": 2}));
        let (w1, w2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, r) = run_in(&f, &p, w1.path(), None);
        let r = r.unwrap();
        assert_eq!(r.resumed_from, None);
        assert_eq!(r.trained_epochs, 2);
        let files = crate::testutil::all_bytes(a.path());
        assert_eq!(
            names(&files),
            ["metrics.json", "model.safetensors", "train.json"]
        );
        let m = json_file(&a.path().join(METRICS_FILE));
        let rows = m.as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["epoch"], 2);
        for key in [
            "lr",
            "train_loss",
            "train_seq_acc",
            "valid_loss",
            "valid_seq_acc",
            "valid_char_acc",
        ] {
            assert!(rows[0][key].as_f64().unwrap().is_finite(), "{key}");
        }
        assert!(rows[0].get("seconds").is_none());
        let s = json_file(&a.path().join(SUMMARY_FILE));
        assert_eq!(s["arch"], "svhn-small");
        assert_eq!(s["epochs"], 2);
        assert_eq!(s["train_images"], 18);
        assert_eq!(s["valid_images"], 6);
        assert_eq!(s["decoded_height"], 36);
        assert_eq!(s["decoded_width"], 72);
        // Unset `normalise`: [-1, 1].
        let norm: Norm = serde_json::from_value(s["norm"].clone()).unwrap();
        assert_eq!(norm, Norm::default());
        assert!(s.get("resumed_from_epoch").is_none());
        let loaded = Model::load(&a.path().join(MODEL_FILE)).unwrap();
        assert_eq!(loaded.config().heads, 5);
        assert_eq!(loaded.steps(), 6); // 2 epochs x ceil(18 / 8)
        let t = read_timings(w1.path()).unwrap();
        assert_eq!(t.trained_epochs, 2);
        assert_eq!(t.epochs.len(), 2);
        // Only the latest non-snapshot checkpoint is kept.
        assert!(ckpt_info(w1.path(), 2).is_file());
        assert!(!ckpt_info(w1.path(), 1).exists());
        // The decoded set was made once, in the derived folder (beside
        // the lock file decoders take turns on).
        let names: Vec<String> = fs::read_dir(f.derived.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names.iter().filter(|n| n.ends_with(".decset")).count(), 1);

        let (b, r) = run_in(&f, &p, w2.path(), None);
        r.unwrap();
        assert_eq!(files, crate::testutil::all_bytes(b.path()));
        // Another batch size (another work key, so another folder) gives
        // another model.
        let w3 = tempfile::tempdir().unwrap();
        let (c, r) = run_in(
            &f,
            &params(json!({"epochs": 2, "batch": 6})),
            w3.path(),
            None,
        );
        r.unwrap();
        assert!(
            fs::read(a.path().join(MODEL_FILE)).unwrap()
                != fs::read(c.path().join(MODEL_FILE)).unwrap()
        );
    }

    #[test]
    fn a_killed_run_resumes_from_its_last_epoch_with_identical_bytes() {
        let f = fixture(24, 1, 5);
        let p = params(json!({"epochs": 2}));
        let (fresh_work, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (fresh, r) = run_in(&f, &p, fresh_work.path(), None);
        r.unwrap();
        // Killed after epoch 1: only its checkpoint remains.
        let (_, r) = run_in(&f, &p, work.path(), Some(1));
        assert_eq!(r.unwrap().trained_epochs, 1);
        assert!(ckpt_info(work.path(), 1).is_file());
        assert!(!work.path().join(TIMINGS_FILE).exists());
        let (resumed, r) = run_in(&f, &p, work.path(), None);
        let r = r.unwrap();
        assert_eq!(r.resumed_from, Some(1));
        assert_eq!(r.trained_epochs, 1);
        let t = read_timings(work.path()).unwrap();
        assert_eq!(t.resumed_from_epoch, Some(1));
        assert_eq!(t.trained_epochs, 1);
        assert_eq!(t.epochs.len(), 2);
        assert_same_files(fresh.path(), resumed.path());

        // A checkpoint without its JSON does not count.
        fs::remove_file(ckpt_info(work.path(), 2)).unwrap();
        let (again, r) = run_in(&f, &p, work.path(), None);
        assert_eq!(r.unwrap().resumed_from, None);
        assert_same_files(fresh.path(), again.path());
    }

    #[test]
    fn raising_cycles_continues_from_the_cached_cycles() {
        let f = fixture(24, 1, 5);
        let one = params(
            json!({"schedule": {"kind": "cosine-restarts", "cycle_epochs": 1, "cycles": 1}}),
        );
        let two = params(
            json!({"schedule": {"kind": "cosine-restarts", "cycle_epochs": 1, "cycles": 2}}),
        );
        let (work, fresh_work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, r) = run_in(&f, &one, work.path(), None);
        assert_eq!(r.unwrap().trained_epochs, 1);
        let (b, r) = run_in(&f, &two, work.path(), None);
        let r = r.unwrap();
        assert_eq!(r.resumed_from, Some(1));
        assert_eq!(r.trained_epochs, 1);
        let snap0 = |d: &Path| fs::read(d.join("snapshots/cycle-0.safetensors")).unwrap();
        assert_eq!(snap0(a.path()), snap0(b.path()));
        let files = crate::testutil::all_bytes(b.path());
        assert_eq!(
            names(&files),
            [
                "metrics.json",
                "model.safetensors",
                "snapshots.json",
                "snapshots/cycle-0.safetensors",
                "snapshots/cycle-1.safetensors",
                "train.json"
            ]
        );
        let snaps = json_file(&b.path().join(SNAPSHOTS_FILE));
        assert_eq!(snaps[1]["cycle"], 1);
        assert_eq!(snaps[1]["epoch"], 2);
        assert!(snaps[0]["valid_loss"].as_f64().is_some());
        // The last snapshot is the final model.
        assert_eq!(
            fs::read(b.path().join("snapshots/cycle-1.safetensors")).unwrap(),
            fs::read(b.path().join(MODEL_FILE)).unwrap()
        );
        // Same bytes as training both cycles at once.
        let (c, r) = run_in(&f, &two, fresh_work.path(), None);
        assert_eq!(r.unwrap().trained_epochs, 2);
        assert_eq!(files, crate::testutil::all_bytes(c.path()));
        // Fewer cycles again: resumes from the kept snapshot checkpoint.
        let (d, r) = run_in(&f, &one, work.path(), None);
        let r = r.unwrap();
        assert_eq!((r.resumed_from, r.trained_epochs), (Some(1), 0));
        assert_same_files(a.path(), d.path());
    }

    #[test]
    fn a_huge_learning_rate_names_epoch_and_batch() {
        let f = fixture(24, 1, 5);
        let w = tempfile::tempdir().unwrap();
        let p = params(json!({"optimizer": {"lr": 1e30}, "schedule": {"kind": "constant"}}));
        let (_, r) = run_in(&f, &p, w.path(), None);
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with("loss is not finite at epoch 1, batch "),
            "{e}"
        );
        assert!(e.contains("(lr 1e30"), "{e}");
    }

    #[test]
    fn codes_longer_than_heads_and_foreign_splits_are_errors() {
        let f = fixture(24, 5, 5);
        let w = tempfile::tempdir().unwrap();
        let (_, r) = run_in(&f, &params(json!({"model": {"heads": 4}})), w.path(), None);
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with("24 image(s) of data `plates` have codes longer than heads = 4, e.g. `000000.png` (code \""),
            "{e}"
        );
        // A split of another data set (of another size).
        let g = fixture(8, 1, 3);
        let mixed = Fixture {
            data: g.data,
            split: f.split,
            derived: g.derived,
        };
        let (_, r) = run_in(&mixed, &params(json!({})), w.path(), None);
        assert_eq!(
            r.unwrap_err().to_string(),
            "split `folds` was made from 24 items, but data `plates` has 8; point the split at the same data set"
        );
    }

    #[test]
    fn canonical_drops_what_cannot_matter() {
        // `normalise = "unit"` is the unset default: the same key.
        assert_eq!(params(json!({"normalise": "unit"})), params(json!({})));
        assert_eq!(params(json!({})).get("normalise"), None);
        assert_eq!(
            params(json!({"normalise": "imagenet"}))["normalise"],
            "imagenet"
        );
        assert_eq!(input_norm(Some("imagenet")), Norm::imagenet());
        assert_eq!(input_norm(Some("unit")), Norm::default());
        assert_eq!(input_norm(None), Norm::default());
        let p = params(json!({}));
        assert_eq!(p["epochs"], 1);
        assert_eq!(
            p["optimizer"],
            json!({"kind": "adam", "lr": 0.001, "weight_decay": 0.0})
        );
        assert_eq!(p["schedule"], json!({"kind": "cosine", "min_lr": 0.0}));
        let p = params(json!({"optimizer": {"kind": "sgd"}, "schedule": {"kind": "step"}}));
        assert_eq!(
            p["optimizer"],
            json!({"kind": "sgd", "lr": 0.001, "momentum": 0.9, "nesterov": false, "weight_decay": 0.0})
        );
        assert_eq!(
            p["schedule"],
            json!({"kind": "step", "step_epochs": 10, "gamma": 0.1})
        );
        let p = params(json!({"schedule": {"kind": "constant"}}));
        assert_eq!(p["schedule"], json!({"kind": "constant"}));
        let p = params(json!({"schedule": {"kind": "cosine-restarts"}}));
        assert!(p.get("epochs").is_none());
        assert_eq!(
            p["schedule"],
            json!({"kind": "cosine-restarts", "cycle_epochs": 5, "cycles": 2, "min_lr": 0.0})
        );
        assert_eq!(Train.resumable(), Some(&["schedule.cycles"][..]));
    }

    #[test]
    fn check_reports_margin_and_min_lr() {
        assert!(check_params(&params(json!({}))).is_empty());
        let issues = check_params(&params(json!({
            "margin": [4, 8, 2],
            "schedule": {"min_lr": 0.01},
        })));
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["margin", "schedule.min_lr"]);
        assert_eq!(
            issues[0].message,
            "expected `[rows, columns]` (2 entries), found 3 entries"
        );
        assert_eq!(
            issues[1].message,
            "`min_lr` (0.01) is greater than `optimizer.lr` (0.001)"
        );
        // A constant schedule has no min_lr to compare.
        assert!(check_params(&params(
            json!({"schedule": {"kind": "constant", "min_lr": 0.01}})
        ))
        .is_empty());
    }
}
