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
//!   final accuracy against its `truth`;
//! - then one column per grid axis label of the rows (`seed`, `lr`, …, in
//!   the order the instances name them; `grid.<label>` where a label is
//!   one of the columns above): the grid value the instance runs with or
//!   follows, empty for an instance outside that grid ([`columns`]).
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

/// The table's fixed columns, in order; [`columns`] adds the grid's.
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
    /// The grid values of the instance, by axis label (empty outside any
    /// grid), in the order the instance's name shows them; in JSON an
    /// object.
    #[serde(serialize_with = "as_map")]
    pub grid: Vec<(String, serde_json::Value)>,
}

fn as_map<S: serde::Serializer>(
    grid: &[(String, serde_json::Value)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(grid.iter().map(|(k, v)| (k, v)))
}

/// A cell as sorting compares it.
enum SortKey {
    Num(f64),
    Text(String),
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

    /// The grid value of grid column `column` (`seed` or `grid.seed`).
    fn grid_value(&self, column: &str) -> Option<&serde_json::Value> {
        if COLUMNS.contains(&column) {
            return None;
        }
        let get = |l: &str| self.grid.iter().find(|(k, _)| k == l).map(|(_, v)| v);
        get(column).or_else(|| get(column.strip_prefix("grid.")?))
    }

    /// What a sort compares in `column`; `None` when unknown.
    fn sort_key(&self, column: &str) -> Option<SortKey> {
        if let Some(t) = self.text(column) {
            return Some(SortKey::Text(t.to_string()));
        }
        if let Some(v) = self.grid_value(column) {
            return Some(match v.as_f64() {
                Some(x) => SortKey::Num(x),
                None => SortKey::Text(crate::config::value_text(v)),
            });
        }
        self.number(column).map(SortKey::Num)
    }

    /// Every column of `columns` as text for people (percentages,
    /// seconds), `-` when unknown, a grid value as the instance name
    /// shows it (empty outside the grid).
    pub fn cells(&self, columns: &[String]) -> Vec<String> {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.2}%", 100.0 * x));
        columns
            .iter()
            .map(|c| match c.as_str() {
                "instance" => self.instance.clone(),
                "kind" => self.kind.clone(),
                "state" => self.state.to_string(),
                "seconds" => self.seconds.map_or("-".to_string(), |s| format!("{s:.2}")),
                "valid_seq_acc" | "oof_seq_acc" | "seq_acc" | "char_acc" => pct(self.number(c)),
                _ => self
                    .grid_value(c)
                    .map(crate::config::value_text)
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// The columns of a table of `rows`: [`COLUMNS`], then one per grid axis
/// label in the order the rows first show them (`grid.<label>` where a
/// label is a fixed column's name).
pub fn columns(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    for r in rows {
        for (label, _) in &r.grid {
            let c = if COLUMNS.contains(&label.as_str()) {
                format!("grid.{label}")
            } else {
                label.clone()
            };
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
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
            grid: p.instances[i].grid.clone(),
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

/// Sorts `rows` by `column` (one of [`columns`]), descending with `desc`;
/// unknown values last. Errors name the columns on an unknown one.
pub fn sort(rows: &mut [Row], column: &str, desc: bool) -> Result<(), String> {
    let all = columns(rows);
    if !all.iter().any(|c| c == column) {
        return Err(format!(
            "no column `{column}`: the columns are {}",
            all.join(", ")
        ));
    }
    rows.sort_by(|a, b| {
        use std::cmp::Ordering;
        let ord = match (a.sort_key(column), b.sort_key(column)) {
            (Some(SortKey::Text(x)), Some(SortKey::Text(y))) => x.cmp(&y),
            (Some(SortKey::Num(x)), Some(SortKey::Num(y))) => x.total_cmp(&y),
            (Some(SortKey::Num(_)), Some(SortKey::Text(_))) => Ordering::Less,
            (Some(SortKey::Text(_)), Some(SortKey::Num(_))) => Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (None, Some(_)) => return Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
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
    let columns = columns(rows);
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells(&columns)).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .chain([columns[c].len()])
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
            // Text left (grid values too), numbers right.
            if c < 3 || c >= COLUMNS.len() {
                s.push_str(&format!("{v:<w$}", w = widths[c]));
            } else {
                s.push_str(&format!("{v:>w$}", w = widths[c]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = line(columns.iter().map(String::as_str).collect());
    for r in &cells {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

/// The table as CSV: a header, then one line per row; numbers in full
/// (fractions, not percentages), unknowns empty.
pub fn csv(rows: &[Row]) -> String {
    let columns = columns(rows);
    let mut s = columns.join(",") + "\n";
    let num = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
    let quote = |t: &str| {
        if t.contains([',', '"', '\n']) {
            format!("\"{}\"", t.replace('"', "\"\""))
        } else {
            t.to_string()
        }
    };
    for r in rows {
        let mut fields = vec![
            quote(&r.instance),
            quote(&r.kind),
            r.state.to_string(),
            num(r.seconds),
            num(r.valid_seq_acc),
            num(r.oof_seq_acc),
            num(r.seq_acc),
            num(r.char_acc),
        ];
        for c in &columns[COLUMNS.len()..] {
            let v = r.grid_value(c);
            fields.push(v.map_or(String::new(), |v| quote(&crate::config::value_text(v))));
        }
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
            grid: Default::default(),
        }
    }

    #[test]
    fn grid_values_make_columns_sortable_and_empty_outside_the_grid() {
        let mut a = row("m[seed=2,lr=0.003]", Some(1.0), None);
        a.grid.push(("seed".into(), serde_json::json!(2)));
        a.grid.push(("lr".into(), serde_json::json!(0.003)));
        let mut b = row("m[seed=10,lr=0.001]", Some(2.0), None);
        b.grid.push(("seed".into(), serde_json::json!(10)));
        b.grid.push(("lr".into(), serde_json::json!(0.001)));
        let mut k = row("x[kind=\"sgd\"]", None, None);
        k.grid.push(("kind".into(), serde_json::json!("sgd")));
        let mut rows = vec![row("plain", None, None), b, a, k];
        let cols = columns(&rows);
        assert_eq!(&cols[COLUMNS.len()..], ["seed", "lr", "grid.kind"]);
        sort(&mut rows, "seed", false).unwrap();
        let order: Vec<&str> = rows.iter().map(|r| r.instance.as_str()).collect();
        assert_eq!(order[..2], ["m[seed=2,lr=0.003]", "m[seed=10,lr=0.001]"]);
        sort(&mut rows, "lr", true).unwrap();
        assert_eq!(rows[0].instance, "m[seed=2,lr=0.003]");
        sort(&mut rows, "grid.kind", false).unwrap();
        assert_eq!(rows[0].instance, "x[kind=\"sgd\"]");
        let text = text(&rows);
        assert!(
            text.lines()
                .next()
                .unwrap()
                .ends_with("grid.kind  seed  lr"),
            "{text}"
        );
        let csv = csv(&rows);
        assert!(csv.starts_with("instance,kind,state,seconds,valid_seq_acc,oof_seq_acc,seq_acc,char_acc,grid.kind,seed,lr\n"), "{csv}");
        assert!(csv.contains("\nplain,train,computed,,,,,,,,\n"), "{csv}");
        assert!(csv.contains(",,2,0.003\n"), "{csv}");
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
