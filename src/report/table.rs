//! The experiment table: one row per trained model, prediction and
//! ensemble instance of a pipeline, from the cache alone — how long it took
//! and how well it scored — for `foldwise table` and the HTML report.
//!
//! Columns ([`COLUMNS`]):
//! - `instance`, `kind`, `state` (`computed`, or `not run` when the cache
//!   has no artifact for its current key);
//! - `seconds`: compute time recorded with the artifact;
//! - `valid_seq_acc`: a `train`'s final validation accuracy; a
//!   prediction's or ensemble's mean over its models (`members.json`);
//! - `oof_seq_acc`: a fitted ensemble's out-of-fold accuracy, or a
//!   `postprocess`'s out-of-fold accuracy after its last step;
//! - `seq_acc`, `char_acc`: the scores of the `evaluate` node that scores
//!   this instance (the first in pipeline order), else a `postprocess`'s
//!   final accuracy against its `truth`.
//!
//! Guarantees: rows come in pipeline order unless sorted; a sort is
//! stable, puts unknown values last whatever the direction, and compares
//! text columns as text and the others as numbers.

use std::path::Path;

use serde::Serialize;

use super::project::{project, Projected};
use crate::artifact::model::read_summary;
use crate::artifact::prediction::mean_valid_acc;
use crate::artifact::scores::{read_fit, read_postprocess};
use crate::config::Pipeline;
use crate::store::Store;

/// The table's columns, in order.
pub const COLUMNS: &[&str] = &[
    "instance",
    "kind",
    "state",
    "seconds",
    "valid_seq_acc",
    "oof_seq_acc",
    "seq_acc",
    "char_acc",
];

/// The kinds that make a row.
const ROW_KINDS: &[&str] = &["train", "predict", "ensemble", "postprocess"];

/// One row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub instance: String,
    pub kind: String,
    pub state: &'static str,
    pub seconds: Option<f64>,
    pub valid_seq_acc: Option<f64>,
    pub oof_seq_acc: Option<f64>,
    pub seq_acc: Option<f64>,
    pub char_acc: Option<f64>,
}

impl Row {
    /// A numeric column's value (`None` for a text column or an unknown).
    fn number(&self, column: &str) -> Option<f64> {
        match column {
            "seconds" => self.seconds,
            "valid_seq_acc" => self.valid_seq_acc,
            "oof_seq_acc" => self.oof_seq_acc,
            "seq_acc" => self.seq_acc,
            "char_acc" => self.char_acc,
            _ => None,
        }
    }

    fn text(&self, column: &str) -> Option<&str> {
        match column {
            "instance" => Some(&self.instance),
            "kind" => Some(&self.kind),
            "state" => Some(self.state),
            _ => None,
        }
    }

    /// Every column as text for people (percentages, seconds), `-` when
    /// unknown.
    pub fn cells(&self) -> Vec<String> {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.2}%", 100.0 * x));
        vec![
            self.instance.clone(),
            self.kind.clone(),
            self.state.to_string(),
            self.seconds.map_or("-".to_string(), |s| format!("{s:.2}")),
            pct(self.valid_seq_acc),
            pct(self.oof_seq_acc),
            pct(self.seq_acc),
            pct(self.char_acc),
        ]
    }
}

/// The rows of `p`, in pipeline order.
pub fn rows(p: &Pipeline, store: &Store) -> Vec<Row> {
    let proj = project(p, store);
    rows_of(p, store, &proj)
}

/// [`rows`] of an existing projection.
pub fn rows_of(p: &Pipeline, store: &Store, proj: &[Projected]) -> Vec<Row> {
    let dir = |i: usize| proj[i].artifact.as_ref().map(|a| a.dir.as_path());
    // The first evaluation of each instance.
    let mut evaluated: Vec<Option<Vec<(String, f64)>>> = vec![None; proj.len()];
    for (i, x) in proj.iter().enumerate() {
        if x.kind != "evaluate" {
            continue;
        }
        let Some(d) = dir(i) else { continue };
        let Some(scores) = x.kind_ref.scores(d) else {
            continue;
        };
        for e in p.instances[i]
            .inputs
            .iter()
            .filter(|e| e.param == "predictions")
        {
            if evaluated[e.from].is_none() {
                evaluated[e.from] = Some(scores.clone());
            }
        }
    }
    let mut out = Vec::new();
    for (i, x) in proj.iter().enumerate() {
        if !ROW_KINDS.contains(&x.kind.as_str()) {
            continue;
        }
        let d = dir(i);
        let mut row = Row {
            instance: x.instance.clone(),
            kind: x.kind.clone(),
            state: if d.is_some() { "computed" } else { "not run" },
            seconds: d.and_then(|_| store.meta(&x.key)?.get("seconds")?.as_f64()),
            valid_seq_acc: None,
            oof_seq_acc: None,
            seq_acc: None,
            char_acc: None,
        };
        if let Some(d) = d {
            fill(&mut row, d);
        }
        if let Some(scores) = &evaluated[i] {
            let get = |n: &str| scores.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
            row.seq_acc = get("seq_acc").or(row.seq_acc);
            row.char_acc = get("char_acc");
        }
        out.push(row);
    }
    out
}

