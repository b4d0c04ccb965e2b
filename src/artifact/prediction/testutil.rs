//! Test helpers shared by the tests of the kinds that write or read
//! prediction artifacts: fake data and train artifacts, and running a kind
//! with its schema's defaults.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::artifact::dataset::DataIndex;
use crate::kind::schema::{Dflt, Param, Ty};
use crate::kind::{InputArtifact, Kind, NoProgress, NodeError, RunCtx};
use crate::model::{Arch, Model, ModelConfig};
use crate::nodes::synthetic::{write_dataset, SyntheticParams};

/// A synthetic data artifact of `n` plates in `dir`.
pub fn dataset(dir: &Path, n: u64, seed: u64) -> DataIndex {
    fs::create_dir_all(dir).unwrap();
    write_dataset(&SyntheticParams::with_count(n), seed, dir, &NoProgress).unwrap()
}

/// A fake train artifact in `dir`: an untrained 32x64 svhn-small model
/// of `heads` heads as `model.safetensors`, `train.json`, `metrics.json`
/// and, when `cycles` > 0, snapshots with the given accuracies.
pub fn train_artifact(dir: &Path, heads: usize, seed: u64, accs: &[f64]) {
    train_artifact_as(dir, heads, seed, accs, false)
}

/// [`train_artifact`], the models with a length head when `length`.
pub fn train_artifact_as(dir: &Path, heads: usize, seed: u64, accs: &[f64], length: bool) {
    fs::create_dir_all(dir).unwrap();
    let mut cfg = ModelConfig::new(Arch::SvhnSmall, heads);
    cfg.height = 32;
    cfg.width = 64;
    cfg.length_head = length;
    Model::new(cfg.clone(), seed)
        .unwrap()
        .save(&dir.join("model.safetensors"))
        .unwrap();
    fs::write(
        dir.join("train.json"),
        serde_json::to_vec(
            &json!({"arch": "svhn-small", "heads": heads, "height": 32, "width": 64,
                "decoded_height": 36, "decoded_width": 72, "length_head": length}),
        )
        .unwrap(),
    )
    .unwrap();
    fs::write(
        dir.join("metrics.json"),
        serde_json::to_vec(
            &json!([{"epoch": 0, "valid_seq_acc": 0.25}, {"epoch": 1, "valid_seq_acc": 0.5}]),
        )
        .unwrap(),
    )
    .unwrap();
    if !accs.is_empty() {
        fs::create_dir_all(dir.join("snapshots")).unwrap();
        let mut list = Vec::new();
        for (c, a) in accs.iter().enumerate() {
            Model::new(cfg.clone(), seed + 100 + c as u64)
                .unwrap()
                .save(&dir.join(format!("snapshots/cycle-{c}.safetensors")))
                .unwrap();
            list.push(
                json!({"cycle": c, "epoch": 3 * c + 2, "valid_seq_acc": a, "valid_loss": 1.0}),
            );
        }
        fs::write(
            dir.join("snapshots.json"),
            serde_json::to_vec(&list).unwrap(),
        )
        .unwrap();
    }
}

pub fn input(node: &str, dir: &Path, digest: &str) -> InputArtifact {
    InputArtifact {
        node: node.into(),
        dir: dir.to_path_buf(),
        part: None,
        digest: digest.into(),
    }
}

/// Runs `kind` with `params` (defaults filled in from the schema,
/// then canonicalised) and `inputs` into a fresh `out` under `root`.
pub fn run_kind(
    kind: &dyn Kind,
    params: Value,
    inputs: BTreeMap<String, Vec<InputArtifact>>,
    root: &Path,
    out_name: &str,
    fold: Option<usize>,
) -> Result<PathBuf, NodeError> {
    let params = kind.canonical(with_defaults(kind.params(), params));
    let out = root.join(out_name);
    fs::create_dir_all(&out).unwrap();
    let derived = root.join("derived");
    let ctx = RunCtx {
        instance: out_name,
        fold,
        params: &params,
        seed: 7,
        base_dir: root,
        inputs: &inputs,
        out: &out,
        progress: &NoProgress,
        threads: 1,
        work: None,
        derived: &derived,
        device: crate::kind::DeviceChoice::Auto,
    };
    kind.run(&ctx).map(|_| out)
}

pub fn with_defaults(schema: &[Param], given: Value) -> Value {
    let mut m = given.as_object().cloned().unwrap_or_default();
    for p in schema {
        let v = m.remove(p.name);
        let filled = match (&p.ty, v) {
            (Ty::Table(sub), v) => {
                let base = v.unwrap_or_else(|| match p.default {
                    Dflt::Value(d) => serde_json::from_str(d).unwrap(),
                    _ => json!({}),
                });
                Some(with_defaults(sub, base))
            }
            (_, Some(v)) => Some(v),
            (_, None) => match p.default {
                Dflt::Value(d) => Some(serde_json::from_str(d).unwrap()),
                _ => None,
            },
        };
        if let Some(v) = filled {
            m.insert(p.name.into(), v);
        }
    }
    Value::Object(m)
}

/// Every file under `dir`, by relative path.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}
