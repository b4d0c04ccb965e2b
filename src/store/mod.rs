//! The content-addressed artifact cache.
//!
//! Layout under the cache root:
//! - `objects/<k0k1>/<key>/out/`           the files a node wrote
//! - `objects/<k0k1>/<key>/manifest.json`  every file's path, size and BLAKE3
//! - `objects/<k0k1>/<key>/preimage.json`  what went into the key
//! - `objects/<k0k1>/<key>/meta.json`      run facts (duration, time); not hashed
//! - `objects/<k0k1>/<key>/stamps`         each file's (size, mtime, inode), so
//!   a check reads no file whose `stat` is unchanged (see [`stamps`]); not hashed
//! - `tmp/`     artifacts being written; a killed run leaves them here, never read
//! - `locks/<key>.lock`  an advisory lock held while a key is computed
//! - `refs/<pipeline>/<instance>.json`  the key and pre-image a node last ran with
//! - `memo/files`  file digests remembered by (path, size, mtime, inode)
//! - `trash/`   damaged or replaced objects on their way out
//! - `damaged/<key>-<nanos>/`  objects `verify --fix` moved aside (kept for
//!   a look; `gc` removes them)
//! - `work/<work key>/`  working folders of resumable nodes (checkpoints)
//! - `derived/`  files derived from inputs alone (decoded data sets), by digest
//! - `history/<unix ms>-<pid>.json`  one record per `run` (see [`RunRecord`])
//! - `leases/<pid>-<nanos>.lease`  what each running `run` uses, kept from
//!   `gc` (see [`lease`]); `leases/gate` orders runs and `gc`
//!
//! Guarantees (see docs/ARCHITECTURE.md):
//! - an object folder exists only when complete: it is written under `tmp/`
//!   and renamed into place;
//! - only a [`Writer`], which holds the key's lock, can create one, so two
//!   runs sharing a cache never compute the same key at the same time;
//! - [`Store::check`] detects a changed, missing or extra file.
//!
//! Test-only hooks: `FOLDWISE_TEST_HOST` (this process stands for another
//! host) and `FOLDWISE_TEST_NO_FLOCK` (key locks and leases without
//! `flock`, as on a filesystem where it does not hold between hosts); the environment
//! variables `FOLDWISE_TEST_PAUSE_COMMIT`
//! and `FOLDWISE_TEST_PAUSE_COMMITTED` hold a commit just before or just
//! after its rename (see [`PAUSE_BEFORE_RENAME`]), so that a test can kill
//! a run exactly there; `FOLDWISE_TEST_PAUSE_EPOCH` holds a training after
//! each epoch's checkpoint, `FOLDWISE_TEST_PAUSE_GC` a `gc` after each
//! object it removes.

mod gc;
mod history;
mod lease;
mod lockfile;
mod manifest;
mod memo;
mod stamps;
mod verify;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use gc::{GcReport, Held};
pub use history::{NodeRecord, RunRecord, Score, Scores};
pub use lease::{hostname, Collection, Lease, LeaseHeader, LeaseInfo};
pub use lockfile::{Broken, Holder, LockFile};
pub use manifest::{Digest, FileEntry, Manifest};
pub use memo::{hash_file, FileMemo, Stamp};
pub use verify::{Damaged, VerifyReport};

const OUT: &str = "out";
const MANIFEST: &str = "manifest.json";
const PREIMAGE: &str = "preimage.json";
const META: &str = "meta.json";
const STAMPS: &str = "stamps";

/// The cache.
pub struct Store {
    root: PathBuf,
    memo: FileMemo,
    /// Whether to take `flock`s at all (besides the lock files that hold
    /// between hosts); false only under `FOLDWISE_TEST_NO_FLOCK`.
    flock: bool,
    /// Whether the cache lives on a network filesystem (see
    /// [`on_network_fs`]): a lease's appends are then synced, so that a
    /// `gc` on another host reads them.
    network: bool,
}

/// A complete, verified artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub key: String,
    /// The folder with the node's files.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The artifact digest ([`Manifest::digest`]).
    pub digest: String,
}

/// The result of [`Store::check`].
#[derive(Debug)]
pub enum Check {
    Ok(Artifact),
    Missing,
    /// The object exists but its files do not match its manifest (or the
    /// manifest is unreadable).
    Corrupted(String),
}

