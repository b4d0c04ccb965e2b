//! Scoring predicted class vectors against true labels.
//!
//! Inputs: one predicted class vector per image (one class 0-10 per head,
//! all the same length `heads`, as [`super::decode::classes`] or
//! [`super::ensemble::vote`] give) and one label per image (digits 0-9;
//! `None` = unlabelled, an error naming the item). The predicted code is the
//! class vector with blanks dropped ([`super::decode::code`]).
//!
//! Definitions (`t` = true code, `p` = predicted code, `n` = images):
//! - `seq_acc` (the contest metric): fraction of images with `p == t`,
//!   exact string match.
//! - `char_acc`: micro-average over character positions. Image `i`
//!   contributes `max(len t, len p)` positions `k`; position `k` is correct
//!   when both strings have a digit there and the digits are equal (so a
//!   missing or extra digit counts wrong, and a shifted string scores only
//!   where it happens to match). `char_acc = Σ correct / Σ max(len t, len
//!   p)`; when every code on both sides is empty (no positions) it is 1.
//! - `len_acc`: fraction of images with `len p == len t`.
//! - `per_position[k]` for `k` in `0..heads` (positions in the *codes*, not
//!   the heads): among images where `len t > k` or `len p > k`, the
//!   fraction with `t[k] == p[k]` (both present and equal); `null` when no
//!   image qualifies.
//! - `confusion[h][a][b]`: over images, how often head `h` had true class
//!   `a` and predicted class `b` (0-10). The true class vector is the label
//!   padded with blanks to `heads`; true digits beyond `heads` (a label
//!   longer than the model can express) are not in the confusion but do
//!   count in the other metrics.
//! - `n`: number of images scored;
//! - `length_model_acc` (only when the prediction has length probabilities
//!   from a length head): how often their argmax is the true code length.
//!
//! Guarantee: the JSON field names above are stable.

use serde::{Deserialize, Serialize};

use super::{decode, Labelled, BLANK, CLASSES};
use crate::kind::NodeError;

/// Scores of one prediction set; see the module docs for the definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub seq_acc: f64,
    pub char_acc: f64,
    pub len_acc: f64,
    pub per_position: Vec<Option<f64>>,
    /// `confusion[head][true class][predicted class]`.
    pub confusion: Vec<[[u64; CLASSES]; CLASSES]>,
    pub n: usize,
    /// When the prediction has length probabilities (a length head): how
    /// often their argmax is the true number of digits. Set by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_model_acc: Option<f64>,
}

/// Scores `predicted` class vectors against data items (same order).
pub fn evaluate_items(
    items: &[impl Labelled],
    predicted: &[Vec<u8>],
) -> Result<Metrics, NodeError> {
    let names: Vec<&str> = items.iter().map(|it| it.name()).collect();
    let labels: Vec<Option<&[u8]>> = items.iter().map(|it| it.label()).collect();
    evaluate(&names, &labels, predicted)
}

