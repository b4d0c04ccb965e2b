//! Node names and reference strings.
//!
//! Guarantee: a node name is non-empty and made of `[A-Za-z0-9_.-[]]`; a
//! reference is `name`, `name[*]` or `name[i]`, parsed without ambiguity
//! (an exact node name wins over the bracket forms, see `resolve`).

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
}

/// Parses `x`, `x[*]` or `x[i]`; `None` when malformed.
pub(crate) fn parse_ref(text: &str) -> Option<RefSpec> {
    let (target, mode) = match text.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
        Some((target, "*")) => (target, RefMode::Gather),
        Some((target, index)) => {
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (target, RefMode::Pick(index.parse().ok()?))
        }
        None => (text, RefMode::Follow),
    };
    if !valid_name(target) || target.contains('[') || target.contains(']') {
        return None;
    }
    Some(RefSpec {
        target: target.to_string(),
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: &str, mode: RefMode) -> Option<RefSpec> {
        Some(RefSpec {
            target: target.into(),
            mode,
        })
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
