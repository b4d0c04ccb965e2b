//! A small real experiment, run through the command line, then compared,
//! logged and reported: scores side by side in `diff`, a score across runs
//! in `log --metric`, and the HTML report opened in a real browser (listed
//! as ignored, with a variant that skips only the browser, unless
//! `FOLDWISE_FULL_SUITE=1`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{field, num, stderr, stdout, text, Project};
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
    // Read both pipes while waiting: a DOM larger than a pipe's buffer
    // would otherwise block chromium until the kill.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.unwrap().read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
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
    assert_eq!(text(&d, "metrics.0.instance"), "eval");
    assert_eq!(text(&d, "metrics.0.metric"), "seq_acc");
    assert!(field(&d, "metrics.0.a").is_f64());
    assert!(field(&d, "metrics.0.b").is_null());
    assert!(
        num(&d, "saved_seconds") > 0.0,
        "the folds' training is reused"
    );
    let text = stdout(&p.cli(&["diff", "p.toml", "b.toml"]));
    assert!(text.contains("not run"), "{text}");

    let out = p.cli(&["run", "b.toml", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d: Value =
        serde_json::from_slice(&p.cli(&["diff", "p.toml", "b.toml", "--json"]).stdout).unwrap();
    let (a, b) = (num(&d, "metrics.0.a"), num(&d, "metrics.0.b"));
    assert_eq!(num(&d, "metrics.0.delta"), b - a);

    // The history keeps each run's scores.
    let t: Value =
        serde_json::from_slice(&p.cli(&["log", "--metric", "seq_acc", "--json"]).stdout).unwrap();
    assert_eq!(
        field(&t, "columns"),
        &serde_json::json!([
            "eval",
            "ladder single.seq_acc",
            "ladder snapshots.seq_acc",
            "ladder tta.seq_acc",
            "ladder folds.seq_acc",
            "ladder post_processing.seq_acc"
        ])
    );
    assert_eq!(num(&t, "runs.0.values.0"), a);
    assert_eq!(num(&t, "runs.1.values.0"), b);
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
    assert_eq!(
        external_references(&html),
        Vec::<String>::new(),
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
    if let Err(e) = rendered_report(&dom) {
        panic!(
            "{e}: {}",
            dom.lines().take(3).collect::<Vec<_>>().join("\n")
        );
    }
    let shot = screenshot_path();
    let png = screenshot(&page, &shot);
    if let Err(e) = drawn(&png) {
        panic!("the report's screenshot {}: {e}", shot.display());
    }
    eprintln!("report screenshot: {}", shot.display());
    // The same check on an empty page in the same browser fails.
    let blank = p.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html>\n<html><body></body></html>\n").unwrap();
    let png = screenshot(&blank, &p.path().join("blank.png"));
    assert!(drawn(&png).is_err(), "a blank page passes the pixel check");
}

/// A 1280×2000 screenshot of `page` in headless chromium, written to `shot`.
fn screenshot(page: &Path, shot: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(shot);
    let arg = format!("--screenshot={}", shot.display());
    chromium(
        &[&arg, "--window-size=1280,2000", "--hide-scrollbars"],
        page,
    );
    std::fs::read(shot).expect("chromium wrote a screenshot")
}

/// Every `src`, `href`, `srcset`, `url(` and `@import` target in `html` that
/// the browser would fetch: anything but a `data:` URI or an in-page
/// `#anchor`, quoted either way or not at all.
fn external_references(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut targets = Vec::new();
    for attr in ["src", "href", "srcset"] {
        for (at, _) in lower.match_indices(attr) {
            let before = lower[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                continue;
            }
            let Some(value) = lower[at + attr.len()..].trim_start().strip_prefix('=') else {
                continue;
            };
            let value = delimited(value.trim_start(), |c| c.is_whitespace() || c == '>');
            if attr == "srcset" {
                targets.extend(srcset_urls(value));
            } else {
                targets.push(value);
            }
        }
    }
    for (at, _) in lower.match_indices("url(") {
        targets.push(delimited(lower[at + 4..].trim_start(), |c| c == ')'));
    }
    for (at, _) in lower.match_indices("@import") {
        let rest = lower[at + 7..].trim_start();
        if !rest.starts_with("url(") {
            targets.push(delimited(rest, |c| c.is_whitespace() || c == ';'));
        }
    }
    targets
        .into_iter()
        .map(str::trim)
        .filter(|t| {
            let local = t.starts_with("data:") || (t.starts_with('#') && t.len() > 1);
            !local
        })
        .map(|t| t.chars().take(80).collect())
        .collect()
}

/// The value at the start of `s`: up to the matching quote when quoted,
/// else up to the first character that `ends` it.
fn delimited(s: &str, ends: impl Fn(char) -> bool) -> &str {
    match s.chars().next() {
        Some(q @ ('"' | '\'')) => s[1..].split(q).next().unwrap_or(""),
        _ => s.split(ends).next().unwrap_or(""),
    }
}

/// The URLs of a `srcset` value, without their `2x` or `100w` descriptors.
fn srcset_urls(value: &str) -> Vec<&str> {
    let descriptor = |t: &str| {
        t.strip_suffix(['x', 'w'])
            .is_some_and(|n| n.parse::<f64>().is_ok())
    };
    value
        .split_whitespace()
        .map(|t| t.trim_end_matches(','))
        .filter(|t| !t.is_empty() && !descriptor(t))
        .collect()
}

/// Whether chromium's DOM of the report is the whole report, rendered
/// without errors: every section, with its plots and tables.
fn rendered_report(dom: &str) -> Result<(), String> {
    if !dom.contains("data-render=\"ok\"") {
        return Err("the report did not render cleanly".into());
    }
    for section in [
        "Pipeline graph",
        "Learning curves",
        "Ensemble ladder",
        "Post-processing",
        "Node timings",
    ] {
        if !dom.contains(&format!(">{section}</h2>")) {
            return Err(format!("the rendered report has no section {section}"));
        }
    }
    for (tag, least) in [("<svg", 4), ("<table", 2), ("<polyline", 1), ("<td", 10)] {
        let n = dom.matches(tag).count();
        if n < least {
            return Err(format!(
                "the rendered report has {n} {tag}>, not {least} or more"
            ));
        }
    }
    Ok(())
}

/// Whether a screenshot shows a drawn page, not a blank one: at least 2% of
/// its pixels differ from its commonest colour, in at least 32 colours.
fn drawn(png: &[u8]) -> Result<(), String> {
    let img = image::load_from_memory(png)
        .map_err(|e| format!("is not an image: {e}"))?
        .to_rgb8();
    let mut counts = std::collections::HashMap::new();
    for p in img.pixels() {
        *counts.entry(p.0).or_insert(0usize) += 1;
    }
    let total = (img.width() * img.height()) as usize;
    let background = counts.values().copied().max().unwrap_or(0);
    let drawn = (total - background) as f64 / total.max(1) as f64;
    if drawn < 0.02 || counts.len() < 32 {
        return Err(format!(
            "looks blank: {:.2}% of its pixels drawn, {} colours",
            drawn * 100.0,
            counts.len()
        ));
    }
    Ok(())
}

#[test]
fn the_fetch_check_finds_every_external_reference() {
    let page = r##"<html><head>
<link rel=stylesheet href=//cdn.example/x.css>
<style>@import "t.css"; @import url(u.css); body { background: url(http://x/bg.png) }
.a { background: url( 'https://x/a.png' ) } .b { mask: url(#m) }</style>
<script SRC='https://x/s.js'></script></head><body>
<img src='https://x'><img src="data:image/png;base64,AAAA" srcset="data:image/png;base64,AA 1x, y.png 2x">
<a href="#top">top</a><a href="page.html">next</a><use xlink:href="http://x/s.svg#i"/>
<img data-src="not fetched">
</body></html>"##;
    assert_eq!(
        external_references(page),
        [
            "https://x/s.js",
            "https://x",
            "//cdn.example/x.css",
            "page.html",
            "http://x/s.svg#i",
            "y.png",
            "u.css",
            "http://x/bg.png",
            "https://x/a.png",
            "t.css"
        ]
    );
    let clean = r##"<img src="data:image/png;base64,AA"><a href='#a'>a</a>
<path marker-end="url(#arrow)"/><svg xmlns="http://www.w3.org/2000/svg"></svg>"##;
    assert_eq!(external_references(clean), Vec::<String>::new());
}

#[test]
fn the_pixel_and_dom_checks_fail_on_a_blank_page() {
    let png = |img: image::RgbImage| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let white = image::RgbImage::from_pixel(200, 200, image::Rgb([255, 255, 255]));
    assert!(drawn(&png(white)).is_err());
    let lines = image::RgbImage::from_fn(200, 200, |x, y| {
        if y % 10 == 0 {
            image::Rgb([(x % 64) as u8 * 4, 0, 0])
        } else {
            image::Rgb([255, 255, 255])
        }
    });
    assert_eq!(drawn(&png(lines)), Ok(()));
    assert!(drawn(b"not a png").is_err());
    let blank = r#"<html data-render="ok"><head></head><body></body></html>"#;
    assert!(rendered_report(blank)
        .unwrap_err()
        .contains("no section Pipeline graph"));
}
