//! Collection on a remote: only behind `foldwise gc --remote-too`, and
//! never of what a given pipeline needs.
//!
//! Guarantees: a manifest is removed only when no given pipeline's current
//! keys name it; a blob only when no remaining manifest names it and it is
//! older than [`grace`], so that the blobs of a push still in progress
//! (uploaded, manifest not yet written) are kept.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use object_store::ObjectStoreExt;

use super::{Remote, RemoteError, CONCURRENCY};

/// How old an unreferenced blob must be before it is removed: an hour, or
/// `FOLDWISE_REMOTE_GC_GRACE` seconds (for a team whose pushes take longer,
/// and for tests).
pub fn grace() -> Duration {
    std::env::var("FOLDWISE_REMOTE_GC_GRACE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(3600))
}

/// What a remote collection removed (or would remove, in a dry run).
#[derive(Debug, Default)]
pub struct RemoteGc {
    pub manifests_removed: usize,
    pub manifests_kept: usize,
    pub blobs_removed: usize,
    pub bytes_removed: u64,
    pub blobs_kept: usize,
    /// Unreferenced blobs kept because they are younger than [`grace`].
    pub blobs_young: usize,
}

impl Remote {
    /// Removes from the remote every artifact whose key is not in `keep`,
    /// then the blobs no remaining artifact names.
    pub fn gc(
        &self,
        keep: &HashSet<String>,
        cache_root: &Path,
        dry_run: bool,
    ) -> Result<RemoteGc, RemoteError> {
        let mut r = RemoteGc::default();
        let keys: Vec<String> = self.keys()?.iter().cloned().collect();
        let (kept, gone): (Vec<String>, Vec<String>) =
            keys.into_iter().partition(|k| keep.contains(k));
        let mut referenced = HashSet::new();
        for k in &kept {
            let m = self.manifest(k, cache_root)?;
            referenced.extend(m.manifest.files.iter().map(|f| f.digest.to_hex()));
        }
        r.manifests_kept = kept.len();
        r.manifests_removed = gone.len();
        if !dry_run {
            self.delete_all(gone.iter().map(|k| Self::manifest_path(k)).collect())?;
        }
        // The blobs, after the manifests: a blob is named by no manifest
        // that is left.
        self.trace("LIST", "blobs/");
        let listed: Vec<object_store::ObjectMeta> = self.rt.block_on(async {
            let mut out = Vec::new();
            let mut list = self.os.list(Some(&self.path("blobs")));
            while let Some(item) = list.next().await {
                out.push(item.map_err(|e| self.io_error("list", "blobs/", &e))?);
            }
            Ok::<_, RemoteError>(out)
        })?;
        let (now, grace) = (chrono_now(), grace());
        let mut doomed = Vec::new();
        for meta in listed {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if referenced.contains(name) {
                r.blobs_kept += 1;
                continue;
            }
            let age = now - meta.last_modified.timestamp();
            if age < grace.as_secs() as i64 {
                r.blobs_young += 1;
                continue;
            }
            r.blobs_removed += 1;
            r.bytes_removed += meta.size;
            doomed.push(Self::blob_path(name));
        }
        if !dry_run {
            self.delete_all(doomed)?;
        }
        Ok(r)
    }

    fn delete_all(&self, rels: Vec<String>) -> Result<(), RemoteError> {
        let results: Vec<Result<(), RemoteError>> = self.rt.block_on(
            stream::iter(rels)
                .map(|rel| async move {
                    self.trace("DELETE", &rel);
                    match self.os.delete(&self.path(&rel)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(self.io_error("delete", &rel, &e)),
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect(),
        );
        results.into_iter().collect()
    }
}

/// Seconds since the Unix epoch, now.
fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
