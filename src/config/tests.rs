//! Unit tests of the loader on valid and invalid pipelines (the rendered
//! diagnostics themselves are golden-tested in `tests/it/diagnostics.rs`).

use serde_json::json;

use super::testkinds::load;
use super::*;

const CHAIN: &str = r#"
[pipeline]
name = "chain"
seed = 42

[nodes.ens]
kind = "ensemble"
members = ["cnn[*]"]
inputs = { best = "cnn[1]", fold0 = "folds[0]", all = "folds[*]" }

[nodes.plates]
kind = "synthetic"
count = 10

[nodes.cnn]
kind = "train"
split = "folds"
seed = 7

[nodes.folds]
kind = "split"
data = "plates"
k = 3

[nodes.pred]
kind = "ensemble"
inputs = { model = "cnn" }
"#;

fn names(p: &Pipeline) -> Vec<&str> {
    p.instances.iter().map(|i| i.name.as_str()).collect()
}

/// Plates `p` and a 2-fold split `s` of them.
const FOLDS: &str = "[nodes.p]\nkind = \"synthetic\"\ncount = 5\n[nodes.s]\nkind = \"split\"\ndata = \"p\"\nk = 2\n";
/// [`FOLDS`] and a per-fold `t` trained on them.
const TRAIN: &str = "[nodes.p]\nkind = \"synthetic\"\ncount = 5\n[nodes.s]\nkind = \"split\"\ndata = \"p\"\nk = 2\n[nodes.t]\nkind = \"train\"\nsplit = \"s\"\n";

/// The one problem of `src`.
fn only_problem(src: &str) -> Problem {
    let err = load(src).expect_err("expected a problem");
    match err.problems() {
        [p] => p.clone(),
        _ => panic!("{}", render_diagnostic(&err, false, 100)),
    }
}

fn codes(src: &str) -> Vec<Code> {
    match load(src) {
        Ok(_) => panic!("expected problems"),
        Err(e) => e.problems().iter().map(|p| p.code).collect(),
    }
}

#[test]
fn expansion_and_topological_order() {
    let p = load(CHAIN).unwrap_or_else(|e| panic!("{}", render_diagnostic(&e, false, 100)));
    assert_eq!(p.name, "chain");
    assert_eq!(p.seed, 42);
    assert_eq!(
        names(&p),
        ["plates", "folds", "cnn[0]", "cnn[1]", "cnn[2]", "ens", "pred[0]", "pred[1]", "pred[2]"]
    );
    let cnn = &p.nodes[p.instances[2].node];
    assert_eq!((cnn.fan, cnn.parts, cnn.seed), (Some(3), None, 7));
    let folds = &p.nodes[p.instances[1].node];
    assert_eq!((folds.fan, folds.parts, folds.seed), (None, Some(3), 42));
    for i in 0..3 {
        let inst = &p.instances[2 + i];
        assert_eq!(inst.fold, Some(i));
        assert_eq!(inst.inputs.len(), 1);
        let e = &inst.inputs[0];
        assert_eq!(
            (e.param.as_str(), e.from, e.part, e.mode),
            ("split", 1, Some(i), RefMode::Follow)
        );
        // A node following an expanded node goes to the same fold.
        let pred = &p.instances[6 + i];
        assert_eq!(pred.fold, Some(i));
        let e = &pred.inputs[0];
        assert_eq!(
            (e.param.as_str(), e.from, e.part),
            ("inputs.model", 2 + i, None)
        );
    }
    // Gathering and picking do not expand; edges in parameter order, maps
    // by key, lists in list order.
    let ens = &p.instances[5];
    assert_eq!(ens.fold, None);
    let edges: Vec<(&str, usize, Option<usize>, RefMode)> = ens
        .inputs
        .iter()
        .map(|e| (e.param.as_str(), e.from, e.part, e.mode))
        .collect();
    assert_eq!(
        edges,
        [
            ("members", 2, None, RefMode::Gather),
            ("members", 3, None, RefMode::Gather),
            ("members", 4, None, RefMode::Gather),
            ("inputs.all", 1, None, RefMode::Gather),
            ("inputs.best", 3, None, RefMode::Pick(1)),
            ("inputs.fold0", 1, Some(0), RefMode::Pick(0)),
        ]
    );
    assert_eq!(p.instance("cnn[1]"), Some(3));
    let cnn = p.node("cnn").unwrap();
    let of_cnn: Vec<usize> = (0..p.instances.len())
        .filter(|&i| p.instances[i].node == cnn)
        .collect();
    assert_eq!(of_cnn, [2, 3, 4]);
    assert!(format!("{p:?}").contains("kind: \"train\""));
    // Every edge points backwards.
    for (i, inst) in p.instances.iter().enumerate() {
        assert!(inst.inputs.iter().all(|e| e.from < i), "{}", inst.name);
    }
}

