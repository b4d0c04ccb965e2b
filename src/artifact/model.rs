//! The trained-model artifact (written by the `train` kind, read by
//! `predict` and the report), and the timings `train` keeps in its working
//! folder.
//!
//! A train artifact folder holds:
//! - [`MODEL_FILE`]: the final model, in the model's own safetensors
//!   layout (written and read by the model module);
//! - [`METRICS_FILE`]: one [`EpochMetrics`] per epoch — `lr` is the rate of
//!   the epoch's last batch, `train_loss` the mean per-head training loss
//!   (with label smoothing, on augmented images, measured before each
//!   step), `valid_loss` the mean over images and heads of −ln p(true
//!   class);
//! - [`SUMMARY_FILE`]: a [`Summary`] (architecture, heads, sizes, input
//!   normalisation, epochs, best epoch, final validation scores, snapshot
//!   count);
//! - under `cosine-restarts`: the model at the end of each cycle `c` as
//!   [`snapshot_file`]`(c)` in [`SNAPSHOTS_DIR`], and [`SNAPSHOTS_FILE`],
//!   the [`Snapshot`] list.
//!
//! The working folder (never hashed) holds [`TIMINGS_FILE`], the
//! [`Timings`] of the run that wrote the artifact.
//!
//! Guarantees: every JSON file is pretty JSON with a final newline, written
//! atomically, its fields in the order of the structs here, so equal values
//! give byte-identical files; read errors name the file. Reading is lenient
//! where readers meet hand-made or older artifacts: a summary needs only
//! its shape facts (architecture, heads, sizes), and a metrics row's missing
//! numbers read as 0.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_json, write_json};
use crate::kind::NodeError;

/// Name of the final model inside the artifact.
pub const MODEL_FILE: &str = "model.safetensors";
/// Per-epoch metrics inside the artifact.
pub const METRICS_FILE: &str = "metrics.json";
/// The summary inside the artifact.
pub const SUMMARY_FILE: &str = "train.json";
/// Folder of the snapshot models inside the artifact (cosine-restarts).
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// The snapshot list inside the artifact (cosine-restarts).
pub const SNAPSHOTS_FILE: &str = "snapshots.json";
/// Timings and resume facts inside the working folder.
pub const TIMINGS_FILE: &str = "timings.json";

/// The artifact-relative path of the snapshot model of cycle `cycle`.
pub fn snapshot_file(cycle: usize) -> String {
    format!("{SNAPSHOTS_DIR}/cycle-{cycle}.safetensors")
}

/// Per-channel input normalisation: `x = (v / 255 - mean[c]) / std[c]` for
/// a pixel value `v` in 0..=255. The default (mean 0.5, std 0.5) maps
/// pixels to [-1, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Norm {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Norm {
    fn default() -> Self {
        Norm {
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }
}

impl Norm {
    /// The ImageNet statistics, for backbones trained with them.
    pub fn imagenet() -> Norm {
        Norm {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// (scale, bias) per channel such that `x = v * scale + bias` for a
    /// pixel value `v` in 0..=255.
    pub fn affine(&self) -> [(f32, f32); 3] {
        std::array::from_fn(|c| {
            let s = 1.0 / (255.0 * self.std[c]);
            (s, -self.mean[c] / self.std[c])
        })
    }
}

/// One epoch's scores (a row of [`METRICS_FILE`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_seq_acc: f64,
    pub valid_loss: f64,
    pub valid_seq_acc: f64,
    pub valid_char_acc: f64,
    /// With a length head: how often its argmax is the true digit count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_length_acc: Option<f64>,
}

/// [`SUMMARY_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub arch: String,
    pub heads: usize,
    pub height: usize,
    pub width: usize,
    /// The size the data was decoded at (input + `margin`); prediction
    /// decodes at the same size, so its clean round is exactly the view
    /// validation saw.
    pub decoded_height: u32,
    pub decoded_width: u32,
    /// The input normalisation (`predict` applies the same); `None` in
    /// artifacts written before it was recorded, which used
    /// [`Norm::default`].
    #[serde(default)]
    pub norm: Option<Norm>,
    #[serde(default)]
    pub parameters: usize,
    #[serde(default)]
    pub train_images: usize,
    #[serde(default)]
    pub valid_images: usize,
    #[serde(default)]
    pub epochs: usize,
    #[serde(default)]
    pub schedule: String,
    #[serde(default)]
    pub best_epoch: usize,
    #[serde(default)]
    pub best_valid_seq_acc: f64,
    #[serde(default)]
    pub final_valid_seq_acc: f64,
    #[serde(default)]
    pub final_valid_char_acc: f64,
    #[serde(default)]
    pub final_valid_loss: f64,
    /// Whether the model has a length head (`predict` then writes
    /// `length.fwprobs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub length_head: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_valid_length_acc: Option<f64>,
    #[serde(default)]
    pub snapshots: usize,
    /// Where the model was trained (`cpu`, `cuda:0`); `None` in artifacts
    /// written before it was recorded (all on the CPU). Not part of the
    /// key: a GPU run is the same experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// One entry of [`SNAPSHOTS_FILE`]: the model at the end of a cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// 0-based cycle.
    pub cycle: usize,
    /// The 1-based epoch that ends the cycle.
    pub epoch: usize,
    pub valid_seq_acc: f64,
    pub valid_loss: f64,
}

/// One epoch's timing (working folder only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochTiming {
    pub epoch: usize,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// [`TIMINGS_FILE`] in the working folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// The checkpoint epoch this run started from (None: from scratch).
    pub resumed_from_epoch: Option<usize>,
    /// Epochs trained by this run.
    pub trained_epochs: usize,
    pub epochs: Vec<EpochTiming>,
}

