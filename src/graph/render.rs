//! Text, Graphviz DOT and Mermaid renderings of the instance graph.

use std::fmt::Write as _;
use std::str::FromStr;

use crate::config::{Edge, Pipeline, RefMode};

/// A rendering of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per instance: `name (kind) <- param: input, …`.
    Text,
    /// Graphviz DOT, one cluster per expanded node.
    Dot,
    /// A Mermaid flowchart, one subgraph per expanded node.
    Mermaid,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "dot" => Ok(Format::Dot),
            "mermaid" => Ok(Format::Mermaid),
            other => Err(format!(
                "unknown graph format `{other}` (expected text, dot or mermaid)"
            )),
        }
    }
}

/// Renders the pipeline's instance graph.
pub fn render(p: &Pipeline, format: Format) -> String {
    match format {
        Format::Text => text(p),
        Format::Dot => dot(p),
        Format::Mermaid => mermaid(p),
    }
}

/// How an input reads in the text rendering: `plates`, `cnn[1]`,
/// `folds#1` (a part), `cnn[*]` (gathered), `pick cnn[2]`.
fn mark(p: &Pipeline, e: &Edge) -> String {
    let from = &p.instances[e.from];
    let decl = &p.decl(from).name;
    let target = match e.part {
        Some(i) => format!("{decl}#{i}"),
        None => from.name.clone(),
    };
    match e.mode {
        RefMode::Follow => target,
        RefMode::Gather => format!("{decl}[*]"),
        RefMode::Pick(_) => format!("pick {target}"),
    }
}

fn text(p: &Pipeline) -> String {
    let mut out = String::new();
    for inst in &p.instances {
        let _ = write!(out, "{} ({})", inst.name, p.decl(inst).kind.name());
        let mut marks: Vec<String> = Vec::new();
        let mut last: Option<(&str, usize, RefMode)> = None;
        for (k, e) in inst.inputs.iter().enumerate() {
            // A gathered node gives one edge per instance: show it once
            // when it gathers all of them, else name each.
            let key = (e.param.as_str(), p.instances[e.from].node, e.mode);
            if e.mode == RefMode::Gather && last == Some(key) && gathers_all(p, inst, k) {
                continue;
            }
            last = Some(key);
            let shown = if e.mode == RefMode::Gather && !gathers_all(p, inst, k) {
                format!("{} (gathered)", p.instances[e.from].name)
            } else {
                mark(p, e)
            };
            marks.push(format!("{}: {shown}", e.param));
        }
        if !marks.is_empty() {
            let _ = write!(out, " <- {}", marks.join(", "));
        }
        out.push('\n');
    }
    out
}

/// Whether the gathered edge `k` of `inst` belongs to a run of edges that
/// reaches every instance of its node (not a selection of grid points).
fn gathers_all(p: &Pipeline, inst: &crate::config::Instance, k: usize) -> bool {
    let e = &inst.inputs[k];
    let node = p.instances[e.from].node;
    let same =
        |x: &Edge| x.param == e.param && x.mode == e.mode && p.instances[x.from].node == node;
    let reached = inst.inputs.iter().filter(|x| same(x)).count();
    reached == p.instances.iter().filter(|i| i.node == node).count()
}

fn edge_label(e: &Edge) -> String {
    match e.part {
        Some(i) => format!("{}, part {i}", e.param),
        None => e.param.clone(),
    }
}

/// Runs of instances of the same declared node, in order.
fn groups(p: &Pipeline) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut out: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for (i, inst) in p.instances.iter().enumerate() {
        match out.last_mut() {
            Some((node, r)) if *node == inst.node => r.end = i + 1,
            _ => out.push((inst.node, i..i + 1)),
        }
    }
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// How a drawing format writes the pieces of a graph (each without its
/// indentation or final newline, but for a cluster's opening lines).
struct Syntax {
    /// The opening lines of the cluster of expanded node `node`.
    cluster: fn(node: usize, name: &str) -> String,
    /// The line that closes a cluster.
    end_cluster: &'static str,
    /// Instance `i`, with its name and kind.
    instance: fn(i: usize, name: &str, kind: &str) -> String,
    /// An edge; `gathered` when it is one of a gathered reference's.
    edge: fn(from: usize, to: usize, label: &str, gathered: bool) -> String,
}

