//! Remembered file digests, keyed by (path, size, mtime, inode), so that an
//! unchanged file is never read twice — status over 30,000 unchanged images
//! costs 30,000 `stat` calls and no reads.
//!
//! Guarantee: a digest is reused only when path, size, modification time
//! (nanoseconds) and inode all match; anything else rehashes. The memo file
//! is replaced atomically and merged with entries written meanwhile by
//! another process, so concurrent runs only ever lose memo entries (which
//! costs a rehash), never correctness.
//!
//! It holds files outside the cache only (an object checks its own files
//! against its stamps, see `stamps.rs`), by folder then name, in a binary
//! file ([`encode`]) that loads without parsing text: 80,000 entries load
//! in about 10 ms. An older text memo is read, and replaced on the next
//! save.

use std::collections::HashMap;
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use super::ScannedFile;

/// What a `stat` says about a file, as far as the memo cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// Nanoseconds (an mtime outside i64's 1677-2262 is never remembered).
    mtime_ns: i64,
    ino: u64,
    digest: [u8; 32],
}

/// A fast non-cryptographic hasher (rustc's FxHash) for the memo's maps:
/// their keys are paths and inode numbers of this machine, not input an
/// attacker chooses, and SipHash over 80,000 paths was a tenth of a no-op
/// status over a contest-sized data set.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The memo; cheap to share between threads.
#[derive(Debug, Default)]
pub struct FileMemo {
    file: Option<PathBuf>,
    /// By folder, then by file name (bytes: hashing a `Path` walks its
    /// components, which dominated status time; a folder of 80,000 images
    /// stores its path once).
    map: RwLock<Folders>,
    dirty: Mutex<bool>,
    hashed: AtomicU64,
    /// Files stat'ed by this process, by (device, inode): a hard link to a
    /// file already stat'ed (a data set's images in its artifact) needs no
    /// second `stat`.
    inodes: RwLock<FxMap<(u64, u64), (u64, i64)>>,
}

/// A path split into its folder's and its name's bytes.
fn split(path: &Path) -> (&[u8], &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    match bytes.iter().rposition(|&b| b == b'/') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (&[], bytes),
    }
}

impl FileMemo {
    /// A memo kept in `file` (loaded now; a missing or damaged file gives an
    /// empty memo, which only costs rehashing).
    pub fn load(file: PathBuf) -> FileMemo {
        let map = fs::read(&file).map(|b| decode(&b)).unwrap_or_default();
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
        let (size, mtime_ns) = *self.inodes.read().unwrap().get(&(dev, ino))?;
        Some(Stamp {
            size,
            mtime_ns: mtime_ns.into(),
            ino,
            dev,
            is_file: true,
        })
    }

    /// Records the stamps of regular files seen by `stat`s, under one lock.
    pub fn saw_all(&self, stamps: impl ExactSizeIterator<Item = Stamp>) {
        let mut map = self.inodes.write().unwrap();
        map.reserve(stamps.len());
        for st in stamps.filter(|st| st.is_file) {
            if let Ok(mtime) = i64::try_from(st.mtime_ns) {
                map.insert((st.dev, st.ino), (st.size, mtime));
            }
        }
    }

    /// [`FileMemo::digest`] for a file whose metadata the caller already
    /// has (from a directory scan: `DirEntry::metadata` stats relative to
    /// the open directory instead of walking the whole path again).
    pub fn digest_with(&self, path: &Path, st: &Stamp) -> io::Result<(u64, blake3::Hash)> {
        let (dir, name) = split(path);
        if let Some(hit) = self.known(dir, name, st) {
            return Ok(hit);
        }
        self.rehash(path, st)
    }

    /// [`FileMemo::digest_with`] for the file `rel` (`/`-separated) below
    /// `dir`; builds the path only when the file must be read.
    pub fn digest_in(&self, dir: &Path, rel: &str, st: &Stamp) -> io::Result<(u64, blake3::Hash)> {
        if !rel.contains('/') {
            let d = dir.as_os_str().as_bytes();
            let d = d.strip_suffix(b"/").unwrap_or(d);
            if let Some(hit) = self.known(d, rel.as_bytes(), st) {
                return Ok(hit);
            }
            return self.rehash(&dir.join(rel), st);
        }
        self.digest_with(&dir.join(rel), st)
    }

