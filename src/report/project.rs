//! Keys without running: every instance's pre-image and key as a run would
//! compute them, including instances whose upstreams have not run yet.
//!
//! An upstream with a complete artifact enters its dependants' pre-images
//! with its real digest (as in [`crate::exec::Engine::status`]); one without
//! enters as `pending:<its key>`. Two pipelines that would compute the same
//! pending upstream therefore project the same downstream keys, and a
//! pending upstream never matches a real digest. A projected key is the
//! real key whenever every upstream has run.

use std::convert::Infallible;
use std::path::Path;

use crate::config::{Edge, Pipeline};
use crate::fingerprint::{instance_preimage, PreImage};
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
    /// The complete, intact artifact of `key`, when there is one (here,
    /// or as the remote cache describes it).
    pub artifact: Option<Artifact>,
    /// `Some(recorded seconds, when known)` when the artifact is on the
    /// remote cache and not here.
    pub remote: Option<Option<f64>>,
}

/// What the remote cache holds for a key: the artifact as its manifest
/// describes it, and its recorded compute seconds.
pub type RemoteLookup<'a> = &'a dyn Fn(&str) -> Option<(Artifact, Option<f64>)>;

/// Projects every instance of `p`, in topological order. Reads no file
/// whose (size, mtime, inode) the store's memo knows.
pub fn project(p: &Pipeline, store: &Store) -> Vec<Projected> {
    project_with(p, store, None)
}

/// [`project`], consulting `remote` for a key that has no artifact here.
pub fn project_with(p: &Pipeline, store: &Store, remote: Option<RemoteLookup>) -> Vec<Projected> {
    let mut out: Vec<Projected> = Vec::with_capacity(p.instances.len());
    for (i, inst) in p.instances.iter().enumerate() {
        let upstream = |e: &Edge, part_file: Option<&str>| {
            Ok::<_, Infallible>(projected_digest(&out[e.from], part_file))
        };
        let unreadable = |_: &str, _: &Path, e: std::io::Error| Ok(format!("unreadable:{e}"));
        let Ok(pre) = instance_preimage(p, i, store.memo(), upstream, unreadable);
        let key = pre.key();
        let (artifact, remote) = match store.check(&key) {
            Check::Ok(a) => (Some(a), None),
            _ => match remote.and_then(|r| r(&key)) {
                Some((a, seconds)) => (Some(a), Some(seconds)),
                None => (None, None),
            },
        };
        out.push(Projected {
            instance: inst.name.clone(),
            kind: p.decl(inst).kind.name().to_string(),
            kind_ref: p.decl(inst).kind,
            pre,
            key,
            artifact,
            remote,
        });
    }
    out
}

/// The digest an upstream enters with: its artifact's (or its part file's)
/// when it has one, else `pending:` its key (and the part file).
fn projected_digest(up: &Projected, part_file: Option<&str>) -> String {
    match (&up.artifact, part_file) {
        (Some(a), None) => a.digest.clone(),
        (Some(a), Some(f)) => a
            .manifest
            .file_digest(f)
            .unwrap_or_else(|| format!("missing-part:{}#{f}", up.key)),
        (None, None) => format!("pending:{}", up.key),
        (None, Some(f)) => format!("pending:{}#{f}", up.key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{Engine, NullObserver, RunOptions};

    /// Whole artifacts, a fold part and an external file.
    const PIPELINE: &str = r#"
[pipeline]
name = "projected"

[nodes.plates]
kind = "synthetic"
count = 12

[nodes.folds]
kind = "split"
data = "plates"
k = 3

[nodes.peek]
kind = "command"
inputs = { f = "folds[1]", d = "plates" }
deps = ["dep.txt"]
shell = "cp $FOLDWISE_INPUT_F_PART $FOLDWISE_OUT/"
"#;

    #[test]
    fn projected_keys_are_the_real_keys_after_a_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), PIPELINE).unwrap();
        std::fs::write(dir.path().join("dep.txt"), "dep").unwrap();
        let p = crate::config::load(&dir.path().join("p.toml"), crate::nodes::KINDS).unwrap();
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let before = project(&p, &store);
        assert!(before[1].pre.hashed.inputs[0]
            .digest
            .starts_with("pending:"));
        let report = Engine::new(&p, &store)
            .run(&RunOptions::default(), &NullObserver)
            .unwrap();
        assert!(report.ok(), "{report:?}");
        let projected: Vec<(String, Option<String>)> = project(&p, &store)
            .into_iter()
            .map(|x| (x.instance, Some(x.key)))
            .collect();
        let real: Vec<(String, Option<String>)> = report
            .nodes
            .into_iter()
            .map(|n| (n.instance, n.key))
            .collect();
        assert_eq!(projected, real);
        assert_eq!(before[0].key, projected[0].1.clone().unwrap());
    }
}
