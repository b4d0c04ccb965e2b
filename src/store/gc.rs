//! Garbage collection: remove objects that no live key reaches, leftover
//! temporary folders of killed runs, and the trash.
//!
//! Guarantee: an object whose key is live is never touched; a temporary
//! folder whose key is locked by a running process is never touched.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::Path;

use serde::Serialize;

use super::Store;

/// What `gc` removed (or would remove, in a dry run).
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Objects removed.
    pub objects: usize,
    /// Leftover temporary folders removed.
    pub temporaries: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Objects kept.
    pub kept: usize,
    /// Working folders (checkpoints of resumable nodes) removed.
    pub work: usize,
    /// Derived files (decoded data sets; recomputed on demand) removed.
    pub derived: usize,
}

impl Store {
    /// Removes every object whose key is not in `live`, every working
    /// folder whose work key is not in `live_work`, and all derived files.
    pub fn gc(
        &self,
        live: &BTreeSet<String>,
        live_work: &BTreeSet<String>,
        dry_run: bool,
    ) -> io::Result<GcReport> {
        let mut report = GcReport::default();
        let objects = self.root.join("objects");
        for shard in read_dir_sorted(&objects)? {
            for obj in read_dir_sorted(&shard)? {
                let key = obj.file_name().map(|s| s.to_string_lossy().to_string());
                let Some(key) = key else { continue };
                if live.contains(&key) {
                    report.kept += 1;
                    continue;
                }
                report.objects += 1;
                report.bytes += dir_size(&obj);
                if !dry_run {
                    self.discard(&key)?;
                }
            }
        }
        for tmp in read_dir_sorted(&self.root.join("tmp"))? {
            // `<key>-<pid>-<nanos>`: skip it while the key's lock is held.
            let name = tmp.file_name().unwrap().to_string_lossy().to_string();
            let key = name.split('-').next().unwrap_or("");
            let lock = self.root.join("locks").join(format!("{key}.lock"));
            if let Ok(f) = File::open(&lock) {
                if f.try_lock().is_err() {
                    continue;
                }
            }
            report.temporaries += 1;
            report.bytes += dir_size(&tmp);
            if !dry_run {
                fs::remove_dir_all(&tmp)?;
            }
        }
        for w in read_dir_sorted(&self.root.join("work"))? {
            let key = w.file_name().unwrap().to_string_lossy().to_string();
            if live_work.contains(&key) {
                continue;
            }
            report.work += 1;
            report.bytes += dir_size(&w);
            if !dry_run {
                fs::remove_dir_all(&w)?;
            }
        }
        if let Ok(rd) = fs::read_dir(self.root.join("derived")) {
            for e in rd.filter_map(Result::ok) {
                report.derived += 1;
                report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                if !dry_run {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        for t in read_dir_sorted(&self.root.join("trash"))? {
            report.bytes += dir_size(&t);
            if !dry_run {
                fs::remove_dir_all(&t)?;
            }
        }
        Ok(report)
    }
}

fn read_dir_sorted(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
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
