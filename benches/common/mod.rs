//! What the command-line benchmarks share: invoking the release binary as a
//! user would (wall time, peak resident set from `wait4`), the Markdown
//! table they print, and the generated binary tree of `command` nodes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Prints the table's header.
pub fn header() {
    println!("| pipeline | command | median | min | max | peak RSS |");
    println!("|---|---|---|---|---|---|");
}

/// Runs `foldwise ARGS PIPELINE` on `cache` once and prints its row.
pub fn first(bin: &Path, cache: &Path, name: &str, args: &[&str], pipeline: &Path) {
    let (ok, secs, rss) = invoke(bin, cache, args, pipeline);
    assert!(ok, "the first run of {name} failed");
    row(name, &format!("first `{}`", args.join(" ")), &[secs], rss);
}

/// Times `runs` invocations of `foldwise ARGS PIPELINE`, each of which must
/// succeed, and prints their row.
pub fn repeat(bin: &Path, cache: &Path, name: &str, args: &[&str], pipeline: &Path, runs: usize) {
    let mut times = Vec::with_capacity(runs);
    let mut peak = 0;
    for _ in 0..runs {
        let (ok, secs, rss) = invoke(bin, cache, args, pipeline);
        assert!(ok, "`{}` of {name} failed", args.join(" "));
        times.push(secs);
        peak = peak.max(rss);
    }
    row(name, &format!("`{}`", args.join(" ")), &times, peak);
}

fn row(name: &str, cmd: &str, times: &[f64], peak_kib: i64) {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    println!(
        "| {name} | {cmd} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MB |",
        t[t.len() / 2] * 1e3,
        t[0] * 1e3,
        t[t.len() - 1] * 1e3,
        peak_kib as f64 / 1024.0
    );
}

/// Runs the binary; returns (success, wall seconds, peak RSS in KiB).
fn invoke(bin: &Path, cache: &Path, args: &[&str], pipeline: &Path) -> (bool, f64, i64) {
    let t = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let child = Command::new(bin)
        .args(args)
        .arg(pipeline)
        .env("FOLDWISE_CACHE", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn foldwise");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills a zeroed rusage.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    assert!(r > 0, "wait4 failed");
    drop(child); // already reaped by wait4
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        secs,
        usage.ru_maxrss,
    )
}

/// A pipeline named `name` of `n` command nodes in a binary tree, each
/// with its own parameter.
pub fn tree_pipeline(name: &str, n: usize) -> String {
    let mut s = format!("[pipeline]\nname = \"{name}\"\n\n");
    s.push_str(
        "[nodes.n0]\nkind = \"command\"\nargv = [\"sh\", \"-c\", \"echo 0 > $FOLDWISE_OUT/x\"]\n\n",
    );
    for i in 1..n {
        s.push_str(&format!(
            "[nodes.n{i}]\nkind = \"command\"\ninputs = {{ up = \"n{}\" }}\nparams = {{ i = {i} }}\n\
             argv = [\"sh\", \"-c\", \"echo $FOLDWISE_PARAM_I > $FOLDWISE_OUT/x\"]\n\n",
            (i - 1) / 2
        ));
    }
    s
}
