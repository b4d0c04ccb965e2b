//! Helpers shared by the unit tests (compiled for tests only).

use std::path::{Path, PathBuf};

/// Every file below `dir` with its bytes, sorted by relative path: compare
/// two of these to prove two outputs byte-identical.
pub fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `../shared/data` beside the checkout, after checking that every path
/// the test reads below it (`paths`, relative to it) is there; fails naming
/// the missing ones. The tests that call it are ignored unless
/// `FOLDWISE_FULL_SUITE=1` (`build.rs`), which `.ci/run` sets.
pub fn shared_data(paths: &[&str]) -> PathBuf {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data"));
    let missing: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| !dir.join(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "this test reads {} below {}, and these are missing: {}",
        paths.join(", "),
        dir.display(),
        missing.join(", ")
    );
    dir.to_path_buf()
}

/// A fake Slurm in a folder, for the executor's unit and integration
/// tests: `sbatch` (prints `id;cluster`) starts the job's script in the
/// background, or, when the file `next` names a final state
/// ([`FakeSlurm::next_ends`]), ends the job in that state without running
/// it; `squeue` prints every job's state; `scancel` cancels. Each logs its
/// arguments into `<name>.calls`.
pub struct FakeSlurm {
    pub dir: tempfile::TempDir,
}

impl FakeSlurm {
    pub fn new() -> FakeSlurm {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("jobs")).unwrap();
        let write = |name: &str, body: &str| {
            let p = d.join(name);
            std::fs::write(&p, format!("#!/bin/sh\nS={}\n{body}", d.display())).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write(
            "sbatch",
            r#"
echo "$*" >> $S/sbatch.calls
exec 9>$S/count.lock; flock 9
n=$(( $(cat $S/count 2>/dev/null || echo 100) + 1 )); echo $n > $S/count
flock -u 9; exec 9>&-
for a in "$@"; do case $a in --output=*) log=${a#--output=};; esac; script=$a; done
if [ -f $S/next ]; then mv $S/next $S/jobs/$n; echo $n; exit 0; fi
echo RUNNING > $S/jobs/$n
( sh "$script" > "$log" 2>&1 & echo $! > $S/jobs/$n.pid.tmp; mv $S/jobs/$n.pid.tmp $S/jobs/$n.pid
  wait $!; c=$?
  [ "$(cat $S/jobs/$n)" = CANCELLED ] && exit 0
  if [ $c -eq 0 ]; then echo COMPLETED; else echo FAILED; fi > $S/jobs/$n.tmp && mv $S/jobs/$n.tmp $S/jobs/$n ) > /dev/null 2>&1 &
while [ ! -f $S/jobs/$n.pid ]; do sleep 0.01; done
echo "$n;cluster"
"#,
        );
        write(
            "squeue",
            r#"
echo "$*" >> $S/squeue.calls
for f in $S/jobs/*; do case $f in *.pid|*.tmp) continue;; esac; [ -f "$f" ] && echo "$(basename $f) $(cat $f)"; done
exit 0
"#,
        );
        write(
            "scancel",
            r#"
echo "$*" >> $S/scancel.calls
for id in "$@"; do echo CANCELLED > $S/jobs/$id; p=$(cat $S/jobs/$id.pid); pkill -P $p 2>/dev/null; kill $p 2>/dev/null; done
"#,
        );
        FakeSlurm { dir }
    }

    /// The folder holding the fake commands.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `PATH` with the fake commands first (the integration tests run the
    /// binary with it; the unit tests name the folder instead).
    #[allow(dead_code)]
    pub fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.path().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// The arguments of each call of `cmd`, in order.
    pub fn calls(&self, cmd: &str) -> Vec<String> {
        std::fs::read_to_string(self.path().join(format!("{cmd}.calls")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The next job ends in `state` without running.
    pub fn next_ends(&self, state: &str) {
        std::fs::write(self.path().join("next"), format!("{state}\n")).unwrap();
    }
}
