//! The rooms of `src/` and the doors between them: no two top-level
//! modules import each other, directly or around a cycle, and the lowest
//! layers import nothing above them. Read from the source text (every
//! `crate::<module>` path, `use crate::{…}` groups included), leaving out
//! test code (`#[cfg(test)] mod tests` blocks and the test-only files
//! `tests.rs`, `testkinds.rs`, `testutil.rs`), which may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its non-test code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy();
        if !name.ends_with(".rs") || ["tests.rs", "testkinds.rs", "testutil.rs"].contains(&&*name) {
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text,
        };
        let set = edges.entry(top.clone()).or_default();
        for m in referenced(code) {
            if m != top {
                set.insert(m);
            }
        }
    }
    edges
}

/// Module names after `crate::`, and inside `use crate::{a, b::c}` groups.
fn referenced(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for part in body.split(',') {
                out.push(ident(part.trim()));
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m.chars().next().unwrap().is_ascii_lowercase());
    out
}

fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for n in edges.get(&m).into_iter().flatten() {
            if n == to {
                return true;
            }
            if seen.insert(n.clone()) {
                stack.push(n.clone());
            }
        }
    }
    false
}

#[test]
fn no_cycle_between_top_level_modules() {
    let edges = imports();
    assert!(edges.len() >= 12, "{edges:?}");
    let cycles: Vec<String> = edges
        .iter()
        .flat_map(|(a, bs)| bs.iter().map(move |b| (a, b)))
        .filter(|(a, b)| reaches(&edges, b, a))
        .map(|(a, b)| format!("{a} -> {b}"))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:?}\n{edges:#?}");
}

#[test]
fn the_lowest_layers_import_nothing_above_them() {
    let edges = imports();
    let allowed: &[(&str, &[&str])] = &[
        ("kind", &[]),
        ("rng", &[]),
        ("store", &[]),
        ("remote", &["store"]),
        ("predictions", &["kind"]),
        ("artifact", &["kind", "predictions", "store"]),
        ("config", &["kind"]),
        ("model", &["rng"]),
    ];
    for (module, may) in allowed {
        let actual: Vec<&str> = edges
            .get(*module)
            .into_iter()
            .flatten()
            .map(|s| s.as_str())
            .collect();
        let extra: Vec<&&str> = actual.iter().filter(|m| !may.contains(m)).collect();
        assert!(extra.is_empty(), "`{module}` imports {extra:?}");
    }
}

#[test]
fn the_reader_finds_grouped_and_nested_paths() {
    let code = "use crate::{kind::Kind, store};\nfn f() { crate::rng::Rng::new(1); }\n";
    assert_eq!(referenced(code), ["kind", "store", "rng"]);
}
