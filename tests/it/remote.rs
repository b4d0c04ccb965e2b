//! The remote cache: push, pull into an empty cache, `status` saying
//! `remote` from one listing, a run that pulls instead of training,
//! damaged remote files rejected, an interrupted push that leaves nothing
//! visible, SIGKILL at random moments, `diff` counting the remote's
//! compute, `gc --remote-too`, and credentials kept out of every message.
//!
//! Every scenario runs against a `file://` remote; the same scenarios run
//! against a real S3-compatible server (SeaweedFS, which `.ci/run` starts
//! on 127.0.0.1 and names in `FOLDWISE_TEST_S3_*`) and print that they
//! were skipped where there is none.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::common::{self, names, stderr, stdout, Project};

/// Synthetic plates, a split, a command per fold and a gathering command:
/// seven instances, every kind of edge (whole artifacts, part files, a
/// gather).
const PIPELINE: &str = r#"
[pipeline]
name = "shared"
seed = 3

[nodes.plates]
kind = "synthetic"
count = 24

[nodes.folds]
kind = "split"
data = "plates"
k = 4

[nodes.sizes]
kind = "command"
inputs = { fold = "folds" }
shell = "wc -c < \"$FOLDWISE_INPUT_FOLD_PART\" > \"$FOLDWISE_OUT/size.txt\""

[nodes.table]
kind = "command"
inputs = { sizes = "sizes[*]" }
shell = "echo \"$FOLDWISE_INPUT_SIZES\" | tr ':' '\\n' | while read d; do cat \"$d/size.txt\"; done > \"$FOLDWISE_OUT/table.txt\""
"#;

/// Where a scenario's remote lives, and the environment its commands need.
struct Backend {
    url: String,
    env: Vec<(String, String)>,
}

impl Backend {
    /// A shared folder inside `p`.
    fn folder(p: &Project) -> Backend {
        Backend {
            url: format!("file://{}", p.path().join("remote").display()),
            env: Vec::new(),
        }
    }

    /// A fresh prefix in the S3 test bucket, or `None` (with a notice)
    /// when no server was started.
    fn s3(test: &str) -> Option<Backend> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(endpoint), Some(bucket), Some(key), Some(secret)) = (
            var("FOLDWISE_TEST_S3_ENDPOINT"),
            var("FOLDWISE_TEST_S3_BUCKET"),
            var("FOLDWISE_TEST_S3_KEY"),
            var("FOLDWISE_TEST_S3_SECRET"),
        ) else {
            println!(
                "skipped {test}: no S3-compatible server (FOLDWISE_TEST_S3_ENDPOINT is unset; .ci/run starts SeaweedFS)"
            );
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Some(Backend {
            url: format!("s3://{bucket}/{test}-{}-{nanos}", std::process::id()),
            env: vec![
                ("AWS_ENDPOINT_URL".into(), endpoint),
                ("AWS_ACCESS_KEY_ID".into(), key),
                ("AWS_SECRET_ACCESS_KEY".into(), secret),
                ("AWS_REGION".into(), "us-east-1".into()),
            ],
        })
    }

    /// `foldwise ARGS --remote URL` in `p`, with the backend's environment
    /// and `extra`.
    fn cli(&self, p: &Project, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--remote", &self.url]);
        p.cli_env(&all, &env)
    }

    /// Like [`Backend::cli`] with `--json`, the exit code checked, the
    /// output parsed.
    fn json(&self, p: &Project, args: &[&str], code: i32) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(p, &all, &[]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&out)))
    }
}

/// A second project (another machine) with the same pipeline file and an
/// empty cache.
fn teammate(text: &str) -> Project {
    Project::new(text)
}

