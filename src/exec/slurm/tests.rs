//! The queue against fake `sbatch`, `squeue` and `scancel` scripts: every
//! terminal state, a late exit file, cancellation, and one `squeue` call
//! per poll whatever the number of jobs.

use super::*;
use crate::testutil::FakeSlurm;

/// The shared fake Slurm, with a queue on it.
struct Fake(FakeSlurm);

impl std::ops::Deref for Fake {
    type Target = FakeSlurm;
    fn deref(&self) -> &FakeSlurm {
        &self.0
    }
}

impl Fake {
    fn new() -> Fake {
        Fake(FakeSlurm::new())
    }

    fn queue(&self, poll_ms: u64, patience_ms: u64) -> Queue {
        Queue::new(
            "r1",
            &self.path().join("run"),
            Duration::from_millis(poll_ms),
            Duration::from_millis(patience_ms),
        )
        .unwrap()
        .with_commands(self.path())
    }
}

#[test]
fn a_job_that_runs_reports_its_exit_status_and_log() {
    let f = Fake::new();
    let q = f.queue(20, 2000);
    let ok = q.submit("a", "echo hello", &Resources::default()).unwrap();
    let bad = q
        .submit("b", "echo oops >&2; exit 3", &Resources::default())
        .unwrap();
    assert_eq!((ok.as_str(), bad.as_str()), ("101", "102"));
    let a = q.wait(&ok, "a");
    assert_eq!(
        (a.state.clone(), a.exit),
        (Some(JobState::Completed), Some(0))
    );
    assert!(a.succeeded());
    assert_eq!(a.log_tail(5), "hello");
    let b = q.wait(&bad, "b");
    assert_eq!((b.state.clone(), b.exit), (Some(JobState::Failed), Some(3)));
    assert_eq!(b.log_tail(5), "oops");
    let sb = f.calls("sbatch");
    assert!(
        sb[0].starts_with("--parsable --job-name=foldwise-r1 --output="),
        "{sb:?}"
    );
    assert!(sb[0].contains(" --no-requeue "));
}

#[test]
fn states_slurm_ends_a_job_in_are_reported_without_an_exit_file() {
    for state in [
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "CANCELLED",
        "NODE_FAIL",
        "FAILED",
        "BOOT_FAIL",
    ] {
        let f = Fake::new();
        let q = f.queue(10, 60_000);
        f.next_ends(state);
        let id = q.submit("x", "true", &Resources::default()).unwrap();
        let end = q.wait(&id, "x");
        assert_eq!(
            end.state.as_ref().map(|s| s.to_string()).as_deref(),
            Some(state)
        );
        assert_eq!(end.exit, None);
        assert!(!end.succeeded());
    }
}

#[test]
fn a_late_exit_file_is_waited_for_within_the_patience() {
    let f = Fake::new();
    // The job is shown COMPLETED before its exit file appears: the fake
    // writes the file, but the queue must not conclude from the state
    // alone. Here the exit file is removed and restored a little later.
    let q = f.queue(10, 3000);
    let dir = f.path().join("run");
    let id = q
        .submit("late", "sleep 0.2", &Resources::default())
        .unwrap();
    let exit = dir.join("late.exit");
    // Hide the exit file as soon as it lands, and show it 500 ms later.
    let hider = std::thread::spawn(move || {
        let t = Instant::now();
        while !exit.exists() {
            std::thread::sleep(Duration::from_millis(2));
            assert!(t.elapsed() < Duration::from_secs(10));
        }
        let hidden = exit.with_extension("hidden");
        std::fs::rename(&exit, &hidden).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        std::fs::rename(&hidden, &exit).unwrap();
    });
    let end = q.wait(&id, "late");
    hider.join().unwrap();
    assert_eq!(end.exit, Some(0));
    // Without patience, the same job reads as ended with no exit status.
    let q = f.queue(10, 0);
    f.next_ends("COMPLETED");
    let id = q.submit("gone", "true", &Resources::default()).unwrap();
    let end = q.wait(&id, "gone");
    assert_eq!((end.state, end.exit), (Some(JobState::Completed), None));
}

#[test]
fn one_squeue_call_per_poll_whatever_the_number_of_jobs() {
    for jobs in [1usize, 12] {
        let f = Fake::new();
        let q = f.queue(100, 2000);
        let ids: Vec<String> = (0..jobs)
            .map(|i| {
                q.submit(&format!("j{i}"), "sleep 0.45", &Resources::default())
                    .unwrap()
            })
            .collect();
        let t = Instant::now();
        std::thread::scope(|s| {
            for (i, id) in ids.iter().enumerate() {
                let q = &q;
                s.spawn(move || assert!(q.wait(id, &format!("j{i}")).succeeded()));
            }
        });
        let polls = f.calls("squeue").len() as f64;
        let ticks = t.elapsed().as_secs_f64() / 0.1;
        // About one call per 100 ms interval, however many jobs wait.
        assert!(
            polls <= ticks + 2.0,
            "{jobs} jobs: {polls} polls in {ticks:.1} intervals"
        );
        assert!(f
            .calls("squeue")
            .iter()
            .all(|c| c == "--noheader --states=all --name=foldwise-r1 --format=%i %T"));
        assert_eq!(q.polls() as f64, polls);
    }
}

#[test]
fn cancel_all_cancels_what_has_not_ended_in_one_call() {
    let f = Fake::new();
    let q = f.queue(10, 2000);
    let done = q.submit("done", "true", &Resources::default()).unwrap();
    assert!(q.wait(&done, "done").succeeded());
    let a = q.submit("a", "sleep 30", &Resources::default()).unwrap();
    let b = q.submit("b", "sleep 30", &Resources::default()).unwrap();
    assert_eq!(q.cancel_all().unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(f.calls("scancel"), [format!("{a} {b}")]);
    let end = q.wait(&a, "a");
    // The job's shell may record the signal (143) or die before it can.
    assert_eq!(end.state, Some(JobState::Cancelled));
    assert!(matches!(end.exit, None | Some(143)), "{end:?}");
    assert!(!end.succeeded());
}

#[test]
fn resources_become_sbatch_arguments() {
    let r = Resources {
        cpus: Some(4),
        mem: Some("8G".into()),
        gpus: Some(1),
        time: Some("2:00:00".into()),
        partition: Some("gpu".into()),
        account: Some("ml".into()),
        sbatch: vec!["--qos=high".into()],
    };
    assert_eq!(
        sbatch_args(&r),
        [
            "--cpus-per-task=4",
            "--mem=8G",
            "--gpus=1",
            "--time=2:00:00",
            "--partition=gpu",
            "--account=ml",
            "--qos=high"
        ]
    );
}

#[test]
fn a_bad_job_id_and_a_failing_sbatch_are_errors() {
    let f = Fake::new();
    let q = f.queue(10, 10);
    std::fs::write(
        f.path().join("sbatch"),
        "#!/bin/sh\necho 'Submitted batch job'\n",
    )
    .unwrap();
    assert_eq!(
        q.submit("x", "true", &Resources::default())
            .unwrap_err()
            .to_string(),
        "`sbatch --parsable` printed `Submitted batch job`, not a job id"
    );
    std::fs::write(
        f.path().join("sbatch"),
        "#!/bin/sh\necho 'sbatch: error: invalid partition' >&2\nexit 1\n",
    )
    .unwrap();
    let e = q
        .submit("x", "true", &Resources::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("failed (exit status: 1): sbatch: error: invalid partition"),
        "{e}"
    );
}
