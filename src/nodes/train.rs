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
//! Learning rate, per batch (`e` = 0-based epoch, `b` = batch in the epoch,
//! `S` = batches per epoch): `constant`: lr; `step`: lr × gamma^⌊e /
//! step_epochs⌋; `cosine`: min_lr + (lr − min_lr)(1 + cos(π t)) / 2 with
//! t = (e·S + b) / (epochs·S); `cosine-restarts` (SGDR): the same cosine
//! within each cycle of `cycle_epochs` epochs, restarting at lr; the model
//! at the end of each cycle is a snapshot. Under `cosine-restarts` the
//! number of epochs is cycle_epochs × cycles (`epochs` is dropped).
//!
//! Artifact layout:
//! - `model.safetensors`: the final model ([`crate::model::Model::save`]);
//! - `metrics.json`: per epoch `{epoch, lr, train_loss, train_seq_acc,
//!   valid_loss, valid_seq_acc, valid_char_acc}` — `lr` is the rate of the
//!   epoch's last batch, `train_loss` the mean per-head training loss (with
//!   label smoothing, on augmented images, measured before each step),
//!   `valid_loss` the mean over images and heads of −ln p(true class);
//! - `train.json`: a summary (architecture, heads, sizes, input
//!   normalisation `norm` = `{mean, std}`, epochs, best epoch, final
//!   validation scores, snapshot count);
//! - under `cosine-restarts`: `snapshots/cycle-<c>.safetensors` and
//!   `snapshots.json` (`[{cycle, epoch, valid_seq_acc, valid_loss}]`).
//!
//! Working folder (`ctx.work`, never hashed): `epoch-<e>.safetensors` +
//! `epoch-<e>.json` checkpoints (the JSON, written last, makes a checkpoint
//! count; it holds the metrics so far bit-exactly), and `timings.json`
//! (seconds and images/s per epoch, the epoch this run resumed from, how many
//! epochs it trained).
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
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::dataset::DataIndex;
use crate::artifact::split::{load_fold, SUMMARY_FILE};
use crate::imaging::{self, Augment, DecodedSet, Norm};
use crate::kind::schema::{float_range, int_min, int_range, Dflt, Param, Ty};
use crate::kind::{codes, Kind, NodeError, ParamIssue, RunCtx};
use crate::model::{Arch, Model, ModelConfig, ModelError, Optimizer, BLANK};
use crate::predictions::{decode, metrics, Probs, CLASSES};
use crate::rng::Rng;

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

/// Name of the final model inside the artifact.
pub const MODEL_FILE: &str = "model.safetensors";
/// Per-epoch metrics inside the artifact.
pub const METRICS_FILE: &str = "metrics.json";
/// The summary inside the artifact.
pub const SUMMARY: &str = "train.json";
/// Snapshot folder and index inside the artifact (cosine-restarts).
pub const SNAPSHOTS_DIR: &str = "snapshots";
pub const SNAPSHOTS_FILE: &str = "snapshots.json";
/// Timings and resume facts inside the working folder.
pub const TIMINGS_FILE: &str = "timings.json";

pub struct Train;

impl Kind for Train {
    fn name(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Trains a CNN (`svhn-small` or `resnet-mini`, one 11-way head per digit position) on a fold of a labelled data set, validating after every epoch. A k-fold `split` makes one instance per fold. Checkpoints every epoch in a working folder, so a killed run resumes and raising `schedule.cycles` continues the earlier cycles; under `cosine-restarts` each cycle's end is kept as a snapshot. Writes `model.safetensors`, `metrics.json`, `train.json` (and `snapshots/`)."
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

/// The learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Schedule {
    Constant,
    Step {
        every: usize,
        gamma: f64,
    },
    Cosine {
        epochs: usize,
        min_lr: f64,
    },
    Restarts {
        cycle: usize,
        cycles: usize,
        min_lr: f64,
    },
}

impl Schedule {
    fn from_params(p: &TrainParams) -> Schedule {
        let s = &p.schedule;
        let min_lr = s.min_lr.unwrap_or(0.0);
        match s.kind.as_str() {
            "constant" => Schedule::Constant,
            "step" => Schedule::Step {
                every: s.step_epochs.unwrap_or(10).max(1),
                gamma: s.gamma.unwrap_or(0.1),
            },
            "cosine-restarts" => Schedule::Restarts {
                cycle: s.cycle_epochs.unwrap_or(5).max(1),
                cycles: s.cycles.unwrap_or(2).max(1),
                min_lr,
            },
            _ => Schedule::Cosine {
                epochs: p.epochs.unwrap_or(10).max(1),
                min_lr,
            },
        }
    }

