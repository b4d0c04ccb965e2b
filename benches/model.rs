//! Model throughput and peak memory of foldwise's CNNs, next to the same
//! architectures in PyTorch, in one invocation.
//!
//!     cargo bench --bench model
//!     cargo bench --bench model -- --models resnet-mini --batches 64 --threads 2
//!     cargo bench --bench model --features cuda -- --device cuda --batches 128,256
//!
//! Per configuration (model × batch; 5 heads, 3x64x128 input, dropout 0.25,
//! Adam lr 1e-3), in its own child process (this binary re-executed with
//! `--child`), through the public API [`foldwise::model`] only:
//! - train: images/s of [`Model::train_step`] (forward, loss, backward, Adam
//!   step); one warm-up step, then at least `steps` timed steps and
//!   `seconds` seconds; batch / the median step time (robust to other
//!   processes on a shared machine; the mean is in the child's JSON too);
//! - infer: images/s of [`Model::forward_probs`], measured the same way;
//! - peak RSS: the child's maximum resident set (`wait4`).
//!
//! The child runs inside a rayon pool of `threads` threads (as the `train`
//! node does) with `RAYON_NUM_THREADS` set to the same number.
//!
//! PyTorch: `benches/torch_models.py` runs the same architectures and
//! measurements (one child process per configuration, JSON lines on stdout),
//! interleaved with foldwise's configurations. The Python used is
//! `FOLDWISE_TORCH_PYTHON`, else `.venv-torch/bin/python` under the
//! repository, else `python3` if it can `import torch`. Setup:
//! `python3 -m venv .venv-torch && .venv-torch/bin/pip install torch numpy`.
//!
//! On a GPU (`--device cuda`, a bench binary built with `--features cuda`)
//! the model and its optimizer state live on the GPU, and PyTorch runs there
//! too (eager, fp32, data on the GPU). `train_step` and `forward_probs` take
//! host batches and return host values, so each timed call ends synchronised
//! with the GPU and includes the batch's upload; PyTorch's calls end with
//! `torch.cuda.synchronize()` and its batch stays on the GPU.
//!
//! Options (arguments win over the environment):
//!
//! | argument | environment | default |
//! |---|---|---|
//! | `--models a,b` | `FOLDWISE_BENCH_MODELS` | `svhn-small,resnet-mini` |
//! | `--batches 32,64` | `FOLDWISE_BENCH_BATCHES` | `32,64` |
//! | `--threads N` | `FOLDWISE_BENCH_THREADS` | `2` |
//! | `--steps N` (minimum timed steps) | `FOLDWISE_BENCH_STEPS` | `3` |
//! | `--seconds S` (minimum timed seconds) | `FOLDWISE_BENCH_SECONDS` | `2` |
//! | `--no-torch` | `FOLDWISE_BENCH_NO_TORCH=1` | PyTorch when found |
//! | `--device cpu\|cuda\|cuda:N` | `FOLDWISE_BENCH_DEVICE` | `cpu` |
//! | `--json PATH` | `FOLDWISE_BENCH_JSON` | none |
//!
//! `--json PATH` writes one JSON object per configuration to PATH (a line
//! each, written as the configuration finishes, so a run stopped early keeps
//! what it measured): `device`, `model`, `batch`, `threads`, `foldwise` (the
//! child's measurements plus `peak_rss_kib`, or `null`), `foldwise_error`,
//! `torch` (the line of `benches/torch_models.py`, or `null`),
//! `torch_error`, `train_ratio`, `infer_ratio`, `memory_ratio` (CPU only),
//! `train_goal`, `infer_goal`, `memory_goal` (`null` on a GPU).
//!
//! Goals reported against, on the CPU: train ≥ 0.5x PyTorch's images/s,
//! inference ≥ 1.0x, peak memory ≤ 0.25x PyTorch's. On a GPU: train ≥ 0.8x
//! PyTorch CUDA's (eager, fp32), inference ≥ 1.0x; no memory goal (the peak
//! RSS is printed; PyTorch's peak GPU memory, `max_memory_allocated`, too;
//! foldwise's GPU memory is not measured).
//!
//! `benches/torch_models.py` is found under the checkout this binary was
//! built from, else under the current directory (a binary carried to another
//! machine and run from a checkout there); `FOLDWISE_TORCH_SCRIPT` names it
//! outright. A configuration whose foldwise child fails is a `failed` row;
//! the bench then exits with status 1 after the table.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use foldwise::kind::DeviceChoice;
use foldwise::model::{Arch, Device, Model, ModelConfig};
use foldwise::rng::Rng;
use serde_json::{json, Value};

