//! The JSON Schema of the pipeline format (`foldwise schema`), checked by a
//! real validator: Taplo's CLI (`taplo check --schema`, installed by
//! `.ci/run`; the Taplo tests are listed as ignored unless
//! `FOLDWISE_FULL_SUITE=1`, and then fail where it is missing).
//! Every example pipeline passes it; every bad fixture that a schema can
//! express fails it, with the expected complaint; the committed
//! docs/foldwise.schema.json is the current output; and the schema lists
//! the same parameters with the same defaults as `foldwise kinds`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::stdout;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn foldwise(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_foldwise"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "foldwise {args:?} failed");
    stdout(&out)
}

/// Bad fixtures whose problem the schema states, with a piece of Taplo's
/// complaint.
const EXPRESSIBLE: &[(&str, &str)] = &[
    ("cache_remote", "does not match"),
    ("choice", r#""kfolds" is not one of"#),
    ("count_zero", "less than the minimum of 1"),
    ("device", r#""gpu:0" does not match"#),
    ("empty", r#""nodes" is a required property"#),
    ("eof_syntax", "invalid TOML"),
    (
        "grid_empty_axis",
        "[] is not valid under any of the schemas",
    ),
    ("grid_not_a_list", "3 is not valid under any of the schemas"),
    ("invalid_name", "does not match"),
    ("k_too_small", "less than the minimum of 2"),
    ("list_element", r#""gothic" is not one of"#),
    ("map_value_type", r#"3 is not of type "string""#),
    ("missing_kind", r#""kind" is a required property"#),
    ("missing_param", r#""data" is a required property"#),
    ("no_cascade", "less than the minimum of 2"),
    ("node_not_table", r#"is not of type "object""#),
    // Its unknown `fold`; the missing paths are beyond a schema.
    ("paths-missing", "'fold' was unexpected"),
    (
        "ratio_out_of_range",
        "less than or equal to the minimum of 0.0",
    ),
    ("several", r#""comand" is not one of"#),
    ("syntax", "invalid TOML"),
    ("type_mismatch", r#""3000" is not of type "integer""#),
    ("unknown_kind", r#""synthtic" is not one of"#),
    ("unknown_param", "'cout' was unexpected"),
    ("unknown_pipeline_key", "'sed' was unexpected"),
    ("unknown_table", "'node' was unexpected"),
];

/// Bad fixtures a schema cannot express, and why: they depend on other
/// nodes of the file (references, the graph), or on a kind's own `check`.
const NOT_EXPRESSIBLE: &[(&str, &str)] = &[
    (
        "ensemble_fit",
        "an ensemble's own check (`select`/`stack` need one `oof` per input and `labels`)",
    ),
    (
        "bad_ref",
        "`x[a]` could be an exact node name: only the file's node names tell",
    ),
    (
        "check_command",
        "a kind's own check (`argv` xor `shell`, reserved env names)",
    ),
    (
        "check_synthetic",
        "a kind's own check (min_digits <= max_digits, height order)",
    ),
    ("cycle", "the graph"),
    (
        "duplicate_instance",
        "the graph: a declared name equals an expanded instance",
    ),
    ("fan_mismatch", "the graph: fold counts of the inputs"),
    (
        "gather_single",
        "the graph: gathering a node that runs once",
    ),
    ("missing_node", "a reference to a node the file lacks"),
    (
        "grid_each",
        "the graph: whether the node `[each][*]` names has a grid and runs per fold",
    ),
    (
        "grid_reference_axis",
        "a grid axis is a dotted path checked against the kind's parameters",
    ),
    (
        "grid_selection",
        "selections name other nodes' grid values; setting a parameter and varying it needs both places",
    ),
    (
        "grid_too_many",
        "the product of the axes' lengths and the folds of the split",
    ),
    (
        "grid_unknown_axis",
        "a grid axis is a dotted path checked against the kind's parameters",
    ),
    (
        "grid_value",
        "a grid value is checked against the parameter its axis names",
    ),
    (
        "pick_out_of_range",
        "the graph: the picked node's instance count",
    ),
    ("self_reference", "the graph"),
    ("wrong_kind", "the referenced node's kind"),
];

/// Taplo's CLI; fails where it is missing (the tests that call it are
/// ignored unless `FOLDWISE_FULL_SUITE=1`, which `.ci/run` sets after
/// installing it). The npm build of taplo 0.9 prints its version but exits
/// with 1, so the version line is what tells it is there.
fn taplo() -> &'static str {
    let ok = Command::new("taplo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"taplo "));
    assert!(ok, "`taplo` is not installed (`npm install -g @taplo/cli`)");
    "taplo"
}

/// Runs `taplo check` on `file` against the committed schema, without any
/// configuration file; returns (passed, output).
fn taplo_check(taplo: &str, file: &Path) -> (bool, String) {
    let schema = format!(
        "file://{}",
        root().join("docs/foldwise.schema.json").display()
    );
    let out = Command::new(taplo)
        .args(["check", "--no-auto-config", "--colors", "never", "--schema"])
        .arg(&schema)
        .arg(file)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_committed_schema_is_the_current_one() {
    let committed = std::fs::read_to_string(root().join("docs/foldwise.schema.json")).unwrap();
    let generated = foldwise(&["schema"]);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(root().join("docs/foldwise.schema.json"), &generated).unwrap();
        return;
    }
    assert!(
        committed == generated,
        "docs/foldwise.schema.json is out of date: run UPDATE_GOLDEN=1 cargo test --test it schema"
    );
}

#[test]
#[cfg_attr(not(full_suite), ignore = "needs taplo (npm install -g @taplo/cli)")]
fn taplo_accepts_every_example_pipeline() {
    let taplo = taplo();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small_quickstart.toml");
    std::fs::write(&small, crate::folds::small_quickstart()).unwrap();
    files.push(small);
    for f in &files {
        let (ok, text) = taplo_check(taplo, f);
        assert!(ok, "{} fails the schema:\n{text}", f.display());
    }
}

#[test]
#[cfg_attr(not(full_suite), ignore = "needs taplo (npm install -g @taplo/cli)")]
fn taplo_rejects_every_bad_fixture_a_schema_can_express() {
    let taplo = taplo();
    let dir = root().join("tests/fixtures/bad");
    let mut fixtures: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    fixtures.sort();
    let mut listed: Vec<String> = EXPRESSIBLE
        .iter()
        .chain(NOT_EXPRESSIBLE)
        .map(|(n, _)| n.to_string())
        .collect();
    listed.sort();
    assert_eq!(fixtures, listed, "every bad fixture is listed exactly once");
    for (name, expected) in EXPRESSIBLE {
        let (ok, text) = taplo_check(taplo, &dir.join(format!("{name}.toml")));
        assert!(!ok, "{name}.toml passes the schema");
        assert!(
            text.contains(expected),
            "{name}.toml: no `{expected}` in\n{text}"
        );
    }
    // The others pass: the schema does not claim what it cannot see.
    for (name, why) in NOT_EXPRESSIBLE {
        let (ok, text) = taplo_check(taplo, &dir.join(format!("{name}.toml")));
        assert!(ok, "{name}.toml ({why}) fails the schema:\n{text}");
    }
}

/// A required parameter may be given by the grid alone, as `load` accepts
/// it; a grid without it leaves it required.
#[test]
#[cfg_attr(not(full_suite), ignore = "needs taplo (npm install -g @taplo/cli)")]
fn taplo_accepts_a_required_parameter_given_by_the_grid() {
    let taplo = taplo();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grid.toml");
    let check = |matrix: &str| {
        let text = format!("[nodes.plates]\nkind = \"synthetic\"\nmatrix = {matrix}\n");
        std::fs::write(&file, &text).unwrap();
        let loaded =
            foldwise::config::load_str("grid.toml", &text, dir.path(), foldwise::nodes::KINDS);
        (taplo_check(taplo, &file), loaded.is_ok())
    };
    let ((ok, text), loaded) = check("{ count = [20, 40] }");
    assert!(ok && loaded, "{text}");
    let ((ok, text), loaded) = check("{ seed = [1, 2] }");
    assert!(!ok && !loaded, "{text}");
    assert!(text.contains(r#""count" is a required property"#), "{text}");
}

/// The repository's `.taplo.toml` gives the example pipelines the schema:
/// a copy of the rule and the schema in a scratch tree, with a bad file
/// where the examples live, is rejected by a plain `taplo check`.
#[test]
#[cfg_attr(not(full_suite), ignore = "needs taplo (npm install -g @taplo/cli)")]
fn the_taplo_configuration_applies_the_schema_to_the_pipelines() {
    let taplo = taplo();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    for f in [".taplo.toml", "docs/foldwise.schema.json"] {
        std::fs::copy(root().join(f), dir.path().join(f)).unwrap();
    }
    let bad = root().join("tests/fixtures/bad/unknown_param.toml");
    std::fs::copy(&bad, dir.path().join("pipelines/bad.toml")).unwrap();
    let out = Command::new(taplo)
        .args(["check", "--colors", "never", "pipelines/bad.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("'cout' was unexpected"), "{text}");
}

/// `(dotted key, default as the reference shows it)` for every parameter
/// of every kind, read from the `foldwise kinds` tables.
fn params_in_kinds() -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut kind = String::new();
    for line in foldwise(&["kinds"]).lines() {
        if let Some(rest) = line.strip_prefix("### `") {
            kind = rest.split('`').next().unwrap().to_string();
        } else if let Some(row) = line.strip_prefix("| `") {
            let key = row.split('`').next().unwrap().to_string();
            let default = row.split(" | ").nth(2).unwrap().to_string();
            out.insert((kind.clone(), key), default);
        }
    }
    out
}

/// The same, read from the JSON Schema's kind definitions.
fn params_in_schema() -> BTreeMap<(String, String), String> {
    let schema: Value = serde_json::from_str(&foldwise(&["schema"])).unwrap();
    let mut out = BTreeMap::new();
    let defs = schema["definitions"].as_object().unwrap();
    for (kind, def) in defs.iter().filter(|(k, _)| *k != "node") {
        flatten(kind, "", def, &mut out);
    }
    out
}

/// The names listed at `r` (a `required` array).
fn names(r: &Value) -> Vec<&str> {
    r.as_array()
        .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default()
}

fn flatten(kind: &str, prefix: &str, table: &Value, out: &mut BTreeMap<(String, String), String>) {
    // Required in the table (references, nested keys), or unless the grid gives it
    // (a kind's own: `if` the matrix has it, `else` required).
    let mut required = names(&table["required"]);
    for unless_grid in table["allOf"].as_array().into_iter().flatten() {
        required.extend(names(&unless_grid["else"]["required"]));
    }
    for (name, p) in table["properties"].as_object().unwrap() {
        // `kind` and `matrix` are the node's own keys, not parameters.
        if prefix.is_empty() && (name == "kind" || name == "matrix") {
            continue;
        }
        let key = format!("{prefix}{name}");
        let default = match (&p["default"], required.contains(&name.as_str())) {
            (_, true) => "required".to_string(),
            (Value::Null, false) if key == "seed" => "the pipeline's seed".to_string(),
            (Value::Null, false) => "unset".to_string(),
            (d, false) => format!("`{}`", serde_json::to_string(d).unwrap()),
        };
        out.insert((kind.to_string(), key.clone()), default);
        if p["type"] == "object" && p["properties"].is_object() {
            flatten(kind, &format!("{key}."), p, out);
        }
    }
}

#[test]
fn the_schema_and_kinds_list_the_same_parameters_and_defaults() {
    let kinds = params_in_kinds();
    let schema = params_in_schema();
    assert!(kinds.len() > 50, "only {} parameters", kinds.len());
    assert_eq!(
        kinds.keys().collect::<Vec<_>>(),
        schema.keys().collect::<Vec<_>>(),
        "the schema and `kinds` list different parameters"
    );
    // The reference prints default literals as written; the schema holds
    // them canonical, as `check` fills them in (a float default `1` is
    // `1.0`; a table default `{}` has its keys' defaults): compare as JSON.
    for (key, x) in &kinds {
        let y = &schema[key];
        let expected = canonical_default(&kinds, key, x);
        let same = x == y || json_equal(&expected, y.trim_matches('`'));
        assert!(same, "{key:?}: `kinds` says {x}, the schema {y}");
    }
}

/// The default of `key` as `check` fills it in: a table default gets the
/// defaults of its keys that it leaves out.
fn canonical_default(
    kinds: &BTreeMap<(String, String), String>,
    key: &(String, String),
    shown: &str,
) -> String {
    let literal = shown.trim_matches('`');
    let Ok(Value::Object(mut table)) = serde_json::from_str::<Value>(literal) else {
        return literal.to_string();
    };
    let prefix = format!("{}.", key.1);
    for ((kind, sub), d) in kinds {
        let Some(name) = sub.strip_prefix(&prefix).filter(|n| !n.contains('.')) else {
            continue;
        };
        if kind != &key.0 || table.contains_key(name) || !d.starts_with('`') {
            continue;
        }
        let nested = canonical_default(kinds, &(kind.clone(), sub.clone()), d);
        table.insert(name.to_string(), serde_json::from_str(&nested).unwrap());
    }
    Value::Object(table).to_string()
}

/// Equal as JSON values, numbers compared by value (`[1, 2]` = `[1.0, 2.0]`).
fn json_equal(x: &str, y: &str) -> bool {
    fn eq(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| eq(a, b))
            }
            (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| eq(v, w)))
            }
            (a, b) => a == b,
        }
    }
    match (serde_json::from_str(x), serde_json::from_str(y)) {
        (Ok(a), Ok(b)) => eq(&a, &b),
        _ => false,
    }
}
