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
