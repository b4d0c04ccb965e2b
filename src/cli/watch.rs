//! `run --watch`: run, then rerun what became stale whenever the pipeline
//! file or an input it names changes, until Ctrl-C.
//!
//! Each run is a child process — `foldwise run` of this executable — so
//! that a change during a run cancels it by a signal (SIGTERM, on which a
//! run through Slurm cancels its jobs; SIGKILL if it lingers), with exactly
//! the guarantees of a killed run: a node's output is accepted only by the
//! atomic rename of a complete folder under the key's lock, so a killed
//! run leaves temporary folders (that `gc` removes) and no artifact, ref
//! or history record; the key's lock is released with the process; and
//! the rerun recomputes whatever the killed run had not accepted.
//!
//! Changes are noticed through the platform's file notifications (the
//! `notify` crate's full debouncer: a burst of events from one save makes
//! one rerun; reads — hashing an input opens it — are not changes); the
//! watched set — the pipeline file and every
//! `Kind::external_inputs` path — is rebuilt before each run, so a node
//! that starts naming a new folder gets it watched. Before a rerun the
//! stale instances are printed with their reasons, as `status` shows them;
//! when nothing became stale (a file saved unchanged) nothing runs. A
//! pipeline file that does not load prints its diagnostic and the watch
//! goes on with the paths it had.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

use super::{cache_dir, cache_io, open_store, printer, status_of, Cli, Failure};
use crate::config::{self, Pipeline};
use crate::exec::Engine;
use crate::nodes::KINDS;

/// How long the file system must be quiet before a change counts.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// The options of the watched `run`.
pub struct WatchArgs<'a> {
    pub pipeline: &'a Path,
    pub targets: &'a [String],
    /// Applies to the first run only.
    pub force: &'a [String],
    /// `--threads`, when given (else the child reads FOLDWISE_THREADS or
    /// takes every core, as a run does).
    pub threads: Option<std::num::NonZeroUsize>,
    pub quiet: bool,
    /// `--executor`, when given.
    pub executor: Option<&'a str>,
    /// `--slurm-poll`, `--slurm-cpus` and `--sbatch`, when given.
    pub slurm_poll: Option<f64>,
    pub slurm_cpus: Option<u32>,
    pub sbatch: &'a [String],
    /// `--device`, when given.
    pub device: Option<crate::kind::DeviceChoice>,
}

/// What the watch loop hears about.
enum Event {
    /// Paths that changed (after debouncing).
    Changed(Vec<PathBuf>),
    /// The watcher failed.
    WatchError(String),
    /// Run number `n` ended (the child can be reaped without blocking).
    Exited(u64),
}

/// Runs, then reruns on every change; returns only on an error (Ctrl-C
/// ends the process, and the child with it: same process group).
pub fn watch(cli: &Cli, args: &WatchArgs<'_>, color: bool) -> Result<i32, Failure> {
    let (tx, rx) = channel();
    let cache = std::path::absolute(cache_dir(cli)).map_err(cache_io)?;
    let mut watched = Watched::new(
        std::path::absolute(args.pipeline).map_err(|e| {
            Failure::new(
                "foldwise::watch::path",
                format!("{}: {e}", args.pipeline.display()),
            )
        })?,
        cache,
    );
    let mut run_number = 0u64;
    // The previous watcher keeps watching while the file is loaded and the
    // next one starts, and the next starts before the run: no change is
    // missed.
    let mut _debouncer = None;
    loop {
        let loaded = load_quietly(args.pipeline, color);
        if let Some(p) = &loaded {
            watched.set_inputs(p);
        }
        _debouncer = Some(watched.start(tx.clone())?);
        let child = match &loaded {
            Some(p) if run_number == 0 || has_stale(cli, p, args, color)? => {
                run_number += 1;
                Some(spawn_run(cli, args, run_number, tx.clone())?)
            }
            Some(_) => {
                say(args, "nothing became stale");
                None
            }
            None => None,
        };
        wait_for_change(&rx, &watched, child, run_number, args)?;
        drain(&rx);
    }
}

