//! Comparing two variants of an experiment without running either: which
//! instances B shares with A (same key: B reuses A's artifact, whatever the
//! node is called), which changed and how, which exist on one side only,
//! the compute time B saves, and the scores side by side.
//!
//! Both sides are [projected](super::project), so the comparison holds
//! before anything has run and sharpens as artifacts appear.

use serde::Serialize;

use crate::config::Pipeline;
use crate::fingerprint::{changes, Reason};
use crate::store::Store;

use super::project::{project_with, Projected, RemoteLookup};

/// The comparison of pipeline `a` with pipeline `b`.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub a: String,
    pub b: String,
    /// B's instances in B's order, then those only in A.
    pub nodes: Vec<NodeDiff>,
    /// Recorded compute time of the shared instances that have run.
    pub saved_seconds: f64,
    /// Recorded compute time of B's instances that the remote cache holds
    /// and this one does not (a run of B pulls them).
    pub remote_seconds: f64,
    /// How many of B's instances that is.
    pub remote_instances: usize,
    pub metrics: Vec<MetricDiff>,
}

/// One instance of either side.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDiff {
    /// B's name (A's for an instance only in A).
    pub instance: String,
    pub kind: String,
    #[serde(flatten)]
    pub state: State,
    /// The key on B's side (A's for an instance only in A).
    pub key: String,
    /// The recorded run time of the artifact, when it has run.
    pub seconds: Option<f64>,
    /// Its artifact is on the remote cache, not here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
}

/// How an instance compares.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// The same key on both sides; `a_instance` when A calls it otherwise.
    Shared {
        #[serde(skip_serializing_if = "Option::is_none")]
        a_instance: Option<String>,
    },
    /// Same name, another key: every difference.
    Changed {
        changes: Vec<Reason>,
    },
    OnlyA,
    OnlyB,
}

/// One score of a scoring instance on both sides (`None`: not run).
#[derive(Debug, Clone, Serialize)]
pub struct MetricDiff {
    pub instance: String,
    pub metric: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub delta: Option<f64>,
}

impl Diff {
    pub fn count(&self, f: impl Fn(&State) -> bool) -> usize {
        self.nodes.iter().filter(|n| f(&n.state)).count()
    }
}

/// Compares `a` with `b` over one cache.
pub fn diff(a: &Pipeline, a_label: &str, b: &Pipeline, b_label: &str, store: &Store) -> Diff {
    diff_with(a, a_label, b, b_label, store, None)
}

/// [`diff`], consulting `remote` for keys this cache lacks.
pub fn diff_with(
    a: &Pipeline,
    a_label: &str,
    b: &Pipeline,
    b_label: &str,
    store: &Store,
    remote: Option<RemoteLookup>,
) -> Diff {
    let pa = project_with(a, store, remote);
    let pb = project_with(b, store, remote);
    let seconds = |x: &Projected| {
        x.artifact.as_ref()?;
        match x.remote {
            Some(s) => s,
            None => store.meta(&x.key)?.get("seconds")?.as_f64(),
        }
    };
    let mut matched = vec![false; pa.len()];
    let mut nodes = Vec::new();
    let mut pairs: Vec<(Option<usize>, usize)> = Vec::new();
    for (j, y) in pb.iter().enumerate() {
        let same_name = pa.iter().position(|x| x.instance == y.instance);
        let same_key = same_name
            .filter(|&i| pa[i].key == y.key)
            .or_else(|| pa.iter().position(|x| x.key == y.key));
        let (state, partner) = match (same_key, same_name) {
            (Some(i), _) => {
                let a_instance = (pa[i].instance != y.instance).then(|| pa[i].instance.clone());
                (State::Shared { a_instance }, Some(i))
            }
            (None, Some(i)) => (
                State::Changed {
                    changes: changes(&pa[i].pre, &y.pre),
                },
                Some(i),
            ),
            (None, None) => (State::OnlyB, None),
        };
        if let Some(i) = partner {
            matched[i] = true;
        }
        pairs.push((partner, j));
        nodes.push(NodeDiff {
            instance: y.instance.clone(),
            kind: y.kind.clone(),
            state,
            key: y.key.clone(),
            seconds: seconds(y),
            remote: y.remote.is_some(),
        });
    }
    for (i, x) in pa.iter().enumerate() {
        if !matched[i] {
            nodes.push(NodeDiff {
                instance: x.instance.clone(),
                kind: x.kind.clone(),
                state: State::OnlyA,
                key: x.key.clone(),
                seconds: seconds(x),
                remote: x.remote.is_some(),
            });
        }
    }
    let saved_seconds = nodes
        .iter()
        .filter(|n| matches!(n.state, State::Shared { .. }))
        .filter_map(|n| n.seconds)
        .sum();
    let from_remote: Vec<&Projected> = pb.iter().filter(|y| y.remote.is_some()).collect();
    let remote_seconds = from_remote.iter().filter_map(|y| seconds(y)).sum();
    let remote_instances = from_remote.len();

    let scores = |x: &Projected| -> Vec<(String, f64)> {
        x.artifact
            .as_ref()
            .and_then(|a| x.kind_ref.scores(&a.dir))
            .unwrap_or_default()
    };
    let mut rows = Vec::new();
    let mut push =
        |instance: &str, headline: &str, sa: Vec<(String, f64)>, sb: Vec<(String, f64)>| {
            let mut names: Vec<String> = sb.iter().chain(&sa).map(|(n, _)| n.clone()).collect();
            if names.is_empty() {
                // Neither side has run: the headline score, marked not run.
                names = vec![headline.to_string()];
            }
            let mut seen = std::collections::BTreeSet::new();
            for name in names {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let get = |s: &[(String, f64)]| s.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
                let (va, vb) = (get(&sa), get(&sb));
                rows.push(MetricDiff {
                    instance: instance.to_string(),
                    metric: name,
                    a: va,
                    b: vb,
                    delta: va.zip(vb).map(|(x, y)| y - x),
                });
            }
        };
    for (partner, j) in &pairs {
        let y = &pb[*j];
        let Some(headline) = y.kind_ref.headline_score() else {
            continue;
        };
        let sa = partner.map(|i| scores(&pa[i])).unwrap_or_default();
        push(&y.instance, headline, sa, scores(y));
    }
    for (i, x) in pa.iter().enumerate() {
        match x.kind_ref.headline_score() {
            Some(headline) if !matched[i] => push(&x.instance, headline, scores(x), Vec::new()),
            _ => {}
        }
    }
    Diff {
        a: a_label.to_string(),
        b: b_label.to_string(),
        nodes,
        saved_seconds,
        remote_seconds,
        remote_instances,
        metrics: rows,
    }
}
