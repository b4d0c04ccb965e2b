//! What `foldwise gc` prints: what it removed, what it kept because a given
//! pipeline reaches it, and what it kept because a running `run` holds it.

use crate::remote::RemoteGc;
use crate::store::GcReport;

use super::printer::bytes;

/// The summary lines of a collection.
pub(super) fn summary(r: &GcReport, dry_run: bool) -> String {
    let mut out = format!(
        "{} {} object(s) and {} temporary folder(s), {} ({} kept)\n",
        if dry_run { "would remove" } else { "removed" },
        r.objects,
        r.temporaries,
        bytes(r.bytes),
        r.kept
    );
    if r.work + r.derived > 0 {
        out += &format!(
            "{} {} working folder(s) and {} derived file(s)\n",
            if dry_run {
                "would also remove"
            } else {
                "also removed"
            },
            r.work,
            r.derived
        );
    }
    if r.damaged > 0 {
        out += &format!(
            "{} {} damaged object(s) that `verify --fix` had moved aside\n",
            if dry_run {
                "would also remove"
            } else {
                "also removed"
            },
            r.damaged
        );
    }
    let h = &r.held;
    if !h.is_empty() {
        let runs: Vec<String> = h
            .runs
            .iter()
            .map(|l| {
                let file = l
                    .file
                    .as_ref()
                    .map(|f| format!(", {}", f.display()))
                    .unwrap_or_default();
                format!("pid {} on {}: `{}`{file}", l.pid, l.host, l.pipeline)
            })
            .collect();
        out += &format!(
            "kept for {} running run(s) ({}): {} object(s), {} working folder(s), {} temporary folder(s), {} derived file(s)\n",
            h.runs.len(),
            runs.join("; "),
            h.objects,
            h.work,
            h.temporaries,
            h.derived
        );
    }
    out
}

/// The summary line of a collection on a remote.
pub(super) fn remote_summary(url: &str, r: &RemoteGc, dry_run: bool) -> String {
    let mut out = format!(
        "remote {url}: {} {} artifact(s) and {} file(s), {} ({} artifact(s) and {} file(s) kept)\n",
        if dry_run { "would remove" } else { "removed" },
        r.manifests_removed,
        r.blobs_removed,
        bytes(r.bytes_removed),
        r.manifests_kept,
        r.blobs_kept
    );
    if r.blobs_young > 0 {
        out += &format!(
            "remote {url}: kept {} unreferenced file(s) younger than an hour (a push may be writing them)\n",
            r.blobs_young
        );
    }
    out
}
