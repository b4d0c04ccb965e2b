//! The neural models: the only module that imports the tensor crate
//! (candle 0.11; see `docs/tensor-engine.md` for why and for the pitfalls
//! pinned here). Its public API uses plain Rust types only, so the engine or
//! single hot operations can be replaced without touching the rest.
//!
//! Input: NCHW f32 images, 3 channels, `height` x `width` (default 64x128).
//! Output: per image, `heads` independent 11-way distributions (classes 0-9
//! are digits, 10 = no digit), shaped [n, heads, 11].
//!
//! Guarantees:
//! - Every random number (initial weights, dropout masks) comes from the
//!   project's [`crate::rng::Rng`]: the same seed, configuration and data give
//!   byte-identical weights and probabilities, whatever the thread count
//!   (tested with 1 and 2 candle threads in separate processes).
//! - Max pooling has a correct backward ([`pool`]); convolution, pooling,
//!   BatchNorm and the smoothed cross-entropy match independent numpy
//!   reference values (`tests/fixtures/model/reference.py`).
//! - A non-finite loss is an error ([`ModelError::NonFiniteLoss`]) and the
//!   weights are left untouched by that step.
//! - [`Model::save`] / [`Model::load`] round-trip exactly through
//!   safetensors: weights, BatchNorm running statistics, optimizer state and
//!   the configuration.
//!
//! Architectures: [`Arch::SvhnSmall`] (`svhn_small`), [`Arch::ResnetMini`]
//! (`resnet_mini`).
//!
//! Speed: convolution ([`conv`]), pooling ([`pool`]) and the elementwise
//! layers around them ([`fused`]) are the project's own CPU kernels plugged
//! into candle's autograd; candle supplies the graph, the small ops and the
//! heads' matrix products. [`configure_process`] tunes the allocator and
//! candle's own thread pool for them (docs/benchmarks.md has the figures).

pub mod alloc;
mod conv;
mod direct;
mod fused;
mod init;
mod layers;
mod op;
mod optim;
mod pool;
mod portable;
#[cfg(test)]
mod reference;
mod resnet_mini;
mod svhn_small;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{CpuStorage, DType, Shape, Tensor, Var, D};
use serde::{Deserialize, Serialize};

use layers::{Ctx, Network};
use optim::OptState;

/// Number of classes per head: digits 0-9 and 10 = no digit.
pub const CLASSES: usize = 11;
/// The class meaning "no digit at this position".
pub const BLANK: u8 = 10;

/// The architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// The brief's reference small CNN (`svhn-small`).
    SvhnSmall,
    /// A small residual CNN with width-preserving heads (`resnet-mini`).
    ResnetMini,
}

/// The optimizer, with its hyper-parameters (the learning rate is given per
/// step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adam with decoupled (AdamW) weight decay; 0 = plain Adam.
    Adam { weight_decay: f64 },
    /// SGD with momentum, optional Nesterov, L2 weight decay (as PyTorch).
    Sgd {
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    },
}

/// Everything that fixes a model's shape and training behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Number of digit positions, 4 to 6.
    pub heads: usize,
    pub height: usize,
    pub width: usize,
    /// Dropout probability in [0, 1).
    pub dropout: f32,
    pub optimizer: Optimizer,
    /// A length classifier beside the digit heads ([`Model::forward_all`]):
    /// one Linear(features, 11) whose class k means "k digits", reading the
    /// same features as the heads with the gradient stopped there, so the
    /// backbone and the digit heads train exactly as without it.
    #[serde(default)]
    pub length_head: bool,
}

impl ModelConfig {
    /// The defaults: 64x128 input, dropout 0.25, Adam without weight decay.
    pub fn new(arch: Arch, heads: usize) -> ModelConfig {
        ModelConfig {
            arch,
            heads,
            height: 64,
            width: 128,
            dropout: 0.25,
            optimizer: Optimizer::Adam { weight_decay: 0.0 },
            length_head: false,
        }
    }
}

/// What one training step measured, on the batch it trained on (before the
/// update).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Sum over heads of the batch-mean cross-entropy (with smoothing).
    pub loss: f32,
    /// Images whose every head's argmax equals its label.
    pub seq_correct: usize,
    /// (image, head) pairs whose argmax equals the label.
    pub char_correct: usize,
    /// With a length head: images whose length argmax equals the number of
    /// non-blank labels.
    pub length_correct: Option<usize>,
}

/// Where a model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Device {
    /// The project's own CPU kernels.
    Cpu,
    /// The GPU of this ordinal, through candle's CUDA backend and the
    /// portable op path.
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Device {
    /// Whether this foldwise was built with the `cuda` feature.
    pub fn cuda_built() -> bool {
        candle_core::utils::cuda_is_available()
    }

    /// Opens the device (once per process and ordinal: tensors of one
    /// model must share one CUDA context), or says why it cannot.
    fn open(self) -> Result<candle_core::Device> {
        let Device::Cuda(n) = self else {
            return Ok(candle_core::Device::Cpu);
        };
        if !Device::cuda_built() {
            return Err(ModelError::Device(format!(
                "{self} asked for, but this foldwise was built without the `cuda` feature"
            )));
        }
        static OPEN: std::sync::Mutex<Vec<(usize, candle_core::Device)>> =
            std::sync::Mutex::new(Vec::new());
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, d)) = open.iter().find(|(k, _)| *k == n) {
            return Ok(d.clone());
        }
        let d = candle_core::Device::new_cuda(n)
            .map_err(|e| ModelError::Device(format!("no CUDA GPU {n} is visible: {e}")))?;
        open.push((n, d.clone()));
        Ok(d)
    }

    /// The first GPU when this build has CUDA and one is visible, else the
    /// CPU (`device = "auto"`).
    pub fn auto() -> Device {
        if Device::cuda_built() && Device::Cuda(0).open().is_ok() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }
    }

    /// Checks that the device can be used: a no-op for the CPU; for a GPU,
    /// the build has CUDA and the GPU is visible.
    pub fn check(self) -> Result<()> {
        self.open().map(|_| ())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model configuration: {0}")]
    Config(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("the loss is not finite ({loss}); the step was not applied")]
    NonFiniteLoss { loss: f32 },
    #[error("tensor engine: {0}")]
    Engine(String),
    #[error("device: {0}")]
    Device(String),
    /// The device ran out of memory (a CUDA allocation failed).
    #[error("out of device memory: {0}")]
    OutOfMemory(String),
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: String, msg: String },
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        let msg = e.to_string();
        // cudarc reports a failed allocation as a driver or cuBLAS error
        // naming CUDA_ERROR_OUT_OF_MEMORY / CUBLAS_STATUS_ALLOC_FAILED.
        if ["OUT_OF_MEMORY", "out of memory", "ALLOC_FAILED"]
            .iter()
            .any(|m| msg.contains(m))
        {
            ModelError::OutOfMemory(msg)
        } else {
            ModelError::Engine(msg)
        }
    }
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// A model with its optimizer state.
pub struct Model {
    cfg: ModelConfig,
    device: Device,
    /// The opened [`Model::device`].
    dev: candle_core::Device,
    /// Forward passes take the portable op path (on a GPU; on the CPU in
    /// tests only).
    portable: bool,
    net: Box<dyn Network>,
    /// The length classifier when `cfg.length_head`.
    length: Option<layers::Linear>,
    opt: OptState,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("cfg", &self.cfg)
            .field("params", &self.param_count())
            .field("step", &self.opt.step)
            .finish()
    }
}

