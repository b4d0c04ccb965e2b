//! The run history: recording every `foldwise run` in the cache, and
//! `foldwise log` (runs, or one score across runs).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Pipeline;
use crate::exec::{Outcome, RunReport};
use crate::report::html::utc;
use crate::report::metrics;
use crate::store::{NodeRecord, RunRecord, Score, Scores, Store};

use super::printer::secs;

/// The history record of a finished run of `p` (read from `path`).
pub fn record(store: &Store, path: &Path, p: &Pipeline, r: &RunReport) -> std::io::Result<()> {
    let digest = std::fs::read(path)
        .map(|b| blake3::hash(&b).to_hex().to_string())
        .unwrap_or_default();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut scores = Vec::new();
    let nodes = r
        .nodes
        .iter()
        .map(|n| {
            let outcome = match n.outcome {
                Outcome::Executed { .. } => "executed",
                Outcome::Reused => "reused",
                Outcome::Pulled { .. } => "pulled",
                Outcome::Failed { .. } => "failed",
                Outcome::Skipped { .. } => "skipped",
            };
            if let (Some(key), "executed" | "reused" | "pulled") = (&n.key, outcome) {
                if let Some(s) = metrics::recorded(&n.kind, &store.artifact_dir(key)) {
                    scores.push(Scores {
                        instance: n.instance.clone(),
                        scores: s
                            .into_iter()
                            .map(|(name, value)| Score { name, value })
                            .collect(),
                    });
                }
            }
            let device = match (&n.key, outcome) {
                (Some(key), "executed") => {
                    crate::nodes::kind(&n.kind).and_then(|k| k.device(&store.artifact_dir(key)))
                }
                _ => None,
            };
            NodeRecord {
                instance: n.instance.clone(),
                kind: n.kind.clone(),
                outcome: outcome.to_string(),
                seconds: n.seconds,
                key: n.key.clone(),
                device,
            }
        })
        .collect();
    store.record_run(&RunRecord {
        pipeline: p.name.clone(),
        path: path.display().to_string(),
        digest,
        started_unix_ms: now_ms.saturating_sub((r.seconds * 1000.0) as u64),
        seconds: r.seconds,
        nodes,
        metrics: scores,
    })
}

/// Runs of the pipeline named `filter` (a file's pipeline name, or the
/// path or name as recorded); every run when `None`. Unreadable records are
/// named on standard error and skipped.
pub fn select(store: &Store, filter: Option<(&str, Option<&str>)>) -> Vec<RunRecord> {
    let (runs, unreadable) = store.history_checked();
    for msg in unreadable {
        eprintln!("warning: {msg}");
    }
    runs.into_iter()
        .filter(|r| match filter {
            None => true,
            Some((arg, name)) => {
                r.path == arg || r.pipeline == arg || Some(r.pipeline.as_str()) == name
            }
        })
        .collect()
}

fn short(d: &str) -> &str {
    &d[..d.len().min(8)]
}

/// `foldwise log`: one line per run, oldest first, with the sequence
/// accuracy of each `evaluate` node (ladder steps: `--metric`).
pub fn list(runs: &[RunRecord]) -> String {
    let mut rows = vec![[
        "run".to_string(),
        "started (UTC)".into(),
        "pipeline".into(),
        "file".into(),
        "executed".into(),
        "reused".into(),
        "time".into(),
        "scores".into(),
    ]];
    for (i, r) in runs.iter().enumerate() {
        let scores: Vec<String> = r
            .metrics
            .iter()
            .flat_map(|s| {
                s.scores
                    .iter()
                    .filter(|x| x.name == "seq_acc")
                    .map(move |x| format!("{} {} {:.2}%", s.instance, x.name, x.value * 100.0))
            })
            .collect();
        let failed = r.with_outcome("failed").count();
        rows.push([
            (i + 1).to_string(),
            utc(r.started_unix_ms / 1000),
            r.pipeline.clone(),
            format!("{} ({})", r.path, short(&r.digest)),
            r.with_outcome("executed").count().to_string(),
            match r.with_outcome("pulled").count() {
                0 => r.with_outcome("reused").count().to_string(),
                pulled => format!(
                    "{} ({pulled} pulled)",
                    r.with_outcome("reused").count() + pulled
                ),
            },
            secs(r.seconds),
            if failed > 0 {
                format!("{failed} failed")
            } else {
                scores.join(", ")
            },
        ]);
    }
    table(&rows, &[true, false, false, false, true, true, true, false])
}

/// One score across runs: a column per instance that has it.
#[derive(Debug, Serialize)]
pub struct MetricTable {
    pub metric: String,
    /// `instance score-name` of each column.
    pub columns: Vec<String>,
    pub runs: Vec<MetricRow>,
}

#[derive(Debug, Serialize)]
pub struct MetricRow {
    pub run: usize,
    pub started_unix_ms: u64,
    pub pipeline: String,
    pub digest: String,
    pub values: Vec<Option<f64>>,
}

pub fn metric_table(runs: &[RunRecord], metric: &str) -> MetricTable {
    let mut columns: Vec<(String, String)> = Vec::new();
    for r in runs {
        for s in &r.metrics {
            for x in s
                .scores
                .iter()
                .filter(|x| metrics::matches(&x.name, metric))
            {
                let c = (s.instance.clone(), x.name.clone());
                if !columns.contains(&c) {
                    columns.push(c);
                }
            }
        }
    }
    MetricTable {
        metric: metric.to_string(),
        columns: columns
            .iter()
            .map(|(i, k)| {
                if k == metric {
                    i.clone()
                } else {
                    format!("{i} {k}")
                }
            })
            .collect(),
        runs: runs
            .iter()
            .enumerate()
            .map(|(n, r)| MetricRow {
                run: n + 1,
                started_unix_ms: r.started_unix_ms,
                pipeline: r.pipeline.clone(),
                digest: r.digest.clone(),
                values: columns.iter().map(|(i, k)| r.score(i, k)).collect(),
            })
            .collect(),
    }
}

/// `foldwise log --metric NAME` for people.
pub fn render_metric(t: &MetricTable) -> String {
    let mut head = vec![
        "run".to_string(),
        "started (UTC)".into(),
        "pipeline".into(),
        "digest".into(),
    ];
    head.extend(t.columns.iter().cloned());
    let mut rows = vec![head];
    for r in &t.runs {
        let mut row = vec![
            r.run.to_string(),
            utc(r.started_unix_ms / 1000),
            r.pipeline.clone(),
            short(&r.digest).to_string(),
        ];
        row.extend(r.values.iter().map(|v| {
            v.map(|x| format!("{:.2}%", x * 100.0))
                .unwrap_or_else(|| "-".into())
        }));
        rows.push(row);
    }
    let mut right = vec![true, false, false, false];
    right.extend(t.columns.iter().map(|_| true));
    table(&rows, &right)
}

/// Aligned columns (right-aligned where `right`), two spaces apart.
fn table<R: AsRef<[String]>>(rows: &[R], right: &[bool]) -> String {
    let n = right.len();
    let mut w = vec![0usize; n];
    for r in rows {
        for (i, c) in r.as_ref().iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.as_ref().iter().enumerate().take(n) {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = w[i] - c.chars().count();
            if right[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
