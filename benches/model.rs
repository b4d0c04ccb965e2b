//! Model throughput and peak memory of foldwise's CNNs, next to the same
//! architectures in PyTorch, in one invocation.
//!
//!     cargo bench --bench model
//!     cargo bench --bench model -- --models resnet-mini --batches 64 --threads 2
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
//!
//! Goals reported against: train ≥ 0.5x PyTorch's images/s, inference
//! ≥ 1.0x, peak memory ≤ 0.25x PyTorch's.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use foldwise::model::{Arch, Model, ModelConfig};
use foldwise::rng::Rng;

/// The allocator the foldwise binary installs (`src/main.rs`), so that the
/// peak memory measured here is the binary's.
#[global_allocator]
static GLOBAL: foldwise::model::alloc::Allocator = foldwise::model::alloc::Allocator;

const HEADS: usize = 5;
const SETUP: &str = "python3 -m venv .venv-torch && .venv-torch/bin/pip install torch numpy";

const TRAIN_GOAL: f64 = 0.5;
const INFER_GOAL: f64 = 1.0;
const MEMORY_GOAL: f64 = 0.25;

#[derive(Debug, Clone)]
struct Opts {
    models: Vec<String>,
    batches: Vec<usize>,
    threads: usize,
    steps: usize,
    seconds: f64,
    torch: bool,
}

/// One configuration's measurements.
#[derive(Debug, Clone, Copy)]
struct Measured {
    train_ips: f64,
    infer_ips: f64,
    peak_kib: i64,
}

