//! Node keys. A key is BLAKE3 over a pre-image holding everything that can
//! change a node's output: its kind and kind version, its canonical
//! parameters (defaults filled in; references blanked, since an input is
//! identified by its digest, not by its node's name), its seed and fold,
//! the digests of its upstream artifacts (or of the fold part it reads),
//! and the digests of the external files it declares.
//!
//! What is never hashed: node and pipeline names, absolute paths, mtimes,
//! timings, thread counts (nor the parameters that set them: a kind's
//! [`crate::kind::Kind::unkeyed`], such as a `command`'s `threads`). The pre-image also carries an `explain` section
//! (not hashed) with the names and paths, so staleness explains itself.
//!
//! Guarantee: equal pre-images give equal keys across runs, machines and
//! thread counts (serde_json maps are sorted; structs serialise in field
//! order).

mod stale;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Edge, Pipeline};
use crate::kind::schema::{Param, Ty};
use crate::store::FileMemo;

pub use stale::{changes, diff, Reason};

/// Bumped when the key layout itself changes.
const KEY_FORMAT: &str = "foldwise-key-1";

/// What went into a key, plus what explains it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreImage {
    pub hashed: Hashed,
    pub explain: Explain,
}

/// The hashed part of a pre-image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hashed {
    pub kind: String,
    pub kind_version: u32,
    pub seed: u64,
    pub fold: Option<usize>,
    /// Canonical parameters with every reference replaced by `"<ref>"`.
    pub params: Value,
    /// Upstream digests by parameter path, in parameter order.
    pub inputs: Vec<Digested>,
    /// External file/folder digests by parameter path.
    pub externals: Vec<Digested>,
}

/// A digest attached to a parameter path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digested {
    pub param: String,
    pub digest: String,
}

/// The part of a pre-image that explains but is not hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explain {
    /// Canonical parameters as written (references by name).
    pub params: Value,
    /// Upstream instance names, parallel to `Hashed::inputs`.
    pub inputs: Vec<String>,
    /// External paths, parallel to `Hashed::externals`.
    pub externals: Vec<PathBuf>,
}

/// An upstream input of an instance, resolved.
pub struct ResolvedInput {
    pub param: String,
    pub node: String,
    pub digest: String,
}

/// An external file or folder, hashed.
pub struct ResolvedExternal {
    pub param: String,
    pub path: PathBuf,
    pub digest: String,
}

impl PreImage {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: &str,
        kind_version: u32,
        schema: &[Param],
        params: &Value,
        seed: u64,
        fold: Option<usize>,
        inputs: Vec<ResolvedInput>,
        externals: Vec<ResolvedExternal>,
    ) -> PreImage {
        let mut hashed_params = params.clone();
        blank_refs(&mut hashed_params, schema);
        PreImage {
            hashed: Hashed {
                kind: kind.to_string(),
                kind_version,
                seed,
                fold,
                params: hashed_params,
                inputs: inputs
                    .iter()
                    .map(|i| Digested {
                        param: i.param.clone(),
                        digest: i.digest.clone(),
                    })
                    .collect(),
                externals: externals
                    .iter()
                    .map(|e| Digested {
                        param: e.param.clone(),
                        digest: e.digest.clone(),
                    })
                    .collect(),
            },
            explain: Explain {
                params: params.clone(),
                inputs: inputs.into_iter().map(|i| i.node).collect(),
                externals: externals.into_iter().map(|e| e.path).collect(),
            },
        }
    }

    /// The key: BLAKE3 (hex) over the hashed part.
    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(KEY_FORMAT.as_bytes());
        h.update(b"\n");
        h.update(&serde_json::to_vec(&self.hashed).expect("pre-image serialises"));
        h.finalize().to_hex().to_string()
    }

    /// The work key of a resumable kind: the key without the parameters
    /// `excludes` (dotted paths), so that runs differing only there share a
    /// working folder.
    pub fn work_key(&self, excludes: &[&str]) -> String {
        let mut hashed = self.hashed.clone();
        for path in excludes {
            remove_path(&mut hashed.params, path);
        }
        let mut h = blake3::Hasher::new();
        h.update(b"foldwise-work-1\n");
        h.update(&serde_json::to_vec(&hashed).expect("pre-image serialises"));
        h.finalize().to_hex().to_string()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("pre-image serialises")
    }

    pub fn from_value(v: &Value) -> Option<PreImage> {
        serde_json::from_value(v.clone()).ok()
    }
}

