//! `run --executor slurm` end to end against fake `sbatch`, `squeue` and
//! `scancel` on `PATH` (each job runs at once, in the background, on this
//! machine): the same keys and artifacts as a local run, a failed job
//! reported with its log, SIGINT cancelling the jobs, and a rerun that
//! reuses what finished.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{self, stderr, Project};
use crate::testutil::FakeSlurm;

/// Plates, a split and a command per fold; `slow` sleeps while the file
/// `slow` exists beside the pipeline (not an input: its key stays).
const PIPELINE: &str = r#"
[pipeline]
name = "cluster"
seed = 5

[nodes.plates]
kind = "synthetic"
count = 16

[nodes.folds]
kind = "split"
data = "plates"
k = 3

[nodes.sizes]
kind = "command"
inputs = { fold = "folds" }
shell = "wc -c < \"$FOLDWISE_INPUT_FOLD_PART\" > \"$FOLDWISE_OUT/size.txt\""

[nodes.slow]
kind = "command"
inputs = { sizes = "sizes[*]" }
shell = "while [ -f slow ]; do sleep 0.1; done; echo done > \"$FOLDWISE_OUT/done.txt\""
"#;

/// The shared fake Slurm ([`FakeSlurm`]), running this binary.
trait Runs {
    fn command(&self, p: &Project, args: &[&str]) -> Command;
    fn run(&self, p: &Project, args: &[&str]) -> Output;
}

impl Runs for FakeSlurm {
    fn command(&self, p: &Project, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_foldwise"));
        c.args(args)
            .args(["--executor", "slurm", "--slurm-poll", "0.1"])
            .current_dir(p.path())
            .env("FOLDWISE_CACHE", p.cache())
            .env("NO_COLOR", "1")
            .env("PATH", self.path_env());
        c
    }

    fn run(&self, p: &Project, args: &[&str]) -> Output {
        self.command(p, args).output().unwrap()
    }
}

