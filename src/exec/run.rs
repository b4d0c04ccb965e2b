//! Running a pipeline: a scheduler over the instance graph that starts
//! ready instances as the run's thread budget allows, dividing the budget
//! among them ([`budget::allocate`]), and commits what they write.
//!
//! Guarantees: the threads held by running instances never exceed the
//! budget; each instance runs in a rayon pool of its share; the artifacts
//! do not depend on the budget (kinds are deterministic whatever their
//! thread count; tested end to end in `tests/it/threads.rs`).

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use miette::Diagnostic;
use serde::Serialize;
use serde_json::json;

use crate::fingerprint::Reason;
use crate::kind::{codes, NodeError, RunCtx};
use crate::store::{Artifact, Begin, Lease, LeaseHeader, RefRecord};

use super::{budget, Engine, EngineError, Observer};
use crate::config::Pipeline;

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Node or instance names; empty means every node.
    pub targets: Vec<String>,
    /// Node or instance names to recompute even when fresh.
    pub force: Vec<String>,
    /// The thread budget: threads the run's nodes share (see
    /// [`budget::allocate`]); the machine's cores by default.
    pub threads: usize,
    /// Execute only the target instances: an instance that is not a target
    /// and would execute fails instead (what a Slurm job runs: its
    /// upstreams must already be in the shared cache).
    pub only: bool,
}

/// The shell command a Slurm job runs for an instance, on a number of
/// threads.
pub type JobCommand = Box<dyn Fn(&str, usize) -> String + Sync>;

/// Where stale instances execute when not here: as Slurm jobs.
pub struct SlurmExecutor {
    pub queue: super::slurm::Queue,
    /// The shell command a job runs for an instance, on `threads` threads.
    pub job_command: JobCommand,
    /// What the job of instance `i` asks of the cluster.
    pub resources: Box<dyn Fn(usize) -> super::slurm::Resources + Sync>,
    /// Threads a job runs on (its CPUs).
    pub threads: Box<dyn Fn(usize) -> usize + Sync>,
    /// How long to wait for a finished job's artifact to become visible.
    pub patience: std::time::Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            targets: Vec::new(),
            force: Vec::new(),
            threads: machine_threads(),
            only: false,
        }
    }
}

/// The threads this machine offers (its cores, as the OS lets this process
/// use them), at least one.
pub fn machine_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// How one instance ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Computed now.
    Executed { reason: Reason },
    /// Its artifact was already in the cache.
    Reused,
    /// Its artifact was brought from the remote cache instead of computed:
    /// the files and bytes downloaded.
    Pulled { files: usize, bytes: u64 },
    /// Its run (or the engine's work around it) failed: the message, the
    /// diagnostic code and, where there is some, help.
    Failed {
        error: String,
        code: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        help: Option<String>,
    },
    /// Not run because an upstream failed.
    Skipped { upstream: String },
}

impl Outcome {
    /// A failure, from any diagnostic: its text, code and help.
    pub fn failed(e: &dyn Diagnostic) -> Outcome {
        Outcome::Failed {
            error: e.to_string(),
            code: e
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "foldwise::node::failed".into()),
            help: e.help().map(|h| h.to_string()),
        }
    }
}

/// One instance's result.
#[derive(Debug, Clone, Serialize)]
pub struct NodeOutcome {
    pub instance: String,
    pub kind: String,
    pub key: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
    /// The threads it ran on (its share of the budget), when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

/// The result of a run, in topological order.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub nodes: Vec<NodeOutcome>,
    pub seconds: f64,
    /// The thread budget the run divided among its nodes.
    pub threads: usize,
}

