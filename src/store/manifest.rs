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
    /// BLAKE3 (hex in the file).
    pub digest: Digest,
}

/// A BLAKE3 digest, written as 64 hex digits; held as its 32 bytes, so a
/// manifest of 80,000 files parses without 80,000 more allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub blake3::Hash);

impl Digest {
    pub fn to_hex(&self) -> String {
        self.0.to_hex().to_string()
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.to_hex().as_str())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Digest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Digest, E> {
                blake3::Hash::from_hex(v)
                    .map(Digest)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(Hex)
    }
}

/// Every file of an artifact, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Parses `manifest.json` with its file list allocated once (a data
    /// set's manifest lists 80,000 files: growing the list by doubling
    /// would hold two copies at once).
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Manifest> {
        use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
        const KEY: &[u8] = b"\"path\"";
        let hint = bytes.windows(KEY.len()).filter(|w| *w == KEY).count();
        struct Files(usize);
        impl<'de> DeserializeSeed<'de> for Files {
            type Value = Vec<FileEntry>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                d.deserialize_seq(self)
            }
        }
        impl<'de> Visitor<'de> for Files {
            type Value = Vec<FileEntry>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of files")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut files = Vec::with_capacity(self.0);
                while let Some(f) = seq.next_element()? {
                    files.push(f);
                }
                Ok(files)
            }
        }
        struct Top(usize);
        impl<'de> Visitor<'de> for Top {
            type Value = Manifest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a manifest")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Manifest, A::Error> {
                let mut files = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'_, str>>()? {
                    if key == "files" {
                        files = Some(map.next_value_seed(Files(self.0))?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                let files = files.ok_or_else(|| serde::de::Error::missing_field("files"))?;
                Ok(Manifest { files })
            }
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let m = serde::Deserializer::deserialize_map(&mut de, Top(hint))?;
        de.end()?;
        Ok(m)
    }

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
                digest: Digest(digest),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest { files })
    }

    /// The artifact digest: BLAKE3 over `path NUL size NUL digest LF` lines.
    pub fn digest(&self) -> String {
        use std::fmt::Write as _;
        let mut h = blake3::Hasher::new();
        let mut line = String::with_capacity(256);
        for f in &self.files {
            line.clear();
            let _ = writeln!(line, "{}\0{}\0{}", f.path, f.size, f.digest.0.to_hex());
            h.update(line.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }

    /// The digest of one file, by relative path, hex.
    pub fn file_digest(&self, path: &str) -> Option<String> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| self.files[i].digest.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_as_written_and_keeps_its_digest() {
        let files = (0..3)
            .map(|i| FileEntry {
                path: format!("images/{i}.png"),
                size: i,
                digest: Digest(blake3::hash(&[i as u8])),
            })
            .collect();
        let m = Manifest { files };
        let json = serde_json::to_vec(&m).unwrap();
        assert!(String::from_utf8_lossy(&json)
            .contains(&format!("\"digest\":\"{}\"", blake3::hash(&[0]).to_hex())));
        let back = Manifest::from_json(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.digest(), m.digest());
        assert_eq!(
            back.file_digest("images/1.png"),
            Some(blake3::hash(&[1]).to_hex().to_string())
        );
        assert!(Manifest::from_json(b"{\"files\":[{\"path\":1}]}").is_err());
        assert!(Manifest::from_json(b"{}").is_err());
    }
}
