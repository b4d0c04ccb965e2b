//! The `train` kind's checkpoints in its working folder (never hashed):
//! after every epoch `e`, `epoch-<e>.safetensors` (the model) and then
//! `epoch-<e>.json` (the metrics so far, bit-exactly, and the timings),
//! the JSON making the checkpoint count.
//!
//! Guarantees: a checkpoint is found only when complete (both files, the
//! JSON consistent with its epoch, and the checkpoints of every earlier
//! snapshot present), and a run resumed from it continues with exactly the
//! state it had; files are written atomically; only the latest
//! checkpoint and the snapshots' are kept.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model_err;
use super::schedule::Schedule;
use crate::artifact::model::{EpochMetrics, EpochTiming};
use crate::artifact::write_json;
use crate::kind::NodeError;
use crate::model::{Device, Model};

/// The model and the history of the epochs trained so far.
pub(super) struct State {
    pub model: Model,
    pub records: Vec<EpochMetrics>,
    pub timings: Vec<EpochTiming>,
}

/// `epoch-<e>.json` in the working folder: the metrics so far, exactly
/// (floats as their bit patterns, since JSON text need not round-trip).
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointInfo {
    epoch: usize,
    metrics_bits: Vec<(usize, [u64; 6])>,
    /// With a length head: each epoch's `valid_length_acc` bits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    length_acc_bits: Vec<u64>,
    timings: Vec<EpochTiming>,
}

impl CheckpointInfo {
    /// The checkpoint of `state` after 1-based `epoch`.
    fn of(epoch: usize, state: &State) -> CheckpointInfo {
        let bits = |r: &EpochMetrics| {
            [
                r.lr,
                r.train_loss,
                r.train_seq_acc,
                r.valid_loss,
                r.valid_seq_acc,
                r.valid_char_acc,
            ]
            .map(f64::to_bits)
        };
        CheckpointInfo {
            epoch,
            metrics_bits: state.records.iter().map(|r| (r.epoch, bits(r))).collect(),
            length_acc_bits: state
                .records
                .iter()
                .filter_map(|r| r.valid_length_acc.map(f64::to_bits))
                .collect(),
            timings: state.timings.clone(),
        }
    }

    /// The metrics rows it holds, bit-exactly.
    fn records(&self) -> Vec<EpochMetrics> {
        self.metrics_bits
            .iter()
            .enumerate()
            .map(|(k, &(epoch, bits))| {
                let f = bits.map(f64::from_bits);
                EpochMetrics {
                    epoch,
                    lr: f[0],
                    train_loss: f[1],
                    train_seq_acc: f[2],
                    valid_loss: f[3],
                    valid_seq_acc: f[4],
                    valid_char_acc: f[5],
                    valid_length_acc: self.length_acc_bits.get(k).map(|&x| f64::from_bits(x)),
                }
            })
            .collect()
    }
}

/// The model file of the checkpoint after `epoch` in `dir`.
pub(super) fn ckpt_model(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch}.safetensors"))
}
/// The JSON file of the checkpoint after `epoch` in `dir`.
pub(super) fn ckpt_info(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch}.json"))
}

/// Saves `model` to `path` through a temporary name in the same folder,
/// removed on failure.
fn save_model_atomic(model: &Model, path: &Path) -> Result<(), NodeError> {
    let tmp = crate::store::temp_sibling(path);
    let saved = model
        .save(&tmp)
        .map_err(model_err)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| NodeError::io(path, e)));
    if saved.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    saved
}

/// The latest complete checkpoint in `work` at or before epoch `total`
/// whose snapshot checkpoints are all present: its epoch and the state it
/// holds.
pub(super) fn latest(
    work: &Path,
    total: usize,
    sched: &Schedule,
    device: Device,
) -> Option<(usize, State)> {
    let mut epochs: Vec<usize> = fs::read_dir(work)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("epoch-")?
                .strip_suffix(".json")?
                .parse::<usize>()
                .ok()
        })
        .filter(|&e| e >= 1 && e <= total)
        .collect();
    epochs.sort_unstable();
    for &e in epochs.iter().rev() {
        let Ok(bytes) = fs::read(ckpt_info(work, e)) else {
            continue;
        };
        let Ok(info) = serde_json::from_slice::<CheckpointInfo>(&bytes) else {
            continue;
        };
        if info.epoch != e || info.metrics_bits.len() != e {
            continue;
        }
        let snaps_ok = (1..=e)
            .filter(|&k| sched.snapshot_of(k).is_some())
            .all(|k| ckpt_model(work, k).is_file() && ckpt_info(work, k).is_file());
        if !snaps_ok {
            continue;
        }
        if let Ok(model) = Model::load_on(&ckpt_model(work, e), device) {
            let records = info.records();
            let mut timings = info.timings;
            timings.truncate(e);
            let state = State {
                model,
                records,
                timings,
            };
            return Some((e, state));
        }
    }
    None
}

/// Saves the checkpoint after 1-based `epoch` in `work` (the model, then
/// the JSON that makes it count) and drops the previous epoch's unless it
/// is a snapshot.
pub(super) fn save(
    work: &Path,
    epoch: usize,
    state: &State,
    sched: &Schedule,
) -> Result<(), NodeError> {
    save_model_atomic(&state.model, &ckpt_model(work, epoch))?;
    write_json(&ckpt_info(work, epoch), &CheckpointInfo::of(epoch, state))?;
    let prev = epoch - 1;
    if prev >= 1 && sched.snapshot_of(prev).is_none() {
        let _ = fs::remove_file(ckpt_info(work, prev));
        let _ = fs::remove_file(ckpt_model(work, prev));
    }
    crate::store::test_pause(crate::store::PAUSE_AFTER_EPOCH);
    Ok(())
}
