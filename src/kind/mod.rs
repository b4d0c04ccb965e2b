//! What a node kind is, apart from any one kind: the [`Kind`] trait, the
//! [`RunCtx`] a kind runs with, [`Progress`], the parameter [`schema`] every
//! kind declares, and [`NodeError`], the diagnostic a failing node returns.
//!
//! This module sits below everything that handles kinds — `config`
//! validates against [`Kind::params`], `exec` calls [`Kind::run`], `nodes`
//! implements the kinds, `report` and `cli` ask them what differs per kind —
//! and imports none of them.
//!
//! Guarantee: `run` only writes inside `ctx.out`; everything a kind reads
//! is either in its parameters, its inputs' artifact folders, or a file its
//! `external_inputs` declares (and so is hashed into its key).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

mod device;
mod error;
pub mod schema;

pub use device::{DeviceChoice, DEVICE_VALUES};
pub use error::{codes, NodeError};
use schema::Param;

/// A node kind. Implementations are unit structs, registered in
/// `nodes::KINDS`.
pub trait Kind: Sync {
    /// The `kind = "…"` name.
    fn name(&self) -> &'static str;
    /// Bumped whenever the kind's output for the same inputs changes.
    fn version(&self) -> u32;
    /// One paragraph for the format reference.
    fn doc(&self) -> &'static str;
    /// The parameters (everything but `kind`).
    fn params(&self) -> &'static [Param];
    /// Semantic checks beyond the schema, on canonical parameters. Each issue
    /// names the parameter path (`"method"`, `"model.heads"`) it is about.
    fn check(&self, _params: &Value) -> Vec<ParamIssue> {
        Vec::new()
    }
    /// Drop parameters that cannot affect the output (e.g. `k` of a
    /// hold-out split) so that they do not enter the key.
    fn canonical(&self, params: Value) -> Value {
        params
    }
    /// Number of parts this node's artifact offers to nodes that follow it
    /// (k for a k-fold split), or `None` for a plain artifact.
    fn parts(&self, _params: &Value) -> Option<usize> {
        None
    }
    /// The artifact-relative file holding part `i` (hashed on its own, so a
    /// fold consumer's key depends on that fold's index set only).
    fn part_file(&self, i: usize) -> String {
        format!("part-{i}")
    }
    /// Files or folders outside the cache that `run` reads, as
    /// (parameter path, absolute path). They are hashed into the key.
    fn external_inputs(&self, _params: &Value, _base_dir: &Path) -> Vec<(String, PathBuf)> {
        Vec::new()
    }
    /// Paths outside the cache that must be there before `run` can start:
    /// `foldwise check` reports each one missing or unreadable at its
    /// parameter. By default the external inputs, readable.
    fn required_paths(&self, params: &Value, base_dir: &Path) -> Vec<RequiredPath> {
        self.external_inputs(params, base_dir)
            .into_iter()
            .map(|(param, path)| RequiredPath {
                param,
                path,
                executable: false,
            })
            .collect()
    }
    /// For kinds that can resume interrupted or extended work (training):
    /// the parameter paths left out of the *work key*. The engine then gives
    /// `run` a working folder (`ctx.work`) keyed by the pre-image without
    /// those parameters, which survives failures and kills. `Some(&[])`
    /// resumes only the same key; `Some(&["schedule.cycles"])` also lets a
    /// run with more cycles start from a run with fewer. `None`: no folder.
    fn resumable(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// How this node's running time responds to threads, given its
    /// canonical parameters: the scheduler divides the run's thread budget
    /// by it ([`Appetite`]). Small nodes keep the default, one thread.
    fn appetite(&self, _params: &Value) -> Appetite {
        Appetite::One
    }
    /// Parameter paths that steer how the node is run, never what it writes
    /// (a `command`'s `threads`): left out of the key, so changing them
    /// reruns nothing.
    fn unkeyed(&self) -> &'static [&'static str] {
        &[]
    }
    /// Compute the artifact into `ctx.out`.
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError>;
    /// The scalar scores the artifact in `dir` offers to the run history,
    /// `diff` and the report, as `(name, value)` in the kind's order
    /// (`seq_acc`, `tta.seq_acc`); `None` when the kind scores nothing or
    /// the artifact cannot be read.
    fn scores(&self, _dir: &Path) -> Option<Vec<(String, f64)>> {
        None
    }
    /// Where the artifact in `dir` was computed (`cpu`, `cuda:0`), for a
    /// kind that records it (the run history keeps it); `None` otherwise.
    fn device(&self, _dir: &Path) -> Option<String> {
        None
    }
    /// For a kind that scores ([`Kind::scores`]): the name of its headline
    /// score, shown (as not run) where neither side of a comparison has
    /// run. `None` for a kind that scores nothing.
    fn headline_score(&self) -> Option<&'static str> {
        None
    }
    /// The artifact-relative file holding the table a run ends with (`foldwise
    /// run` prints it for every instance of this kind it reached, when the
    /// artifact has it), or `None`.
    fn closing_table(&self) -> Option<&'static str> {
        None
    }
    /// Which section of the HTML report shows this kind's artifacts.
    fn report_role(&self) -> ReportRole {
        ReportRole::Other
    }
}

impl std::fmt::Debug for dyn Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())
    }
}

/// How a node's running time responds to threads ([`Kind::appetite`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appetite {
    /// One thread is all it uses (a split, an ensemble, a table).
    One,
    /// It asks for exactly this many (a `command`'s `threads`); more than
    /// the budget is the whole budget.
    Fixed(usize),
    /// The more threads, the sooner done (training, prediction, decoding):
    /// it takes the share of the budget the scheduler gives it.
    Scales,
}