/// The allocator the foldwise binary installs (`src/main.rs`), so that the
/// peak memory measured here is the binary's.
#[global_allocator]
static GLOBAL: foldwise::model::alloc::Allocator = foldwise::model::alloc::Allocator;

const HEADS: usize = 5;
const SETUP: &str = "python3 -m venv .venv-torch && .venv-torch/bin/pip install torch numpy";

/// The goals on the CPU.
const TRAIN_GOAL: f64 = 0.5;
const INFER_GOAL: f64 = 1.0;
const MEMORY_GOAL: f64 = 0.25;
/// The goals on a GPU, against PyTorch CUDA (eager, fp32); no memory goal.
const GPU_TRAIN_GOAL: f64 = 0.8;
const GPU_INFER_GOAL: f64 = 1.0;

#[derive(Debug, Clone)]
struct Opts {
    models: Vec<String>,
    batches: Vec<usize>,
    threads: usize,
    steps: usize,
    seconds: f64,
    torch: bool,
    device: Device,
    json: Option<PathBuf>,
}

/// The goals on a device: ratios to PyTorch's figures.
#[derive(Debug, Clone, Copy)]
struct Goals {
    /// Train images/s at least this times PyTorch's.
    train: f64,
    /// Inference images/s at least this times PyTorch's.
    infer: f64,
    /// Peak RSS at most this times PyTorch's (the CPU only).
    memory: Option<f64>,
}

impl Goals {
    fn on(device: Device) -> Goals {
        match device {
            Device::Cpu => Goals {
                train: TRAIN_GOAL,
                infer: INFER_GOAL,
                memory: Some(MEMORY_GOAL),
            },
            Device::Cuda(_) => Goals {
                train: GPU_TRAIN_GOAL,
                infer: GPU_INFER_GOAL,
                memory: None,
            },
        }
    }
}

/// One configuration's measurements.
#[derive(Debug, Clone)]
struct Measured {
    train_ips: f64,
    infer_ips: f64,
    peak_kib: i64,
    /// PyTorch on a GPU: its `torch.cuda.max_memory_allocated`, MiB.
    peak_gpu_mib: Option<f64>,
    /// The JSON line it was read from (foldwise's with `peak_rss_kib`).
    raw: Value,
}

/// One configuration's row.
struct Row {
    model: String,
    batch: usize,
    /// foldwise's figures, or why the child failed.
    ours: Result<Measured, String>,
    theirs: Option<Measured>,
    /// Why PyTorch has no figures (not available, or its run failed).
    torch_error: Option<String>,
}

impl Row {
    /// foldwise / PyTorch: train, inference, peak RSS.
    fn ratios(&self) -> Option<[f64; 3]> {
        let (Ok(ours), Some(t)) = (&self.ours, &self.theirs) else {
            return None;
        };
        Some([
            ours.train_ips / t.train_ips,
            ours.infer_ips / t.infer_ips,
            ours.peak_kib as f64 / t.peak_kib as f64,
        ])
    }

    /// The row as one JSON object (`--json`).
    fn json(&self, o: &Opts, goals: Goals) -> Value {
        let r = self.ratios();
        json!({
            "device": o.device.to_string(),
            "model": self.model,
            "batch": self.batch,
            "threads": o.threads,
            "foldwise": self.ours.as_ref().ok().map(|m| &m.raw),
            "foldwise_error": self.ours.as_ref().err(),
            "torch": self.theirs.as_ref().map(|m| &m.raw),
            "torch_error": self.torch_error,
            "train_ratio": r.map(|r| r[0]),
            "infer_ratio": r.map(|r| r[1]),
            "memory_ratio": r.filter(|_| goals.memory.is_some()).map(|r| r[2]),
            "train_goal": goals.train,
            "infer_goal": goals.infer,
            "memory_goal": goals.memory,
        })
    }
}

