//! Static parameter schemas: every node kind declares its parameters here-style,
//! and the validator turns raw TOML into canonical JSON (defaults filled in,
//! integers coerced to floats where a float is expected) by walking them.
//!
//! Guarantee: a parameter list is the single source of truth for a kind's
//! keys — validation, canonical hashing and `docs/pipeline-format.md` all
//! derive from it.

/// One parameter of a node kind (or of a nested table).
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    pub default: Dflt,
    /// One line for the format reference.
    pub doc: &'static str,
}

/// The type of a parameter value.
#[derive(Debug)]
pub enum Ty {
    Bool,
    /// An integer within `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A float within the bounds; `open` bounds exclude the end point.
    Float {
        min: f64,
        max: f64,
        min_open: bool,
        max_open: bool,
    },
    /// Any string.
    Str,
    /// One of the listed strings.
    Choice(&'static [&'static str]),
    /// A file-system path, relative to the pipeline file's folder. Paths are
    /// hashed by their content (see `Kind::external_inputs`), the string too.
    Path,
    /// A reference to another node: `"name"` (follow its fold), `"name[*]"`
    /// (gather every instance) or `"name[i]"` (one instance). The slice lists
    /// the accepted kinds; empty means any kind.
    Ref(&'static [&'static str]),
    /// A list of values of one type.
    List(&'static Ty),
    /// A nested table with its own parameters.
    Table(&'static [Param]),
    /// A table with free keys, every value of one type.
    Map(&'static Ty),
    /// Any TOML value (checked by the kind's own `check`).
    Any,
}

/// What happens when a parameter is absent.
#[derive(Debug)]
pub enum Dflt {
    /// Absence is an error.
    Required,
    /// Absence leaves the parameter out of the canonical parameters.
    Optional,
    /// Absence fills in this JSON literal.
    Value(&'static str),
}

impl Ty {
    /// Whether the number `f` lies in a `Float`'s range (finite, each bound
    /// open or closed as declared); false for any other type.
    pub fn admits(&self, f: f64) -> bool {
        let Ty::Float {
            min,
            max,
            min_open,
            max_open,
        } = *self
        else {
            return false;
        };
        let above = if min_open { f > min } else { f >= min };
        let below = if max_open { f < max } else { f <= max };
        f.is_finite() && above && below
    }

    /// A short human name used in "expected X, found Y" messages and docs.
    pub fn describe(&self) -> String {
        match self {
            Ty::Bool => "a boolean".into(),
            Ty::Int { min, max } => match (*min, *max) {
                (i64::MIN, i64::MAX) => "an integer".into(),
                (lo, i64::MAX) => format!("an integer >= {lo}"),
                (lo, hi) => format!("an integer in {lo}..={hi}"),
            },
            Ty::Float {
                min,
                max,
                min_open,
                max_open,
            } => {
                if min.is_infinite() && max.is_infinite() {
                    "a number".into()
                } else if max.is_infinite() {
                    format!("a number {} {min}", if *min_open { ">" } else { ">=" })
                } else {
                    format!(
                        "a number in {}{}, {}{}",
                        if *min_open { "(" } else { "[" },
                        min,
                        max,
                        if *max_open { ")" } else { "]" }
                    )
                }
            }
            Ty::Str => "a string".into(),
            Ty::Choice(c) => format!(
                "one of {}",
                c.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ty::Path => "a path (string)".into(),
            Ty::Ref([]) => "a node reference (string)".into(),
            Ty::Ref(kinds) => format!("a reference to a {} node", kinds.join(" or ")),
            Ty::List(t) => format!("a list, each {}", t.describe()),
            Ty::Table(_) => "a table".into(),
            Ty::Map(t) => format!("a table, each value {}", t.describe()),
            Ty::Any => "any value".into(),
        }
    }
}

/// Shorthand constructors for schemas.
pub const fn int_min(min: i64) -> Ty {
    Ty::Int { min, max: i64::MAX }
}
pub const fn int_range(min: i64, max: i64) -> Ty {
    Ty::Int { min, max }
}
/// A float strictly inside (0, 1).
pub const RATIO: Ty = Ty::Float {
    min: 0.0,
    max: 1.0,
    min_open: true,
    max_open: true,
};
pub const fn float_range(min: f64, max: f64) -> Ty {
    Ty::Float {
        min,
        max,
        min_open: false,
        max_open: false,
    }
}