    /// The digests of `files` (found below `dir`), in order: the folder is
    /// looked up once and the names under one read lock, on this thread
    /// (a lock held across a parallel section deadlocks when the pool's
    /// workers wait for the write lock of another caller); then the files
    /// whose stamp changed are read in parallel.
    pub fn digest_all(&self, dir: &Path, files: &[ScannedFile]) -> io::Result<Vec<blake3::Hash>> {
        use rayon::prelude::*;
        let d = dir.as_os_str().as_bytes();
        let d = d.strip_suffix(b"/").unwrap_or(d);
        let known: Vec<Option<blake3::Hash>> = {
            let map = self.map.read().unwrap();
            let names = map.get(d);
            files
                .iter()
                .map(|f| {
                    let e = names?.get(f.rel.as_bytes())?;
                    let st = &f.meta;
                    let same =
                        (e.size, i128::from(e.mtime_ns), e.ino) == (st.size, st.mtime_ns, st.ino);
                    same.then(|| blake3::Hash::from_bytes(e.digest))
                })
                .collect()
        };
        files
            .par_iter()
            .zip(known)
            .map(|(f, k)| match k {
                Some(h) => Ok(h),
                None => self.digest_in(dir, &f.rel, &f.meta).map(|(_, h)| h),
            })
            .collect()
    }

    /// The remembered digest of `dir/name`, when its stamp is unchanged.
    fn known(&self, dir: &[u8], name: &[u8], st: &Stamp) -> Option<(u64, blake3::Hash)> {
        let map = self.map.read().unwrap();
        let e = map.get(dir)?.get(name)?;
        let same = (e.size, i128::from(e.mtime_ns), e.ino) == (st.size, st.mtime_ns, st.ino);
        same.then(|| (e.size, blake3::Hash::from_bytes(e.digest)))
    }

    /// Reads and hashes a file, and remembers its digest.
    fn rehash(&self, path: &Path, st: &Stamp) -> io::Result<(u64, blake3::Hash)> {
        let stamp = (st.size, st.mtime_ns, st.ino);
        let digest = hash_file_raw(path)?;
        self.hashed.fetch_add(1, Ordering::Relaxed);
        self.remember(path, stamp, digest);
        Ok((st.size, digest))
    }

    fn remember(&self, path: &Path, (size, mtime_ns, ino): (u64, i128, u64), digest: blake3::Hash) {
        let Ok(mtime_ns) = i64::try_from(mtime_ns) else {
            return;
        };
        let (dir, name) = split(path);
        let entry = Entry {
            size,
            mtime_ns,
            ino,
            digest: *digest.as_bytes(),
        };
        let mut map = self.map.write().unwrap();
        match map.get_mut(dir) {
            Some(d) => {
                d.insert(name.into(), entry);
            }
            None => {
                map.entry(dir.into())
                    .or_default()
                    .insert(name.into(), entry);
            }
        }
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
        let mut merged = fs::read(file).map(|b| decode(&b)).unwrap_or_default();
        let map = self.map.read().unwrap();
        for (dir, names) in map.iter() {
            let into = merged.entry(dir.clone()).or_default();
            for (name, e) in names {
                into.insert(name.clone(), e.clone());
            }
        }
        drop(map);
        // Forget folders and files that no longer exist (one listing per
        // folder), so the memo does not grow forever.
        merged.retain(|dir, names| {
            let Ok(listing) = fs::read_dir(std::ffi::OsStr::from_bytes(dir)) else {
                return false;
            };
            let present: std::collections::HashSet<Vec<u8>> = listing
                .filter_map(Result::ok)
                .map(|e| e.file_name().as_bytes().to_vec())
                .collect();
            names.retain(|name, _| present.contains(&**name));
            !names.is_empty()
        });
        let out = encode(&merged);
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, out)?;
        fs::rename(&tmp, file)?;
        *self.dirty.lock().unwrap() = false;
        Ok(())
    }
}