fn main() {
    // As the foldwise binary does first thing.
    foldwise::model::configure_process();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    let o = opts(&args);
    let goals = Goals::on(o.device);
    if o.device != Device::Cpu && !Device::cuda_built() {
        usage(&format!(
            "--device {}: this bench was built without the `cuda` feature \
             (cargo bench --bench model --features cuda)",
            o.device
        ));
    }
    let torch = if o.torch {
        find_torch()
    } else {
        Err("skipped (--no-torch)".into())
    };
    let script = torch_script();
    let mut json_out = o.json.as_ref().map(|p| {
        std::fs::File::create(p).unwrap_or_else(|e| usage(&format!("--json {}: {e}", p.display())))
    });
    let mut torch_version = None;
    let mut gpu_name = None;
    let load_start = load_average();
    let on = match o.device {
        Device::Cpu => String::new(),
        d => format!(" on {d}"),
    };

    let mut rows = Vec::new();
    for model in &o.models {
        for &batch in &o.batches {
            eprintln!("foldwise {model} batch {batch}{on} ...");
            let ours = run_ours(&o, model, batch);
            if let Err(e) = &ours {
                eprintln!("foldwise {model} batch {batch}{on}: {e}");
            }
            let (theirs, torch_error) = match &torch {
                Ok(py) => {
                    eprintln!("PyTorch  {model} batch {batch}{on} ...");
                    match run_torch(py, &script, &o, model, batch) {
                        Ok(m) => {
                            let text = |k: &str| m.raw[k].as_str().map(str::to_string);
                            torch_version = torch_version.take().or(text("torch"));
                            gpu_name = gpu_name.take().or(text("gpu"));
                            (Some(m), None)
                        }
                        Err(e) => {
                            eprintln!("PyTorch {model} batch {batch}: {e}");
                            (None, Some(e))
                        }
                    }
                }
                Err(why) => (None, Some(why.clone())),
            };
            let row = Row {
                model: model.clone(),
                batch,
                ours,
                theirs,
                torch_error,
            };
            if let (Some(f), Some(p)) = (&mut json_out, &o.json) {
                writeln!(f, "{}", row.json(&o, goals))
                    .and_then(|()| f.flush())
                    .unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
            }
            rows.push(row);
        }
    }

    let gpu = o.device != Device::Cpu;
    match (&gpu_name, gpu) {
        (Some(name), true) => println!("\ndevice: {} ({name})", o.device),
        _ => println!("\ndevice: {}", o.device),
    }
    if gpu {
        println!(
            "{} thread(s), {HEADS} heads, 3x64x128; images/s; peak RSS of the configuration's \
             process; PyTorch's peak GPU memory (torch.cuda.max_memory_allocated)",
            o.threads
        );
    } else {
        println!(
            "{} thread(s), {HEADS} heads, 3x64x128; images/s; peak RSS of the configuration's process",
            o.threads
        );
    }
    if let (Some(a), Some(b)) = (load_start, load_average()) {
        println!("load average (1 min) at the start / end: {a} / {b}");
    }
    match (&torch, &torch_version) {
        (Ok(py), Some(v)) => println!("PyTorch {v} ({})", py.display()),
        (Ok(py), None) => println!("PyTorch: {} gave no results", py.display()),
        (Err(why), _) => println!("PyTorch: {why}"),
    }
    println!();
    if gpu {
        println!(
            "| model | batch | foldwise train | PyTorch train | ratio | foldwise infer | PyTorch infer | ratio | foldwise peak RSS | PyTorch peak RSS | foldwise peak GPU memory | PyTorch peak GPU memory |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    } else {
        println!(
            "| model | batch | foldwise train | PyTorch train | ratio | foldwise infer | PyTorch infer | ratio | foldwise peak RSS | PyTorch peak RSS | ratio |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
    }
    let mut met = [(0, 0); 3];
    for row in &rows {
        let ours = row.ours.as_ref().ok();
        let t = row.theirs.as_ref();
        let ratios = row.ratios();
        if let Some(r) = ratios {
            let checks = [
                Some(r[0] >= goals.train),
                Some(r[1] >= goals.infer),
                goals.memory.map(|g| r[2] <= g),
            ];
            for (i, ok) in checks.into_iter().enumerate() {
                if let Some(ok) = ok {
                    met[i].0 += ok as usize;
                    met[i].1 += 1;
                }
            }
        }
        let ratio = |i: usize| ratios.map_or("–".into(), |r| format!("{:.2}x", r[i]));
        let ips = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
        let mb =
            |v: Option<i64>| v.map_or("–".into(), |v| format!("{:.0} MB", v as f64 / 1024.0));
        let fw = |s: String| if ours.is_some() { s } else { "failed".into() };
        let cells = [
            fw(ips(ours.map(|m| m.train_ips))),
            ips(t.map(|t| t.train_ips)),
            ratio(0),
            fw(ips(ours.map(|m| m.infer_ips))),
            ips(t.map(|t| t.infer_ips)),
            ratio(1),
            fw(mb(ours.map(|m| m.peak_kib))),
            mb(t.map(|t| t.peak_kib)),
        ];
        let last = if gpu {
            let gpu_mib = t
                .and_then(|t| t.peak_gpu_mib)
                .map_or("–".into(), |v| format!("{v:.0} MiB"));
            format!("not measured | {gpu_mib}")
        } else {
            ratio(2)
        };
        println!(
            "| `{}` | {} | {} | {last} |",
            row.model,
            row.batch,
            cells.join(" | ")
        );
    }
    println!();
    let any_torch = rows.iter().any(|r| r.theirs.is_some());
    let goal = |name: &str, (ok, of): (usize, usize)| {
        if of == 0 && !any_torch {
            println!("- {name}: no PyTorch figures to compare");
        } else if of == 0 {
            println!("- {name}: no configuration has figures of both");
        } else {
            println!("- {name}: met in {ok} of {of} configurations");
        }
    };
    println!("Goals:");
    goal(&format!("train ≥ {}x PyTorch", goals.train), met[0]);
    goal(&format!("inference ≥ {}x PyTorch", goals.infer), met[1]);
    match goals.memory {
        Some(g) => goal(&format!("peak memory ≤ {g}x PyTorch's"), met[2]),
        None => println!("- peak memory: no goal on a GPU (foldwise's GPU memory is not measured)"),
    }
    let failed = rows.iter().filter(|r| r.ours.is_err()).count();
    if failed > 0 {
        eprintln!(
            "{failed} of {} foldwise configuration(s) failed",
            rows.len()
        );
        std::process::exit(1);
    }
}

fn opts(args: &[String]) -> Opts {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut models = env("FOLDWISE_BENCH_MODELS").unwrap_or("svhn-small,resnet-mini".into());
    let mut batches = env("FOLDWISE_BENCH_BATCHES").unwrap_or("32,64".into());
    let mut threads = env("FOLDWISE_BENCH_THREADS").unwrap_or("2".into());
    let mut steps = env("FOLDWISE_BENCH_STEPS").unwrap_or("3".into());
    let mut seconds = env("FOLDWISE_BENCH_SECONDS").unwrap_or("2".into());
    let mut torch = env("FOLDWISE_BENCH_NO_TORCH").is_none_or(|v| v == "0");
    let mut device = env("FOLDWISE_BENCH_DEVICE").unwrap_or("cpu".into());
    let mut json = env("FOLDWISE_BENCH_JSON");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
                .clone()
        };
        match a.as_str() {
            "--models" => models = value(),
            "--batches" => batches = value(),
            "--threads" => threads = value(),
            "--steps" => steps = value(),
            "--seconds" => seconds = value(),
            "--no-torch" => torch = false,
            "--device" => device = value(),
            "--json" => json = Some(value()),
            "--bench" => {} // passed by `cargo bench`
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let num = |name: &str, v: &str| -> usize {
        v.trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| usage(&format!("{name}: {v:?} is not a positive integer")))
    };
    let models: Vec<String> = models.split(',').map(|m| m.trim().to_string()).collect();
    for m in &models {
        arch(m);
    }
    Opts {
        models,
        batches: batches.split(',').map(|b| num("batches", b)).collect(),
        threads: num("threads", &threads),
        steps: num("steps", &steps),
        seconds: seconds
            .trim()
            .parse()
            .ok()
            .filter(|s: &f64| *s >= 0.0)
            .unwrap_or_else(|| usage(&format!("seconds: {seconds:?}"))),
        torch,
        device: device_arg(&device),
        json: json.map(PathBuf::from),
    }
}

/// `cpu`, `cuda` (the first GPU) or `cuda:N`.
fn device_arg(s: &str) -> Device {
    match DeviceChoice::parse(s.trim()) {
        Some(DeviceChoice::Cpu) => Device::Cpu,
        Some(DeviceChoice::Cuda(n)) => Device::Cuda(n.unwrap_or(0) as usize),
        _ => usage(&format!("device: {s:?} is not cpu, cuda or cuda:N")),
    }
}

/// The 1-minute load average (Linux), to tell a quiet machine from a busy one.
fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next().map(str::to_string)
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "{msg}\nusage: cargo bench --bench model -- [--models svhn-small,resnet-mini] \
         [--batches 32,64] [--threads 2] [--steps 3] [--seconds 2] [--no-torch] \
         [--device cpu|cuda|cuda:N] [--json PATH]"
    );
    std::process::exit(2)
}