/// The result of [`Store::begin`].
pub enum Begin<'s> {
    /// Someone (maybe another process) completed the key meanwhile.
    Hit(Artifact),
    /// The caller holds the key's lock and must compute it.
    Miss(Writer<'s>),
}

/// The last run of a node under a pipeline name: its key and pre-image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefRecord {
    pub key: String,
    pub preimage: Value,
}

impl Store {
    /// Opens (creating) a cache rooted at `root`.
    pub fn open(root: &Path) -> io::Result<Store> {
        for sub in [
            "objects", "tmp", "locks", "refs", "memo", "trash", "work", "derived", "leases",
            "damaged",
        ] {
            fs::create_dir_all(root.join(sub)).map_err(|e| annotate(e, &root.join(sub)))?;
        }
        let memo = FileMemo::load(root.join("memo").join("files"));
        Ok(Store {
            root: root.to_path_buf(),
            memo,
            flock: std::env::var_os("FOLDWISE_TEST_NO_FLOCK").is_none(),
            network: on_network_fs(root),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This store without `flock`s: lock files and heartbeats alone, as
    /// between hosts on a filesystem where `flock` does not hold.
    #[cfg(test)]
    pub(crate) fn without_flock(mut self) -> Store {
        self.flock = false;
        self
    }

    pub fn memo(&self) -> &FileMemo {
        &self.memo
    }

    /// The object folder of a key (it may not exist).
    pub fn object_dir(&self, key: &str) -> PathBuf {
        self.root.join("objects").join(&key[..2]).join(key)
    }

    /// The working folder for a work key (created).
    pub fn work_dir(&self, work_key: &str) -> io::Result<PathBuf> {
        let dir = self.root.join("work").join(work_key);
        fs::create_dir_all(&dir).map_err(|e| annotate(e, &dir))?;
        Ok(dir)
    }

    /// The shared folder for derived files.
    pub fn derived_dir(&self) -> PathBuf {
        self.root.join("derived")
    }

    /// Where the files of a key's artifact live (it may not exist).
    pub fn artifact_dir(&self, key: &str) -> PathBuf {
        self.object_dir(key).join(OUT)
    }

    /// Verifies a key's artifact against its manifest. Files are re-read
    /// only when their (size, mtime, inode) changed since last hashed.
    pub fn check(&self, key: &str) -> Check {
        self.check_with(key, &self.memo, true)
    }

    /// [`Store::check`] answering file digests from the object's stamps
    /// when `trust_stamps`, else from `memo` (an empty one re-reads every
    /// file).
    fn check_with(&self, key: &str, memo: &FileMemo, trust_stamps: bool) -> Check {
        let obj = self.object_dir(key);
        let manifest_path = obj.join(MANIFEST);
        let bytes = match fs::read(&manifest_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return if obj.exists() {
                    Check::Corrupted("manifest.json missing".into())
                } else {
                    Check::Missing
                };
            }
            Err(e) => return Check::Corrupted(format!("manifest.json unreadable: {e}")),
        };
        let manifest = match Manifest::from_json(&bytes) {
            Ok(m) => m,
            Err(e) => return Check::Corrupted(format!("manifest.json damaged: {e}")),
        };
        drop(bytes);
        let dir = obj.join(OUT);
        let found = match scan_files(&dir, false, memo) {
            Ok(f) => f,
            Err(e) => return Check::Corrupted(format!("cannot list {}: {e}", dir.display())),
        };
        // Same names in the same order, then every file's digest (in
        // parallel: all but changed files are answered by the memo).
        let (mut a, mut b) = (manifest.files.iter().peekable(), found.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(f), Some(g)) if f.path == g.rel => {
                    a.next();
                    b.next();
                }
                (Some(f), g) if g.is_none_or(|g| f.path < g.rel) => {
                    return Check::Corrupted(format!("{} missing", f.path));
                }
                (_, Some(g)) => return Check::Corrupted(format!("{} added", g.rel)),
                (_, None) => unreachable!("handled by the arms above"),
            }
        }
        let stamps_path = obj.join(STAMPS);
        let n = manifest.files.len();
        let stamps = trust_stamps
            .then(|| stamps::Stamps::read(&stamps_path, n))
            .flatten();
        let stamped = |i: usize| {
            let g = &found[i].meta;
            stamps
                .as_ref()
                .is_some_and(|s| s.get(i) == (g.size, g.mtime_ns, g.ino))
        };
        let matches = |i: usize| {
            let (f, g) = (&manifest.files[i], &found[i]);
            matches!(memo.digest_in(&dir, &g.rel, &g.meta),
                Ok((size, digest)) if size == f.size && digest == f.digest.0)
        };
        let bad = (0..n).into_par_iter().find_first(|&i| {
            !(stamped(i) && found[i].meta.size == manifest.files[i].size || matches(i))
        });
        if let Some(i) = bad {
            let (f, g) = (&manifest.files[i], &found[i]);
            return match memo.digest_in(&dir, &g.rel, &g.meta) {
                Err(e) => Check::Corrupted(format!("{} unreadable: {e}", f.path)),
                Ok(_) => Check::Corrupted(format!("{} changed", f.path)),
            };
        }
        if trust_stamps && !(0..n).all(stamped) {
            // Read and found intact: spare the next check that read.
            let now = found
                .iter()
                .map(|g| (g.meta.size, g.meta.mtime_ns, g.meta.ino));
            let _ = write_atomic(&stamps_path, &stamps::encode(now));
        }
        let digest = manifest.digest();
        Check::Ok(Artifact {
            key: key.to_string(),
            dir,
            manifest,
            digest,
        })
    }