#[test]
fn independent_nodes_keep_file_order() {
    let p = load(
        r#"
[nodes.b]
kind = "synthetic"
count = 1
[nodes.user]
kind = "ensemble"
members = ["c", "b"]
[nodes.a]
kind = "synthetic"
count = 1
[nodes.c]
kind = "synthetic"
count = 1
"#,
    )
    .unwrap();
    assert_eq!(names(&p), ["b", "a", "c", "user"]);
    let from: Vec<usize> = p.instances[3].inputs.iter().map(|e| e.from).collect();
    assert_eq!(from, [2, 0]);
}

#[test]
fn defaults_are_filled_and_optional_params_left_out() {
    let p = load("[nodes.plates]\nkind = \"synthetic\"\ncount = 5\n[nodes.d]\nkind = \"dataset\"\nimages = \"img\"\n").unwrap();
    let params = &p.nodes[0].params;
    assert_eq!(params["count"], json!(5));
    assert_eq!(params["min_digits"], json!(1));
    assert_eq!(params["rotation"], json!(6.0));
    assert_eq!(params["styles"].as_array().map(Vec::len), Some(5));
    let d = &p.nodes[1].params;
    assert_eq!(
        d,
        &json!({"images": "img", "labels_format": "auto", "unlabelled": "error"})
    );
    assert_eq!(p.name, "test", "the default name is the file stem");
    assert_eq!(p.seed, 0);
    assert_eq!(p.base_dir, Path::new("/base"));
}

#[test]
fn integers_become_floats_where_a_float_is_expected() {
    let a = load(
        "[nodes.p]\nkind = \"synthetic\"\ncount = 5\nrotation = 6\nlength_weights = [1, 2, 0.5, 0, 0, 0]\n",
    )
    .unwrap();
    let b = load("[nodes.p]\nkind = \"synthetic\"\ncount = 5\nrotation = 6.0\nlength_weights = [1.0, 2.0, 0.5, 0.0, 0.0, 0.0]\n").unwrap();
    assert_eq!(a.nodes[0].params, b.nodes[0].params);
    let text = serde_json::to_string(&a.nodes[0].params).unwrap();
    assert!(text.contains("\"rotation\":6.0"), "{text}");
    assert!(
        text.contains("\"length_weights\":[1.0,2.0,0.5,0.0,0.0,0.0]"),
        "{text}"
    );
}

#[test]
fn writing_a_default_explicitly_changes_nothing() {
    let a = load("[nodes.p]\nkind = \"synthetic\"\ncount = 5\n").unwrap();
    let b = load("[nodes.p]\nkind = \"synthetic\"\ncount = 5\nmin_digits = 1\nblur = 1\nstyles = [\"sans\", \"serif\", \"condensed\", \"segment\", \"rounded\"]\n").unwrap();
    assert_eq!(a.nodes[0].params, b.nodes[0].params);
}

