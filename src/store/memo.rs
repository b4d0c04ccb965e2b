//! Remembered file digests, keyed by (path, size, mtime, inode), so that an
//! unchanged file is never read twice — status over 30,000 unchanged images
//! costs 30,000 `stat` calls and no reads.
//!
//! Guarantee: a digest is reused only when path, size, modification time
//! (nanoseconds) and inode all match; anything else rehashes. The memo file
//! is replaced atomically and merged with entries written meanwhile by
//! another process, so concurrent runs only ever lose memo entries (which
//! costs a rehash), never correctness.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// What a `stat` says about a file, as far as the memo cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
    pub dev: u64,
    pub is_file: bool,
}

impl From<&fs::Metadata> for Stamp {
    fn from(meta: &fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ino: meta.ino(),
            dev: meta.dev(),
            is_file: meta.is_file(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    digest: blake3::Hash,
}

/// The memo; cheap to share between threads.
#[derive(Debug, Default)]
pub struct FileMemo {
    file: Option<PathBuf>,
    /// Keyed by the path's bytes (hashing `Path` walks its components,
    /// which dominated status time).
    map: RwLock<HashMap<OsString, Entry>>,
    dirty: Mutex<bool>,
    hashed: AtomicU64,
    /// Files stat'ed by this process, by (device, inode): a hard link to a
    /// file already stat'ed (a data set's images in its artifact) needs no
    /// second `stat`.
    inodes: RwLock<HashMap<(u64, u64), Stamp>>,
}

impl FileMemo {
    /// A memo kept in `file` (loaded now; a missing or damaged file gives an
    /// empty memo, which only costs rehashing).
    pub fn load(file: PathBuf) -> FileMemo {
        let map = fs::read_to_string(&file)
            .map(|s| parse(&s))
            .unwrap_or_default();
        FileMemo {
            file: Some(file),
            map: RwLock::new(map),
            ..FileMemo::default()
        }
    }

    /// A memo that lives in memory only.
    pub fn in_memory() -> FileMemo {
        FileMemo::default()
    }

    /// Number of files actually read and hashed by this memo.
    pub fn files_hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    /// Size and BLAKE3 digest of a file, from the memo when its path,
    /// size, mtime and inode are unchanged.
    pub fn digest(&self, path: &Path) -> io::Result<(u64, blake3::Hash)> {
        let meta = fs::metadata(path)?;
        self.digest_with(path, &Stamp::from(&meta))
    }

    /// The stamp of a file already stat'ed by this process under any of
    /// its names (same device and inode).
    pub fn known_inode(&self, dev: u64, ino: u64) -> Option<Stamp> {
        self.inodes.read().unwrap().get(&(dev, ino)).copied()
    }

    /// Records a stamp seen by a `stat`.
    pub fn saw(&self, st: Stamp) {
        self.inodes.write().unwrap().insert((st.dev, st.ino), st);
    }

    /// [`FileMemo::digest`] for a file whose metadata the caller already
    /// has (from a directory scan: `DirEntry::metadata` stats relative to
    /// the open directory instead of walking the whole path again).
    pub fn digest_with(&self, path: &Path, st: &Stamp) -> io::Result<(u64, blake3::Hash)> {
        let stamp = (st.size, st.mtime_ns, st.ino);
        if let Some(e) = self.map.read().unwrap().get(path.as_os_str()) {
            if (e.size, e.mtime_ns, e.ino) == stamp {
                return Ok((e.size, e.digest));
            }
        }
        let digest = hash_file_raw(path)?;
        self.hashed.fetch_add(1, Ordering::Relaxed);
        self.remember(path, stamp, digest);
        Ok((st.size, digest))
    }

    /// Records a digest already known (a file just written and hashed).
    pub fn remember_known(&self, path: &Path, digest: blake3::Hash) -> io::Result<()> {
        let st = Stamp::from(&fs::metadata(path)?);
        self.remember(path, (st.size, st.mtime_ns, st.ino), digest);
        Ok(())
    }

    fn remember(&self, path: &Path, (size, mtime_ns, ino): (u64, i128, u64), digest: blake3::Hash) {
        self.map.write().unwrap().insert(
            path.as_os_str().to_os_string(),
            Entry {
                size,
                mtime_ns,
                ino,
                digest,
            },
        );
        *self.dirty.lock().unwrap() = true;
    }

    /// Writes the memo back (merged with what is on disk now), atomically.
    pub fn save(&self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !*self.dirty.lock().unwrap() {
            return Ok(());
        }
        let mut merged = fs::read_to_string(file)
            .map(|s| parse(&s))
            .unwrap_or_default();
        let map = self.map.read().unwrap();
        for (k, v) in map.iter() {
            merged.insert(k.clone(), v.clone());
        }
        // Forget files that no longer exist, so the memo does not grow forever.
        merged.retain(|p, _| Path::new(p).exists());
        let mut out = String::with_capacity(merged.len() * 120);
        let mut keys: Vec<_> = merged.keys().collect();
        keys.sort();
        for k in keys {
            let e = &merged[k];
            let Some(p) = OsStr::to_str(k) else { continue };
            if p.contains('\n') || p.contains('\t') {
                continue;
            }
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                e.digest.to_hex(),
                e.size,
                e.mtime_ns,
                e.ino,
                p
            ));
        }
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, out)?;
        fs::rename(&tmp, file)?;
        *self.dirty.lock().unwrap() = false;
        Ok(())
    }
}

fn parse(s: &str) -> HashMap<OsString, Entry> {
    let mut map = HashMap::new();
    for line in s.lines() {
        let mut it = line.splitn(5, '\t');
        let (Some(d), Some(sz), Some(mt), Some(ino), Some(p)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let (Ok(size), Ok(mtime_ns), Ok(ino)) = (sz.parse(), mt.parse(), ino.parse()) else {
            continue;
        };
        let Ok(digest) = blake3::Hash::from_hex(d) else {
            continue;
        };
        map.insert(
            OsString::from(p),
            Entry {
                size,
                mtime_ns,
                ino,
                digest,
            },
        );
    }
    map
}

/// BLAKE3 of a file's bytes, hex.
pub fn hash_file(path: &Path) -> io::Result<String> {
    Ok(hash_file_raw(path)?.to_hex().to_string())
}

/// BLAKE3 of a file's bytes.
pub fn hash_file_raw(path: &Path) -> io::Result<blake3::Hash> {
    let mut f = fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_are_not_read_again_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        fs::write(&f, "hello").unwrap();
        let memo_file = dir.path().join("memo");
        let m = FileMemo::load(memo_file.clone());
        let (size, d1) = m.digest(&f).unwrap();
        assert_eq!(size, 5);
        assert_eq!(d1, blake3::hash(b"hello"));
        assert_eq!(m.files_hashed(), 1);
        m.save().unwrap();

        let m2 = FileMemo::load(memo_file);
        assert_eq!(m2.digest(&f).unwrap().1, d1);
        assert_eq!(m2.files_hashed(), 0);

        // A change (new size) is seen.
        fs::write(&f, "hello!").unwrap();
        let (_, d2) = m2.digest(&f).unwrap();
        assert_ne!(d1, d2);
        assert_eq!(m2.files_hashed(), 1);
    }

    #[test]
    fn damaged_memo_lines_are_ignored() {
        let map = parse("garbage\nnot\ta\tnumber\tx\ty\n");
        assert!(map.is_empty());
    }
}