/// Scores `predicted` class vectors against `labels`; `names` name the
/// items in errors. All three must have the same length, at least 1.
pub fn evaluate<S: AsRef<str>, L: AsRef<[u8]>>(
    names: &[S],
    labels: &[Option<L>],
    predicted: &[Vec<u8>],
) -> Result<Metrics, NodeError> {
    if names.len() != labels.len() || labels.len() != predicted.len() {
        return Err(NodeError::new(
            "foldwise::metrics::mismatch",
            format!(
                "metrics: {} names, {} labels, {} predictions",
                names.len(),
                labels.len(),
                predicted.len()
            ),
        ));
    }
    let Some(first) = predicted.first() else {
        return Err(NodeError::new(
            "foldwise::metrics::empty",
            "metrics: no images to score",
        ));
    };
    let heads = first.len();
    if heads == 0 {
        return Err(NodeError::new(
            "foldwise::metrics::mismatch",
            "metrics: predictions have no heads",
        ));
    }
    let mut seq = 0usize;
    let mut len_ok = 0usize;
    let mut char_ok = 0usize;
    let mut char_total = 0usize;
    let mut pos_ok = vec![0usize; heads];
    let mut pos_total = vec![0usize; heads];
    let mut confusion = vec![[[0u64; CLASSES]; CLASSES]; heads];
    for ((name, label), pred) in names.iter().zip(labels).zip(predicted) {
        let name = name.as_ref();
        let Some(t) = label.as_ref().map(|l| l.as_ref()) else {
            return Err(NodeError::new(
                "foldwise::metrics::unlabelled",
                format!("metrics: `{name}` has no label"),
            ));
        };
        if t.iter().any(|d| *d > 9) {
            return Err(NodeError::new(
                "foldwise::metrics::label",
                format!("metrics: `{name}` has a label digit above 9"),
            ));
        }
        if pred.len() != heads {
            return Err(NodeError::new(
                "foldwise::metrics::mismatch",
                format!(
                    "metrics: prediction for `{name}` has {} heads, not {heads}",
                    pred.len()
                ),
            ));
        }
        if pred.iter().any(|c| *c > BLANK) {
            return Err(NodeError::new(
                "foldwise::metrics::mismatch",
                format!("metrics: prediction for `{name}` has a class above {BLANK}"),
            ));
        }
        let p = decode::code(pred);
        seq += usize::from(p == t);
        len_ok += usize::from(p.len() == t.len());
        let span = p.len().max(t.len());
        char_total += span;
        for k in 0..span {
            let ok = t.get(k).is_some() && t.get(k) == p.get(k);
            char_ok += usize::from(ok);
            if k < heads {
                pos_total[k] += 1;
                pos_ok[k] += usize::from(ok);
            }
        }
        for (h, conf) in confusion.iter_mut().enumerate() {
            let a = t.get(h).copied().unwrap_or(BLANK);
            conf[usize::from(a)][usize::from(pred[h])] += 1;
        }
    }
    let n = predicted.len();
    let frac = |a: usize, b: usize| a as f64 / b as f64;
    Ok(Metrics {
        seq_acc: frac(seq, n),
        char_acc: if char_total == 0 {
            1.0
        } else {
            frac(char_ok, char_total)
        },
        len_acc: frac(len_ok, n),
        per_position: pos_ok
            .iter()
            .zip(&pos_total)
            .map(|(a, b)| (*b > 0).then(|| frac(*a, *b)))
            .collect(),
        confusion,
        n,
        length_model_acc: None,
    })
}

