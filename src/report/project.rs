//! Keys without running: every instance's pre-image and key as a run would
//! compute them, including instances whose upstreams have not run yet.
//!
//! An upstream with a complete artifact enters its dependants' pre-images
//! with its real digest (as in [`crate::exec::Engine::status`]); one without
//! enters as `pending:<its key>`. Two pipelines that would compute the same
//! pending upstream therefore project the same downstream keys, and a
//! pending upstream never matches a real digest. A projected key is the
//! real key whenever every upstream has run.

use crate::config::Pipeline;
use crate::fingerprint::{external_digest, PreImage, ResolvedExternal, ResolvedInput};
use crate::kind::Kind;
use crate::store::{Artifact, Check, Store};

/// One instance, projected.
#[derive(Debug, Clone)]
pub struct Projected {
    pub instance: String,
    pub kind: String,
    /// The kind itself: what its artifacts offer the report.
    pub kind_ref: &'static dyn Kind,
    pub pre: PreImage,
    pub key: String,
    /// The complete, intact artifact of `key`, when there is one.
    pub artifact: Option<Artifact>,
}

/// Projects every instance of `p`, in topological order. Reads no file
/// whose (size, mtime, inode) the store's memo knows.
pub fn project(p: &Pipeline, store: &Store) -> Vec<Projected> {
    let mut out: Vec<Projected> = Vec::with_capacity(p.instances.len());
    for inst in &p.instances {
        let decl = p.decl(inst);
        let mut inputs = Vec::new();
        for e in &inst.inputs {
            let up: &Projected = &out[e.from];
            let file = e
                .part
                .map(|k| p.nodes[p.instances[e.from].node].kind.part_file(k));
            let digest = match (&up.artifact, &file) {
                (Some(a), None) => a.digest.clone(),
                (Some(a), Some(f)) => a
                    .manifest
                    .file_digest(f)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("missing-part:{}#{f}", up.key)),
                (None, None) => format!("pending:{}", up.key),
                (None, Some(f)) => format!("pending:{}#{f}", up.key),
            };
            inputs.push(ResolvedInput {
                param: e.param.clone(),
                node: up.instance.clone(),
                digest,
            });
        }
        let externals = decl
            .kind
            .external_inputs(&decl.params, &p.base_dir)
            .into_iter()
            .map(|(param, path)| {
                let digest = external_digest(&path, store.memo())
                    .unwrap_or_else(|e| format!("unreadable:{e}"));
                ResolvedExternal {
                    param,
                    path,
                    digest,
                }
            })
            .collect();
        let pre = PreImage::new(
            decl.kind.name(),
            decl.kind.version(),
            decl.kind.params(),
            &decl.params,
            decl.seed,
            inst.fold,
            inputs,
            externals,
        );
        let key = pre.key();
        let artifact = match store.check(&key) {
            Check::Ok(a) => Some(a),
            _ => None,
        };
        out.push(Projected {
            instance: inst.name.clone(),
            kind: decl.kind.name().to_string(),
            kind_ref: decl.kind,
            pre,
            key,
            artifact,
        });
    }
    out
}