fn arch(name: &str) -> Arch {
    match name {
        "svhn-small" => Arch::SvhnSmall,
        "resnet-mini" => Arch::ResnetMini,
        other => usage(&format!(
            "unknown model {other:?} (svhn-small, resnet-mini)"
        )),
    }
}

/// Runs one configuration in a child process; its JSON line plus its peak
/// RSS, or why it failed.
fn run_ours(o: &Opts, model: &str, batch: usize) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["--child", model])
        .arg(batch.to_string())
        .arg(o.threads.to_string())
        .arg(o.steps.to_string())
        .arg(o.seconds.to_string())
        .arg(o.device.to_string())
        .env("RAYON_NUM_THREADS", o.threads.to_string());
    let (status, out, peak) = spawn_wait4(cmd)?;
    let v = last_json(&out);
    if let Err(how) = status {
        let why = v
            .as_ref()
            .and_then(|v| v["error"].as_str().map(str::to_string));
        return Err(why.unwrap_or(format!("the child failed ({how})")));
    }
    let mut v = v.ok_or("the child printed no JSON line")?;
    let f = |k: &str| v[k].as_f64().ok_or(format!("no {k} in the child's {v}"));
    let (train_ips, infer_ips) = (f("train_ips")?, f("infer_ips")?);
    v["peak_rss_kib"] = peak.into();
    Ok(Measured {
        train_ips,
        infer_ips,
        peak_kib: peak,
        peak_gpu_mib: None,
        raw: v,
    })
}

