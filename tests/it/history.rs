//! The run history: every `run` is recorded in the cache with its file,
//! digest, outcomes and durations; `foldwise log` lists the runs.

use serde_json::Value;

use crate::common::{field, list, num, stderr, stdout, text, Project};

fn log_json(p: &Project, args: &[&str]) -> Value {
    let out = p.cli(&[&["log"], args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_run_is_recorded_and_log_lists_them() {
    let p = Project::new(&crate::folds::example("command.toml"));
    assert_eq!(stdout(&p.cli(&["log"])), "no recorded runs\n");
    assert!(p.cli(&["run", "p.toml", "-q"]).status.success());
    assert!(p.cli(&["run", "p.toml", "-q"]).status.success());
    // A dry run and other commands record nothing.
    assert!(p.cli(&["run", "p.toml", "--dry-run"]).status.success());
    assert!(p.cli(&["status", "p.toml"]).status.success());
    p.edit("k = 4", "k = 2");
    assert!(p.cli(&["run", "p.toml", "-q"]).status.success());

    let runs = log_json(&p, &["--json"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let outcomes = |r: &Value, o: &str| -> Vec<String> {
        list(r, "nodes")
            .iter()
            .filter(|n| text(n, "outcome") == o)
            .map(|n| text(n, "instance").to_string())
            .collect()
    };
    assert_eq!(outcomes(&runs[0], "executed").len(), 7);
    assert!(outcomes(&runs[1], "executed").is_empty());
    assert_eq!(outcomes(&runs[1], "reused").len(), 7);
    assert_eq!(
        outcomes(&runs[2], "executed"),
        ["folds", "fold_sizes[0]", "fold_sizes[1]", "table"]
    );
    assert_eq!(outcomes(&runs[2], "reused"), ["plates"]);
    for r in runs {
        assert_eq!(text(r, "pipeline"), "command-example");
        assert_eq!(text(r, "path"), "p.toml");
        assert!(list(r, "nodes").iter().all(|n| num(n, "seconds") >= 0.0));
    }
    let digest = blake3::hash(&std::fs::read(p.pipeline()).unwrap())
        .to_hex()
        .to_string();
    let digests: Vec<&str> = runs.iter().map(|r| text(r, "digest")).collect();
    assert_eq!(digests[2], digest);
    assert_eq!(digests[0], digests[1]);
    assert_ne!(digests[1], digests[2]);
    let started = |r: &Value| field(r, "started_unix_ms").as_u64().unwrap();
    assert!(started(&runs[0]) > 0);
    assert!(started(&runs[0]) <= started(&runs[1]));
    assert!(started(&runs[1]) <= started(&runs[2]));

    let text = stdout(&p.cli(&["log", "p.toml"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("run  started (UTC)"), "{text}");
    assert!(lines[1].contains("command-example  p.toml ("), "{text}");
    // Another pipeline name: none of these runs.
    assert_eq!(log_json(&p, &["other", "--json"]), serde_json::json!([]));
}
