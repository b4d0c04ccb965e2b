//! `foldwise diff A B`: what variant B shares with A, what changed and how,
//! what B saves by reuse, and the scores side by side.
//!
//! Either side is a pipeline file or `REV:path`, the file as it was at a
//! git revision (`path` relative to the current folder, read with `git
//! show`; relative paths inside it still start at its folder in the
//! working tree).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{self, Pipeline};
use crate::nodes::KINDS;
use crate::report::diff::{Diff, State};

use super::printer::secs;
use super::Failure;

/// Loads one side: a file, or `REV:path` from git. Errors name the file.
pub(super) fn load_side(arg: &str, color: bool) -> Result<Pipeline, Failure> {
    let path = Path::new(arg);
    if path.exists() {
        return super::load(path, color);
    }
    let Some((rev, file)) = arg
        .split_once(':')
        .filter(|(r, f)| !r.is_empty() && !f.is_empty())
    else {
        return super::load(path, color);
    };
    let src = git_show(arg, rev, file)?;
    let base_dir = match Path::new(file).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    config::load_str(arg, &src, &base_dir, KINDS).map_err(|e| {
        eprint!("{}", config::render_diagnostic(&e, color, 100));
        Failure::Reported(2)
    })
}

/// The help of errors about a `REV:path` side.
const SIDE_HELP: &str =
    "a side is a pipeline file, or `REV:path`: the file as it was at a git revision";

/// Why a side cannot be read from git: a stable code and a message.
type GitError = (&'static str, String);

/// The text of `file` at `rev`; errors name the side `arg`.
fn git_show(arg: &str, rev: &str, file: &str) -> Result<String, Failure> {
    read_at_revision(rev, file)
        .map_err(|(code, m)| Failure::with_help(code, format!("pipeline `{arg}`: {m}"), SIDE_HELP))
}

fn git(args: &[&str]) -> Result<std::process::Output, GitError> {
    Command::new("git")
        .args(args)
        .output()
        .map_err(|e| ("foldwise::diff::git", format!("cannot run git: {e}")))
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn read_at_revision(rev: &str, file: &str) -> Result<String, GitError> {
    let inside = git(&["rev-parse", "--is-inside-work-tree"])?;
    if !inside.status.success() {
        let here = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "the current folder".into());
        let m = format!("no such file, and `{rev}:` cannot be read from git: {here} is not inside a git repository");
        return Err(("foldwise::diff::not_a_repository", m));
    }
    let commit = format!("{rev}^{{commit}}");
    let verify = git(&["rev-parse", "--verify", "--quiet", &commit])?;
    if !verify.status.success() {
        let m = format!("no revision `{rev}` in this git repository");
        return Err(("foldwise::diff::revision", m));
    }
    let spec = if Path::new(file).is_absolute() {
        let top = git(&["rev-parse", "--show-toplevel"])?;
        let top = PathBuf::from(String::from_utf8_lossy(&top.stdout).trim());
        let rel = Path::new(file).strip_prefix(&top).map_err(|_| {
            let m = format!("`{file}` is outside the repository {}", top.display());
            ("foldwise::diff::outside_repository", m)
        })?;
        format!("{rev}:{}", rel.display())
    } else {
        format!("{rev}:./{}", file.trim_start_matches("./"))
    };
    let out = git(&["show", &spec])?;
    if !out.status.success() {
        let why = first_line(&out.stderr);
        let m = format!("`{file}` cannot be read at `{rev}`: {why}");
        return Err(("foldwise::diff::show", m));
    }
    String::from_utf8(out.stdout).map_err(|_| {
        let m = format!("`{file}` at `{rev}` is not UTF-8");
        ("foldwise::diff::encoding", m)
    })
}

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// The diff for people: one aligned line per instance, a summary, and the
/// scores side by side.
pub(super) fn render(d: &Diff, color: bool) -> String {
    let mut out = format!("A  {}\nB  {}\n\n", d.a, d.b);
    let rows: Vec<(&str, &str, String, String, String)> = d
        .nodes
        .iter()
        .map(|n| {
            let (label, code) = match &n.state {
                State::Shared { .. } => ("shared", "32"),
                State::Changed { .. } => ("changed", "33"),
                State::OnlyA => ("only A", "31"),
                State::OnlyB => ("only B", "36"),
            };
            let time = n.seconds.map(secs);
            let detail = match &n.state {
                State::Shared { a_instance } => {
                    let mut s = match time {
                        Some(t) => format!("reused ({t})"),
                        None => "not run yet".into(),
                    };
                    if let Some(a) = a_instance {
                        s.push_str(&format!("; `{a}` in A"));
                    }
                    s
                }
                State::Changed { changes } => changes
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                State::OnlyA | State::OnlyB => String::new(),
            };
            (label, code, n.instance.clone(), n.kind.clone(), detail)
        })
        .collect();
    let wi = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    let wk = rows.iter().map(|r| r.3.len()).max().unwrap_or(0);
    for (label, code, inst, kind, detail) in &rows {
        let line = format!("{:7}  {inst:wi$}  {kind:wk$}  {detail}", label);
        let (head, rest) = line.split_at(7);
        out.push_str(paint(color, code, head).as_str());
        out.push_str(rest.trim_end());
        out.push('\n');
    }
    let shared = d.count(|s| matches!(s, State::Shared { .. }));
    let changed = d.count(|s| matches!(s, State::Changed { .. }));
    out.push_str(&format!(
        "\n{shared} shared, {changed} changed, {} only in A, {} only in B; ",
        d.count(|s| *s == State::OnlyA),
        d.count(|s| *s == State::OnlyB)
    ));
    if d.saved_seconds > 0.0 {
        out.push_str(&format!(
            "B reuses {} of recorded compute\n",
            secs(d.saved_seconds)
        ));
    } else {
        out.push_str("no shared node has run yet\n");
    }
    if d.remote_instances > 0 {
        out.push_str(&format!(
            "B pulls {} instance{} from the remote instead of computing them ({} of recorded compute)\n",
            d.remote_instances,
            if d.remote_instances == 1 { "" } else { "s" },
            secs(d.remote_seconds)
        ));
    }
    if !d.metrics.is_empty() {
        let names: Vec<String> = d
            .metrics
            .iter()
            .map(|m| format!("{} {}", m.instance, m.metric))
            .collect();
        let w = names.iter().map(|n| n.len()).max().unwrap_or(0).max(6);
        let cell = |v: Option<f64>| v.map(pct).unwrap_or_else(|| "not run".into());
        out.push_str(&format!(
            "\n{:w$}  {:>8}  {:>8}  {:>9}\n",
            "scores", "A", "B", "Δ"
        ));
        for (m, name) in d.metrics.iter().zip(&names) {
            let delta = match m.delta {
                Some(x) => {
                    let s = format!("{:+.2} pp", x * 100.0);
                    let code = if x > 0.0 {
                        "32"
                    } else if x < 0.0 {
                        "31"
                    } else {
                        "0"
                    };
                    paint(color, code, &format!("{s:>9}"))
                }
                None => String::new(),
            };
            let line = format!("{name:w$}  {:>8}  {:>8}  {delta}", cell(m.a), cell(m.b));
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}