#[test]
fn canonical_is_applied() {
    let p = load(
        "[nodes.p]\nkind = \"synthetic\"\ncount = 5\n[nodes.s]\nkind = \"split\"\ndata = \"p\"\nmethod = \"holdout\"\nk = 9\n",
    )
    .unwrap();
    assert_eq!(
        p.nodes[1].params,
        json!({"data": "p", "method": "holdout", "ratio": 0.2, "stratify": true})
    );
    assert_eq!(p.nodes[1].parts, None);
}

#[test]
fn nested_tables_inline_dotted_and_defaulted() {
    let base = FOLDS;
    let train = |rest: &str| {
        load(&format!(
            "{base}[nodes.t]\nkind = \"train\"\nsplit = \"s\"\n{rest}"
        ))
        .unwrap()
    };
    let absent = train("");
    let inline = train("model = { arch = \"small\", dropout = 0.25 }\nlr = 1.0\n");
    let dotted = train("model.arch = \"small\"\nmodel.heads = 5\n");
    let header = train("[nodes.t.model]\narch = \"small\"\n");
    let want = json!({"split": "s", "model": {"arch": "small", "heads": 5, "dropout": 0.25}, "lr": 1.0, "epochs": 3});
    for p in [&absent, &inline, &dotted, &header] {
        assert_eq!(p.nodes[2].params, want);
    }
}

/// The one problem of [`TRAIN`] followed by `extra`: its code, message,
/// the text its first label points at, and its help.
fn train_problem(extra: &str) -> (Code, String, String, Option<String>) {
    let src = format!("{TRAIN}{extra}");
    let p = only_problem(&src);
    let at = src[p.labels[0].0.clone()].to_string();
    (p.code, p.message, at, p.help)
}

/// `train_problem`'s expected value.
fn expect(
    code: Code,
    message: &str,
    at: &str,
    help: Option<&str>,
) -> (Code, String, String, Option<String>) {
    (code, message.into(), at.into(), help.map(Into::into))
}

#[test]
fn nested_problems() {
    assert_eq!(
        train_problem("model = { arch = \"small\", head = 4 }\n"),
        expect(
            Code::UnknownKey,
            "unknown key `head` for `model`",
            "head",
            Some("did you mean `heads`?")
        )
    );

    let (code, message, ..) = train_problem("model.heads = 2\n");
    assert_eq!(code, Code::MissingParam);
    assert_eq!(message, "missing parameter `model.arch` for `model`");

    assert_eq!(codes(&format!("{TRAIN}model = 3\n")), [Code::Type]);
    assert_eq!(
        codes(&format!(
            "{TRAIN}model = {{ arch = \"big\", dropout = 1 }}\n"
        )),
        [Code::Choice, Code::Range]
    );
}

#[test]
fn check_issues_point_at_the_value_or_the_header() {
    assert_eq!(
        train_problem("model = { arch = \"small\", heads = 6 }\n"),
        expect(
            Code::Check,
            "node `t`: the small model has at most 5 heads",
            "6",
            Some("use `arch = \"resnet-mini\"`")
        )
    );

    assert_eq!(train_problem("epochs = 13\n").2, "13");

    // `model.arch` is not written (defaulted): the node header is blamed.
    let src = format!("{TRAIN}epochs = 14\n");
    let p = only_problem(&src);
    assert_eq!(p.labels[0].1.as_deref(), Some("`model.arch`"));
    assert_eq!(&src[p.labels[0].0.clone()], "[nodes.t]");
}

#[test]
fn references_problems() {
    let base = "[nodes.p]\nkind = \"synthetic\"\ncount = 5\n[nodes.s]\nkind = \"split\"\ndata = \"p\"\nk = 3\n";
    let with = |extra: &str| format!("{base}[nodes.e]\nkind = \"ensemble\"\n{extra}\n");
    assert_eq!(codes(&with("members = [\"q\"]")), [Code::MissingNode]);
    assert_eq!(codes(&with("members = [\"p[a]\"]")), [Code::BadRef]);
    assert_eq!(codes(&with("members = [\"p[0]\"]")), [Code::SingleInstance]);
    assert_eq!(codes(&with("members = [\"s[3]\"]")), [Code::PickRange]);
    assert_eq!(codes(&with("members = [\"e\"]")), [Code::Cycle]);
    assert!(load(&with("members = [\"s[2]\", \"s[*]\", \"p\"]")).is_ok());
}