    /// Takes the lock of `key` (waiting for another process that holds it),
    /// then either finds the artifact complete or hands out a [`Writer`].
    /// A damaged object found here is moved aside and recomputed.
    /// With `force`, the existing artifact (if any) is recomputed and
    /// replaced on commit.
    pub fn begin(&self, key: &str, force: bool) -> io::Result<Begin<'_>> {
        let lock = self.lock_key(key)?;
        match self.check(key) {
            Check::Ok(_) if force => {}
            Check::Ok(a) => return Ok(Begin::Hit(a)),
            Check::Corrupted(_) => self.discard(key)?,
            Check::Missing => {}
        }
        let tmp = self.root.join("tmp").join(format!(
            "{key}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        fs::create_dir_all(tmp.join(OUT)).map_err(|e| annotate(e, &tmp))?;
        Ok(Begin::Miss(Writer {
            store: self,
            key: key.to_string(),
            tmp,
            _lock: lock,
            committed: false,
        }))
    }

    /// Takes the lock of `key`, waiting for its holder: an OS lock
    /// (`locks/<key>.lock`, `flock`: fast among the processes of one host)
    /// and then a lock file (`locks/<key>.held`, [`LockFile`]: holds
    /// between hosts sharing the cache over NFS, where `flock` may not).
    pub fn lock_key(&self, key: &str) -> io::Result<KeyLock> {
        let lock_path = self.root.join("locks").join(format!("{key}.lock"));
        let os = File::create(&lock_path).map_err(|e| annotate(e, &lock_path))?;
        // Test-only: behave as on a filesystem whose `flock` does not hold
        // between hosts, so that the lock file alone must.
        if self.flock {
            os.lock().map_err(|e| annotate(e, &lock_path))?;
        }
        let held = self.root.join("locks").join(format!("{key}.held"));
        let file = LockFile::acquire(&held, lock_stale_after(), &|b| {
            eprintln!("note: broke the lock of {key}: {b}");
        })?;
        Ok(KeyLock {
            _os: os,
            _file: file,
        })
    }

    /// Whether someone holds `key`'s lock now (on this host or another).
    pub fn key_locked(&self, key: &str) -> bool {
        let lock_path = self.root.join("locks").join(format!("{key}.lock"));
        if let Ok(f) = File::open(&lock_path) {
            if f.try_lock().is_err() {
                return true;
            }
        }
        let held = self.root.join("locks").join(format!("{key}.held"));
        lockfile::held_elsewhere(&held, lock_stale_after())
    }

    /// Moves an object out of the way (into `trash/`) and deletes it.
    pub fn discard(&self, key: &str) -> io::Result<()> {
        let obj = self.object_dir(key);
        if !obj.exists() {
            return Ok(());
        }
        let dest = self.root.join("trash").join(format!(
            "{key}-{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        fs::rename(&obj, &dest).map_err(|e| annotate(e, &obj))?;
        // Out of the way now; what a failure leaves, `gc` empties.
        let _ = fs::remove_dir_all(&dest);
        Ok(())
    }

    /// The pre-image stored beside an object.
    pub fn preimage(&self, key: &str) -> Option<Value> {
        let bytes = fs::read(self.object_dir(key).join(PREIMAGE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The run facts stored beside an object.
    pub fn meta(&self, key: &str) -> Option<Value> {
        let bytes = fs::read(self.object_dir(key).join(META)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn ref_path(&self, pipeline: &str, instance: &str) -> PathBuf {
        self.root
            .join("refs")
            .join(sanitize(pipeline))
            .join(format!("{}.json", sanitize(instance)))
    }

    /// The record of the last run of `instance` under pipeline name `pipeline`.
    pub fn read_ref(&self, pipeline: &str, instance: &str) -> Option<RefRecord> {
        let bytes = fs::read(self.ref_path(pipeline, instance)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records the key a node ran (or reused) with, atomically.
    pub fn write_ref(&self, pipeline: &str, instance: &str, rec: &RefRecord) -> io::Result<()> {
        let path = self.ref_path(pipeline, instance);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| annotate(e, parent))?;
        }
        write_atomic(
            &path,
            &serde_json::to_vec_pretty(rec).expect("ref serialises"),
        )
    }

    /// Writes the memo back to disk.
    pub fn save_memo(&self) -> io::Result<()> {
        self.memo.save()
    }
}

/// An artifact being written. Dropping it without [`Writer::commit`]
/// removes the temporary folder; a killed process leaves it in `tmp/`,
/// where it is never read and `gc` removes it.
pub struct Writer<'s> {
    store: &'s Store,
    key: String,
    tmp: PathBuf,
    _lock: KeyLock,
    committed: bool,
}

impl Writer<'_> {
    /// The empty folder the node writes into.
    pub fn out_dir(&self) -> PathBuf {
        self.tmp.join(OUT)
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Hashes what was written, stores the manifest, pre-image and meta,
    /// and renames the folder into place.
    pub fn commit(mut self, preimage: &Value, meta: &Value) -> io::Result<Artifact> {
        let out = self.out_dir();
        let scratch = FileMemo::in_memory();
        let manifest = Manifest::build(&out, &scratch).map_err(|e| annotate(e, &out))?;
        let json = |v: &Value| serde_json::to_vec_pretty(v).expect("json serialises");
        fs::write(
            self.tmp.join(MANIFEST),
            serde_json::to_vec(&manifest).expect("manifest serialises"),
        )?;
        fs::write(self.tmp.join(PREIMAGE), json(preimage))?;
        fs::write(self.tmp.join(META), json(meta))?;
        // A rename of the folder keeps every file's inode and mtime.
        let paths: Vec<PathBuf> = manifest.files.iter().map(|f| out.join(&f.path)).collect();
        let now = stamps::of_files(paths.iter().map(PathBuf::as_path))?;
        fs::write(self.tmp.join(STAMPS), stamps::encode(now.into_iter()))?;
        let obj = self.store.object_dir(&self.key);
        fs::create_dir_all(obj.parent().expect("object has a parent"))?;
        if obj.exists() {
            // Only a forced rerun gets here (we hold the lock): replace.
            self.store.discard(&self.key)?;
        }
        test_pause(PAUSE_BEFORE_RENAME);
        fs::rename(&self.tmp, &obj).map_err(|e| annotate(e, &obj))?;
        self.committed = true;
        test_pause(PAUSE_AFTER_RENAME);
        let dir = obj.join(OUT);
        let digest = manifest.digest();
        Ok(Artifact {
            key: self.key.clone(),
            dir,
            manifest,
            digest,
        })
    }
}

/// Test-only: the name of a file whose presence holds every commit just
/// before its folder is renamed into `objects/`.
pub const PAUSE_BEFORE_RENAME: &str = "FOLDWISE_TEST_PAUSE_COMMIT";
/// Test-only: the same, just after the rename (before the caller records
/// the node's ref).
pub const PAUSE_AFTER_RENAME: &str = "FOLDWISE_TEST_PAUSE_COMMITTED";

/// Test-only: the same, after each epoch's checkpoint of a training (a
/// training held in progress).
pub const PAUSE_AFTER_EPOCH: &str = "FOLDWISE_TEST_PAUSE_EPOCH";

/// Test-only: the same, in `gc`, after each object it removes.
pub const PAUSE_GC: &str = "FOLDWISE_TEST_PAUSE_GC";

/// Test-only hook (for tests that kill or disturb a run at a chosen point;
/// never set in normal use): when the environment variable `var` names a
/// file, creates `<file>.reached` and waits while `<file>` exists (60 s at
/// most).
pub fn test_pause(var: &str) {
    let Some(file) = std::env::var_os(var) else {
        return;
    };
    let file = PathBuf::from(file);
    let mut reached = file.clone().into_os_string();
    reached.push(".reached");
    let _ = fs::write(&reached, b"");
    let start = std::time::Instant::now();
    while file.exists() && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A key's lock, held until dropped (see [`Store::lock_key`]).
pub struct KeyLock {
    _os: File,
    _file: LockFile,
}

/// How long a lock file may go without its holder's heartbeat before
/// another host breaks it: `FOLDWISE_LOCK_STALE` seconds, else 120.
/// Whether `path` is on a filesystem that other hosts may share (NFS,
/// SMB/CIFS, Lustre, GPFS, BeeGFS, CephFS, 9P, AFS, FUSE), by `statfs`'s
/// type, or `FOLDWISE_NETWORK_CACHE=1` says so.
pub fn on_network_fs(path: &Path) -> bool {
    if std::env::var_os("FOLDWISE_NETWORK_CACHE").is_some_and(|v| v == "1") {
        return true;
    }
    network_fs_type(path)
}

#[cfg(target_os = "linux")]
fn network_fs_type(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    const NETWORK: [u64; 11] = [
        0x6969,      // NFS
        0x517b,      // SMB
        0xff53_4d42, // CIFS
        0xfe53_4d42, // SMB2
        0x0bd0_0bd0, // Lustre
        0x4750_4653, // GPFS
        0x1983_0326, // BeeGFS
        0x00c3_6400, // CephFS
        0x0102_1997, // 9P
        0x5346_414f, // AFS
        0x6573_5546, // FUSE
    ];
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct owned by this frame.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    let kind = (st.f_type as u64) & 0xffff_ffff;
    NETWORK.contains(&kind)
}

#[cfg(not(target_os = "linux"))]
fn network_fs_type(_path: &Path) -> bool {
    false
}

pub fn lock_stale_after() -> std::time::Duration {
    std::env::var("FOLDWISE_LOCK_STALE")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0 && s.is_finite())
        .map(std::time::Duration::from_secs_f64)
        .unwrap_or(std::time::Duration::from_secs(120))
}

/// A temporary name beside `path`, unique to this process, thread and
/// moment: write there, then rename onto `path`.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{:?}-{nanos}",
        std::process::id(),
        std::thread::current().id()
    ));
    path.with_file_name(name)
}

/// Writes a file through a temporary name in the same folder and a rename,
/// so that a reader sees the old file or the whole new one, never a part.
/// On failure the temporary file is removed. The one atomic write of the
/// project: the artifact formats write through it too.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = fs::write(&tmp, bytes)
        .map_err(|e| annotate(e, &tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| annotate(e, path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A file found by [`scan_files`].
#[derive(Debug)]
pub struct ScannedFile {
    /// Path relative to the scanned folder, `/`-separated.
    pub rel: String,
    pub meta: Stamp,
}

/// Every non-folder entry below `dir`, sorted by relative path. Metadata
/// comes from the directory scan (`statx` relative to the open folder), so
/// a large folder costs one cheap call per file — and none for a hard link
/// to a file this process already stat'ed (the directory entry carries the
/// inode number). With `skip_hidden`, names starting with `.` (files and
/// folders) are left out.
pub fn scan_files(dir: &Path, skip_hidden: bool, memo: &FileMemo) -> io::Result<Vec<ScannedFile>> {
    use std::os::unix::fs::{DirEntryExt, MetadataExt};
    fn walk(
        dir: &Path,
        dev: u64,
        prefix: &str,
        skip_hidden: bool,
        memo: &FileMemo,
        out: &mut Vec<ScannedFile>,
    ) -> io::Result<()> {
        // Names first (an entry kept only when it needs a `stat`: not a
        // hard link to a file already seen), then both cores stat in place:
        // this is most of a large data set's status time.
        let (mut scanned, mut entries) = (Vec::new(), Vec::new());
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if skip_hidden && name.starts_with('.') {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let ft = entry.file_type()?;
            if ft.is_dir() {
                walk(&entry.path(), dev, &rel, skip_hidden, memo, out)?;
                continue;
            }
            let known = ft
                .is_file()
                .then(|| memo.known_inode(dev, entry.ino()))
                .flatten();
            if known.is_none() {
                entries.push((scanned.len(), entry));
            }
            scanned.push(ScannedFile {
                rel,
                meta: known.unwrap_or_default(),
            });
        }
        let stated: Vec<io::Result<Stamp>> = entries
            .par_iter()
            .map(|(_, entry)| {
                if entry.file_type()?.is_symlink() {
                    Ok(Stamp::from(&fs::metadata(entry.path())?))
                } else {
                    Ok(Stamp::from(&entry.metadata()?))
                }
            })
            .collect();
        for ((i, _), st) in entries.iter().zip(stated) {
            scanned[*i].meta = st?;
        }
        // Remembered afterwards, under one lock.
        memo.saw_all(entries.iter().map(|(i, _)| scanned[*i].meta));
        drop(entries);
        if out.is_empty() {
            *out = scanned;
        } else {
            out.append(&mut scanned);
        }
        Ok(())
    }
    let dev = fs::metadata(dir)?.dev();
    let mut out = Vec::new();
    walk(dir, dev, "", skip_hidden, memo, &mut out)?;
    // Names are unique: an unstable sort gives the one order, on both cores.
    out.par_sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Adds the path to an I/O error's message.
pub fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn write_one(store: &Store, k: &str, content: &str) -> Artifact {
        match store.begin(k, false).unwrap() {
            Begin::Miss(w) => {
                fs::write(w.out_dir().join("a.txt"), content).unwrap();
                fs::create_dir(w.out_dir().join("sub")).unwrap();
                fs::write(w.out_dir().join("sub/b.txt"), "b").unwrap();
                w.commit(&Value::Null, &Value::Null).unwrap()
            }
            Begin::Hit(_) => panic!("expected a miss"),
        }
    }

    #[test]
    fn commit_then_hit_and_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key('a');
        assert!(matches!(store.check(&k), Check::Missing));
        let a = write_one(&store, &k, "hello");
        assert_eq!(
            a.manifest
                .files
                .iter()
                .map(|f| &f.path[..])
                .collect::<Vec<_>>(),
            ["a.txt", "sub/b.txt"]
        );
        assert!(matches!(store.begin(&k, false).unwrap(), Begin::Hit(_)));
        // Nothing is left in tmp/.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn same_bytes_same_digest_whatever_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = write_one(&store, &key('a'), "x");
        let b = write_one(&store, &key('b'), "x");
        let c = write_one(&store, &key('c'), "y");
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn damage_is_detected_and_begin_recomputes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key('d');
        let a = write_one(&store, &k, "hello");
        fs::write(a.dir.join("a.txt"), "HELLO").unwrap();
        match store.check(&k) {
            Check::Corrupted(why) => assert_eq!(why, "a.txt changed"),
            other => panic!("{other:?}"),
        }
        fs::remove_file(a.dir.join("sub/b.txt")).unwrap();
        fs::write(a.dir.join("a.txt"), "hello").unwrap();
        match store.check(&k) {
            Check::Corrupted(why) => assert_eq!(why, "sub/b.txt missing"),
            other => panic!("{other:?}"),
        }
        fs::write(a.dir.join("sub/b.txt"), "b").unwrap();
        fs::write(a.dir.join("extra"), "").unwrap();
        assert!(matches!(store.check(&k), Check::Corrupted(_)));
        assert!(matches!(store.begin(&k, false).unwrap(), Begin::Miss(_)));
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = key('e');
        if let Begin::Miss(w) = store.begin(&k, false).unwrap() {
            fs::write(w.out_dir().join("half"), "x").unwrap();
        }
        assert!(matches!(store.check(&k), Check::Missing));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn refs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.read_ref("p", "cnn[0]").is_none());
        let rec = RefRecord {
            key: key('f'),
            preimage: serde_json::json!({"a": 1}),
        };
        store.write_ref("p", "cnn[0]", &rec).unwrap();
        assert_eq!(store.read_ref("p", "cnn[0]").unwrap().key, rec.key);
    }
}