#[test]
fn a_slurm_run_gives_the_keys_and_artifacts_of_a_local_run() {
    let slurm = FakeSlurm::new();
    let p = Project::new(PIPELINE);
    let out = slurm.run(&p, &["run", "p.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let local = Project::new(PIPELINE);
    local.run();
    assert_eq!(common::digests(&p), common::digests(&local));
    // One job per instance, each the run's job name and its own log.
    let submitted = slurm.calls("sbatch");
    assert_eq!(submitted.len(), 6, "{submitted:?}");
    assert!(submitted
        .iter()
        .all(|c| c.starts_with("--parsable --job-name=foldwise-")));
    // CPUs by kind: generating scales (2), a split and a command run on one.
    let cpus: Vec<&str> = submitted
        .iter()
        .map(|c| {
            c.split(' ')
                .find(|a| a.starts_with("--cpus-per-task="))
                .unwrap()
        })
        .collect();
    assert_eq!(
        cpus,
        [
            "--cpus-per-task=2",
            "--cpus-per-task=1",
            "--cpus-per-task=1",
            "--cpus-per-task=1",
            "--cpus-per-task=1",
            "--cpus-per-task=1"
        ]
    );
    // One squeue call per poll, each for the whole run.
    let polls = slurm.calls("squeue");
    assert!(!polls.is_empty());
    assert!(polls
        .iter()
        .all(|c| c.starts_with("--noheader --states=all --name=foldwise-")));
    // A second run submits nothing.
    let out = slurm.run(&p, &["run", "p.toml", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(common::list(&report, "nodes")
        .iter()
        .all(|n| common::text(n, "outcome") == "reused"));
    assert_eq!(slurm.calls("sbatch").len(), 6);
}

#[test]
fn a_failed_job_is_reported_with_its_state_and_log() {
    let slurm = FakeSlurm::new();
    let p = Project::new(&PIPELINE.replace("wc -c <", "echo 'no space left' >&2; exit 3; wc -c <"));
    let out = slurm.run(&p, &["run", "p.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("error: `sizes[0]` failed: Slurm job "),
        "{err}"
    );
    assert!(err.contains(" FAILED (exit status 1); its log ("), "{err}");
    assert!(err.contains("no space left"), "{err}");
    assert!(err.contains("[foldwise::slurm::job_failed]"), "{err}");
    assert!(err.contains("skipped slow (upstream"), "{err}");
    let logs: Vec<PathBuf> = walk(&p.cache().join("slurm"))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "log"))
        .collect();
    assert_eq!(logs.len(), 5, "{logs:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .collect()
}

#[test]
fn sigint_cancels_the_jobs_and_a_rerun_reuses_what_finished() {
    let slurm = FakeSlurm::new();
    let p = Project::new(PIPELINE);
    std::fs::write(p.path().join("slow"), "").unwrap();
    let child = slurm
        .command(&p, &["run", "p.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for `slow`'s job: the sixth submission.
    let t = std::time::Instant::now();
    while slurm.calls("sbatch").len() < 6 {
        assert!(t.elapsed().as_secs() < 60, "slow was never submitted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted: the run's Slurm jobs were cancelled"));
    assert_eq!(slurm.calls("scancel"), ["106"]);
    // The rerun submits only `slow`.
    std::fs::remove_file(p.path().join("slow")).unwrap();
    let out = slurm.run(&p, &["run", "p.toml", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let executed: Vec<&str> = common::list(&report, "nodes")
        .iter()
        .filter(|n| common::text(n, "outcome") == "executed")
        .map(|n| common::text(n, "instance"))
        .collect();
    assert_eq!(executed, ["slow"]);
    assert_eq!(slurm.calls("sbatch").len(), 7);
}

/// `run --watch --executor slurm`: an edit during a run stops the run's
/// process with SIGTERM, so its queued and running jobs are cancelled (not
/// left running on the cluster), and the rerun submits the edited node.
#[test]
fn an_edit_during_a_watched_slurm_run_cancels_its_jobs() {
    let slurm = FakeSlurm::new();
    let p = Project::new(PIPELINE);
    std::fs::write(p.path().join("slow"), "").unwrap();
    /// Killed however the test ends.
    struct Watcher(std::process::Child);
    impl Drop for Watcher {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let watcher = Watcher(
        slurm
            .command(&p, &["run", "--watch", "p.toml"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let t = std::time::Instant::now();
        while !done() {
            assert!(t.elapsed().as_secs() < 60, "never: {what}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait("slow submitted", &|| slurm.calls("sbatch").len() >= 6);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let edited = PIPELINE.replace("echo done >", "echo edited >");
    std::fs::write(p.path().join("p.toml"), edited).unwrap();
    wait("the job cancelled", &|| !slurm.calls("scancel").is_empty());
    wait("the edited slow submitted", &|| {
        slurm.calls("sbatch").len() >= 7
    });
    assert_eq!(slurm.calls("scancel"), ["106"]);
    // Let the rerun finish before the fake cluster goes away.
    std::fs::remove_file(p.path().join("slow")).unwrap();
    let done = slurm.path().join("jobs").join("107");
    wait("the rerun's job done", &|| {
        std::fs::read_to_string(&done).is_ok_and(|s| s.trim() == "COMPLETED")
    });
    wait("the rerun over", &|| {
        p.status().iter().all(|s| s.is_fresh())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(watcher);
}

/// Resources: `[executor] resources` for every job, a node's own over them,
/// `--slurm-cpus` and `--sbatch` over both; the `[executor]` table alone
/// makes a run use Slurm.
#[test]
fn resources_come_from_the_executor_table_the_node_and_the_command_line() {
    let slurm = FakeSlurm::new();
    let text = format!(
        "{PIPELINE}\n[executor]\nkind = \"slurm\"\npoll = 0.1\nresources = {{ mem = \"2G\", partition = \"cpu\", sbatch = [\"--qos=low\"] }}\n"
    )
    .replace(
        "[nodes.slow]\nkind = \"command\"",
        "[nodes.slow]\nkind = \"command\"\nresources = { cpus = 4, time = \"0:10:00\", partition = \"gpu\", gpus = 1 }",
    );
    let p = Project::new(&text);
    let out = Command::new(env!("CARGO_BIN_EXE_foldwise"))
        .args(["run", "p.toml", "slow", "--sbatch=--nice=5"])
        .current_dir(p.path())
        .env("FOLDWISE_CACHE", p.cache())
        .env("PATH", slurm.path_env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let calls = slurm.calls("sbatch");
    let args = |c: &str| -> String {
        c.split(' ')
            .filter(|a| {
                !a.starts_with("--job-name") && !a.starts_with("--output") && !a.ends_with(".sh")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        args(&calls[0]),
        "--parsable --no-requeue --cpus-per-task=2 --mem=2G --partition=cpu --qos=low --nice=5"
    );
    assert_eq!(
        args(calls.last().unwrap()),
        "--parsable --no-requeue --cpus-per-task=4 --mem=2G --gpus=1 --time=0:10:00 --partition=gpu --qos=low --nice=5"
    );
}

/// Under `--device cuda` a model node's job asks for a GPU (the others do
/// not) and runs with the same device; on this CPU-only build that job
/// fails, and its log says why.
#[test]
fn a_model_node_on_cuda_asks_for_a_gpu() {
    let slurm = FakeSlurm::new();
    let p = Project::new(&common::tiny_training("gpu", 1));
    let out = slurm.run(&p, &["run", "p.toml", "--device", "cuda"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let calls = slurm.calls("sbatch");
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        !calls[0].contains("--gpus") && !calls[1].contains("--gpus"),
        "{calls:?}"
    );
    assert!(calls[2].contains(" --gpus=1 "), "{calls:?}");
    let script = calls[2].rsplit(' ').next().unwrap();
    assert!(std::fs::read_to_string(script)
        .unwrap()
        .contains(" --device cuda"));
    let err = stderr(&out);
    assert!(err.contains("error: `cnn` failed: Slurm job "), "{err}");
    assert!(
        err.contains("this foldwise was built without the `cuda` feature"),
        "{err}"
    );
}

/// Whether `.ci/run` started a real single-host cluster (`.ci/slurm.sh`);
/// prints that `test` was skipped when not.
fn real_cluster(test: &str) -> bool {
    let up = std::env::var_os("FOLDWISE_TEST_SLURM").is_some();
    if !up {
        println!(
            "skipped {test}: no Slurm cluster (FOLDWISE_TEST_SLURM is unset; .ci/run starts one)"
        );
    }
    up
}

fn real_run(p: &Project, pipeline: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_foldwise"));
    c.arg("run")
        .arg(pipeline)
        .args(["--executor", "slurm", "--slurm-poll", "0.5"])
        .args(extra)
        .current_dir(p.path())
        .env("FOLDWISE_CACHE", p.cache())
        .env("NO_COLOR", "1");
    c
}

/// The quickstart through a real cluster: every node's key and artifact
/// digest equal a local run's, bit for bit.
#[test]
fn real_cluster_quickstart_equals_a_local_run() {
    if !real_cluster("real_cluster_quickstart_equals_a_local_run") {
        return;
    }
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/quickstart.toml");
    let text = std::fs::read_to_string(&quickstart).unwrap();
    let on_slurm = Project::new(&text);
    let out = real_run(&on_slurm, &on_slurm.pipeline(), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let local = Project::new(&text);
    let out = local.cli(&["run", "p.toml", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let keys = |p: &Project| -> Vec<(String, Option<String>)> {
        p.status()
            .into_iter()
            .map(|s| (s.instance, s.key))
            .collect()
    };
    assert_eq!(keys(&on_slurm), keys(&local));
    assert_eq!(common::digests(&on_slurm), common::digests(&local));
    assert_eq!(common::digests(&local).len(), 14);
}

/// A failing command node's error shows its Slurm log; SIGINT cancels the
/// queued and running jobs.
#[test]
fn real_cluster_failure_log_and_cancellation() {
    if !real_cluster("real_cluster_failure_log_and_cancellation") {
        return;
    }
    let p = Project::new(
        &PIPELINE.replace("wc -c <", "echo 'disk quota exceeded' >&2; exit 3; wc -c <"),
    );
    let out = real_run(&p, &p.pipeline(), &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(" FAILED (exit status 1); its log ("), "{err}");
    assert!(err.contains("disk quota exceeded"), "{err}");

    let q = Project::new(&PIPELINE.replace("k = 3", "k = 6"));
    std::fs::write(q.path().join("slow"), "").unwrap();
    let child = real_run(&q, &q.pipeline(), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the six `sizes` jobs are submitted: two CPUs run two at a
    // time, the others wait in the queue.
    let name_of_run = || -> Option<String> {
        let dir = q.cache().join("slurm");
        let run = std::fs::read_dir(&dir).ok()?.next()?.ok()?;
        Some(format!("foldwise-{}", run.file_name().to_string_lossy()))
    };
    let t = std::time::Instant::now();
    let name = loop {
        if let Some(n) = name_of_run() {
            let out = Command::new("squeue")
                .args(["-h", "-t", "all", "-n", &n, "-o", "%T"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).lines().count() >= 8 {
                break n;
            }
        }
        assert!(t.elapsed().as_secs() < 120, "the jobs were never submitted");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-n", &name, "-o", "%T"])
        .output()
        .unwrap();
    let states = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        states.lines().all(|s| s == "COMPLETED" || s == "CANCELLED"),
        "{states}"
    );
    assert!(states.lines().any(|s| s == "CANCELLED"), "{states}");
}

/// Two orchestrators on two "hosts" sharing one cache, with key locks as
/// on a filesystem where `flock` does not hold between hosts: each node is
/// computed once (the lock files alone keep them apart).
#[test]
fn two_hosts_on_one_cache_compute_each_node_once() {
    let log = tempfile::tempdir().unwrap();
    let runs = log.path().join("executions");
    let p = Project::new(
        &PIPELINE
            .replace(
                "wc -c <",
                &format!(
                    "echo \\\"$FOLDWISE_INSTANCE\\\" >> {}; sleep 0.3; wc -c <",
                    runs.display()
                ),
            )
            .replace(
                "while [ -f slow ]; do sleep 0.1; done; ",
                &format!("echo slow >> {}; ", runs.display()),
            ),
    );
    let start = |host: &str| {
        Command::new(env!("CARGO_BIN_EXE_foldwise"))
            .args(["run", "p.toml", "--quiet"])
            .current_dir(p.path())
            .env("FOLDWISE_CACHE", p.cache())
            .env("FOLDWISE_TEST_HOST", host)
            .env("FOLDWISE_TEST_NO_FLOCK", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start("host-a"), start("host-b"));
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let mut ran: Vec<String> = std::fs::read_to_string(&runs)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    ran.sort();
    assert_eq!(ran, ["sizes[0]", "sizes[1]", "sizes[2]", "slow"]);
}

/// A training job cancelled by Ctrl-C after a checkpoint: the rerun's job
/// resumes from it, and the model equals an uninterrupted local run's.
#[test]
fn a_cancelled_training_job_resumes_from_its_last_epoch() {
    let slurm = FakeSlurm::new();
    let text = common::tiny_training("slurm-resume", 6);
    let p = Project::new(&text);
    // Hold the job after its first checkpoint, so that it is cancelled
    // mid-training.
    let pause = p.path().join("pause");
    std::fs::write(&pause, "").unwrap();
    let child = slurm
        .command(&p, &["run", "p.toml"])
        .env("FOLDWISE_TEST_PAUSE_EPOCH", &pause)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for(&p.path().join("pause.reached"));
    let at_cancel = crate::resume::checkpoint_epoch(&p.cache()).unwrap();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    std::fs::remove_file(&pause).unwrap();
    assert!(p.status().pop().unwrap().artifact.is_none());

    let out = slurm.run(&p, &["run", "p.toml", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = p.status().pop().unwrap();
    let work = p.cache().join("work").join(s.work_key.unwrap());
    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("timings.json")).unwrap()).unwrap();
    assert_eq!(timings["resumed_from_epoch"], at_cancel, "{timings}");
    let local = Project::new(&text);
    local.run();
    assert_eq!(common::digests(&p), common::digests(&local));
}
