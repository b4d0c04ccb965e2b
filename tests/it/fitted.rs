//! Ensembles fitted on out-of-fold predictions (`ensemble` with `method =
//! "select"` or `"stack"`) in a pipeline: what they chose, where it is
//! said, that the written order of the members does not change the fit,
//! that a changed fitting parameter reruns only the ensemble, and the
//! errors of members whose out-of-fold predictions do not line up.

use crate::common::{names, stderr, stdout, Project};
use foldwise::artifact::prediction::read_output;
use foldwise::artifact::scores::read_fit;
use foldwise::exec::RunOptions;
use foldwise::predictions::ensemble;

/// Two models (`a`, `b`) trained per fold, each with its predictions of the
/// test plates and its out-of-fold predictions of the training plates;
/// `sel` and `stk` fit on those.
pub const LIBRARY: &str = r#"
[pipeline]
name = "fitted"
seed = 3

[nodes.plates]
kind = "synthetic"
count = 40
max_digits = 3

[nodes.test]
kind = "synthetic"
count = 16
seed = 99
max_digits = 3

[nodes.folds]
kind = "split"
data = "plates"
method = "kfold"
k = 2

[nodes.a]
kind = "train"
data = "plates"
split = "folds"
model = { arch = "svhn-small", height = 32, width = 64 }
epochs = 1
batch = 8

[nodes.b]
kind = "train"
data = "plates"
split = "folds"
seed = 11
model = { arch = "svhn-small", height = 32, width = 64 }
epochs = 2
batch = 8

[nodes.pred_a]
kind = "predict"
models = "a[*]"
data = "test"

[nodes.pred_b]
kind = "predict"
models = "b[*]"
data = "test"

[nodes.oof_a]
kind = "predict"
models = "a"
data = "plates"
oof = "folds"

[nodes.oof_b]
kind = "predict"
models = "b"
data = "plates"
oof = "folds"

[nodes.sel]
kind = "ensemble"
inputs = ["pred_a", "pred_b"]
method = "select"
metric = "log_loss"
oof = ["oof_a[*]", "oof_b[*]"]
labels = "plates"
rounds = 4

[nodes.stk]
kind = "ensemble"
inputs = ["pred_a", "pred_b"]
method = "stack"
oof = ["oof_a[*]", "oof_b[*]"]
labels = "plates"
"#;

fn dir_of(p: &Project, instance: &str) -> std::path::PathBuf {
    p.status()
        .into_iter()
        .find(|s| s.instance == instance)
        .and_then(|s| s.artifact)
        .unwrap_or_else(|| panic!("no artifact for {instance}"))
        .dir
}

