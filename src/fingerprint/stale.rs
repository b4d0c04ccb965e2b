//! Why a node is stale: the first difference between the pre-image it last
//! ran with and the one it would run with now, with old and new values.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::PreImage;

/// The first reason a node must run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// No run of this node is recorded and no artifact has its key.
    NeverRun,
    KindVersion {
        old: u32,
        new: u32,
    },
    /// A parameter changed, was added (`old` None) or removed (`new` None).
    Param {
        path: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    Seed {
        old: u64,
        new: u64,
    },
    Fold {
        old: Option<usize>,
        new: Option<usize>,
    },
    /// An external file or folder the node reads changed.
    External {
        param: String,
        path: String,
    },
    /// An upstream artifact has other bytes than when this node last ran.
    UpstreamChanged {
        node: String,
    },
    /// An upstream node must run first; this one may then be fresh.
    UpstreamStale {
        node: String,
    },
    /// The inputs are as last time, but the artifact is gone.
    ArtifactMissing,
    /// The artifact's files no longer match its manifest.
    ArtifactCorrupted {
        detail: String,
    },
    /// Asked for with `--force`.
    Forced,
    /// The key cannot be computed (an external input is unreadable).
    Unreadable {
        detail: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverRun => write!(f, "never run"),
            Reason::KindVersion { old, new } => write!(f, "kind version {old} → {new}"),
            Reason::Param { path, old, new } => match (old, new) {
                (Some(o), Some(n)) => write!(f, "param `{path}` {} → {}", show(o), show(n)),
                (None, Some(n)) => write!(f, "param `{path}` added: {}", show(n)),
                (Some(o), None) => write!(f, "param `{path}` removed (was {})", show(o)),
                (None, None) => write!(f, "param `{path}` changed"),
            },
            Reason::Seed { old, new } => write!(f, "seed {old} → {new}"),
            Reason::Fold { old, new } => write!(f, "fold {old:?} → {new:?}"),
            Reason::External { param, path } => write!(f, "input `{param}` changed ({path})"),
            Reason::UpstreamChanged { node } => write!(f, "upstream `{node}` changed"),
            Reason::UpstreamStale { node } => write!(f, "upstream `{node}` is stale"),
            Reason::ArtifactMissing => write!(f, "artifact missing"),
            Reason::ArtifactCorrupted { detail } => write!(f, "artifact corrupted ({detail})"),
            Reason::Forced => write!(f, "forced"),
            Reason::Unreadable { detail } => write!(f, "{detail}"),
        }
    }
}