type Folders = FxMap<Box<[u8]>, FxMap<Box<[u8]>, Entry>>;

/// The memo file's first bytes (an older memo, without them, is text:
/// `digest TAB size TAB mtime TAB inode TAB path` lines).
const MAGIC: &[u8; 8] = b"FWMEMO2\n";

/// The memo file: [`MAGIC`], then per folder its path (u32 length and
/// bytes) and u32 count, then per file its name (u16 length and bytes),
/// u64 size, i64 mtime (ns), u64 inode and 32-byte digest; little-endian.
fn encode(folders: &Folders) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(MAGIC);
    for (dir, names) in folders {
        let names: Vec<_> = names
            .iter()
            .filter(|(n, _)| n.len() <= u16::MAX as usize)
            .collect();
        out.extend_from_slice(&(dir.len() as u32).to_le_bytes());
        out.extend_from_slice(dir);
        out.extend_from_slice(&(names.len() as u32).to_le_bytes());
        for (name, e) in names {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.mtime_ns.to_le_bytes());
            out.extend_from_slice(&e.ino.to_le_bytes());
            out.extend_from_slice(&e.digest);
        }
    }
    out
}

/// Reads a memo file (either format); a damaged part ends the reading,
/// keeping what came before (a lost entry only costs a rehash).
fn decode(bytes: &[u8]) -> Folders {
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        return parse(bytes);
    };
    let mut folders = Folders::default();
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head)
    }
    fn u<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
        take(rest, N)?.try_into().ok()
    }
    let mut folder = |rest: &mut &[u8]| -> Option<()> {
        let len = u32::from_le_bytes(u(rest)?) as usize;
        let dir: Box<[u8]> = take(rest, len)?.into();
        let count = u32::from_le_bytes(u(rest)?) as usize;
        let mut names = FxMap::default();
        names.reserve(count.min(rest.len() / 58));
        for _ in 0..count {
            let len = u16::from_le_bytes(u(rest)?) as usize;
            let name: Box<[u8]> = take(rest, len)?.into();
            let entry = Entry {
                size: u64::from_le_bytes(u(rest)?),
                mtime_ns: i64::from_le_bytes(u(rest)?),
                ino: u64::from_le_bytes(u(rest)?),
                digest: u(rest)?,
            };
            names.insert(name, entry);
        }
        folders.insert(dir, names);
        Some(())
    };
    while !rest.is_empty() {
        if folder(&mut rest).is_none() {
            break;
        }
    }
    folders
}

/// Reads memo lines (`digest TAB size TAB mtime TAB inode TAB path`),
/// skipping damaged ones.
fn parse(text: &[u8]) -> Folders {
    let mut map = Folders::default();
    let mut last_dir: Option<Box<[u8]>> = None;
    for l in text.split(|&b| b == b'\n') {
        let Some((entry, path)) = parse_line(l) else {
            continue;
        };
        let (dir, name) = split(Path::new(std::ffi::OsStr::from_bytes(path)));
        // Lines come sorted by path: most share the previous line's folder.
        if last_dir.as_deref() != Some(dir) {
            last_dir = Some(dir.into());
        }
        let key = last_dir.as_ref().expect("set above");
        match map.get_mut(&**key) {
            Some(d) => {
                d.insert(name.into(), entry);
            }
            None => {
                map.entry(key.clone())
                    .or_default()
                    .insert(name.into(), entry);
            }
        }
    }
    map
}