#[test]
fn select_and_stack_say_what_they_chose_and_combine_with_it() {
    let p = Project::new(LIBRARY);
    let out = p.cli(&["run", "p.toml", "--no-color"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\nsel: greedy selection with replacement by log_loss, "),
        "{text}"
    );
    assert!(
        text.contains("\nstk: stacking: weights minimising log loss ("),
        "{text}"
    );
    assert!(text.contains("fitted on 40 out-of-fold images"), "{text}");

    let (pa, pb) = (
        read_output(&dir_of(&p, "pred_a")).unwrap(),
        read_output(&dir_of(&p, "pred_b")).unwrap(),
    );
    for node in ["sel", "stk"] {
        let dir = dir_of(&p, node);
        let fit = read_fit(&dir).unwrap();
        assert_eq!(fit.oof_items, 40);
        let positions: Vec<usize> = fit.members.iter().map(|m| m.position).collect();
        assert_eq!(positions, [0, 1]);
        let w: Vec<f64> = fit.members.iter().map(|m| m.weight).collect();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{w:?}");
        assert!(w.iter().all(|x| *x >= 0.0));
        // The ensemble is no worse out of fold than its best member, by
        // the fitted metric (log loss for both here).
        let best = fit
            .members
            .iter()
            .map(|m| m.oof_log_loss)
            .fold(f64::INFINITY, f64::min);
        assert!(fit.oof_log_loss <= best + 1e-9, "{node}: {fit:?}");
        // Its predictions are the members' combined with those weights.
        let got = read_output(&dir).unwrap();
        let want = ensemble::weighted(&[&pa.probs, &pb.probs], &w).unwrap();
        assert_eq!(got.probs, want, "{node}");
        assert_eq!(got.items, pa.items);
        assert_eq!(
            fit.method,
            node.replace("sel", "select").replace("stk", "stack")
        );
    }
    let sel = read_fit(&dir_of(&p, "sel")).unwrap();
    assert_eq!(sel.path.len(), 1 + 4);
    // The history keeps their out-of-fold scores: `log --metric`.
    let out = p.cli(&["log", "--metric", "oof_seq_acc", "--json"]);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["columns"], serde_json::json!(["sel", "stk"]));
    let stk = read_fit(&dir_of(&p, "stk")).unwrap();
    assert_eq!(
        log["runs"][0]["values"],
        serde_json::json!([sel.oof_seq_acc, stk.oof_seq_acc])
    );
    let chosen: usize = sel.members.iter().map(|m| m.chosen.unwrap()).sum();
    assert_eq!(Some(chosen), sel.size);

    // The report names the members by node, with their weights.
    let out = p.cli(&["report", "p.toml", "-o", "report.html"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html = std::fs::read_to_string(p.path().join("report.html")).unwrap();
    assert!(
        html.contains("<h2 id=\"fitted\">Fitted ensembles</h2><h3>sel</h3>"),
        "{html}"
    );
    let row = format!(
        "<tr><td>pred_b</td><td>{:.2}%</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
        100.0 * sel.members[1].oof_seq_acc,
        sel.members[1].oof_log_loss,
        sel.members[1].weight,
        sel.members[1].chosen.unwrap()
    );
    assert!(html.contains(&row), "no {row} in the report");

    // Nothing to do the second time; a fitting parameter reruns only its
    // ensemble.
    assert!(p.run().executed().is_empty());
    p.edit("rounds = 4", "rounds = 6");
    assert_eq!(p.run().executed(), names(&["sel"]));
}

#[test]
fn the_written_order_of_the_members_does_not_change_the_fit() {
    let p = Project::new(LIBRARY);
    p.run();
    let before = read_fit(&dir_of(&p, "stk")).unwrap();
    let probs = std::fs::read(dir_of(&p, "stk").join("probs.fwprobs")).unwrap();
    p.edit(
        "inputs = [\"pred_a\", \"pred_b\"]\nmethod = \"stack\"\noof = [\"oof_a[*]\", \"oof_b[*]\"]",
        "inputs = [\"pred_b\", \"pred_a\"]\nmethod = \"stack\"\noof = [\"oof_b[*]\", \"oof_a[*]\"]",
    );
    assert_eq!(p.run().executed(), names(&["stk"]));
    let after = read_fit(&dir_of(&p, "stk")).unwrap();
    assert_eq!(after.members[0].inputs, before.members[1].inputs);
    assert_eq!(after.members[0].weight, before.members[1].weight);
    assert_eq!(after.members[1].weight, before.members[0].weight);
    assert_eq!(after.oof_log_loss, before.oof_log_loss);
    assert_eq!(
        std::fs::read(dir_of(&p, "stk").join("probs.fwprobs")).unwrap(),
        probs
    );
}

#[test]
fn members_whose_out_of_fold_predictions_differ_are_refused() {
    // `b`'s out-of-fold predictions from a hold-out split cover a quarter
    // of the plates, `a`'s all of them.
    let text = LIBRARY
        .replace(
            "[nodes.b]\nkind = \"train\"\ndata = \"plates\"\nsplit = \"folds\"",
            "[nodes.half]\nkind = \"split\"\ndata = \"plates\"\nmethod = \"holdout\"\nratio = 0.25\n\n[nodes.b]\nkind = \"train\"\ndata = \"plates\"\nsplit = \"half\"",
        )
        .replace("models = \"b\"\ndata = \"plates\"\noof = \"folds\"", "models = \"b\"\ndata = \"plates\"\noof = \"half\"")
        .replace("models = \"b[*]\"", "models = \"b\"")
        .replace("\"oof_b[*]\"", "\"oof_b\"");
    let p = Project::new(&text);
    let r = p.run_with(RunOptions::default());
    assert_eq!(r.failed(), names(&["sel", "stk"]));
    let out = p.cli(&["run", "p.toml", "sel"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("oof: the out-of-fold predictions of inputs[1] (`oof_b`) cover other items than those of inputs[0] (`oof_a[0]`): 10 against 40 items, e.g. item"),
        "{err}"
    );
    assert!(err.contains("[foldwise::ensemble::oof]"), "{err}");
}

/// Bagging: a bootstrap split of 3 bags; each model trains once per bag,
/// its out-of-fold predictions are its bags' out-of-bag ones, an item left
/// out of several bags getting their mean; selection and post-processing
/// fit on them.
#[test]
fn bagged_models_fit_on_their_out_of_bag_predictions() {
    let text = LIBRARY
        .replace(
            "method = \"kfold\"\nk = 2",
            "method = \"bootstrap\"\nbags = 3",
        )
        .replace("[nodes.folds]", "[nodes.bags]")
        .replace("split = \"folds\"", "split = \"bags\"")
        .replace("oof = \"folds\"", "oof = \"bags\"")
        + r#"
[nodes.post]
kind = "postprocess"
predictions = "sel"
steps = ["rules"]
labels = "plates"
oof = ["oof_a[*]"]
"#;
    let p = Project::new(&text);
    let r = p.run();
    assert!(r.failed().is_empty(), "{:?}", r.failed());
    let trained: Vec<String> = r
        .executed()
        .into_iter()
        .filter(|i| i.starts_with("a[") || i.starts_with("b["))
        .collect();
    assert_eq!(
        trained,
        names(&["a[0]", "a[1]", "a[2]", "b[0]", "b[1]", "b[2]"])
    );
    // The items out of at least one bag.
    let bags = dir_of(&p, "bags");
    let mut oob = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeMap::<u64, usize>::new();
    for b in 0..3 {
        let fold: serde_json::Value = serde_json::from_slice(
            &std::fs::read(bags.join(format!("folds/fold-{b}.json"))).unwrap(),
        )
        .unwrap();
        for i in fold["valid"].as_array().unwrap() {
            oob.insert(i.as_u64().unwrap());
            *seen.entry(i.as_u64().unwrap()).or_default() += 1;
        }
    }
    let twice = seen.values().filter(|&&c| c > 1).count();
    assert!(
        twice > 0,
        "no item out of two bags: the mean is not exercised"
    );
    let fit = read_fit(&dir_of(&p, "sel")).unwrap();
    assert_eq!(fit.oof_items, oob.len());
    let post: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir_of(&p, "post").join("postprocess.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(post["oof_items"], oob.len());
}

/// `foldwise table`: one row per model, prediction and ensemble, with the
/// scores their artifacts and their evaluations give, sortable, as text,
/// JSON and CSV, and the same rows in the HTML report.
#[test]
fn the_experiment_table_lists_every_model_prediction_and_ensemble() {
    let text = LIBRARY.to_string()
        + r#"
[nodes.eval_sel]
kind = "evaluate"
predictions = "sel"
data = "test"
"#;
    let p = Project::new(&text);
    // Before any run: every row, not run.
    let out = p.cli(&["table", "p.toml", "--csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let csv = stdout(&out);
    assert!(csv.starts_with(
        "instance,kind,state,seconds,valid_seq_acc,oof_seq_acc,seq_acc,char_acc\na[0],train,not run,,,,,\n"
    ), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 12);

    p.run();
    let out = p.cli(&[
        "table",
        "p.toml",
        "--json",
        "--sort",
        "oof_seq_acc",
        "--desc",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let instances: Vec<&str> = rows
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    // The two fitted ensembles first (they alone have out-of-fold scores;
    // equal scores keep pipeline order), then the rest in pipeline order.
    let (s, k) = (
        read_fit(&dir_of(&p, "sel")).unwrap().oof_seq_acc,
        read_fit(&dir_of(&p, "stk")).unwrap().oof_seq_acc,
    );
    let mut want = if k > s {
        vec!["stk", "sel"]
    } else {
        vec!["sel", "stk"]
    };
    want.extend([
        "a[0]", "a[1]", "b[0]", "b[1]", "pred_a", "pred_b", "oof_a[0]", "oof_a[1]", "oof_b[0]",
        "oof_b[1]",
    ]);
    assert_eq!(instances, want);
    let sel = rows.iter().find(|r| r["instance"] == "sel").unwrap();
    assert_eq!(sel["state"], "computed");
    assert_eq!(
        sel["oof_seq_acc"].as_f64().unwrap(),
        read_fit(&dir_of(&p, "sel")).unwrap().oof_seq_acc
    );
    // From `eval_sel`.
    let eval: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir_of(&p, "eval_sel").join("metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sel["seq_acc"], eval["seq_acc"]);
    assert_eq!(sel["char_acc"], eval["char_acc"]);
    let a0 = rows.iter().find(|r| r["instance"] == "a[0]").unwrap();
    assert!(a0["seconds"].as_f64().unwrap() > 0.0);
    assert!(a0["valid_seq_acc"].is_number());

    let out = p.cli(&["table", "p.toml"]);
    let text = stdout(&out);
    assert!(text.starts_with("instance  kind      state     seconds  valid_seq_acc  oof_seq_acc  seq_acc  char_acc\na[0]      train     computed"), "{text}");
    let out = p.cli(&["table", "p.toml", "--sort", "speed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no column `speed`: the columns are instance, kind, state, seconds,")
    );

    let out = p.cli(&["report", "p.toml", "-o", "r.html"]);
    assert_eq!(out.status.code(), Some(0));
    let html = std::fs::read_to_string(p.path().join("r.html")).unwrap();
    assert!(html.contains("<h2 id=\"experiments\">Experiments</h2><table><tr><th>instance</th>"));
    assert!(html.contains("<tr><td>stk</td><td>ensemble</td><td>computed</td>"));
}
