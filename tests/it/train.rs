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
/// trained with `--device cpu` is fresh under `device = "cuda"`. The test
/// binary is built without the `cuda` feature, so a device named `cuda`
/// fails the model node with its code and help naming the build script
/// (the nodes before it are computed and kept). The device a model trained
/// on is in its artifact, the run history and the report.
#[test]
fn the_device_is_not_in_the_key_and_cuda_fails_on_a_cpu_only_build() {
    let p = Project::new(&crate::common::tiny_training("device", 1));
    let out = p.cli(&["run", "p.toml", "--device", "cuda:1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = crate::common::stderr(&out);
    assert!(
        err.contains(
            "device `cuda:1` asked for, but this foldwise was built without the `cuda` feature"
        ),
        "{err}"
    );
    assert!(err.contains("foldwise::node::device"), "{err}");
    assert!(err.contains("`scripts/cuda-build.sh`"), "{err}");
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
    let cnn = p
        .status()
        .into_iter()
        .find(|s| s.instance == "cnn")
        .unwrap();
    let dir = cnn.artifact.unwrap().dir;
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("train.json")).unwrap()).unwrap();
    assert_eq!(summary["device"], "cpu");
    // The run that executed `cnn` recorded where it trained.
    let executed_cnn: Vec<serde_json::Value> = std::fs::read_dir(p.cache().join("history"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .flat_map(|run: serde_json::Value| crate::common::list(&run, "nodes").to_vec())
        .filter(|n| {
            crate::common::text(n, "instance") == "cnn"
                && crate::common::text(n, "outcome") == "executed"
        })
        .collect();
    assert_eq!(executed_cnn.len(), 1);
    let node = &executed_cnn[0];
    assert_eq!(node["device"], "cpu");
    let out = p.cli(&["report", "p.toml", "-o", "r.html"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::common::stderr(&out)
    );
    let html = std::fs::read_to_string(p.path().join("r.html")).unwrap();
    assert!(html.contains("epochs, trained on cpu</p>"), "{html}");
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
