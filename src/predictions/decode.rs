//! Decoding fixed-length predictions: per-head argmax, then the code.
//!
//! Choices (fixed, relied on by ensembling and metrics):
//! - argmax ties go to the lowest class index (so a tie between a digit and
//!   the blank picks the digit);
//! - the code is the non-blank classes in head order, with blanks dropped
//!   *wherever they are*: `[1, 10, 2]` decodes to "12", not "1". A blank in
//!   the middle is read as a missed detection rather than the end of the
//!   string; a model trained on left-aligned, blank-padded labels rarely
//!   produces one;
//! - all blanks decode to the empty code "".

use super::{Probs, BLANK, CLASSES};

/// Index of the largest value; ties go to the lowest index. `row` must be
/// non-empty and NaN-free (as [`Probs`] rows are).
pub fn argmax(row: &[f32]) -> u8 {
    debug_assert_eq!(row.len(), CLASSES);
    let mut best = 0;
    for (c, x) in row.iter().enumerate().skip(1) {
        if *x > row[best] {
            best = c;
        }
    }
    best as u8
}

/// Index of the largest digit probability (classes 0-9, the blank left
/// out); ties go to the lowest digit.
pub fn argmax_digit(row: &[f32]) -> u8 {
    debug_assert_eq!(row.len(), CLASSES);
    let mut best = 0;
    for (c, x) in row.iter().enumerate().take(BLANK as usize).skip(1) {
        if *x > row[best] {
            best = c;
        }
    }
    best as u8
}

/// The class vector of image `i`: the argmax class (0-10) of every head.
pub fn image_classes(p: &Probs, i: usize) -> Vec<u8> {
    (0..p.heads).map(|h| argmax(p.get(i, h))).collect()
}

/// The class vectors of all images.
pub fn classes(p: &Probs) -> Vec<Vec<u8>> {
    (0..p.n).map(|i| image_classes(p, i)).collect()
}

/// The code of a class vector: its non-blank classes in order.
pub fn code(classes: &[u8]) -> Vec<u8> {
    classes.iter().copied().filter(|c| *c != BLANK).collect()
}

/// The codes of all images (argmax, then [`code`]).
pub fn codes(p: &Probs) -> Vec<Vec<u8>> {
    (0..p.n).map(|i| code(&image_classes(p, i))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictions::code_string;

    fn onehot(c: usize) -> Vec<f32> {
        let mut v = vec![0.0; CLASSES];
        v[c] = 1.0;
        v
    }

    fn probs(rows: &[Vec<usize>]) -> Probs {
        let heads = rows[0].len();
        let data = rows.iter().flatten().flat_map(|c| onehot(*c)).collect();
        Probs::new(rows.len(), heads, data).unwrap()
    }

    #[test]
    fn blanks_are_dropped_anywhere() {
        let p = probs(&[
            vec![1, 10, 2],
            vec![10, 10, 5],
            vec![4, 2, 10],
            vec![10, 10, 10],
            vec![0, 1, 9],
        ]);
        let got: Vec<String> = codes(&p).iter().map(|c| code_string(c)).collect();
        assert_eq!(got, ["12", "5", "42", "", "019"]);
        assert_eq!(classes(&p)[0], [1, 10, 2]);
    }

    #[test]
    fn argmax_ties_pick_lowest_class() {
        let mut row = vec![0.0; CLASSES];
        row[3] = 0.5;
        row[10] = 0.5;
        assert_eq!(argmax(&row), 3);
        let mut row = vec![0.0; CLASSES];
        row[7] = 0.25;
        row[2] = 0.25;
        row[9] = 0.25;
        row[10] = 0.25;
        assert_eq!(argmax(&row), 2);
        let uniform = vec![1.0 / 11.0; CLASSES];
        assert_eq!(argmax(&uniform), 0);
    }
}