/// What an artifact says about itself.
fn fill(row: &mut Row, dir: &Path) {
    match row.kind.as_str() {
        "train" => {
            row.valid_seq_acc = read_summary(dir).ok().map(|s| s.final_valid_seq_acc);
        }
        _ => {
            row.valid_seq_acc = mean_valid_acc(dir).ok().flatten();
            if row.kind == "ensemble" {
                row.oof_seq_acc = read_fit(dir).ok().map(|f| f.oof_seq_acc);
            }
            if row.kind == "postprocess" {
                if let Ok(r) = read_postprocess(dir) {
                    row.oof_seq_acc = r.steps.last().and_then(|s| s.oof_after);
                    row.seq_acc = r.seq_acc_final;
                }
            }
        }
    }
}

/// Sorts `rows` by `column` (one of [`COLUMNS`]), descending with `desc`;
/// unknown values last. Errors name the columns on an unknown one.
pub fn sort(rows: &mut [Row], column: &str, desc: bool) -> Result<(), String> {
    if !COLUMNS.contains(&column) {
        return Err(format!(
            "no column `{column}`: the columns are {}",
            COLUMNS.join(", ")
        ));
    }
    rows.sort_by(|a, b| {
        use std::cmp::Ordering;
        let ord = match (a.text(column), b.text(column)) {
            (Some(x), Some(y)) => Some(x.cmp(y)),
            _ => match (a.number(column), b.number(column)) {
                (Some(x), Some(y)) => Some(x.total_cmp(&y)),
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => None,
            },
        };
        let ord = ord.unwrap_or(Ordering::Equal);
        if desc {
            ord.reverse()
        } else {
            ord
        }
    });
    Ok(())
}

/// The table for a terminal: a header and aligned columns.
pub fn text(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .chain([COLUMNS[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<&str>| -> String {
        let mut s = String::new();
        for (c, v) in vals.iter().enumerate() {
            if c > 0 {
                s.push_str("  ");
            }
            // Text left, numbers right.
            if c < 3 {
                s.push_str(&format!("{v:<w$}", w = widths[c]));
            } else {
                s.push_str(&format!("{v:>w$}", w = widths[c]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = line(COLUMNS.to_vec());
    for r in &cells {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

/// The table as CSV: a header, then one line per row; numbers in full
/// (fractions, not percentages), unknowns empty.
pub fn csv(rows: &[Row]) -> String {
    let mut s = COLUMNS.join(",") + "\n";
    let num = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
    let quote = |t: &str| {
        if t.contains([',', '"', '\n']) {
            format!("\"{}\"", t.replace('"', "\"\""))
        } else {
            t.to_string()
        }
    };
    for r in rows {
        let fields = [
            quote(&r.instance),
            quote(&r.kind),
            r.state.to_string(),
            num(r.seconds),
            num(r.valid_seq_acc),
            num(r.oof_seq_acc),
            num(r.seq_acc),
            num(r.char_acc),
        ];
        s.push_str(&fields.join(","));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(instance: &str, seconds: Option<f64>, acc: Option<f64>) -> Row {
        Row {
            instance: instance.into(),
            kind: "train".into(),
            state: "computed",
            seconds,
            valid_seq_acc: acc,
            oof_seq_acc: None,
            seq_acc: None,
            char_acc: None,
        }
    }

    #[test]
    fn sorting_is_stable_and_puts_unknowns_last_both_ways() {
        let mut rows = vec![
            row("c", Some(3.0), None),
            row("a", Some(1.0), Some(0.5)),
            row("b", None, Some(0.7)),
            row("d", Some(2.0), Some(0.5)),
        ];
        sort(&mut rows, "valid_seq_acc", true).unwrap();
        let order: Vec<&str> = rows.iter().map(|r| r.instance.as_str()).collect();
        assert_eq!(order, ["b", "a", "d", "c"]);
        sort(&mut rows, "valid_seq_acc", false).unwrap();
        let order: Vec<&str> = rows.iter().map(|r| r.instance.as_str()).collect();
        assert_eq!(order, ["a", "d", "b", "c"]);
        sort(&mut rows, "instance", false).unwrap();
        assert_eq!(rows[0].instance, "a");
        assert_eq!(
            sort(&mut rows, "speed", false).unwrap_err(),
            "no column `speed`: the columns are instance, kind, state, seconds, valid_seq_acc, oof_seq_acc, seq_acc, char_acc"
        );
    }

    #[test]
    fn text_and_csv_forms() {
        let rows = vec![
            row("cnn[0]", Some(12.34), Some(0.756)),
            row("x,y", None, None),
        ];
        assert_eq!(
            text(&rows),
            "instance  kind   state     seconds  valid_seq_acc  oof_seq_acc  seq_acc  char_acc\n\
             cnn[0]    train  computed    12.34         75.60%            -        -         -\n\
             x,y       train  computed        -              -            -        -         -\n"
        );
        assert_eq!(
            csv(&rows),
            "instance,kind,state,seconds,valid_seq_acc,oof_seq_acc,seq_acc,char_acc\n\
             cnn[0],train,computed,12.34,0.756,,,\n\
             \"x,y\",train,computed,,,,,\n"
        );
    }
}