fn show(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The first difference between the pre-image a node last ran with (`old`)
/// and the current one — the first of [`changes`] — or `None` when they
/// hash the same.
pub fn diff(old: &PreImage, new: &PreImage) -> Option<Reason> {
    if old.key() == new.key() {
        return None;
    }
    // The one difference `changes` does not name: an external input that
    // is no longer declared.
    changes(old, new).into_iter().next().or(Some(Reason::Param {
        path: String::new(),
        old: None,
        new: None,
    }))
}

/// Every difference between two pre-images, in the order [`diff`] looks
/// (kind, parameters by sorted path, seed, fold, external files, upstream
/// inputs); empty when they hash the same. Parameters are compared on the
/// hashed side, so a reference that only names another node with the same
/// bytes is no change (a rewired one shows as its upstream).
pub fn changes(old: &PreImage, new: &PreImage) -> Vec<Reason> {
    let mut out = Vec::new();
    if old.key() == new.key() {
        return out;
    }
    let (o, n) = (&old.hashed, &new.hashed);
    if o.kind != n.kind {
        out.push(Reason::Param {
            path: "kind".into(),
            old: Some(Value::from(o.kind.as_str())),
            new: Some(Value::from(n.kind.as_str())),
        });
    } else if o.kind_version != n.kind_version {
        out.push(Reason::KindVersion {
            old: o.kind_version,
            new: n.kind_version,
        });
    }
    let mut params = Vec::new();
    all_diffs("", &o.params, &n.params, &mut params);
    out.extend(
        params
            .into_iter()
            .map(|(path, old, new)| Reason::Param { path, old, new }),
    );
    if o.seed != n.seed {
        out.push(Reason::Seed {
            old: o.seed,
            new: n.seed,
        });
    }
    if o.fold != n.fold {
        out.push(Reason::Fold {
            old: o.fold,
            new: n.fold,
        });
    }
    for (i, e) in n.externals.iter().enumerate() {
        if !o.externals.contains(e) {
            let path = new.explain.externals.get(i);
            out.push(Reason::External {
                param: e.param.clone(),
                path: path.map(|p| p.display().to_string()).unwrap_or_default(),
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let len = n.inputs.len().max(o.inputs.len());
    for i in 0..len {
        if o.inputs.get(i) != n.inputs.get(i) {
            let node = new
                .explain
                .inputs
                .get(i)
                .or_else(|| old.explain.inputs.get(i))
                .cloned()
                .unwrap_or_default();
            if seen.insert(node.clone()) {
                out.push(Reason::UpstreamChanged { node });
            }
        }
    }
    out
}

/// Every differing dotted path, in sorted key order.
fn all_diffs(prefix: &str, a: &Value, b: &Value, out: &mut Vec<ParamDiff>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => all_diffs(&path, p, q, out),
                    (p, q) => out.push((path, p.cloned(), q.cloned())),
                }
            }
        }
        _ if a == b => {}
        _ => out.push((prefix.to_string(), Some(a.clone()), Some(b.clone()))),
    }
}

type ParamDiff = (String, Option<Value>, Option<Value>);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasons_render() {
        let r = Reason::Param {
            path: "schedule.cycles".into(),
            old: Some(json!(3)),
            new: Some(json!(5)),
        };
        assert_eq!(r.to_string(), "param `schedule.cycles` 3 → 5");
        assert_eq!(
            Reason::UpstreamChanged {
                node: "folds".into()
            }
            .to_string(),
            "upstream `folds` changed"
        );
        assert_eq!(
            Reason::Param {
                path: "limit".into(),
                old: None,
                new: Some(json!(10))
            }
            .to_string(),
            "param `limit` added: 10"
        );
    }

    #[test]
    fn changes_lists_every_parameter_and_upstream() {
        use crate::fingerprint::{PreImage, ResolvedInput};
        let pre = |params: Value, digest: &str| {
            PreImage::new(
                "t",
                1,
                &[],
                &params,
                1,
                None,
                vec![ResolvedInput {
                    param: "data".into(),
                    node: "up".into(),
                    digest: digest.into(),
                }],
                vec![],
            )
        };
        let a = pre(json!({"a": 1, "m": {"x": 1, "y": 2}}), "d1");
        let b = pre(json!({"a": 2, "m": {"x": 1, "y": 3}}), "d2");
        let c: Vec<String> = changes(&a, &b).iter().map(|r| r.to_string()).collect();
        assert_eq!(
            c,
            [
                "param `a` 1 → 2",
                "param `m.y` 2 → 3",
                "upstream `up` changed"
            ]
        );
        assert!(changes(&a, &a.clone()).is_empty());
    }

    #[test]
    fn all_diffs_walks_nested_tables_in_order() {
        let a = json!({"a": 1, "m": {"x": 1, "y": 2}, "z": [1]});
        let b = json!({"a": 1, "m": {"x": 1, "y": 3}, "z": [2]});
        let mut out = Vec::new();
        all_diffs("", &a, &b, &mut out);
        assert_eq!(
            out,
            [
                ("m.y".into(), Some(json!(2)), Some(json!(3))),
                ("z".into(), Some(json!([1])), Some(json!([2])))
            ]
        );
    }

    #[test]
    fn a_kind_change_is_named_as_such_and_diff_is_the_first_change() {
        use crate::fingerprint::PreImage;
        let pre = |kind: &str, params: Value| {
            PreImage::new(kind, 1, &[], &params, 1, None, vec![], vec![])
        };
        let a = pre("a", json!({"k": 1}));
        let b = pre("b", json!({"k": 1}));
        let first = diff(&a, &b).unwrap();
        assert_eq!(first.to_string(), r#"param `kind` "a" → "b""#);
        assert_eq!(vec![first], changes(&a, &b));
        assert_eq!(diff(&a, &a.clone()), None);
    }
}
