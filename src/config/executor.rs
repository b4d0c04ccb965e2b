//! The `[executor]` table (where stale nodes execute: here or as Slurm
//! jobs, how often Slurm is polled, the jobs' default resources) and a
//! node's own `resources`. Neither is ever part of a key: the same node
//! computes the same artifact wherever it runs.

use super::error::{Code, Problem};
use super::params::Checker;
use super::parse::{type_problem, unknown_key};
use super::view::View;

/// What a Slurm job asks of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpus: Option<u32>,
    /// Memory, as Slurm writes it (`4G`, `500M`).
    pub mem: Option<String>,
    pub gpus: Option<u32>,
    /// Time limit, as Slurm writes it (`1:00:00`, `30`).
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Further `sbatch` arguments, as given.
    pub sbatch: Vec<String>,
}

impl Resources {
    /// `self`, with what it leaves unset taken from `base`; free `sbatch`
    /// arguments of both, `base`'s first.
    pub fn over(&self, base: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.or(base.cpus),
            mem: self.mem.clone().or_else(|| base.mem.clone()),
            gpus: self.gpus.or(base.gpus),
            time: self.time.clone().or_else(|| base.time.clone()),
            partition: self.partition.clone().or_else(|| base.partition.clone()),
            account: self.account.clone().or_else(|| base.account.clone()),
            sbatch: base.sbatch.iter().chain(&self.sbatch).cloned().collect(),
        }
    }
}

/// Where stale nodes execute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

/// The `[executor]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorSettings {
    pub kind: ExecutorKind,
    /// Seconds between two `squeue` calls.
    pub poll: f64,
    /// Seconds to wait for a finished job's files on a network filesystem.
    pub patience: f64,
    /// Every job's resources, unless a node says otherwise.
    pub resources: Resources,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings {
            kind: ExecutorKind::Local,
            poll: 5.0,
            patience: 120.0,
            resources: Resources::default(),
        }
    }
}

pub(crate) const EXECUTOR_KEYS: &[&str] = &["kind", "poll", "patience", "resources"];
pub(crate) const RESOURCE_KEYS: &[&str] = &[
    "cpus",
    "mem",
    "gpus",
    "time",
    "partition",
    "account",
    "sbatch",
];

/// A positive number of seconds, or a problem.
fn seconds(ck: &mut Checker<'_>, key: &str, view: &View<'_>) -> Option<f64> {
    let x = view.as_float().or_else(|| view.as_int().map(|i| i as f64));
    match x {
        Some(x) if x > 0.0 && x.is_finite() => Some(x),
        Some(x) => {
            ck.report(
                Problem::new(
                    ck.src,
                    Code::Range,
                    format!("`{key}` is out of range: expected a number of seconds > 0, found {x}"),
                )
                .label(view.span.clone(), "out of range"),
            );
            None
        }
        None => {
            type_problem(ck, key, "a number of seconds", view);
            None
        }
    }
}

/// The `[executor]` table.
pub(crate) fn executor_table(ck: &mut Checker<'_>, view: &View<'_>, out: &mut ExecutorSettings) {
    let Some(entries) = view.entries() else {
        type_problem(ck, "executor", "a table", view);
        return;
    };
    for e in entries {
        match e.key {
            "kind" => match e.value.as_str() {
                Some("local") => out.kind = ExecutorKind::Local,
                Some("slurm") => out.kind = ExecutorKind::Slurm,
                Some(other) => ck.report(
                    Problem::new(
                        ck.src,
                        Code::Choice,
                        format!("`kind` in `[executor]` is \"{other}\", not one of \"local\", \"slurm\""),
                    )
                    .label(e.value.span.clone(), "not an executor"),
                ),
                None => type_problem(ck, "kind", "a string", &e.value),
            },
            "poll" => {
                if let Some(x) = seconds(ck, "poll", &e.value) {
                    out.poll = x;
                }
            }
            "patience" => {
                if let Some(x) = seconds(ck, "patience", &e.value) {
                    out.patience = x;
                }
            }
            "resources" => out.resources = resources(ck, "[executor] resources", &e.value),
            _ => unknown_key(ck, "[executor]", EXECUTOR_KEYS, &e),
        }
    }
}

/// A `resources` table (of `[executor]` or of a node).
pub(crate) fn resources(ck: &mut Checker<'_>, table: &str, view: &View<'_>) -> Resources {
    let mut r = Resources::default();
    let Some(entries) = view.entries() else {
        type_problem(ck, "resources", "a table", view);
        return r;
    };
    for e in entries {
        let count = |ck: &mut Checker<'_>, min: i64| match e.value.as_int() {
            Some(i) if i >= min && i <= u32::MAX as i64 => Some(i as u32),
            Some(i) => {
                ck.report(
                    Problem::new(
                        ck.src,
                        Code::Range,
                        format!(
                            "`{}` is out of range: expected an integer >= {min}, found {i}",
                            e.key
                        ),
                    )
                    .label(e.value.span.clone(), "out of range"),
                );
                None
            }
            None => {
                type_problem(ck, e.key, &format!("an integer >= {min}"), &e.value);
                None
            }
        };
        let text = |ck: &mut Checker<'_>| match e.value.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                type_problem(ck, e.key, "a string", &e.value);
                None
            }
        };
        match e.key {
            "cpus" => r.cpus = count(ck, 1),
            "gpus" => r.gpus = count(ck, 0),
            "mem" => r.mem = text(ck),
            "time" => r.time = text(ck),
            "partition" => r.partition = text(ck),
            "account" => r.account = text(ck),
            "sbatch" => match e.value.elements() {
                Some(items) => {
                    for item in items {
                        match item.as_str() {
                            Some(s) => r.sbatch.push(s.to_string()),
                            None => type_problem(ck, "sbatch", "a list of strings", &item),
                        }
                    }
                }
                None => type_problem(ck, "sbatch", "a list of strings", &e.value),
            },
            _ => unknown_key(ck, table, RESOURCE_KEYS, &e),
        }
    }
    r
}
