//! The `train` kind in a pipeline: one instance per fold, cached, rerun
//! exactly when its parameters change.

use crate::common::{field, names, Project};

const PIPELINE: &str = r#"
[pipeline]
name = "train-test"
seed = 7

[nodes.plates]
kind = "synthetic"
count = 40
max_digits = 5

[nodes.folds]
kind = "split"
data = "plates"
method = "kfold"
k = 2

[nodes.cnn]
kind = "train"
data = "plates"
split = "folds"
model = { arch = "svhn-small", height = 32, width = 64 }
epochs = 1
batch = 8
"#;

#[test]
fn trains_once_per_fold_and_reruns_only_the_training() {
    let p = Project::new(PIPELINE);
    let r = p.run();
    assert_eq!(
        r.executed(),
        names(&["plates", "folds", "cnn[0]", "cnn[1]"])
    );
    for s in p.status().iter().filter(|s| s.instance.starts_with("cnn[")) {
        let dir = &s.artifact.as_ref().unwrap().dir;
        for f in ["model.safetensors", "metrics.json", "train.json"] {
            assert!(dir.join(f).is_file(), "{}: {f}", s.instance);
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("train.json")).unwrap()).unwrap();
        assert_eq!(field(&summary, "train_images"), 20);
        assert_eq!(field(&summary, "valid_images"), 20);
    }
    assert!(p.run().executed().is_empty());

    p.edit("epochs = 1", "epochs = 2");
    let r = p.run();
    assert_eq!(r.executed(), names(&["cnn[0]", "cnn[1]"]));
    assert_eq!(r.reused(), names(&["plates", "folds"]));
}

/// `device` is where a model trains, never part of its key: a model
/// trained with `--device cpu` is fresh under `device = "cuda"`. This build
/// computes on the CPU only, so a device named `cuda` fails the model node
/// with its code and help (the nodes before it are computed and kept).
#[test]
fn the_device_is_not_in_the_key_and_cuda_fails_on_a_cpu_only_build() {
    let p = Project::new(&crate::common::tiny_training("device", 1));
    let out = p.cli(&["run", "p.toml", "--device", "cuda:1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = crate::common::stderr(&out);
    assert!(
        err.contains("device `cuda:1` asked for, but this foldwise computes on the CPU only"),
        "{err}"
    );
    assert!(err.contains("foldwise::node::device"), "{err}");
    assert!(err.contains("`--device cpu`"), "{err}");
    let fresh: Vec<String> = p
        .status()
        .into_iter()
        .filter(|s| s.is_fresh())
        .map(|s| s.instance)
        .collect();
    assert_eq!(fresh, names(&["plates", "folds"]));

    let out = p.cli(&["run", "p.toml", "--device", "cpu", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let executed: Vec<String> = crate::common::list(&report, "nodes")
        .iter()
        .filter(|n| crate::common::text(n, "outcome") == "executed")
        .map(|n| crate::common::text(n, "instance").to_string())
        .collect();
    assert_eq!(executed, names(&["cnn"]));
    p.edit("seed = 7\n", "seed = 7\ndevice = \"cuda\"\n");
    assert!(p.status().iter().all(|s| s.is_fresh()));
    let out = p.cli(&["run", "p.toml", "--device", "gpu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        crate::common::stderr(&out)
            .contains("invalid value 'gpu' for '--device <DEVICE>': expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""),
        "{}",
        crate::common::stderr(&out)
    );
}
