//! `verify`: every object checked against its manifest by re-reading every
//! file (the memo is not consulted, as `git fsck` trusts nothing), damaged
//! ones named by the pipelines and nodes that use them, and, when asked,
//! moved aside so that the next run rebuilds them.
//!
//! Guarantees: verifying changes nothing; fixing moves a damaged object
//! into `damaged/` under its key's lock (so never while a run writes it),
//! by one rename, re-checking it first.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::Serialize;

use super::{annotate, Check, FileMemo, Store};

/// One damaged object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Damaged {
    pub key: String,
    /// What is wrong (`model.safetensors changed`, `images/3.png missing`).
    pub problem: String,
    /// `pipeline/instance` names whose last run used this key (from the
    /// refs, else from the object's own record); empty when unknown.
    pub used_by: Vec<String>,
    /// Where `--fix` moved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<PathBuf>,
}

/// What `verify` found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Objects checked.
    pub objects: usize,
    /// Bytes read.
    pub bytes: u64,
    pub damaged: Vec<Damaged>,
}

impl Store {
    /// Checks every object; with `fix`, moves the damaged ones aside.
    pub fn verify(&self, fix: bool) -> io::Result<VerifyReport> {
        let keys = self.object_keys()?;
        let checked: Vec<(String, u64, Option<String>)> = keys
            .par_iter()
            .map(|k| {
                let scratch = FileMemo::in_memory();
                match self.check_with(k, &scratch, false) {
                    Check::Ok(a) => {
                        let bytes = a.manifest.files.iter().map(|f| f.size).sum();
                        (k.clone(), bytes, None)
                    }
                    Check::Missing => (k.clone(), 0, Some("object folder vanished".into())),
                    Check::Corrupted(why) => (k.clone(), 0, Some(why)),
                }
            })
            .collect();
        let users = self.users();
        let mut report = VerifyReport {
            objects: keys.len(),
            ..VerifyReport::default()
        };
        for (key, bytes, problem) in checked {
            report.bytes += bytes;
            let Some(problem) = problem else { continue };
            let used_by = users
                .get(&key)
                .cloned()
                .unwrap_or_else(|| self.recorded_user(&key).into_iter().collect());
            let moved_to = if fix { self.move_aside(&key)? } else { None };
            report.damaged.push(Damaged {
                key,
                problem,
                used_by,
                moved_to,
            });
        }
        report
            .damaged
            .sort_by(|a, b| (&a.used_by, &a.key).cmp(&(&b.used_by, &b.key)));
        Ok(report)
    }

    /// Every folder name under `objects/<shard>/`, sorted.
    fn object_keys(&self) -> io::Result<Vec<String>> {
        let mut keys = Vec::new();
        let objects = self.root.join("objects");
        for shard in fs::read_dir(&objects).map_err(|e| annotate(e, &objects))? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for obj in fs::read_dir(&shard).map_err(|e| annotate(e, &shard))? {
                let obj = obj?;
                if obj.file_type()?.is_dir() {
                    keys.push(obj.file_name().to_string_lossy().into_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Key → `pipeline/instance` names, from every ref.
    fn users(&self) -> BTreeMap<String, Vec<String>> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let Ok(pipelines) = fs::read_dir(self.root.join("refs")) else {
            return users;
        };
        for p in pipelines.filter_map(Result::ok) {
            let pipeline = p.file_name().to_string_lossy().into_owned();
            let Ok(refs) = fs::read_dir(p.path()) else {
                continue;
            };
            for r in refs.filter_map(Result::ok) {
                let path = r.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let instance = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if let Some(rec) = self.read_ref(&pipeline, &instance) {
                    users
                        .entry(rec.key)
                        .or_default()
                        .push(format!("{pipeline}/{instance}"));
                }
            }
        }
        for v in users.values_mut() {
            v.sort();
        }
        users
    }

    /// `pipeline/instance` from the object's `meta.json`, when readable.
    fn recorded_user(&self, key: &str) -> Option<String> {
        let meta = self.meta(key)?;
        Some(format!(
            "{}/{}",
            meta.get("pipeline")?.as_str()?,
            meta.get("instance")?.as_str()?
        ))
    }

    /// Moves a damaged object into `damaged/` under its lock, unless it
    /// checks out by then (a run rebuilt it meanwhile).
    fn move_aside(&self, key: &str) -> io::Result<Option<PathBuf>> {
        let _lock = self.lock_key(key)?;
        if let Check::Ok(_) | Check::Missing = self.check_with(key, &FileMemo::in_memory(), false) {
            return Ok(None);
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dest = self.root.join("damaged").join(format!("{key}-{nanos}"));
        let obj = self.object_dir(key);
        fs::rename(&obj, &dest).map_err(|e| annotate(e, &obj))?;
        Ok(Some(dest))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Begin, Store};
    use serde_json::json;
    use std::fs;

    fn put(store: &Store, k: &str, files: &[(&str, &str)], pipeline: &str, instance: &str) {
        let Begin::Miss(w) = store.begin(k, false).unwrap() else {
            panic!("expected a miss")
        };
        for (name, text) in files {
            fs::write(w.out_dir().join(name), text).unwrap();
        }
        let meta = json!({"pipeline": pipeline, "instance": instance});
        w.commit(&json!(null), &meta).unwrap();
    }

    #[test]
    fn verify_rereads_every_file_and_fix_moves_the_damaged_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        put(&store, &a, &[("x.txt", "hello")], "p", "one");
        put(&store, &b, &[("y.txt", "world")], "p", "two");
        let clean = store.verify(false).unwrap();
        assert_eq!(
            (clean.objects, clean.bytes, clean.damaged.len()),
            (2, 10, 0)
        );

        // A flipped byte with the size and mtime kept: the memo would not
        // notice, verify does.
        let x = store.artifact_dir(&a).join("x.txt");
        let mtime = fs::metadata(&x).unwrap().modified().unwrap();
        fs::write(&x, "hellO").unwrap();
        fs::File::options()
            .write(true)
            .open(&x)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let found = store.verify(false).unwrap();
        assert_eq!(found.damaged.len(), 1);
        assert_eq!(found.damaged[0].key, a);
        assert_eq!(found.damaged[0].problem, "x.txt changed");
        assert_eq!(found.damaged[0].used_by, ["p/one"]);
        assert!(
            store.object_dir(&a).exists(),
            "verify alone changes nothing"
        );

        let fixed = store.verify(true).unwrap();
        let moved = fixed.damaged[0].moved_to.clone().unwrap();
        assert!(moved.starts_with(dir.path().join("damaged")));
        assert!(!store.object_dir(&a).exists());
        assert!(store.verify(false).unwrap().damaged.is_empty());
    }
}
