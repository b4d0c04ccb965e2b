//! A remote cache that a team shares: an S3-compatible bucket
//! (`s3://bucket/prefix`) or a shared folder (`file:///path`), holding the
//! artifacts of the local cache by the same keys.
//!
//! Layout under the remote's prefix:
//! - `blobs/<d0d1>/<digest>`  one file's bytes, named by their BLAKE3
//!   digest (the same bytes in two artifacts are stored once);
//! - `manifests/<key>.json`  a [`RemoteManifest`]: the artifact's files
//!   (path, size, digest), its digest, pre-image and run facts.
//!
//! Guarantees:
//! - a manifest is written only after every blob it names is on the remote,
//!   so a reader never sees a manifest whose files are missing; an upload
//!   cut short leaves blobs no manifest names, and nothing visible;
//! - a manifest is created once (`PutMode::Create`): of two pushes of the
//!   same key, the second finds it there and moves nothing more;
//! - every downloaded file is checked against its size and digest, and an
//!   artifact lands in the local cache only whole, through the cache's own
//!   [`Writer`](crate::store::Writer) (under the key's lock, renamed into
//!   place), and only when its digest is the one the manifest states;
//! - what is uploaded is re-read and re-hashed first, so a file damaged in
//!   the local cache is never shared;
//! - credentials (the `AWS_*` secrets) never appear in a message: every
//!   error text passes through [`redact`], and URLs are shown without user
//!   information.
//!
//! Round trips: whether the remote has a key is answered from one listing
//! of `manifests/` per process (made on the first local miss, never when
//! everything is local); manifests read once are kept in the local cache's
//! `remote/manifests/` (checked against their key and digest when read).

mod gc;
mod transfer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{write_atomic, Artifact, Manifest, Store};

pub use gc::RemoteGc;
pub use transfer::{Pulled, PushItem, PushReport, Silent, Transfer, PAUSE_BEFORE_MANIFESTS};

/// Requests made at once to the remote.
const CONCURRENCY: usize = 16;

/// The format of [`RemoteManifest`] this build writes and reads.
const FORMAT: u32 = 1;

/// A connection to a remote cache.
pub struct Remote {
    shown: String,
    os: Arc<dyn ObjectStore>,
    prefix: String,
    rt: tokio::runtime::Runtime,
    index: OnceLock<Result<HashSet<String>, RemoteError>>,
    trace: bool,
}

/// What the remote keeps beside an artifact's files: its manifest, digest,
/// pre-image and run facts, by key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteManifest {
    pub format: u32,
    pub key: String,
    /// The artifact digest ([`Manifest::digest`]).
    pub digest: String,
    pub manifest: Manifest,
    pub preimage: Value,
    pub meta: Value,
}

/// Errors of a remote (their text never holds a credential).
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum RemoteError {
    #[error("remote `{url}`: {message}")]
    #[diagnostic(
        code(foldwise::remote::url),
        help("a remote is `s3://BUCKET[/PREFIX]` (endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) or `file:///PATH` (a shared folder)")
    )]
    Url { url: String, message: String },
    #[error("remote {remote}: {op} `{path}` failed: {message}")]
    #[diagnostic(
        code(foldwise::remote::io),
        help("check the remote's address, credentials and reachability; nothing partial was kept, so running the command again is safe")
    )]
    Io {
        remote: String,
        op: &'static str,
        path: String,
        message: String,
    },
    #[error("remote {remote}: the artifact `{key}` is damaged there: {detail}")]
    #[diagnostic(
        code(foldwise::remote::corrupt),
        help("nothing of it was kept locally; `--no-remote` computes it here instead. To repair the remote, remove its `manifests/KEY.json` and push the artifact again from a machine that has it")
    )]
    Corrupt {
        remote: String,
        key: String,
        detail: String,
    },
    #[error("cache: {0}")]
    #[diagnostic(code(foldwise::remote::cache))]
    Local(String),
}