impl RunReport {
    fn names(&self, f: impl Fn(&Outcome) -> bool) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| f(&n.outcome))
            .map(|n| n.instance.clone())
            .collect()
    }
    /// Instances computed by this run.
    pub fn executed(&self) -> Vec<String> {
        self.names(|o| matches!(o, Outcome::Executed { .. }))
    }
    pub fn reused(&self) -> Vec<String> {
        self.names(|o| matches!(o, Outcome::Reused))
    }
    /// Instances brought from the remote cache.
    pub fn pulled(&self) -> Vec<String> {
        self.names(|o| matches!(o, Outcome::Pulled { .. }))
    }
    pub fn failed(&self) -> Vec<String> {
        self.names(|o| matches!(o, Outcome::Failed { .. }))
    }
    pub fn skipped(&self) -> Vec<String> {
        self.names(|o| matches!(o, Outcome::Skipped { .. }))
    }
    pub fn ok(&self) -> bool {
        self.failed().is_empty() && self.skipped().is_empty()
    }
}

/// Where each needed instance stands while a run goes on: how many of its
/// upstreams are still to finish, what follows it, which instances are
/// ready, and the outcomes so far.
struct Progression {
    waiting: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    ready: BTreeSet<usize>,
    outcomes: Vec<Option<NodeOutcome>>,
}

impl Progression {
    /// The start of a run over the `needed` instances of `p`.
    fn new(p: &Pipeline, needed: &[bool]) -> Progression {
        let n = p.instances.len();
        let mut waiting = vec![0usize; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, inst) in p.instances.iter().enumerate() {
            if !needed[i] {
                continue;
            }
            let mut ups: Vec<usize> = inst.inputs.iter().map(|e| e.from).collect();
            ups.sort_unstable();
            ups.dedup();
            waiting[i] = ups.len();
            for u in ups {
                dependents[u].push(i);
            }
        }
        let ready = (0..n).filter(|&i| needed[i] && waiting[i] == 0).collect();
        Progression {
            waiting,
            dependents,
            ready,
            outcomes: vec![None; n],
        }
    }

    /// Records that instance `i` ended: its dependents become ready, or,
    /// when it failed, are skipped (all the way down), each reported to
    /// `obs`.
    fn finish(
        &mut self,
        p: &Pipeline,
        i: usize,
        outcome: NodeOutcome,
        ok: bool,
        obs: &dyn Observer,
    ) {
        self.outcomes[i] = Some(outcome);
        if !ok {
            self.skip_below(p, i, obs);
            return;
        }
        for &d in &self.dependents[i] {
            self.waiting[d] -= 1;
            if self.waiting[d] == 0 && self.outcomes[d].is_none() {
                self.ready.insert(d);
            }
        }
    }

    /// Skips everything downstream of the failed instance `i`.
    fn skip_below(&mut self, p: &Pipeline, i: usize, obs: &dyn Observer) {
        let mut stack = self.dependents[i].clone();
        while let Some(d) = stack.pop() {
            if self.outcomes[d].is_some() {
                continue;
            }
            let o = NodeOutcome {
                instance: p.instances[d].name.clone(),
                kind: p.decl(&p.instances[d]).kind.name().to_string(),
                key: None,
                outcome: Outcome::Skipped {
                    upstream: p.instances[i].name.clone(),
                },
                seconds: 0.0,
                threads: None,
            };
            obs.finished(&o);
            self.outcomes[d] = Some(o);
            stack.extend(self.dependents[d].iter().copied());
        }
    }

    /// The ready instances that start now on `free` of the `budget`'s
    /// threads, as (instance, threads), taken out of the ready set.
    fn start(&mut self, p: &Pipeline, free: usize, budget: usize) -> Vec<(usize, usize)> {
        let order: Vec<usize> = self.ready.iter().copied().collect();
        let appetites: Vec<_> = order
            .iter()
            .map(|&i| {
                let inst = &p.instances[i];
                p.decl(inst).kind.appetite(p.params(inst))
            })
            .collect();
        let starts: Vec<(usize, usize)> = budget::allocate(free, budget, &appetites)
            .into_iter()
            .map(|(pos, threads)| (order[pos], threads))
            .collect();
        for (i, _) in &starts {
            self.ready.remove(i);
        }
        starts
    }
}