fn parse_line(l: &[u8]) -> Option<(Entry, &[u8])> {
    let mut it = l.splitn(5, |&b| b == b'\t');
    let (d, sz, mt, ino, path) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    fn num<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
        std::str::from_utf8(b).ok()?.parse().ok()
    }
    let entry = Entry {
        digest: *blake3::Hash::from_hex(d).ok()?.as_bytes(),
        size: num(sz)?,
        mtime_ns: num(mt)?,
        ino: num(ino)?,
    };
    Some((entry, path))
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

    /// Callers on several threads hash folders at once, some finding
    /// their names remembered while others write new digests: none waits
    /// on another forever (a read lock held across a parallel section did).
    #[test]
    fn concurrent_folder_digests_never_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let m = std::sync::Arc::new(FileMemo::load(dir.path().join("memo")));
        let folders: Vec<PathBuf> = (0..6)
            .map(|k| {
                let f = dir.path().join(format!("d{k}"));
                fs::create_dir(&f).unwrap();
                for i in 0..300 {
                    fs::write(f.join(format!("{i}.txt")), format!("{k} {i}")).unwrap();
                }
                f
            })
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        for round in 0..4 {
            for f in &folders {
                let (m, f, tx) = (m.clone(), f.clone(), tx.clone());
                std::thread::spawn(move || {
                    // New files each round: some callers write while others read.
                    fs::write(f.join(format!("new{round}.txt")), "x").unwrap();
                    let files = crate::store::scan_files(&f, true, &m).unwrap();
                    let got = m.digest_all(&f, &files).unwrap();
                    let _ = tx.send(got.len() == files.len());
                });
            }
            for _ in &folders {
                let ok = rx.recv_timeout(std::time::Duration::from_secs(60));
                assert_eq!(
                    ok,
                    Ok(true),
                    "round {round}: a folder digest hung or was short"
                );
            }
        }
    }

    #[test]
    fn an_older_text_memo_is_read_and_saved_in_the_new_format() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        fs::write(&f, "hello").unwrap();
        let st = Stamp::from(&fs::metadata(&f).unwrap());
        let memo_file = dir.path().join("memo");
        let line = format!(
            "{}\t5\t{}\t{}\t{}\n",
            blake3::hash(b"hello").to_hex(),
            st.mtime_ns,
            st.ino,
            f.display()
        );
        fs::write(&memo_file, line).unwrap();
        let m = FileMemo::load(memo_file.clone());
        assert_eq!(m.digest(&f).unwrap().1, blake3::hash(b"hello"));
        assert_eq!(m.files_hashed(), 0);
        *m.dirty.lock().unwrap() = true;
        m.save().unwrap();
        assert!(fs::read(&memo_file).unwrap().starts_with(MAGIC));
        let again = FileMemo::load(memo_file);
        assert_eq!(again.digest(&f).unwrap().1, blake3::hash(b"hello"));
        assert_eq!(again.files_hashed(), 0);
    }

    #[test]
    fn damaged_memo_lines_are_ignored() {
        let map = decode("garbage\nnot\ta\tnumber\tx\ty\n".as_bytes());
        assert!(map.is_empty());
    }

    /// A binary memo cut short (a full disk, a killed save) loses only the
    /// folder it ends in: the folders before it are read, nothing panics,
    /// and a file the memo forgot is hashed again, to the same digest.
    #[test]
    fn a_truncated_binary_memo_keeps_its_whole_folders() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for (d, text) in [(&a, "one"), (&b, "two")] {
            fs::create_dir(d).unwrap();
            fs::write(d.join("f.txt"), text).unwrap();
        }
        let memo_file = dir.path().join("memo");
        let m = FileMemo::load(memo_file.clone());
        let da = m.digest(&a.join("f.txt")).unwrap().1;
        let db = m.digest(&b.join("f.txt")).unwrap().1;
        m.save().unwrap();
        let bytes = fs::read(&memo_file).unwrap();
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(decode(&bytes).len(), 2);
        for cut in MAGIC.len()..bytes.len() {
            let folders = decode(&bytes[..cut]);
            assert!(
                folders.len() <= 1,
                "cut at {cut}: {} folders",
                folders.len()
            );
        }
        fs::write(&memo_file, &bytes[..bytes.len() - 5]).unwrap();
        let m2 = FileMemo::load(memo_file);
        assert_eq!(m2.digest(&a.join("f.txt")).unwrap().1, da);
        assert_eq!(m2.digest(&b.join("f.txt")).unwrap().1, db);
        assert_eq!(
            m2.files_hashed(),
            1,
            "only the cut folder's file is read again"
        );
    }
}
