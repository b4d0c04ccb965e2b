//! The cache under disturbance: `gc` while a run trains keeps what the run
//! holds, a `gc` killed midway leaves it consistent, `verify` finds damage
//! the memo cannot see and `--fix` makes the next run rebuild exactly the
//! damaged nodes; `check` finds what cannot run.

use std::process::Command;

use crate::common::*;
use foldwise::store;

const OTHER: &str = r#"
[pipeline]
name = "other"

[nodes.note]
kind = "command"
shell = "echo other > $FOLDWISE_OUT/note.txt"
"#;

const OLD: &str = r#"
[pipeline]
name = "old"

[nodes.note]
kind = "command"
shell = "echo old > $FOLDWISE_OUT/note.txt"
"#;

#[test]
fn gc_of_another_pipeline_while_a_run_trains_keeps_what_the_run_holds() {
    let p = Project::new(&tiny_training("held", 3));
    for (file, text) in [("other.toml", OTHER), ("old.toml", OLD)] {
        std::fs::write(p.path().join(file), text).unwrap();
        assert_eq!(p.cli(&["run", file, "-q"]).status.code(), Some(0));
    }
    // The training held after its first epoch's checkpoint.
    let hold = p.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let mut child = spawn_run(&p, &[(store::PAUSE_AFTER_EPOCH, &hold)]);
    wait_for(&p.path().join("hold.reached"));

    let out = p.cli(&["gc", "other.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("removed 1 object(s) and 0 temporary folder(s), "),
        "{text}"
    );
    assert!(first.ends_with(" (1 kept)"), "{text}");
    let kept = format!(
        "kept for 1 running run(s) (pid {} on {}: `held`, {}): \
         2 object(s), 1 working folder(s), 1 temporary folder(s), 1 derived file(s)",
        child.id(),
        store::hostname(),
        p.pipeline().display()
    );
    assert!(text.lines().any(|l| l == kept), "{text}\nexpected: {kept}");

    std::fs::remove_file(&hold).unwrap();
    assert!(child.wait().unwrap().success());
    let undisturbed = Project::new(&tiny_training("held", 3));
    assert_eq!(
        undisturbed.run().executed(),
        names(&["plates", "folds", "cnn"])
    );
    assert_eq!(digests(&p), digests(&undisturbed));
    // Once the run is over, its lease is gone and gc keeps nothing for it.
    let after = stdout(&p.cli(&["gc", "p.toml", "--dry-run"]));
    assert!(!after.contains("running run"), "{after}");
}

/// The same across hosts, on a filesystem where `flock` does not hold
/// between them: a `gc` on host `beta` keeps what a run on host `alpha`
/// holds (its lease lives by its heartbeat), removes the lease of a run
/// on a host gone silent, and the run finishes undisturbed.
#[test]
fn gc_on_another_host_keeps_what_a_run_holds_by_its_heartbeat_alone() {
    let p = Project::new(&tiny_training("held", 3));
    std::fs::write(p.path().join("other.toml"), OTHER).unwrap();
    assert_eq!(p.cli(&["run", "other.toml", "-q"]).status.code(), Some(0));
    let hold = p.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let no_flock = std::path::Path::new("1");
    let mut child = spawn_run(
        &p,
        &[
            (store::PAUSE_AFTER_EPOCH, &hold),
            ("FOLDWISE_TEST_HOST", std::path::Path::new("alpha")),
            ("FOLDWISE_TEST_NO_FLOCK", no_flock),
        ],
    );
    wait_for(&p.path().join("hold.reached"));
    // A run on a host that went silent long ago.
    let silent = p.cache().join("leases").join("7-7.lease");
    std::fs::write(
        &silent,
        "{\"pid\":7,\"host\":\"gamma\",\"started_unix\":1,\"pipeline\":\"lost\",\"file\":null}\nobject aaaa\n",
    )
    .unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    std::fs::File::options()
        .append(true)
        .open(&silent)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let out = p.cli_env(
        &["gc", "other.toml"],
        &[
            ("FOLDWISE_TEST_HOST", "beta"),
            ("FOLDWISE_TEST_NO_FLOCK", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let kept = format!(
        "kept for 1 running run(s) (pid {} on alpha: `held`, {}): \
         2 object(s), 1 working folder(s), 1 temporary folder(s), 1 derived file(s)",
        child.id(),
        p.pipeline().display()
    );
    assert!(text.lines().any(|l| l == kept), "{text}\nexpected: {kept}");
    assert!(!silent.exists(), "the silent host's lease was removed");

    std::fs::remove_file(&hold).unwrap();
    assert!(child.wait().unwrap().success());
    let undisturbed = Project::new(&tiny_training("held", 3));
    undisturbed.run();
    assert_eq!(digests(&p), digests(&undisturbed));
}

const FOUR: &str = r#"
[pipeline]
name = "four"

[nodes.a]
kind = "command"
shell = "echo alpha > $FOLDWISE_OUT/a.txt"

[nodes.b]
kind = "command"
inputs = { a = "a" }
shell = "cat $FOLDWISE_INPUT_A/a.txt > $FOLDWISE_OUT/b.txt; echo beta >> $FOLDWISE_OUT/b.txt"

[nodes.c]
kind = "command"
shell = "echo gamma > $FOLDWISE_OUT/c.txt"

[nodes.d]
kind = "command"
inputs = { c = "c" }
shell = "echo delta > $FOLDWISE_OUT/d.txt"
"#;

#[test]
fn verify_finds_a_flipped_byte_a_truncated_and_a_missing_file_and_fix_rebuilds_those() {
    let p = Project::new(FOUR);
    assert_eq!(p.run().executed(), names(&["a", "b", "c", "d"]));
    let before = digests(&p);
    let st = p.status();
    let dir = |i: usize| st[i].artifact.as_ref().unwrap().dir.clone();
    let key = |i: usize| st[i].key.as_ref().unwrap()[..12].to_string();
    // A flipped byte, size and mtime kept: the memo cannot see it.
    let a = dir(0).join("a.txt");
    let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
    std::fs::write(&a, "alphA\n").unwrap();
    let f = std::fs::File::options().write(true).open(&a).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let b = std::fs::File::options()
        .write(true)
        .open(dir(1).join("b.txt"))
        .unwrap();
    b.set_len(3).unwrap();
    drop(b);
    std::fs::remove_file(dir(2).join("c.txt")).unwrap();

    let out = p.cli(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = format!(
        "damaged {}  four/a: a.txt changed\n\
         damaged {}  four/b: b.txt changed\n\
         damaged {}  four/c: c.txt missing\n\
         run `foldwise verify --fix` to move them aside; the next run rebuilds them\n",
        key(0),
        key(1),
        key(2)
    );
    let text = stdout(&out);
    assert!(text.starts_with("checked 4 object(s), "), "{text}");
    assert!(
        text.ends_with(&format!(": 3 damaged\n{expected}")),
        "{text}"
    );

    let fixed = p.cli(&["verify", "--fix"]);
    assert_eq!(fixed.status.code(), Some(1));
    assert!(
        stdout(&fixed).ends_with(
            "moved 3 damaged object(s) into the cache's damaged/ folder; \
             the next run rebuilds them (`gc` deletes them)\n"
        ),
        "{}",
        stdout(&fixed)
    );
    let clean = p.cli(&["verify"]);
    assert_eq!(clean.status.code(), Some(0));
    assert!(
        stdout(&clean).ends_with(": no damage\n"),
        "{}",
        stdout(&clean)
    );

    assert_eq!(p.run().executed(), names(&["a", "b", "c"]));
    assert_eq!(digests(&p), before);
    let gc = stdout(&p.cli(&["gc", "p.toml"]));
    assert!(
        gc.contains("also removed 3 damaged object(s) that `verify --fix` had moved aside"),
        "{gc}"
    );
}

#[test]
fn check_reports_a_missing_data_folder_at_its_position_until_it_exists() {
    let p = Project::new(
        r#"
[nodes.data]
kind = "dataset"
images = "imgs"
"#,
    );
    let out = p.cli(&["check", "p.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("× node `data`: `images`: imgs does not exist"),
        "{err}"
    );
    assert!(err.contains("[p.toml:4:10]"), "{err}");
    std::fs::create_dir(p.path().join("imgs")).unwrap();
    let ok = p.cli(&["check", "p.toml"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(
        stdout(&ok),
        "p.toml: ok (1 nodes, 1 instances, 0 expanded per fold)\n"
    );
}

#[test]
fn an_empty_pipeline_is_an_error_for_every_command() {
    let p = Project::new("");
    for args in [["check", "p.toml"], ["run", "p.toml"]] {
        let out = p.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("× the pipeline declares no node"),
            "{}",
            stderr(&out)
        );
    }
}

/// `gc` killed (SIGKILL) after removing its first object: every object left
/// is whole, what the given pipeline reaches is fresh, and the next `gc`
/// finishes the work.
#[test]
fn a_gc_killed_midway_leaves_a_consistent_cache() {
    let p = Project::new(FOUR);
    assert_eq!(p.run().executed(), names(&["a", "b", "c", "d"]));
    std::fs::write(p.path().join("other.toml"), OTHER).unwrap();
    assert_eq!(p.cli(&["run", "other.toml", "-q"]).status.code(), Some(0));
    let hold = p.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let mut gc = Command::new(env!("CARGO_BIN_EXE_foldwise"))
        .args(["gc", "other.toml"])
        .current_dir(p.path())
        .env("FOLDWISE_CACHE", p.cache())
        .env(store::PAUSE_GC, &hold)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&p.path().join("hold.reached"));
    gc.kill().unwrap(); // SIGKILL
    gc.wait().unwrap();
    std::fs::remove_file(&hold).unwrap();

    // One of the five objects was removed, whole; the four left are intact.
    let verify = p.cli(&["verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    assert!(stdout(&verify).starts_with("checked 4 object(s), "));
    let again = stdout(&p.cli(&["gc", "other.toml"]));
    assert!(again.starts_with("removed 3 object(s)"), "{again}");
    let only = stdout(&p.cli(&["verify"]));
    assert!(only.starts_with("checked 1 object(s), "), "{only}");
    assert_eq!(p.run().executed(), names(&["a", "b", "c", "d"]));
}