    fn epochs(&self, epochs: usize) -> usize {
        match *self {
            Schedule::Cosine { epochs, .. } => epochs,
            Schedule::Restarts { cycle, cycles, .. } => cycle * cycles,
            _ => epochs,
        }
    }

    /// The rate of batch `b` (of `per_epoch`) in 0-based epoch `e`.
    fn lr(&self, base: f64, e: usize, b: usize, per_epoch: usize) -> f64 {
        let cosine = |min: f64, pos: usize, len: usize| {
            let t = pos as f64 / len as f64;
            min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        };
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((e / every) as i32),
            Schedule::Cosine { epochs, min_lr } => {
                cosine(min_lr, e * per_epoch + b, epochs * per_epoch)
            }
            Schedule::Restarts { cycle, min_lr, .. } => {
                cosine(min_lr, (e % cycle) * per_epoch + b, cycle * per_epoch)
            }
        }
    }

    /// The snapshot cycle that ends with 1-based epoch `epoch`, if any.
    fn snapshot_of(&self, epoch: usize) -> Option<usize> {
        match *self {
            Schedule::Restarts { cycle, .. } if epoch.is_multiple_of(cycle) => {
                Some(epoch / cycle - 1)
            }
            _ => None,
        }
    }
}

/// One epoch's scores (the artifact's `metrics.json` rows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_seq_acc: f64,
    pub valid_loss: f64,
    pub valid_seq_acc: f64,
    pub valid_char_acc: f64,
    /// With a length head: how often its argmax is the true digit count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_length_acc: Option<f64>,
}

impl EpochMetrics {
    fn to_bits(&self) -> [u64; 6] {
        [
            self.lr,
            self.train_loss,
            self.train_seq_acc,
            self.valid_loss,
            self.valid_seq_acc,
            self.valid_char_acc,
        ]
        .map(f64::to_bits)
    }
    fn from_bits(epoch: usize, b: [u64; 6]) -> EpochMetrics {
        let f = b.map(f64::from_bits);
        EpochMetrics {
            epoch,
            lr: f[0],
            train_loss: f[1],
            train_seq_acc: f[2],
            valid_loss: f[3],
            valid_seq_acc: f[4],
            valid_char_acc: f[5],
            valid_length_acc: None,
        }
    }
}

/// One epoch's timing (working folder only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochTiming {
    pub epoch: usize,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// `epoch-<e>.json` in the working folder: the metrics so far, exactly
/// (floats as their bit patterns, since JSON text need not round-trip).
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointInfo {
    epoch: usize,
    metrics_bits: Vec<(usize, [u64; 6])>,
    /// With a length head: each epoch's `valid_length_acc` bits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    length_acc_bits: Vec<u64>,
    timings: Vec<EpochTiming>,
}

/// `timings.json` in the working folder.
#[derive(Debug, Serialize, Deserialize)]
pub struct Timings {
    /// The checkpoint epoch this run started from (None: from scratch).
    pub resumed_from_epoch: Option<usize>,
    /// Epochs trained by this run.
    pub trained_epochs: usize,
    pub epochs: Vec<EpochTiming>,
}

