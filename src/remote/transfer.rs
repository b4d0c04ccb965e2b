//! Moving artifacts between the local cache and a remote: [`Remote::pull`]
//! (one key, verified, committed through the cache's writer) and
//! [`Remote::push`] (many keys: the blobs the remote lacks, then the
//! manifests).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};

use futures::stream::{self, StreamExt};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde_json::Value;

use super::{Remote, RemoteError, RemoteManifest, CONCURRENCY, FORMAT};
use crate::store::{test_pause, Artifact, Begin, Store};

/// Test-only: the name of a file whose presence holds a push after its
/// blobs are uploaded and before its manifests are (see
/// [`crate::store::test_pause`]).
pub const PAUSE_BEFORE_MANIFESTS: &str = "FOLDWISE_TEST_PAUSE_PUSH";

/// An artifact pulled into the local cache.
#[derive(Debug)]
pub struct Pulled {
    pub artifact: Artifact,
    /// Files and bytes downloaded (0 when another process brought it first).
    pub files: usize,
    pub bytes: u64,
}

/// One artifact to push.
#[derive(Debug, Clone)]
pub struct PushItem {
    /// The instance it is an artifact of, for messages.
    pub instance: String,
    pub artifact: Artifact,
    pub preimage: Value,
    pub meta: Value,
}

/// What a push did.
#[derive(Debug, Default)]
pub struct PushReport {
    /// Instances whose artifact is now on the remote through this push (in
    /// the order they were given, as the other lists).
    pub pushed: Vec<String>,
    /// Instances whose artifact the remote already had.
    pub present: Vec<String>,
    /// Instances whose artifact could not be pushed, and why.
    pub failed: Vec<(String, RemoteError)>,
    /// Files and bytes uploaded.
    pub files: usize,
    pub bytes: u64,
    /// Files the remote already had (the same bytes, from any artifact).
    pub files_present: usize,
}

/// Progress of a transfer, in bytes.
pub trait Transfer: Sync {
    /// The bytes the transfer will move, once known.
    fn total(&self, _bytes: u64) {}
    /// `bytes` more moved.
    fn advance(&self, _bytes: u64) {}
}

/// No progress display.
pub struct Silent;
impl Transfer for Silent {}

impl Remote {
    /// Brings the artifact of `key` from the remote into `store`: under the
    /// key's lock, every file downloaded and checked against the remote
    /// manifest, then committed whole. A key another process completed
    /// meanwhile is taken as it is.
    pub fn pull(
        &self,
        store: &Store,
        key: &str,
        progress: &dyn Transfer,
    ) -> Result<Pulled, RemoteError> {
        let rm = self.manifest(key, store.root())?;
        let local = |e: std::io::Error| RemoteError::Local(e.to_string());
        let writer = match store.begin(key, false).map_err(local)? {
            Begin::Hit(artifact) => {
                return Ok(Pulled {
                    artifact,
                    files: 0,
                    bytes: 0,
                })
            }
            Begin::Miss(w) => w,
        };
        let out = writer.out_dir();
        progress.total(rm.manifest.files.iter().map(|f| f.size).sum());
        let bytes = self.download(&rm, &out, progress)?;
        let mut meta = rm.meta.clone();
        if let Value::Object(m) = &mut meta {
            m.insert("pulled_from".into(), Value::String(self.shown.clone()));
        }
        let artifact = writer.commit(&rm.preimage, &meta).map_err(local)?;
        if artifact.digest != rm.digest {
            // Each file matched its entry, so this is a bug; keep nothing.
            let _ = store.discard(key);
            return Err(self.corrupt(
                key,
                format!(
                    "its files give the digest {}, its manifest states {}",
                    artifact.digest, rm.digest
                ),
            ));
        }
        Ok(Pulled {
            artifact,
            files: rm.manifest.files.len(),
            bytes,
        })
    }

    fn corrupt(&self, key: &str, detail: String) -> RemoteError {
        RemoteError::Corrupt {
            remote: self.shown.clone(),
            key: key.to_string(),
            detail,
        }
    }