fn strings(v: &Value, path: &str) -> Vec<String> {
    common::list(v, path)
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

const ALL: &[&str] = &[
    "plates", "folds", "sizes[0]", "sizes[1]", "sizes[2]", "sizes[3]", "table",
];

/// Push; a second push moves 0 bytes; pull into an empty cache gives the
/// same artifacts, and `status` there is all fresh with no remote.
fn push_then_pull(p: &Project, b: &Backend) {
    p.run();
    let first = b.json(p, &["push", "p.toml"], 0);
    assert_eq!(strings(&first, "moved"), names(ALL));
    assert!(common::num(&first, "bytes") > 0.0);
    let again = b.json(p, &["push", "p.toml"], 0);
    assert_eq!(strings(&again, "moved"), Vec::<String>::new());
    assert_eq!(strings(&again, "skipped"), names(ALL));
    assert_eq!(common::num(&again, "bytes"), 0.0);
    assert_eq!(common::num(&again, "files"), 0.0);

    let q = teammate(PIPELINE);
    let pulled = b.json(&q, &["pull", "p.toml"], 0);
    assert_eq!(strings(&pulled, "moved"), names(ALL));
    // Every file of every artifact (a push sends the same bytes once).
    let total: u64 = p
        .status()
        .iter()
        .flat_map(|s| s.artifact.as_ref().unwrap().manifest.files.clone())
        .map(|f| f.size)
        .sum();
    assert_eq!(common::num(&pulled, "bytes"), total as f64);
    assert!(total as f64 >= common::num(&first, "bytes"));
    assert_eq!(common::digests(&q), common::digests(p));
    assert!(q.status().iter().all(|s| s.is_fresh()));
    let again = b.json(&q, &["pull", "p.toml"], 0);
    assert_eq!(strings(&again, "skipped"), names(ALL));
    assert_eq!(common::num(&again, "bytes"), 0.0);
}

/// `status` on an empty cache says `remote` for every node after one
/// listing (and one manifest per node, kept, so a second `status` makes
/// the listing alone); pulling only `table` leaves its ancestors remote.
fn status_from_one_listing(p: &Project, b: &Backend) {
    p.run();
    b.json(p, &["push", "p.toml"], 0);
    let q = teammate(PIPELINE);
    let trace = [("FOLDWISE_REMOTE_TRACE", "1")];
    let out = b.cli(&q, &["status", "p.toml"], &trace);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let requests: Vec<String> = stderr(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("remote: "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let lists = requests.iter().filter(|r| *r == "LIST").count();
    let gets = requests.iter().filter(|r| *r == "GET").count();
    assert_eq!((lists, gets, requests.len()), (1, ALL.len(), ALL.len() + 1));
    let table = stdout(&out);
    assert!(
        table.ends_with("0 fresh, 7 on the remote, 0 stale\n"),
        "{table}"
    );
    assert!(
        table.starts_with("remote plates    synthetic: never run; on the remote, a run pulls it\n"),
        "{table}"
    );
    let out = b.cli(&q, &["status", "p.toml"], &trace);
    assert_eq!(
        stderr(&out)
            .lines()
            .filter(|l| l.starts_with("remote: "))
            .collect::<Vec<_>>(),
        ["remote: LIST manifests/"]
    );

    let pulled = b.json(&q, &["pull", "p.toml", "table"], 0);
    assert_eq!(strings(&pulled, "moved"), names(&["table"]));
    let st = b.json(&q, &["status", "p.toml"], 0);
    let remote: Vec<(String, bool)> = st
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                common::text(s, "instance").to_string(),
                s.get("remote").is_some(),
            )
        })
        .collect();
    assert_eq!(
        remote,
        ALL.iter()
            .map(|n| (n.to_string(), *n != "table"))
            .collect::<Vec<_>>()
    );
    // Without the remote, `table`'s key cannot be worked out here.
    let out = q.cli(&["status", "p.toml", "--no-remote"]);
    assert!(
        stdout(&out).ends_with("0 fresh, 7 stale\n"),
        "{}",
        stdout(&out)
    );
}