/// `t[each][*]`: one instance per grid point of `t`, each gathering that
/// point's folds, also when the gathering node runs per fold itself.
#[test]
fn grid_each_follows_the_points_and_gathers_their_folds() {
    let src = format!(
        "{TRAIN}matrix = {{ seed = [1, 2] }}\n\
         [nodes.e]\nkind = \"ensemble\"\nmembers = [\"t[each][*]\"]\n\
         [nodes.f]\nkind = \"ensemble\"\ninputs = {{ m = \"t[each][*]\", s = \"s\" }}\n"
    );
    let p = load(&src).unwrap_or_else(|e| panic!("{}", render_diagnostic(&e, false, 100)));
    assert_eq!(
        names(&p),
        [
            "p",
            "s",
            "t[seed=1][0]",
            "t[seed=1][1]",
            "t[seed=2][0]",
            "t[seed=2][1]",
            "e[seed=1]",
            "e[seed=2]",
            "f[seed=1][0]",
            "f[seed=1][1]",
            "f[seed=2][0]",
            "f[seed=2][1]",
        ]
    );
    let reads = |name: &str, param: &str| -> Vec<(&str, RefMode)> {
        let i = p.instance(name).unwrap();
        p.instances[i]
            .inputs
            .iter()
            .filter(|e| e.param == param)
            .map(|e| (p.instances[e.from].name.as_str(), e.mode))
            .collect()
    };
    let g = RefMode::Gather;
    assert_eq!(
        reads("e[seed=2]", "members"),
        [("t[seed=2][0]", g), ("t[seed=2][1]", g)]
    );
    // A per-fold gatherer reads every fold of its point, not its own.
    assert_eq!(
        reads("f[seed=1][1]", "inputs.m"),
        [("t[seed=1][0]", g), ("t[seed=1][1]", g)]
    );
    let i = p.instance("e[seed=1]").unwrap();
    assert_eq!(p.instances[i].grid, [("seed".to_string(), json!(1))]);
    assert_eq!(p.instances[i].point, None);

    // `[each]` before anything but `[*]`, or on a node without a grid.
    let with = |r: &str| {
        format!("{TRAIN}matrix = {{ seed = [1, 2] }}\n[nodes.e]\nkind = \"ensemble\"\nmembers = [\"{r}\"]\n")
    };
    assert_eq!(codes(&with("t[each]")), [Code::Grid]);
    assert_eq!(codes(&with("t[each][0]")), [Code::Grid]);
    assert_eq!(codes(&with("s[each][*]")), [Code::Grid]);
    let one = format!("{FOLDS}[nodes.g]\nkind = \"synthetic\"\ncount = 5\nmatrix = {{ seed = [1, 2] }}\n[nodes.e]\nkind = \"ensemble\"\nmembers = [\"g[each][*]\"]\n");
    assert_eq!(codes(&one), [Code::SingleInstance]);
}

/// A bad grid value reads as the same value written in place: the same
/// code, message and help (the parameter's doc), at the value.
#[test]
fn a_bad_grid_value_reads_as_written_in_place() {
    let cases = [
        ("lr = -0.5", "matrix = { lr = [0.1, -0.5] }"),
        ("epochs = \"2\"", "matrix = { epochs = [1, \"2\"] }"),
        (
            "model = { arch = \"small\", heads = 9 }",
            "matrix = { \"model.heads\" = [9] }",
        ),
        (
            "model = { arch = \"small\", heads = 9 }",
            "matrix = { model = { heads = [9] } }",
        ),
        (
            "model = { arch = \"huge\" }",
            "matrix = { \"model.arch\" = [\"huge\"] }",
        ),
        (
            "model = { arch = \"smal\" }",
            "matrix = { \"model.arch\" = [\"smal\"] }",
        ),
    ];
    for (in_place, grid) in cases {
        let (code, message, at, help) = train_problem(&format!("{in_place}\n"));
        assert!(help.is_some(), "{in_place}");
        assert_eq!(
            train_problem(&format!("{grid}\n")),
            (code, message, at, help),
            "{grid}"
        );
    }
}