/// Blocks until a relevant change; a run still going then is killed.
fn wait_for_change(
    rx: &Receiver<Event>,
    watched: &Watched,
    mut child: Option<Child>,
    run_number: u64,
    args: &WatchArgs<'_>,
) -> Result<(), Failure> {
    if child.is_none() {
        say(args, &watched.waiting());
    }
    loop {
        match rx
            .recv()
            .map_err(|e| Failure::new("foldwise::watch::events", format!("watch: {e}")))?
        {
            Event::Exited(n) if n == run_number => {
                if let Some(mut c) = child.take() {
                    c.wait().map_err(child_error)?;
                    say(args, &watched.waiting());
                }
            }
            Event::Exited(_) => {}
            Event::WatchError(e) => eprintln!("warning: watch: {e}"),
            Event::Changed(paths) => {
                let Some(changed) = paths.iter().find(|p| watched.is_relevant(p)) else {
                    continue;
                };
                if let Some(mut c) = child.take() {
                    stop(&mut c).map_err(child_error)?;
                    say(
                        args,
                        &format!("{} changed: run cancelled", changed.display()),
                    );
                } else {
                    say(args, &format!("{} changed", changed.display()));
                }
                return Ok(());
            }
        }
    }
}

/// How long a run asked to stop may take (a run through Slurm cancels its
/// jobs) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Stops a run: SIGTERM, on which a run through Slurm cancels its jobs
/// (a local run just ends), then SIGKILL after [`STOP_GRACE`]. Either way
/// what the run leaves unfinished is never accepted: a node's output lands
/// only by the rename of a complete folder.
fn stop(c: &mut Child) -> std::io::Result<()> {
    // SAFETY: kill only sends a signal to our own child, not yet reaped.
    unsafe {
        libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
    }
    let until = std::time::Instant::now() + STOP_GRACE;
    while std::time::Instant::now() < until {
        if c.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    c.wait().map(|_| ())
}

/// Drops the changes already queued: the next load sees them all.
fn drain(rx: &Receiver<Event>) {
    std::thread::sleep(DEBOUNCE);
    while rx.try_recv().is_ok() {}
}

/// A line of the watch's own, on standard error (none with `-q`).
fn say(args: &WatchArgs<'_>, line: &str) {
    if !args.quiet {
        eprintln!("watch: {line}");
    }
}

/// The pipeline, or `None` after printing why it does not load.
fn load_quietly(path: &Path, color: bool) -> Option<Pipeline> {
    match config::load(path, KINDS) {
        Ok(p) => Some(p),
        Err(e) => {
            eprint!("{}", config::render_diagnostic(&e, color, 100));
            None
        }
    }
}

/// Whether anything the run would reach is stale; prints the stale
/// instances with their reasons, as `status` does.
fn has_stale(cli: &Cli, p: &Pipeline, args: &WatchArgs<'_>, color: bool) -> Result<bool, Failure> {
    let store = open_store(cli)?;
    let engine = Engine::new(p, &store);
    let needed = engine.needed(args.targets)?;
    let st = status_of(&engine, &store, &needed)?;
    let table = printer::status_table(&st, color);
    let mut lines = table.lines();
    let mut stale = String::new();
    for s in &st {
        let line = lines.next().unwrap_or_default();
        if !s.is_fresh() {
            stale.push_str(line);
            stale.push('\n');
        }
    }
    if !args.quiet {
        eprint!("{stale}");
    }
    Ok(!stale.is_empty())
}

/// Starts `foldwise run` as a child; a thread reports its end as
/// `Event::Exited(n)`.
fn spawn_run(cli: &Cli, args: &WatchArgs<'_>, n: u64, tx: Sender<Event>) -> Result<Child, Failure> {
    let mut cmd = Command::new(std::env::current_exe().map_err(child_error)?);
    if let Some(dir) = &cli.cache_dir {
        cmd.arg("--cache-dir").arg(dir);
    }
    if cli.no_color {
        cmd.arg("--no-color");
    }
    if let Some(url) = &cli.remote {
        cmd.arg("--remote").arg(url);
    }
    if cli.no_remote {
        cmd.arg("--no-remote");
    }
    cmd.arg("run").arg(args.pipeline).args(args.targets);
    if let Some(e) = args.executor {
        cmd.arg("--executor").arg(e);
    }
    if let Some(s) = args.slurm_poll {
        cmd.arg("--slurm-poll").arg(s.to_string());
    }
    if let Some(c) = args.slurm_cpus {
        cmd.arg("--slurm-cpus").arg(c.to_string());
    }
    for a in args.sbatch {
        cmd.arg(format!("--sbatch={a}"));
    }
    if let Some(d) = args.device {
        cmd.arg("--device").arg(d.to_string());
    }
    if let Some(n) = args.threads {
        cmd.arg("--threads").arg(n.to_string());
    }
    if args.quiet {
        cmd.arg("--quiet");
    }
    if n == 1 {
        for f in args.force {
            cmd.arg("--force").arg(f);
        }
    }
    cmd.stdin(Stdio::null());
    die_with_parent(&mut cmd);
    let child = cmd.spawn().map_err(child_error)?;
    let pid = child.id();
    std::thread::spawn(move || {
        wait_without_reaping(pid);
        let _ = tx.send(Event::Exited(n));
    });
    Ok(child)
}

/// The child is stopped (SIGTERM, so that a run through Slurm cancels its
/// jobs) when the watch ends, however it ends.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Blocks until process `pid` ends, leaving it to be reaped by its
/// `Child` (so its pid cannot be reused before the owner kills or waits).
fn wait_without_reaping(pid: u32) {
    // SAFETY: waitid with WNOWAIT only reads the child's state into a
    // zeroed siginfo_t owned by this frame.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        );
    }
}