/// Runs `benches/torch_models.py` for one configuration (it runs its own
/// child and reports that child's peak RSS).
fn run_torch(
    py: &Path,
    script: &Path,
    o: &Opts,
    model: &str,
    batch: usize,
) -> Result<Measured, String> {
    let out = Command::new(py)
        .arg(script)
        .args(["--models", model, "--batches", &batch.to_string()])
        .args(["--threads", &o.threads.to_string()])
        .args(["--heads", &HEADS.to_string()])
        .args(["--steps", &o.steps.to_string()])
        .args(["--seconds", &o.seconds.to_string()])
        .args(["--device", &o.device.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!("{} exited with {}", script.display(), out.status));
    }
    let v = last_json(&String::from_utf8_lossy(&out.stdout)).ok_or("no JSON line")?;
    let f = |k: &str| v[k].as_f64().ok_or(format!("no {k} in {v}"));
    Ok(Measured {
        train_ips: f("train_ips")?,
        infer_ips: f("infer_ips")?,
        peak_kib: f("peak_rss_kib")? as i64,
        peak_gpu_mib: v["peak_gpu_mib"].as_f64(),
        raw: v,
    })
}

/// `FOLDWISE_TORCH_SCRIPT`, else `benches/torch_models.py` of the checkout
/// this binary was built from, else of the current directory.
fn torch_script() -> PathBuf {
    if let Some(p) = std::env::var_os("FOLDWISE_TORCH_SCRIPT").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_models.py");
    if built.exists() {
        built
    } else {
        PathBuf::from("benches/torch_models.py")
    }
}

fn last_json(out: &str) -> Option<Value> {
    out.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.is_object())
}

