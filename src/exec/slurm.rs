//! Instances as Slurm jobs: submitting one job per invalidated instance
//! (`sbatch --parsable`), learning how jobs ended from one `squeue` call
//! per poll for all of a run's jobs, and cancelling them (`scancel`).
//!
//! Guarantees:
//! - one `squeue` call per poll interval, whatever the number of jobs and
//!   of threads waiting on them (the first waiter whose interval is up
//!   polls for all; the others wait on a condition variable);
//! - `sacct` is never called (it needs Slurm's accounting database);
//! - the job's own exit file is the truth about its exit status; a job
//!   that left the queue as COMPLETED (or that `squeue` no longer knows)
//!   while its exit file is not visible yet is waited for, up to the
//!   configured patience (a network filesystem's attribute cache);
//! - every job of a run has the same name, `foldwise-<run id>`, so one
//!   `squeue --name` finds them all, and [`Queue::cancel_all`] finds the
//!   ones still queued or running.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How a job's state reads in `squeue`'s `%T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    /// Any other state a job passes through (CONFIGURING, COMPLETING, …).
    Active(String),
    Completed,
    Failed,
    Timeout,
    OutOfMemory,
    Cancelled,
    NodeFail,
    /// Any other final state (BOOT_FAIL, DEADLINE, PREEMPTED, …).
    Ended(String),
}

impl JobState {
    /// Parses `squeue -o %T`.
    pub fn parse(s: &str) -> JobState {
        match s.trim() {
            "PENDING" => JobState::Pending,
            "RUNNING" => JobState::Running,
            "COMPLETED" => JobState::Completed,
            "FAILED" => JobState::Failed,
            "TIMEOUT" => JobState::Timeout,
            "OUT_OF_MEMORY" => JobState::OutOfMemory,
            "CANCELLED" => JobState::Cancelled,
            "NODE_FAIL" => JobState::NodeFail,
            s @ ("BOOT_FAIL" | "DEADLINE" | "PREEMPTED" | "SPECIAL_EXIT" | "REVOKED") => {
                JobState::Ended(s.to_string())
            }
            other => JobState::Active(other.to_string()),
        }
    }

    /// Whether the job will not change state any more.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            JobState::Pending | JobState::Running | JobState::Active(_)
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Timeout => "TIMEOUT",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
            JobState::Cancelled => "CANCELLED",
            JobState::NodeFail => "NODE_FAIL",
            JobState::Active(s) | JobState::Ended(s) => s,
        };
        f.write_str(s)
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    pub id: String,
    /// The last state `squeue` showed (`None`: it never saw the job end,
    /// which happens when a job ends and ages out between two polls).
    pub state: Option<JobState>,
    /// The exit status the job wrote, when it got that far.
    pub exit: Option<i32>,
    /// The job's log file.
    pub log: PathBuf,
}

impl JobEnd {
    /// Whether the job ran its command to a zero exit status.
    pub fn succeeded(&self) -> bool {
        self.exit == Some(0)
    }

