//! Per-fold expansion with the real data nodes, on the example pipelines
//! (which double as fixtures).

use foldwise::exec::RunOptions;

use crate::common::{field, list, names, num, stderr, stdout, text, Project};

pub fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/pipelines/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The quickstart at a small scale: 36 training plates, 8 test plates,
/// one-epoch cycles, 32x64 models.
pub fn small_quickstart() -> String {
    let full = example("quickstart.toml");
    let small = full
        .replace("count = 3000", "count = 36")
        .replace("count = 1000", "count = 8")
        .replace("cycle_epochs = 3", "cycle_epochs = 1")
        .replace("height = 48, width = 96", "height = 32, width = 64");
    assert_eq!(
        small
            .lines()
            .zip(full.lines())
            .filter(|(a, b)| a != b)
            .count(),
        4
    );
    small
}

#[test]
fn the_command_example_runs_once_per_fold_then_gathers() {
    let p = Project::new(&example("command.toml"));
    let r = p.run();
    assert_eq!(
        r.executed(),
        names(&[
            "plates",
            "folds",
            "fold_sizes[0]",
            "fold_sizes[1]",
            "fold_sizes[2]",
            "fold_sizes[3]",
            "table"
        ])
    );
    let table = p
        .status()
        .pop()
        .unwrap()
        .artifact
        .unwrap()
        .dir
        .join("table.txt");
    assert_eq!(
        std::fs::read_to_string(table).unwrap(),
        "held-out images per fold\nfold 0: 50 held out\nfold 1: 50 held out\n\
         fold 2: 50 held out\nfold 3: 50 held out\n"
    );
    assert!(p.run().executed().is_empty());

    // Fewer folds: the split and everything after it rerun; the plates do not.
    p.edit("k = 4", "k = 2");
    let r = p.run();
    assert_eq!(
        r.executed(),
        names(&["folds", "fold_sizes[0]", "fold_sizes[1]", "table"])
    );
    assert_eq!(r.reused(), names(&["plates"]));
}