impl RemoteManifest {
    /// The artifact as this manifest describes it, at the folder a pull
    /// into `store` would put it (which may not exist): enough to work out
    /// the keys below it.
    pub fn artifact(self, store: &Store) -> Artifact {
        Artifact {
            dir: store.artifact_dir(&self.key),
            key: self.key,
            manifest: self.manifest,
            digest: self.digest,
        }
    }
}

impl Remote {
    /// Connects to `url` (`s3://bucket[/prefix]` or `file:///path`; a
    /// shared folder is created when missing). Nothing is read yet.
    pub fn open(url: &str) -> Result<Remote, RemoteError> {
        let shown = strip_userinfo(url);
        let bad = |message: String| RemoteError::Url {
            url: shown.clone(),
            message: redact(&message),
        };
        let (os, prefix): (Arc<dyn ObjectStore>, String) =
            if let Some(rest) = url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("no bucket: write `s3://BUCKET[/PREFIX]`".into()));
                }
                // A few quick retries: an unreachable remote should cost
                // seconds, not the client's default three minutes.
                let retry = object_store::RetryConfig {
                    max_retries: 3,
                    retry_timeout: std::time::Duration::from_secs(30),
                    ..Default::default()
                };
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_allow_http(true)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                (Arc::new(s3), prefix.trim_matches('/').to_string())
            } else if let Some(path) = url.strip_prefix("file://") {
                if !path.starts_with('/') {
                    return Err(bad(
                        "a folder remote needs an absolute path: `file:///PATH`".into(),
                    ));
                }
                std::fs::create_dir_all(path)
                    .map_err(|e| bad(format!("cannot create the folder {path}: {e}")))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| bad(e.to_string()))?;
                (Arc::new(fs), String::new())
            } else {
                return Err(bad(
                    "not a remote foldwise knows: it must start with `s3://` or `file://`".into(),
                ));
            };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("foldwise-remote")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start the i/o runtime: {e}")))?;
        Ok(Remote {
            shown,
            os,
            prefix,
            rt,
            index: OnceLock::new(),
            trace: std::env::var_os("FOLDWISE_REMOTE_TRACE").is_some(),
        })
    }

    /// The remote's URL as shown to people (no user information).
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn path(&self, rel: &str) -> OsPath {
        if self.prefix.is_empty() {
            OsPath::from(rel)
        } else {
            OsPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn blob_path(digest: &str) -> String {
        format!("blobs/{}/{digest}", &digest[..2])
    }

    fn manifest_path(key: &str) -> String {
        format!("manifests/{key}.json")
    }

    /// Test and debugging aid: with `FOLDWISE_REMOTE_TRACE` set, each
    /// request is printed on stderr as `remote: OP PATH`.
    fn trace(&self, op: &str, path: &str) {
        if self.trace {
            eprintln!("remote: {op} {path}");
        }
    }

    fn io_error(&self, op: &'static str, path: &str, e: &object_store::Error) -> RemoteError {
        RemoteError::Io {
            remote: self.shown.clone(),
            op,
            path: path.to_string(),
            message: redact(&e.to_string()),
        }
    }

    /// The keys whose manifest the remote holds: one listing, made once.
    pub fn keys(&self) -> Result<&HashSet<String>, RemoteError> {
        let listed = self.index.get_or_init(|| {
            self.trace("LIST", "manifests/");
            let prefix = self.path("manifests");
            self.rt.block_on(async {
                let mut keys = HashSet::new();
                let mut list = self.os.list(Some(&prefix));
                while let Some(item) = list.next().await {
                    let meta = item.map_err(|e| self.io_error("list", "manifests/", &e))?;
                    if let Some(key) = meta
                        .location
                        .filename()
                        .and_then(|f| f.strip_suffix(".json"))
                        .filter(|k| is_key(k))
                    {
                        keys.insert(key.to_string());
                    }
                }
                Ok(keys)
            })
        });
        listed.as_ref().map_err(Clone::clone)
    }

    /// Whether the remote holds `key` (from the one listing).
    pub fn has(&self, key: &str) -> Result<bool, RemoteError> {
        Ok(self.keys()?.contains(key))
    }

    /// The remote's manifest of `key`, from the local copy in
    /// `cache_root/remote/manifests/` when there is one, else downloaded
    /// (and kept there). Checked: its key, format and digest must agree.
    pub fn manifest(&self, key: &str, cache_root: &Path) -> Result<RemoteManifest, RemoteError> {
        let local = manifest_copy(cache_root, key);
        if let Ok(bytes) = std::fs::read(&local) {
            if let Ok(m) = self.parse_manifest(key, &bytes) {
                return Ok(m);
            }
        }
        let rel = Self::manifest_path(key);
        self.trace("GET", &rel);
        let path = self.path(&rel);
        let bytes = self.rt.block_on(async {
            let got = self.os.get(&path).await?;
            got.bytes().await
        });
        let bytes = bytes.map_err(|e| self.io_error("get", &rel, &e))?;
        let m = self.parse_manifest(key, &bytes)?;
        if let Some(parent) = local.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = write_atomic(&local, &bytes);
        Ok(m)
    }

    fn parse_manifest(&self, key: &str, bytes: &[u8]) -> Result<RemoteManifest, RemoteError> {
        let corrupt = |detail: String| RemoteError::Corrupt {
            remote: self.shown.clone(),
            key: key.to_string(),
            detail,
        };
        let m: RemoteManifest = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("its manifest is not readable: {e}")))?;
        if m.format != FORMAT {
            return Err(corrupt(format!(
                "its manifest has format {}, this foldwise reads {FORMAT}",
                m.format
            )));
        }
        if m.key != key {
            return Err(corrupt(format!("its manifest is that of `{}`", m.key)));
        }
        if m.manifest.digest() != m.digest {
            return Err(corrupt(
                "its manifest's file list does not give its stated digest".into(),
            ));
        }
        Ok(m)
    }
}