/// The files and folders whose changes matter.
struct Watched {
    pipeline: PathBuf,
    /// The cache: changes under it are the runs' own.
    cache: PathBuf,
    /// Every external input of every node, absolute.
    inputs: Vec<PathBuf>,
}

impl Watched {
    fn new(pipeline: PathBuf, cache: PathBuf) -> Self {
        Watched {
            pipeline,
            cache,
            inputs: Vec::new(),
        }
    }

    /// Takes the external inputs of `p`'s nodes.
    fn set_inputs(&mut self, p: &Pipeline) {
        let mut inputs = Vec::new();
        for inst in &p.instances {
            let kind = p.decl(inst).kind;
            for (_, path) in kind.external_inputs(p.params(inst), &p.base_dir) {
                inputs.push(std::path::absolute(&path).unwrap_or(path));
            }
        }
        inputs.sort();
        inputs.dedup();
        self.inputs = inputs;
    }

    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.pipeline).chain(&self.inputs)
    }

    /// A watcher over the watched paths, reporting to `tx`: a folder
    /// recursively; a file through its parent folder, since editors save
    /// by replacing the file.
    fn start(
        &self,
        tx: Sender<Event>,
    ) -> Result<Debouncer<RecommendedWatcher, RecommendedCache>, Failure> {
        let mut dirs: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
        for path in self.paths() {
            if path.is_dir() {
                dirs.insert(path.clone(), RecursiveMode::Recursive);
            } else if let Some(parent) = path.parent().filter(|d| d.is_dir()) {
                dirs.entry(parent.to_path_buf())
                    .or_insert(RecursiveMode::NonRecursive);
            }
        }
        let mut debouncer = new_debouncer(DEBOUNCE, None, move |r: DebounceEventResult| {
            let _ = tx.send(match r {
                Ok(events) => Event::Changed(
                    events
                        .into_iter()
                        .filter(|e| !matches!(e.kind, EventKind::Access(_)))
                        .flat_map(|e| e.event.paths)
                        .collect(),
                ),
                Err(e) => Event::WatchError(
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            });
        })
        .map_err(|e| Failure::new("foldwise::watch::start", format!("cannot watch files: {e}")))?;
        for (dir, mode) in &dirs {
            debouncer.watch(dir, *mode).map_err(|e| {
                Failure::new(
                    "foldwise::watch::start",
                    format!("cannot watch {}: {e}", dir.display()),
                )
            })?;
        }
        Ok(debouncer)
    }

    /// Whether a change at `path` concerns the pipeline.
    fn is_relevant(&self, path: &Path) -> bool {
        !path.starts_with(&self.cache) && self.paths().any(|w| path == w || path.starts_with(w))
    }

    fn waiting(&self) -> String {
        format!(
            "watching {} and {} input path(s) for changes (Ctrl-C to stop)",
            self.pipeline.display(),
            self.inputs.len()
        )
    }
}

/// The run process could not be started or waited for.
fn child_error(e: std::io::Error) -> Failure {
    Failure::new("foldwise::watch::run", format!("the run process: {e}"))
}
