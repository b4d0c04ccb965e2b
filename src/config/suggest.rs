//! "Did you mean …?" suggestions.
//!
//! Guarantee: a suggestion is only made when it is close (a small edit
//! distance relative to the word's length), and ties go to the earliest
//! candidate, so messages are stable.

/// The closest candidate to `word`, if any is close enough.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let d = if c.eq_ignore_ascii_case(word) {
            0
        } else {
            strsim::damerau_levenshtein(word, c)
        };
        if d <= limit && d < word.chars().count() && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Joins names as "`a`, `b` and `c`".
pub(crate) fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_suggested() {
        assert_eq!(did_you_mean("cout", ["count", "seed"]), Some("count"));
        assert_eq!(did_you_mean("kfolds", ["holdout", "kfold"]), Some("kfold"));
        assert_eq!(
            did_you_mean("synthtic", ["dataset", "synthetic"]),
            Some("synthetic")
        );
        assert_eq!(did_you_mean("Seed", ["name", "seed"]), Some("seed"));
    }

    #[test]
    fn far_words_are_not() {
        assert_eq!(did_you_mean("x", ["y", "z"]), None);
        assert_eq!(did_you_mean("banana", ["count", "seed"]), None);
    }

    #[test]
    fn lists_read_naturally() {
        assert_eq!(list(&["a"]), "`a`");
        assert_eq!(list(&["a", "b", "c"]), "`a`, `b` and `c`");
    }
}
