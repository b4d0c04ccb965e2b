//! The thread budget end to end: instances run side by side as the budget
//! allows, each on its share (a command on what it declares), the run
//! report says how many threads each had, and the artifacts do not depend
//! on the budget.

use foldwise::exec::{RunOptions, RunReport};

use crate::common::{digests, field, list, num, stderr, text, Project};
use crate::folds::small_quickstart;

/// Two command nodes that each finish only once the other has started:
/// they succeed only when run side by side. Each gives up (and fails)
/// after about 20 s, so that a serial run fails rather than hangs.
const RENDEZVOUS: &str = r#"
[pipeline]
name = "rendezvous"

[nodes.a]
kind = "command"
shell = "touch a.started; i=0; while [ ! -e b.started ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done; test -e b.started && echo $FOLDWISE_THREADS > $FOLDWISE_OUT/t"

[nodes.b]
kind = "command"
shell = "touch b.started; i=0; while [ ! -e a.started ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done; test -e a.started && echo $FOLDWISE_THREADS > $FOLDWISE_OUT/t"
"#;

fn with_threads(p: &Project, threads: usize) -> RunReport {
    p.run_with(RunOptions {
        threads,
        ..RunOptions::default()
    })
}

/// `(instance, threads)` of every instance the run executed.
fn threads_of(r: &RunReport) -> Vec<(String, Option<usize>)> {
    r.nodes
        .iter()
        .filter(|n| r.executed().contains(&n.instance))
        .map(|n| (n.instance.clone(), n.threads))
        .collect()
}

#[test]
fn two_one_thread_nodes_run_side_by_side_on_a_budget_of_two() {
    let p = Project::new(RENDEZVOUS);
    let r = with_threads(&p, 2);
    assert!(r.ok(), "{:?}", r.nodes);
    assert_eq!(
        threads_of(&r),
        [("a".to_string(), Some(1)), ("b".to_string(), Some(1))]
    );
    assert_eq!(r.threads, 2);
}

#[test]
fn a_command_gets_the_threads_it_declares_at_most_the_budget_and_they_are_not_hashed() {
    let p = Project::new(
        r#"
[pipeline]
name = "declared"

[nodes.one]
kind = "command"
shell = "echo $FOLDWISE_THREADS > $FOLDWISE_OUT/t"

[nodes.many]
kind = "command"
threads = 8
shell = "echo $FOLDWISE_THREADS > $FOLDWISE_OUT/m"
"#,
    );
    let r = with_threads(&p, 3);
    assert_eq!(
        threads_of(&r),
        [("one".to_string(), Some(1)), ("many".to_string(), Some(3))]
    );
    let written = |name: &str, file: &str| {
        let st = p.status();
        let s = st.iter().find(|s| s.instance == name).unwrap();
        std::fs::read_to_string(s.artifact.as_ref().unwrap().dir.join(file)).unwrap()
    };
    assert_eq!(written("one", "t"), "1\n");
    assert_eq!(written("many", "m"), "3\n");
    // Declaring other threads reruns nothing.
    p.edit("threads = 8", "threads = 2");
    assert_eq!(
        p.reasons(),
        [
            ("one".into(), "fresh".into()),
            ("many".into(), "fresh".into())
        ]
    );
}

/// The quickstart at a small scale on a budget of one thread (everything
/// in turn) and of six (the two data sets side by side on three threads
/// each, then the three folds on two each) writes the same bytes.
#[test]
fn the_artifacts_are_the_same_whatever_the_thread_budget() {
    let serial = Project::new(&small_quickstart());
    let r1 = with_threads(&serial, 1);
    assert!(r1.ok(), "{:?}", r1.failed());
    assert!(threads_of(&r1).iter().all(|(_, t)| *t == Some(1)));

    let parallel = Project::new(&small_quickstart());
    let r6 = with_threads(&parallel, 6);
    assert!(r6.ok(), "{:?}", r6.failed());
    assert_eq!(r6.threads, 6);
    assert_eq!(digests(&serial), digests(&parallel));
    assert_eq!(digests(&serial).len(), 14);
    // The two data sets start together and share the budget; small nodes
    // take one thread whatever the budget.
    let threads = threads_of(&r6);
    assert_eq!(
        threads[..2],
        [("plates".into(), Some(3)), ("plates_test".into(), Some(3))]
    );
    for (name, t) in threads {
        if ["folds", "post", "eval", "submission", "ladder"].contains(&name.as_str()) {
            assert_eq!(t, Some(1), "{name}");
        } else {
            assert!(matches!(t, Some(1..=6)), "{name}: {t:?}");
        }
    }
}

#[test]
fn the_command_line_reports_the_threads_of_each_node_and_of_the_run() {
    let p = Project::new(RENDEZVOUS);
    let out = p.cli(&["run", "p.toml", "--threads", "2"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("running a (never run) on 1 thread\n"), "{err}");
    assert!(err.contains("ran b in "), "{err}");
    assert!(
        err.lines()
            .any(|l| l.trim_start().starts_with("ran b in ") && l.ends_with(" on 1 thread")),
        "{err}"
    );
    assert!(
        err.contains("2 executed, 0 reused, 0 failed, 0 skipped in "),
        "{err}"
    );
    assert!(err.trim_end().ends_with(" on 2 threads"), "{err}");

    let p = Project::new(RENDEZVOUS);
    let out = p.cli(&["run", "p.toml", "-j", "2", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(num(&report, "threads"), 2.0);
    for (i, node) in list(&report, "nodes").iter().enumerate() {
        assert_eq!(text(node, "outcome"), "executed", "node {i}");
        assert_eq!(num(node, "threads"), 1.0, "node {i}");
    }
    // A reused node ran on nothing: no `threads`.
    let again = p.cli(&["run", "p.toml", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(field(&report, "nodes.0").get("threads").is_none());
}

#[test]
fn the_budget_comes_from_foldwise_threads_unless_given() {
    let p = Project::new(RENDEZVOUS);
    let out = p.cli_env(&["run", "p.toml", "--json"], &[("FOLDWISE_THREADS", "2")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(num(&report, "threads"), 2.0);

    let bad = p.cli_env(&["run", "p.toml"], &[("FOLDWISE_THREADS", "many")]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        stderr(&bad),
        "error: FOLDWISE_THREADS is `many`, not a number of threads\n  [foldwise::usage::threads]\n  help: set it to a whole number of at least 1, or unset it to use every core\n"
    );
}
