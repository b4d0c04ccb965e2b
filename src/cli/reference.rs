//! The node-kind reference, generated from the kinds' schemas so that the
//! documentation can never drift from the validator (`foldwise kinds`;
//! docs/pipeline-format.md embeds it, and a test keeps them equal).

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