#[test]
fn a_fold_instance_is_keyed_by_its_own_part_file() {
    let p = Project::new(&example("command.toml"));
    p.run();
    let st = p.status();
    let folds = st.iter().find(|s| s.instance == "folds").unwrap();
    let folds_dir = folds.artifact.as_ref().unwrap().dir.clone();
    for i in 0..4 {
        let inst = st
            .iter()
            .find(|s| s.instance == format!("fold_sizes[{i}]"))
            .unwrap();
        let key = inst.key.as_ref().unwrap();
        let pre: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                p.cache()
                    .join("objects")
                    .join(&key[..2])
                    .join(key)
                    .join("preimage.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let part = std::fs::read(folds_dir.join(format!("folds/fold-{i}.json"))).unwrap();
        assert_eq!(
            text(&pre, "hashed.inputs.0.digest"),
            blake3::hash(&part).to_hex().to_string(),
            "fold_sizes[{i}] hashes fold {i}'s index list"
        );
        assert_eq!(field(&pre, "hashed.fold"), i);
    }
}

#[test]
fn renamed_nodes_in_another_pipeline_share_artifacts() {
    let a = Project::new(&example("command.toml"));
    a.run();
    // Same work under other names, in a pipeline of another name, on the
    // same cache.
    let renamed = example("command.toml")
        .replace("name = \"command-example\"", "name = \"variant\"")
        .replace("plates", "digits")
        .replace("fold_sizes", "sizes_per_fold");
    std::fs::write(a.path().join("v.toml"), renamed).unwrap();
    let p = foldwise::config::load(&a.path().join("v.toml"), foldwise::nodes::KINDS).unwrap();
    let store = foldwise::store::Store::open(&a.cache()).unwrap();
    let r = foldwise::exec::Engine::new(&p, &store)
        .run(&RunOptions::default(), &foldwise::exec::NullObserver)
        .unwrap();
    assert!(r.executed().is_empty(), "{:?}", r.executed());
}

#[test]
fn a_holdout_consumer_runs_once_and_dag_shows_the_expansion() {
    let p = Project::new(
        r#"
[pipeline]
name = "peek"

[nodes.plates]
kind = "synthetic"
count = 60

[nodes.folds]
kind = "split"
data = "plates"
k = 3

[nodes.holdout]
kind = "split"
data = "plates"
method = "holdout"

[nodes.peek]
kind = "command"
inputs = { h = "holdout", f = "folds[1]" }
shell = "cp $FOLDWISE_INPUT_F_PART $FOLDWISE_OUT/"
"#,
    );
    let out = p.cli(&["dag", "p.toml"]);
    assert_eq!(
        stdout(&out),
        "plates (synthetic)\nfolds (split) <- data: plates\nholdout (split) <- data: plates\n\
         peek (command) <- inputs.f: pick folds#1, inputs.h: holdout\n"
    );
    let r = p.run();
    assert_eq!(r.executed(), names(&["plates", "folds", "holdout", "peek"]));
}

#[test]
fn the_quickstart_expands_training_per_fold_and_gathers_for_prediction() {
    let out = Project::new(&example("quickstart.toml")).cli(&["dag", "p.toml"]);
    assert_eq!(
        stdout(&out),
        "plates (synthetic)\nplates_test (synthetic)\nfolds (split) <- data: plates\n\
         cnn[0] (train) <- data: plates, split: folds#0\n\
         cnn[1] (train) <- data: plates, split: folds#1\n\
         cnn[2] (train) <- data: plates, split: folds#2\n\
         pred (predict) <- models: cnn[*], data: plates_test\n\
         oof[0] (predict) <- models: cnn[0], data: plates, oof: folds#0\n\
         oof[1] (predict) <- models: cnn[1], data: plates, oof: folds#1\n\
         oof[2] (predict) <- models: cnn[2], data: plates, oof: folds#2\n\
         post (postprocess) <- predictions: pred, labels: plates, oof: oof[*], truth: plates_test\n\
         eval (evaluate) <- predictions: pred, data: plates_test\n\
         submission (submit) <- predictions: post\n\
         ladder (ladder) <- predictions: pred, data: plates_test, post: post\n"
    );
}

/// The quickstart end to end at a small scale, through the command line:
/// every node runs once and the run ends with the post-processing and
/// ladder tables on stdout; a second run does nothing and prints the same
/// tables (the pipeline's result, from the cache); more TTA rounds rerun
/// exactly the prediction and what follows it, not the out-of-fold
/// predictions.
#[test]
fn the_quickstart_runs_end_to_end_at_a_small_scale() {
    let small = small_quickstart();
    let p = Project::new(&small);
    let first = p.cli(&["run", "p.toml"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("\n14 executed, 0 reused, 0 failed, 0 skipped in "),
        "{}",
        stderr(&first)
    );

    let st = p.status();
    let dir = |name: &str| {
        st.iter()
            .find(|s| s.instance == name)
            .unwrap()
            .artifact
            .as_ref()
            .unwrap()
            .dir
            .clone()
    };
    let report = std::fs::read_to_string(dir("ladder").join("report.txt")).unwrap();
    let post = std::fs::read_to_string(dir("post").join("report.txt")).unwrap();
    assert_eq!(stdout(&first), format!("\npost: {post}\nladder: {report}"));
    assert!(
        post.starts_with("post-processing of 8 images, fitted on 36 out-of-fold predictions\n"),
        "{post}"
    );
    assert!(
        report.starts_with("accuracy as the ensemble grows (8 images)\n"),
        "{report}"
    );

    let second = p.cli(&["run", "p.toml"]);
    assert!(
        stderr(&second).contains("\n0 executed, 14 reused, 0 failed, 0 skipped in "),
        "{}",
        stderr(&second)
    );
    assert_eq!(stdout(&second), stdout(&first), "the same table again");
    // Quiet prints nothing; --json prints only the run report.
    assert_eq!(stdout(&p.cli(&["run", "-q", "p.toml"])), "");
    let json = p.cli(&["run", "--json", "p.toml"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(list(&v, "nodes").len(), 14);

    // 3 models x 2 snapshots x 4 rounds; the fourth row is the evaluation,
    // the fifth the post-processing of the same 24 members' mean.
    let ladder: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("ladder").join("metrics.json")).unwrap())
            .unwrap();
    let members: Vec<u64> = list(&ladder, "rows")
        .iter()
        .map(|r| field(r, "members").as_u64().unwrap())
        .collect();
    assert_eq!(members, [1, 2, 8, 24, 24]);
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("eval").join("metrics.json")).unwrap()).unwrap();
    assert_eq!(field(&metrics, "n"), 8);
    assert_eq!(num(&ladder, "rows.3.seq_acc"), num(&metrics, "seq_acc"));
    assert_eq!(num(&ladder, "rows.3.char_acc"), num(&metrics, "char_acc"));
    let post_report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("post").join("postprocess.json")).unwrap())
            .unwrap();
    assert_eq!(text(&ladder, "rows.4.step"), "post_processing");
    assert_eq!(
        num(&ladder, "rows.4.seq_acc"),
        num(&post_report, "seq_acc_final")
    );
    assert_eq!(num(&post_report, "seq_acc_input"), num(&metrics, "seq_acc"));
    // The length classifier was trained beside the digit heads and
    // predicted with them.
    assert!(dir("pred").join("length.fwprobs").exists());
    assert!(dir("oof[1]").join("length.fwprobs").exists());

    // The submission holds the post-processed codes.
    let csv = std::fs::read_to_string(dir("submission").join("submission.csv")).unwrap();
    assert!(csv.starts_with("file_name,file_code\n"));
    let codes: Vec<String> =
        serde_json::from_slice(&std::fs::read(dir("post").join("codes.json")).unwrap()).unwrap();
    let mut post_rows: Vec<String> = std::fs::read_to_string(dir("post").join("items.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok())
        .unwrap()
        .iter()
        .zip(&codes)
        .map(|(it, c)| format!("{},{c}", text(it, "file")))
        .collect();
    post_rows.sort();
    assert_eq!(csv.lines().skip(1).collect::<Vec<_>>(), post_rows);
    assert_eq!(csv.lines().count(), 1 + 8);
    let snapshots = dir("cnn[0]").join("snapshots");
    assert_eq!(std::fs::read_dir(snapshots).unwrap().count(), 5);

    // One decoded set per data set and size, shared by train and predict.
    let mut decoded: Vec<String> = std::fs::read_dir(p.cache().join("derived"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".fwprobs") && !n.ends_with(".decset.lock"))
        .collect();
    decoded.sort();
    assert_eq!(decoded.len(), 2, "{decoded:?}");
    assert!(
        decoded.iter().all(|n| n.ends_with(".decset")),
        "{decoded:?}"
    );

    p.edit("tta = { rounds = 4 }", "tta = { rounds = 5 }");
    let r = p.run();
    assert_eq!(
        r.executed(),
        names(&["pred", "post", "eval", "submission", "ladder"])
    );
}
