//! Leases: how a running `run` tells `gc` what it uses.
//!
//! A run holds a lease for its lifetime: `leases/<pid>-<nanos>.lease`, to
//! which it appends every key and work key it computes, *before* it looks
//! that key up. `gc` announces a collection before it reads the leases and
//! keeps the announcement until it has finished; a run that appended a key
//! waits while a collection is announced before looking the key up. So a
//! key is either in a lease when `gc` reads the leases, or the run's lookup
//! of it comes after the collection has finished: `gc` never removes an
//! object a run has found or is about to find, nor a working folder it
//! trains in.
//!
//! Both steps hold on a filesystem shared between hosts, where `flock` may
//! not (NFS): the announcement is a lock file (`leases/collecting`, see
//! [`super::lockfile`]), an append is synced (on a network filesystem,
//! [`super::on_network_fs`]) before the run looks for the announcement,
//! and a lease is kept fresh by a heartbeat (its mtime).
//! Among the processes of one host, `flock` adds a fast path: a run's lease
//! is locked for its lifetime, and `leases/gate` is shared by appends and
//! held exclusively by a collection.
//!
//! A lease is live while its run is: on this host, while its lock is taken
//! (or, without `flock`, while its pid lives); from another host, while its
//! heartbeat is younger than the stale timeout (`FOLDWISE_LOCK_STALE`).
//! `gc` removes the leases of dead runs.
//!
//! File format: a JSON header line ([`LeaseHeader`]), then one line per
//! entry, `object <key>` or `work <key>`, each appended in one write.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::lockfile::{self, heartbeat, pid_alive, LockFile};
use super::{annotate, lock_stale_after, Store};

/// Who holds a lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseHeader {
    pub pid: u32,
    pub host: String,
    pub started_unix: u64,
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline file as the run was given it, absolute.
    pub file: Option<PathBuf>,
}

impl LeaseHeader {
    /// A header for this process, now.
    pub fn here(pipeline: &str, file: Option<&Path>) -> LeaseHeader {
        LeaseHeader {
            pid: std::process::id(),
            host: hostname(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            pipeline: pipeline.to_string(),
            file: file.map(|f| std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf())),
        }
    }
}

/// The machine's name (`/proc/sys/kernel/hostname`, else `HOSTNAME`).
pub fn hostname() -> String {
    // Test-only: stand for another host (two "hosts" on one machine).
    if let Some(h) = std::env::var_os("FOLDWISE_TEST_HOST") {
        return h.to_string_lossy().into_owned();
    }
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A live run's lease, as `gc` reads it.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    pub header: LeaseHeader,
    pub objects: BTreeSet<String>,
    pub work: BTreeSet<String>,
}

/// A run's lease: held until dropped, then removed.
pub struct Lease {
    file: File,
    path: PathBuf,
    gate: PathBuf,
    collecting: PathBuf,
    flock: bool,
    network: bool,
    beating: Arc<AtomicBool>,
}

impl Store {
    fn gate_path(&self) -> PathBuf {
        self.root.join("leases").join("gate")
    }

    fn collecting_path(&self) -> PathBuf {
        self.root.join("leases").join("collecting")
    }

    /// Takes a lease for a run.
    pub fn lease(&self, header: &LeaseHeader) -> io::Result<Lease> {
        let dir = self.root.join("leases");
        fs::create_dir_all(&dir).map_err(|e| annotate(e, &dir))?;
        let gate = self.gate_path();
        let _shared = self.flock.then(|| lock_gate(&gate, false)).transpose()?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = dir.join(format!("{}-{nanos}.lease", header.pid));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| annotate(e, &path))?;
        if self.flock {
            file.lock().map_err(|e| annotate(e, &path))?;
        }
        let mut line = serde_json::to_vec(header).expect("header serialises");
        line.push(b'\n');
        (&file).write_all(&line).map_err(|e| annotate(e, &path))?;
        file.sync_data().map_err(|e| annotate(e, &path))?;
        let beating = Arc::new(AtomicBool::new(true));
        heartbeat(path.clone(), lock_stale_after() / 3, beating.clone());
        Ok(Lease {
            file,
            path,
            gate,
            collecting: self.collecting_path(),
            flock: self.flock,
            network: self.network,
            beating,
        })
    }

    /// Announces a collection (waiting for another one to finish), waits
    /// until no run on this host is adding to its lease, and holds every
    /// run's lookups off until the returned [`Collection`] is dropped.
    /// Reads the live leases.
    pub fn collection(&self) -> io::Result<Collection<'_>> {
        let dir = self.root.join("leases");
        fs::create_dir_all(&dir).map_err(|e| annotate(e, &dir))?;
        let stale = lock_stale_after();
        let announced = LockFile::acquire(&self.collecting_path(), stale, &|b| {
            eprintln!("note: broke the lock of an earlier collection: {b}");
        })?;
        let gate = self
            .flock
            .then(|| lock_gate(&self.gate_path(), true))
            .transpose()?;
        let here = hostname();
        let mut leases = Vec::new();
        let mut dead = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| annotate(e, &dir))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "lease") {
                continue;
            }
            match read_live(&path, self.flock, stale, &here)? {
                Some(info) => leases.push(info),
                None => dead.push(path),
            }
        }
        leases.sort_by_key(|l| (l.header.started_unix, l.header.pid));
        Ok(Collection {
            store: self,
            _gate: gate,
            _announced: announced,
            leases,
            dead,
        })
    }
}

