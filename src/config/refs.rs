//! Node names and reference strings.
//!
//! Guarantee: a node name is non-empty and made of `[A-Za-z0-9_.-[]]`; a
//! reference is `name`, `name[*]` or `name[i]`, each optionally with a
//! grid selection before the bracket (`name[seed=2,lr=0.003]`,
//! `name[seed=2][*]`) or with `[each]` (`name[each][*]`: every grid point
//! followed, each gathered), parsed without ambiguity (an exact node name
//! wins over the bracket forms, see `resolve`).

use super::RefMode;

/// Whether `name` is a valid node name.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(name_char)
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

/// A parsed reference string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefSpec {
    pub target: String,
    pub mode: RefMode,
    /// Grid selection: (axis label, value as written), in written order;
    /// empty when none.
    pub select: Vec<(String, String)>,
    /// Written `[each]` in place of a selection: every grid point of the
    /// target, followed (`resolve` accepts it only before `[*]`).
    pub each: bool,
}

/// Parses `x`, `x[*]` or `x[i]`, each optionally with a selection
/// `[label=value,…]` or `[each]` after `x`; `None` when malformed.
pub(crate) fn parse_ref(text: &str) -> Option<RefSpec> {
    let (rest, mode) = match text.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
        Some((rest, "*")) => (rest, RefMode::Gather),
        Some((rest, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
            (rest, RefMode::Pick(index.parse().ok()?))
        }
        _ => (text, RefMode::Follow),
    };
    let (target, select, each) = match rest.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((target, "each")) => (target, Vec::new(), true),
        Some((target, sel)) => (target, parse_selection(sel)?, false),
        None => (rest, Vec::new(), false),
    };
    if !valid_name(target) || target.contains('[') || target.contains(']') {
        return None;
    }
    Some(RefSpec {
        target: target.to_string(),
        mode,
        select,
        each,
    })
}

/// `label=value,label=value` (commas inside quotes or brackets belong to
/// the value); `None` when any part is not `label=value`.
fn parse_selection(sel: &str) -> Option<Vec<(String, String)>> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    for (i, c) in sel.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&sel[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&sel[start..]);
    parts
        .into_iter()
        .map(|p| {
            let (label, value) = p.split_once('=')?;
            let (label, value) = (label.trim(), value.trim());
            let label_ok = !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            (label_ok && !value.is_empty()).then(|| (label.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: &str, mode: RefMode) -> Option<RefSpec> {
        Some(RefSpec {
            target: target.into(),
            mode,
            select: Vec::new(),
            each: false,
        })
    }

    #[test]
    fn selections_parse() {
        let sel = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let r = parse_ref("m[seed=2,lr=0.003]").unwrap();
        assert_eq!((r.target.as_str(), r.mode), ("m", RefMode::Follow));
        assert_eq!(r.select, sel(&[("seed", "2"), ("lr", "0.003")]));
        let r = parse_ref("m[seed=2][*]").unwrap();
        assert_eq!((r.mode, r.select), (RefMode::Gather, sel(&[("seed", "2")])));
        let r = parse_ref("m[arch=\"a,b\"][1]").unwrap();
        assert_eq!(
            (r.mode, r.select),
            (RefMode::Pick(1), sel(&[("arch", "\"a,b\"")]))
        );
        let r = parse_ref("m[each][*]").unwrap();
        assert_eq!(
            (r.mode, r.each, r.select),
            (RefMode::Gather, true, sel(&[]))
        );
        let r = parse_ref("m[each]").unwrap();
        assert_eq!(
            (r.target.as_str(), r.mode, r.each),
            ("m", RefMode::Follow, true)
        );
        assert!(!parse_ref("m[seed=2][*]").unwrap().each);
        for bad in [
            "m[seed=]",
            "m[=2]",
            "m[seed=2,]",
            "m[seed]",
            "m[a b=1]",
            "m[each,seed=2][*]",
            "m[seed=2,each][*]",
        ] {
            assert_eq!(parse_ref(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_three_forms_parse() {
        assert_eq!(parse_ref("folds"), spec("folds", RefMode::Follow));
        assert_eq!(parse_ref("cnn[*]"), spec("cnn", RefMode::Gather));
        assert_eq!(parse_ref("cnn[12]"), spec("cnn", RefMode::Pick(12)));
        assert_eq!(parse_ref("a.b-c_d"), spec("a.b-c_d", RefMode::Follow));
    }

    #[test]
    fn malformed_references_are_rejected() {
        for bad in [
            "",
            "x[a]",
            "x[]",
            "x[-1]",
            "[1]",
            "x[1",
            "x]",
            "a b",
            "x[1][2]",
            "x[99999999999999999999999]",
        ] {
            assert_eq!(parse_ref(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("cnn[1]"));
        assert!(valid_name("plates_test-2.v1"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("é"));
    }
}
