//! `foldwise verify`: the cache checked against its manifests, damage
//! named by pipeline and node, and with `--fix` moved aside.

use crate::store::VerifyReport;

use super::printer::bytes;
use super::{cache_io, open_store, print_json, Cli, Failure};

/// Runs the check; 1 when damage was found (fixed or not), else 0.
pub(super) fn verify(cli: &Cli, fix: bool, json: bool) -> Result<i32, Failure> {
    let store = open_store(cli)?;
    let report = store.verify(fix).map_err(cache_io)?;
    if json {
        print_json(&report)?;
    } else {
        print!("{}", render(&report, fix));
    }
    Ok(if report.damaged.is_empty() { 0 } else { 1 })
}

/// The text report: one line per damaged object, then what to do.
pub(super) fn render(r: &VerifyReport, fix: bool) -> String {
    let mut out = format!(
        "checked {} object(s), {}: {}\n",
        r.objects,
        bytes(r.bytes),
        match r.damaged.len() {
            0 => "no damage".to_string(),
            n => format!("{n} damaged"),
        }
    );
    for d in &r.damaged {
        let users = if d.used_by.is_empty() {
            "(no pipeline records it)".to_string()
        } else {
            d.used_by.join(", ")
        };
        out += &format!(
            "damaged {}  {users}: {}\n",
            &d.key[..12.min(d.key.len())],
            d.problem
        );
    }
    if r.damaged.is_empty() {
        return out;
    }
    if fix {
        let moved = r.damaged.iter().filter(|d| d.moved_to.is_some()).count();
        out += &format!(
            "moved {moved} damaged object(s) into the cache's damaged/ folder; the next run rebuilds them (`gc` deletes them)\n"
        );
    } else {
        out += "run `foldwise verify --fix` to move them aside; the next run rebuilds them\n";
    }
    out
}