#[test]
fn an_exact_node_name_wins_over_the_bracket_forms() {
    let p = load("[nodes.\"x[1]\"]\nkind = \"synthetic\"\ncount = 1\n[nodes.e]\nkind = \"ensemble\"\nmembers = [\"x[1]\"]\n").unwrap();
    assert_eq!(p.instances[1].inputs[0].from, 0);
    assert_eq!(p.instances[1].inputs[0].mode, RefMode::Follow);
}

#[test]
fn any_accepts_anything() {
    let p = load(
        "[nodes.e]\nkind = \"ensemble\"\nextra = { a = [1, \"two\", 3.5], when = 1979-05-27 }\n",
    )
    .unwrap();
    assert_eq!(
        p.nodes[0].params["extra"],
        json!({"a": [1, "two", 3.5], "when": "1979-05-27"})
    );
}

#[test]
fn odd_files_never_panic_and_always_point_somewhere() {
    let cases = [
        "",
        "[[nodes]]\nkind = 1\n",
        "nodes = 3\n",
        "pipeline = 3\n",
        "[pipeline]\nname = 1\nseed = 1.5\n",
        "[nodes.x]\nkind = 1\n",
        "[nodes.x]\nkind = \"synthetic\"\ncount = 1e400\n",
        "[nodes.x]\nkind = \"synthetic\"\ncount = 1\nrotation = nan\n",
        "[nodes.x]\nkind = \"synthetic\"\ncount = 1\nrotation = inf\n",
        "[nodes.x]\nkind = \"synthetic\"\ncount = 1\n[[nodes.x.styles]]\na = 1\n",
        "[nodes.\"\"]\nkind = \"synthetic\"\ncount = 1\n",
        "[nodes.e]\nkind = \"ensemble\"\nmembers = [\"\"]\n",
        "[nodes.x]\nkind = \"synthetic\"\ncount = 9223372036854775807\nmin_digits = -9223372036854775808\n",
        "\u{feff}[nodes.x]\nkind = \"synthetic\"\ncount = 1\n",
        "[nodes.x]\nkind = \"synthétique\"\n",
        "a = \"unterminated",
    ];
    for src in cases {
        match load(src) {
            Ok(p) => assert!(src.is_empty() || !p.nodes.is_empty(), "{src:?}"),
            Err(e) => {
                assert!(!e.problems().is_empty(), "{src:?}");
                for p in e.problems() {
                    assert!(!p.labels.is_empty(), "{src:?}: {}", p.message);
                    assert!(p.labels.iter().all(|l| l.0.end <= src.len()), "{src:?}");
                }
                let _ = render_diagnostic(&e, false, 100);
                let _ = render_diagnostic(&e, true, 40);
            }
        }
    }
}

#[test]
fn codes_are_stable_strings() {
    for c in Code::ALL {
        assert!(c.as_str().starts_with("pipeline::"));
    }
    assert_eq!(Code::UnknownKind.to_string(), "pipeline::unknown_kind");
}

#[test]
fn load_reads_files_and_uses_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quick.toml");
    std::fs::write(&path, "[nodes.p]\nkind = \"synthetic\"\ncount = 2\n").unwrap();
    let p = load_path(&path);
    assert_eq!(p.name, "quick");
    assert_eq!(p.base_dir, dir.path());
    assert_eq!(p.path, path);
}

fn load_path(path: &Path) -> Pipeline {
    super::load(path, super::testkinds::KINDS)
        .unwrap_or_else(|e| panic!("{}", render_diagnostic(&e, false, 100)))
}