/// How often the argmax of length probabilities (one 11-way row per item,
/// class k = k digits) is the length of the true code.
pub fn length_model_acc(length: &super::Probs, truth: &[&[u8]]) -> f64 {
    let right = (0..length.n)
        .filter(|&i| usize::from(decode::argmax(length.get(i, 0))) == truth[i].len())
        .count();
    right as f64 / length.n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u8 = BLANK;

    fn item(file: &str, label: Option<Vec<u8>>) -> (String, Option<Vec<u8>>) {
        (file.into(), label)
    }

    #[test]
    fn hand_made_case_exact_values() {
        // true   pred classes   pred code
        // "12"   [1, 2, B]      "12"   exact
        // "345"  [3, 4, B]      "34"   missing digit
        // "7"    [B, 7, B]      "7"    exact (blank dropped)
        // "90"   [0, 9, B]      "09"   swapped
        let labels = vec![
            Some(vec![1, 2]),
            Some(vec![3, 4, 5]),
            Some(vec![7]),
            Some(vec![9, 0]),
        ];
        let pred = vec![vec![1, 2, B], vec![3, 4, B], vec![B, 7, B], vec![0, 9, B]];
        let names = ["a", "b", "c", "d"];
        let m = evaluate(&names, &labels, &pred).unwrap();
        assert_eq!(m.n, 4);
        assert_eq!(m.seq_acc, 0.5);
        // positions: 2 + 3 + 1 + 2 = 8; correct: 2 + 2 + 1 + 0 = 5
        assert_eq!(m.char_acc, 5.0 / 8.0);
        assert_eq!(m.len_acc, 0.75);
        // k=0: all 4 qualify, correct a,b,c → 3/4; k=1: a,b,d → 2/3;
        // k=2: b only (true has 3) → 0/1.
        assert_eq!(m.per_position, [Some(0.75), Some(2.0 / 3.0), Some(0.0)]);
        let mut want = vec![[[0u64; CLASSES]; CLASSES]; 3];
        // head 0: true 1,3,7,9 → pred 1,3,B,0
        want[0][1][1] = 1;
        want[0][3][3] = 1;
        want[0][7][10] = 1;
        want[0][9][0] = 1;
        // head 1: true 2,4,B,0 → pred 2,4,7,9
        want[1][2][2] = 1;
        want[1][4][4] = 1;
        want[1][10][7] = 1;
        want[1][0][9] = 1;
        // head 2: true B,5,B,B → pred B,B,B,B
        want[2][10][10] = 3;
        want[2][5][10] = 1;
        assert_eq!(m.confusion, want);
    }

    #[test]
    fn extra_digits_and_empty_codes() {
        // true "" vs pred "3"; true "" vs pred "": per_position[0] counts
        // only the first.
        let labels = vec![Some(vec![]), Some(vec![])];
        let pred = vec![vec![3, B], vec![B, B]];
        let m = evaluate(&["x", "y"], &labels, &pred).unwrap();
        assert_eq!(m.seq_acc, 0.5);
        assert_eq!(m.char_acc, 0.0);
        assert_eq!(m.len_acc, 0.5);
        assert_eq!(m.per_position, [Some(0.0), None]);
        // all empty: no positions at all.
        let m = evaluate(&["y"], &[Some(Vec::<u8>::new())], &[vec![B, B]]).unwrap();
        assert_eq!((m.seq_acc, m.char_acc, m.len_acc), (1.0, 1.0, 1.0));
        assert_eq!(m.per_position, [None, None]);
        assert_eq!(m.confusion[0][10][10], 1);
    }

    #[test]
    fn labels_longer_than_heads() {
        let m = evaluate(&["z"], &[Some(vec![1, 2, 3])], &[vec![1, 2]]).unwrap();
        assert_eq!(m.seq_acc, 0.0);
        assert_eq!(m.char_acc, 2.0 / 3.0);
        assert_eq!(m.per_position, [Some(1.0), Some(1.0)]);
        assert_eq!(m.confusion[1][2][2], 1);
    }

    #[test]
    fn unlabelled_item_is_an_error_naming_it() {
        let items = vec![item("001.png", Some(vec![1])), item("002.png", None)];
        let err = evaluate_items(&items, &[vec![1, B], vec![2, B]]).unwrap_err();
        assert!(err.to_string().contains("002.png"), "{err}");
        let items = vec![item("001.png", Some(vec![1]))];
        let m = evaluate_items(&items, &[vec![1, B]]).unwrap();
        assert_eq!(m.seq_acc, 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let l = [Some(vec![1u8])];
        assert!(evaluate(&["a"], &l, &[]).is_err());
        assert!(evaluate::<&str, Vec<u8>>(&[], &[], &[]).is_err());
        assert!(evaluate(&["a"], &l, &[vec![11]]).is_err());
        assert!(evaluate(&["a"], &[Some(vec![12u8])], &[vec![1]]).is_err());
        let l2 = [Some(vec![1u8]), Some(vec![2])];
        assert!(evaluate(&["a", "b"], &l2, &[vec![1, B], vec![2]]).is_err());
    }

    #[test]
    fn json_field_names_are_stable() {
        let m = evaluate(&["a"], &[Some(vec![4u8])], &[vec![4]]).unwrap();
        let v = serde_json::to_value(&m).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "char_acc",
                "confusion",
                "len_acc",
                "n",
                "per_position",
                "seq_acc"
            ]
        );
        let back: Metrics = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }
}
