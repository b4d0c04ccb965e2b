//! A small real experiment, run through the command line, then compared,
//! logged and reported: scores side by side in `diff`, a score across runs
//! in `log --metric`, and the HTML report opened in a real browser (listed
//! as ignored, with a variant that skips only the browser, unless
//! `FOLDWISE_FULL_SUITE=1`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{stderr, stdout, Project};
use crate::folds::small_quickstart;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless chromium with `args` on `page`, killed after a minute.
fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// Where the screenshot is kept: a test artifact under `target/`.
fn screenshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png")
}

#[test]
#[cfg_attr(
    not(full_suite),
    ignore = "needs /usr/bin/chromium (.ci/run installs it)"
)]
fn a_small_experiment_is_compared_logged_and_reported() {
    compared_logged_and_reported(true);
}

/// The same without the browser check, where the one above is ignored.
#[test]
#[cfg_attr(
    full_suite,
    ignore = "the full suite runs the variant with the browser"
)]
fn a_small_experiment_is_compared_logged_and_reported_without_a_browser() {
    compared_logged_and_reported(false);
}

/// Runs, compares, logs and reports a small experiment; with `browser`,
/// also opens the report in Chromium (which must be installed).
fn compared_logged_and_reported(browser: bool) {
    assert_ne!(small_quickstart(), crate::folds::example("quickstart.toml"));
    let p = Project::new(&small_quickstart());
    let out = p.cli(&["run", "p.toml", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The variant with one more TTA round: scores side by side.
    std::fs::write(
        p.path().join("b.toml"),
        small_quickstart().replace("tta = { rounds = 4 }", "tta = { rounds = 5 }"),
    )
    .unwrap();
    let d: Value =
        serde_json::from_slice(&p.cli(&["diff", "p.toml", "b.toml", "--json"]).stdout).unwrap();
    let seq = |d: &Value| d["metrics"].as_array().unwrap()[0].clone();
    assert_eq!(seq(&d)["instance"], "eval");
    assert_eq!(seq(&d)["metric"], "seq_acc");
    assert!(seq(&d)["a"].is_f64());
    assert!(seq(&d)["b"].is_null());
    assert!(
        d["saved_seconds"].as_f64().unwrap() > 0.0,
        "the folds' training is reused"
    );
    let text = stdout(&p.cli(&["diff", "p.toml", "b.toml"]));
    assert!(text.contains("not run"), "{text}");

    let out = p.cli(&["run", "b.toml", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d: Value =
        serde_json::from_slice(&p.cli(&["diff", "p.toml", "b.toml", "--json"]).stdout).unwrap();
    let (a, b) = (
        seq(&d)["a"].as_f64().unwrap(),
        seq(&d)["b"].as_f64().unwrap(),
    );
    assert_eq!(seq(&d)["delta"].as_f64().unwrap(), b - a);

    // The history keeps each run's scores.
    let t: Value =
        serde_json::from_slice(&p.cli(&["log", "--metric", "seq_acc", "--json"]).stdout).unwrap();
    assert_eq!(
        t["columns"],
        serde_json::json!([
            "eval",
            "ladder single.seq_acc",
            "ladder snapshots.seq_acc",
            "ladder tta.seq_acc",
            "ladder folds.seq_acc",
            "ladder post_processing.seq_acc"
        ])
    );
    assert_eq!(t["runs"][0]["values"][0].as_f64().unwrap(), a);
    assert_eq!(t["runs"][1]["values"][0].as_f64().unwrap(), b);
    let text = stdout(&p.cli(&["log", "--metric", "seq_acc"]));
    assert!(
        text.lines().next().unwrap().ends_with("eval  ladder single.seq_acc  ladder snapshots.seq_acc  ladder tta.seq_acc  ladder folds.seq_acc  ladder post_processing.seq_acc"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "{text}");

    // The report of A: every section, self-contained.
    let out = p.cli(&["report", "p.toml", "-o", "report.html"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = p.path().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for part in [
        "<title>foldwise report: quickstart</title>",
        "Pipeline graph",
        "class=\"node executed\"",
        "Learning curves",
        "<h3>cnn[2]</h3>",
        "learning rate",
        "snapshot",
        "Ensemble ladder",
        "<h3>ladder</h3>",
        "best single model",
        "+ snapshots",
        "+ TTA",
        "+ folds",
        "sequence accuracy by step",
        "Post-processing",
        "<h3>post</h3>",
        "<th>out of fold</th>",
        "+ post processing",
        "accuracy by digit position",
        "confusion, position 1",
        "Node timings",
    ] {
        assert!(html.contains(part), "the report lacks {part}");
    }
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "nothing fetched"
    );
    assert!(!html.contains("<link"), "no external style sheets");
    let misread = html.contains("data:image/png;base64,");
    let none_misread = html.contains("0 of 8 images misread");
    assert!(misread || none_misread);

    if !browser {
        return;
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is not installed (.ci/run installs it)"
    );
    let dom = chromium(&["--dump-dom"], &page);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("data-render=\"ok\""),
        "the report did not render cleanly: {}",
        dom.lines().take(3).collect::<Vec<_>>().join("\n")
    );
    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    chromium(
        &[&arg, "--window-size=1280,2000", "--hide-scrollbars"],
        &page,
    );
    let png = std::fs::read(&shot).expect("chromium wrote a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("report screenshot: {}", shot.display());
}
