//! Grids (`matrix`): one instance per combination, each keyed by its own
//! values; references follow, gather and select grid points; `status`,
//! `dag` and `table` show them; a node without `matrix` keeps its key.

use crate::common::{names, stdout, Project};

/// 40 plates, a hold-out split, a 2×2 grid of tiny trainings, and
/// predictions that gather every point, select `seed = 2`, and follow.
fn grid_pipeline(lrs: &str) -> String {
    format!(
        r#"
[pipeline]
name = "grid"
seed = 7

[nodes.plates]
kind = "synthetic"
count = 40
max_digits = 5

[nodes.folds]
kind = "split"
data = "plates"
method = "holdout"
ratio = 0.5

[nodes.model]
kind = "train"
data = "plates"
split = "folds"
model = {{ arch = "svhn-small", height = 32, width = 64 }}
epochs = 1
batch = 8
matrix = {{ seed = [1, 2], "optimizer.lr" = [{lrs}] }}

[nodes.all]
kind = "predict"
models = "model[*]"
data = "plates"
batch = 8

[nodes.two]
kind = "predict"
models = "model[seed=2]"
data = "plates"
batch = 8

[nodes.ens]
kind = "ensemble"
inputs = ["two[*]"]
"#
    )
}

#[test]
fn a_grid_runs_each_point_once_and_a_new_value_only_the_new_points() {
    let p = Project::new(&grid_pipeline("0.001, 0.003"));
    let first = p.run();
    assert!(first.failed().is_empty(), "{:?}", first.failed());
    assert_eq!(
        first.executed(),
        names(&[
            "plates",
            "folds",
            "model[seed=1,lr=0.001]",
            "model[seed=1,lr=0.003]",
            "model[seed=2,lr=0.001]",
            "model[seed=2,lr=0.003]",
            "all",
            "two[seed=2,lr=0.001]",
            "two[seed=2,lr=0.003]",
            "ens",
        ])
    );
    let second = p.run();
    assert!(second.executed().is_empty(), "{:?}", second.executed());

    // The gather reads every point, the selection the seed-2 points only.
    let pl = foldwise::config::load(&p.pipeline(), foldwise::nodes::KINDS).unwrap();
    let inputs = |name: &str| -> Vec<String> {
        let i = pl.instance(name).unwrap();
        pl.instances[i]
            .inputs
            .iter()
            .filter(|e| e.param == "models" || e.param == "inputs")
            .map(|e| pl.instances[e.from].name.clone())
            .collect()
    };
    assert_eq!(inputs("all").len(), 4);
    assert_eq!(inputs("two[seed=2,lr=0.003]"), ["model[seed=2,lr=0.003]"]);
    assert_eq!(
        inputs("ens"),
        ["two[seed=2,lr=0.001]", "two[seed=2,lr=0.003]"]
    );
    // Each point runs with its own values.
    let i = pl.instance("model[seed=2,lr=0.003]").unwrap();
    assert_eq!(pl.seed(&pl.instances[i]), 2);
    assert_eq!(pl.params(&pl.instances[i])["optimizer"]["lr"], 0.003);

    // A third learning rate: the two new points, and what reads them.
    p.write(&grid_pipeline("0.001, 0.003, 0.01"));
    let third = p.run();
    assert_eq!(
        third.executed(),
        names(&[
            "model[seed=1,lr=0.01]",
            "model[seed=2,lr=0.01]",
            "all",
            "two[seed=2,lr=0.01]",
            "ens",
        ])
    );
    assert_eq!(third.reused().len(), 8, "{:?}", third.reused());
}

