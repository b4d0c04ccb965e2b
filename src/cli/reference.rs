//! The node-kind reference, generated from the kinds' schemas so that the
//! documentation can never drift from the validator (`foldwise kinds`;
//! docs/pipeline-format.md embeds it, and a test keeps them equal), and the
//! JSON Schema of the format for editors (`foldwise schema`; committed as
//! docs/foldwise.schema.json, kept equal by a test).

use crate::config;
use crate::kind::schema::{Dflt, Param, Ty};
use crate::nodes::KINDS;

/// Markdown for every kind: its description and a table of its parameters.
pub fn kinds_markdown() -> String {
    let mut out = String::new();
    for k in KINDS {
        out.push_str(&format!("### `{}` (version {})\n\n", k.name(), k.version()));
        out.push_str(k.doc());
        out.push_str("\n\n| key | type | default | meaning |\n|---|---|---|---|\n");
        rows(&mut out, "", k.params());
        out.push_str(
            "| `seed` | an integer >= 0 | the pipeline's seed | Seed for this node. |\n\n",
        );
    }
    out
}

fn rows(out: &mut String, prefix: &str, params: &[Param]) {
    for p in params {
        let default = match &p.default {
            Dflt::Required => "required".to_string(),
            Dflt::Optional => "unset".to_string(),
            Dflt::Value(v) => format!("`{v}`"),
        };
        out.push_str(&format!(
            "| `{prefix}{}` | {} | {} | {} |\n",
            p.name,
            p.ty.describe().replace('|', "\\|"),
            default,
            p.doc.replace('|', "\\|")
        ));
        if let Ty::Table(sub) = &p.ty {
            rows(out, &format!("{prefix}{}.", p.name), sub);
        }
    }
}

/// The pipeline format's JSON Schema, pretty-printed, with a final newline.
pub fn schema_json() -> String {
    let mut out =
        serde_json::to_string_pretty(&config::json_schema(KINDS)).expect("a JSON value serialises");
    out.push('\n');
    out
}
