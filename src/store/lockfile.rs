//! Locks that hold on a filesystem shared between hosts, where `flock` is
//! unreliable (NFS): a lock is a file created atomically (`O_CREAT |
//! O_EXCL`), recording the host, pid and time of its holder, and kept
//! fresh by a heartbeat (its mtime, touched every third of the stale
//! timeout while held).
//!
//! Guarantees:
//! - at most one holder at a time, on any number of hosts, as long as each
//!   holder's heartbeat runs (a live holder's file is never older than a
//!   third of the timeout);
//! - a lock whose holder died is broken: at once when the holder was on
//!   this host (its pid is gone), after the stale timeout otherwise (no
//!   heartbeat for that long);
//! - breaking is itself atomic: the stale file is renamed to a unique name
//!   first, so of two processes breaking one lock only one succeeds, and
//!   neither removes a lock someone took meanwhile.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Who holds a lock, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// When it took the lock (Unix seconds).
    pub since: u64,
}

impl Holder {
    fn here() -> Holder {
        Holder {
            host: super::hostname(),
            pid: std::process::id(),
            since: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    fn encode(&self) -> String {
        format!(
            "host {}\npid {}\nsince {}\n",
            self.host, self.pid, self.since
        )
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut host = None;
        let (mut pid, mut since) = (None, None);
        for line in text.lines() {
            match line.split_once(' ')? {
                ("host", h) => host = Some(h.to_string()),
                ("pid", p) => pid = p.parse().ok(),
                ("since", s) => since = s.parse().ok(),
                _ => {}
            }
        }
        Some(Holder {
            host: host?,
            pid: pid?,
            since: since?,
        })
    }
}

/// A held lock; dropping it releases the lock (removes its file, if it is
/// still this holder's).
#[derive(Debug)]
pub struct LockFile {
    path: PathBuf,
    content: String,
    beating: Arc<AtomicBool>,
}

/// Why a lock file was broken, for a caller that reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// Its holder was on this host and is gone.
    DeadHere(Holder),
    /// No heartbeat for longer than the timeout (the holder's host may be
    /// down or cut off); `None` when the file was unreadable.
    Stale(Option<Holder>),
}

impl LockFile {
    /// Takes the lock at `path`, waiting while another live holder has it,
    /// breaking it when its holder is dead or silent for `stale_after`.
    /// `on_break` hears of each lock broken.
    pub fn acquire(
        path: &Path,
        stale_after: Duration,
        on_break: &dyn Fn(&Broken),
    ) -> io::Result<LockFile> {
        let me = Holder::here();
        let content = me.encode();
        let mut wait = Duration::from_millis(5);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    f.write_all(content.as_bytes())?;
                    f.sync_all()?;
                    let beating = Arc::new(AtomicBool::new(true));
                    heartbeat(path.to_path_buf(), stale_after / 3, beating.clone());
                    return Ok(LockFile {
                        path: path.to_path_buf(),
                        content,
                        beating,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(super::annotate(e, path)),
            }
            if let Some(why) = breakable(path, stale_after, &me.host) {
                // Rename first: of several breakers only one wins. A lock
                // taken afresh between the look and the rename is moved
                // back (the content check below).
                let aside = path.with_extension(format!(
                    "broken-{}-{}",
                    std::process::id(),
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0)
                ));
                if fs::rename(path, &aside).is_ok() {
                    let taken = fs::read_to_string(&aside).ok();
                    let still_stale = match (&why, taken.as_deref().and_then(Holder::parse)) {
                        (Broken::DeadHere(h), Some(now)) => *h == now,
                        (Broken::Stale(h), now) => *h == now,
                        _ => false,
                    };
                    if still_stale {
                        let _ = fs::remove_file(&aside);
                        on_break(&why);
                    } else if fs::hard_link(&aside, path).is_ok() {
                        // A live lock was moved by mistake: put it back.
                        let _ = fs::remove_file(&aside);
                    } else {
                        let _ = fs::remove_file(&aside);
                    }
                }
                continue;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(250));
        }
    }