/// With `[cache] remote` and `push = true`, a run pushes what it computed;
/// a teammate's run pulls the trained model instead of training it.
fn run_pulls_instead_of_training(p: &Project, b: &Backend) {
    let text = format!(
        "{}\n[cache]\nremote = \"{}\"\npush = true\n",
        common::tiny_training("pulled", 1),
        b.url
    );
    p.write(&text);
    let env: Vec<(&str, &str)> = b
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = p.cli_env(&["run", "p.toml"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pushed 3 artifact(s) to "),
        "{}",
        stderr(&out)
    );
    let q = teammate(&text);
    let out = q.cli_env(&["run", "p.toml", "--json"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes: Vec<(String, String)> = common::list(&report, "nodes")
        .iter()
        .map(|n| {
            (
                common::text(n, "instance").to_string(),
                common::text(n, "outcome").to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [("plates", "pulled"), ("folds", "pulled"), ("cnn", "pulled")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(common::digests(&q), common::digests(p));
    // `--no-remote` computes instead.
    let r = teammate(&text);
    let out = r.cli_env(&["run", "p.toml", "--json", "--no-remote"], &env);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(common::list(&report, "nodes")
        .iter()
        .all(|n| common::text(n, "outcome") == "executed"));
}

/// The key of `instance` in `p`'s cache.
fn key_of(p: &Project, instance: &str) -> String {
    p.status()
        .into_iter()
        .find(|s| s.instance == instance)
        .and_then(|s| s.key)
        .unwrap()
}

/// A remote file whose bytes changed is refused on pull, with its key and
/// file named; nothing of that artifact lands locally.
fn damaged_remote_file_is_rejected(p: &Project, b: &Backend, damage: &dyn Fn(&str)) {
    p.run();
    b.json(p, &["push", "p.toml"], 0);
    let key = key_of(p, "table");
    let file = p
        .status()
        .into_iter()
        .find(|s| s.instance == "table")
        .and_then(|s| s.artifact)
        .unwrap()
        .manifest
        .files[0]
        .clone();
    let digest = file.digest.to_hex();
    damage(&format!("blobs/{}/{digest}", &digest[..2]));
    let q = teammate(PIPELINE);
    let out = b.cli(&q, &["pull", "p.toml", "table"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "pulled 0 artifact(s) from {url}: 0 file(s), 0 B moved; 0 skipped (already here); 1 failed\n\
             error: `table`: remote {url}: the artifact `{key}` is damaged there: its file `table.txt` (blob blobs/{}/{digest}) does not match its digest\n  \
             [foldwise::remote::corrupt]\n  \
             help: nothing of it was kept locally; `--no-remote` computes it here instead. To repair the remote, remove its `manifests/KEY.json` and push the artifact again from a machine that has it\n",
            &digest[..2],
            url = b.url
        )
    );
    assert!(!q
        .cache()
        .join("objects")
        .join(&key[..2])
        .join(&key)
        .exists());
    assert_eq!(std::fs::read_dir(q.cache().join("tmp")).unwrap().count(), 0);
    // A run fails that node the same way, and computes it with --no-remote.
    let out = b.cli(&q, &["run", "p.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("[foldwise::remote::corrupt]"));
    let out = q.cli(&["run", "p.toml", "--no-remote"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A push killed after its files and before its manifests leaves nothing a
/// reader sees; the next push completes it.
fn interrupted_push_is_invisible(p: &Project, b: &Backend) {
    p.run();
    let pause = p.path().join("pause-push");
    std::fs::write(&pause, "").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_foldwise"));
    cmd.args(["push", "p.toml", "--remote", &b.url])
        .current_dir(p.path())
        .env("FOLDWISE_CACHE", p.cache())
        .env("FOLDWISE_TEST_PAUSE_PUSH", &pause)
        .envs(b.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    common::wait_for(&p.path().join("pause-push.reached"));
    child.kill().unwrap();
    child.wait().unwrap();
    let q = teammate(PIPELINE);
    let st = b.json(&q, &["status", "p.toml"], 0);
    assert!(st
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s.get("remote").is_none()));
    let done = b.json(p, &["push", "p.toml"], 0);
    assert_eq!(strings(&done, "moved"), names(ALL));
    // The files were there already: only manifests moved.
    assert_eq!(common::num(&done, "bytes"), 0.0);
    let pulled = b.json(&q, &["pull", "p.toml"], 0);
    assert_eq!(strings(&pulled, "moved"), names(ALL));
}

#[test]
fn folder_push_then_pull() {
    let p = Project::new(PIPELINE);
    push_then_pull(&p, &Backend::folder(&p));
}

#[test]
fn folder_status_from_one_listing() {
    let p = Project::new(PIPELINE);
    status_from_one_listing(&p, &Backend::folder(&p));
}

#[test]
fn folder_run_pulls_instead_of_training() {
    let p = Project::new(PIPELINE);
    run_pulls_instead_of_training(&p, &Backend::folder(&p));
}

#[test]
fn folder_damaged_remote_file_is_rejected() {
    let p = Project::new(PIPELINE);
    let b = Backend::folder(&p);
    let root = p.path().join("remote");
    damaged_remote_file_is_rejected(&p, &b, &|rel| {
        let f = root.join(rel);
        let mut bytes = std::fs::read(&f).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&f, bytes).unwrap();
    });
}

#[test]
fn folder_interrupted_push_is_invisible() {
    let p = Project::new(PIPELINE);
    interrupted_push_is_invisible(&p, &Backend::folder(&p));
}

#[test]
fn s3_push_then_pull() {
    if let Some(b) = Backend::s3("push-then-pull") {
        push_then_pull(&Project::new(PIPELINE), &b);
    }
}

#[test]
fn s3_status_from_one_listing() {
    if let Some(b) = Backend::s3("status") {
        status_from_one_listing(&Project::new(PIPELINE), &b);
    }
}

#[test]
fn s3_run_pulls_instead_of_training() {
    if let Some(b) = Backend::s3("run-pulls") {
        run_pulls_instead_of_training(&Project::new(PIPELINE), &b);
    }
}

#[test]
fn s3_damaged_remote_file_is_rejected() {
    let Some(b) = Backend::s3("damaged") else {
        return;
    };
    // Damaged through the S3 API itself (curl signs with SigV4).
    let p = Project::new(PIPELINE);
    let url = b.url.clone();
    let env = b.env.clone();
    damaged_remote_file_is_rejected(&p, &b, &move |rel| s3_put(&url, &env, rel, b"damaged"));
}

#[test]
fn s3_interrupted_push_is_invisible() {
    if let Some(b) = Backend::s3("interrupted") {
        interrupted_push_is_invisible(&Project::new(PIPELINE), &b);
    }
}

/// Overwrites `rel` under the remote `url` (an `s3://` URL) with `bytes`,
/// signed with the backend's credentials (curl's `--aws-sigv4`).
fn s3_put(url: &str, env: &[(String, String)], rel: &str, bytes: &[u8]) {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let (bucket, prefix) = url.strip_prefix("s3://").unwrap().split_once('/').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, bytes).unwrap();
    let target = format!("{}/{bucket}/{prefix}/{rel}", get("AWS_ENDPOINT_URL"));
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args(["--aws-sigv4", "aws:amz:us-east-1:s3"])
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .arg("--user")
        .arg(format!(
            "{}:{}",
            get("AWS_ACCESS_KEY_ID"),
            get("AWS_SECRET_ACCESS_KEY")
        ))
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "PUT {target}");
}

/// `diff` counts the compute B would pull from the remote.
#[test]
fn diff_counts_the_compute_on_the_remote() {
    let p = Project::new(PIPELINE);
    let b = Backend::folder(&p);
    p.run();
    b.json(&p, &["push", "p.toml"], 0);
    let q = teammate(PIPELINE);
    let d = b.json(&q, &["diff", "p.toml", "p.toml"], 0);
    assert_eq!(common::num(&d, "remote_instances"), 7.0);
    assert!(common::num(&d, "remote_seconds") > 0.0);
    let out = b.cli(&q, &["diff", "p.toml", "p.toml"], &[]);
    assert!(
        stdout(&out).contains("B pulls 7 instances from the remote instead of computing them ("),
        "{}",
        stdout(&out)
    );
    let out = q.cli(&["diff", "p.toml", "p.toml", "--no-remote"]);
    assert!(!stdout(&out).contains("from the remote"));
}

/// `gc --remote-too` keeps what the given pipelines need and removes the
/// rest, files last; without the flag the remote is untouched, and it
/// refuses to run without a pipeline.
#[test]
fn gc_on_the_remote_only_behind_its_flag() {
    let p = Project::new(PIPELINE);
    let b = Backend::folder(&p);
    p.run();
    b.json(&p, &["push", "p.toml"], 0);
    // A variant whose `table` differs: its artifact is pushed too.
    p.edit(
        "> \\\"$FOLDWISE_OUT/table.txt\\\"",
        "| sed s/^/n=/ > \\\"$FOLDWISE_OUT/table.txt\\\"",
    );
    p.run();
    b.json(&p, &["push", "p.toml", "table"], 0);
    let manifests = || {
        std::fs::read_dir(p.path().join("remote/manifests"))
            .unwrap()
            .count()
    };
    assert_eq!(manifests(), 8);
    let out = b.cli(&p, &["gc"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(manifests(), 8);
    let out = p.cli(&["gc", "--remote-too"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("[foldwise::usage::gc_remote]"));
    let grace = [("FOLDWISE_REMOTE_GC_GRACE", "0")];
    let out = b.cli(&p, &["gc", "--remote-too", "--dry-run", "p.toml"], &grace);
    assert!(
        stdout(&out).contains(": would remove 1 artifact(s) and 1 file(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(manifests(), 8);
    let out = b.cli(&p, &["gc", "--remote-too", "p.toml"], &grace);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(": removed 1 artifact(s) and 1 file(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(manifests(), 7);
    // What the pipeline needs is whole: a fresh cache pulls all of it.
    let q = teammate(&std::fs::read_to_string(p.pipeline()).unwrap());
    let pulled = b.json(&q, &["pull", "p.toml"], 0);
    assert_eq!(strings(&pulled, "moved"), names(ALL));
}

/// Credentials never appear in what foldwise prints, even when the server
/// cannot be reached and the endpoint URL carries a user and password.
#[test]
fn credentials_never_appear_in_messages() {
    let p = Project::new(PIPELINE);
    p.run();
    let q = teammate(PIPELINE);
    let secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRETKEY";
    let key_id = "AKIAFOLDWISETESTKEY";
    let env = [
        ("AWS_ENDPOINT_URL", "http://someone:hunter2pw@127.0.0.1:9"),
        ("AWS_ACCESS_KEY_ID", key_id),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", "us-east-1"),
    ];
    for (who, args) in [
        (&p, &["push", "p.toml", "--remote", "s3://bucket/p"][..]),
        (&q, &["pull", "p.toml", "--remote", "s3://bucket/p"][..]),
        (&q, &["status", "p.toml", "--remote", "s3://bucket/p"][..]),
        (&q, &["run", "p.toml", "--remote", "s3://bucket/p"][..]),
    ] {
        let out = who.cli_env(args, &env);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(all.contains("127.0.0.1:9"), "{args:?}: {all}");
        for s in [secret, key_id, "hunter2pw", "someone"] {
            assert!(!all.contains(s), "{args:?} shows `{s}`: {all}");
        }
    }
    let history = std::fs::read_dir(q.cache().join("history")).unwrap();
    for h in history {
        let text = std::fs::read_to_string(h.unwrap().path()).unwrap();
        assert!(!text.contains(secret) && !text.contains("hunter2pw"));
    }
}

/// Bad remotes on the command line and in the file are named clearly.
#[test]
fn bad_remotes_are_named() {
    let p = Project::new(PIPELINE);
    let out = p.cli(&["status", "p.toml", "--remote", "ftp://x/y"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: --remote `ftp://x/y` is not a remote foldwise knows: it must start with `s3://` or `file://`\n  [foldwise::usage::remote]\n  help: write `s3://BUCKET[/PREFIX]` or `file:///PATH`\n"
    );
    let out = p.cli(&["push", "p.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: `push` needs a remote cache, and none is named\n  [foldwise::remote::none]\n  help: set `remote` in the pipeline's `[cache]` table, or pass `--remote s3://BUCKET/PREFIX` or `--remote file:///PATH` (and not `--no-remote`)\n"
    );
}

/// SIGKILL at random moments of a push, then of a pull, ten times each:
/// neither side is ever corrupt, and the rerun completes.
#[test]
fn sigkill_during_push_or_pull_loses_nothing() {
    let text = format!(
        "{PIPELINE}\n[nodes.blobs]\nkind = \"command\"\nshell = \"for i in $(seq 40); do head -c 200000 /dev/urandom > \\\"$FOLDWISE_OUT/$i.bin\\\"; done\"\n"
    );
    let p = Project::new(&text);
    let b = Backend::folder(&p);
    p.run();
    let all: Vec<String> = p.status().into_iter().map(|s| s.instance).collect();
    let mut seed: u64 = 0x5eed;
    let mut delay = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::time::Duration::from_millis((seed >> 33) % 120)
    };
    let kill_after = |args: &[&str], cache: &Path, wait: std::time::Duration| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_foldwise"))
            .args(args)
            .args(["--remote", &b.url])
            .current_dir(p.path())
            .env("FOLDWISE_CACHE", cache)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(wait);
        let _ = child.kill();
        child.wait().unwrap();
    };
    for _ in 0..10 {
        kill_after(&["push", "p.toml"], &p.cache(), delay());
    }
    let done = b.json(&p, &["push", "p.toml"], 0);
    let mut on_remote = strings(&done, "moved");
    on_remote.extend(strings(&done, "skipped"));
    on_remote.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(on_remote, expected);
    let q = teammate(&text);
    for _ in 0..10 {
        kill_after(&["pull", "p.toml"], &q.cache(), delay());
        // Whatever landed locally is whole.
        let out = q.cli(&["verify"]);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    }
    let pulled = b.json(&q, &["pull", "p.toml"], 0);
    let mut here = strings(&pulled, "moved");
    here.extend(strings(&pulled, "skipped"));
    here.sort();
    assert_eq!(here, expected);
    assert_eq!(common::digests(&q), common::digests(&p));
    let out = p.cli(&["verify"]);
    assert_eq!(out.status.code(), Some(0));
}

/// Two pushes of the same artifacts at once: both succeed, each manifest
/// is created by exactly one of them, and the remote pulls whole.
#[test]
fn concurrent_pushes_of_the_same_keys_are_harmless() {
    let p = Project::new(PIPELINE);
    let b = Backend::folder(&p);
    p.run();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_foldwise"))
            .args(["push", "p.toml", "--json", "--remote", &b.url])
            .current_dir(p.path())
            .env("FOLDWISE_CACHE", p.cache())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (x, y) = (spawn(), spawn());
    let reports: Vec<Value> = [x, y]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let mut created: Vec<String> = reports.iter().flat_map(|r| strings(r, "moved")).collect();
    created.sort();
    let mut all = names(ALL);
    all.sort();
    assert_eq!(created, all, "each manifest created exactly once");
    for r in &reports {
        let mut seen = strings(r, "moved");
        seen.extend(strings(r, "skipped"));
        seen.sort();
        assert_eq!(seen, all);
    }
    let q = teammate(PIPELINE);
    let pulled = b.json(&q, &["pull", "p.toml"], 0);
    assert_eq!(strings(&pulled, "moved"), names(ALL));
    assert_eq!(common::digests(&q), common::digests(&p));
}

/// A remote manifest that is not a manifest (cut short, or another key's)
/// is refused on pull with the key named, and nothing lands locally.
#[test]
fn a_damaged_remote_manifest_is_refused() {
    let p = Project::new(PIPELINE);
    let b = Backend::folder(&p);
    p.run();
    b.json(&p, &["push", "p.toml"], 0);
    let (table, folds) = (key_of(&p, "table"), key_of(&p, "folds"));
    let manifests = p.path().join("remote/manifests");
    let cut = std::fs::read(manifests.join(format!("{table}.json"))).unwrap();
    std::fs::write(
        manifests.join(format!("{table}.json")),
        &cut[..cut.len() / 2],
    )
    .unwrap();
    let q = teammate(PIPELINE);
    let out = b.cli(&q, &["pull", "p.toml", "table"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "error: remote {}: the artifact `{table}` is damaged there: its manifest is not readable: ",
            b.url
        )),
        "{err}"
    );
    assert!(err.contains("[foldwise::remote::corrupt]"), "{err}");
    // Another key's manifest under this key's name.
    let other = std::fs::read(manifests.join(format!("{folds}.json"))).unwrap();
    std::fs::write(manifests.join(format!("{table}.json")), other).unwrap();
    let out = b.cli(&q, &["pull", "p.toml", "table"], &[]);
    assert!(
        stderr(&out).contains(&format!(
            "the artifact `{table}` is damaged there: its manifest is that of `{folds}`"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!q
        .cache()
        .join("objects")
        .join(&table[..2])
        .join(&table)
        .exists());
}
