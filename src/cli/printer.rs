//! Terminal output: a progress bar per running node (one per stage of its
//! work: decoding, training, predicting), one line per finished node with
//! the threads it ran on, the tables of `status` and `run --dry-run`, and the tables a run
//! ends with (`ladder` reports).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::config::Pipeline;
use crate::exec::{NodeOutcome, NodeStatus, Observer, Outcome, RunReport};
use crate::fingerprint::Reason;
use crate::kind::Progress;
use crate::store::Store;

/// The CLI's run observer.
pub struct Printer {
    multi: MultiProgress,
    quiet: bool,
    color: bool,
    lines: Mutex<()>,
}

impl Printer {
    pub fn new(color: bool, quiet: bool) -> Printer {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            // Hidden automatically when stderr is not a terminal.
            ProgressDrawTarget::stderr()
        };
        Printer {
            multi: MultiProgress::with_draw_target(target),
            quiet,
            color,
            lines: Mutex::new(()),
        }
    }

    fn line(&self, s: String) {
        let _g = self.lines.lock().unwrap();
        if self.multi.is_hidden() {
            eprintln!("{s}");
        } else {
            let _ = self.multi.println(s);
        }
    }

    pub fn finish(&self) {
        let _ = self.multi.clear();
    }
}

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// A running node's progress: a spinner until its first stage, then a bar
/// per stage, each replacing the one before in place, counting images
/// with their rate and the time left (its own, from its first image).
struct Bar<'a> {
    multi: &'a MultiProgress,
    instance: String,
    bar: Mutex<ProgressBar>,
}

/// The style of stage `name`'s bar. Until its first images are done it
/// shows no rate and no time left rather than made-up ones.
fn stage_style(name: &str) -> ProgressStyle {
    let template = format!(
        "{{prefix:>16}} {name:<10} [{{bar:24}}] {{pos}}/{{len}} {{rate}}, eta {{left}} {{msg}}"
    );
    ProgressStyle::with_template(&template)
        .expect("valid template")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = match state.pos() {
                    0 => write!(w, "- img/s"),
                    _ => write!(w, "{:.0} img/s", state.per_sec()),
                };
            },
        )
        .with_key(
            "left",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = match state.pos() {
                    0 => write!(w, "-"),
                    _ => write!(w, "{:#}", indicatif::HumanDuration(state.eta())),
                };
            },
        )
        .progress_chars("=> ")
}

impl Progress for Bar<'_> {
    fn stage(&self, name: &str, total: u64) {
        let mut bar = self.bar.lock().unwrap();
        let next = self.multi.insert_after(&bar, ProgressBar::new(total));
        next.set_style(stage_style(name));
        next.set_prefix(self.instance.clone());
        next.enable_steady_tick(Duration::from_millis(200));
        bar.finish_and_clear();
        self.multi.remove(&bar);
        *bar = next;
    }
    fn inc(&self, delta: u64) {
        self.bar.lock().unwrap().inc(delta);
    }
    fn message(&self, msg: &str) {
        self.bar.lock().unwrap().set_message(msg.to_string());
    }
}

impl Drop for Bar<'_> {
    fn drop(&mut self) {
        let bar = self.bar.lock().unwrap();
        bar.finish_and_clear();
        self.multi.remove(&bar);
    }
}

/// "1 thread", "4 threads".
fn threads(n: usize) -> String {
    if n == 1 {
        "1 thread".into()
    } else {
        format!("{n} threads")
    }
}

impl Observer for Printer {
    fn started(&self, instance: &str, reason: &Reason, n: usize) {
        if !self.quiet {
            self.line(format!(
                "{} {instance} ({reason}) on {}",
                paint(self.color, "1;34", "    running"),
                threads(n)
            ));
        }
    }

    fn progress(&self, instance: &str) -> Box<dyn Progress + '_> {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>16} {spinner} {elapsed} {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(instance.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(Bar {
            multi: &self.multi,
            instance: instance.to_string(),
            bar: Mutex::new(bar),
        })
    }

    fn finished(&self, o: &NodeOutcome) {
        let line = match &o.outcome {
            Outcome::Executed { .. } if self.quiet => return,
            Outcome::Executed { .. } => format!(
                "{} {} in {}{}",
                paint(self.color, "1;32", "        ran"),
                o.instance,
                secs(o.seconds),
                o.threads
                    .map(|n| format!(" on {}", threads(n)))
                    .unwrap_or_default()
            ),
            Outcome::Reused if self.quiet => return,
            Outcome::Reused => format!("{} {}", paint(self.color, "2", "     reused"), o.instance),
            Outcome::Pulled { .. } if self.quiet => return,
            Outcome::Pulled { files, bytes: b } => format!(
                "{} {} from the remote ({} file{}, {}) in {}",
                paint(self.color, "1;36", "     pulled"),
                o.instance,
                files,
                if *files == 1 { "" } else { "s" },
                bytes(*b),
                secs(o.seconds)
            ),
            Outcome::Failed { error, .. } => format!(
                "{} {}: {error}",
                paint(self.color, "1;31", "     FAILED"),
                o.instance
            ),
            Outcome::Skipped { upstream } if !self.quiet => format!(
                "{} {} (upstream `{upstream}` failed)",
                paint(self.color, "33", "    skipped"),
                o.instance
            ),
            Outcome::Skipped { .. } => return,
        };
        self.line(line);
    }
}

