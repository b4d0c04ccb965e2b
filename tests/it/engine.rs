//! The engine end to end: what runs, what is reused, and why.

use foldwise::exec::RunOptions;

use crate::common::{field, list, names, stderr, stdout, text, Project};

/// A small pipeline of command nodes (fast, and their bytes are controlled).
pub(crate) const CHAIN: &str = r#"
[pipeline]
name = "chain"
seed = 1

[nodes.a]
kind = "command"
shell = "echo a > $FOLDWISE_OUT/a.txt"

[nodes.b]
kind = "command"
inputs = { a = "a" }
params = { n = 1 }
shell = "cat $FOLDWISE_INPUT_A/a.txt > $FOLDWISE_OUT/b.txt; echo $FOLDWISE_PARAM_N >> $FOLDWISE_OUT/b.txt"

[nodes.c]
kind = "command"
inputs = { b = "b" }
shell = "cat $FOLDWISE_INPUT_B/b.txt > $FOLDWISE_OUT/c.txt"

[nodes.d]
kind = "command"
inputs = { a = "a" }
shell = "cat $FOLDWISE_INPUT_A/a.txt > $FOLDWISE_OUT/d.txt"
"#;

#[test]
fn second_run_executes_nothing() {
    let p = Project::new(CHAIN);
    let first = p.run();
    assert_eq!(first.executed(), names(&["a", "b", "c", "d"]));
    let second = p.run();
    assert!(second.executed().is_empty(), "{:?}", second.executed());
    assert_eq!(second.reused(), names(&["a", "b", "c", "d"]));
}

#[test]
fn a_changed_parameter_reruns_exactly_its_downstream() {
    let p = Project::new(CHAIN);
    p.run();
    p.edit("params = { n = 1 }", "params = { n = 2 }");
    assert_eq!(
        p.reasons(),
        vec![
            ("a".into(), "fresh".into()),
            ("b".into(), "param `params.n` 1 → 2".into()),
            ("c".into(), "upstream `b` is stale".into()),
            ("d".into(), "fresh".into()),
        ]
    );
    let r = p.run();
    assert_eq!(r.executed(), names(&["b", "c"]));
    assert_eq!(r.reused(), names(&["a", "d"]));
}

#[test]
fn an_upstream_rerun_with_identical_bytes_leaves_dependents_fresh() {
    let p = Project::new(CHAIN);
    p.run();
    // Another command line, the same output bytes.
    p.edit(
        "echo a > $FOLDWISE_OUT/a.txt",
        "printf 'a\\n' > $FOLDWISE_OUT/a.txt",
    );
    let r = p.run();
    assert_eq!(r.executed(), names(&["a"]));
    assert_eq!(r.reused(), names(&["b", "c", "d"]));
}

#[test]
fn writing_a_default_explicitly_changes_nothing() {
    let p = Project::new(CHAIN);
    p.run();
    p.edit("[nodes.d]\n", "[nodes.d]\nenv = {}\ndeps = []\n");
    assert!(p.run().executed().is_empty());
}

#[test]
fn status_reasons_are_exact() {
    let p = Project::new(CHAIN);
    assert_eq!(
        p.reasons(),
        vec![
            ("a".into(), "never run".into()),
            ("b".into(), "upstream `a` is stale".into()),
            ("c".into(), "upstream `b` is stale".into()),
            ("d".into(), "upstream `a` is stale".into()),
        ]
    );
    p.run();
    assert!(p.reasons().iter().all(|(_, r)| r == "fresh"));

    // An upstream that changed its bytes: the dependent names it.
    p.edit("echo a >", "echo A >");
    p.run_with(RunOptions {
        targets: names(&["a"]),
        ..RunOptions::default()
    });
    let r = p.reasons();
    assert_eq!(r[1], ("b".into(), "upstream `a` changed".into()));
    assert_eq!(r[3], ("d".into(), "upstream `a` changed".into()));
    p.run();

    // The artifact removed behind foldwise's back.
    let c = p.status().into_iter().find(|s| s.instance == "c").unwrap();
    let dir = c.artifact.unwrap().dir;
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    assert_eq!(p.reasons()[2], ("c".into(), "artifact missing".into()));
    p.run();

    // Its bytes changed.
    let c = p.status().into_iter().find(|s| s.instance == "c").unwrap();
    let file = c.artifact.unwrap().dir.join("c.txt");
    std::fs::write(&file, "tampered\n").unwrap();
    assert_eq!(
        p.reasons()[2],
        ("c".into(), "artifact corrupted (c.txt changed)".into())
    );
    // ... and rebuilt by the next run.
    let r = p.run();
    assert_eq!(r.executed(), names(&["c"]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "A\n1\n");

    // A parameter added, then the seed changed.
    p.edit("[nodes.c]\n", "[nodes.c]\nenv = { X = \"1\" }\n");
    assert_eq!(
        p.reasons()[2],
        ("c".into(), "param `env.X` added: \"1\"".into())
    );
    p.edit("seed = 1", "seed = 2");
    assert_eq!(p.reasons()[0], ("a".into(), "seed 1 → 2".into()));
}

#[test]
fn a_kind_version_change_is_named() {
    let p = Project::new(CHAIN);
    p.run();
    // Pretend `a` last ran under kind version 0.
    let refp = p.cache().join("refs/chain/a.json");
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&refp).unwrap()).unwrap();
    assert_eq!(field(&rec, "preimage.hashed.kind_version"), 1);
    rec["preimage"]["hashed"]["kind_version"] = 0.into();
    let key = text(&rec, "key").to_string();
    std::fs::write(&refp, serde_json::to_vec(&rec).unwrap()).unwrap();
    // ... and its current artifact is gone.
    std::fs::remove_dir_all(p.cache().join("objects").join(&key[..2]).join(&key)).unwrap();
    assert_eq!(p.reasons()[0], ("a".into(), "kind version 0 → 1".into()));
}