#[derive(Debug, Serialize)]
struct Summary {
    arch: String,
    heads: usize,
    height: u32,
    width: u32,
    decoded_height: u32,
    decoded_width: u32,
    /// The input normalisation (`predict` applies the same).
    norm: Norm,
    parameters: usize,
    train_images: usize,
    valid_images: usize,
    epochs: usize,
    schedule: String,
    best_epoch: usize,
    best_valid_seq_acc: f64,
    final_valid_seq_acc: f64,
    final_valid_char_acc: f64,
    final_valid_loss: f64,
    /// Whether the model has a length head (`predict` then writes
    /// `length.fwprobs`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    length_head: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    final_valid_length_acc: Option<f64>,
    snapshots: usize,
}

#[derive(Debug, Serialize)]
struct SnapshotInfo {
    cycle: usize,
    epoch: usize,
    valid_seq_acc: f64,
    valid_loss: f64,
}

/// What a run did (for tests).
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    resumed_from: Option<usize>,
    trained_epochs: usize,
}

fn ckpt_model(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch}.safetensors"))
}
fn ckpt_info(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch}.json"))
}

fn model_err(e: ModelError) -> NodeError {
    NodeError::new(codes::MODEL, e.to_string())
}

/// Writes `bytes` to `path` through a temporary name in the same folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let tmp = crate::store::temp_sibling(path);
    fs::write(&tmp, bytes).map_err(|e| NodeError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| NodeError::io(path, e))
}

fn pretty(v: &impl Serialize) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(v).expect("serialises");
    json.push(b'\n');
    json
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

/// The latest complete checkpoint in `work` at or before `total` whose
/// snapshot checkpoints are all present; with its model and info.
fn find_checkpoint(
    work: &Path,
    total: usize,
    sched: &Schedule,
) -> Option<(usize, Model, CheckpointInfo)> {
    let mut epochs: Vec<usize> = fs::read_dir(work)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("epoch-")?
                .strip_suffix(".json")?
                .parse::<usize>()
                .ok()
        })
        .filter(|&e| e >= 1 && e <= total)
        .collect();
    epochs.sort_unstable();
    for &e in epochs.iter().rev() {
        let Ok(bytes) = fs::read(ckpt_info(work, e)) else {
            continue;
        };
        let Ok(info) = serde_json::from_slice::<CheckpointInfo>(&bytes) else {
            continue;
        };
        if info.epoch != e || info.metrics_bits.len() != e {
            continue;
        }
        let snaps_ok = (1..=e)
            .filter(|&k| sched.snapshot_of(k).is_some())
            .all(|k| ckpt_model(work, k).is_file() && ckpt_info(work, k).is_file());
        if !snaps_ok {
            continue;
        }
        if let Ok(model) = Model::load(&ckpt_model(work, e)) {
            return Some((e, model, info));
        }
    }
    None
}

/// Validation: (mean −ln p(true class) over images and heads, metrics,
/// the length head's accuracy when there is one).
fn validate(
    model: &Model,
    set: &DecodedSet,
    valid: &[usize],
    labels: &[Vec<u8>],
    index: &DataIndex,
    cfg: &ModelConfig,
    norm: &Norm,
) -> Result<(f64, metrics::Metrics, Option<f64>), NodeError> {
    let heads = cfg.heads;
    let (h, w) = (cfg.height as u32, cfg.width as u32);
    let mut data = Vec::with_capacity(valid.len() * heads * CLASSES);
    let mut length_hits = model.has_length_head().then_some(0usize);
    for chunk in valid.chunks(EVAL_CHUNK) {
        let x = imaging::batch(set, chunk, &Augment::none(), 0, 0, 0, h, w, norm);
        let (probs, length) = model.forward_all(&x, chunk.len()).map_err(model_err)?;
        data.extend(probs);
        if let (Some(hits), Some(length)) = (length_hits.as_mut(), length) {
            for (row, &item) in length.chunks(CLASSES).zip(chunk) {
                let truth = labels[item].iter().filter(|&&c| c != BLANK).count();
                *hits += (decode::argmax(row) as usize == truth) as usize;
            }
        }
    }
    let probs = Probs::new(valid.len(), heads, data)?;
    let mut loss = 0.0f64;
    for (i, &item) in valid.iter().enumerate() {
        for (hd, &c) in labels[item].iter().enumerate() {
            let p = probs.get(i, hd)[c as usize] as f64;
            loss -= p.max(1e-12).ln();
        }
    }
    loss /= (valid.len() * heads) as f64;
    let names: Vec<&str> = valid
        .iter()
        .map(|&i| index.items[i].file.as_str())
        .collect();
    let truth: Vec<Option<&[u8]>> = valid
        .iter()
        .map(|&i| index.items[i].label.as_deref())
        .collect();
    let m = metrics::evaluate(&names, &truth, &decode::classes(&probs))?;
    let length_acc = length_hits.map(|h| h as f64 / valid.len() as f64);
    Ok((loss, m, length_acc))
}

