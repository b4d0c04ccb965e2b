//! Checks a node's TOML table against its kind's parameter schema and
//! builds the canonical JSON parameters.
//!
//! Guarantee: on success the JSON has exactly the schema's keys that are
//! given or defaulted (optional ones left out when absent), every integer
//! given where a float is expected is a float, every nested table and
//! default is treated the same way; every reference string is collected
//! (with its span and the kinds it accepts) for `resolve`. Every problem
//! is reported with the span of the offending value or key.

use serde_json::{Map, Value as J};

use super::error::{Code, Problem, Source};
use super::refs::{parse_ref, RefSpec};
use super::suggest::{did_you_mean, list};
use super::view::{Span, View};
use crate::kind::schema::{Dflt, Param, Ty};

/// A reference found in the parameters.
#[derive(Debug, Clone)]
pub(crate) struct RefSite {
    /// Dotted parameter path (`data`, `inputs.fold`, `members`).
    pub param: String,
    /// The string as written.
    pub text: String,
    /// `None` when the string is not `x`, `x[*]` or `x[i]`.
    pub spec: Option<RefSpec>,
    /// Kinds accepted (empty: any).
    pub kinds: &'static [&'static str],
    /// Span of the string value.
    pub span: Span,
}

/// A value of another type than the schema's.
struct Mismatch;

/// A checked value (`None`: its problems are recorded), or a mismatch of
/// type not yet reported.
type Checked = Result<Option<J>, Mismatch>;

/// Walks values against schemas, collecting problems and references.
pub(crate) struct Checker<'s> {
    pub src: &'s Source,
    pub text: &'s str,
    pub problems: Vec<Problem>,
    pub refs: Vec<RefSite>,
    /// When set, the folder relative paths start at, and the paths each
    /// node needs are checked on disk (`foldwise check`).
    pub paths: Option<&'s std::path::Path>,
    /// Parameter paths a node's grid gives (`matrix`): absent from the
    /// table, they are not missing.
    pub grid_paths: Vec<String>,
}

/// Where a table being checked sits, for messages.
pub(crate) struct Owner<'a> {
    /// "a `synthetic` node" or "`model`".
    pub what: String,
    /// Keys handled by the caller (`kind`, `seed`), still valid here.
    pub extra: &'a [&'a str],
    /// Dotted path prefix ("" for the node itself).
    pub path: String,
}

impl<'s> Checker<'s> {
    pub fn new(src: &'s Source, text: &'s str) -> Self {
        Checker {
            paths: None,
            grid_paths: Vec::new(),
            src,
            text,
            problems: Vec::new(),
            refs: Vec::new(),
        }
    }

    fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn written(&self, span: &Span) -> &str {
        self.text.get(span.clone()).unwrap_or("?")
    }

    /// Checks the table `view` against `params`; `None` if anything was
    /// wrong (the problems are recorded).
    pub fn table(&mut self, view: &View<'_>, params: &[Param], owner: &Owner<'_>) -> Option<J> {
        let entries = view.entries()?;
        let mut ok = true;
        let mut suggested: Vec<&str> = Vec::new();
        for e in &entries {
            if owner.extra.contains(&e.key) || params.iter().any(|p| p.name == e.key) {
                continue;
            }
            ok = false;
            let names: Vec<&str> = params
                .iter()
                .map(|p| p.name)
                .chain(owner.extra.iter().copied())
                .collect();
            let what = if owner.path.is_empty() {
                "parameter"
            } else {
                "key"
            };
            let help = match did_you_mean(e.key, names.iter().copied()) {
                Some(s) => {
                    suggested.push(s);
                    format!("did you mean `{s}`?")
                }
                None if names.is_empty() => format!("{} takes no {what}s", owner.what),
                None => format!("{} takes {}", owner.what, list(&names)),
            };
            let p = Problem::new(
                self.src,
                Code::UnknownKey,
                format!("unknown {what} `{}` for {}", e.key, owner.what),
            )
            .label(e.key_span.clone(), format!("unknown {what}"))
            .help(help);
            self.push(p);
        }
        let mut out = Map::new();
        for p in params {
            let path = join(&owner.path, p.name);
            match entries.iter().find(|e| e.key == p.name) {
                Some(e) => match self.value(&e.value, &p.ty, &path, &path, Some(p)) {
                    Some(v) => {
                        out.insert(p.name.to_string(), v);
                    }
                    None => ok = false,
                },
                None => match &p.default {
                    Dflt::Required if self.grid_paths.contains(&path) => {}
                    Dflt::Required => {
                        ok = false;
                        if suggested.contains(&p.name) {
                            // Already explained as a misspelling.
                            continue;
                        }
                        let p = Problem::new(
                            self.src,
                            Code::MissingParam,
                            format!("missing parameter `{path}` for {}", owner.what),
                        )
                        .label(view.span.clone(), format!("`{}` is required here", p.name))
                        .help(format!(
                            "add `{} = …` ({}): {}",
                            p.name,
                            p.ty.describe(),
                            p.doc
                        ));
                        self.push(p);
                    }
                    Dflt::Optional => {}
                    Dflt::Value(lit) => {
                        out.insert(p.name.to_string(), default_value(&p.ty, lit));
                    }
                },
            }
        }
        ok.then_some(J::Object(out))
    }

