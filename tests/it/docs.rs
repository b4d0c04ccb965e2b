//! The documentation cannot drift: the kind reference in
//! docs/pipeline-format.md is generated from the schemas, and `.ci/run`
//! runs the README's test command.

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn the_format_reference_lists_every_kind_and_key() {
    let doc = read("docs/pipeline-format.md");
    let begin = "<!-- kinds:begin -->\n";
    let end = "<!-- kinds:end -->";
    let a = doc.find(begin).expect("begin marker") + begin.len();
    let b = doc.find(end).expect("end marker");
    let generated = foldwise::cli::reference::kinds_markdown();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        let updated = format!("{}{}{}", &doc[..a], generated, &doc[b..]);
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/pipeline-format.md"),
            updated,
        )
        .unwrap();
        return;
    }
    assert_eq!(
        &doc[a..b],
        generated,
        "docs/pipeline-format.md is out of date: run UPDATE_GOLDEN=1 cargo test --test it docs"
    );
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = read("README.md");
    let block = readme
        .split("```")
        .nth(1)
        .expect("a code block opens the README");
    let test_cmd = block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .find(|l| l.starts_with("cargo test"))
        .expect("the README's first block has the test command");
    assert!(read(".ci/run").lines().any(|l| l.trim() == test_cmd));
}

/// docs/ARCHITECTURE.md's code map names every module of `src/`: each
/// folder as `src/<folder>/`, each file by its name (`op.rs`) or, for a
/// node kind, the kind's name in backticks (`train`).
#[test]
fn the_code_map_names_every_module() {
    let doc = read("docs/ARCHITECTURE.md");
    let start = doc.find("## Code map").expect("a code map");
    let end = doc[start..].find("\n## The node interface").unwrap() + start;
    let map = &doc[start..end];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = entry.path().strip_prefix(&src).unwrap();
        if !name.ends_with(".rs")
            || ["lib.rs", "tests.rs", "testkinds.rs", "testutil.rs"].contains(&name.as_str())
        {
            continue;
        }
        let named = if name == "mod.rs" {
            let folder = rel.parent().unwrap().display().to_string();
            map.contains(&format!("`src/{folder}/`"))
        } else if rel.parent() == Some(Path::new("")) {
            map.contains(&format!("`src/{name}`"))
        } else {
            let stem = name.trim_end_matches(".rs");
            let folder = rel.parent().unwrap().file_name().unwrap().to_string_lossy();
            map.contains(&format!("`{name}`"))
                || map.contains(&format!("`{folder}/{name}`"))
                || map.contains(&format!("`{stem}`"))
                || map.contains(&format!("`{stem}/`"))
        };
        if !named {
            missing.push(rel.display().to_string());
        }
    }
    assert!(missing.is_empty(), "not in the code map: {missing:?}");
}
