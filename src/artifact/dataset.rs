//! The data-artifact layout shared by every node that produces a data set
//! (`dataset`, `synthetic`) and read by every node that consumes one.
//!
//! A data artifact folder holds:
//! - `images/`: the image files, by their original file names;
//! - `index.json`: a [`DataIndex`], items sorted by file name (the order
//!   that split index lists refer to);
//! - `labels.json`: the labels in the contest's mchar format (labelled sets
//!   only), so the artifact can be used outside foldwise as it is.
//!
//! Guarantee: `index.json` is written with sorted items and sorted keys, so
//! equal data gives byte-identical index files.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::kind::NodeError;

/// Folder of the images inside a data artifact.
pub const IMAGES_DIR: &str = "images";
/// The index file inside a data artifact.
pub const INDEX_FILE: &str = "index.json";
/// The mchar label file inside a labelled data artifact.
pub const LABELS_FILE: &str = "labels.json";

/// The index of a data artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataIndex {
    /// True when every item has a label.
    pub labelled: bool,
    /// Items sorted by `file`.
    pub items: Vec<DataItem>,
}

/// One image of a data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataItem {
    /// File name inside `images/`.
    pub file: String,
    pub width: u32,
    pub height: u32,
    /// Digits in reading order, each 0-9 (None for an unlabelled set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Vec<u8>>,
    /// Per-digit boxes (left, top, width, height) when the labels had them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<Vec<[f32; 4]>>,
}

impl DataItem {
    /// The digits joined ("019"); empty for an unlabelled item.
    pub fn code(&self) -> String {
        self.label
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|d| char::from(b'0' + d))
            .collect()
    }
}

impl DataIndex {
    /// Reads `index.json` from a data artifact folder.
    pub fn load(artifact: &Path) -> Result<DataIndex, NodeError> {
        let path = artifact.join(INDEX_FILE);
        let bytes = std::fs::read(&path).map_err(|e| NodeError::io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| NodeError::file(&path, format!("not a data index: {e}")))
    }

    /// Writes `index.json` (and `labels.json` when labelled) into `out`.
    pub fn save(&self, out: &Path) -> Result<(), NodeError> {
        let path = out.join(INDEX_FILE);
        let json = serde_json::to_vec(self).expect("index serialises");
        std::fs::write(&path, json).map_err(|e| NodeError::io(&path, e))?;
        if self.labelled {
            let path = out.join(LABELS_FILE);
            std::fs::write(&path, self.mchar_json()).map_err(|e| NodeError::io(&path, e))?;
        }
        Ok(())
    }

    /// The labels in mchar format: `{"name": {"label": [...], "left": [...],
    /// "top": [...], "width": [...], "height": [...]}}`, keys sorted.
    pub fn mchar_json(&self) -> Vec<u8> {
        let mut map = serde_json::Map::new();
        for it in &self.items {
            let Some(label) = &it.label else { continue };
            let boxes = it.boxes.clone().unwrap_or_default();
            let col = |i: usize| -> Vec<serde_json::Value> {
                boxes.iter().map(|b| json_num(b[i])).collect()
            };
            let mut e = serde_json::Map::new();
            e.insert("label".into(), serde_json::json!(label));
            e.insert("left".into(), col(0).into());
            e.insert("top".into(), col(1).into());
            e.insert("width".into(), col(2).into());
            e.insert("height".into(), col(3).into());
            map.insert(it.file.clone(), e.into());
        }
        serde_json::to_vec(&serde_json::Value::Object(map)).expect("labels serialise")
    }
}

/// Whole-number box coordinates are written as integers, as the contest does.
fn json_num(x: f32) -> serde_json::Value {
    if x.fract() == 0.0 && x.abs() < 1e9 {
        serde_json::json!(x as i64)
    } else {
        serde_json::json!(x)
    }
}

impl crate::predictions::Labelled for DataItem {
    fn name(&self) -> &str {
        &self.file
    }
    fn label(&self) -> Option<&[u8]> {
        self.label.as_deref()
    }
}
