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