    /// The last `n` lines of the job's log (empty when unreadable).
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Errors of the Slurm commands themselves.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("`{command}` could not be started: {message}")]
    Spawn { command: String, message: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`sbatch --parsable` printed `{0}`, not a job id")]
    BadJobId(String),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

pub use crate::config::Resources;

/// The `sbatch` arguments for `r`.
pub fn sbatch_args(r: &Resources) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(c) = r.cpus {
        a.push(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = &r.mem {
        a.push(format!("--mem={m}"));
    }
    if let Some(g) = r.gpus {
        a.push(format!("--gpus={g}"));
    }
    if let Some(t) = &r.time {
        a.push(format!("--time={t}"));
    }
    if let Some(p) = &r.partition {
        a.push(format!("--partition={p}"));
    }
    if let Some(acc) = &r.account {
        a.push(format!("--account={acc}"));
    }
    a.extend(r.sbatch.iter().cloned());
    a
}

/// The jobs of one run.
pub struct Queue {
    /// `foldwise-<run id>`: every job's name.
    name: String,
    /// Where job scripts, logs and exit files go.
    dir: PathBuf,
    poll: Duration,
    patience: Duration,
    /// Where `sbatch`, `squeue` and `scancel` are (default: `PATH`).
    bin_dir: Option<PathBuf>,
    state: Mutex<Polled>,
    changed: Condvar,
}

#[derive(Default)]
struct Polled {
    /// Every job submitted, with the last state seen (`None`: not in the
    /// queue at the last poll).
    jobs: BTreeMap<String, Option<JobState>>,
    /// When a job was submitted (a job not in the first polls after its
    /// submission may simply not be listed yet).
    submitted: BTreeMap<String, Instant>,
    last_poll: Option<Instant>,
    polls: u64,
    /// The error of the last poll, if it failed.
    error: Option<String>,
}

impl Queue {
    /// A queue for run `run_id`, writing its files into `dir` (created).
    pub fn new(
        run_id: &str,
        dir: &Path,
        poll: Duration,
        patience: Duration,
    ) -> Result<Queue, SlurmError> {
        std::fs::create_dir_all(dir).map_err(|e| SlurmError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Queue {
            name: format!("foldwise-{run_id}"),
            dir: dir.to_path_buf(),
            poll,
            patience,
            bin_dir: None,
            state: Mutex::new(Polled::default()),
            changed: Condvar::new(),
        })
    }

    /// Takes `sbatch`, `squeue` and `scancel` from `dir` instead of `PATH`.
    pub fn with_commands(mut self, dir: &Path) -> Queue {
        self.bin_dir = Some(dir.to_path_buf());
        self
    }

    fn run(&self, program: &str, args: &[String]) -> Result<String, SlurmError> {
        match &self.bin_dir {
            Some(d) => run(&d.join(program).display().to_string(), args),
            None => run(program, args),
        }
    }

    /// The name every job of this run carries.
    pub fn job_name(&self) -> &str {
        &self.name
    }

    /// How many `squeue` calls were made.
    pub fn polls(&self) -> u64 {
        self.state.lock().unwrap().polls
    }

    fn exit_file(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("{tag}.exit"))
    }

    /// The log of the job submitted under `tag`.
    pub fn log_file(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("{tag}.log"))
    }

    /// Submits `command` (a shell command line) as one job, tagged `tag`
    /// (a file-name-safe instance name); returns its job id. The job's
    /// script runs the command in a subshell (an `exit` in it ends only
    /// the command), records its exit status in an exit file, written
    /// atomically, then exits with that status.
    pub fn submit(
        &self,
        tag: &str,
        command: &str,
        resources: &Resources,
    ) -> Result<String, SlurmError> {
        let exit = self.exit_file(tag);
        let _ = std::fs::remove_file(&exit);
        let script = self.dir.join(format!("{tag}.sh"));
        let text = format!(
            "#!/bin/sh\n(\n{command}\n)\ncode=$?\nprintf '%s\\n' \"$code\" > {tmp} && mv {tmp} {exit}\nexit $code\n",
            tmp = sh_quote(&format!("{}.tmp", exit.display())),
            exit = sh_quote(&exit.display().to_string()),
        );
        std::fs::write(&script, text).map_err(|e| SlurmError::Io {
            path: script.clone(),
            message: e.to_string(),
        })?;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name={}", self.name),
            format!("--output={}", self.log_file(tag).display()),
            "--no-requeue".to_string(),
        ];
        args.extend(sbatch_args(resources));
        args.push(script.display().to_string());
        let out = self.run("sbatch", &args)?;
        // `--parsable` prints `id` or `id;cluster`.
        let id = out.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SlurmError::BadJobId(out.trim().to_string()));
        }
        let mut st = self.state.lock().unwrap();
        st.jobs.insert(id.clone(), Some(JobState::Pending));
        st.submitted.insert(id.clone(), Instant::now());
        Ok(id)
    }

    /// One `squeue` call for every job of the run; records their states
    /// (a job not listed is recorded as gone).
    fn poll(&self, st: &mut Polled) {
        st.polls += 1;
        st.last_poll = Some(Instant::now());
        let args = [
            "--noheader".to_string(),
            "--states=all".to_string(),
            format!("--name={}", self.name),
            "--format=%i %T".to_string(),
        ];
        match self.run("squeue", &args) {
            Ok(out) => {
                st.error = None;
                let mut seen: BTreeMap<&str, JobState> = BTreeMap::new();
                for line in out.lines() {
                    let mut parts = line.split_whitespace();
                    if let (Some(id), Some(state)) = (parts.next(), parts.next()) {
                        seen.insert(id, JobState::parse(state));
                    }
                }
                for (id, state) in st.jobs.iter_mut() {
                    match seen.get(id.as_str()) {
                        Some(s) => *state = Some(s.clone()),
                        // Not listed: ended and aged out (a job that was
                        // never listed keeps its last state until then).
                        None => {
                            if state.as_ref().is_none_or(|s| s.is_final())
                                || st.submitted[id].elapsed() > self.poll * 3
                            {
                                *state = None;
                            }
                        }
                    }
                }
            }
            Err(e) => st.error = Some(e.to_string()),
        }
        self.changed.notify_all();
    }

    /// Blocks until job `id` (submitted under `tag`) has ended, and says
    /// how. Polls at most once per interval for all waiters together.
    pub fn wait(&self, id: &str, tag: &str) -> JobEnd {
        let exit_file = self.exit_file(tag);
        let mut st = self.state.lock().unwrap();
        let mut ended_at: Option<Instant> = None;
        loop {
            let state = st.jobs.get(id).cloned().flatten();
            let gone = state.as_ref().is_none_or(JobState::is_final);
            if gone {
                let exit = read_exit(&exit_file);
                // A job that ran to its end wrote its exit file; one that
                // Slurm ended (TIMEOUT, OOM, CANCELLED, …) may not have.
                let completed_or_unknown = matches!(state, None | Some(JobState::Completed));
                let since = *ended_at.get_or_insert_with(Instant::now);
                if exit.is_some() || !completed_or_unknown || since.elapsed() >= self.patience {
                    return JobEnd {
                        id: id.to_string(),
                        state,
                        exit,
                        log: self.log_file(tag),
                    };
                }
                // Late on a network filesystem: look again shortly.
                let (g, _) = self
                    .changed
                    .wait_timeout(st, Duration::from_millis(200))
                    .unwrap();
                st = g;
                continue;
            }
            let due = st.last_poll.is_none_or(|t| t.elapsed() >= self.poll);
            if due {
                self.poll(&mut st);
                continue;
            }
            let left = self.poll - st.last_poll.map(|t| t.elapsed()).unwrap_or_default();
            let (g, _) = self.changed.wait_timeout(st, left).unwrap();
            st = g;
        }
    }

    /// Cancels every job of the run that has not ended (one `scancel` for
    /// all of them); returns their ids.
    pub fn cancel_all(&self) -> Result<Vec<String>, SlurmError> {
        let st = self.state.lock().unwrap();
        let ids: Vec<String> = st
            .jobs
            .iter()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| !s.is_final()))
            .map(|(id, _)| id.clone())
            .collect();
        drop(st);
        if !ids.is_empty() {
            self.run("scancel", &ids)?;
        }
        Ok(ids)
    }
}

/// The exit status in an exit file, when it is there and whole.
fn read_exit(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Runs a Slurm command; its stdout, or an error with its stderr.
fn run(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| SlurmError::Spawn {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SlurmError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `s` quoted for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests;