const DOT: Syntax = Syntax {
    cluster: |_, name| {
        let name = dot_escape(name);
        format!("  subgraph \"cluster_{name}\" {{\n    label=\"{name}\";\n")
    },
    end_cluster: "  }\n",
    instance: |i, name, kind| format!("i{i} [label=\"{}\\n{kind}\"];", dot_escape(name)),
    edge: |from, to, label, gathered| {
        let style = if gathered { ", style=dashed" } else { "" };
        format!("i{from} -> i{to} [label=\"{}\"{style}];", dot_escape(label))
    },
};

const MERMAID: Syntax = Syntax {
    cluster: |node, name| format!("  subgraph d{node} [\"{name}\"]\n"),
    end_cluster: "  end\n",
    instance: |i, name, kind| format!("i{i}[\"{}<br/>{kind}\"]", name.replace('"', "#quot;")),
    edge: |from, to, label, gathered| {
        let arrow = if gathered { "-.->" } else { "-->" };
        format!("i{from} {arrow}|\"{label}\"| i{to}")
    },
};

/// The instances (expanded nodes as clusters), then the edges.
fn drawing(p: &Pipeline, syntax: &Syntax, out: &mut String) {
    for (node, range) in groups(p) {
        let decl = &p.nodes[node];
        let clustered = decl.fan.is_some() || range.len() > 1;
        if clustered {
            out.push_str(&(syntax.cluster)(node, &decl.name));
        }
        let indent = if clustered { "    " } else { "  " };
        for i in range {
            let line = (syntax.instance)(i, &p.instances[i].name, decl.kind.name());
            let _ = writeln!(out, "{indent}{line}");
        }
        if clustered {
            out.push_str(syntax.end_cluster);
        }
    }
    for (to, inst) in p.instances.iter().enumerate() {
        for e in &inst.inputs {
            let line = (syntax.edge)(e.from, to, &edge_label(e), e.mode == RefMode::Gather);
            let _ = writeln!(out, "  {line}");
        }
    }
}

fn dot(p: &Pipeline) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&p.name));
    out.push_str("  rankdir=LR;\n  node [shape=box];\n");
    drawing(p, &DOT, &mut out);
    out.push_str("}\n");
    out
}

fn mermaid(p: &Pipeline) -> String {
    let mut out = String::from("flowchart LR\n");
    drawing(p, &MERMAID, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testkinds::tiny;

    #[test]
    fn text() {
        assert_eq!(
            render(&tiny(), Format::Text),
            "\
plates (synthetic)
folds (split) <- data: plates
cnn[0] (train) <- split: folds#0
cnn[1] (train) <- split: folds#1
ens (ensemble) <- members: cnn[*], inputs.all: folds[*], inputs.best: pick cnn[1], inputs.fold0: pick folds#0
"
        );
    }

    #[test]
    fn dot() {
        assert_eq!(
            render(&tiny(), Format::Dot),
            r#"digraph "tiny" {
  rankdir=LR;
  node [shape=box];
  i0 [label="plates\nsynthetic"];
  i1 [label="folds\nsplit"];
  subgraph "cluster_cnn" {
    label="cnn";
    i2 [label="cnn[0]\ntrain"];
    i3 [label="cnn[1]\ntrain"];
  }
  i4 [label="ens\nensemble"];
  i0 -> i1 [label="data"];
  i1 -> i2 [label="split, part 0"];
  i1 -> i3 [label="split, part 1"];
  i2 -> i4 [label="members", style=dashed];
  i3 -> i4 [label="members", style=dashed];
  i1 -> i4 [label="inputs.all", style=dashed];
  i3 -> i4 [label="inputs.best"];
  i1 -> i4 [label="inputs.fold0, part 0"];
}
"#
        );
    }

    #[test]
    fn mermaid() {
        assert_eq!(
            render(&tiny(), Format::Mermaid),
            r#"flowchart LR
  i0["plates<br/>synthetic"]
  i1["folds<br/>split"]
  subgraph d2 ["cnn"]
    i2["cnn[0]<br/>train"]
    i3["cnn[1]<br/>train"]
  end
  i4["ens<br/>ensemble"]
  i0 -->|"data"| i1
  i1 -->|"split, part 0"| i2
  i1 -->|"split, part 1"| i3
  i2 -.->|"members"| i4
  i3 -.->|"members"| i4
  i1 -.->|"inputs.all"| i4
  i3 -->|"inputs.best"| i4
  i1 -->|"inputs.fold0, part 0"| i4
"#
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!("text".parse(), Ok(Format::Text));
        assert_eq!("dot".parse(), Ok(Format::Dot));
        assert_eq!("mermaid".parse(), Ok(Format::Mermaid));
        assert!("svg"
            .parse::<Format>()
            .unwrap_err()
            .contains("text, dot or mermaid"));
    }
}
