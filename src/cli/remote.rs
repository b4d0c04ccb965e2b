//! The remote cache on the command line: which remote a command uses
//! (`--remote`, else `[cache] remote`; none with `--no-remote`), `foldwise
//! push` and `foldwise pull` with a progress bar and a summary, and the
//! push that follows a run when `[cache] push = true`.

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::config::{self, Pipeline};
use crate::exec::{Engine, Outcome, RunReport};
use crate::remote::{PushItem, PushReport, Remote, RemoteError, Transfer};
use crate::store::{Artifact, Store};

use super::printer::bytes;
use super::{cache_io, load, open_store, print_json, render_failure, Cli, Failure};

/// The remote `p` uses on this command line: `--remote`, else the
/// pipeline's `[cache] remote`; none with `--no-remote`.
pub(super) fn remote_for(cli: &Cli, p: &Pipeline) -> Result<Option<Remote>, Failure> {
    if cli.no_remote {
        return Ok(None);
    }
    let url = match &cli.remote {
        Some(url) => {
            if let Some(why) = config::remote_url_problem(url) {
                return Err(Failure::with_help(
                    "foldwise::usage::remote",
                    format!("--remote `{url}` is not a remote foldwise knows: {why}"),
                    "write `s3://BUCKET[/PREFIX]` or `file:///PATH`",
                ));
            }
            url.clone()
        }
        None => match &p.cache.remote {
            Some(url) => url.clone(),
            None => return Ok(None),
        },
    };
    Remote::open(&url).map(Some).map_err(remote_failure)
}

/// The remote a command that needs one uses, or an error saying how to
/// name one.
fn required_remote(cli: &Cli, p: &Pipeline, command: &str) -> Result<Remote, Failure> {
    remote_for(cli, p)?.ok_or_else(|| {
        Failure::with_help(
            "foldwise::remote::none",
            format!("`{command}` needs a remote cache, and none is named"),
            "set `remote` in the pipeline's `[cache]` table, or pass `--remote s3://BUCKET/PREFIX` or `--remote file:///PATH` (and not `--no-remote`)",
        )
    })
}

pub(super) fn remote_failure(e: RemoteError) -> Failure {
    Failure::Diagnostic(Box::new(e))
}

/// Warns that the remote was given up on (the command went on without it).
pub(super) fn warn_remote(engine: &Engine<'_>) {
    if let Some(e) = engine.remote_error() {
        eprintln!("warning: the remote cache was not used: {e}");
    }
}

/// A byte progress bar on stderr (hidden when it is not a terminal or when
/// `quiet`).
struct Bar(ProgressBar);

impl Bar {
    fn new(verb: &str, quiet: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if quiet {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{verb:>8} [{{bar:24}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}, eta {{eta}}"
            ))
            .expect("valid template")
            .progress_chars("=> "),
        );
        Bar(bar)
    }
}

