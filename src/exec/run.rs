//! Running a pipeline: a scheduler over the instance graph that executes
//! ready instances on up to `jobs` threads.

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

use super::{Engine, EngineError, Observer};

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Node or instance names; empty means every node.
    pub targets: Vec<String>,
    /// Node or instance names to recompute even when fresh.
    pub force: Vec<String>,
    /// Instances executing at once.
    pub jobs: usize,
    /// Threads a node may use for its own work.
    pub threads: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            targets: Vec::new(),
            force: Vec::new(),
            jobs: 1,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// How one instance ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Computed now.
    Executed { reason: Reason },
    /// Its artifact was already in the cache.
    Reused,
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
}

/// The result of a run, in topological order.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub nodes: Vec<NodeOutcome>,
    pub seconds: f64,
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

impl Engine<'_> {
    /// Runs the needed instances; stale ones execute, fresh ones are reused.
    pub fn run(&self, opts: &RunOptions, obs: &dyn Observer) -> Result<RunReport, EngineError> {
        let start = Instant::now();
        let p = self.pipeline;
        let n = p.instances.len();
        let needed = self.needed(&opts.targets)?;
        let mut forced = vec![false; n];
        for f in &opts.force {
            for i in self.resolve(f)? {
                forced[i] = true;
            }
        }
        // Graph bookkeeping over the needed instances.
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
        let mut ready: BTreeSet<usize> = (0..n).filter(|&i| needed[i] && waiting[i] == 0).collect();
        // Set once by the scheduler when an instance completes; workers
        // only read the entries of completed upstreams.
        let arts: Vec<OnceLock<Artifact>> = (0..n).map(|_| OnceLock::new()).collect();
        let arts = &arts;
        let mut outcomes: Vec<Option<NodeOutcome>> = vec![None; n];
        let jobs = opts.jobs.max(1);
        // Held until the run ends: what it uses is kept from `gc`.
        let lease = self
            .store
            .lease(&LeaseHeader::here(&p.name, Some(&p.path)))?;
        let lease = &lease;

        // A fixed pool of `jobs` workers fed through a channel.
        let (work_tx, work_rx) = mpsc::channel::<usize>();
        let work_rx = std::sync::Mutex::new(work_rx);
        let work_rx = &work_rx;
        let forced = &forced;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(usize, NodeOutcome, Option<Artifact>)>();
            for _ in 0..jobs {
                let tx = tx.clone();
                scope.spawn(move || loop {
                    let next = work_rx.lock().unwrap().recv();
                    let Ok(i) = next else { break };
                    let t = Instant::now();
                    let (mut outcome, art) = self.process(i, arts, forced[i], opts, lease, obs);
                    outcome.seconds = t.elapsed().as_secs_f64();
                    if tx.send((i, outcome, art)).is_err() {
                        break;
                    }
                });
            }
            let mut running = 0usize;
            loop {
                while running < jobs {
                    let Some(i) = ready.pop_first() else { break };
                    running += 1;
                    work_tx
                        .send(i)
                        .expect("workers live until the queue closes");
                }
                if running == 0 {
                    drop(work_tx);
                    break;
                }
                let (i, outcome, art) = rx.recv().expect("a worker always reports");
                running -= 1;
                obs.finished(&outcome);
                let failed = art.is_none();
                if let Some(a) = art {
                    let _ = arts[i].set(a);
                }
                outcomes[i] = Some(outcome);
                if failed {
                    // Skip everything downstream of the failure.
                    let mut stack = dependents[i].clone();
                    while let Some(d) = stack.pop() {
                        if outcomes[d].is_some() {
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
                        };
                        obs.finished(&o);
                        outcomes[d] = Some(o);
                        stack.extend(dependents[d].iter().copied());
                    }
                } else {
                    for &d in &dependents[i] {
                        waiting[d] -= 1;
                        if waiting[d] == 0 && outcomes[d].is_none() {
                            ready.insert(d);
                        }
                    }
                }
            }
        });
        self.store.save_memo()?;
        Ok(RunReport {
            pipeline: p.name.clone(),
            nodes: outcomes.into_iter().flatten().collect(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Brings one instance up to date: reuse, or execute and commit.
    fn process(
        &self,
        i: usize,
        arts: &[OnceLock<Artifact>],
        force: bool,
        opts: &RunOptions,
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
        let reason = if force {
            Reason::Forced
        } else {
            match self.freshness(i, &pre) {
                Ok(a) => return self.reused(out, &pre, a),
                Err(r) => r,
            }
        };
        let writer = match self.store.begin(&key, force) {
            Ok(Begin::Hit(a)) => return self.reused(out, &pre, a),
            Ok(Begin::Miss(w)) => w,
            Err(e) => return fail(out, &EngineError::Store(e)),
        };
        obs.started(&inst.name, &reason);
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
            params: &decl.params,
            seed: decl.seed,
            base_dir: &p.base_dir,
            inputs: &grouped,
            out: &out_dir,
            progress: progress.as_ref(),
            threads: opts.threads.max(1),
            work: work.as_deref(),
            derived: &derived,
        };
        let started = Instant::now();
        let result =
            catch_unwind(AssertUnwindSafe(|| decl.kind.run(&ctx))).unwrap_or_else(|panic| {
                Err(
                    NodeError::new(codes::PANIC, panic_message(&panic)).with_help(
                        "this is a bug in foldwise: please report it with the pipeline file",
                    ),
                )
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

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    let s = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("the node panicked: {s}")
}