    /// Checks one value. `path` is the dotted parameter path used for
    /// references; `shown` names the value in messages (`height[1]`).
    pub(crate) fn value(
        &mut self,
        view: &View<'_>,
        ty: &Ty,
        path: &str,
        shown: &str,
        param: Option<&Param>,
    ) -> Option<J> {
        let doc_help = param.map(|p| format!("`{}`: {}", p.name, p.doc));
        let checked = match ty {
            Ty::Any => Ok(Some(view.to_json())),
            Ty::Bool => view.as_bool().map(|b| Some(J::Bool(b))).ok_or(Mismatch),
            Ty::Str | Ty::Path => view
                .as_str()
                .map(|s| Some(J::String(s.to_string())))
                .ok_or(Mismatch),
            Ty::Int { min, max } => self.int(view, (*min, *max), ty, shown, &doc_help),
            Ty::Float { .. } => self.float(view, ty, shown, &doc_help),
            Ty::Choice(choices) => self.choice(view, choices, ty, shown, &doc_help),
            Ty::Ref(kinds) => self.reference(view, kinds, path),
            Ty::List(elem) => self.list(view, elem, path, shown),
            Ty::Map(elem) => self.map(view, elem, path, shown),
            Ty::Table(params) => self.nested(view, params, path, shown),
        };
        checked.unwrap_or_else(|Mismatch| self.mismatch(view, ty, shown, doc_help))
    }

    /// Reports a value of the wrong type.
    fn mismatch(
        &mut self,
        view: &View<'_>,
        ty: &Ty,
        shown: &str,
        help: Option<String>,
    ) -> Option<J> {
        let p = Problem::new(
            self.src,
            Code::Type,
            format!(
                "wrong type for `{shown}`: expected {}, found {}",
                ty.describe(),
                view.found()
            ),
        )
        .label(view.span.clone(), view.found())
        .help_opt(help);
        self.push(p);
        None
    }

    fn int(
        &mut self,
        view: &View<'_>,
        (min, max): (i64, i64),
        ty: &Ty,
        shown: &str,
        help: &Option<String>,
    ) -> Checked {
        let i = view.as_int().ok_or(Mismatch)?;
        if i < min || i > max {
            return Ok(self.out_of_range(ty, shown, &view.span, help.clone()));
        }
        Ok(Some(J::from(i)))
    }

    /// A float, or an integer where a float is expected (made a float).
    fn float(&mut self, view: &View<'_>, ty: &Ty, shown: &str, help: &Option<String>) -> Checked {
        let f = match (view.as_float(), view.as_int()) {
            (Some(f), _) => f,
            (None, Some(i)) => i as f64,
            (None, None) => return Err(Mismatch),
        };
        if !ty.admits(f) {
            return Ok(self.out_of_range(ty, shown, &view.span, help.clone()));
        }
        Ok(serde_json::Number::from_f64(f).map(J::Number))
    }

    fn choice(
        &mut self,
        view: &View<'_>,
        choices: &[&str],
        ty: &Ty,
        shown: &str,
        help: &Option<String>,
    ) -> Checked {
        let s = view.as_str().ok_or(Mismatch)?;
        if choices.contains(&s) {
            return Ok(Some(J::String(s.to_string())));
        }
        let help = did_you_mean(s, choices.iter().copied())
            .map(|c| format!("did you mean \"{c}\"?"))
            .or(help.clone());
        let p = Problem::new(
            self.src,
            Code::Choice,
            format!(
                "invalid `{shown}`: expected {}, found \"{s}\"",
                ty.describe()
            ),
        )
        .label(view.span.clone(), "not a valid choice")
        .help_opt(help);
        self.push(p);
        Ok(None)
    }

