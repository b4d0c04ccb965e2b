//! An object's stamps: each file's (size, mtime, inode) as it was when the
//! object was committed (or last verified), in manifest order, in
//! `objects/<k0k1>/<key>/stamps` (never hashed). A file whose `stat` still
//! says the same is the file the manifest describes, so checking an object
//! costs one `stat` per file and no lookup in the shared memo — which then
//! holds only files outside the cache (half the entries for a data set,
//! whose images an object links).
//!
//! Guarantee: stamps only ever spare a read; a missing, damaged or
//! outdated stamps file makes the check read the files (and rewrite it
//! when they match). Format: `FWSTAMP1`, a little-endian u64 count, then
//! per file u64 size, i128 mtime (ns) and u64 inode.

use std::fs;
use std::io;
use std::path::Path;

use super::memo::Stamp;

const MAGIC: &[u8; 8] = b"FWSTAMP1";
const ENTRY: usize = 32;

/// The stamps of `files` (absolute paths, in manifest order), by `stat`.
pub fn of_files<'a>(files: impl Iterator<Item = &'a Path>) -> io::Result<Vec<(u64, i128, u64)>> {
    files
        .map(|p| {
            let st = Stamp::from(&fs::metadata(p)?);
            Ok((st.size, st.mtime_ns, st.ino))
        })
        .collect()
}

/// The file's bytes for (size, mtime ns, inode) per file.
pub fn encode(stamps: impl ExactSizeIterator<Item = (u64, i128, u64)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + stamps.len() * ENTRY);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(stamps.len() as u64).to_le_bytes());
    for (size, mtime, ino) in stamps {
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&mtime.to_le_bytes());
        out.extend_from_slice(&ino.to_le_bytes());
    }
    out
}

/// A stamps file as read: its entries, decoded on access.
pub struct Stamps(Vec<u8>);

impl Stamps {
    /// The stamps in `path`, when it is whole and holds `n` of them.
    pub fn read(path: &Path, n: usize) -> Option<Stamps> {
        let bytes = fs::read(path).ok()?;
        let body = bytes.strip_prefix(MAGIC)?;
        let count = u64::from_le_bytes(body.get(..8)?.try_into().ok()?) as usize;
        (count == n && body.len() == 8 + n * ENTRY).then_some(Stamps(bytes))
    }

    /// Entry `i`: (size, mtime ns, inode).
    pub fn get(&self, i: usize) -> (u64, i128, u64) {
        let e = &self.0[16 + i * ENTRY..16 + (i + 1) * ENTRY];
        let u = |r: std::ops::Range<usize>| u64::from_le_bytes(e[r].try_into().expect("8 bytes"));
        let mtime = i128::from_le_bytes(e[8..24].try_into().expect("16 bytes"));
        (u(0..8), mtime, u(24..32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_reject_a_wrong_count_or_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("stamps");
        let s = [(5, -3, 7), (u64::MAX, i128::MAX, 0)];
        fs::write(&f, encode(s.iter().copied())).unwrap();
        let read = Stamps::read(&f, 2).unwrap();
        assert_eq!((read.get(0), read.get(1)), (s[0], s[1]));
        assert!(Stamps::read(&f, 3).is_none());
        let bytes = encode(s.iter().copied());
        fs::write(&f, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Stamps::read(&f, 2).is_none());
    }
}
