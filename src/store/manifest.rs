//! The manifest of an artifact: every file's relative path, size and
//! BLAKE3 digest, and the artifact digest derived from them.
//!
//! Guarantee: the artifact digest depends only on the files' relative paths
//! and bytes — never on mtimes, absolute paths or listing order.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use walkdir::WalkDir;

use super::memo::FileMemo;

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the artifact folder, `/`-separated.
    pub path: String,
    pub size: u64,
    /// BLAKE3, hex.
    pub digest: String,
}

/// Every file of an artifact, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Hashes every regular file under `dir` (through the memo, so files
    /// already known by path, size, mtime and inode are not read again).
    pub fn build(dir: &Path, memo: &FileMemo) -> io::Result<Manifest> {
        let mut files = Vec::new();
        for entry in WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.map_err(io::Error::other)?;
            if !entry.file_type().is_file() {
                if entry.file_type().is_symlink() {
                    return Err(io::Error::other(format!(
                        "{}: artifacts may not contain symbolic links",
                        entry.path().display()
                    )));
                }
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(dir)
                .expect("walkdir stays under its root");
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let (size, digest) = memo.digest(entry.path())?;
            files.push(FileEntry {
                path: rel,
                size,
                digest: digest.to_hex().to_string(),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest { files })
    }

    /// The artifact digest: BLAKE3 over `path NUL size NUL digest LF` lines.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for f in &self.files {
            h.update(f.path.as_bytes());
            h.update(b"\0");
            h.update(f.size.to_string().as_bytes());
            h.update(b"\0");
            h.update(f.digest.as_bytes());
            h.update(b"\n");
        }
        h.finalize().to_hex().to_string()
    }

    /// The digest of one file, by relative path.
    pub fn file_digest(&self, path: &str) -> Option<&str> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| self.files[i].digest.as_str())
    }
}