impl Transfer for Bar {
    fn total(&self, bytes: u64) {
        self.0.inc_length(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// What `push` or `pull` did, as `--json` prints it.
#[derive(Debug, Default, Serialize)]
struct Summary {
    remote: String,
    /// Instances whose artifact moved.
    moved: Vec<String>,
    /// Instances the other side already had.
    skipped: Vec<String>,
    /// Instances this side has no artifact of, and why.
    unavailable: Vec<(String, String)>,
    failed: Vec<Failed>,
    files: usize,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Failed {
    instance: String,
    error: String,
    code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<String>,
}

impl Failed {
    fn new(instance: String, e: &RemoteError) -> Failed {
        use miette::Diagnostic;
        Failed {
            instance,
            error: e.to_string(),
            code: e.code().map(|c| c.to_string()).unwrap_or_default(),
            help: e.help().map(|h| h.to_string()),
        }
    }
}

impl Summary {
    /// The summary of a push to the remote at `url`.
    fn pushed(url: &str, r: PushReport) -> Summary {
        Summary {
            remote: url.to_string(),
            failed: r
                .failed
                .iter()
                .map(|(i, e)| Failed::new(i.clone(), e))
                .collect(),
            moved: r.pushed,
            skipped: r.present,
            unavailable: Vec::new(),
            files: r.files,
            bytes: r.bytes,
        }
    }

    /// The summary lines: what moved, what was skipped, what failed (each
    /// failure with its code and help).
    fn render(&self, verb: &str, here: &str, color: bool) -> String {
        let mut out = format!(
            "{verb} {} artifact(s) {} {}: {} file(s), {} moved; {} skipped (already {here}); {} failed\n",
            self.moved.len(),
            if verb == "pushed" { "to" } else { "from" },
            self.remote,
            self.files,
            bytes(self.bytes),
            self.skipped.len(),
            self.failed.len(),
        );
        for (instance, why) in &self.unavailable {
            out.push_str(&format!("not {verb}: `{instance}`: {why}\n"));
        }
        for f in &self.failed {
            let d = miette::MietteDiagnostic::new(format!("`{}`: {}", f.instance, f.error))
                .with_code(f.code.clone());
            let d = match &f.help {
                Some(h) => d.with_help(h.clone()),
                None => d,
            };
            out.push_str(&render_failure(&d, color));
        }
        out
    }

    fn exit_code(&self) -> i32 {
        if self.failed.is_empty() {
            0
        } else {
            1
        }
    }
}

/// The instances `targets` name (every instance when empty), in order.
fn named(engine: &Engine<'_>, targets: &[String]) -> Result<Vec<bool>, Failure> {
    let n = engine.pipeline.instances.len();
    if targets.is_empty() {
        return Ok(vec![true; n]);
    }
    let mut chosen = vec![false; n];
    for t in targets {
        for i in engine.resolve(t)? {
            chosen[i] = true;
        }
    }
    Ok(chosen)
}

/// The push item of an instance's artifact (`None` when its pre-image is
/// missing from the cache).
fn push_item(store: &Store, instance: &str, a: Artifact) -> Option<PushItem> {
    Some(PushItem {
        instance: instance.to_string(),
        preimage: store.preimage(&a.key)?,
        meta: store.meta(&a.key).unwrap_or(serde_json::Value::Null),
        artifact: a,
    })
}

/// `foldwise push PIPELINE [NODES…]`: the artifacts of the named instances
/// (every instance by default) that are fresh here and not on the remote.
pub(super) fn push(
    cli: &Cli,
    pipeline: &Path,
    targets: &[String],
    json: bool,
    color: bool,
) -> Result<i32, Failure> {
    let p = load(pipeline, color)?;
    let remote = required_remote(cli, &p, "push")?;
    let store = open_store(cli)?;
    let engine = Engine::new(&p, &store);
    let chosen = named(&engine, targets)?;
    let needed = engine.needed(targets)?;
    let st = engine.status(&needed);
    store.save_memo().map_err(cache_io)?;
    let mut summary = Summary {
        remote: remote.url().to_string(),
        ..Summary::default()
    };
    let mut items = Vec::new();
    for s in &st {
        let i = p.instance(&s.instance).expect("status names instances");
        if !chosen[i] {
            continue;
        }
        let item = s
            .artifact
            .clone()
            .and_then(|a| push_item(&store, &s.instance, a));
        match (&s.stale, item) {
            (None, Some(item)) => items.push(item),
            (Some(r), _) => summary
                .unavailable
                .push((s.instance.clone(), format!("not computed here ({r})"))),
            (None, None) => summary.unavailable.push((
                s.instance.clone(),
                "its pre-image is missing from the cache".into(),
            )),
        }
    }
    let bar = Bar::new("push", json);
    let r = remote.push(&items, &bar);
    drop(bar);
    let r = r.map_err(remote_failure)?;
    let summary = Summary {
        unavailable: summary.unavailable,
        ..Summary::pushed(remote.url(), r)
    };
    if json {
        print_json(&summary)?;
    } else {
        print!("{}", summary.render("pushed", "there", color));
    }
    Ok(summary.exit_code())
}

/// `foldwise pull PIPELINE [NODES…]`: the artifacts of the named instances
/// (every instance by default) that the remote has and this cache lacks.
/// Their keys are worked out from the remote's manifests, so a node's
/// ancestors need not be pulled with it.
pub(super) fn pull(
    cli: &Cli,
    pipeline: &Path,
    targets: &[String],
    json: bool,
    color: bool,
) -> Result<i32, Failure> {
    let p = load(pipeline, color)?;
    let remote = required_remote(cli, &p, "pull")?;
    let store = open_store(cli)?;
    let engine = Engine::with_remote(&p, &store, Some(&remote));
    let chosen = named(&engine, targets)?;
    let needed = engine.needed(targets)?;
    let st = engine.status(&needed);
    store.save_memo().map_err(cache_io)?;
    if let Some(e) = engine.remote_error() {
        return Err(remote_failure(e.clone()));
    }
    let mut summary = Summary {
        remote: remote.url().to_string(),
        ..Summary::default()
    };
    let mut keys = Vec::new();
    for s in &st {
        let i = p.instance(&s.instance).expect("status names instances");
        if !chosen[i] {
            continue;
        }
        match (&s.stale, &s.key) {
            (None, _) => summary.skipped.push(s.instance.clone()),
            (Some(_), Some(key)) if s.remote => keys.push((s.instance.clone(), key.clone())),
            (Some(r), _) => summary
                .unavailable
                .push((s.instance.clone(), format!("not on the remote ({r})"))),
        }
    }
    let bar = Bar::new("pull", json);
    for (instance, key) in keys {
        match remote.pull(&store, &key, &bar) {
            Ok(pulled) => {
                summary.files += pulled.files;
                summary.bytes += pulled.bytes;
                summary.moved.push(instance);
            }
            Err(e) => summary.failed.push(Failed::new(instance, &e)),
        }
    }
    drop(bar);
    if json {
        print_json(&summary)?;
    } else {
        print!("{}", summary.render("pulled", "here", color));
    }
    Ok(summary.exit_code())
}

/// After a run with `[cache] push = true`: pushes what it computed.
/// Prints one line (and each failure); `false` when something failed.
pub(super) fn push_after_run(
    remote: &Remote,
    store: &Store,
    report: &RunReport,
    quiet: bool,
    color: bool,
) -> bool {
    let items: Vec<PushItem> = report
        .nodes
        .iter()
        .filter(|n| matches!(n.outcome, Outcome::Executed { .. }))
        .filter_map(|n| {
            let key = n.key.as_deref()?;
            let crate::store::Check::Ok(a) = store.check(key) else {
                return None;
            };
            push_item(store, &n.instance, a)
        })
        .collect();
    if items.is_empty() {
        return true;
    }
    let bar = Bar::new("push", quiet);
    let r = remote.push(&items, &bar);
    drop(bar);
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            eprint!("{}", render_failure(&e, color));
            return false;
        }
    };
    let summary = Summary::pushed(remote.url(), r);
    if !quiet || !summary.failed.is_empty() {
        eprint!("{}", summary.render("pushed", "there", color));
    }
    summary.failed.is_empty()
}