/// Spawns `cmd` with stdout captured; returns (Ok, or how it ended when not
/// with status 0; stdout; the child's peak RSS in KiB from `wait4`).
fn spawn_wait4(mut cmd: Command) -> Result<(Result<(), String>, String, i64), String> {
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot spawn the bench child: {e}"))?;
    let mut out = String::new();
    let read = child.stdout.take().unwrap().read_to_string(&mut out);
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills a zeroed rusage.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(r > 0, "wait4 failed");
    drop(child); // already reaped by wait4
    read.map_err(|e| format!("reading the child's output: {e}"))?;
    let ended = if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if libc::WIFEXITED(status) {
        Err(format!("exit status {}", libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Err(format!("signal {}", libc::WTERMSIG(status)))
    } else {
        Err(format!("wait status {status}"))
    };
    Ok((ended, out, usage.ru_maxrss))
}

/// `FOLDWISE_TORCH_PYTHON`, else `.venv-torch/bin/python`, else `python3`
/// when it can import torch; or why PyTorch is not available.
fn find_torch() -> Result<PathBuf, String> {
    let imports = |py: &Path| {
        Command::new(py)
            .args(["-c", "import torch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(py) = std::env::var_os("FOLDWISE_TORCH_PYTHON").filter(|p| !p.is_empty()) {
        let py = PathBuf::from(py);
        return if imports(&py) {
            Ok(py)
        } else {
            Err(format!(
                "not available (FOLDWISE_TORCH_PYTHON={} cannot import torch; setup: {SETUP})",
                py.display()
            ))
        };
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-torch/bin/python");
    if venv.exists() && imports(&venv) {
        return Ok(venv);
    }
    let py3 = PathBuf::from("python3");
    if imports(&py3) {
        return Ok(py3);
    }
    Err(format!("not available (setup: {SETUP})"))
}

/// The child: `--child MODEL BATCH THREADS STEPS SECONDS DEVICE`; prints one
/// JSON line with train and inference images/s, or `{"error": ...}` and
/// exits with status 1.
fn child(args: &[String]) {
    let [model, batch, threads, steps, seconds, device] = args else {
        panic!("--child MODEL BATCH THREADS STEPS SECONDS DEVICE, not {args:?}");
    };
    let arch = arch(model);
    let batch: usize = batch.parse().unwrap();
    let threads: usize = threads.parse().unwrap();
    let steps: usize = steps.parse().unwrap();
    let seconds: f64 = seconds.parse().unwrap();
    let device = device_arg(device);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool");
    let result = pool.install(|| -> Result<Value, String> {
        let mut m = Model::new_on(ModelConfig::new(arch, HEADS), 0, device)
            .map_err(|e| format!("the model on {device}: {e}"))?;
        let cfg = m.config().clone();
        let mut r = Rng::new(1);
        let x: Vec<f32> = (0..batch * 3 * cfg.height * cfg.width)
            .map(|_| r.range_f32(-1.0, 1.0))
            .collect();
        let y: Vec<u8> = (0..batch * HEADS).map(|_| r.below(11) as u8).collect();
        let mut step = 0u64;
        let train = timed(steps, seconds, || {
            m.train_step(&x, &y, step, 1e-3, 0.0)
                .map_err(|e| format!("train step: {e}"))?;
            step += 1;
            Ok(())
        })?;
        let infer = timed(steps, seconds, || {
            std::hint::black_box(
                m.forward_probs(&x, batch)
                    .map_err(|e| format!("forward: {e}"))?,
            );
            Ok(())
        })?;
        let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len() as f64;
        Ok(json!({
            "train_ips": batch as f64 / median(&train),
            "infer_ips": batch as f64 / median(&infer),
            "train_ips_mean": batch as f64 / mean(&train),
            "infer_ips_mean": batch as f64 / mean(&infer),
            "train_steps": train.len(),
            "infer_passes": infer.len(),
            "device": device.to_string(),
        }))
    });
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            println!("{}", json!({ "error": e }));
            std::process::exit(1);
        }
    }
}

/// One warm-up call, then calls until at least `steps` calls and `seconds`
/// seconds; each timed call's seconds, or the first error.
fn timed(
    steps: usize,
    seconds: f64,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    f()?;
    let start = Instant::now();
    let mut times = Vec::new();
    loop {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
        if times.len() >= steps && start.elapsed().as_secs_f64() >= seconds {
            return Ok(times);
        }
    }
}

/// The median of `times`.
fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let n = t.len();
    if n % 2 == 1 {
        t[n / 2]
    } else {
        (t[n / 2 - 1] + t[n / 2]) / 2.0
    }
}