/// What a finished instance sends back to the scheduler: its index, the
/// threads it held, its outcome and its artifact (none when it failed).
type Done = (usize, usize, NodeOutcome, Option<Artifact>);

impl Engine<'_> {
    /// Runs the needed instances; stale ones execute, fresh ones are reused.
    /// Ready instances start as the thread budget allows
    /// ([`budget::allocate`]), each on a thread of its own.
    pub fn run(&self, opts: &RunOptions, obs: &dyn Observer) -> Result<RunReport, EngineError> {
        self.run_on(opts, obs, None)
    }

    /// [`Engine::run`], executing stale instances as Slurm jobs when
    /// `slurm` is given: every ready instance is submitted at once (the
    /// cluster schedules them), each waited for by a thread of its own.
    /// When [`interrupted`] turns true, the run's jobs are cancelled and
    /// the run ends with what finished.
    pub fn run_on(
        &self,
        opts: &RunOptions,
        obs: &dyn Observer,
        slurm: Option<&SlurmExecutor>,
    ) -> Result<RunReport, EngineError> {
        let start = Instant::now();
        let p = self.pipeline;
        let needed = self.needed(&opts.targets)?;
        let mut targets = vec![opts.targets.is_empty(); p.instances.len()];
        for t in &opts.targets {
            for i in self.resolve(t)? {
                targets[i] = true;
            }
        }
        let mut forced = vec![false; p.instances.len()];
        for f in &opts.force {
            for i in self.resolve(f)? {
                forced[i] = true;
            }
        }
        let mut prog = Progression::new(p, &needed);
        // Set once by the scheduler when an instance completes; workers
        // only read the entries of completed upstreams.
        let arts: Vec<OnceLock<Artifact>> =
            (0..p.instances.len()).map(|_| OnceLock::new()).collect();
        let budget = opts.threads.max(1);
        // Held until the run ends: what it uses is kept from `gc`.
        let lease = self
            .store
            .lease(&LeaseHeader::here(&p.name, Some(&p.path)))?;
        let lease = &lease;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<Done>();
            let (mut free, mut running) = (budget, 0usize);
            let mut cancelled = false;
            loop {
                let starts = match slurm {
                    // The cluster schedules: every ready instance goes now.
                    Some(sx) => std::mem::take(&mut prog.ready)
                        .into_iter()
                        .map(|i| (i, (sx.threads)(i)))
                        .collect(),
                    None => prog.start(p, free, budget),
                };
                for (i, threads) in starts {
                    if slurm.is_none() {
                        free -= threads;
                    }
                    running += 1;
                    let (tx, arts, force) = (tx.clone(), &arts, forced[i]);
                    let how = How {
                        force,
                        only: opts.only && !targets[i],
                        slurm,
                    };
                    scope.spawn(move || {
                        let t = Instant::now();
                        let (mut outcome, art) = self.process(i, arts, how, threads, lease, obs);
                        outcome.seconds = t.elapsed().as_secs_f64();
                        let _ = tx.send((i, threads, outcome, art));
                    });
                }
                if running == 0 {
                    debug_assert!(prog.ready.is_empty(), "a ready instance always fits");
                    break;
                }
                let (i, threads, outcome, art) = loop {
                    match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                        Ok(done) => break done,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if let (Some(sx), true, false) = (slurm, interrupted(), cancelled) {
                                cancelled = true;
                                let _ = sx.queue.cancel_all();
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            unreachable!("the scheduler holds a sender")
                        }
                    }
                };
                running -= 1;
                if slurm.is_none() {
                    free += threads;
                }
                obs.finished(&outcome);
                let ok = art.is_some();
                if let Some(a) = art {
                    let _ = arts[i].set(a);
                }
                prog.finish(p, i, outcome, ok, obs);
                if cancelled || (slurm.is_some() && interrupted()) {
                    // Interrupted: start nothing more.
                    prog.ready.clear();
                }
            }
        });
        self.store.save_memo()?;
        Ok(RunReport {
            pipeline: p.name.clone(),
            nodes: prog.outcomes.into_iter().flatten().collect(),
            seconds: start.elapsed().as_secs_f64(),
            threads: budget,
        })
    }

    /// Brings one instance up to date: reuse, or execute and commit.
    fn process(
        &self,
        i: usize,
        arts: &[OnceLock<Artifact>],
        how: How<'_>,
        threads: usize,
        lease: &Lease,
        obs: &dyn Observer,
    ) -> (NodeOutcome, Option<Artifact>) {
        let p = self.pipeline;
        let inst = &p.instances[i];
        let decl = p.decl(inst);
        let mut out = NodeOutcome {
            instance: inst.name.clone(),
            kind: decl.kind.name().to_string(),
            key: None,
            outcome: Outcome::Reused,
            seconds: 0.0,
            threads: None,
        };
        let fail = |mut out: NodeOutcome, error: &dyn Diagnostic| {
            out.outcome = Outcome::failed(error);
            (out, None)
        };
        let (pre, inputs) = match self.preimage(i, arts) {
            Ok(x) => x,
            Err(e) => return fail(out, &e),
        };
        let key = pre.key();
        out.key = Some(key.clone());
        let work_key = decl.kind.resumable().map(|ex| pre.work_key(ex));
        if let Err(e) = lease.hold(&key, work_key.as_deref()) {
            return fail(out, &EngineError::Store(e));
        }
        let force = how.force;
        let reason = if force {
            Reason::Forced
        } else {
            match self.freshness(i, &pre) {
                Ok(a) => return self.reused(out, &pre, a),
                Err(r) => r,
            }
        };
        if !force && self.on_remote(&key) {
            let remote = self.remote.expect("on_remote needs a remote");
            return match remote.pull(self.store, &key, &crate::remote::Silent) {
                Ok(pulled) => {
                    let (files, bytes) = (pulled.files, pulled.bytes);
                    let (mut out, art) = self.reused(out, &pre, pulled.artifact);
                    if art.is_some() && bytes + files as u64 > 0 {
                        out.outcome = Outcome::Pulled { files, bytes };
                    }
                    (out, art)
                }
                Err(e) => fail(out, &EngineError::Remote(e)),
            };
        }
        if how.only {
            return fail(
                out,
                &EngineError::NotATarget {
                    node: inst.name.clone(),
                    reason: reason.to_string(),
                },
            );
        }
        if let Some(sx) = how.slurm {
            obs.started(&inst.name, &reason, threads);
            out.threads = Some(threads);
            return match self.on_slurm(sx, i, &key, threads) {
                Ok(art) => match self.record(&inst.name, &pre) {
                    Ok(()) => {
                        out.outcome = Outcome::Executed { reason };
                        (out, Some(art))
                    }
                    Err(e) => fail(out, &EngineError::Store(e)),
                },
                Err(e) => fail(out, &e),
            };
        }
        let writer = match self.store.begin(&key, force) {
            Ok(Begin::Hit(a)) => return self.reused(out, &pre, a),
            Ok(Begin::Miss(w)) => w,
            Err(e) => return fail(out, &EngineError::Store(e)),
        };
        obs.started(&inst.name, &reason, threads);
        out.threads = Some(threads);
        let mut grouped = std::collections::BTreeMap::<String, Vec<_>>::new();
        for (param, a) in inputs {
            grouped.entry(param).or_default().push(a);
        }
        let work = match &work_key {
            Some(w) => match self.store.work_dir(w) {
                Ok(d) => Some(d),
                Err(e) => return fail(out, &EngineError::Store(e)),
            },
            None => None,
        };
        let derived = self.store.derived_dir();
        let progress = obs.progress(&inst.name);
        let out_dir = writer.out_dir();
        let ctx = RunCtx {
            instance: &inst.name,
            fold: inst.fold,
            params: p.params(inst),
            seed: p.seed(inst),
            base_dir: &p.base_dir,
            inputs: &grouped,
            out: &out_dir,
            progress: progress.as_ref(),
            threads,
            work: work.as_deref(),
            derived: &derived,
            device: p.device,
        };
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            on_threads(threads, || decl.kind.run(&ctx))
        }))
        .unwrap_or_else(|panic| {
            Err(NodeError::new(codes::PANIC, panic_message(&panic))
                .with_help("this is a bug in foldwise: please report it with the pipeline file"))
        });
        drop(progress);
        if let Err(e) = result {
            return fail(out, &e);
        }
        let meta = json!({
            "pipeline": p.name,
            "instance": inst.name,
            "seconds": started.elapsed().as_secs_f64(),
            "finished_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        });
        let art = match writer.commit(&pre.to_value(), &meta) {
            Ok(a) => a,
            Err(e) => return fail(out, &EngineError::Store(e)),
        };
        if let Err(e) = self.record(&inst.name, &pre) {
            return fail(out, &EngineError::Store(e));
        }
        out.outcome = Outcome::Executed { reason };
        (out, Some(art))
    }

    /// Runs instance `i` as a Slurm job and waits for it; its artifact
    /// (`key`) once the job has put it into the shared cache.
    fn on_slurm(
        &self,
        sx: &SlurmExecutor,
        i: usize,
        key: &str,
        threads: usize,
    ) -> Result<Artifact, EngineError> {
        let name = &self.pipeline.instances[i].name;
        let tag: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let cmd = (sx.job_command)(name, threads);
        let id = sx
            .queue
            .submit(&tag, &cmd, &(sx.resources)(i))
            .map_err(|e| EngineError::Slurm(e.to_string()))?;
        let end = sx.queue.wait(&id, &tag);
        let deadline = Instant::now() + sx.patience;
        loop {
            if let crate::store::Check::Ok(a) = self.store.check(key) {
                if end.succeeded() {
                    return Ok(a);
                }
            }
            if !end.succeeded() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let state = end
            .state
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "ended".into());
        let exit = match end.exit {
            Some(c) => format!("exit status {c}"),
            None => "no exit status".into(),
        };
        let what = if end.succeeded() {
            "succeeded but its artifact is not in the cache".to_string()
        } else {
            format!("{state} ({exit})")
        };
        Err(EngineError::SlurmJob {
            id,
            what,
            log: end.log.clone(),
            tail: end.log_tail(10),
        })
    }

    fn reused(
        &self,
        mut out: NodeOutcome,
        pre: &crate::fingerprint::PreImage,
        a: Artifact,
    ) -> (NodeOutcome, Option<Artifact>) {
        if let Err(e) = self.record(&out.instance, pre) {
            out.outcome = Outcome::failed(&EngineError::Store(e));
            return (out, None);
        }
        out.outcome = Outcome::Reused;
        (out, Some(a))
    }

    /// Remembers the key this instance now stands at (only when it moved).
    fn record(&self, instance: &str, pre: &crate::fingerprint::PreImage) -> std::io::Result<()> {
        let key = pre.key();
        if let Some(r) = self.store.read_ref(&self.pipeline.name, instance) {
            if r.key == key {
                return Ok(());
            }
        }
        self.store.write_ref(
            &self.pipeline.name,
            instance,
            &RefRecord {
                key,
                preimage: pre.to_value(),
            },
        )
    }
}

/// `f` run inside a rayon pool of `threads` threads (so that a kind's
/// rayon work stays within its share of the budget), or on the calling
/// thread's pool when no pool can be made.
fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    let s = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("the node panicked: {s}")
}

/// How one instance is brought up to date.
#[derive(Clone, Copy)]
struct How<'a> {
    force: bool,
    /// Fail rather than execute (it is not a target of an `--only` run).
    only: bool,
    slurm: Option<&'a SlurmExecutor>,
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the run was asked to stop (SIGINT or SIGTERM, once
/// [`stop_on_signals`] is installed).
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM only set [`interrupted`]: a Slurm run
/// then cancels its jobs and ends with what finished.
pub fn stop_on_signals() {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}