/// Detaches every gradient of `grads`. candle's backward also leaves a
/// gradient for the loss's constant inputs (the smoothed targets), computed
/// as a product with the log-probabilities; that product keeps them, and
/// through them the whole graph of the forward pass, in memory as long as
/// the gradient store lives.
fn detach_all(grads: &mut candle_core::backprop::GradStore) {
    let ids: Vec<_> = grads.get_ids().copied().collect();
    for id in ids {
        if let Some(g) = grads.get_id(id).map(Tensor::detach) {
            grads.insert_id(id, g);
        }
    }
}

/// A scalar whose backward pass hands the gradient it holds to its
/// argument, once: the root of a backward pass that starts from a gradient
/// computed elsewhere (the staged training step). Handing it over (not a
/// copy) lets candle free it as soon as it is accumulated.
struct SeedGradient(std::sync::Mutex<Option<Tensor>>);

impl SeedGradient {
    fn cpu(&self, [(_, l)]: [op::Input; 1]) -> op::Output {
        let seed = self.0.lock().expect("seed gradient");
        match &*seed {
            Some(g) if g.shape() == l.shape() => Ok((CpuStorage::F32(vec![0.0]), Shape::from(()))),
            Some(g) => candle_core::bail!(
                "seed gradient: {:?} for a tensor of {:?}",
                g.dims(),
                l.dims()
            ),
            None => candle_core::bail!("seed gradient: already handed over"),
        }
    }

    fn backward(&self, _: [&Tensor; 1], _: &Tensor, _: &Tensor) -> op::Grads<1> {
        Ok([self.0.lock().expect("seed gradient").take()])
    }
}

op::custom_op!(CustomOp1 for SeedGradient, "foldwise-seed-gradient", cpu, backward);

const TRAIN_STREAM: u64 = init::DROPOUT_STREAM;
/// The stream of the length head's initial weights (apart from the
/// network's, so adding the head leaves those unchanged).
const LENGTH_INIT_STREAM: u64 = 0x1E67;

/// Process-wide settings for fast training; call once at the start of
/// `main`, before any thread exists (it sets an environment variable).
///
/// - candle runs its large elementwise ops on a thread pool of its own whose
///   workers busy-wait between ops, beside rayon's workers that run this
///   module's kernels; on two cores the spinning takes their time (see
///   docs/benchmarks.md, section "Before and after the own kernels").
///   `CANDLE_NUM_THREADS=1` (unless the user set it) keeps those few small
///   ops on the calling thread.
/// - See [`tune_allocator`].
pub fn configure_process() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: documented precondition: no other thread exists yet.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    tune_allocator();
}

/// glibc returns freed blocks above 128 KiB-32 MiB (its dynamic mmap
/// threshold) to the OS and maps them again on the next step, so every
/// activation of every step page-faults again (see docs/benchmarks.md,
/// section "Before and after the own kernels"). Fixing the mmap threshold
/// at its maximum (32 MiB) and never trimming keeps them in the heap for
/// reuse. Blocks of 4 MiB and
/// more never reach glibc in the `foldwise` binary: the global allocator it
/// installs ([`alloc::Allocator`], declared in `src/main.rs`) maps them on
/// their own. Idempotent; called by [`Model::new`] too; a no-op on other C
/// libraries.
fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}

impl Model {
    /// A freshly initialised model on the CPU; weights drawn from `seed`.
    pub fn new(cfg: ModelConfig, seed: u64) -> Result<Model> {
        Model::new_on(cfg, seed, Device::Cpu)
    }

    /// A freshly initialised model on `device`; weights drawn from `seed`
    /// on the host, so they are the same on every device.
    pub fn new_on(cfg: ModelConfig, seed: u64, device: Device) -> Result<Model> {
        let dev = device.open()?;
        Model::build(cfg, seed, device, dev, device != Device::Cpu)
    }

    /// A model on the CPU that computes through the portable op path (the
    /// one a GPU takes), to test that path against the own kernels.
    #[cfg(test)]
    fn new_portable_cpu(cfg: ModelConfig, seed: u64) -> Result<Model> {
        Model::build(cfg, seed, Device::Cpu, candle_core::Device::Cpu, true)
    }

    fn build(
        cfg: ModelConfig,
        seed: u64,
        device: Device,
        dev: candle_core::Device,
        portable: bool,
    ) -> Result<Model> {
        tune_allocator();
        if !(4..=6).contains(&cfg.heads) {
            return Err(ModelError::Config(format!(
                "heads must be 4 to 6, not {}",
                cfg.heads
            )));
        }
        if !(0.0..1.0).contains(&cfg.dropout) {
            return Err(ModelError::Config(format!(
                "dropout must be in [0, 1), not {}",
                cfg.dropout
            )));
        }
        let (h, w) = (cfg.height, cfg.width);
        let small = match cfg.arch {
            Arch::SvhnSmall => svhn_small::feature_dims(h, w).is_none(),
            Arch::ResnetMini => resnet_mini::feature_dims(h, w).is_none(),
        };
        if small {
            return Err(ModelError::Config(format!(
                "input {h}x{w} is too small for {:?}",
                cfg.arch
            )));
        }
        let net: Box<dyn Network> = match cfg.arch {
            Arch::SvhnSmall => Box::new(svhn_small::SvhnSmall::new(
                seed,
                cfg.heads,
                (h, w),
                cfg.dropout,
                &dev,
            )?),
            Arch::ResnetMini => Box::new(resnet_mini::ResnetMini::new(
                seed,
                cfg.heads,
                (h, w),
                cfg.dropout,
                &dev,
            )?),
        };
        let length = if cfg.length_head {
            let mut rng = crate::rng::Rng::derive(seed, LENGTH_INIT_STREAM, 0);
            Some(layers::Linear::new(
                &mut rng,
                net.heads().features(),
                CLASSES,
                &dev,
            )?)
        } else {
            None
        };
        let mut model = Model {
            cfg,
            device,
            dev,
            portable,
            net,
            length,
            opt: OptState::new(Optimizer::Adam { weight_decay: 0.0 }, &[]),
        };
        let sizes: Vec<usize> = model.params().iter().map(|(_, v)| v.elem_count()).collect();
        model.opt = OptState::new(model.cfg.optimizer, &sizes);
        Ok(model)
    }