/// The pre-image of instance `i` of `p`: the one place that says what of
/// a pipeline enters an instance's key, shared by running and projecting so
/// that a projected key is the real key whenever the upstreams' digests are
/// the real ones.
///
/// The caller says how an upstream's digest is obtained: `upstream` gets
/// each input edge, in order, with the name of the part file it reads when
/// it reads one, and gives the digest that enters the key. Each external
/// file or folder the kind declares is hashed through `memo`; one that
/// cannot be read goes to `unreadable`, which gives a digest to use or an
/// error. The first error stops the build.
pub fn instance_preimage<E>(
    p: &Pipeline,
    i: usize,
    memo: &FileMemo,
    mut upstream: impl FnMut(&Edge, Option<&str>) -> Result<String, E>,
    mut unreadable: impl FnMut(&str, &Path, std::io::Error) -> Result<String, E>,
) -> Result<PreImage, E> {
    let inst = &p.instances[i];
    let decl = p.decl(inst);
    let mut inputs = Vec::with_capacity(inst.inputs.len());
    for e in &inst.inputs {
        let up = &p.instances[e.from];
        let part_file = e.part.map(|k| p.decl(up).kind.part_file(k));
        inputs.push(ResolvedInput {
            param: e.param.clone(),
            node: up.name.clone(),
            digest: upstream(e, part_file.as_deref())?,
        });
    }
    let mut externals = Vec::new();
    for (param, path) in decl.kind.external_inputs(p.params(inst), &p.base_dir) {
        let digest = match external_digest(&path, memo) {
            Ok(d) => d,
            Err(e) => unreadable(&param, &path, e)?,
        };
        externals.push(ResolvedExternal {
            param,
            path,
            digest,
        });
    }
    let mut params = p.params(inst).clone();
    for path in decl.kind.unkeyed() {
        remove_path(&mut params, path);
    }
    Ok(PreImage::new(
        decl.kind.name(),
        decl.kind.version(),
        decl.kind.params(),
        &params,
        p.seed(inst),
        inst.fold,
        inputs,
        externals,
    ))
}

fn remove_path(v: &mut Value, path: &str) {
    match path.split_once('.') {
        None => {
            if let Value::Object(m) = v {
                m.remove(path);
            }
        }
        Some((head, rest)) => {
            if let Some(inner) = v.get_mut(head) {
                remove_path(inner, rest);
            }
        }
    }
}

/// Replaces every reference value (per the schema) by `"<ref>"`.
fn blank_refs(v: &mut Value, schema: &[Param]) {
    let Value::Object(map) = v else { return };
    for p in schema {
        if let Some(x) = map.get_mut(p.name) {
            blank_ty(x, &p.ty);
        }
    }
}

fn blank_ty(v: &mut Value, ty: &Ty) {
    match ty {
        Ty::Ref(_) => *v = Value::String("<ref>".into()),
        Ty::List(t) => {
            if let Value::Array(a) = v {
                a.iter_mut().for_each(|x| blank_ty(x, t));
            }
        }
        Ty::Map(t) => {
            if let Value::Object(m) = v {
                m.values_mut().for_each(|x| blank_ty(x, t));
            }
        }
        Ty::Table(ps) => blank_refs(v, ps),
        _ => {}
    }
}

/// Digest of a file or a folder (every regular, non-hidden file below it,
/// by relative path), through the store's memo.
pub fn external_digest(path: &Path, memo: &FileMemo) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        return Ok(memo.digest(path)?.1.to_hex().to_string());
    }
    let mut h = blake3::Hasher::new();
    h.update(b"dir\n");
    let files: Vec<_> = crate::store::scan_files(path, true, memo)?
        .into_iter()
        .filter(|f| f.meta.is_file)
        .collect();
    let digests = memo.digest_all(path, &files)?;
    // One update per file (the same bytes as four: small updates cost).
    let mut line = String::with_capacity(256);
    for (f, d) in files.iter().zip(digests) {
        use std::fmt::Write as _;
        line.clear();
        let _ = writeln!(line, "{}\0{}", f.rel, d.to_hex());
        h.update(line.as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::schema::Dflt;
    use serde_json::json;

    static SCHEMA: &[Param] = &[
        Param {
            name: "data",
            ty: Ty::Ref(&[]),
            default: Dflt::Required,
            doc: "",
        },
        Param {
            name: "k",
            ty: Ty::Int { min: 2, max: 9 },
            default: Dflt::Required,
            doc: "",
        },
    ];

    fn pre(data: &str, k: i64, digest: &str) -> PreImage {
        PreImage::new(
            "split",
            1,
            SCHEMA,
            &json!({"data": data, "k": k}),
            42,
            None,
            vec![ResolvedInput {
                param: "data".into(),
                node: data.into(),
                digest: digest.into(),
            }],
            vec![],
        )
    }

    #[test]
    fn names_do_not_enter_the_key_digests_do() {
        assert_eq!(pre("a", 3, "d1").key(), pre("renamed", 3, "d1").key());
        assert_ne!(pre("a", 3, "d1").key(), pre("a", 3, "d2").key());
        assert_ne!(pre("a", 3, "d1").key(), pre("a", 4, "d1").key());
    }

    #[test]
    fn work_keys_ignore_only_the_excluded_parameters() {
        let a = pre("a", 3, "d1");
        let b = pre("a", 4, "d1");
        assert_ne!(a.work_key(&[]), b.work_key(&[]));
        assert_eq!(a.work_key(&["k"]), b.work_key(&["k"]));
        assert_ne!(a.work_key(&["k"]), pre("a", 3, "d2").work_key(&["k"]));
        assert_ne!(
            a.work_key(&[]),
            a.key(),
            "work folders never collide with objects"
        );
    }

    #[test]
    fn key_is_blake3_of_the_documented_bytes() {
        // The exact pre-image bytes: a change here invalidates every cache.
        let bytes = concat!(
            "foldwise-key-1\n",
            r#"{"kind":"split","kind_version":1,"seed":42,"fold":null,"#,
            r#""params":{"data":"<ref>","k":3},"#,
            r#""inputs":[{"param":"data","digest":"d1"}],"externals":[]}"#
        );
        assert_eq!(
            pre("a", 3, "d1").key(),
            blake3::hash(bytes.as_bytes()).to_hex().to_string()
        );
    }
}