/// What the HTML report makes of a kind's artifacts ([`Kind::report_role`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportRole {
    /// No section of its own (timings and the graph only).
    Other,
    /// Learning curves (a training).
    Training,
    /// Predictions with members: a ladder can be built over them.
    Members,
    /// An evaluation: scores, per-position accuracy, confusion, misreads.
    Evaluation,
    /// An ensemble ladder.
    Ladder,
    /// A post-processing's step table.
    PostProcessing,
}

/// A path parameter (`Ty::Path`) as a kind reads it: `p` relative to
/// `base_dir` (the pipeline file's folder) unless absolute, made absolute
/// (without touching the file system) when `base_dir` itself is relative.
pub fn resolve_path(base_dir: &Path, p: &str) -> PathBuf {
    let joined = base_dir.join(p);
    std::path::absolute(&joined).unwrap_or(joined)
}

/// A path a node needs (see [`Kind::required_paths`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RequiredPath {
    /// Dotted parameter path (`images`, `deps[0]`, `argv[0]`).
    pub param: String,
    /// Absolute.
    pub path: PathBuf,
    /// A program to run: it must be an executable file.
    pub executable: bool,
}

/// A problem found by [`Kind::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParamIssue {
    /// Dotted parameter path; the diagnostic points at its value.
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

/// An upstream artifact as seen by a running node.
#[derive(Debug, Clone)]
pub struct InputArtifact {
    /// Instance name of the upstream node (`folds`, `cnn[2]`).
    pub node: String,
    /// The upstream artifact folder (read only).
    pub dir: PathBuf,
    /// For a node following a fan-out (a k-fold split): the part file for
    /// this instance, inside `dir`.
    pub part: Option<PathBuf>,
    /// The digest that entered this node's key for this input (the
    /// artifact's, or the part file's): names derived files reliably.
    pub digest: String,
}

/// The node an instance belongs to: `cnn` for `cnn[2]`, `folds` for
/// `folds`.
pub fn node_of(instance: &str) -> &str {
    instance.split('[').next().unwrap_or(instance)
}

/// Everything a node's `run` may use.
pub struct RunCtx<'a> {
    /// Instance name (`cnn[0]`).
    pub instance: &'a str,
    /// Fold index when this instance follows a fan-out.
    pub fold: Option<usize>,
    /// Canonical parameters (defaults filled in). References are still the
    /// strings the user wrote; use `inputs` to reach their artifacts.
    pub params: &'a Value,
    /// Seed for this node (pipeline seed unless the node sets `seed`).
    pub seed: u64,
    /// Folder of the pipeline file: relative paths start there.
    pub base_dir: &'a Path,
    /// Upstream artifacts by parameter path; a gathered reference (`x[*]`)
    /// gives several.
    pub inputs: &'a BTreeMap<String, Vec<InputArtifact>>,
    /// The (empty) folder to write the artifact into.
    pub out: &'a Path,
    /// Progress reporting.
    pub progress: &'a dyn Progress,
    /// Worker threads this node was given (its share of the run's thread
    /// budget). The engine runs [`Kind::run`] inside a rayon pool of this
    /// size, so rayon work is bounded by it; anything else (a child
    /// process) should use no more.
    pub threads: usize,
    /// The working folder of a [`Kind::resumable`] kind: checkpoints
    /// written here (atomically: temporary name, then rename) survive a
    /// killed or failed run, and a later run with the same work key finds
    /// them. Never part of the artifact.
    pub work: Option<&'a Path>,
    /// A shared folder for files derived from inputs alone (a data set
    /// decoded at a size): name them by a digest of everything they depend
    /// on, write them atomically, and any node may reuse them. `gc` empties it.
    pub derived: &'a Path,
    /// Where a model trains and predicts (never part of the key).
    pub device: DeviceChoice,
}

impl RunCtx<'_> {
    /// The single input behind parameter `param`.
    pub fn input(&self, param: &str) -> Result<&InputArtifact, NodeError> {
        match self.inputs.get(param).map(|v| v.as_slice()) {
            Some([one]) => Ok(one),
            Some(_) => Err(NodeError::new(
                codes::INPUT,
                format!("parameter `{param}` must name a single node instance"),
            )),
            None => Err(NodeError::new(
                codes::INPUT,
                format!("missing input `{param}`"),
            )),
        }
    }

    /// Deserialises the canonical parameters into a kind's typed struct.
    pub fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, NodeError> {
        serde_json::from_value(self.params.clone()).map_err(|e| {
            NodeError::new(
                "foldwise::node::params",
                format!("internal: parameters do not fit: {e}"),
            )
        })
    }
}

/// Progress reporting for long nodes; the executor draws a bar per node.
///
/// A node's work comes in stages (decoding images, training, predicting),
/// each counted in images so that the rate is images per second and the
/// estimate of the time left is that stage's own from its first image.
pub trait Progress: Sync {
    /// Starts stage `name` (`decoding`, `training`, `predicting`): a fresh
    /// count from zero to `total` images, with its own rate and time left;
    /// the stage before it, if any, is over.
    fn stage(&self, name: &str, total: u64);
    /// `delta` more images of the current stage are done.
    fn inc(&self, delta: u64);
    /// A line of detail beside the count (`epoch 4/15 loss 0.312`).
    fn message(&self, msg: &str);
}

/// A progress sink that ignores everything (tests, quiet mode).
pub struct NoProgress;
impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total: u64) {}
    fn inc(&self, _delta: u64) {}
    fn message(&self, _msg: &str) {}
}