    /// Every trainable parameter: the network's, then the length head's.
    fn params(&self) -> Vec<(String, candle_core::Var)> {
        let mut p = self.net.params();
        if let Some(l) = &self.length {
            l.params("length_head", &mut p);
        }
        p
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Where the model computes.
    pub fn device(&self) -> Device {
        self.device
    }

    /// A forward pass's context in evaluation, on this model's op path.
    fn eval_ctx(&self) -> Ctx {
        Ctx::eval().portable(self.portable)
    }

    /// Number of trainable parameters (BatchNorm running statistics excluded).
    pub fn param_count(&self) -> usize {
        self.params().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Training steps taken so far (restored by [`Model::load`]).
    pub fn steps(&self) -> u64 {
        self.opt.step
    }

    fn images(&self, images: &[f32], n: usize) -> Result<Tensor> {
        let (h, w) = (self.cfg.height, self.cfg.width);
        if n == 0 || images.len() != n * 3 * h * w {
            return Err(ModelError::Input(format!(
                "{} values for {n} images of 3x{h}x{w} (want {})",
                images.len(),
                n * 3 * h * w
            )));
        }
        Ok(Tensor::from_slice(images, (n, 3, h, w), &self.dev)?)
    }

    /// Softmax probabilities [n, heads, 11] in evaluation mode (no dropout,
    /// BatchNorm running statistics), row-major.
    pub fn forward_probs(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        let x = self.images(images, n)?;
        let logits = self.net.forward(&x, &mut self.eval_ctx())?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?;
        Ok(probs.flatten_all()?.to_vec1::<f32>()?)
    }

    /// [`Model::forward_probs`] and, with a length head, its probabilities
    /// [n, 11] (class k: the code has k digits), from one forward pass.
    pub fn forward_all(&self, images: &[f32], n: usize) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let x = self.images(images, n)?;
        let feats = self.net.features(&x, &mut self.eval_ctx())?;
        let logits = self.net.heads().forward(&feats)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?;
        let length = match &self.length {
            Some(l) => Some(
                candle_nn::ops::softmax_last_dim(&l.forward(&feats)?)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            ),
            None => None,
        };
        Ok((probs.flatten_all()?.to_vec1::<f32>()?, length))
    }

    /// Whether the model has a length head.
    pub fn has_length_head(&self) -> bool {
        self.length.is_some()
    }

    /// One optimizer step on a batch. `labels` holds `n * heads` classes
    /// (10 = blank); `step_seed` seeds this step's dropout masks; the loss is
    /// the sum over heads of the batch-mean cross-entropy with label
    /// smoothing `label_smoothing` (PyTorch's definition: the target is
    /// (1 - ε)·one-hot + ε/11). A length head adds its own smoothed
    /// cross-entropy against the number of non-blank labels to the loss it
    /// minimises (not to [`StepStats::loss`]); its gradient stops at the
    /// features.
    pub fn train_step(
        &mut self,
        images: &[f32],
        labels: &[u8],
        step_seed: u64,
        lr: f64,
        label_smoothing: f32,
    ) -> Result<StepStats> {
        let ctx =
            Ctx::train(crate::rng::Rng::derive(step_seed, TRAIN_STREAM, 0)).portable(self.portable);
        self.train_step_in(ctx, images, labels, lr, label_smoothing)
    }

    /// [`Model::train_step`] with the forward pass in `ctx`.
    fn train_step_in(
        &mut self,
        mut ctx: Ctx,
        images: &[f32],
        labels: &[u8],
        lr: f64,
        label_smoothing: f32,
    ) -> Result<StepStats> {
        let heads = self.cfg.heads;
        let n = check_step(labels, heads, lr, label_smoothing)?;
        let x = self.images(images, n)?;
        // A staged network: the first stage's output is kept as a copy (a
        // leaf variable, to receive its gradient) and its graph dropped.
        let cut = match self.net.stage1(&x, &mut ctx)? {
            Some(mid) => Some(Var::from_tensor(&mid.detach())?),
            None => None,
        };
        let (mut grads, loss_v, length_correct, logits_v) = {
            let feats = match &cut {
                Some(leaf) => self.net.stage2(leaf.as_tensor(), &mut ctx)?,
                None => self.net.features(&x, &mut ctx)?,
            };
            let logits = self.net.heads().forward(&feats)?;
            let loss = smoothed_cross_entropy(&logits, labels, label_smoothing)?;
            let loss_v = loss.to_scalar::<f32>()?;
            if !loss_v.is_finite() {
                return Err(ModelError::NonFiniteLoss { loss: loss_v });
            }
            let mut length_correct = None;
            let total = match &self.length {
                Some(l) => {
                    let lengths: Vec<u8> = labels
                        .chunks(heads)
                        .map(|c| c.iter().filter(|&&x| x != BLANK).count() as u8)
                        .collect();
                    let ll = l.forward(&feats.detach())?.reshape((n, 1, CLASSES))?;
                    let lloss = smoothed_cross_entropy(&ll, &lengths, label_smoothing)?;
                    let lv = lloss.to_scalar::<f32>()?;
                    if !lv.is_finite() {
                        return Err(ModelError::NonFiniteLoss { loss: lv });
                    }
                    length_correct =
                        Some(count_correct(&ll.flatten_all()?.to_vec1::<f32>()?, &lengths, 1).0);
                    (loss + lloss)?
                }
                None => loss,
            };
            let logits_v = logits.flatten_all()?.to_vec1::<f32>()?;
            let mut grads = total.backward()?;
            detach_all(&mut grads);
            (grads, loss_v, length_correct, logits_v)
            // The second stage's graph and activations are freed here.
        };
        if let Some(leaf) = cut {
            // The first stage again (the same values; its statistics are
            // not recorded twice), then its backward pass from the gradient
            // its output received.
            let grad = grads.remove(leaf.as_tensor()).ok_or_else(|| {
                ModelError::Engine("the first stage's output got no gradient".into())
            })?;
            drop(leaf);
            let recorded = ctx.bn_stats.len();
            let again = self
                .net
                .stage1(&x, &mut ctx)?
                .ok_or_else(|| ModelError::Engine("the first stage did not run again".into()))?;
            ctx.bn_stats.truncate(recorded);
            let mut first = again
                .apply_op1(SeedGradient(std::sync::Mutex::new(Some(grad))))?
                .backward()?;
            detach_all(&mut first);
            drop(again);
            for (_, p) in self.params() {
                if let Some(g) = first.remove(p.as_tensor()) {
                    let g = match grads.remove(p.as_tensor()) {
                        Some(g0) => (g0 + g)?,
                        None => g,
                    };
                    grads.insert(p.as_tensor(), g);
                }
            }
        }
        let params = self.params();
        self.opt.step(&params, &grads, lr)?;
        let mut bns = self.net.bns_mut();
        for (i, m, v) in ctx.bn_stats {
            bns[i].update(&m, &v);
        }
        let (seq_correct, char_correct) = count_correct(&logits_v, labels, heads);
        Ok(StepStats {
            loss: loss_v,
            seq_correct,
            char_correct,
            length_correct,
        })
    }

    /// Writes weights, BatchNorm running statistics, optimizer state and the
    /// configuration as one safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let ck = |e: candle_core::Error| ModelError::Checkpoint {
            path: path.display().to_string(),
            msg: e.to_string(),
        };
        let dev = candle_core::Device::Cpu;
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, v)) in self.params().into_iter().enumerate() {
            map.insert(format!("param.{name}"), v.as_tensor().to_device(&dev)?);
            let m = &self.opt.m[i];
            map.insert(
                format!("opt.m.{name}"),
                Tensor::from_slice(m, m.len(), &dev)?,
            );
            let s = &self.opt.v[i];
            map.insert(
                format!("opt.v.{name}"),
                Tensor::from_slice(s, s.len(), &dev)?,
            );
        }
        for (i, bn) in self.net.bns().into_iter().enumerate() {
            let (m, v) = (&bn.running_mean, &bn.running_var);
            map.insert(
                format!("bn.{i}.running_mean"),
                Tensor::from_slice(m, m.len(), &dev)?,
            );
            map.insert(
                format!("bn.{i}.running_var"),
                Tensor::from_slice(v, v.len(), &dev)?,
            );
        }
        let step = [
            (self.opt.step & 0xFFFF_FFFF) as u32,
            (self.opt.step >> 32) as u32,
        ];
        map.insert("opt.step".into(), Tensor::from_slice(&step, 2, &dev)?);
        let cfg = serde_json::to_vec(&self.cfg).map_err(|e| ModelError::Checkpoint {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        map.insert(
            "config".into(),
            Tensor::from_vec(cfg.clone(), cfg.len(), &dev)?,
        );
        candle_core::safetensors::save(&map, path).map_err(ck)
    }

    /// Reads a file written by [`Model::save`], onto the CPU.
    pub fn load(path: &Path) -> Result<Model> {
        Model::load_on(path, Device::Cpu)
    }

    /// Reads a file written by [`Model::save`] (on any device), onto
    /// `device`.
    pub fn load_on(path: &Path, device: Device) -> Result<Model> {
        let bad = |msg: String| ModelError::Checkpoint {
            path: path.display().to_string(),
            msg,
        };
        let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        let get = |k: &str| map.get(k).ok_or_else(|| bad(format!("missing tensor {k}")));
        let f32s = |k: &str, len: usize| -> Result<Vec<f32>> {
            let t = get(k)?;
            if t.dtype() != DType::F32 || t.elem_count() != len {
                return Err(bad(format!(
                    "{k}: {:?} {:?}, want f32 x {len}",
                    t.dtype(),
                    t.dims()
                )));
            }
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        let cfg_bytes = get("config")?.to_dtype(DType::U8)?.to_vec1::<u8>()?;
        let cfg: ModelConfig =
            serde_json::from_slice(&cfg_bytes).map_err(|e| bad(format!("config: {e}")))?;
        let mut model = Model::new_on(cfg, 0, device)?;
        for (i, (name, v)) in model.params().into_iter().enumerate() {
            let w = f32s(&format!("param.{name}"), v.elem_count())?;
            v.set(&Tensor::from_vec(w, v.shape(), v.device())?)?;
            let m_len = model.opt.m[i].len();
            model.opt.m[i] = f32s(&format!("opt.m.{name}"), m_len)?;
            let v_len = model.opt.v[i].len();
            model.opt.v[i] = f32s(&format!("opt.v.{name}"), v_len)?;
        }
        for (i, bn) in model.net.bns_mut().into_iter().enumerate() {
            bn.running_mean = f32s(&format!("bn.{i}.running_mean"), bn.running_mean.len())?;
            bn.running_var = f32s(&format!("bn.{i}.running_var"), bn.running_var.len())?;
        }
        let step = get("opt.step")?.to_vec1::<u32>()?;
        if step.len() != 2 {
            return Err(bad("opt.step: want 2 u32".into()));
        }
        model.opt.step = step[0] as u64 | ((step[1] as u64) << 32);
        Ok(model)
    }
}

/// The number of images of a training step's `labels` (`heads` per image),
/// or why the step's arguments are invalid.
fn check_step(labels: &[u8], heads: usize, lr: f64, label_smoothing: f32) -> Result<usize> {
    let n = labels.len() / heads;
    if labels.len() != n * heads || n == 0 {
        return Err(ModelError::Input(format!(
            "{} labels for {heads} heads",
            labels.len()
        )));
    }
    if let Some(l) = labels.iter().find(|l| **l > BLANK) {
        return Err(ModelError::Input(format!("label {l} is not a class 0-10")));
    }
    if !(0.0..1.0).contains(&label_smoothing) {
        return Err(ModelError::Input(format!(
            "label smoothing {label_smoothing} is not in [0, 1)"
        )));
    }
    if !lr.is_finite() || lr < 0.0 {
        return Err(ModelError::Input(format!("learning rate {lr}")));
    }
    Ok(n)
}

/// Sum over heads of the batch-mean smoothed cross-entropy of logits
/// [n, heads, 11].
fn smoothed_cross_entropy(logits: &Tensor, labels: &[u8], eps: f32) -> candle_core::Result<Tensor> {
    let (n, heads, k) = logits.dims3()?;
    let mut q = vec![eps / k as f32; n * heads * k];
    for (i, l) in labels.iter().enumerate() {
        q[i * k + *l as usize] += 1.0 - eps;
    }
    let q = Tensor::from_vec(q, (n, heads, k), logits.device())?;
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (q * logp)?.sum_all()? * (-1.0 / n as f64)
}

/// (images with every head right, (image, head) pairs right); argmax takes
/// the first maximum.
fn count_correct(logits: &[f32], labels: &[u8], heads: usize) -> (usize, usize) {
    let mut seq = 0;
    let mut chars = 0;
    for (img, lab) in logits.chunks(heads * CLASSES).zip(labels.chunks(heads)) {
        let mut all = true;
        for (row, l) in img.chunks(CLASSES).zip(lab) {
            let mut best = 0;
            for (c, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = c;
                }
            }
            if best == *l as usize {
                chars += 1;
            } else {
                all = false;
            }
        }
        seq += all as usize;
    }
    (seq, chars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::Device;

    fn cfg(arch: Arch, heads: usize, h: usize, w: usize) -> ModelConfig {
        ModelConfig {
            height: h,
            width: w,
            ..ModelConfig::new(arch, heads)
        }
    }

    fn batch(n: usize, heads: usize, h: usize, w: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut r = Rng::new(seed);
        let x = (0..n * 3 * h * w).map(|_| r.range_f32(-1.0, 1.0)).collect();
        let y = (0..n * heads).map(|_| r.below(11) as u8).collect();
        (x, y)
    }

    /// Two models of `c` from the same seed, each taking `steps` training
    /// steps on the batch (`lr`, smoothing 0.1), the first in the context
    /// `ctx[0]` makes of a step's dropout stream, the second in `ctx[1]`'s;
    /// `check` sees both after each step.
    fn train_twins(
        c: ModelConfig,
        seed: u64,
        (x, y): (&[f32], &[u8]),
        (steps, lr): (u64, f64),
        ctx: [fn(Rng) -> Ctx; 2],
        mut check: impl FnMut(u64, [&Model; 2], [StepStats; 2]),
    ) {
        let mut m = [
            Model::new(c.clone(), seed).unwrap(),
            Model::new(c, seed).unwrap(),
        ];
        for step in 0..steps {
            let stats = [0, 1].map(|i| {
                let rng = Rng::derive(step, TRAIN_STREAM, 0);
                m[i].train_step_in(ctx[i](rng), x, y, lr, 0.1).unwrap()
            });
            check(step, [&m[0], &m[1]], stats);
        }
    }

    fn weights(m: &Model) -> Vec<u8> {
        let mut out = Vec::new();
        for (_, v) in m.net.params() {
            for x in v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
            {
                out.extend(x.to_le_bytes());
            }
        }
        for bn in m.net.bns() {
            for x in bn.running_mean.iter().chain(&bn.running_var) {
                out.extend(x.to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn smoothed_cross_entropy_matches_numpy_reference() {
        let r = reference::reference();
        for case in r["ce"].as_array().unwrap() {
            let (n, h) = (
                case["n"].as_u64().unwrap() as usize,
                case["heads"].as_u64().unwrap() as usize,
            );
            let eps = case["eps"].as_f64().unwrap() as f32;
            let labels: Vec<u8> = reference::usizes(&case["labels"])
                .iter()
                .map(|l| *l as u8)
                .collect();
            let x = candle_core::Var::from_vec(
                reference::f32s(&case["logits"]),
                (n, h, 11),
                &Device::Cpu,
            )
            .unwrap();
            let loss = smoothed_cross_entropy(x.as_tensor(), &labels, eps).unwrap();
            let want = case["loss"].as_f64().unwrap();
            let got = loss.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "loss {got} vs {want}"
            );
            let g = loss.backward().unwrap();
            reference::assert_close(g.get(&x).unwrap(), &case["grad"], "ce grad");
        }
    }

    #[test]
    fn output_shapes_for_both_archs_and_heads_4_to_6() {
        for arch in [Arch::SvhnSmall, Arch::ResnetMini] {
            for heads in 4..=6 {
                let m = Model::new(cfg(arch, heads, 64, 128), 1).unwrap();
                let (x, _) = batch(2, heads, 64, 128, 2);
                let p = m.forward_probs(&x, 2).unwrap();
                assert_eq!(p.len(), 2 * heads * CLASSES);
                for row in p.chunks(CLASSES) {
                    let s: f32 = row.iter().sum();
                    assert!((s - 1.0).abs() < 1e-5, "{s}");
                }
            }
        }
        let x = Tensor::zeros((2, 3, 64, 128), DType::F32, &Device::Cpu).unwrap();
        let m = Model::new(cfg(Arch::ResnetMini, 5, 64, 128), 1).unwrap();
        assert_eq!(
            m.net.forward(&x, &mut Ctx::eval()).unwrap().dims(),
            &[2, 5, 11]
        );
        // The width-preserving features: 128 channels x 16 columns.
        let heads_w = m
            .net
            .params()
            .into_iter()
            .find(|(n, _)| n == "heads.weight")
            .unwrap()
            .1;
        assert_eq!(heads_w.dims(), &[5 * 11, 2048]);
    }

    #[test]
    fn parameter_counts() {
        // The brief's reference model: 49,506 parameters with 6 heads at 64x128.
        assert_eq!(
            Model::new(cfg(Arch::SvhnSmall, 6, 64, 128), 0)
                .unwrap()
                .param_count(),
            49_506
        );
        // Stem 864+64; blocks 18,560 + 57,728 + 230,144; heads 6 x 22,539.
        assert_eq!(
            Model::new(cfg(Arch::ResnetMini, 6, 64, 128), 0)
                .unwrap()
                .param_count(),
            442_594
        );
    }

    #[test]
    fn rejects_bad_config_and_input() {
        assert!(matches!(
            Model::new(cfg(Arch::SvhnSmall, 3, 64, 128), 0),
            Err(ModelError::Config(_))
        ));
        assert!(matches!(
            Model::new(cfg(Arch::SvhnSmall, 4, 8, 8), 0),
            Err(ModelError::Config(_))
        ));
        let mut m = Model::new(cfg(Arch::SvhnSmall, 4, 32, 64), 0).unwrap();
        assert!(matches!(
            m.forward_probs(&[0.0; 10], 1),
            Err(ModelError::Input(_))
        ));
        let (x, mut y) = batch(2, 4, 32, 64, 0);
        y[0] = 11;
        assert!(matches!(
            m.train_step(&x, &y, 0, 0.01, 0.0),
            Err(ModelError::Input(_))
        ));
    }

    #[test]
    fn fused_evaluation_is_bit_identical_to_the_separate_layers() {
        for arch in [Arch::SvhnSmall, Arch::ResnetMini] {
            for (h, w) in [(32, 64), (37, 75)] {
                let mut m = Model::new(cfg(arch, 5, h, w), 3).unwrap();
                let (x, y) = batch(6, 5, h, w, 9);
                // A few steps, so BatchNorm's running statistics and the
                // biases are not their initial values.
                for step in 0..3 {
                    m.train_step(&x, &y, step, 1e-2, 0.0).unwrap();
                }
                let t = Tensor::from_slice(&x, (6, 3, h, w), &Device::Cpu).unwrap();
                let fused = m.net.forward(&t, &mut Ctx::eval()).unwrap();
                let plain = m.net.forward(&t, &mut Ctx::eval_unfused()).unwrap();
                let (a, b) = (
                    fused.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    plain.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                assert_eq!(a.len(), b.len());
                assert!(
                    a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{arch:?} {h}x{w}"
                );
            }
        }
    }

    /// Training with each BatchNorm folded into the layers that read it
    /// (the default) against the separate layers. Everything the stem's
    /// BatchNorm does not feed back into is the same bit for bit after the
    /// first step: the forward pass, the loss, the running statistics and
    /// every gradient but the stem's. The stem's BatchNorm output is read
    /// by block 0's first convolution and by its shortcut; fused, each
    /// reader runs that BatchNorm's backward pass on its own gradient and
    /// the two results are summed, where the separate layers sum the two
    /// gradients first and run one backward pass — the same sum in another
    /// order, so the stem's gradients (and from the second step on,
    /// everything) agree to a relative 1e-5, not bit for bit.
    #[test]
    fn fused_training_matches_the_separate_layers() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // Relative 1e-5 (absolute 1e-8 for values below 1e-3).
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len());
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * x.abs().max(y.abs()).max(1e-3),
                    "{what}[{i}]: {x} vs {y}"
                );
            }
        };
        for (h, w) in [(32, 64), (37, 75)] {
            let c = cfg(Arch::ResnetMini, 5, h, w);
            let (x, y) = batch(6, 5, h, w, 9);
            let check = |step: u64, [fused, plain]: [&Model; 2], [a, b]: [StepStats; 2]| {
                let what = format!("{h}x{w} step {step}");
                if step == 0 {
                    assert_eq!(a, b, "{what}");
                    assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{what}");
                } else {
                    close(&[a.loss], &[b.loss], &what);
                }
                for ((name, p), (_, q)) in fused.net.params().iter().zip(plain.net.params()) {
                    let (p, q) = (
                        p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                        q.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    );
                    if step == 0 && !name.starts_with("stem") {
                        assert_eq!(bits(&p), bits(&q), "{what}: {name}");
                    } else {
                        close(&p, &q, &format!("{what}: {name}"));
                    }
                }
                for (i, (p, q)) in fused.net.bns().iter().zip(plain.net.bns()).enumerate() {
                    let (p, q) = (
                        [&p.running_mean[..], &p.running_var[..]].concat(),
                        [&q.running_mean[..], &q.running_var[..]].concat(),
                    );
                    if step == 0 {
                        assert_eq!(bits(&p), bits(&q), "{what}: bn {i}");
                    } else {
                        close(&p, &q, &format!("{what}: bn {i}"));
                    }
                }
            };
            let ctx = [Ctx::train, Ctx::train_unfused];
            train_twins(c, 3, (&x, &y), (3, 1e-3), ctx, check);
        }
    }

    #[test]
    fn gradients_are_detached_from_the_graph_candle_leaves_on_them() {
        // candle's backward leaves a gradient for the constant targets of
        // the loss, computed from the log-probabilities, that keeps their
        // graph (and so every activation of the step); detach_all lets it
        // go.
        let m = Model::new(cfg(Arch::SvhnSmall, 4, 32, 64), 2).unwrap();
        let (x, y) = batch(4, 4, 32, 64, 3);
        let t = m.images(&x, 4).unwrap();
        let logits = m
            .net
            .forward(&t, &mut Ctx::train(crate::rng::Rng::new(1)))
            .unwrap();
        let loss = smoothed_cross_entropy(&logits, &y, 0.0).unwrap();
        let mut grads = loss.backward().unwrap();
        let tracked = |grads: &candle_core::backprop::GradStore| {
            let ids: Vec<_> = grads.get_ids().copied().collect();
            assert!(!ids.is_empty());
            ids.iter()
                .filter(|id| grads.get_id(**id).unwrap().track_op())
                .count()
        };
        assert!(
            tracked(&grads) > 0,
            "candle changed: no gradient keeps its graph"
        );
        detach_all(&mut grads);
        assert_eq!(tracked(&grads), 0);
    }

    #[test]
    fn staged_training_is_bit_identical_to_one_piece() {
        // The staged step recomputes resnet-mini's first stage for its
        // backward pass; the values, gradients, Adam state and running
        // statistics must not change by a bit. With a length head, whose
        // loss joins the second stage's graph.
        let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for length_head in [false, true] {
            let c = ModelConfig {
                length_head,
                ..cfg(Arch::ResnetMini, 5, 37, 75)
            };
            let (x, y) = batch(6, 5, 37, 75, 10);
            let check = |step: u64, [staged, whole]: [&Model; 2], [a, b]: [StepStats; 2]| {
                assert_eq!(a, b, "step {step}");
                assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "step {step}");
                for ((name, p), (_, q)) in staged.params().iter().zip(whole.params()) {
                    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    assert_eq!(bits(flat(p)), bits(flat(&q)), "step {step}: {name}");
                }
                for (p, q) in staged.net.bns().iter().zip(whole.net.bns()) {
                    assert_eq!(bits(p.running_mean.clone()), bits(q.running_mean.clone()));
                    assert_eq!(bits(p.running_var.clone()), bits(q.running_var.clone()));
                }
            };
            let ctx = [Ctx::train, Ctx::train_unstaged];
            train_twins(c, 4, (&x, &y), (3, 1e-2), ctx, check);
        }
    }

    #[test]
    fn a_length_head_leaves_the_digit_model_bit_identical_and_learns_lengths() {
        for arch in [Arch::SvhnSmall, Arch::ResnetMini] {
            let plain = cfg(arch, 4, 32, 64);
            let with = ModelConfig {
                length_head: true,
                ..plain.clone()
            };
            let mut a = Model::new(plain, 7).unwrap();
            let mut b = Model::new(with, 7).unwrap();
            assert!(b.has_length_head() && !a.has_length_head());
            let features = b.net.heads().features();
            assert_eq!(b.param_count(), a.param_count() + 11 * features + 11);
            let (x, y) = batch(8, 4, 32, 64, 5);
            let mut last = None;
            for step in 0..80 {
                let sa = a.train_step(&x, &y, step, 2e-3, 0.1).unwrap();
                let sb = b.train_step(&x, &y, step, 2e-3, 0.1).unwrap();
                assert_eq!(sa.loss.to_bits(), sb.loss.to_bits(), "{arch:?} step {step}");
                assert_eq!(sa.length_correct, None);
                last = sb.length_correct;
            }
            assert_eq!(weights(&a), weights(&b), "{arch:?}: digit weights differ");
            let (pa, la) = a.forward_all(&x, 8).unwrap();
            let (pb, lb) = b.forward_all(&x, 8).unwrap();
            assert_eq!(pa, pb);
            assert_eq!(pa, b.forward_probs(&x, 8).unwrap());
            assert!(la.is_none());
            let lb = lb.unwrap();
            assert_eq!(lb.len(), 8 * CLASSES);
            for row in lb.chunks(CLASSES) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            }
            // It fits the lengths of this one batch.
            assert_eq!(last, Some(8), "{arch:?}");
            // Saved and loaded with its head.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.safetensors");
            b.save(&path).unwrap();
            let c = Model::load(&path).unwrap();
            assert!(c.has_length_head());
            assert_eq!(c.forward_all(&x, 8).unwrap(), (pb, Some(lb)));
        }
    }

    fn overfits(arch: Arch) {
        let c = ModelConfig {
            dropout: 0.0,
            ..cfg(arch, 4, 32, 64)
        };
        let mut m = Model::new(c, 11).unwrap();
        let (x, y) = batch(8, 4, 32, 64, 12);
        let first = m.train_step(&x, &y, 0, 3e-3, 0.0).unwrap();
        let mut last = first;
        for step in 1..100 {
            last = m.train_step(&x, &y, step, 3e-3, 0.0).unwrap();
            if last.loss < 0.1 * first.loss {
                break;
            }
        }
        assert!(
            last.loss < 0.1 * first.loss,
            "{arch:?}: {} → {}",
            first.loss,
            last.loss
        );
        assert!(last.char_correct >= 30, "{last:?}");
    }

    #[test]
    fn svhn_small_overfits_one_batch() {
        overfits(Arch::SvhnSmall);
    }

    #[test]
    fn resnet_mini_overfits_one_batch() {
        overfits(Arch::ResnetMini);
    }

    fn trained(arch: Arch, seed: u64, opt: Optimizer) -> Model {
        let c = ModelConfig {
            optimizer: opt,
            ..cfg(arch, 5, 32, 64)
        };
        let mut m = Model::new(c, seed).unwrap();
        let (x, y) = batch(4, 5, 32, 64, 3);
        for step in 0..3 {
            m.train_step(&x, &y, step, 1e-3, 0.1).unwrap();
        }
        m
    }

    #[test]
    fn same_seed_gives_identical_weights_another_seed_differs() {
        let sgd = Optimizer::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
        };
        for (arch, opt) in [
            (Arch::SvhnSmall, sgd),
            (Arch::ResnetMini, Optimizer::Adam { weight_decay: 0.0 }),
        ] {
            let a = weights(&trained(arch, 7, opt));
            assert_eq!(a, weights(&trained(arch, 7, opt)), "{arch:?}");
            assert_ne!(a, weights(&trained(arch, 8, opt)), "{arch:?}");
        }
    }

    #[test]
    fn safetensors_round_trip_is_exact_and_resumes_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut a = trained(Arch::ResnetMini, 4, Optimizer::Adam { weight_decay: 0.01 });
        a.save(&path).unwrap();
        let mut b = Model::load(&path).unwrap();
        assert_eq!(b.config(), a.config());
        assert_eq!(b.steps(), 3);
        assert_eq!(weights(&a), weights(&b));
        let (x, y) = batch(3, 5, 32, 64, 9);
        assert_eq!(
            a.forward_probs(&x, 3).unwrap(),
            b.forward_probs(&x, 3).unwrap()
        );
        // The optimizer state came along: one more step stays identical.
        a.train_step(&x, &y, 5, 1e-3, 0.0).unwrap();
        b.train_step(&x, &y, 5, 1e-3, 0.0).unwrap();
        assert_eq!(weights(&a), weights(&b));
        std::fs::write(&path, b"not a checkpoint").unwrap();
        assert!(matches!(
            Model::load(&path),
            Err(ModelError::Checkpoint { .. })
        ));
    }

    #[test]
    fn huge_learning_rate_gives_a_non_finite_loss_error() {
        let mut m = Model::new(cfg(Arch::SvhnSmall, 4, 32, 64), 0).unwrap();
        let (x, y) = batch(4, 4, 32, 64, 1);
        let sgd = Optimizer::Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        };
        m.opt = OptState::new(sgd, &m.opt.m.iter().map(Vec::len).collect::<Vec<_>>());
        let mut err = None;
        for step in 0..5 {
            if let Err(e) = m.train_step(&x, &y, step, 1e30, 0.0) {
                err = Some(e);
                break;
            }
        }
        assert!(
            matches!(err, Some(ModelError::NonFiniteLoss { .. })),
            "{err:?}"
        );
    }

    /// Digest of a short training run: in a child process (see below) when
    /// `FOLDWISE_MODEL_DIGEST_CHILD` is set; does nothing otherwise.
    #[test]
    fn determinism_child() {
        if std::env::var_os("FOLDWISE_MODEL_DIGEST_CHILD").is_none() {
            return;
        }
        let m = trained(Arch::ResnetMini, 21, Optimizer::Adam { weight_decay: 0.0 });
        let (x, _) = batch(4, 5, 32, 64, 22);
        let mut bytes = weights(&m);
        for p in m.forward_probs(&x, 4).unwrap() {
            bytes.extend(p.to_le_bytes());
        }
        let s = trained(Arch::SvhnSmall, 21, Optimizer::Adam { weight_decay: 0.0 });
        bytes.extend(weights(&s));
        println!("\nDIGEST={}", blake3::hash(&bytes).to_hex());
    }

    /// candle reads its CPU thread count from `RAYON_NUM_THREADS` on every
    /// matmul (process-wide, so it cannot vary between threads of one test
    /// process): run the same training in child processes with 1 and 2
    /// threads and compare digests.
    #[test]
    fn identical_with_one_or_two_threads() {
        let digest = |threads: &str| {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "model::tests::determinism_child",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("FOLDWISE_MODEL_DIGEST_CHILD", "1")
                .env("RAYON_NUM_THREADS", threads)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines()
                .find_map(|l| l.strip_prefix("DIGEST=").map(str::to_string))
                .unwrap_or_else(|| panic!("no digest in {text}"))
        };
        assert_eq!(digest("1"), digest("2"));
    }

    /// The largest |a - b| / max(|b|max, floor) over two value lists, where
    /// |b|max is the largest magnitude in `b`: differences measured against
    /// the tensor's own scale, so near-zero entries do not dominate.
    fn scaled_diff(a: &[f32], b: &[f32], floor: f32) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(floor, |m, x| m.max(x.abs()));
        a.iter()
            .zip(b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
    }

    /// Every parameter's gradient of the smoothed cross-entropy on one
    /// batch, through `m`'s op path, with the dropout masks of `seed`.
    fn gradients(m: &Model, x: &[f32], y: &[u8], seed: u64) -> Vec<(String, Vec<f32>)> {
        let n = y.len() / m.cfg.heads;
        let t = m.images(x, n).unwrap();
        let mut ctx = Ctx::train(Rng::new(seed)).portable(m.portable);
        let logits = m.net.forward(&t, &mut ctx).unwrap();
        let loss = smoothed_cross_entropy(&logits, y, 0.1).unwrap();
        let g = loss.backward().unwrap();
        m.params()
            .into_iter()
            .map(|(name, v)| {
                let d = g.get(v.as_tensor()).unwrap();
                (name, d.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            })
            .collect()
    }

    /// The portable op path (what a GPU runs) against the own kernels, on
    /// the CPU, for both architectures on an even and an odd input size
    /// (37x75 leaves different remainders under stride 2 in height and
    /// width, which candle's own conv2d backward gets wrong): evaluation
    /// probabilities agree to 1e-5 absolute; every parameter's gradient (from
    /// the same weights) to 1e-5 of the largest magnitude in that gradient
    /// (2.8e-6 at most when measured); the batch statistics to 1e-4
    /// relative.
    #[test]
    fn portable_path_matches_the_own_kernels() {
        for arch in [Arch::SvhnSmall, Arch::ResnetMini] {
            for (h, w) in [(32, 64), (37, 75)] {
                let what = format!("{arch:?} {h}x{w}");
                let c = cfg(arch, 5, h, w);
                let mut own = Model::new(c.clone(), 3).unwrap();
                let mut port = Model::new_portable_cpu(c, 3).unwrap();
                let (x, y) = batch(6, 5, h, w, 9);
                // Gradients from the same (initial) weights: a training step
                // makes the weights differ in the last bits, and Adam
                // divides by each gradient's own scale.
                let (ga, gb) = (gradients(&own, &x, &y, 8), gradients(&port, &x, &y, 8));
                assert_eq!(ga.len(), gb.len());
                for ((name, a), (_, b)) in ga.iter().zip(&gb) {
                    let d = scaled_diff(b, a, 1e-12);
                    assert!(d <= 1e-5, "{what}: gradient of {name} off by {d}");
                }
                // One step each, so BatchNorm's running statistics differ
                // from their initial values before evaluation.
                let a = own.train_step(&x, &y, 5, 1e-3, 0.1).unwrap();
                let b = port.train_step(&x, &y, 5, 1e-3, 0.1).unwrap();
                assert!(
                    (a.loss - b.loss).abs() <= 1e-5 * a.loss.abs(),
                    "{what}: loss {} vs {}",
                    a.loss,
                    b.loss
                );
                for (bo, bp) in own.net.bns().iter().zip(port.net.bns()) {
                    let d = scaled_diff(&bp.running_var, &bo.running_var, 1e-6).max(scaled_diff(
                        &bp.running_mean,
                        &bo.running_mean,
                        1e-6,
                    ));
                    assert!(
                        d <= 1e-4,
                        "{what}: BatchNorm {} statistics off by {d}",
                        bo.index
                    );
                }
                let (pa, pb) = (
                    own.forward_probs(&x, 6).unwrap(),
                    port.forward_probs(&x, 6).unwrap(),
                );
                let d = pa
                    .iter()
                    .zip(&pb)
                    .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(d <= 1e-5, "{what}: probabilities differ by {d}");
            }
        }
    }

    /// Ten training steps of both architectures on each path, from the same
    /// weights: the losses stay within 1e-3 relative and the final
    /// probabilities within 1e-3 absolute (Adam divides by the gradient's
    /// own scale, so the paths' last-bit differences grow a little each
    /// step, and no further).
    #[test]
    fn portable_training_follows_the_own_kernels() {
        for arch in [Arch::SvhnSmall, Arch::ResnetMini] {
            let c = cfg(arch, 4, 32, 64);
            let mut own = Model::new(c.clone(), 21).unwrap();
            let mut port = Model::new_portable_cpu(c, 21).unwrap();
            let (x, y) = batch(8, 4, 32, 64, 22);
            for step in 0..10 {
                let a = own.train_step(&x, &y, step, 2e-3, 0.1).unwrap();
                let b = port.train_step(&x, &y, step, 2e-3, 0.1).unwrap();
                assert!(
                    (a.loss - b.loss).abs() <= 1e-3 * a.loss.abs(),
                    "{arch:?} step {step}: loss {} vs {}",
                    a.loss,
                    b.loss
                );
            }
            let (pa, pb) = (
                own.forward_probs(&x, 8).unwrap(),
                port.forward_probs(&x, 8).unwrap(),
            );
            let d = pa
                .iter()
                .zip(&pb)
                .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                d <= 1e-3,
                "{arch:?}: probabilities differ by {d} after 10 steps"
            );
        }
    }

    /// Max pooling on the portable path sends a window's gradient to its
    /// first maximum only, with ties (a ReLU's zeros) and odd sizes, as the
    /// own kernel does; overlapping windows (kernel 3, stride 2) too.
    #[test]
    fn portable_max_pool_matches_the_own_kernel_with_ties() {
        let mut r = Rng::new(4);
        for (k, s, h, w) in [(2, 2, 7, 9), (3, 2, 8, 11), (2, 1, 5, 6)] {
            // Values from a small set, so most windows hold ties.
            let v: Vec<f32> = (0..2 * 3 * h * w)
                .map(|_| r.below(3) as f32 - 1.0)
                .collect();
            let run = |portable: bool| {
                let x = Var::from_vec(v.clone(), (2, 3, h, w), &Device::Cpu).unwrap();
                let y = if portable {
                    portable::max_pool(x.as_tensor(), k, s).unwrap()
                } else {
                    pool::max_pool(x.as_tensor(), k, s).unwrap()
                };
                let dy: Vec<f32> = (0..y.elem_count()).map(|i| 1.0 + i as f32).collect();
                let dy = Tensor::from_vec(dy, y.shape(), &Device::Cpu).unwrap();
                let g = (&y * dy).unwrap().sum_all().unwrap().backward().unwrap();
                let vals = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (vals(&y), vals(g.get(&x).unwrap()))
            };
            assert_eq!(run(true), run(false), "k {k} s {s} {h}x{w}");
        }
    }

    #[test]
    fn out_of_memory_is_told_apart_from_other_engine_errors() {
        let oom = candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
        );
        assert!(matches!(ModelError::from(oom), ModelError::OutOfMemory(_)));
        let cublas = candle_core::Error::Msg("CublasError(CUBLAS_STATUS_ALLOC_FAILED)".into());
        assert!(matches!(
            ModelError::from(cublas),
            ModelError::OutOfMemory(_)
        ));
        let other = candle_core::Error::Msg("shape mismatch".into());
        assert!(matches!(ModelError::from(other), ModelError::Engine(_)));
    }

    #[test]
    fn a_cuda_device_on_a_cpu_build_names_the_feature() {
        if crate::model::Device::cuda_built() {
            return;
        }
        let err = Model::new_on(
            cfg(Arch::SvhnSmall, 4, 32, 64),
            0,
            crate::model::Device::Cuda(0),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "device: cuda:0 asked for, but this foldwise was built without the `cuda` feature"
        );
        assert_eq!(crate::model::Device::auto(), crate::model::Device::Cpu);
    }
}
