//! `run --watch` as a child process: an edited parameter reruns exactly
//! the nodes downstream of it; an edit during a run cancels it and the
//! rerun's result equals an undisturbed run's; a syntax error prints its
//! diagnostic and the watch goes on. Every wait is bounded; the watcher is
//! killed when a test ends.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldwise::store::Store;

use crate::common::{names, Project};
use crate::engine::CHAIN;
use crate::robustness::KILLABLE;

const LIMIT: Duration = Duration::from_secs(60);

/// A `foldwise run --watch p.toml` whose standard error is collected.
struct Watcher {
    child: Child,
    err: Arc<Mutex<String>>,
}

impl Watcher {
    fn start(p: &Project) -> Watcher {
        let mut child = Command::new(env!("CARGO_BIN_EXE_foldwise"))
            .args(["run", "--watch", "p.toml", "--no-color"])
            .current_dir(p.path())
            .env("FOLDWISE_CACHE", p.cache())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = err.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Watcher { child, err }
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits until `needle` has appeared `count` times on standard error.
    fn wait_for(&self, needle: &str, count: usize) {
        wait_until(
            &format!("{count} × {needle:?}"),
            || self.stderr().matches(needle).count() >= count,
            || self.stderr(),
        );
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < LIMIT,
            "timed out waiting for {what}; stderr:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The executed instances of every recorded run, oldest first.
fn runs(p: &Project) -> Vec<Vec<String>> {
    let Ok(store) = Store::open(&p.cache()) else {
        return Vec::new();
    };
    store
        .history()
        .iter()
        .map(|r| {
            r.with_outcome("executed")
                .map(|n| n.instance.clone())
                .collect()
        })
        .collect()
}

const WAITING: &str = "watch: watching";

#[test]
fn an_edited_parameter_reruns_exactly_the_nodes_downstream() {
    let p = Project::new(CHAIN);
    let w = Watcher::start(&p);
    w.wait_for(WAITING, 1);
    assert_eq!(runs(&p), vec![names(&["a", "b", "c", "d"])]);
    p.edit("n = 1", "n = 2");
    wait_until("a second run", || runs(&p).len() == 2, || w.stderr());
    assert_eq!(runs(&p)[1], names(&["b", "c"]));
    let err = w.stderr();
    assert!(
        err.contains("stale  b  command: param `params.n` 1 → 2"),
        "{err}"
    );
    assert!(
        err.contains("stale  c  command: upstream `b` is stale"),
        "{err}"
    );
    assert!(
        !err.contains("stale  a") && !err.contains("stale  d"),
        "{err}"
    );
}

#[test]
fn a_syntax_error_prints_its_diagnostic_and_the_watch_goes_on() {
    let p = Project::new(CHAIN);
    let w = Watcher::start(&p);
    w.wait_for(WAITING, 1);
    p.edit("[nodes.d]", "[nodes.d");
    w.wait_for("invalid TOML", 1);
    w.wait_for(WAITING, 2);
    p.edit("[nodes.d", "[nodes.d]\nparams = { v = 2 }");
    wait_until("a second run", || runs(&p).len() == 2, || w.stderr());
    assert_eq!(runs(&p)[1], names(&["d"]));
}

#[test]
fn an_edit_during_a_run_cancels_it_and_the_rerun_equals_an_undisturbed_run() {
    // `slow` signals that it started, then waits while `block` exists.
    let p = Project::new(KILLABLE);
    let block = p.path().join("block");
    let started = p.path().join("started");
    std::fs::write(&block, "").unwrap();
    let w = Watcher::start(&p);
    wait_until(
        "the first run to start `slow`",
        || started.exists(),
        || w.stderr(),
    );
    std::fs::remove_file(&started).unwrap();
    p.edit("echo half", "echo HALF");
    w.wait_for("run cancelled", 1);
    wait_until(
        "the rerun to start `slow`",
        || started.exists(),
        || w.stderr(),
    );
    std::fs::remove_file(&block).unwrap();
    wait_until("the rerun to end", || runs(&p).len() == 1, || w.stderr());
    // The cancelled run recorded nothing; the rerun computed both nodes.
    assert_eq!(runs(&p), vec![names(&["slow", "after"])]);
    drop(w);

    let undisturbed = Project::new(&KILLABLE.replace("echo half", "echo HALF"));
    undisturbed.run();
    let (a, b) = (p.status(), undisturbed.status());
    assert!(a.iter().all(|s| s.is_fresh()), "{:?}", p.reasons());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.instance, &x.key), (&y.instance, &y.key));
    }
    let all = |s: &foldwise::exec::NodeStatus| {
        std::fs::read_to_string(s.artifact.as_ref().unwrap().dir.join("all.txt")).unwrap()
    };
    assert_eq!(all(&a[1]), "HALF\nrest\n");
    assert_eq!(all(&a[1]), all(&b[1]));
}
