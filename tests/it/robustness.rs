//! Killed runs, concurrent runs, and the file-digest memo.

use std::process::{Command, Stdio};

use foldwise::config;
use foldwise::exec::Engine;
use foldwise::nodes::KINDS;
use foldwise::store::{self, Store};

use crate::common::{digests, names, spawn_run, stderr, wait_for, Project};

/// `slow` writes half its output, signals that it started, then waits while
/// the `block` file exists (a file outside its key).
pub(crate) const KILLABLE: &str = r#"
[pipeline]
name = "kill"

[nodes.slow]
kind = "command"
shell = """
echo half > "$FOLDWISE_OUT/half.txt"
touch started
while [ -f block ]; do sleep 0.05; done
echo rest > "$FOLDWISE_OUT/rest.txt"
"""

[nodes.after]
kind = "command"
inputs = { s = "slow" }
shell = "cat $FOLDWISE_INPUT_S/half.txt $FOLDWISE_INPUT_S/rest.txt > $FOLDWISE_OUT/all.txt"
"#;

#[test]
fn a_run_killed_mid_node_leaves_no_artifact_and_the_rerun_completes() {
    let p = Project::new(KILLABLE);
    std::fs::write(p.path().join("block"), "").unwrap();
    let mut child = spawn_run(&p, &[]);
    wait_for(&p.path().join("started"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::fs::remove_file(p.path().join("block")).unwrap();

    // The half-written output is not an artifact.
    assert_eq!(
        p.reasons(),
        vec![
            ("slow".into(), "never run".into()),
            ("after".into(), "upstream `slow` is stale".into()),
        ]
    );
    let r = p.run();
    assert_eq!(r.executed(), names(&["slow", "after"]));
    let after = p.status().pop().unwrap().artifact.unwrap();
    assert_eq!(
        std::fs::read_to_string(after.dir.join("all.txt")).unwrap(),
        "half\nrest\n"
    );
    // The killed run's temporary folder is garbage that gc removes.
    let out = p.cli(&["gc", "p.toml"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("and 1 temporary folder(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `one` and `two` wait for each other (a barrier, bounded at 60 s, after
/// which the node fails), so they finish only when two processes compute
/// them at the same time. Every command appends its name to `computed`.
const BARRIER: &str = r#"
[pipeline]
name = "race"

[nodes.one]
kind = "command"
shell = """
echo one >> computed
touch started-one
i=0; while [ ! -f started-two ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 1; sleep 0.05; done
echo 1 > $FOLDWISE_OUT/x
"""

[nodes.two]
kind = "command"
shell = """
echo two >> computed
touch started-two
i=0; while [ ! -f started-one ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 1; sleep 0.05; done
echo 2 > $FOLDWISE_OUT/x
"""

[nodes.both]
kind = "command"
inputs = { a = "one", b = "two" }
shell = "echo both >> computed; cat $FOLDWISE_INPUT_A/x $FOLDWISE_INPUT_B/x > $FOLDWISE_OUT/x"
"#;

#[test]
fn two_concurrent_runs_share_the_cache_and_compute_each_node_once() {
    let p = Project::new(BARRIER);
    let spawn = |targets: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_foldwise"))
            .args(["run", "p.toml", "--json", "-j", "1"])
            .args(targets)
            .current_dir(p.path())
            .env("FOLDWISE_CACHE", p.cache())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // `a` (every node, one job, in declaration order) computes `one` and
    // waits in it until `b` (only `two`) computes `two`; then `a` finds
    // `two` done (or waits on its lock) and computes `both`.
    let (a, b) = (spawn(&[]), spawn(&["two"]));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let executed = |o: &std::process::Output| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["outcome"] == "executed")
            .map(|n| n["instance"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(executed(&a), names(&["one", "both"]));
    assert_eq!(executed(&b), names(&["two"]));
    let mut computed: Vec<String> = std::fs::read_to_string(p.path().join("computed"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    computed.sort();
    assert_eq!(computed, names(&["both", "one", "two"]));
    assert!(p.run().executed().is_empty());
}

/// Two command nodes, `b` reading `a`.
const CHAIN: &str = r#"
[pipeline]
name = "chain"

[nodes.a]
kind = "command"
shell = "echo a > $FOLDWISE_OUT/a.txt"

[nodes.b]
kind = "command"
inputs = { a = "a" }
shell = "cat $FOLDWISE_INPUT_A/a.txt > $FOLDWISE_OUT/b.txt; echo b >> $FOLDWISE_OUT/b.txt"
"#;

/// Runs [`CHAIN`] with the pause hook `var` set, kills the run with SIGKILL
/// at `a`'s commit, and returns the project (its `hold` file removed).
fn killed_at_commit(var: &str) -> Project {
    let p = Project::new(CHAIN);
    let hold = p.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let mut child = spawn_run(&p, &[(var, &hold)]);
    wait_for(&p.path().join("hold.reached"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::fs::remove_file(&hold).unwrap();
    p
}

/// The artifact digests of an uninterrupted run of [`CHAIN`].
fn uninterrupted_chain() -> Vec<(String, String)> {
    let q = Project::new(CHAIN);
    assert_eq!(q.run().executed(), names(&["a", "b"]));
    digests(&q)
}

/// The folders in `objects/` (complete artifacts or not).
fn objects(p: &Project) -> usize {
    std::fs::read_dir(p.cache().join("objects"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum()
}

#[test]
fn a_run_killed_just_before_the_commit_rename_leaves_no_artifact() {
    let p = killed_at_commit(store::PAUSE_BEFORE_RENAME);
    assert_eq!(objects(&p), 0);
    assert_eq!(
        p.reasons(),
        vec![
            ("a".into(), "never run".into()),
            ("b".into(), "upstream `a` is stale".into()),
        ]
    );
    assert_eq!(p.run().executed(), names(&["a", "b"]));
    assert_eq!(digests(&p), uninterrupted_chain());
}

#[test]
fn a_run_killed_just_after_the_commit_rename_keeps_a_complete_artifact() {
    let p = killed_at_commit(store::PAUSE_AFTER_RENAME);
    // The object is complete (its ref was never recorded): it counts.
    assert_eq!(objects(&p), 1);
    assert_eq!(
        p.reasons(),
        vec![
            ("a".into(), "fresh".into()),
            ("b".into(), "never run".into()),
        ]
    );
    let r = p.run();
    assert_eq!(r.reused(), names(&["a"]));
    assert_eq!(r.executed(), names(&["b"]));
    assert_eq!(digests(&p), uninterrupted_chain());
}

/// A dataset of 5,000 images is hashed once; later status calls only
/// `stat` the files.
#[test]
fn an_unchanged_5000_image_dataset_is_not_read_again() {
    let p = Project::new(
        r#"
[pipeline]
name = "big"

[nodes.data]
kind = "dataset"
images = "imgs"
labels = "labels.csv"

[nodes.folds]
kind = "split"
data = "data"
k = 5
"#,
    );
    let imgs = p.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    let mut csv = String::from("file_name,file_code\n");
    let mut png = Vec::new();
    image::RgbImage::from_pixel(6, 4, image::Rgb([200, 10, 10]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    for i in 0..5000 {
        std::fs::write(imgs.join(format!("{i:05}.png")), &png).unwrap();
        csv.push_str(&format!("{i:05}.png,{}\n", i % 97));
    }
    std::fs::write(p.path().join("labels.csv"), csv).unwrap();
    assert_eq!(p.run().executed(), names(&["data", "folds"]));

    let pipeline = config::load(&p.pipeline(), KINDS).unwrap();
    let store = Store::open(&p.cache()).unwrap();
    let engine = Engine::new(&pipeline, &store);
    let st = engine.status(&[true, true]);
    assert!(st.iter().all(|s| s.is_fresh()));
    assert_eq!(store.memo().files_hashed(), 0);
    assert!(engine
        .run(&Default::default(), &foldwise::exec::NullObserver)
        .unwrap()
        .executed()
        .is_empty());
    assert_eq!(store.memo().files_hashed(), 0);

    // One changed image is read, and named.
    std::fs::write(imgs.join("00007.png"), &png[..]).unwrap();
    let mut other = png.clone();
    other.extend_from_slice(b"\0");
    std::fs::write(imgs.join("00008.png"), &other).unwrap();
    let store = Store::open(&p.cache()).unwrap();
    let engine = Engine::new(&pipeline, &store);
    let st = engine.status(&[true, true]);
    assert_eq!(
        st[0].stale.as_ref().unwrap().to_string(),
        format!("input `images` changed ({})", imgs.display())
    );
    assert_eq!(store.memo().files_hashed(), 2);
}
