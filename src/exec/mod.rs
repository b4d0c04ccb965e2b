//! The executor: works out each instance's key from its inputs, says which
//! instances are fresh or stale and why, and runs the stale ones — in
//! parallel where the graph allows, sharing a thread budget — committing
//! each artifact to the store.
//!
//! Guarantees:
//! - an instance's key is computed only from its upstream artifacts'
//!   digests, so an upstream rerun that reproduces its bytes leaves it fresh;
//! - a node executes only on a store miss, under the key's lock;
//! - a failed node never leaves an artifact; its dependents are skipped,
//!   independent branches still finish.

mod budget;
mod observer;
mod run;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

use crate::config::{Edge, Pipeline};
use crate::fingerprint::{instance_preimage, PreImage, Reason};
use crate::kind::InputArtifact;
use crate::remote::{Remote, RemoteError};
use crate::store::{Artifact, Check, Store};

pub use budget::allocate;
pub use observer::{NullObserver, Observer};
pub use run::{
    interrupted, machine_threads, stop_on_signals, NodeOutcome, Outcome, RunOptions, RunReport,
    SlurmExecutor,
};

/// Input artifacts by parameter path, in edge order.
pub type NamedInputs = Vec<(String, InputArtifact)>;

/// A pipeline bound to a store (and maybe a remote cache), under the
/// pipeline's name.
pub struct Engine<'a> {
    pub pipeline: &'a Pipeline,
    pub store: &'a Store,
    /// Consulted on a local miss: `status` says `remote`, `run` pulls.
    pub remote: Option<&'a Remote>,
    /// The first error the remote gave (it is then consulted no more).
    remote_error: OnceLock<RemoteError>,
}

/// Fresh or stale, for one instance.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub instance: String,
    pub kind: String,
    /// The key, when it can be computed now (every upstream fresh).
    pub key: Option<String>,
    /// The work key of a resumable kind, when the key is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_key: Option<String>,
    /// `None` when fresh.
    pub stale: Option<Reason>,
    /// Stale here, but the remote cache has its artifact: `run` pulls it
    /// instead of computing it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    #[serde(skip)]
    pub artifact: Option<Artifact>,
}

impl NodeStatus {
    pub fn is_fresh(&self) -> bool {
        self.stale.is_none()
    }
}

/// Errors of the engine (not of a node's own work).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EngineError {
    #[error("no node or instance named `{name}` in the pipeline{}", hint(.suggestion))]
    #[diagnostic(code(foldwise::engine::unknown_target))]
    UnknownTarget {
        name: String,
        suggestion: Option<String>,
    },
    #[error("input `{param}`: {path}: {message}")]
    #[diagnostic(
        code(foldwise::engine::external_input),
        help("the file or folder a parameter names must exist and be readable when the node's key is computed")
    )]
    External {
        param: String,
        path: PathBuf,
        message: String,
    },
    #[error("upstream `{node}` has no part file `{file}`")]
    #[diagnostic(code(foldwise::engine::missing_part))]
    MissingPart { node: String, file: String },
    #[error("cache: {0}")]
    #[diagnostic(code(foldwise::engine::cache))]
    Store(#[from] std::io::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Remote(#[from] RemoteError),
    #[error(
        "`{node}` is not in the shared cache ({reason}), and this run executes only its targets"
    )]
    #[diagnostic(
        code(foldwise::engine::not_a_target),
        help("a Slurm job runs one instance whose upstreams are done; run the pipeline again from the orchestrator")
    )]
    NotATarget { node: String, reason: String },
    #[error("slurm: {0}")]
    #[diagnostic(
        code(foldwise::slurm::command),
        help(
            "`sbatch`, `squeue` and `scancel` must be on PATH and reach the cluster's controller"
        )
    )]
    Slurm(String),
    #[error("Slurm job {id} {what}; its log ({}) ends:\n{tail}", log.display())]
    #[diagnostic(code(foldwise::slurm::job_failed))]
    SlurmJob {
        id: String,
        what: String,
        log: PathBuf,
        tail: String,
    },
}