/// Writes the metrics, the summary and (when `snapshots` is given) the
/// snapshot list of a train artifact into `out`; the model files are the
/// model's to write.
pub fn write(
    out: &Path,
    metrics: &[EpochMetrics],
    summary: &Summary,
    snapshots: Option<&[Snapshot]>,
) -> Result<(), NodeError> {
    write_json(&out.join(METRICS_FILE), metrics)?;
    write_json(&out.join(SUMMARY_FILE), summary)?;
    match snapshots {
        Some(list) => write_json(&out.join(SNAPSHOTS_FILE), list),
        None => Ok(()),
    }
}

/// Reads [`SUMMARY_FILE`] of the train artifact in `dir`.
pub fn read_summary(dir: &Path) -> Result<Summary, NodeError> {
    read_json(&dir.join(SUMMARY_FILE), "a train summary")
}

/// Reads [`METRICS_FILE`] of the train artifact in `dir`.
pub fn read_metrics(dir: &Path) -> Result<Vec<EpochMetrics>, NodeError> {
    read_json(&dir.join(METRICS_FILE), "a metrics list")
}

/// Reads [`SNAPSHOTS_FILE`] of the train artifact in `dir`.
pub fn read_snapshots(dir: &Path) -> Result<Vec<Snapshot>, NodeError> {
    read_json(&dir.join(SNAPSHOTS_FILE), "a snapshot list")
}

/// Writes [`TIMINGS_FILE`] into the working folder `work`.
pub fn write_timings(work: &Path, timings: &Timings) -> Result<(), NodeError> {
    write_json(&work.join(TIMINGS_FILE), timings)
}

/// Reads [`TIMINGS_FILE`] of the working folder `work`.
pub fn read_timings(work: &Path) -> Result<Timings, NodeError> {
    read_json(&work.join(TIMINGS_FILE), "a timing list")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            arch: "svhn-small".into(),
            heads: 5,
            height: 32,
            width: 64,
            decoded_height: 36,
            decoded_width: 72,
            norm: Some(Norm::default()),
            parameters: 1000,
            train_images: 18,
            valid_images: 6,
            epochs: 2,
            schedule: "cosine".into(),
            best_epoch: 2,
            best_valid_seq_acc: 0.5,
            final_valid_seq_acc: 0.5,
            final_valid_char_acc: 0.75,
            final_valid_loss: 1.0,
            length_head: false,
            final_valid_length_acc: None,
            snapshots: 0,
            device: Some("cpu".into()),
        }
    }

    #[test]
    fn files_have_their_fixed_form_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let rows = [EpochMetrics {
            epoch: 1,
            lr: 0.001,
            train_loss: 2.0,
            valid_loss: 1.5,
            valid_seq_acc: 0.25,
            ..EpochMetrics::default()
        }];
        let snaps = [Snapshot {
            cycle: 0,
            epoch: 1,
            valid_seq_acc: 0.25,
            valid_loss: 1.5,
        }];
        write(d.path(), &rows, &summary(), Some(&snaps)).unwrap();
        let text = std::fs::read_to_string(d.path().join(SUMMARY_FILE)).unwrap();
        // Field order, whole numbers as integers, floats as floats; no
        // `length_head` without one.
        assert!(
            text.starts_with(
                "{\n  \"arch\": \"svhn-small\",\n  \"heads\": 5,\n  \"height\": 32,\n  \"width\": 64,\n  \"decoded_height\": 36,\n  \"decoded_width\": 72,\n  \"norm\": {\n    \"mean\": [\n      0.5,"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\"final_valid_loss\": 1.0,\n  \"snapshots\": 0,\n  \"device\": \"cpu\"\n}\n"
            ),
            "{text}"
        );
        assert!(!text.contains("length_head"));
        assert_eq!(read_summary(d.path()).unwrap(), summary());
        assert_eq!(read_metrics(d.path()).unwrap(), rows);
        assert_eq!(read_snapshots(d.path()).unwrap(), snaps);
        let text = std::fs::read_to_string(d.path().join(METRICS_FILE)).unwrap();
        assert!(text.starts_with("[\n  {\n    \"epoch\": 1,\n    \"lr\": 0.001,"));
        assert!(!text.contains("valid_length_acc"));

        // Without snapshots, no list.
        let e = tempfile::tempdir().unwrap();
        write(e.path(), &rows, &summary(), None).unwrap();
        assert!(!e.path().join(SNAPSHOTS_FILE).exists());
        assert_eq!(snapshot_file(3), "snapshots/cycle-3.safetensors");
    }

    #[test]
    fn reading_needs_only_the_shape_facts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(SUMMARY_FILE),
            r#"{"arch":"svhn-small","heads":4,"height":32,"width":64,"decoded_height":36,"decoded_width":72}"#,
        )
        .unwrap();
        let s = read_summary(d.path()).unwrap();
        assert_eq!((s.heads, s.norm, s.length_head), (4, None, false));
        std::fs::write(
            d.path().join(METRICS_FILE),
            r#"[{"epoch":1,"valid_seq_acc":0.5}]"#,
        )
        .unwrap();
        assert_eq!(read_metrics(d.path()).unwrap()[0].valid_seq_acc, 0.5);

        std::fs::write(d.path().join(SUMMARY_FILE), r#"{"arch":"svhn-small"}"#).unwrap();
        let e = read_summary(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("train.json: not a train summary: missing field `heads`"),
            "{e}"
        );
    }

    #[test]
    fn timings_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let t = Timings {
            resumed_from_epoch: Some(1),
            trained_epochs: 1,
            epochs: vec![EpochTiming {
                epoch: 2,
                seconds: 1.5,
                images_per_s: 12.0,
            }],
        };
        write_timings(d.path(), &t).unwrap();
        assert_eq!(read_timings(d.path()).unwrap(), t);
    }
}