    /// A reference string, recorded for `resolve`.
    fn reference(
        &mut self,
        view: &View<'_>,
        kinds: &'static [&'static str],
        path: &str,
    ) -> Checked {
        let s = view.as_str().ok_or(Mismatch)?;
        // Malformed strings are reported by `resolve`, unless they turn out
        // to be an (odd) exact node name such as `cnn[1]`.
        self.refs.push(RefSite {
            param: path.to_string(),
            text: s.to_string(),
            spec: parse_ref(s),
            kinds,
            span: view.span.clone(),
        });
        Ok(Some(J::String(s.to_string())))
    }

    fn list(&mut self, view: &View<'_>, elem: &Ty, path: &str, shown: &str) -> Checked {
        let elements = view.elements().ok_or(Mismatch)?;
        let mut out = Vec::with_capacity(elements.len());
        let mut ok = true;
        for (i, e) in elements.iter().enumerate() {
            match self.value(e, elem, path, &format!("{shown}[{i}]"), None) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        Ok(ok.then_some(J::Array(out)))
    }

    fn map(&mut self, view: &View<'_>, elem: &Ty, path: &str, shown: &str) -> Checked {
        let mut entries = view.entries().ok_or(Mismatch)?;
        // Sorted like the canonical JSON, so edges come in key order.
        entries.sort_by(|a, b| a.key.cmp(b.key));
        let mut out = Map::new();
        let mut ok = true;
        for e in &entries {
            let p = join(path, e.key);
            let s = join(shown, e.key);
            match self.value(&e.value, elem, &p, &s, None) {
                Some(v) => {
                    out.insert(e.key.to_string(), v);
                }
                None => ok = false,
            }
        }
        Ok(ok.then_some(J::Object(out)))
    }

    /// A nested table, checked against its own parameters.
    fn nested(&mut self, view: &View<'_>, params: &[Param], path: &str, shown: &str) -> Checked {
        view.entries().ok_or(Mismatch)?;
        let owner = Owner {
            what: format!("`{shown}`"),
            extra: &[],
            path: path.to_string(),
        };
        Ok(self.table(view, params, &owner))
    }

    fn out_of_range(
        &mut self,
        ty: &Ty,
        shown: &str,
        span: &Span,
        help: Option<String>,
    ) -> Option<J> {
        let written = self.written(span).to_string();
        let p = Problem::new(
            self.src,
            Code::Range,
            format!(
                "`{shown}` is out of range: expected {}, found {written}",
                ty.describe()
            ),
        )
        .label(span.clone(), "out of range")
        .help_opt(help);
        self.push(p);
        None
    }

    /// Records a problem built by the caller.
    pub fn report(&mut self, p: Problem) {
        self.push(p);
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The canonical form of a default literal: parsed, integers turned into
/// floats where a float is expected, nested table defaults filled in.
pub(crate) fn default_value(ty: &Ty, literal: &str) -> J {
    let v = serde_json::from_str(literal).unwrap_or(J::Null);
    normalize(ty, v)
}

fn normalize(ty: &Ty, v: J) -> J {
    match (ty, v) {
        (Ty::Float { .. }, J::Number(n)) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(J::Number)
            .unwrap_or(J::Null),
        (Ty::List(elem), J::Array(items)) => {
            J::Array(items.into_iter().map(|i| normalize(elem, i)).collect())
        }
        (Ty::Map(elem), J::Object(map)) => J::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalize(elem, v)))
                .collect(),
        ),
        (Ty::Table(params), J::Object(mut map)) => {
            let mut out = Map::new();
            for p in params.iter() {
                match (map.remove(p.name), &p.default) {
                    (Some(v), _) => {
                        out.insert(p.name.to_string(), normalize(&p.ty, v));
                    }
                    (None, Dflt::Value(lit)) => {
                        out.insert(p.name.to_string(), default_value(&p.ty, lit));
                    }
                    (None, _) => {}
                }
            }
            J::Object(out)
        }
        (_, v) => v,
    }
}
