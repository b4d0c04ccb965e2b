//! The run history: one JSON file per `foldwise run` under
//! `history/<unix ms>-<pid>.json` — the pipeline file and its digest, when,
//! which instances executed and which were reused with their durations,
//! and the scores the run reached. `foldwise log` reads it back.
//!
//! Guarantees: a record is written atomically and never changed; records
//! that cannot be read are skipped, not fatal; `gc` leaves the history
//! alone (it is small and names no artifact).

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{annotate, write_atomic, Store};

const HISTORY: &str = "history";

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The pipeline's name (as in `[pipeline] name`).
    pub pipeline: String,
    /// The pipeline file as given on the command line.
    pub path: String,
    /// BLAKE3 of the pipeline file's bytes.
    pub digest: String,
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub seconds: f64,
    /// Every instance the run reached, in topological order.
    pub nodes: Vec<NodeRecord>,
    /// The scores of each scoring instance reached, in topological order
    /// (`report::metrics` flattens them).
    pub metrics: Vec<Scores>,
}

/// The scores of one instance, in the order its kind gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub instance: String,
    pub scores: Vec<Score>,
}

/// One named score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub name: String,
    pub value: f64,
}

/// One instance of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub instance: String,
    pub kind: String,
    /// `executed`, `reused`, `pulled` (from the remote cache), `failed` or
    /// `skipped`.
    pub outcome: String,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Where an executed `train` instance computed (`cpu`, `cuda:0`), as
    /// its artifact records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl RunRecord {
    /// The score `name` of `instance`, when the run reached it.
    pub fn score(&self, instance: &str, name: &str) -> Option<f64> {
        let s = self.metrics.iter().find(|s| s.instance == instance)?;
        s.scores.iter().find(|x| x.name == name).map(|x| x.value)
    }

    /// Instances with the given outcome.
    pub fn with_outcome(&self, outcome: &str) -> impl Iterator<Item = &NodeRecord> {
        let outcome = outcome.to_string();
        self.nodes.iter().filter(move |n| n.outcome == outcome)
    }
}

impl Store {
    fn history_dir(&self) -> PathBuf {
        self.root().join(HISTORY)
    }

    /// Appends a run to the history.
    pub fn record_run(&self, run: &RunRecord) -> io::Result<()> {
        let dir = self.history_dir();
        fs::create_dir_all(&dir).map_err(|e| annotate(e, &dir))?;
        let path = dir.join(format!(
            "{:013}-{}.json",
            run.started_unix_ms,
            std::process::id()
        ));
        let mut bytes = serde_json::to_vec_pretty(run).expect("a run record serialises");
        bytes.push(b'\n');
        write_atomic(&path, &bytes)
    }

    /// Every recorded run, oldest first.
    pub fn history(&self) -> Vec<RunRecord> {
        self.history_checked().0
    }

    /// Every readable recorded run, oldest first, and one message naming
    /// each record that could not be read (damaged, truncated, foreign).
    pub fn history_checked(&self) -> (Vec<RunRecord>, Vec<String>) {
        let Ok(entries) = fs::read_dir(self.history_dir()) else {
            return (Vec::new(), Vec::new());
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let (mut runs, mut unreadable) = (Vec::new(), Vec::new());
        for p in &files {
            let parsed = fs::read(p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<RunRecord>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(r) => runs.push(r),
                Err(e) => unreadable.push(format!(
                    "run record {} is unreadable and was skipped: {e}",
                    p.display()
                )),
            }
        }
        runs.sort_by_key(|r| r.started_unix_ms);
        (runs, unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_come_back_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.history().is_empty());
        let run = |ms: u64| RunRecord {
            pipeline: "p".into(),
            path: "p.toml".into(),
            digest: "d".into(),
            started_unix_ms: ms,
            seconds: 1.5,
            nodes: vec![NodeRecord {
                device: None,
                instance: "a".into(),
                kind: "split".into(),
                outcome: "executed".into(),
                seconds: 1.0,
                key: Some("k".into()),
            }],
            metrics: vec![Scores {
                instance: "eval".into(),
                scores: vec![Score {
                    name: "seq_acc".into(),
                    value: 0.5,
                }],
            }],
        };
        store.record_run(&run(20)).unwrap();
        store.record_run(&run(3)).unwrap();
        fs::write(dir.path().join(HISTORY).join("junk.json"), "{").unwrap();
        let (h, unreadable) = store.history_checked();
        assert_eq!(h, vec![run(3), run(20)]);
        assert_eq!(unreadable.len(), 1);
        assert!(
            unreadable[0].starts_with(&format!(
                "run record {} is unreadable and was skipped: EOF while parsing",
                dir.path().join(HISTORY).join("junk.json").display()
            )),
            "{unreadable:?}"
        );
        assert_eq!(store.history(), h);
        assert_eq!(h[0].with_outcome("executed").count(), 1);
        assert_eq!(h[0].score("eval", "seq_acc"), Some(0.5));
        assert_eq!(h[0].score("eval", "char_acc"), None);
    }
}