fn main() {
    // As the foldwise binary does first thing.
    foldwise::model::configure_process();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    let o = opts(&args);
    let torch = if o.torch {
        find_torch()
    } else {
        Err("skipped (--no-torch)".into())
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("benches/torch_models.py");
    let mut torch_version = None;
    let load_start = load_average();

    let mut rows = Vec::new();
    for model in &o.models {
        for &batch in &o.batches {
            eprintln!("foldwise {model} batch {batch} ...");
            let ours = run_ours(&o, model, batch);
            let theirs = torch.as_ref().ok().and_then(|py| {
                eprintln!("PyTorch  {model} batch {batch} ...");
                let r = run_torch(py, &script, &o, model, batch);
                match r {
                    Ok((m, v)) => {
                        torch_version = torch_version.take().or(v);
                        Some(m)
                    }
                    Err(e) => {
                        eprintln!("PyTorch {model} batch {batch}: {e}");
                        None
                    }
                }
            });
            rows.push((model.clone(), batch, ours, theirs));
        }
    }

    println!(
        "\n{} thread(s), {HEADS} heads, 3x64x128; images/s; peak RSS of the configuration's process",
        o.threads
    );
    if let (Some(a), Some(b)) = (load_start, load_average()) {
        println!("load average (1 min) at the start / end: {a} / {b}");
    }
    match (&torch, &torch_version) {
        (Ok(py), Some(v)) => println!("PyTorch {v} ({})", py.display()),
        (Ok(py), None) => println!("PyTorch: {} gave no results", py.display()),
        (Err(why), _) => println!("PyTorch: {why}"),
    }
    println!();
    println!(
        "| model | batch | foldwise train | PyTorch train | ratio | foldwise infer | PyTorch infer | ratio | foldwise peak RSS | PyTorch peak RSS | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut met = [(0, 0); 3];
    for (model, batch, ours, theirs) in &rows {
        let t = theirs.as_ref();
        let ratios = t.map(|t| {
            [
                ours.train_ips / t.train_ips,
                ours.infer_ips / t.infer_ips,
                ours.peak_kib as f64 / t.peak_kib as f64,
            ]
        });
        if let Some(r) = ratios {
            for (i, ok) in [r[0] >= TRAIN_GOAL, r[1] >= INFER_GOAL, r[2] <= MEMORY_GOAL]
                .into_iter()
                .enumerate()
            {
                met[i].0 += ok as usize;
                met[i].1 += 1;
            }
        }
        let ratio = |i: usize| ratios.map_or("–".into(), |r| format!("{:.2}x", r[i]));
        let ips = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
        let mb =
            |v: Option<i64>| v.map_or("–".into(), |v| format!("{:.0} MB", v as f64 / 1024.0));
        println!(
            "| `{model}` | {batch} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            ips(Some(ours.train_ips)),
            ips(t.map(|t| t.train_ips)),
            ratio(0),
            ips(Some(ours.infer_ips)),
            ips(t.map(|t| t.infer_ips)),
            ratio(1),
            mb(Some(ours.peak_kib)),
            mb(t.map(|t| t.peak_kib)),
            ratio(2),
        );
    }
    println!();
    let goal = |name: &str, (ok, of): (usize, usize)| {
        if of == 0 {
            println!("- {name}: no PyTorch figures to compare");
        } else {
            println!("- {name}: met in {ok} of {of} configurations");
        }
    };
    println!("Goals:");
    goal(&format!("train ≥ {TRAIN_GOAL}x PyTorch"), met[0]);
    goal(&format!("inference ≥ {INFER_GOAL}x PyTorch"), met[1]);
    goal(&format!("peak memory ≤ {MEMORY_GOAL}x PyTorch's"), met[2]);
}

fn opts(args: &[String]) -> Opts {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut models = env("FOLDWISE_BENCH_MODELS").unwrap_or("svhn-small,resnet-mini".into());
    let mut batches = env("FOLDWISE_BENCH_BATCHES").unwrap_or("32,64".into());
    let mut threads = env("FOLDWISE_BENCH_THREADS").unwrap_or("2".into());
    let mut steps = env("FOLDWISE_BENCH_STEPS").unwrap_or("3".into());
    let mut seconds = env("FOLDWISE_BENCH_SECONDS").unwrap_or("2".into());
    let mut torch = env("FOLDWISE_BENCH_NO_TORCH").is_none_or(|v| v == "0");
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
         [--batches 32,64] [--threads 2] [--steps 3] [--seconds 2] [--no-torch]"
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

/// Runs one configuration in a child process; its JSON line plus its peak RSS.
fn run_ours(o: &Opts, model: &str, batch: usize) -> Measured {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--child", model])
        .arg(batch.to_string())
        .arg(o.threads.to_string())
        .arg(o.steps.to_string())
        .arg(o.seconds.to_string())
        .env("RAYON_NUM_THREADS", o.threads.to_string());
    let (ok, out, peak) = spawn_wait4(cmd);
    assert!(ok, "foldwise {model} batch {batch}: the child failed");
    let v: serde_json::Value = last_json(&out).expect("the child printed no JSON line");
    Measured {
        train_ips: v["train_ips"].as_f64().unwrap(),
        infer_ips: v["infer_ips"].as_f64().unwrap(),
        peak_kib: peak,
    }
}

/// Runs `benches/torch_models.py` for one configuration (it runs its own
/// child and reports that child's peak RSS); the measurements and torch's
/// version.
fn run_torch(
    py: &Path,
    script: &Path,
    o: &Opts,
    model: &str,
    batch: usize,
) -> Result<(Measured, Option<String>), String> {
    let out = Command::new(py)
        .arg(script)
        .args(["--models", model, "--batches", &batch.to_string()])
        .args(["--threads", &o.threads.to_string()])
        .args(["--heads", &HEADS.to_string()])
        .args(["--steps", &o.steps.to_string()])
        .args(["--seconds", &o.seconds.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!("{} exited with {}", script.display(), out.status));
    }
    let v = last_json(&String::from_utf8_lossy(&out.stdout)).ok_or("no JSON line")?;
    let f = |k: &str| v[k].as_f64().ok_or(format!("no {k} in {v}"));
    Ok((
        Measured {
            train_ips: f("train_ips")?,
            infer_ips: f("infer_ips")?,
            peak_kib: f("peak_rss_kib")? as i64,
        },
        v["torch"].as_str().map(str::to_string),
    ))
}

fn last_json(out: &str) -> Option<serde_json::Value> {
    out.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(|v| v.is_object())
}

/// Spawns `cmd` with stdout captured; returns (success, stdout, the child's
/// peak RSS in KiB from `wait4`).
fn spawn_wait4(mut cmd: Command) -> (bool, String, i64) {
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the bench child");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .expect("read the child's output");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills a zeroed rusage.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(r > 0, "wait4 failed");
    drop(child); // already reaped by wait4
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        out,
        usage.ru_maxrss,
    )
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

/// The child: `--child MODEL BATCH THREADS STEPS SECONDS`; prints one JSON
/// line with train and inference images/s.
fn child(args: &[String]) {
    let [model, batch, threads, steps, seconds] = args else {
        panic!("--child MODEL BATCH THREADS STEPS SECONDS, not {args:?}");
    };
    let arch = arch(model);
    let batch: usize = batch.parse().unwrap();
    let threads: usize = threads.parse().unwrap();
    let steps: usize = steps.parse().unwrap();
    let seconds: f64 = seconds.parse().unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool");
    pool.install(|| {
        let mut m = Model::new(ModelConfig::new(arch, HEADS), 0).expect("model");
        let cfg = m.config().clone();
        let mut r = Rng::new(1);
        let x: Vec<f32> = (0..batch * 3 * cfg.height * cfg.width)
            .map(|_| r.range_f32(-1.0, 1.0))
            .collect();
        let y: Vec<u8> = (0..batch * HEADS).map(|_| r.below(11) as u8).collect();
        let mut step = 0u64;
        let train = timed(steps, seconds, || {
            m.train_step(&x, &y, step, 1e-3, 0.0).expect("train step");
            step += 1;
        });
        let infer = timed(steps, seconds, || {
            std::hint::black_box(m.forward_probs(&x, batch).expect("forward"));
        });
        let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len() as f64;
        println!(
            "{}",
            serde_json::json!({
                "train_ips": batch as f64 / median(&train),
                "infer_ips": batch as f64 / median(&infer),
                "train_ips_mean": batch as f64 / mean(&train),
                "infer_ips_mean": batch as f64 / mean(&infer),
                "train_steps": train.len(),
                "infer_passes": infer.len(),
            })
        );
    });
}

/// One warm-up call, then calls until at least `steps` calls and `seconds`
/// seconds; each timed call's seconds.
fn timed(steps: usize, seconds: f64, mut f: impl FnMut()) -> Vec<f64> {
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    loop {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
        if times.len() >= steps && start.elapsed().as_secs_f64() >= seconds {
            return times;
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
