//! The arithmetic after the network: class probabilities of a fixed-length
//! decoder, their decoding, ensembling, metrics, submission files and storage.
//!
//! The model has `heads` classification heads, each giving a probability
//! vector over [`CLASSES`] = 11 classes: the digits 0-9 and [`BLANK`] (10,
//! "no digit here"). [`Probs`] holds those vectors for `n` images.
//!
//! One idea per file:
//! - [`decode`]: per-head argmax and the blank-dropping code;
//! - [`ensemble`]: probability averaging (plain and weighted) and
//!   per-character voting, all independent of member order, bit for bit;
//! - [`ladder`]: how accuracy grows from the best single model through
//!   snapshots and TTA rounds to the full ensemble;
//! - [`metrics`]: sequence (contest), character, length and per-position
//!   accuracy, per-head confusion matrices;
//! - [`postprocess`]: corrections after the ensemble — well-formedness
//!   rules, a length model, per-position character priors — and their
//!   out-of-fold fitting;
//! - [`submission`]: the contest CSV `file_name,file_code`, writer and parser.
//!
//! Files of probabilities are an artifact format (`artifact::probs`); this
//! module reads and writes no file and knows no artifact: scored items come
//! in through [`Labelled`].
//!
//! Conventions: a *class vector* is one class (0-10) per head; a *code* is
//! the digits (0-9) of a decoded string, blanks removed; the code's text is
//! [`code_string`] ("019").
//!
//! Guarantee: a [`Probs`] built by [`Probs::new`] has `n * heads * 11`
//! finite values in [0, 1], and every 11-vector sums to 1 within
//! [`SUM_TOLERANCE`]; everything downstream relies on it.

pub mod decode;
pub mod ensemble;
pub mod fit;
pub mod ladder;
pub mod metrics;
pub mod postprocess;

pub mod submission;

use crate::kind::NodeError;

/// An item with a name and, in a labelled set, its label (digits 0-9 in
/// reading order): what metrics and the ladder score predictions against.
pub trait Labelled {
    fn name(&self) -> &str;
    fn label(&self) -> Option<&[u8]>;
}

/// A name and a label: the plain form of a scored item.
impl Labelled for (String, Option<Vec<u8>>) {
    fn name(&self) -> &str {
        &self.0
    }
    fn label(&self) -> Option<&[u8]> {
        self.1.as_deref()
    }
}

/// Classes per head: digits 0-9 and the blank.
pub const CLASSES: usize = 11;
/// The class meaning "no digit at this position".
pub const BLANK: u8 = 10;
/// How far an 11-vector's sum may be from 1.
pub const SUM_TOLERANCE: f32 = 1e-3;

/// Class probabilities for `n` images × `heads` heads × [`CLASSES`].
#[derive(Debug, Clone, PartialEq)]
pub struct Probs {
    /// Number of images.
    pub n: usize,
    /// Number of heads (positions) per image.
    pub heads: usize,
    /// `n * heads * 11` values, row-major: image, then head, then class.
    /// Each 11-vector sums to 1.
    pub data: Vec<f32>,
}

impl Probs {
    /// Builds validated probabilities: `heads >= 1`, `data.len() == n *
    /// heads * 11`, every value finite and in [0, 1], every 11-vector summing
    /// to 1 within [`SUM_TOLERANCE`]. The error names the first offending
    /// image and head.
    pub fn new(n: usize, heads: usize, data: Vec<f32>) -> Result<Probs, NodeError> {
        let p = Probs { n, heads, data };
        p.validate()?;
        Ok(p)
    }

    /// Checks the invariants [`Probs::new`] promises (the fields are public).
    pub fn validate(&self) -> Result<(), NodeError> {
        self.check_shape()?;
        for i in 0..self.n {
            for h in 0..self.heads {
                let row = self.get(i, h);
                if let Some(c) = row
                    .iter()
                    .position(|x| !x.is_finite() || *x < 0.0 || *x > 1.0)
                {
                    return Err(NodeError::new(
                        "foldwise::probs::invalid",
                        format!(
                            "probabilities: image {i} head {h} class {c} is {}, not a probability",
                            row[c]
                        ),
                    ));
                }
                let sum: f32 = row.iter().sum();
                if (sum - 1.0).abs() > SUM_TOLERANCE {
                    return Err(NodeError::new(
                        "foldwise::probs::invalid",
                        format!("probabilities: image {i} head {h} sums to {sum}, not 1"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks only the sizes: `heads >= 1` and `data.len() == n * heads * 11`.
    pub fn check_shape(&self) -> Result<(), NodeError> {
        if self.heads == 0 {
            return Err(NodeError::new(
                "foldwise::probs::invalid",
                "probabilities: heads must be at least 1",
            ));
        }
        let want = self
            .n
            .checked_mul(self.heads)
            .and_then(|x| x.checked_mul(CLASSES));
        if want != Some(self.data.len()) {
            return Err(NodeError::new(
                "foldwise::probs::invalid",
                format!(
                    "probabilities: {} values for {} images × {} heads × {CLASSES} classes",
                    self.data.len(),
                    self.n,
                    self.heads
                ),
            ));
        }
        Ok(())
    }

    /// The 11 class probabilities of image `i`, head `h`. Panics when out of
    /// range.
    pub fn get(&self, i: usize, h: usize) -> &[f32] {
        assert!(
            i < self.n && h < self.heads,
            "probabilities: ({i}, {h}) out of range"
        );
        let start = (i * self.heads + h) * CLASSES;
        &self.data[start..start + CLASSES]
    }
}

/// The text of a code: digits joined ("019"); `[]` gives "".
pub fn code_string(code: &[u8]) -> String {
    code.iter().map(|d| char::from(b'0' + d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn onehot(c: usize) -> Vec<f32> {
        let mut v = vec![0.0; CLASSES];
        v[c] = 1.0;
        v
    }

    #[test]
    fn new_accepts_valid_and_get_slices_rows() {
        let data = [onehot(3), onehot(10), onehot(0), onehot(7)].concat();
        let p = Probs::new(2, 2, data).unwrap();
        assert_eq!(p.get(0, 1), &onehot(10)[..]);
        assert_eq!(p.get(1, 1), &onehot(7)[..]);
        assert!(Probs::new(0, 3, vec![]).is_ok());
    }

    #[test]
    fn new_rejects_bad_sizes_values_and_sums() {
        assert!(Probs::new(1, 1, vec![0.0; 10]).is_err());
        assert!(Probs::new(0, 0, vec![]).is_err());
        let mut nan = onehot(1);
        nan[2] = f32::NAN;
        assert!(Probs::new(1, 1, nan).is_err());
        let mut neg = onehot(1);
        neg[1] = 1.5;
        neg[2] = -0.5;
        assert!(Probs::new(1, 1, neg).is_err());
        let err = Probs::new(1, 2, [onehot(1), vec![0.05; 11]].concat()).unwrap_err();
        assert!(err.to_string().contains("image 0 head 1"), "{err}");
        // within tolerance
        let mut near = onehot(4);
        near[4] = 0.9995;
        assert!(Probs::new(1, 1, near).is_ok());
    }

    #[test]
    fn code_string_joins_digits() {
        assert_eq!(code_string(&[0, 1, 9]), "019");
        assert_eq!(code_string(&[]), "");
    }
}
