//! A uniform, span-carrying view over toml_edit's items, values and tables
//! (inline, dotted, header or array-of-tables alike).
//!
//! Guarantee: every view has a span into the source (its own, else the
//! span of the key it was found under), so every diagnostic can point
//! somewhere.

use std::ops::Range;

use toml_edit::{Item, TableLike, Value};

/// A TOML value of any shape, with the span to blame for it.
#[derive(Clone)]
pub(crate) struct View<'a> {
    pub shape: Shape<'a>,
    pub span: Span,
}

pub(crate) type Span = Range<usize>;

/// The shapes a TOML value can take.
#[derive(Clone, Copy)]
pub(crate) enum Shape<'a> {
    Value(&'a Value),
    Table(&'a dyn TableLike),
    Tables(&'a toml_edit::ArrayOfTables),
}

/// One `key = value` entry of a table, with the key's span.
pub(crate) struct Entry<'a> {
    pub key: &'a str,
    pub key_span: Span,
    pub value: View<'a>,
}

impl<'a> View<'a> {
    /// The view of `item`, blaming `fallback` when it has no span itself.
    pub fn of(item: &'a Item, fallback: &Span) -> Option<View<'a>> {
        let shape = match item {
            Item::None => return None,
            Item::Value(Value::InlineTable(t)) => Shape::Table(t),
            Item::Value(v) => Shape::Value(v),
            Item::Table(t) => Shape::Table(t),
            Item::ArrayOfTables(a) => Shape::Tables(a),
        };
        Some(View {
            shape,
            span: item.span().unwrap_or_else(|| fallback.clone()),
        })
    }

    fn of_value(value: &'a Value, fallback: &Span) -> View<'a> {
        let shape = match value {
            Value::InlineTable(t) => Shape::Table(t),
            v => Shape::Value(v),
        };
        View {
            shape,
            span: value.span().unwrap_or_else(|| fallback.clone()),
        }
    }

    /// The entries, in file order, when this is a table.
    pub fn entries(&self) -> Option<Vec<Entry<'a>>> {
        let Shape::Table(t) = self.shape else {
            return None;
        };
        Some(
            t.iter()
                .filter_map(|(k, _)| {
                    let (key, item) = t.get_key_value(k)?;
                    let key_span = key.span().unwrap_or_else(|| self.span.clone());
                    let value = View::of(item, &key_span)?;
                    Some(Entry {
                        key: key.get(),
                        key_span,
                        value,
                    })
                })
                .collect(),
        )
    }

    /// The elements when this is an array (or an array of tables).
    pub fn elements(&self) -> Option<Vec<View<'a>>> {
        match self.shape {
            Shape::Value(Value::Array(a)) => {
                Some(a.iter().map(|v| View::of_value(v, &self.span)).collect())
            }
            Shape::Tables(a) => Some(
                a.iter()
                    .map(|t| View {
                        shape: Shape::Table(t),
                        span: t.span().unwrap_or_else(|| self.span.clone()),
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The entry or element at `segment` (a key, or a list index).
    pub fn child(&self, segment: &str) -> Option<View<'a>> {
        if let Some(entries) = self.entries() {
            return entries
                .into_iter()
                .find(|e| e.key == segment)
                .map(|e| e.value);
        }
        let i: usize = segment.parse().ok()?;
        self.elements()?.into_iter().nth(i)
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match self.shape {
            Shape::Value(Value::String(s)) => Some(s.value()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self.shape {
            Shape::Value(Value::Integer(i)) => Some(*i.value()),
            _ => None,
        }
    }

    pub fn as_float(&self) -> Option<f64> {
        match self.shape {
            Shape::Value(Value::Float(f)) => Some(*f.value()),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.shape {
            Shape::Value(Value::Boolean(b)) => Some(*b.value()),
            _ => None,
        }
    }

    /// "a string", "an integer", … for "found …" messages.
    pub fn found(&self) -> &'static str {
        match self.shape {
            Shape::Value(Value::String(_)) => "a string",
            Shape::Value(Value::Integer(_)) => "an integer",
            Shape::Value(Value::Float(_)) => "a float",
            Shape::Value(Value::Boolean(_)) => "a boolean",
            Shape::Value(Value::Datetime(_)) => "a date-time",
            Shape::Value(Value::Array(_)) | Shape::Tables(_) => "an array",
            Shape::Value(Value::InlineTable(_)) | Shape::Table(_) => "a table",
        }
    }

    /// Any TOML value as JSON (integers stay integers; date-times become
    /// strings; non-finite floats become null).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        if let Some(entries) = self.entries() {
            return J::Object(
                entries
                    .into_iter()
                    .map(|e| (e.key.to_string(), e.value.to_json()))
                    .collect(),
            );
        }
        if let Some(elements) = self.elements() {
            return J::Array(elements.iter().map(View::to_json).collect());
        }
        match self.shape {
            Shape::Value(Value::String(s)) => J::String(s.value().clone()),
            Shape::Value(Value::Integer(i)) => J::from(*i.value()),
            Shape::Value(Value::Float(f)) => serde_json::Number::from_f64(*f.value())
                .map(J::Number)
                .unwrap_or(J::Null),
            Shape::Value(Value::Boolean(b)) => J::Bool(*b.value()),
            Shape::Value(Value::Datetime(d)) => J::String(d.value().to_string()),
            _ => J::Null,
        }
    }
}
