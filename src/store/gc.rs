//! Garbage collection: remove objects that no live key reaches, leftover
//! temporary folders of killed runs, and the trash — never what a running
//! `run` holds.
//!
//! Guarantees:
//! - an object whose key is live, or held by a running `run`'s lease (see
//!   [`super::lease`]), is never touched; nor is a working folder whose work
//!   key is live or held, nor a temporary folder whose key is locked by a
//!   running process, nor a derived file while any run is alive;
//! - a folder is removed by renaming it into `trash/` first, so a `gc`
//!   killed at any moment leaves every object, working folder and
//!   temporary folder whole or gone, never half-deleted (what it left in
//!   `trash/` the next `gc` removes).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::lease::{Collection, LeaseHeader};
use super::{annotate, Store};

/// What `gc` removed (or would remove, in a dry run), and what it kept.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Objects removed.
    pub objects: usize,
    /// Leftover temporary folders removed.
    pub temporaries: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Objects kept because a given pipeline reaches them.
    pub kept: usize,
    /// Working folders (checkpoints of resumable nodes) removed.
    pub work: usize,
    /// Derived files (decoded data sets; recomputed on demand) removed.
    pub derived: usize,
    /// Damaged objects that `verify --fix` had moved aside, removed.
    pub damaged: usize,
    /// What was kept only because a running `run` holds it.
    pub held: Held,
}

/// What `gc` kept for running runs.
#[derive(Debug, Default, Serialize)]
pub struct Held {
    /// The runs alive during the collection.
    pub runs: Vec<LeaseHeader>,
    pub objects: usize,
    pub work: usize,
    pub temporaries: usize,
    pub derived: usize,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.objects + self.work + self.temporaries + self.derived == 0
    }
}

impl Store {
    /// Collects (see [`Collection::collect`]) with no keys beyond the
    /// leases' held for running runs.
    pub fn gc(
        &self,
        live: &BTreeSet<String>,
        live_work: &BTreeSet<String>,
        dry_run: bool,
    ) -> io::Result<GcReport> {
        self.collection()?
            .collect(live, live_work, &BTreeSet::new(), dry_run)
    }

    /// Moves `path` into `trash/` (one rename), then deletes it.
    fn remove_via_trash(&self, path: &Path, tag: &str) -> io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dest = self
            .root
            .join("trash")
            .join(format!("{tag}-{name}-{nanos}"));
        fs::rename(path, &dest).map_err(|e| annotate(e, path))?;
        fs::remove_dir_all(&dest).map_err(|e| annotate(e, &dest))
    }
}

impl Collection<'_> {
    /// Removes every object whose key is neither in `live` nor held (by a
    /// lease, or in `also_held`: keys a running run will need), every
    /// working folder whose work key is neither live nor held, leftover
    /// temporary folders, derived files (when no run is alive), the trash
    /// and the leases of dead runs.
    pub fn collect(
        self,
        live: &BTreeSet<String>,
        live_work: &BTreeSet<String>,
        also_held: &BTreeSet<String>,
        dry_run: bool,
    ) -> io::Result<GcReport> {
        let store = self.store;
        let mut held_objects = self.held_objects();
        held_objects.extend(also_held.iter().cloned());
        let held_work = self.held_work();
        let mut r = GcReport::default();
        r.held.runs = self.leases.iter().map(|l| l.header.clone()).collect();
        for shard in read_dir_sorted(&store.root.join("objects"))? {
            for obj in read_dir_sorted(&shard)? {
                let key = file_name(&obj);
                if live.contains(&key) {
                    r.kept += 1;
                } else if held_objects.contains(&key) {
                    r.held.objects += 1;
                } else {
                    r.objects += 1;
                    r.bytes += dir_size(&obj);
                    if !dry_run {
                        store.discard(&key)?;
                        super::test_pause(super::PAUSE_GC);
                    }
                }
            }
        }
        self.temporaries(&mut r, dry_run)?;
        for w in read_dir_sorted(&store.root.join("work"))? {
            let key = file_name(&w);
            if live_work.contains(&key) {
                continue;
            }
            if held_work.contains(&key) {
                r.held.work += 1;
                continue;
            }
            r.work += 1;
            r.bytes += dir_size(&w);
            if !dry_run {
                store.remove_via_trash(&w, "work")?;
            }
        }
        self.derived(&mut r, dry_run);
        for d in read_dir_sorted(&store.root.join("damaged"))? {
            r.damaged += 1;
            r.bytes += dir_size(&d);
            if !dry_run {
                store.remove_via_trash(&d, "damaged")?;
            }
        }
        for t in read_dir_sorted(&store.root.join("trash"))? {
            r.bytes += dir_size(&t);
            if !dry_run {
                // A run discarding a damaged object may be emptying it too.
                match fs::remove_dir_all(&t) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(annotate(e, &t)),
                    _ => {}
                }
            }
        }
        if !dry_run {
            for d in &self.dead {
                let _ = fs::remove_file(d);
            }
        }
        Ok(r)
    }

    /// Temporary folders `<key>-<pid>-<nanos>`: kept while the key's lock is
    /// held (a run is writing there), else removed.
    fn temporaries(&self, r: &mut GcReport, dry_run: bool) -> io::Result<()> {
        let store = self.store;
        for tmp in read_dir_sorted(&store.root.join("tmp"))? {
            let name = file_name(&tmp);
            let key = name.split('-').next().unwrap_or("");
            if store.key_locked(key) {
                r.held.temporaries += 1;
                continue;
            }
            r.temporaries += 1;
            r.bytes += dir_size(&tmp);
            if !dry_run {
                store.remove_via_trash(&tmp, "tmp")?;
            }
        }
        Ok(())
    }

    /// Derived files: recomputed on demand, but a running run may be
    /// reading or writing any of them, so they go only when none runs.
    fn derived(&self, r: &mut GcReport, dry_run: bool) {
        let Ok(rd) = fs::read_dir(self.store.root.join("derived")) else {
            return;
        };
        for e in rd.filter_map(Result::ok) {
            // A derived file's lock (`<name>.lock`, empty) goes with it and
            // is not counted apart.
            let lock = e.path().extension().is_some_and(|x| x == "lock");
            if !self.leases.is_empty() {
                r.held.derived += usize::from(!lock);
                continue;
            }
            if lock {
                if !dry_run {
                    let _ = fs::remove_file(e.path());
                }
                continue;
            }
            r.derived += 1;
            r.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    v.sort();
    Ok(v)
}

fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::{Begin, Check, Store};
    use std::collections::BTreeSet;

    #[test]
    fn gc_removes_unreached_objects_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys: Vec<String> = ['a', 'b']
            .iter()
            .map(|c| c.to_string().repeat(64))
            .collect();
        for k in &keys {
            if let Begin::Miss(w) = store.begin(k, false).unwrap() {
                std::fs::write(w.out_dir().join("f"), "12345").unwrap();
                w.commit(&serde_json::Value::Null, &serde_json::Value::Null)
                    .unwrap();
            }
        }
        let live: BTreeSet<String> = [keys[0].clone()].into();
        let dry = store.gc(&live, &BTreeSet::new(), true).unwrap();
        assert_eq!((dry.objects, dry.kept), (1, 1));
        assert!(matches!(store.check(&keys[1]), Check::Ok(_)));
        let real = store.gc(&live, &BTreeSet::new(), false).unwrap();
        assert_eq!(real.objects, 1);
        assert!(real.bytes >= 5);
        assert!(matches!(store.check(&keys[0]), Check::Ok(_)));
        assert!(matches!(store.check(&keys[1]), Check::Missing));
    }
}