/// Trains and writes the artifact. `stop_after` (tests) stops right after
/// that epoch's checkpoint, as a kill would, without writing the artifact.
fn train(
    ctx: &RunCtx<'_>,
    p: &TrainParams,
    stop_after: Option<usize>,
) -> Result<Outcome, NodeError> {
    // Inputs.
    let data = ctx.input("data")?;
    let split = ctx.input("split")?;
    let index = DataIndex::load(&data.dir)?;
    let n = index.items.len();
    let summary_path = split.dir.join(SUMMARY_FILE);
    let summary: Value = fs::read(&summary_path)
        .map_err(|e| NodeError::io(&summary_path, e))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| NodeError::file(&summary_path, format!("not a split summary: {e}")))
        })?;
    let split_items = summary["items"].as_u64().unwrap_or(u64::MAX);
    if split_items != n as u64 {
        return Err(NodeError::new("foldwise::train::split", format!(
            "split `{}` was made from {split_items} items, but data `{}` has {n}; point the split at the same data set",
            split.node, data.node
        )));
    }
    let fold = load_fold(split)?;
    if let Some(bad) = fold.train.iter().chain(&fold.valid).find(|&&i| i >= n) {
        return Err(NodeError::new(
            "foldwise::train::split",
            format!(
                "split `{}` refers to item {bad}, but data `{}` has {n}",
                split.node, data.node
            ),
        ));
    }
    if fold.train.is_empty() || fold.valid.is_empty() {
        return Err(NodeError::new(
            "foldwise::train::split",
            format!(
                "split `{}`: the fold's {} part is empty",
                split.node,
                if fold.train.is_empty() {
                    "train"
                } else {
                    "valid"
                }
            ),
        ));
    }
    let m = &p.model;
    let labels = class_vectors(&index, m.heads, &data.node)?;

    // Decoded images.
    let (margin_h, margin_w) = (p.margin[0], p.margin[1]);
    let (dh, dw) = (m.height + margin_h, m.width + margin_w);
    let set = imaging::shared_set(
        ctx.derived,
        &data.dir,
        &data.digest,
        &index,
        dh,
        dw,
        ctx.progress,
    )?;

    // Model configuration and schedule.
    let optimizer = match p.optimizer.kind.as_str() {
        "sgd" => Optimizer::Sgd {
            momentum: p.optimizer.momentum.unwrap_or(0.9),
            nesterov: p.optimizer.nesterov.unwrap_or(false),
            weight_decay: p.optimizer.weight_decay,
        },
        _ => Optimizer::Adam {
            weight_decay: p.optimizer.weight_decay,
        },
    };
    let cfg = ModelConfig {
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
    };
    let sched = Schedule::from_params(p);
    let total = sched.epochs(p.epochs.unwrap_or(10));
    let aug = Augment {
        crop: p.augment.crop,
        scale: p.augment.scale,
        rotation_deg: p.augment.rotation,
        brightness: p.augment.brightness,
        contrast: p.augment.contrast,
        saturation: p.augment.saturation,
    };
    let norm = input_norm(p.normalise.as_deref());
    let batch = p.batch.max(1);
    let per_epoch = fold.train.len().div_ceil(batch);
    let smoothing = p.label_smoothing as f32;

    // Resume.
    let resumed = ctx.work.and_then(|w| find_checkpoint(w, total, &sched));
    let resumed_from = resumed.as_ref().map(|r| r.0);
    let (mut model, mut records, mut timings) = match resumed {
        Some((e, model, info)) => {
            if model.config() != &cfg {
                return Err(NodeError::file(
                    ckpt_model(ctx.work.expect("resumed"), e),
                    "checkpoint has another model configuration",
                ));
            }
            let recs: Vec<EpochMetrics> = info
                .metrics_bits
                .iter()
                .enumerate()
                .map(|(k, &(ep, b))| EpochMetrics {
                    valid_length_acc: info.length_acc_bits.get(k).map(|&x| f64::from_bits(x)),
                    ..EpochMetrics::from_bits(ep, b)
                })
                .collect();
            (model, recs, info.timings)
        }
        None => {
            let seed = Rng::derive(ctx.seed, INIT_STREAM, 0).next_u64();
            (
                Model::new(cfg.clone(), seed).map_err(model_err)?,
                Vec::new(),
                Vec::new(),
            )
        }
    };
    let start = resumed_from.unwrap_or(0);
    timings.truncate(start);

    let snap_dir = ctx.out.join(SNAPSHOTS_DIR);
    let restarts = matches!(sched, Schedule::Restarts { .. });
    if restarts {
        fs::create_dir_all(&snap_dir).map_err(|e| NodeError::io(&snap_dir, e))?;
        // Snapshots of cycles finished before the resume point.
        for k in 1..=start {
            if let Some(c) = sched.snapshot_of(k) {
                let src = ckpt_model(ctx.work.expect("resumed"), k);
                let dst = snap_dir.join(format!("cycle-{c}.safetensors"));
                fs::copy(&src, &dst).map_err(|e| NodeError::io(&src, e))?;
            }
        }
    }

    ctx.progress.set_total(((total - start) * per_epoch) as u64);
    let mut order = fold.train.clone();
    for e0 in start..total {
        let epoch = e0 + 1;
        let t0 = Instant::now();
        order.clone_from(&fold.train);
        Rng::derive(ctx.seed, STREAM, e0 as u64).shuffle(&mut order);
        let (mut loss_sum, mut seq_correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = 0.0;
        for (b, idx) in order.chunks(batch).enumerate() {
            lr = sched.lr(p.optimizer.lr, e0, b, per_epoch);
            let x = imaging::batch(
                &set, idx, &aug, ctx.seed, AUG_STREAM, e0 as u64, m.height, m.width, &norm,
            );
            let y: Vec<u8> = idx
                .iter()
                .flat_map(|&i| labels[i].iter().copied())
                .collect();
            let step_seed =
                Rng::derive(ctx.seed, STEP_STREAM, ((e0 as u64) << 32) | b as u64).next_u64();
            let stats = match model.train_step(&x, &y, step_seed, lr, smoothing) {
                Ok(s) => s,
                Err(ModelError::NonFiniteLoss { loss }) => {
                    return Err(NodeError::new("foldwise::train::diverged", format!(
                        "loss is not finite at epoch {epoch}, batch {} (lr {lr:e}, loss {loss}); lower `optimizer.lr`",
                        b + 1
                    )))
                }
                Err(e) => return Err(model_err(e)),
            };
            loss_sum += stats.loss as f64 * idx.len() as f64;
            seq_correct += stats.seq_correct;
            seen += idx.len();
            ctx.progress.inc(1);
            ctx.progress.message(&format!(
                "epoch {epoch}/{total} loss {:.3} acc {:.1}% img/s {:.0}",
                loss_sum / seen as f64 / m.heads as f64,
                100.0 * seq_correct as f64 / seen as f64,
                seen as f64 / t0.elapsed().as_secs_f64().max(1e-9)
            ));
        }
        let (valid_loss, vm, valid_length_acc) =
            validate(&model, &set, &fold.valid, &labels, &index, &cfg, &norm)?;
        let seconds = t0.elapsed().as_secs_f64();
        records.push(EpochMetrics {
            epoch,
            lr,
            train_loss: loss_sum / seen as f64 / m.heads as f64,
            train_seq_acc: seq_correct as f64 / seen as f64,
            valid_loss,
            valid_seq_acc: vm.seq_acc,
            valid_char_acc: vm.char_acc,
            valid_length_acc,
        });
        timings.push(EpochTiming {
            epoch,
            seconds,
            images_per_s: seen as f64 / seconds.max(1e-9),
        });
        if let Some(c) = sched.snapshot_of(epoch) {
            let dst = snap_dir.join(format!("cycle-{c}.safetensors"));
            model.save(&dst).map_err(model_err)?;
        }
        if let Some(work) = ctx.work {
            let mp = ckpt_model(work, epoch);
            let tmp = crate::store::temp_sibling(&mp);
            model.save(&tmp).map_err(model_err)?;
            fs::rename(&tmp, &mp).map_err(|e| NodeError::io(&mp, e))?;
            let info = CheckpointInfo {
                epoch,
                metrics_bits: records.iter().map(|r| (r.epoch, r.to_bits())).collect(),
                length_acc_bits: records
                    .iter()
                    .filter_map(|r| r.valid_length_acc.map(f64::to_bits))
                    .collect(),
                timings: timings.clone(),
            };
            write_atomic(&ckpt_info(work, epoch), &pretty(&info))?;
            // The previous epoch's checkpoint is no longer needed unless it
            // is a snapshot.
            let prev = epoch - 1;
            if prev >= 1 && sched.snapshot_of(prev).is_none() {
                let _ = fs::remove_file(ckpt_info(work, prev));
                let _ = fs::remove_file(ckpt_model(work, prev));
            }
        }
        if stop_after == Some(epoch) {
            return Ok(Outcome {
                resumed_from,
                trained_epochs: epoch - start,
            });
        }
    }
    let trained_epochs = total - start;

    // The artifact.
    model.save(&ctx.out.join(MODEL_FILE)).map_err(model_err)?;
    fs::write(ctx.out.join(METRICS_FILE), pretty(&records))
        .map_err(|e| NodeError::io(ctx.out.join(METRICS_FILE), e))?;
    let last = records.last().expect("at least one epoch");
    let best = records
        .iter()
        .max_by(|a, b| {
            a.valid_seq_acc
                .total_cmp(&b.valid_seq_acc)
                .then(b.valid_loss.total_cmp(&a.valid_loss))
                .then(b.epoch.cmp(&a.epoch))
        })
        .expect("at least one epoch");
    let snapshots: Vec<SnapshotInfo> = records
        .iter()
        .filter_map(|r| {
            sched.snapshot_of(r.epoch).map(|c| SnapshotInfo {
                cycle: c,
                epoch: r.epoch,
                valid_seq_acc: r.valid_seq_acc,
                valid_loss: r.valid_loss,
            })
        })
        .collect();
    let summary = Summary {
        arch: m.arch.clone(),
        heads: m.heads,
        height: m.height,
        width: m.width,
        decoded_height: dh,
        decoded_width: dw,
        norm,
        parameters: model.param_count(),
        train_images: fold.train.len(),
        valid_images: fold.valid.len(),
        epochs: total,
        schedule: p.schedule.kind.clone(),
        best_epoch: best.epoch,
        best_valid_seq_acc: best.valid_seq_acc,
        final_valid_seq_acc: last.valid_seq_acc,
        final_valid_char_acc: last.valid_char_acc,
        final_valid_loss: last.valid_loss,
        length_head: m.length_head,
        final_valid_length_acc: last.valid_length_acc,
        snapshots: snapshots.len(),
    };
    fs::write(ctx.out.join(SUMMARY), pretty(&summary))
        .map_err(|e| NodeError::io(ctx.out.join(SUMMARY), e))?;
    if restarts {
        fs::write(ctx.out.join(SNAPSHOTS_FILE), pretty(&snapshots))
            .map_err(|e| NodeError::io(ctx.out.join(SNAPSHOTS_FILE), e))?;
    }
    if let Some(work) = ctx.work {
        let t = Timings {
            resumed_from_epoch: resumed_from,
            trained_epochs,
            epochs: timings,
        };
        write_atomic(&work.join(TIMINGS_FILE), &pretty(&t))?;
    }
    Ok(Outcome {
        resumed_from,
        trained_epochs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::{InputArtifact, NoProgress};
    use crate::nodes::split::Split;
    use crate::nodes::synthetic::{write_dataset, SyntheticParams};
    use serde_json::json;
    use std::collections::BTreeMap;

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
        };
        let r = match check_params(p).into_iter().next() {
            Some(i) => Err(NodeError::new("foldwise::train::params", i.message)),
            None => ctx.typed().and_then(|tp| train(&ctx, &tp, stop_after)),
        };
        (out, r)
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
        let s = json_file(&a.path().join(SUMMARY));
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
        let t: Timings =
            serde_json::from_slice(&fs::read(w1.path().join(TIMINGS_FILE)).unwrap()).unwrap();
        assert_eq!(t.trained_epochs, 2);
        assert_eq!(t.epochs.len(), 2);
        // Only the latest non-snapshot checkpoint is kept.
        assert!(ckpt_info(w1.path(), 2).is_file());
        assert!(!ckpt_info(w1.path(), 1).exists());
        // The decoded set was made once, in the derived folder.
        assert_eq!(fs::read_dir(f.derived.path()).unwrap().count(), 1);

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
        let t: Timings =
            serde_json::from_slice(&fs::read(work.path().join(TIMINGS_FILE)).unwrap()).unwrap();
        assert_eq!(t.resumed_from_epoch, Some(1));
        assert_eq!(t.trained_epochs, 1);
        assert_eq!(t.epochs.len(), 2);
        assert_eq!(
            crate::testutil::all_bytes(fresh.path()),
            crate::testutil::all_bytes(resumed.path())
        );

        // A checkpoint without its JSON does not count.
        fs::remove_file(ckpt_info(work.path(), 2)).unwrap();
        let (again, r) = run_in(&f, &p, work.path(), None);
        assert_eq!(r.unwrap().resumed_from, None);
        assert_eq!(
            crate::testutil::all_bytes(fresh.path()),
            crate::testutil::all_bytes(again.path())
        );
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
        assert_eq!(
            crate::testutil::all_bytes(a.path()),
            crate::testutil::all_bytes(d.path())
        );
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

    #[test]
    fn schedules_per_batch() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let c = Schedule::Constant;
        assert_eq!(c.lr(0.1, 7, 3, 10), 0.1);
        let s = Schedule::Step {
            every: 2,
            gamma: 0.5,
        };
        assert!(close(s.lr(1.0, 1, 9, 10), 1.0));
        assert!(close(s.lr(1.0, 2, 0, 10), 0.5));
        assert!(close(s.lr(1.0, 5, 0, 10), 0.25));
        let cos = Schedule::Cosine {
            epochs: 2,
            min_lr: 0.1,
        };
        assert!(close(cos.lr(1.0, 0, 0, 4), 1.0));
        assert!(close(cos.lr(1.0, 1, 0, 4), 0.55));
        assert!(cos.lr(1.0, 1, 3, 4) < cos.lr(1.0, 1, 2, 4));
        assert_eq!(cos.epochs(9), 2);
        assert_eq!(cos.snapshot_of(2), None);
        let r = Schedule::Restarts {
            cycle: 3,
            cycles: 2,
            min_lr: 0.0,
        };
        assert_eq!(r.epochs(99), 6);
        assert!(close(r.lr(1.0, 3, 0, 4), 1.0));
        assert!(close(r.lr(1.0, 4, 2, 4), r.lr(1.0, 1, 2, 4)));
        assert_eq!(
            (1..=6).map(|e| r.snapshot_of(e)).collect::<Vec<_>>(),
            [None, None, Some(0), None, None, Some(1)]
        );
    }
}
