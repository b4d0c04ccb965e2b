//! The command-line front end: argument parsing, output formatting and exit
//! codes. `main.rs` only calls [`main`].
//!
//! Exit codes: 0 success; 1 a node failed (or was skipped); 2 the pipeline
//! file or the command line is wrong, or the cache is unusable.
//!
//! Errors: a bad pipeline file prints its diagnostics with spans into the
//! file; any other error prints `error: MESSAGE`, then its stable code
//! (`[foldwise::…]`) and its help, if any, on lines of their own.

mod diff;
mod gc;
mod log;
mod printer;
pub mod reference;
mod remote;
mod verify;
mod watch;

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use miette::{Diagnostic, MietteDiagnostic};
use serde::Serialize;

use crate::config::{self, Pipeline};
use crate::exec::{Engine, EngineError, NodeStatus, RunOptions};
use crate::graph;
use crate::nodes::KINDS;
use crate::store::Store;

use printer::Printer;

#[derive(Parser, Debug)]
#[command(
    name = "foldwise",
    version,
    about = "Declarative, cached, comparable ensembling pipelines for multi-digit recognition"
)]
struct Cli {
    /// Cache directory [env: FOLDWISE_CACHE; default: ./cache]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Never use colour.
    #[arg(long, global = true)]
    no_color: bool,
    /// The remote cache (`s3://BUCKET[/PREFIX]` or `file:///PATH`), instead
    /// of the pipeline's `[cache] remote`.
    #[arg(long, global = true, value_name = "URL")]
    remote: Option<String>,
    /// Do not consult the remote cache (compute what is missing here).
    #[arg(long, global = true, conflicts_with = "remote")]
    no_remote: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the targets (default: every node) and their stale ancestors.
    Run(RunArgs),
    /// Is every node fresh? Says why each stale node is stale.
    Status {
        /// The pipeline file (TOML).
        #[arg(value_name = "PIPELINE")]
        pipeline: PathBuf,
        /// Nodes (`cnn`) or instances (`cnn[0]`) to report on (default:
        /// every node), with their ancestors.
        targets: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Validate a pipeline file and report every problem.
    Check {
        /// The pipeline file (TOML).
        #[arg(value_name = "PIPELINE")]
        pipeline: PathBuf,
    },
    /// Print the node graph.
    Dag {
        /// The pipeline file (TOML).
        #[arg(value_name = "PIPELINE")]
        pipeline: PathBuf,
        #[arg(long, default_value = "text", value_parser = ["text", "dot", "mermaid"])]
        format: String,
    },
    /// Print where a node's artifact lives (it must be fresh).
    Path {
        /// The pipeline file (TOML).
        #[arg(value_name = "PIPELINE")]
        pipeline: PathBuf,
        /// A node (`cnn`: all its instances) or an instance (`cnn[0]`).
        node: String,
    },
    /// Print the reference of every node kind and its parameters (Markdown).
    Kinds,
    /// Print the JSON Schema of the pipeline format, for editors (Taplo).
    Schema,
    /// Compare two variants: shared, changed (and how), only in A or B,
    /// the compute B reuses, scores side by side. A side may be `REV:path`.
    Diff {
        a: String,
        b: String,
        #[arg(long)]
        json: bool,
    },
    /// List recorded runs (of one pipeline), or one score across runs.
    Log {
        pipeline: Option<String>,
        /// Tabulate this score (`seq_acc`, `char_acc`, `len_acc`) across runs.
        #[arg(long, value_name = "NAME")]
        metric: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One row per trained model, prediction and ensemble of a pipeline,
    /// from the cache: its time and scores (nothing runs).
    Table {
        /// The pipeline file (TOML).
        #[arg(value_name = "PIPELINE")]
        pipeline: PathBuf,
        /// Sort by this column (instance, kind, state, seconds,
        /// valid_seq_acc, oof_seq_acc, seq_acc, char_acc); unknown values
        /// last [default: pipeline order].
        #[arg(long, value_name = "COLUMN")]
        sort: Option<String>,
        /// Sort descending (best scores first).
        #[arg(long, requires = "sort")]
        desc: bool,
        /// Print the rows as JSON.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print the rows as CSV (fractions, not percentages).
        #[arg(long)]
        csv: bool,
    },
    /// Write a self-contained HTML report of a pipeline from the cache.
    Report {
        /// The pipeline file (TOML).
        #[arg(value_name = "PIPELINE")]
        pipeline: PathBuf,
        #[arg(long, short = 'o', default_value = "report.html")]
        output: PathBuf,
    },
    /// Re-read every artifact in the cache and check it against its
    /// manifest, as `git fsck` does. Exit code 1 when damage is found.
    Verify {
        /// Move damaged artifacts aside (into the cache's `damaged/`), so
        /// that the next run rebuilds them.
        #[arg(long)]
        fix: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove cache entries that no given pipeline's current keys reach
    /// (never what a running `run` holds).
    Gc {
        /// The pipeline files whose current artifacts are kept.
        #[arg(value_name = "PIPELINE")]
        pipelines: Vec<PathBuf>,
        #[arg(long)]
        dry_run: bool,
        /// Also remove from the remote cache every artifact that no given
        /// pipeline's current keys reach (at least one pipeline is needed),
        /// then the files no remaining artifact names.
        #[arg(long)]
        remote_too: bool,
    },
    /// Upload the artifacts of the named nodes (default: every node) that
    /// are fresh here and missing on the remote cache.
    Push {
        /// The pipeline file (TOML).
        #[arg(value_name = "PIPELINE")]
        pipeline: PathBuf,
        /// Nodes (`cnn`) or instances (`cnn[0]`) to push.
        nodes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Download the artifacts of the named nodes (default: every node)
    /// that the remote cache has and this one lacks.
    Pull {
        /// The pipeline file (TOML).
        #[arg(value_name = "PIPELINE")]
        pipeline: PathBuf,
        /// Nodes (`cnn`) or instances (`cnn[0]`) to pull (not their
        /// ancestors).
        nodes: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

/// The arguments of `foldwise run`.
#[derive(Args, Debug)]
struct RunArgs {
    /// The pipeline file (TOML).
    #[arg(value_name = "PIPELINE")]
    pipeline: PathBuf,
    /// Nodes (`cnn`) or instances (`cnn[0]`) to bring up to date.
    targets: Vec<String>,
    /// Recompute these nodes even when fresh (repeatable).
    #[arg(long, value_name = "NODE")]
    force: Vec<String>,
    /// Show the plan, with reasons, without running anything.
    #[arg(long)]
    dry_run: bool,
    /// The thread budget: threads the run divides among the nodes it runs
    /// at once (folds side by side, or one node on all of them) [env:
    /// FOLDWISE_THREADS; default: this machine's cores]. Results do not
    /// depend on it.
    #[arg(long, short = 'j', value_name = "N", visible_alias = "jobs")]
    threads: Option<NonZeroUsize>,
    /// Print nothing but failures.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Then rerun what becomes stale whenever the pipeline file or an
    /// input it names changes, until Ctrl-C.
    #[arg(long, conflicts_with_all = ["dry_run", "json"])]
    watch: bool,
    /// Where stale nodes execute: here, or each as a Slurm job (on a cache
    /// every node of the cluster shares) [default: the pipeline's
    /// `[executor] kind`, else local].
    #[arg(long, value_parser = ["local", "slurm"])]
    executor: Option<String>,
    /// Seconds between two `squeue` calls, one for all of the run's jobs
    /// [default: `[executor] poll`, else 5].
    #[arg(long, value_name = "SECONDS")]
    slurm_poll: Option<f64>,
    /// CPUs of every Slurm job (and the threads it runs on), over the
    /// pipeline's `resources` [default: `resources.cpus`, else 1 for
    /// single-threaded kinds and 2 for the others].
    #[arg(long, value_name = "N")]
    slurm_cpus: Option<u32>,
    /// Further `sbatch` arguments for every job (repeatable).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    sbatch: Vec<String>,
    /// Where models train and predict: auto, cpu, cuda or cuda:N, over the
    /// pipeline's `device` [default: `[pipeline] device`, else auto]. Not
    /// part of any key.
    #[arg(long, value_name = "DEVICE", value_parser = parse_device)]
    device: Option<crate::kind::DeviceChoice>,
    /// Execute only the targets; any other stale instance fails (what a
    /// Slurm job runs).
    #[arg(long, hide = true)]
    only: bool,
}

fn parse_device(s: &str) -> Result<crate::kind::DeviceChoice, String> {
    crate::kind::DeviceChoice::parse(s)
        .ok_or_else(|| format!("expected {}", crate::kind::DEVICE_VALUES))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let color =
        !cli.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    match dispatch(&cli, color) {
        Ok(code) => code,
        Err(Failure::Reported(code)) => code,
        Err(Failure::Diagnostic(d)) => {
            eprint!("{}", render_failure(d.as_ref(), color));
            2
        }
    }
}

/// Why a command stopped before its end.
enum Failure {
    /// Already printed (a pipeline-file diagnostic): the exit code.
    Reported(i32),
    /// A run-time error, printed by [`main`] with its code and help; exit
    /// code 2.
    Diagnostic(Box<dyn Diagnostic + Send + Sync>),
}

impl Failure {
    /// A run-time error with a stable `code` (`foldwise::<area>::<what>`).
    fn new(code: &str, message: impl Into<String>) -> Failure {
        Failure::from(MietteDiagnostic::new(message).with_code(code))
    }

    /// A run-time error with a code and a `help` line.
    fn with_help(code: &str, message: impl Into<String>, help: &str) -> Failure {
        Failure::from(
            MietteDiagnostic::new(message)
                .with_code(code)
                .with_help(help),
        )
    }
}

impl From<MietteDiagnostic> for Failure {
    fn from(d: MietteDiagnostic) -> Self {
        Failure::Diagnostic(Box::new(d))
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Diagnostic(Box::new(e))
    }
}

/// Where the cache is chosen, for the help of cache errors.
const CACHE_HELP: &str = "the cache folder is `./cache`, or the one `--cache-dir` or FOLDWISE_CACHE names; it must be readable and writable";

/// An i/o error of the cache (its message as it is).
fn cache_io(e: std::io::Error) -> Failure {
    Failure::with_help("foldwise::cache::io", e.to_string(), CACHE_HELP)
}

/// A run-time error as people read it: `error: MESSAGE` (the message as it
/// is), then its code and help on lines of their own, in the style of a
/// failed node in the run summary.
fn render_failure(d: &(dyn Diagnostic + Send + Sync), color: bool) -> String {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut out = format!("{} {d}\n", paint("1;31", "error:"));
    if let Some(code) = d.code() {
        out.push_str(&format!("  {}\n", paint("2", &format!("[{code}]"))));
    }
    if let Some(help) = d.help() {
        out.push_str(&format!("  {} {help}\n", paint("36", "help:")));
    }
    out
}

/// Colour for output on stdout.
fn color_stdout(cli: &Cli) -> bool {
    !cli.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

fn cache_dir(cli: &Cli) -> PathBuf {
    cli.cache_dir
        .clone()
        .or_else(|| std::env::var_os("FOLDWISE_CACHE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("cache"))
}

fn load(path: &Path, color: bool) -> Result<Pipeline, Failure> {
    reported(config::load(path, KINDS), color)
}

/// Prints a pipeline file's problems (exit code 2).
fn reported(
    loaded: Result<Pipeline, config::ConfigError>,
    color: bool,
) -> Result<Pipeline, Failure> {
    loaded.map_err(|e| {
        eprint!("{}", config::render_diagnostic(&e, color, 100));
        Failure::Reported(2)
    })
}

fn open_store(cli: &Cli) -> Result<Store, Failure> {
    let dir = cache_dir(cli);
    Store::open(&dir).map_err(|e| {
        Failure::with_help(
            "foldwise::cache::open",
            format!("cannot open the cache: {e}"),
            CACHE_HELP,
        )
    })
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new("foldwise::cli::json", e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// The status of the `needed` instances, with the memo saved.
fn status_of(
    engine: &Engine<'_>,
    store: &Store,
    needed: &[bool],
) -> Result<Vec<NodeStatus>, Failure> {
    let st = engine.status(needed);
    store.save_memo().map_err(cache_io)?;
    Ok(st)
}

fn dispatch(cli: &Cli, color: bool) -> Result<i32, Failure> {
    match &cli.cmd {
        Cmd::Check { pipeline } => check(pipeline, color),
        Cmd::Dag { pipeline, format } => dag(pipeline, format, color),
        Cmd::Status {
            pipeline,
            targets,
            json,
        } => status(cli, pipeline, targets, *json, color),
        Cmd::Run(args) => run(cli, args, color),
        Cmd::Path { pipeline, node } => path(cli, pipeline, node, color),
        Cmd::Diff { a, b, json } => diff(cli, a, b, *json, color),
        Cmd::Log {
            pipeline,
            metric,
            json,
        } => log(cli, pipeline.as_deref(), metric.as_deref(), *json),
        Cmd::Report { pipeline, output } => report(cli, pipeline, output, color),
        Cmd::Table {
            pipeline,
            sort,
            desc,
            json,
            csv,
        } => table(cli, pipeline, sort.as_deref(), *desc, *json, *csv, color),
        Cmd::Kinds => {
            print!("{}", reference::kinds_markdown());
            Ok(0)
        }
        Cmd::Schema => {
            print!("{}", reference::schema_json());
            Ok(0)
        }
        Cmd::Verify { fix, json } => verify::verify(cli, *fix, *json),
        Cmd::Gc {
            pipelines,
            dry_run,
            remote_too,
        } => gc(cli, pipelines, *dry_run, *remote_too, color),
        Cmd::Push {
            pipeline,
            nodes,
            json,
        } => remote::push(cli, pipeline, nodes, *json, color),
        Cmd::Pull {
            pipeline,
            nodes,
            json,
        } => remote::pull(cli, pipeline, nodes, *json, color),
    }
}

/// `foldwise check`: validates the file, checks the paths its nodes need,
/// and counts its nodes.
fn check(pipeline: &Path, color: bool) -> Result<i32, Failure> {
    let p = reported(config::load_checked(pipeline, KINDS), color)?;
    let fans = p.nodes.iter().filter(|n| n.fan.is_some()).count();
    println!(
        "{}: ok ({} nodes, {} instances, {} expanded per fold)",
        pipeline.display(),
        p.nodes.len(),
        p.instances.len(),
        fans
    );
    Ok(0)
}

/// `foldwise dag`: the instance graph as text, dot or mermaid.
fn dag(pipeline: &Path, format: &str, color: bool) -> Result<i32, Failure> {
    let p = load(pipeline, color)?;
    let f: graph::Format = format
        .parse()
        .map_err(|m: String| Failure::new("foldwise::usage::graph_format", m))?;
    let out = graph::render(&p, f);
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(0)
}

/// `foldwise status`: whether each needed instance is fresh, and why not.
fn status(
    cli: &Cli,
    pipeline: &Path,
    targets: &[String],
    json: bool,
    color: bool,
) -> Result<i32, Failure> {
    let p = load(pipeline, color)?;
    let store = open_store(cli)?;
    let remote = remote::remote_for(cli, &p)?;
    let engine = Engine::with_remote(&p, &store, remote.as_ref());
    let needed = engine.needed(targets)?;
    let st = status_of(&engine, &store, &needed)?;
    remote::warn_remote(&engine);
    if json {
        print_json(&st)?;
    } else {
        print!("{}", printer::status_table(&st, color));
    }
    Ok(0)
}

/// `foldwise run`: the plan with `--dry-run`, else the run, its record in
/// the history, its summary and closing tables.
fn run(cli: &Cli, args: &RunArgs, color: bool) -> Result<i32, Failure> {
    if args.watch {
        let watch_args = watch::WatchArgs {
            pipeline: &args.pipeline,
            targets: &args.targets,
            force: &args.force,
            threads: args.threads,
            quiet: args.quiet,
            executor: args.executor.as_deref(),
            slurm_poll: args.slurm_poll,
            slurm_cpus: args.slurm_cpus,
            sbatch: &args.sbatch,
            device: args.device,
        };
        return watch::watch(cli, &watch_args, color);
    }
    let mut p = load(&args.pipeline, color)?;
    if let Some(d) = args.device {
        p.device = d;
    }
    let store = open_store(cli)?;
    let remote = remote::remote_for(cli, &p)?;
    let engine = Engine::with_remote(&p, &store, remote.as_ref());
    if args.dry_run {
        return dry_run(&p, &engine, &store, args, color);
    }
    let opts = RunOptions {
        targets: args.targets.clone(),
        force: args.force.clone(),
        threads: thread_budget(args.threads)?,
        only: args.only,
    };
    // A job (`--only`) executes here, whatever the pipeline says: it must
    // never submit jobs itself.
    let on_slurm = !args.only
        && match args.executor.as_deref() {
            Some(e) => e == "slurm",
            None => p.executor.kind == config::ExecutorKind::Slurm,
        };
    let slurm = if on_slurm {
        Some(slurm_executor(cli, args, &p)?)
    } else {
        None
    };
    if slurm.is_some() {
        crate::exec::stop_on_signals();
    }
    let printer = Printer::new(color, args.quiet || args.json);
    let report = engine.run_on(&opts, &printer, slurm.as_ref())?;
    printer.finish();
    remote::warn_remote(&engine);
    let pushed = match &remote {
        Some(r) if p.cache.push => {
            remote::push_after_run(r, &store, &report, args.quiet || args.json, color)
        }
        _ => true,
    };
    if let Err(e) = log::record(&store, &args.pipeline, &p, &report) {
        eprintln!("warning: the run was not recorded in the history: {e}");
    }
    if args.json {
        print_json(&report)?;
    } else {
        eprint!("{}", printer::summary(&report, args.quiet, color));
        if !args.quiet {
            use std::io::Write as _;
            let _ = std::io::stderr().flush();
            print!("{}", printer::closing_tables(&report, &store));
        }
    }
    if slurm.is_some() && crate::exec::interrupted() {
        eprintln!("interrupted: the run's Slurm jobs were cancelled; a rerun reuses what finished");
        return Ok(130);
    }
    Ok(if report.ok() && pushed { 0 } else { 1 })
}

/// The Slurm executor of a run: jobs named after the run, their scripts
/// and logs in the cache's `slurm/<run id>/`, each running this binary on
/// one instance of the pipeline against the same cache.
fn slurm_executor(
    cli: &Cli,
    args: &RunArgs,
    p: &Pipeline,
) -> Result<crate::exec::SlurmExecutor, Failure> {
    use crate::exec::slurm::{sh_quote, Queue, Resources};
    let cache = std::path::absolute(cache_dir(cli)).map_err(cache_io)?;
    let pipeline = std::path::absolute(&args.pipeline).map_err(cache_io)?;
    let bin = std::env::current_exe().map_err(cache_io)?;
    let run_id = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        std::process::id()
    );
    let dir = cache.join("slurm").join(&run_id);
    let poll = args.slurm_poll.unwrap_or(p.executor.poll);
    if !(poll > 0.0 && poll.is_finite()) {
        return Err(Failure::new(
            "foldwise::usage::slurm_poll",
            format!("--slurm-poll is {poll}, not a positive number of seconds"),
        ));
    }
    let poll = std::time::Duration::from_secs_f64(poll);
    let patience = std::time::Duration::from_secs_f64(p.executor.patience);
    let queue = Queue::new(&run_id, &dir, poll, patience)
        .map_err(|e| Failure::new("foldwise::slurm::command", e.to_string()))?;
    // Each instance's resources: the command line over the node's own over
    // `[executor] resources` over the kind's default (1 CPU for a kind
    // that runs on one thread, a command's `threads`, 2 for a kind that
    // scales).
    let per_instance: Vec<Resources> = p
        .instances
        .iter()
        .map(|inst| {
            let decl = p.decl(inst);
            let default_cpus = match decl.kind.appetite(p.params(inst)) {
                crate::kind::Appetite::One => 1,
                crate::kind::Appetite::Fixed(n) => n.max(1) as u32,
                crate::kind::Appetite::Scales => 2,
            };
            let cli_side = Resources {
                cpus: args.slurm_cpus.map(|c| c.max(1)),
                sbatch: args.sbatch.clone(),
                ..Resources::default()
            };
            // A model node on a device named `cuda` asks for a GPU.
            let model_node = ["train", "predict"].contains(&decl.kind.name());
            let base = Resources {
                cpus: Some(default_cpus),
                gpus: (model_node && p.device.wants_gpu()).then_some(1),
                ..Resources::default()
            };
            let node = decl.resources.clone().unwrap_or_default();
            cli_side.over(&node.over(&p.executor.resources.over(&base)))
        })
        .collect();
    let cpus: Vec<usize> = per_instance
        .iter()
        .map(|r| r.cpus.unwrap_or(1) as usize)
        .collect();
    let device = p.device;
    let command = move |instance: &str, threads: usize| {
        format!(
            "exec {} --cache-dir {} --no-remote --no-color run {} {} --only --executor local --quiet --threads {threads} --device {device}",
            sh_quote(&bin.display().to_string()),
            sh_quote(&cache.display().to_string()),
            sh_quote(&pipeline.display().to_string()),
            sh_quote(instance),
        )
    };
    Ok(crate::exec::SlurmExecutor {
        queue,
        job_command: Box::new(command),
        resources: Box::new(move |i| per_instance[i].clone()),
        threads: Box::new(move |i| cpus[i]),
        patience,
    })
}

/// The run's thread budget: `--threads`, else `FOLDWISE_THREADS`, else the
/// machine's cores.
fn thread_budget(flag: Option<NonZeroUsize>) -> Result<usize, Failure> {
    if let Some(n) = flag {
        return Ok(n.get());
    }
    match std::env::var("FOLDWISE_THREADS") {
        Err(_) => Ok(crate::exec::machine_threads()),
        Ok(v) => v
            .trim()
            .parse::<NonZeroUsize>()
            .map(|n| n.get())
            .map_err(|_| {
                Failure::with_help(
                    "foldwise::usage::threads",
                    format!("FOLDWISE_THREADS is `{v}`, not a number of threads"),
                    "set it to a whole number of at least 1, or unset it to use every core",
                )
            }),
    }
}

/// `foldwise run --dry-run`: what would run and why.
fn dry_run(
    p: &Pipeline,
    engine: &Engine<'_>,
    store: &Store,
    args: &RunArgs,
    color: bool,
) -> Result<i32, Failure> {
    let needed = engine.needed(&args.targets)?;
    let mut forced = BTreeSet::new();
    for f in &args.force {
        forced.extend(engine.resolve(f)?);
    }
    let st = status_of(engine, store, &needed)?;
    remote::warn_remote(engine);
    if args.json {
        print_json(&st)?;
    } else {
        print!("{}", printer::plan(p, &st, &forced, color));
    }
    Ok(0)
}

/// `foldwise path`: the artifact folder of each instance `node` names; 1
/// when one of them has none yet.
fn path(cli: &Cli, pipeline: &Path, node: &str, color: bool) -> Result<i32, Failure> {
    let p = load(pipeline, color)?;
    let store = open_store(cli)?;
    let engine = Engine::new(&p, &store);
    let hits = engine.resolve(node)?;
    let needed = engine.needed(&[node.to_string()])?;
    let st = status_of(&engine, &store, &needed)?;
    let mut code = 0;
    for i in hits {
        let name = &p.instances[i].name;
        let s = st.iter().find(|s| &s.instance == name).expect("needed");
        match (&s.artifact, &s.stale) {
            (Some(a), _) => println!("{}", a.dir.display()),
            (None, Some(r)) => {
                eprintln!("error: `{name}` has no artifact yet: {r}");
                code = 1;
            }
            (None, None) => unreachable!("fresh nodes have artifacts"),
        }
    }
    Ok(code)
}

/// `foldwise diff A B`.
fn diff(cli: &Cli, a: &str, b: &str, json: bool, color: bool) -> Result<i32, Failure> {
    let pa = diff::load_side(a, color)?;
    let pb = diff::load_side(b, color)?;
    let store = open_store(cli)?;
    let remote = remote::remote_for(cli, &pb)?;
    let lookup = |key: &str| -> Option<(crate::store::Artifact, Option<f64>)> {
        let r = remote.as_ref()?;
        if !r.has(key).ok()? {
            return None;
        }
        let m = r.manifest(key, store.root()).ok()?;
        let seconds = m.meta.get("seconds").and_then(|s| s.as_f64());
        Some((m.artifact(&store), seconds))
    };
    let d = crate::report::diff::diff_with(&pa, a, &pb, b, &store, Some(&lookup));
    store.save_memo().map_err(cache_io)?;
    if json {
        print_json(&d)?;
    } else {
        print!("{}", diff::render(&d, color_stdout(cli)));
    }
    Ok(0)
}

/// `foldwise log`: the recorded runs, or one score across them.
fn log(
    cli: &Cli,
    pipeline: Option<&str>,
    metric: Option<&str>,
    json: bool,
) -> Result<i32, Failure> {
    let store = open_store(cli)?;
    let name = pipeline
        .filter(|f| Path::new(f).is_file())
        .and_then(|f| config::load(Path::new(f), KINDS).ok())
        .map(|p| p.name);
    let runs = log::select(&store, pipeline.map(|a| (a, name.as_deref())));
    match (metric, json) {
        (Some(m), true) => print_json(&log::metric_table(&runs, m))?,
        (Some(m), false) => print!("{}", log::render_metric(&log::metric_table(&runs, m))),
        (None, true) => print_json(&runs)?,
        (None, false) if runs.is_empty() => println!("no recorded runs"),
        (None, false) => print!("{}", log::list(&runs)),
    }
    Ok(0)
}

/// `foldwise report`: the HTML report, from the cache.
fn report(cli: &Cli, pipeline: &Path, output: &Path, color: bool) -> Result<i32, Failure> {
    let p = load(pipeline, color)?;
    let store = open_store(cli)?;
    let html = crate::report::render(&p, &store);
    store.save_memo().map_err(cache_io)?;
    std::fs::write(output, &html).map_err(|e| {
        Failure::new(
            "foldwise::report::write",
            format!("cannot write {}: {e}", output.display()),
        )
    })?;
    println!(
        "wrote {} ({})",
        output.display(),
        printer::bytes(html.len() as u64)
    );
    Ok(0)
}

/// `foldwise table`: the experiment table ([`crate::report::table`]).
fn table(
    cli: &Cli,
    pipeline: &Path,
    sort: Option<&str>,
    desc: bool,
    json: bool,
    csv: bool,
    color: bool,
) -> Result<i32, Failure> {
    use crate::report::table;
    let p = load(pipeline, color)?;
    let store = open_store(cli)?;
    let mut rows = table::rows(&p, &store);
    store.save_memo().map_err(cache_io)?;
    if let Some(column) = sort {
        table::sort(&mut rows, column, desc).map_err(|m| {
            Failure::with_help(
                "foldwise::usage::column",
                m,
                "sort by one of the table's columns, e.g. `--sort seq_acc --desc`",
            )
        })?;
    }
    if json {
        print_json(&rows)?;
    } else if csv {
        print!("{}", table::csv(&rows));
    } else if rows.is_empty() {
        println!(
            "no trained model, prediction or ensemble in {}",
            pipeline.display()
        );
    } else {
        print!("{}", table::text(&rows));
    }
    Ok(0)
}

/// `foldwise gc`: removes what no given pipeline's current keys reach,
/// keeping what running runs hold.
fn gc(
    cli: &Cli,
    pipelines: &[PathBuf],
    dry_run: bool,
    remote_too: bool,
    color: bool,
) -> Result<i32, Failure> {
    let store = open_store(cli)?;
    let mut live = BTreeSet::new();
    let mut live_work = BTreeSet::new();
    let mut remotes: Vec<(crate::remote::Remote, std::collections::HashSet<String>)> = Vec::new();
    if remote_too && pipelines.is_empty() {
        return Err(Failure::with_help(
            "foldwise::usage::gc_remote",
            "`gc --remote-too` needs the pipelines whose artifacts the remote keeps",
            "name every pipeline whose current artifacts the team still needs, e.g. `foldwise gc --remote-too pipelines/*.toml`",
        ));
    }
    for path in pipelines {
        let p = load(path, color)?;
        let remote = if remote_too {
            Some(remote::remote_for(cli, &p)?.ok_or_else(|| {
                Failure::with_help(
                    "foldwise::remote::none",
                    format!(
                        "`gc --remote-too`: {} names no remote cache",
                        path.display()
                    ),
                    "set `remote` in its `[cache]` table, or pass `--remote URL`",
                )
            })?)
        } else {
            None
        };
        let (keys, work) = current_keys(&p, &store, remote.as_ref());
        if let Some(r) = remote {
            match remotes.iter_mut().find(|(x, _)| x.url() == r.url()) {
                Some((_, keep)) => keep.extend(keys.iter().cloned()),
                None => remotes.push((r, keys.iter().cloned().collect())),
            }
        }
        live.extend(keys);
        live_work.extend(work);
    }
    let collection = store.collection().map_err(cache_io)?;
    // What a running run will read but has not reached yet: its pipeline's
    // keys as they stand now (a file that no longer loads adds nothing).
    let mut will_read = BTreeSet::new();
    for lease in &collection.leases {
        let Some(file) = &lease.header.file else {
            continue;
        };
        if let Ok(p) = config::load(file, KINDS) {
            will_read.extend(current_keys(&p, &store, None).0);
        }
    }
    let r = collection
        .collect(&live, &live_work, &will_read, dry_run)
        .map_err(cache_io)?;
    store.save_memo().map_err(cache_io)?;
    print!("{}", gc::summary(&r, dry_run));
    for (remote, keep) in &remotes {
        let g = remote
            .gc(keep, store.root(), dry_run)
            .map_err(remote::remote_failure)?;
        print!("{}", gc::remote_summary(remote.url(), &g, dry_run));
    }
    Ok(0)
}

/// The keys and work keys of every instance of `p` whose key can be
/// computed now (with the remote's manifests, when one is given).
fn current_keys(
    p: &Pipeline,
    store: &Store,
    remote: Option<&crate::remote::Remote>,
) -> (Vec<String>, Vec<String>) {
    let engine = Engine::with_remote(p, store, remote);
    let st = engine.status(&vec![true; p.instances.len()]);
    let keys = st.iter().filter_map(|s| s.key.clone()).collect();
    let work = st.into_iter().filter_map(|s| s.work_key).collect();
    (keys, work)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(f: Failure, color: bool) -> String {
        match f {
            Failure::Diagnostic(d) => render_failure(d.as_ref(), color),
            Failure::Reported(_) => panic!("not a diagnostic"),
        }
    }

    #[test]
    fn a_failure_prints_its_message_then_its_code_and_help() {
        let f = Failure::with_help("foldwise::cache::io", "disk full", "free some space");
        assert_eq!(
            rendered(f, false),
            "error: disk full\n  [foldwise::cache::io]\n  help: free some space\n"
        );
        let f = Failure::from(EngineError::UnknownTarget {
            name: "x".into(),
            suggestion: None,
        });
        assert_eq!(
            rendered(f, false),
            "error: no node or instance named `x` in the pipeline\n  [foldwise::engine::unknown_target]\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let f = Failure::new("foldwise::usage::graph_format", "bad");
        let s = rendered(f, true);
        assert!(s.starts_with("\x1b[1;31merror:\x1b[0m bad\n"), "{s:?}");
        assert!(s.contains("\x1b[2m[foldwise::usage::graph_format]\x1b[0m"));
    }
}