/// Where the local copy of a remote manifest is kept.
fn manifest_copy(cache_root: &Path, key: &str) -> PathBuf {
    cache_root
        .join("remote")
        .join("manifests")
        .join(format!("{key}.json"))
}

/// A cache key: 64 lowercase hex digits.
fn is_key(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `scheme://user:secret@host/…` without `user:secret@`.
fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `text` with every credential this process holds (the values of the
/// `AWS_*` secrets and key ids in the environment) replaced by `***`.
pub fn redact(text: &str) -> String {
    const SECRETS: &[&str] = &[
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
    ];
    let mut out = text.to_string();
    for var in SECRETS {
        if let Ok(v) = std::env::var(var) {
            if v.len() >= 4 {
                out = out.replace(&v, "***");
            }
        }
    }
    strip_userinfo_everywhere(&out)
}

/// Every `scheme://user:secret@` in `text` without its user information.
fn strip_userinfo_everywhere(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            out.push_str("***@");
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_user_information() {
        assert_eq!(
            strip_userinfo("http://ak:sk@127.0.0.1:8333/b"),
            "http://127.0.0.1:8333/b"
        );
        assert_eq!(strip_userinfo("s3://bucket/p"), "s3://bucket/p");
        assert_eq!(
            strip_userinfo_everywhere("GET http://ak:sk@h/x failed; see https://h2/y"),
            "GET http://***@h/x failed; see https://h2/y"
        );
    }

    #[test]
    fn unknown_schemes_and_relative_folders_are_refused_with_the_url() {
        let e = Remote::open("ftp://host/x").err().unwrap();
        assert_eq!(
            e.to_string(),
            "remote `ftp://host/x`: not a remote foldwise knows: it must start with `s3://` or `file://`"
        );
        let e = Remote::open("file://relative/x").err().unwrap();
        assert_eq!(
            e.to_string(),
            "remote `file://relative/x`: a folder remote needs an absolute path: `file:///PATH`"
        );
        assert!(Remote::open("s3://").is_err());
    }

    #[test]
    fn keys_are_64_lowercase_hex_digits() {
        assert!(is_key(&"a".repeat(64)));
        assert!(!is_key(&"A".repeat(64)));
        assert!(!is_key(&"a".repeat(63)));
    }
}