fn hint(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

impl<'a> Engine<'a> {
    pub fn new(pipeline: &'a Pipeline, store: &'a Store) -> Self {
        Self::with_remote(pipeline, store, None)
    }

    /// An engine that consults `remote` on a local miss.
    pub fn with_remote(
        pipeline: &'a Pipeline,
        store: &'a Store,
        remote: Option<&'a Remote>,
    ) -> Self {
        Engine {
            pipeline,
            store,
            remote,
            remote_error: OnceLock::new(),
        }
    }

    /// The error that made the remote be ignored, if one did.
    pub fn remote_error(&self) -> Option<&RemoteError> {
        self.remote_error.get()
    }

    /// Whether the remote holds `key`: `false` without a remote, or once
    /// it has failed (its error is kept for [`Engine::remote_error`]).
    pub fn on_remote(&self, key: &str) -> bool {
        let Some(remote) = self.remote else {
            return false;
        };
        if self.remote_error.get().is_some() {
            return false;
        }
        match remote.has(key) {
            Ok(b) => b,
            Err(e) => {
                let _ = self.remote_error.set(e);
                false
            }
        }
    }

    /// The artifact the remote holds for `key`, as its manifest describes
    /// it (its folder is where a pull would put it): enough to work out
    /// the keys below it.
    fn remote_artifact(&self, key: &str) -> Option<Artifact> {
        let remote = self.remote?;
        match remote.manifest(key, self.store.root()) {
            Ok(m) => Some(m.artifact(self.store)),
            Err(e) => {
                let _ = self.remote_error.set(e);
                None
            }
        }
    }

    /// Instances named by `targets` (declared node names give all their
    /// instances) plus all their ancestors; every instance when empty.
    pub fn needed(&self, targets: &[String]) -> Result<Vec<bool>, EngineError> {
        let p = self.pipeline;
        let n = p.instances.len();
        if targets.is_empty() {
            return Ok(vec![true; n]);
        }
        let mut needed = vec![false; n];
        let mut stack = Vec::new();
        for t in targets {
            let hits = self.resolve(t)?;
            stack.extend(hits);
        }
        while let Some(i) = stack.pop() {
            if needed[i] {
                continue;
            }
            needed[i] = true;
            stack.extend(p.instances[i].inputs.iter().map(|e| e.from));
        }
        Ok(needed)
    }

    /// Instance indices for a declared node name or an instance name.
    pub fn resolve(&self, name: &str) -> Result<Vec<usize>, EngineError> {
        let p = self.pipeline;
        let hits: Vec<usize> = p
            .instances
            .iter()
            .enumerate()
            .filter(|(_, inst)| inst.name == name || p.nodes[inst.node].name == name)
            .map(|(i, _)| i)
            .collect();
        if hits.is_empty() {
            let suggestion = p
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .chain(p.instances.iter().map(|i| i.name.as_str()))
                .map(|c| (strsim::jaro_winkler(name, c), c))
                .filter(|(s, _)| *s > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, c)| c.to_string());
            return Err(EngineError::UnknownTarget {
                name: name.to_string(),
                suggestion,
            });
        }
        Ok(hits)
    }

    /// The pre-image of instance `i` given its upstream artifacts, and its
    /// input artifacts as the node sees them; hashes the external files it
    /// declares (through the memo).
    pub fn preimage(
        &self,
        i: usize,
        arts: &[OnceLock<Artifact>],
    ) -> Result<(PreImage, NamedInputs), EngineError> {
        let p = self.pipeline;
        let mut named = Vec::new();
        let upstream = |e: &Edge, part_file: Option<&str>| {
            let up = &p.instances[e.from];
            let art = arts[e.from]
                .get()
                .expect("inputs are resolved only when every upstream is done");
            let (digest, part) = match part_file {
                Some(file) => {
                    let d =
                        art.manifest
                            .file_digest(file)
                            .ok_or_else(|| EngineError::MissingPart {
                                node: up.name.clone(),
                                file: file.to_string(),
                            })?;
                    (d, Some(art.dir.join(file)))
                }
                None => (art.digest.clone(), None),
            };
            named.push((
                e.param.clone(),
                InputArtifact {
                    digest: digest.clone(),
                    node: up.name.clone(),
                    dir: art.dir.clone(),
                    part,
                },
            ));
            Ok(digest)
        };
        let unreadable = |param: &str, path: &Path, e: std::io::Error| {
            Err(EngineError::External {
                param: param.to_string(),
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        };
        let pre = instance_preimage(p, i, self.store.memo(), upstream, unreadable)?;
        Ok((pre, named))
    }

    /// Why instance `i` would run now, given its current pre-image, or
    /// `Ok(artifact)` when its artifact is complete and intact.
    pub fn freshness(&self, i: usize, pre: &PreImage) -> Result<Artifact, Reason> {
        let key = pre.key();
        match self.store.check(&key) {
            Check::Ok(a) => Ok(a),
            Check::Corrupted(detail) => Err(Reason::ArtifactCorrupted { detail }),
            Check::Missing => {
                let inst = &self.pipeline.instances[i];
                let old = self
                    .store
                    .read_ref(&self.pipeline.name, &inst.name)
                    .and_then(|r| PreImage::from_value(&r.preimage));
                Err(match old {
                    None => Reason::NeverRun,
                    Some(old) => {
                        crate::fingerprint::diff(&old, pre).unwrap_or(Reason::ArtifactMissing)
                    }
                })
            }
        }
    }

    /// Status of the needed instances (all when `needed` is all true), in
    /// topological order. Reads no file whose (size, mtime, inode) is known.
    pub fn status(&self, needed: &[bool]) -> Vec<NodeStatus> {
        let p = self.pipeline;
        let arts: Vec<OnceLock<Artifact>> =
            (0..p.instances.len()).map(|_| OnceLock::new()).collect();
        let mut stale: Vec<bool> = vec![false; p.instances.len()];
        let mut out = Vec::new();
        for (i, inst) in p.instances.iter().enumerate() {
            if !needed[i] {
                continue;
            }
            let kind = p.decl(inst).kind.name().to_string();
            let mut st = NodeStatus {
                instance: inst.name.clone(),
                kind,
                key: None,
                work_key: None,
                stale: None,
                remote: false,
                artifact: None,
            };
            if let Some(e) = inst.inputs.iter().find(|e| stale[e.from]) {
                st.stale = Some(Reason::UpstreamStale {
                    node: p.instances[e.from].name.clone(),
                });
            } else {
                match self.preimage(i, &arts) {
                    Err(e) => {
                        st.stale = Some(Reason::Unreadable {
                            detail: e.to_string(),
                        })
                    }
                    Ok((pre, _)) => {
                        st.key = Some(pre.key());
                        st.work_key = p.decl(inst).kind.resumable().map(|ex| pre.work_key(ex));
                        match self.freshness(i, &pre) {
                            Ok(a) => {
                                let _ = arts[i].set(a.clone());
                                st.artifact = Some(a);
                            }
                            Err(r) => {
                                let key = st.key.as_deref().expect("set above");
                                if self.on_remote(key) {
                                    if let Some(a) = self.remote_artifact(key) {
                                        let _ = arts[i].set(a);
                                        st.remote = true;
                                    }
                                }
                                st.stale = Some(r);
                            }
                        }
                    }
                }
            }
            // A node the remote has is no obstacle to the keys below it.
            stale[i] = st.stale.is_some() && !st.remote;
            out.push(st);
        }
        out
    }
}