    /// The lock's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        self.beating.store(false, Ordering::SeqCst);
        // Only our own: a lock broken (we were silent too long) and taken
        // by someone else is theirs.
        if fs::read_to_string(&self.path).ok().as_deref() == Some(&self.content) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::DeadHere(h) => write!(f, "its holder (pid {} on {}) is gone", h.pid, h.host),
            Broken::Stale(Some(h)) => write!(
                f,
                "its holder (pid {} on {}) gave no sign of life for longer than the timeout",
                h.pid, h.host
            ),
            Broken::Stale(None) => f.write_str(
                "an unreadable lock file gave no sign of life for longer than the timeout",
            ),
        }
    }
}

/// Whether the lock file at `path` is held by a live holder (one that
/// [`LockFile::acquire`] would wait for), as seen from this host.
pub fn held_elsewhere(path: &Path, stale_after: Duration) -> bool {
    path.exists() && breakable(path, stale_after, &super::hostname()).is_none()
}

/// Why the lock at `path` may be broken, if it may.
fn breakable(path: &Path, stale_after: Duration, here: &str) -> Option<Broken> {
    let meta = fs::metadata(path).ok()?;
    let holder = fs::read_to_string(path)
        .ok()
        .and_then(|t| Holder::parse(&t));
    if let Some(h) = &holder {
        if h.host == here && !pid_alive(h.pid) {
            return Some(Broken::DeadHere(h.clone()));
        }
    }
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    (age > stale_after).then_some(Broken::Stale(holder))
}

pub(super) fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Touches `path`'s mtime every `every` while `beating`.
pub(super) fn heartbeat(path: PathBuf, every: Duration, beating: Arc<AtomicBool>) {
    let every = every.max(Duration::from_millis(10));
    std::thread::spawn(move || {
        let step = Duration::from_millis(100).min(every);
        let mut since = Duration::ZERO;
        while beating.load(Ordering::SeqCst) {
            std::thread::sleep(step);
            since += step;
            if since >= every {
                since = Duration::ZERO;
                if let Ok(f) = OpenOptions::new().append(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn one_holder_at_a_time_among_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let inside = AtomicUsize::new(0);
        let max = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let _l =
                            LockFile::acquire(&path, Duration::from_secs(30), &|_| {}).unwrap();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(max.load(Ordering::SeqCst), 1);
        assert!(!path.exists(), "released");
    }

    #[test]
    fn a_dead_holder_on_this_host_is_broken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        // A pid that exited: a child we waited for.
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let mut child = child;
        child.wait().unwrap();
        let dead = Holder {
            host: crate::store::hostname(),
            pid,
            since: 1,
        };
        fs::write(&path, dead.encode()).unwrap();
        let broken = std::sync::Mutex::new(Vec::new());
        let l = LockFile::acquire(&path, Duration::from_secs(3600), &|b| {
            broken.lock().unwrap().push(b.clone())
        })
        .unwrap();
        assert_eq!(*broken.lock().unwrap(), vec![Broken::DeadHere(dead)]);
        assert_eq!(
            Holder::parse(&fs::read_to_string(l.path()).unwrap())
                .unwrap()
                .pid,
            std::process::id()
        );
    }

    #[test]
    fn another_hosts_lock_is_broken_only_when_its_heartbeat_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let other = Holder {
            host: "elsewhere.example".into(),
            pid: 1,
            since: 1,
        };
        fs::write(&path, other.encode()).unwrap();
        // Fresh: it waits. Keep it fresh for a while, then stop.
        let p2 = path.clone();
        let keeper = std::thread::spawn(move || {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(50));
                let f = OpenOptions::new().append(true).open(&p2).unwrap();
                f.set_modified(SystemTime::now()).unwrap();
            }
        });
        let t = std::time::Instant::now();
        let broken = std::sync::Mutex::new(Vec::new());
        let _l = LockFile::acquire(&path, Duration::from_millis(300), &|b| {
            broken.lock().unwrap().push(b.clone())
        })
        .unwrap();
        keeper.join().unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(500 + 300),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(*broken.lock().unwrap(), vec![Broken::Stale(Some(other))]);
    }

    #[test]
    fn a_held_lock_stays_fresh_through_its_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let _held = LockFile::acquire(&path, Duration::from_millis(150), &|_| {}).unwrap();
        // Another process's view: pretend to be another host by checking
        // the age rule only.
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            breakable(&path, Duration::from_millis(150), "other-host"),
            None
        );
    }
}