    /// Downloads every file of `rm` into `out`, each checked against its
    /// size and digest before it is written.
    fn download(
        &self,
        rm: &RemoteManifest,
        out: &Path,
        progress: &dyn Transfer,
    ) -> Result<u64, RemoteError> {
        for f in &rm.manifest.files {
            if !safe_relative(&f.path) {
                return Err(self.corrupt(
                    &rm.key,
                    format!(
                        "its manifest names the file `{}`, outside its folder",
                        f.path
                    ),
                ));
            }
        }
        self.rt.block_on(async {
            let results: Vec<Result<u64, RemoteError>> = stream::iter(&rm.manifest.files)
                .map(|f| async move {
                    let digest = f.digest.to_hex();
                    let rel = Self::blob_path(&digest);
                    self.trace("GET", &rel);
                    let path = self.path(&rel);
                    let bytes = match self.os.get(&path).await {
                        Ok(got) => got.bytes().await,
                        Err(e) => Err(e),
                    };
                    let bytes = bytes.map_err(|e| match e {
                        object_store::Error::NotFound { .. } => self.corrupt(
                            &rm.key,
                            format!("its file `{}` (blob {rel}) is missing", f.path),
                        ),
                        e => self.io_error("get", &rel, &e),
                    })?;
                    if bytes.len() as u64 != f.size || blake3::hash(&bytes) != f.digest.0 {
                        return Err(self.corrupt(
                            &rm.key,
                            format!(
                                "its file `{}` (blob {rel}) does not match its digest",
                                f.path
                            ),
                        ));
                    }
                    let dest = out.join(&f.path);
                    let write = || -> std::io::Result<()> {
                        if let Some(parent) = dest.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        std::fs::write(&dest, &bytes)
                    };
                    write().map_err(|e| RemoteError::Local(format!("{}: {e}", dest.display())))?;
                    progress.advance(f.size);
                    Ok(f.size)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            results.into_iter().sum()
        })
    }

    /// Pushes the artifacts the remote lacks: the blobs it lacks first
    /// (each re-read and re-hashed), then, for each artifact whose blobs
    /// are all there, its manifest, created once. An error only when the
    /// remote cannot be listed; each artifact's own failure is in the
    /// report.
    pub fn push(
        &self,
        items: &[PushItem],
        progress: &dyn Transfer,
    ) -> Result<PushReport, RemoteError> {
        let mut report = PushReport::default();
        let have = self.keys()?;
        let (present, todo): (Vec<&PushItem>, Vec<&PushItem>) =
            items.iter().partition(|i| have.contains(&i.artifact.key));
        report.present = present.iter().map(|i| i.instance.clone()).collect();
        // Each blob once: where to read it, and its size.
        let mut blobs: BTreeMap<String, (std::path::PathBuf, u64)> = BTreeMap::new();
        for item in &todo {
            for f in &item.artifact.manifest.files {
                blobs
                    .entry(f.digest.to_hex())
                    .or_insert_with(|| (item.artifact.dir.join(&f.path), f.size));
            }
        }
        let mut failed_blobs: HashMap<String, RemoteError> = HashMap::new();
        let (missing, errors) = self.rt.block_on(self.missing_blobs(blobs.keys()));
        failed_blobs.extend(errors);
        report.files_present = blobs.len() - missing.len() - failed_blobs.len();
        progress.total(missing.iter().map(|d| blobs[d].1).sum());
        let uploads: Vec<(String, Result<u64, RemoteError>)> = self.rt.block_on(
            stream::iter(missing)
                .map(|digest| {
                    let (file, size) = blobs[&digest].clone();
                    async move {
                        let r = self.upload_blob(&digest, &file, size).await;
                        if r.is_ok() {
                            progress.advance(size);
                        }
                        (digest, r)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect(),
        );
        for (digest, r) in uploads {
            match r {
                Ok(size) => {
                    report.files += 1;
                    report.bytes += size;
                }
                Err(e) => {
                    failed_blobs.insert(digest, e);
                }
            }
        }
        test_pause(PAUSE_BEFORE_MANIFESTS);
        let manifests: Vec<(&PushItem, Result<bool, RemoteError>)> = self.rt.block_on(
            stream::iter(todo)
                .map(|item| {
                    let blocked = item
                        .artifact
                        .manifest
                        .files
                        .iter()
                        .find_map(|f| failed_blobs.get(&f.digest.to_hex()));
                    async move {
                        match blocked {
                            Some(e) => (item, Err(e.clone())),
                            None => (item, self.upload_manifest(item).await),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect(),
        );
        for (item, r) in manifests {
            match r {
                Ok(true) => report.pushed.push(item.instance.clone()),
                Ok(false) => report.present.push(item.instance.clone()),
                Err(e) => report.failed.push((item.instance.clone(), e)),
            }
        }
        // In the order the items came (the pipeline's).
        let pos: HashMap<&str, usize> = items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.instance.as_str(), i))
            .collect();
        let at = |name: &String| pos.get(name.as_str()).copied().unwrap_or(usize::MAX);
        report.pushed.sort_by_key(at);
        report.present.sort_by_key(at);
        report.failed.sort_by_key(|(name, _)| at(name));
        Ok(report)
    }

    /// Of `digests`, those the remote has no blob of (one HEAD each, at
    /// once), and those it could not say.
    async fn missing_blobs(
        &self,
        digests: impl Iterator<Item = &String>,
    ) -> (Vec<String>, Vec<(String, RemoteError)>) {
        let heads: Vec<(String, Result<bool, RemoteError>)> = stream::iter(digests)
            .map(|d| async move {
                let rel = Self::blob_path(d);
                self.trace("HEAD", &rel);
                let r = match self.os.head(&self.path(&rel)).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(self.io_error("head", &rel, &e)),
                };
                (d.clone(), r)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let (mut missing, mut errors) = (Vec::new(), Vec::new());
        for (d, r) in heads {
            match r {
                Ok(true) => {}
                Ok(false) => missing.push(d),
                Err(e) => errors.push((d, e)),
            }
        }
        missing.sort();
        (missing, errors)
    }

    /// Uploads one file as the blob `digest`, after checking that its
    /// bytes still give that digest.
    async fn upload_blob(&self, digest: &str, file: &Path, size: u64) -> Result<u64, RemoteError> {
        let bytes = std::fs::read(file)
            .map_err(|e| RemoteError::Local(format!("{}: {e}", file.display())))?;
        if bytes.len() as u64 != size || blake3::hash(&bytes).to_hex().as_str() != digest {
            return Err(RemoteError::Local(format!(
                "{} no longer matches its manifest (run `foldwise verify --fix`)",
                file.display()
            )));
        }
        let rel = Self::blob_path(digest);
        self.trace("PUT", &rel);
        self.os
            .put(&self.path(&rel), PutPayload::from(bytes))
            .await
            .map_err(|e| self.io_error("put", &rel, &e))?;
        Ok(size)
    }

    /// Creates the manifest of `item`; `false` when it was there already.
    async fn upload_manifest(&self, item: &PushItem) -> Result<bool, RemoteError> {
        let a = &item.artifact;
        let doc = RemoteManifest {
            format: FORMAT,
            key: a.key.clone(),
            digest: a.digest.clone(),
            manifest: a.manifest.clone(),
            preimage: item.preimage.clone(),
            meta: item.meta.clone(),
        };
        let body = serde_json::to_vec(&doc).expect("manifest serialises");
        let rel = Self::manifest_path(&a.key);
        self.trace("PUT", &rel);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .os
            .put_opts(&self.path(&rel), PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.io_error("put", &rel, &e)),
        }
    }
}

/// A relative path with no `..`, root or prefix: it stays inside the
/// folder it is joined to.
fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_folder_are_safe() {
        assert!(safe_relative("a/b.txt"));
        assert!(!safe_relative("../x"));
        assert!(!safe_relative("/etc/passwd"));
        assert!(!safe_relative("a/../../x"));
        assert!(!safe_relative(""));
    }
}