pub fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u < UNITS.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// The closing lines of a run.
pub fn summary(r: &RunReport, quiet: bool, color: bool) -> String {
    let mut s = String::new();
    let failed = r.failed();
    if quiet && failed.is_empty() {
        return s;
    }
    let pulled = match r.pulled().len() {
        0 => String::new(),
        n => format!("{n} pulled, "),
    };
    s.push_str(&format!(
        "{} executed, {pulled}{} reused, {} failed, {} skipped in {} on {}\n",
        r.executed().len(),
        r.reused().len(),
        failed.len(),
        r.skipped().len(),
        secs(r.seconds),
        threads(r.threads)
    ));
    for n in &r.nodes {
        if let Outcome::Failed { error, code, help } = &n.outcome {
            s.push_str(&format!(
                "{} `{}` failed: {error}\n  {}\n",
                paint(color, "1;31", "error:"),
                n.instance,
                paint(color, "2", &format!("[{code}]")),
            ));
            if let Some(h) = help {
                s.push_str(&format!("  {} {h}\n", paint(color, "36", "help:")));
            }
        }
    }
    s
}

/// The tables a run ends with (on standard output): the closing table
/// ([`crate::kind::Kind::closing_table`], a `ladder`'s, a `postprocess`'s
/// or a fitted `ensemble`'s `report.txt`; none when the artifact has no
/// such file) of every instance the run reached, executed or reused, in run
/// order, each after an empty line, its first line prefixed with the
/// instance name. A no-op run prints them again: they are the pipeline's
/// result, read from the cache.
pub fn closing_tables(r: &RunReport, store: &Store) -> String {
    let mut s = String::new();
    for n in &r.nodes {
        let (Outcome::Executed { .. } | Outcome::Reused | Outcome::Pulled { .. }) = n.outcome
        else {
            continue;
        };
        let table = crate::nodes::kind(&n.kind).and_then(|k| k.closing_table());
        let (Some(key), Some(table)) = (n.key.as_deref(), table) else {
            continue;
        };
        let path = store.artifact_dir(key).join(table);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                s.push_str(&format!("\n{}: {text}", n.instance));
                if !text.ends_with('\n') {
                    s.push('\n');
                }
            }
            // An optional table (an ensemble writes one only when fitted):
            // the artifact was verified, so a file it lacks is not damage.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => s.push_str(&format!(
                "\n{}: cannot read {}: {e}\n",
                n.instance,
                path.display()
            )),
        }
    }
    s
}

fn width(st: &[NodeStatus]) -> usize {
    st.iter().map(|s| s.instance.len()).max().unwrap_or(0)
}

/// `status` output: one line per instance.
pub fn status_table(st: &[NodeStatus], color: bool) -> String {
    let w = width(st);
    let mut out = String::new();
    for s in st {
        match &s.stale {
            None => out.push_str(&format!(
                "{}  {:w$}  {}\n",
                paint(color, "32", "fresh"),
                s.instance,
                s.kind
            )),
            Some(r) if s.remote => out.push_str(&format!(
                "{} {:w$}  {}: {r}; on the remote, a run pulls it\n",
                paint(color, "36", "remote"),
                s.instance,
                s.kind
            )),
            Some(r) => out.push_str(&format!(
                "{}  {:w$}  {}: {r}\n",
                paint(color, "33", "stale"),
                s.instance,
                s.kind
            )),
        }
    }
    let remote = st.iter().filter(|s| s.remote).count();
    let stale = st.iter().filter(|s| !s.is_fresh()).count() - remote;
    let on_remote = if remote > 0 {
        format!(", {remote} on the remote")
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{} fresh{on_remote}, {stale} stale\n",
        st.len() - stale - remote
    ));
    out
}

/// `run --dry-run` output: what would run and why.
pub fn plan(p: &Pipeline, st: &[NodeStatus], forced: &BTreeSet<usize>, color: bool) -> String {
    let w = width(st);
    let mut out = String::new();
    let (mut would, mut pulls) = (0, 0);
    for s in st {
        let i = p.instance(&s.instance).expect("status names instances");
        let reason = if forced.contains(&i) {
            Some(Reason::Forced)
        } else {
            s.stale.clone()
        };
        match reason {
            Some(r) if s.remote && !forced.contains(&i) => {
                pulls += 1;
                out.push_str(&format!(
                    "{} {:w$}  {r}; on the remote\n",
                    paint(color, "1;36", "would pull"),
                    s.instance
                ))
            }
            Some(r) => {
                would += 1;
                out.push_str(&format!(
                    "{}  {:w$}  {r}\n",
                    paint(color, "1;34", "would run"),
                    s.instance
                ))
            }
            None => out.push_str(&format!(
                "{}  {}\n",
                paint(color, "2", "    reuse"),
                s.instance
            )),
        }
    }
    let pulled = if pulls > 0 {
        format!("{pulls} to pull, ")
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{would} to run, {pulled}{} to reuse (a node behind a stale upstream runs only if that upstream's output changes)\n",
        st.len() - would - pulls
    ));
    out
}