#[test]
fn a_failure_skips_dependents_and_independent_branches_finish() {
    let p = Project::new(CHAIN);
    p.edit(
        "shell = \"cat $FOLDWISE_INPUT_A/a.txt > $FOLDWISE_OUT/b.txt;",
        "shell = \"echo broken >&2; exit 3;",
    );
    let r = p.run_with(RunOptions {
        threads: 2,
        ..RunOptions::default()
    });
    assert_eq!(r.failed(), names(&["b"]));
    assert_eq!(r.skipped(), names(&["c"]));
    assert_eq!(r.executed(), names(&["a", "d"]));
    let out = p.cli(&["run", "p.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("0 executed, 2 reused, 1 failed, 1 skipped"),
        "{err}"
    );
    assert!(
        err.contains("error: `b` failed: command `sh -c \"echo broken >&2; exit 3;"),
        "{err}"
    );
    assert!(
        err.contains("exited with status 3; last lines of its stderr:\n  broken"),
        "{err}"
    );
    assert!(err.contains("broken"), "{err}");
    // The failure is a diagnostic: its code follows the message, and the
    // JSON report carries it.
    let tail = &err[err.find("error: `b` failed:").unwrap()..];
    assert!(
        tail.ends_with("\n  broken\n  [foldwise::command::failed]\n"),
        "{tail}"
    );
    let json = p.cli(&["run", "--json", "p.toml"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let b = list(&v, "nodes")
        .iter()
        .find(|n| text(n, "instance") == "b")
        .unwrap();
    assert_eq!(text(b, "outcome"), "failed");
    assert_eq!(text(b, "code"), "foldwise::command::failed");
}

#[test]
fn force_reruns_and_dry_run_explains() {
    let p = Project::new(CHAIN);
    p.run();
    let out = p.cli(&["run", "p.toml", "--dry-run", "--force", "b"]);
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    assert!(s.contains("would run  b  forced"), "{s}");
    assert!(s.contains("    reuse  a"), "{s}");
    let r = p.run_with(RunOptions {
        force: names(&["b"]),
        ..RunOptions::default()
    });
    // Same bytes again: the dependents stay fresh.
    assert_eq!(r.executed(), names(&["b"]));
    assert_eq!(r.reused(), names(&["a", "c", "d"]));
}

#[test]
fn targets_run_only_their_ancestors() {
    let p = Project::new(CHAIN);
    let r = p.run_with(RunOptions {
        targets: names(&["d"]),
        ..RunOptions::default()
    });
    assert_eq!(r.executed(), names(&["a", "d"]));
    let out = p.cli(&["run", "p.toml", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no node or instance named `nope`"));
}

#[test]
fn path_prints_the_artifact_folder_and_gc_frees_unreached_entries() {
    let p = Project::new(CHAIN);
    p.run();
    let out = p.cli(&["path", "p.toml", "c"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = stdout(&out).trim().to_string();
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/c.txt")).unwrap(),
        "a\n1\n"
    );

    p.edit("params = { n = 1 }", "params = { n = 2 }");
    p.run();
    let dry = p.cli(&["gc", "p.toml", "--dry-run"]);
    assert!(
        stdout(&dry).starts_with("would remove 2 object(s)"),
        "{}",
        stdout(&dry)
    );
    let real = p.cli(&["gc", "p.toml"]);
    assert!(
        stdout(&real).starts_with("removed 2 object(s)"),
        "{}",
        stdout(&real)
    );
    assert!(p.run().executed().is_empty());
}

#[test]
fn json_reports_for_scripts() {
    let p = Project::new(CHAIN);
    let out = p.cli(&["run", "p.toml", "--json", "-j", "2"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let executed: Vec<&str> = list(&v, "nodes")
        .iter()
        .filter(|n| text(n, "outcome") == "executed")
        .map(|n| text(n, "instance"))
        .collect();
    assert_eq!(executed, ["a", "b", "c", "d"]);
    let st = p.cli(&["status", "p.toml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let fresh: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| field(n, "stale").is_null())
        .map(|n| text(n, "instance"))
        .collect();
    assert_eq!(fresh, ["a", "b", "c", "d"], "all fresh: {v}");
}

/// Floats read back from a ref record hash exactly as written, so a node
/// whose artifact was deleted says so instead of inventing a change.
#[test]
fn a_missing_artifact_with_float_parameters_is_named() {
    let p = Project::new(
        "[pipeline]\nname = \"f\"\n\n[nodes.plates]\nkind = \"synthetic\"\ncount = 3\n\
         noise = 0.07\nshear = 0.1234567891234\nrotation = 3.3\n",
    );
    p.run();
    let a = p.status().pop().unwrap().artifact.unwrap();
    std::fs::remove_dir_all(a.dir.parent().unwrap()).unwrap();
    assert_eq!(
        p.reasons(),
        vec![("plates".into(), "artifact missing".into())]
    );
}