/// `Some` when a live run holds the lease at `path`: its `flock` is taken,
/// or (without one) its pid lives on this host, or its heartbeat is fresh
/// on another.
fn read_live(
    path: &Path,
    flock: bool,
    stale: Duration,
    here: &str,
) -> io::Result<Option<LeaseInfo>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(annotate(e, path)),
    };
    let locked = flock && file.try_lock_shared().is_err();
    let text = fs::read_to_string(path).map_err(|e| annotate(e, path))?;
    let mut lines = text.lines();
    let header = lines
        .next()
        .and_then(|l| serde_json::from_str::<LeaseHeader>(l).ok());
    let live = locked
        || match &header {
            Some(h) if h.host == here => !flock && pid_alive(h.pid),
            _ => {
                let age = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .unwrap_or_default();
                age <= stale
            }
        };
    if !live {
        return Ok(None);
    }
    let Some(header) = header else {
        // A lease is created with its header before anything else, so a
        // live lease without one is damaged: its holder is alive, so keep
        // everything it could hold.
        return Ok(Some(LeaseInfo {
            header: LeaseHeader::here("?", None),
            objects: BTreeSet::new(),
            work: BTreeSet::new(),
        }));
    };
    let mut info = LeaseInfo {
        header,
        objects: BTreeSet::new(),
        work: BTreeSet::new(),
    };
    for l in lines {
        match l.split_once(' ') {
            Some(("object", k)) => {
                info.objects.insert(k.to_string());
            }
            Some(("work", k)) => {
                info.work.insert(k.to_string());
            }
            _ => {}
        }
    }
    Ok(Some(info))
}

/// Opens and locks the gate, shared or exclusive (waiting).
fn lock_gate(gate: &Path, exclusive: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(gate)
        .map_err(|e| annotate(e, gate))?;
    if exclusive { f.lock() } else { f.lock_shared() }.map_err(|e| annotate(e, gate))?;
    Ok(f)
}

impl Lease {
    /// Records that the run uses `key` (and `work`, its working folder's
    /// key): call before looking the key up.
    pub fn hold(&self, key: &str, work: Option<&str>) -> io::Result<()> {
        let mut lines = format!("object {key}\n");
        if let Some(w) = work {
            lines.push_str(&format!("work {w}\n"));
        }
        {
            let _shared = self
                .flock
                .then(|| lock_gate(&self.gate, false))
                .transpose()?;
            (&self.file)
                .write_all(lines.as_bytes())
                .map_err(|e| annotate(e, &self.path))?;
            if self.network {
                // Another host reads the lease only once it is on the server.
                self.file.sync_data().map_err(|e| annotate(e, &self.path))?;
            }
        }
        // The key is in the lease for any collection announced from now on;
        // one announced before must finish before the key is looked up.
        let stale = lock_stale_after();
        let mut wait = Duration::from_millis(5);
        while lockfile::held_elsewhere(&self.collecting, stale) {
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(250));
        }
        Ok(())
    }

    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.beating.store(false, Ordering::SeqCst);
        let _ = fs::remove_file(&self.path);
    }
}

/// A collection in progress: no run can add to its lease meanwhile.
pub struct Collection<'s> {
    pub(super) store: &'s Store,
    _gate: Option<File>,
    _announced: LockFile,
    /// The leases of the runs alive when the collection began.
    pub leases: Vec<LeaseInfo>,
    /// Lease files left by runs that died.
    pub(super) dead: Vec<PathBuf>,
}