#[test]
fn status_dag_and_table_show_the_grid() {
    let p = Project::new(&grid_pipeline("0.001, 0.003"));
    let dag = stdout(&p.cli(&["dag", "p.toml"]));
    assert!(
        dag.contains("model[seed=2,lr=0.003] (train) <- data: plates, split: folds"),
        "{dag}"
    );
    assert!(
        dag.contains("all (predict) <- models: model[*], data: plates"),
        "{dag}"
    );
    assert!(
        dag.contains(
            "two[seed=2,lr=0.001] (predict) <- models: model[seed=2,lr=0.001], data: plates"
        ),
        "{dag}"
    );
    let status = stdout(&p.cli(&["status", "p.toml"]));
    for name in ["model[seed=1,lr=0.001]", "two[seed=2,lr=0.003]"] {
        assert!(status.contains(name), "{status}");
    }
    let out = p.cli(&["table", "p.toml", "--csv"]);
    let csv = stdout(&out);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "instance,kind,state,seconds,valid_seq_acc,oof_seq_acc,seq_acc,char_acc,seed,lr"
    );
    assert!(
        csv.contains("\n\"model[seed=2,lr=0.003]\",train,not run,,,,,,2,0.003\n"),
        "{csv}"
    );
    assert!(csv.contains("\nall,predict,not run,,,,,,,\n"), "{csv}");
    let sorted = stdout(&p.cli(&["table", "p.toml", "--sort", "lr", "--desc", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(&sorted).unwrap();
    assert_eq!(rows[0]["grid"]["lr"], 0.003, "{sorted}");
    assert_eq!(rows[0]["grid"]["seed"], 1, "{sorted}");
}

/// Grids with folds: `name[values][fold]`; following keeps the point and
/// the fold; a pick `[i]` is the fold of each point.
#[test]
fn grids_compose_with_folds() {
    let p = Project::new(
        r#"
[nodes.plates]
kind = "synthetic"
count = 40

[nodes.folds]
kind = "split"
data = "plates"
k = 2

[nodes.model]
kind = "train"
data = "plates"
split = "folds"
matrix = { "model.arch" = ["svhn-small", "resnet-mini"] }

[nodes.pred]
kind = "predict"
models = "model"
data = "plates"

[nodes.first]
kind = "predict"
models = "model[arch=svhn-small][0]"
data = "plates"
"#,
    );
    let pl = foldwise::config::load(&p.pipeline(), foldwise::nodes::KINDS).unwrap();
    let all: Vec<&str> = pl.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        all,
        [
            "plates",
            "folds",
            "model[arch=\"svhn-small\"][0]",
            "model[arch=\"svhn-small\"][1]",
            "model[arch=\"resnet-mini\"][0]",
            "model[arch=\"resnet-mini\"][1]",
            "pred[arch=\"svhn-small\"][0]",
            "pred[arch=\"svhn-small\"][1]",
            "pred[arch=\"resnet-mini\"][0]",
            "pred[arch=\"resnet-mini\"][1]",
            "first[arch=\"svhn-small\"]",
        ]
    );
    let i = pl.instance("pred[arch=\"resnet-mini\"][1]").unwrap();
    let from = pl.instances[i].inputs[0].from;
    assert_eq!(pl.instances[from].name, "model[arch=\"resnet-mini\"][1]");
    let i = pl.instance("first[arch=\"svhn-small\"]").unwrap();
    let from = pl.instances[i].inputs[0].from;
    assert_eq!(pl.instances[from].name, "model[arch=\"svhn-small\"][0]");
}

/// A node without `matrix` hashes exactly what it hashed before grids
/// existed: these keys were recorded with the binary of the commit before
/// grids, and a grid node beside them changes none of them.
#[test]
fn a_node_without_matrix_keeps_its_key() {
    const RECORDED: &[(&str, &str)] = &[
        (
            "plates",
            "ff1883694759c45e840ef51253e834b93c8585d7389e719dfff53ff3c81c6701",
        ),
        (
            "folds",
            "1dbddd600a044c6f64bb64045fb1ce098cd0b99cbdc9fa92c406cb76d1c4503e",
        ),
        (
            "cnn[0]",
            "3d7cfcc61edca3a63dadf893ed09704105b8281430ac3212933f07ac0eb34997",
        ),
        (
            "cnn[1]",
            "d86b2b14ab80a3a748f68bd41f1006cbc76829a1910f988b22f87502ed05b02f",
        ),
    ];
    let text = r#"
[pipeline]
name = "keys"
seed = 7

[nodes.plates]
kind = "synthetic"
count = 40
max_digits = 5

[nodes.folds]
kind = "split"
data = "plates"
k = 2

[nodes.cnn]
kind = "train"
data = "plates"
split = "folds"
model = { arch = "svhn-small", height = 32, width = 64 }
epochs = 1
batch = 8
seed = 3
"#;
    let with_grid = format!(
        "{text}\n[nodes.other]\nkind = \"synthetic\"\ncount = 20\nmatrix = {{ seed = [1, 2] }}\n"
    );
    for pipeline in [text.to_string(), with_grid] {
        let p = Project::new(&pipeline);
        let r = p.run();
        assert!(r.failed().is_empty(), "{:?}", r.failed());
        let keys: Vec<(String, String)> = p
            .status()
            .into_iter()
            .filter(|s| RECORDED.iter().any(|(n, _)| *n == s.instance))
            .map(|s| (s.instance, s.key.expect("a fresh instance has a key")))
            .collect();
        let want: Vec<(String, String)> = RECORDED
            .iter()
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect();
        assert_eq!(keys, want);
    }
}

/// 40 plates, a 2-fold split, a k-fold training per seed of `seeds`, and a
/// prediction per seed that gathers that seed's folds (`model[each][*]`).
fn each_pipeline(seeds: &str) -> String {
    format!(
        r#"
[pipeline]
name = "each"
seed = 7

[nodes.plates]
kind = "synthetic"
count = 40
max_digits = 5

[nodes.folds]
kind = "split"
data = "plates"
k = 2

[nodes.model]
kind = "train"
data = "plates"
split = "folds"
model = {{ arch = "svhn-small", height = 32, width = 64 }}
epochs = 1
batch = 8
matrix = {{ seed = [{seeds}] }}

[nodes.pred]
kind = "predict"
models = "model[each][*]"
data = "plates"
batch = 8
"#
    )
}

/// `model[each][*]`: one instance per grid point, each reading every fold
/// of its point; a second run computes nothing, a new seed only its own
/// folds and its prediction.
#[test]
fn each_grid_point_gathers_its_own_folds() {
    let p = Project::new(&each_pipeline("1, 2"));
    let pl = foldwise::config::load(&p.pipeline(), foldwise::nodes::KINDS).unwrap();
    let all: Vec<&str> = pl.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        all,
        [
            "plates",
            "folds",
            "model[seed=1][0]",
            "model[seed=1][1]",
            "model[seed=2][0]",
            "model[seed=2][1]",
            "pred[seed=1]",
            "pred[seed=2]",
        ]
    );
    let models = |name: &str| -> Vec<String> {
        let i = pl.instance(name).unwrap();
        pl.instances[i]
            .inputs
            .iter()
            .filter(|e| e.param == "models")
            .map(|e| pl.instances[e.from].name.clone())
            .collect()
    };
    assert_eq!(
        models("pred[seed=1]"),
        ["model[seed=1][0]", "model[seed=1][1]"]
    );
    assert_eq!(
        models("pred[seed=2]"),
        ["model[seed=2][0]", "model[seed=2][1]"]
    );
    let dag = stdout(&p.cli(&["dag", "p.toml"]));
    assert!(
        dag.contains(
            "pred[seed=2] (predict) <- models: model[seed=2][0] (gathered), \
             models: model[seed=2][1] (gathered), data: plates"
        ),
        "{dag}"
    );

    let first = p.run();
    assert!(first.failed().is_empty(), "{:?}", first.failed());
    assert_eq!(first.executed(), names(&all));
    let second = p.run();
    assert!(second.executed().is_empty(), "{:?}", second.executed());

    p.write(&each_pipeline("1, 2, 3"));
    let third = p.run();
    assert!(third.failed().is_empty(), "{:?}", third.failed());
    assert_eq!(
        third.executed(),
        names(&["model[seed=3][0]", "model[seed=3][1]", "pred[seed=3]"])
    );
    assert_eq!(third.reused().len(), all.len(), "{:?}", third.reused());
}
