//! `foldwise diff`: variants compared by key before and after running,
//! renamed nodes recognised, reuse time and scores, and errors that name
//! the file.

use std::process::Command;

use serde_json::Value;

use crate::common::{field, list, num, stderr, stdout, text, Project};

/// A fold ensemble with two predictions, one with TTA, mixed and scored.
/// Nothing here runs: `diff` projects keys.
const VARIANT: &str = r#"
[pipeline]
name = "variant"
seed = 7

[nodes.plates]
kind = "synthetic"
count = 36

[nodes.plates_test]
kind = "synthetic"
count = 8
seed = 8

[nodes.folds]
kind = "split"
data = "plates"
k = 3

[nodes.cnn]
kind = "train"
data = "plates"
split = "folds"
model = { arch = "svhn-small", heads = 6, height = 32, width = 64 }
epochs = 1

[nodes.pred]
kind = "predict"
models = "cnn[*]"
data = "plates_test"
tta = { rounds = 2 }

[nodes.pred_plain]
kind = "predict"
models = "cnn[*]"
data = "plates_test"

[nodes.ens]
kind = "ensemble"
inputs = ["pred", "pred_plain"]
method = "vote"

[nodes.eval]
kind = "evaluate"
predictions = "ens"
data = "plates_test"
"#;

fn diff_json(p: &Project, a: &str, b: &str) -> Value {
    let out = p.cli(&["diff", a, b, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(instance, state)` of every node of a JSON diff.
fn states(d: &Value) -> Vec<(String, String)> {
    list(d, "nodes")
        .iter()
        .map(|n| {
            (
                text(n, "instance").to_string(),
                text(n, "state").to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn one_tta_setting_changes_exactly_the_predict_ensemble_evaluate_chain() {
    let p = Project::new(VARIANT);
    std::fs::write(
        p.path().join("b.toml"),
        VARIANT.replace("tta = { rounds = 2 }", "tta = { rounds = 3 }"),
    )
    .unwrap();
    let d = diff_json(&p, "p.toml", "b.toml");
    assert_eq!(
        states(&d),
        pairs(&[
            ("plates", "shared"),
            ("plates_test", "shared"),
            ("folds", "shared"),
            ("cnn[0]", "shared"),
            ("cnn[1]", "shared"),
            ("cnn[2]", "shared"),
            ("pred", "changed"),
            ("pred_plain", "shared"),
            ("ens", "changed"),
            ("eval", "changed"),
        ])
    );
    let changes = |i: usize| field(&d, &format!("nodes.{i}.changes")).clone();
    assert_eq!(
        changes(6),
        serde_json::json!([{"reason": "param", "path": "tta.rounds", "old": 2, "new": 3}])
    );
    assert_eq!(
        changes(8),
        serde_json::json!([{"reason": "upstream_changed", "node": "pred"}])
    );
    assert_eq!(
        changes(9),
        serde_json::json!([{"reason": "upstream_changed", "node": "ens"}])
    );
    // Nothing has run: the scores are there, marked not run on both sides.
    assert_eq!(text(&d, "metrics.0.instance"), "eval");
    assert_eq!(field(&d, "metrics.0.a"), &Value::Null);
    assert_eq!(field(&d, "metrics.0.b"), &Value::Null);
    assert_eq!(num(&d, "saved_seconds"), 0.0);

    let text = stdout(&p.cli(&["diff", "p.toml", "b.toml"]));
    assert!(
        text.contains("changed  pred         predict    param `tta.rounds` 2 → 3\n"),
        "{text}"
    );
    assert!(
        text.contains("7 shared, 3 changed, 0 only in A, 0 only in B; no shared node has run yet"),
        "{text}"
    );
    assert!(
        text.contains("eval seq_acc   not run   not run\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour when not a terminal");
}

#[test]
fn renamed_nodes_with_identical_keys_are_shared_and_reuse_is_timed() {
    let p = Project::new(&crate::folds::example("command.toml"));
    let renamed = crate::folds::example("command.toml")
        .replace("plates", "digits")
        .replace("fold_sizes", "sizes")
        .replace("k = 4", "k = 2");
    std::fs::write(p.path().join("b.toml"), renamed).unwrap();
    let before = diff_json(&p, "p.toml", "b.toml");
    assert_eq!(text(&before, "nodes.0.instance"), "digits");
    assert_eq!(text(&before, "nodes.0.state"), "shared");
    assert_eq!(text(&before, "nodes.0.a_instance"), "plates");
    assert_eq!(
        states(&before),
        pairs(&[
            ("digits", "shared"),
            ("folds", "changed"),
            ("sizes[0]", "only_b"),
            ("sizes[1]", "only_b"),
            ("table", "changed"),
            ("fold_sizes[0]", "only_a"),
            ("fold_sizes[1]", "only_a"),
            ("fold_sizes[2]", "only_a"),
            ("fold_sizes[3]", "only_a"),
        ])
    );

    // After A has run, B's shared data set is A's artifact and its time is
    // what B saves.
    assert!(p.cli(&["run", "p.toml", "-q"]).status.success());
    let after = diff_json(&p, "p.toml", "b.toml");
    let plates_time = num(&after, "nodes.0.seconds");
    assert!(plates_time > 0.0);
    assert_eq!(num(&after, "saved_seconds"), plates_time);
    let text = stdout(&p.cli(&["diff", "p.toml", "b.toml"]));
    assert!(text.contains("; `plates` in A"), "{text}");
    assert!(text.contains("B reuses "), "{text}");

    // The same file on both sides shares everything.
    let same = diff_json(&p, "p.toml", "p.toml");
    assert!(states(&same).iter().all(|(_, s)| s == "shared"));
}

fn git(p: &Project, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(p.path())
        .env("GIT_CEILING_DIRECTORIES", p.path().parent().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}

#[test]
#[cfg_attr(not(full_suite), ignore = "needs git")]
fn a_side_can_come_from_git_and_bad_sides_are_named() {
    assert!(
        Command::new("git").arg("--version").output().is_ok(),
        "git is not installed"
    );
    let p = Project::new(&crate::folds::example("command.toml"));
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_foldwise"))
            .args(args)
            .current_dir(p.path())
            .env("FOLDWISE_CACHE", p.cache())
            .env("NO_COLOR", "1")
            .env("GIT_CEILING_DIRECTORIES", p.path().parent().unwrap())
            .output()
            .unwrap()
    };
    let out = cli(&["diff", "missing.toml", "p.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));

    let out = cli(&["diff", "HEAD:p.toml", "p.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pipeline `HEAD:p.toml`")
            && stderr(&out).contains("not inside a git repository"),
        "{}",
        stderr(&out)
    );

    git(&p, &["init", "-q"]);
    git(&p, &["add", "p.toml"]);
    git(&p, &["commit", "-q", "-m", "k = 4"]);
    p.edit("k = 4", "k = 2");
    let out = cli(&["diff", "HEAD:p.toml", "p.toml", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(text(&d, "a"), "HEAD:p.toml");
    assert_eq!(field(&d, "nodes.1.changes.0.old"), 4);

    let out = cli(&["diff", "nope:p.toml", "p.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pipeline `nope:p.toml`: no revision `nope`"),
        "{}",
        stderr(&out)
    );
    let out = cli(&["diff", "HEAD:other.toml", "p.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`other.toml` cannot be read at `HEAD`"),
        "{}",
        stderr(&out)
    );
}