impl Collection<'_> {
    /// Every key a live run holds.
    pub fn held_objects(&self) -> BTreeSet<String> {
        self.leases
            .iter()
            .flat_map(|l| l.objects.iter().cloned())
            .collect()
    }

    /// Every work key a live run holds.
    pub fn held_work(&self) -> BTreeSet<String> {
        self.leases
            .iter()
            .flat_map(|l| l.work.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_lease_is_read_and_a_dropped_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = store
            .lease(&LeaseHeader::here("p", Some(Path::new("p.toml"))))
            .unwrap();
        lease.hold(&"a".repeat(64), Some(&"w".repeat(64))).unwrap();
        lease.hold(&"b".repeat(64), None).unwrap();
        {
            let c = store.collection().unwrap();
            assert_eq!(c.leases.len(), 1);
            assert_eq!(c.leases[0].header.pipeline, "p");
            assert_eq!(
                c.held_objects(),
                ["a".repeat(64), "b".repeat(64)].into_iter().collect()
            );
            assert_eq!(c.held_work(), [("w".repeat(64))].into_iter().collect());
        }
        let path = lease.path().to_path_buf();
        drop(lease);
        assert!(!path.exists());
        assert!(store.collection().unwrap().leases.is_empty());
    }

    #[test]
    fn an_unlocked_lease_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = store.lease(&LeaseHeader::here("p", None)).unwrap();
        // What a killed run leaves: the file, without its lock.
        let left = dir.path().join("leases").join("1-1.lease");
        fs::copy(lease.path(), &left).unwrap();
        drop(lease);
        let c = store.collection().unwrap();
        assert!(c.leases.is_empty());
        assert_eq!(c.dead, vec![left]);
    }

    #[test]
    fn a_run_waits_while_gc_collects() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = store.lease(&LeaseHeader::here("p", None)).unwrap();
        let c = store.collection().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                lease.hold(&"c".repeat(64), None).unwrap();
                tx.send(()).unwrap();
            });
            // The hold cannot complete while the collection is open.
            assert!(rx
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err());
            drop(c);
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        });
        let c = store.collection().unwrap();
        assert!(c.held_objects().contains(&"c".repeat(64)));
    }

    fn header(host: &str, pid: u32) -> String {
        let mut h = LeaseHeader::here("p", None);
        h.host = host.into();
        h.pid = pid;
        format!(
            "{}\nobject {}\n",
            serde_json::to_string(&h).unwrap(),
            "d".repeat(64)
        )
    }

    #[test]
    fn without_flock_a_lease_lives_by_its_pid_here_and_by_its_heartbeat_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().without_flock();
        let leases = dir.path().join("leases");
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let gone = exited.id();
        exited.wait().unwrap();
        let here = hostname();
        fs::write(leases.join("1-1.lease"), header(&here, std::process::id())).unwrap();
        fs::write(leases.join("2-2.lease"), header(&here, gone)).unwrap();
        fs::write(leases.join("3-3.lease"), header("elsewhere.example", 7)).unwrap();
        let silent = leases.join("4-4.lease");
        fs::write(&silent, header("silent.example", 7)).unwrap();
        let old = SystemTime::now() - lock_stale_after() - Duration::from_secs(5);
        File::options()
            .append(true)
            .open(&silent)
            .unwrap()
            .set_modified(old)
            .unwrap();

        let c = store.collection().unwrap();
        let live: Vec<_> = c.leases.iter().map(|l| l.header.host.as_str()).collect();
        assert_eq!(live.len(), 2, "{live:?}");
        assert!(live.contains(&here.as_str()) && live.contains(&"elsewhere.example"));
        let mut dead = c.dead.clone();
        dead.sort();
        assert_eq!(dead, vec![leases.join("2-2.lease"), silent]);
    }

    #[test]
    fn a_local_folder_is_not_a_network_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!super::super::on_network_fs(dir.path()));
        assert!(!super::super::on_network_fs(Path::new("/proc")));
    }

    #[test]
    fn without_flock_a_run_still_waits_while_gc_collects() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().without_flock();
        let lease = store.lease(&LeaseHeader::here("p", None)).unwrap();
        let c = store.collection().unwrap();
        assert!(dir.path().join("leases").join("collecting").exists());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                lease.hold(&"e".repeat(64), None).unwrap();
                tx.send(()).unwrap();
            });
            assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
            drop(c);
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        });
        assert!(!dir.path().join("leases").join("collecting").exists());
        // The key was appended before the wait: a collection sees it.
        let c = store.collection().unwrap();
        assert!(c.held_objects().contains(&"e".repeat(64)));
    }
}
