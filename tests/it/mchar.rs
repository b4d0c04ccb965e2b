//! `pipelines/mchar.toml`, the contest pipeline: it validates as shipped,
//! and runs end to end at a tiny scale against a fake contest layout
//! (generated plates in the mchar files and folders) in a temporary folder.

use std::fs;
use std::path::Path;

use foldwise::kind::NoProgress;
use foldwise::nodes::synthetic::{write_dataset, SyntheticParams};

use crate::common::{stderr, stdout, Project};

fn shipped() -> String {
    fs::read_to_string(format!(
        "{}/pipelines/mchar.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Writes `count` generated plates as the contest writes a set: the
/// images in `data/<name>/` and, when `labelled`, `data/<name>.json`.
fn contest_set(root: &Path, name: &str, count: u64, seed: u64, labelled: bool) {
    let tmp = root.join(format!("gen-{name}"));
    fs::create_dir_all(&tmp).unwrap();
    let mut p = SyntheticParams::with_count(count);
    p.max_digits = 4;
    write_dataset(&p, seed, &tmp, &NoProgress).unwrap();
    fs::create_dir_all(root.join("data")).unwrap();
    fs::rename(tmp.join("images"), root.join("data").join(name)).unwrap();
    if labelled {
        fs::rename(
            tmp.join("labels.json"),
            root.join("data").join(format!("{name}.json")),
        )
        .unwrap();
    }
    fs::remove_dir_all(tmp).unwrap();
}

/// Before the contest's files are downloaded, `check` names each one
/// the shipped pipeline needs, and nothing else.
#[test]
fn the_shipped_mchar_pipeline_validates_but_for_the_contest_files() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_foldwise"))
        .args(["check", "pipelines/mchar.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let problems: Vec<String> = stderr(&out)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("× "))
        .map(String::from)
        .collect();
    let missing = |node: &str, param: &str, file: &str| {
        format!("node `{node}`: `{param}`: pipelines/../data/{file} does not exist")
    };
    assert_eq!(
        problems,
        [
            "pipeline `pipelines/mchar.toml` has 5 problems".to_string(),
            missing("train_set", "images", "mchar_train"),
            missing("train_set", "labels", "mchar_train.json"),
            missing("val_set", "images", "mchar_val"),
            missing("val_set", "labels", "mchar_val.json"),
            missing("test_set", "images", "mchar_test_a"),
        ]
    );
}

/// The shipped pipeline, shrunk (tiny sets, one-epoch cycles, 32x64
/// input) but otherwise unchanged, in `<tmp>/pipelines/` beside a fake
/// `<tmp>/data/`: it trains, scores val, prints the ladder and copies the
/// submission to `<tmp>/submission.csv`.
#[test]
fn the_mchar_pipeline_runs_on_a_fake_contest_layout() {
    let small = shipped()
        .replace("cycle_epochs = 4", "cycle_epochs = 1")
        .replace(
            "model = { arch = \"resnet-mini\", heads = 6 }",
            "model = { arch = \"resnet-mini\", heads = 6, height = 32, width = 64 }",
        )
        .replace("ratio = 0.05", "ratio = 0.25");
    assert_ne!(small, shipped());
    let p = Project::new("");
    fs::create_dir_all(p.path().join("pipelines")).unwrap();
    fs::write(p.path().join("pipelines/mchar.toml"), &small).unwrap();
    contest_set(p.path(), "mchar_train", 24, 1, true);
    contest_set(p.path(), "mchar_val", 8, 2, true);
    contest_set(p.path(), "mchar_test_a", 10, 3, false);

    let check = p.cli(&["check", "pipelines/mchar.toml"]);
    assert_eq!(
        stdout(&check),
        "pipelines/mchar.toml: ok (10 nodes, 10 instances, 0 expanded per fold)\n",
        "{}",
        stderr(&check)
    );
    let out = p.cli(&["run", "pipelines/mchar.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("10 executed, 0 reused, 0 failed, 0 skipped"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("\nval_ladder: accuracy as the ensemble grows (8 images)\n"),
        "{}",
        stdout(&out)
    );
    let csv = fs::read_to_string(p.path().join("submission.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("file_name,file_code"));
    let names: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("{i:06}.png")).collect();
    assert_eq!(names, want);
    let eval = p.cli(&["path", "pipelines/mchar.toml", "val_eval"]);
    let report = fs::read_to_string(Path::new(stdout(&eval).trim()).join("report.txt")).unwrap();
    assert!(
        report.starts_with("images                  8\n"),
        "{report}"
    );
}
