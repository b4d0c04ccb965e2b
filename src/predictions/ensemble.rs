//! Ensembling the predictions of several members (folds, snapshots, TTA
//! rounds) over the same images and heads.
//!
//! - [`mean`]: average the probabilities; decode afterwards.
//! - [`weighted`]: the same with weights (normalised to sum 1).
//! - [`vote`]: every member decodes each head by argmax (blank included);
//!   per image and head the most frequent class wins; a tie goes to the tied
//!   class with the higher mean probability at that position, then to the
//!   lowest class.
//!
//! Guarantees: every member must have the same `n` and `heads` (error
//! otherwise, as for no members at all). The result does not depend on the
//! order of the members, bit for bit: each output value is a sum of the
//! members' contributions taken in sorted order (in `f64`), so reordering
//! the members cannot change the rounding.

use super::decode::argmax;
use super::{Probs, CLASSES};
use crate::kind::NodeError;

/// Checks that there are members and that they share `n` and `heads`;
/// returns `(n, heads)`.
fn check_members(members: &[&Probs]) -> Result<(usize, usize), NodeError> {
    let Some(first) = members.first() else {
        return Err(NodeError::new(
            "foldwise::ensemble::members",
            "ensemble: no members",
        ));
    };
    for (k, m) in members.iter().enumerate() {
        m.check_shape().map_err(|e| {
            NodeError::new(
                "foldwise::ensemble::members",
                format!("ensemble member {k}: {e}"),
            )
        })?;
        if (m.n, m.heads) != (first.n, first.heads) {
            return Err(NodeError::new(
                "foldwise::ensemble::members",
                format!(
                    "ensemble member {k} has {} images × {} heads, member 0 has {} × {}",
                    m.n, m.heads, first.n, first.heads
                ),
            ));
        }
    }
    Ok((first.n, first.heads))
}

/// Sums in ascending order (order-independent result).
fn sorted_sum(buf: &mut [f64]) -> f64 {
    buf.sort_unstable_by(f64::total_cmp);
    buf.iter().sum()
}

/// The plain average of the members' probabilities.
pub fn mean(members: &[&Probs]) -> Result<Probs, NodeError> {
    let weights = vec![1.0; members.len()];
    weighted(members, &weights)
}

/// The weighted average of the members' probabilities. Weights are
/// normalised to sum 1; each must be finite and non-negative, their sum
/// positive, and there must be one per member.
pub fn weighted(members: &[&Probs], weights: &[f64]) -> Result<Probs, NodeError> {
    let (n, heads) = check_members(members)?;
    if weights.len() != members.len() {
        return Err(NodeError::new(
            "foldwise::ensemble::weights",
            format!(
                "ensemble: {} weights for {} members",
                weights.len(),
                members.len()
            ),
        ));
    }
    if let Some((k, w)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !w.is_finite() || **w < 0.0)
    {
        return Err(NodeError::new(
            "foldwise::ensemble::weights",
            format!("ensemble: weight {k} is {w}; weights must be finite and non-negative"),
        ));
    }
    let total = sorted_sum(&mut weights.to_vec());
    if total <= 0.0 {
        return Err(NodeError::new(
            "foldwise::ensemble::weights",
            "ensemble: the weights sum to zero",
        ));
    }
    let norm: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let mut buf = vec![0.0f64; members.len()];
    let data = (0..n * heads * CLASSES)
        .map(|j| {
            for ((b, m), w) in buf.iter_mut().zip(members).zip(&norm) {
                *b = w * f64::from(m.data[j]);
            }
            sorted_sum(&mut buf) as f32
        })
        .collect();
    Ok(Probs { n, heads, data })
}

/// Per-character majority vote; returns the class vector (one class 0-10
/// per head) of every image. Decode codes with
/// [`super::decode::code`].
pub fn vote(members: &[&Probs]) -> Result<Vec<Vec<u8>>, NodeError> {
    let (n, heads) = check_members(members)?;
    let mut buf = vec![0.0f64; members.len()];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut row = Vec::with_capacity(heads);
        for h in 0..heads {
            let mut count = [0usize; CLASSES];
            for m in members {
                count[usize::from(argmax(m.get(i, h)))] += 1;
            }
            let top = *count.iter().max().expect("11 classes");
            let tied: Vec<usize> = (0..CLASSES).filter(|c| count[*c] == top).collect();
            let mut best = tied[0];
            if tied.len() > 1 {
                // Sum of probabilities ∝ mean; sorted for order independence.
                let mut score = |c: usize| {
                    for (b, m) in buf.iter_mut().zip(members) {
                        *b = f64::from(m.get(i, h)[c]);
                    }
                    sorted_sum(&mut buf)
                };
                let mut best_score = score(best);
                for &c in &tied[1..] {
                    let s = score(c);
                    if s > best_score {
                        best = c;
                        best_score = s;
                    }
                }
            }
            row.push(best as u8);
        }
        out.push(row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictions::decode;

    /// One image, one head, from an 11-vector.
    fn one(row: [f32; CLASSES]) -> Probs {
        Probs::new(1, 1, row.to_vec()).unwrap()
    }

    /// An 11-vector with the given (class, prob) entries; the rest goes to
    /// the blank.
    fn row(entries: &[(usize, f32)]) -> [f32; CLASSES] {
        let mut r = [0.0; CLASSES];
        for (c, p) in entries {
            r[*c] = *p;
        }
        r[10] += 1.0 - r.iter().sum::<f32>();
        r
    }

    #[test]
    fn mean_and_vote_disagree() {
        // Two members prefer 5 a little, one is sure of 3.
        let a = one(row(&[(5, 0.4), (3, 0.35), (10, 0.25)]));
        let b = a.clone();
        let c = one(row(&[(3, 1.0)]));
        let m = mean(&[&a, &b, &c]).unwrap();
        assert_eq!(decode::classes(&m), [[3]]); // 3: (0.35+0.35+1)/3 ≈ 0.567
        assert!((m.get(0, 0)[3] - 1.7 / 3.0).abs() < 1e-6);
        assert!((m.get(0, 0)[5] - 0.8 / 3.0).abs() < 1e-6);
        assert_eq!(vote(&[&a, &b, &c]).unwrap(), [[5]]); // 5 wins 2 votes to 1
    }

    #[test]
    fn vote_ties_go_to_higher_mean_then_lowest_class() {
        // 7 and 2 each get one vote; 2's mean probability is higher.
        let a = one(row(&[(7, 0.5), (2, 0.4)]));
        let b = one(row(&[(2, 0.9), (7, 0.05)]));
        assert_eq!(vote(&[&a, &b]).unwrap(), [[2]]);
        assert_eq!(vote(&[&b, &a]).unwrap(), [[2]]);
        // Equal means too: lowest class.
        let a = one(row(&[(7, 0.6), (2, 0.4)]));
        let b = one(row(&[(2, 0.6), (7, 0.4)]));
        assert_eq!(vote(&[&a, &b]).unwrap(), [[2]]);
        assert_eq!(vote(&[&b, &a]).unwrap(), [[2]]);
        // Three-way tie among 1, 4, blank: blank has the highest mean.
        let a = one(row(&[(1, 0.5), (10, 0.45), (4, 0.05)]));
        let b = one(row(&[(4, 0.5), (10, 0.45), (1, 0.05)]));
        let c = one(row(&[(10, 0.6), (1, 0.2), (4, 0.2)]));
        assert_eq!(vote(&[&a, &b, &c]).unwrap(), [[10]]);
        assert_eq!(vote(&[&c, &b, &a]).unwrap(), [[10]]);
    }

    #[test]
    fn vote_decodes_whole_images() {
        let p = |rows: [[f32; CLASSES]; 2]| Probs::new(1, 2, rows.concat()).unwrap();
        let a = p([row(&[(1, 0.9)]), row(&[(10, 1.0)])]);
        let b = p([row(&[(1, 0.8)]), row(&[(6, 0.7)])]);
        let c = p([row(&[(7, 0.9)]), row(&[(10, 0.9)])]);
        let v = vote(&[&a, &b, &c]).unwrap();
        assert_eq!(v, [[1, 10]]);
        assert_eq!(decode::code(&v[0]), [1]);
    }

    #[test]
    fn weighted_uses_normalised_weights() {
        let a = one(row(&[(1, 1.0)]));
        let b = one(row(&[(2, 1.0)]));
        let w = weighted(&[&a, &b], &[3.0, 1.0]).unwrap();
        assert_eq!(w.get(0, 0)[1], 0.75);
        assert_eq!(w.get(0, 0)[2], 0.25);
        assert_eq!(w, weighted(&[&a, &b], &[0.75, 0.25]).unwrap());
        // Weight zero for one member leaves the other alone.
        let w = weighted(&[&a, &b], &[0.0, 2.0]).unwrap();
        assert_eq!(decode::classes(&w), [[2]]);
        assert_eq!(w.get(0, 0)[2], 1.0);
        // Output is still valid probabilities.
        w.validate().unwrap();
    }

    #[test]
    fn weighted_rejects_bad_weights() {
        let a = one(row(&[(1, 1.0)]));
        let b = one(row(&[(2, 1.0)]));
        assert!(weighted(&[&a, &b], &[1.0]).is_err());
        assert!(weighted(&[&a, &b], &[1.0, -0.5]).is_err());
        assert!(weighted(&[&a, &b], &[0.0, 0.0]).is_err());
        assert!(weighted(&[&a, &b], &[f64::NAN, 1.0]).is_err());
        assert!(weighted(&[&a, &b], &[f64::INFINITY, 1.0]).is_err());
    }

    #[test]
    fn members_must_agree() {
        let a = Probs::new(1, 1, row(&[(1, 1.0)]).to_vec()).unwrap();
        let b = Probs::new(1, 2, [row(&[(1, 1.0)]), row(&[])].concat()).unwrap();
        let c = Probs::new(2, 1, [row(&[(1, 1.0)]), row(&[])].concat()).unwrap();
        assert!(mean(&[&a, &b]).is_err());
        assert!(mean(&[&a, &c]).is_err());
        assert!(vote(&[&a, &b]).is_err());
        assert!(vote(&[&c, &a]).is_err());
        assert!(mean(&[]).is_err());
        assert!(vote(&[]).is_err());
        let mut broken = a.clone();
        broken.data.pop();
        assert!(mean(&[&a, &broken]).is_err());
    }

    /// Probabilities whose f32 sums depend on the summation order.
    fn awkward(seed: u32, n: usize, heads: usize) -> Probs {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        let mut data = Vec::new();
        for _ in 0..n * heads {
            let mut r = [0.0f32; CLASSES];
            for x in r.iter_mut() {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                *x = (s % 1000) as f32 / 997.0 + 1e-3;
            }
            let t: f32 = r.iter().sum();
            r.iter_mut().for_each(|x| *x /= t);
            data.extend_from_slice(&r);
        }
        Probs::new(n, heads, data).unwrap()
    }

    #[test]
    fn member_order_does_not_matter_bitwise() {
        let ms: Vec<Probs> = (0..5).map(|k| awkward(k, 7, 4)).collect();
        let orders: [[usize; 5]; 4] = [
            [0, 1, 2, 3, 4],
            [4, 3, 2, 1, 0],
            [2, 0, 4, 1, 3],
            [1, 4, 0, 3, 2],
        ];
        let pick = |o: &[usize; 5]| -> Vec<&Probs> { o.iter().map(|k| &ms[*k]).collect() };
        let weights = [0.1, 0.7, 1.3, 0.3, 2.9];
        let base = pick(&orders[0]);
        let m0 = mean(&base).unwrap();
        let w0 = weighted(&base, &weights).unwrap();
        let v0 = vote(&base).unwrap();
        // The data is awkward: naive f32 sums depend on the order.
        let naive = |o: &[usize; 5]| -> Vec<u32> {
            (0..ms[0].data.len())
                .map(|j| o.iter().map(|k| ms[*k].data[j]).sum::<f32>().to_bits())
                .collect()
        };
        assert!(orders[1..].iter().any(|o| naive(o) != naive(&orders[0])));
        let bits = |p: &Probs| p.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for o in &orders[1..] {
            let members = pick(o);
            let ws: Vec<f64> = o.iter().map(|k| weights[*k]).collect();
            assert_eq!(bits(&mean(&members).unwrap()), bits(&m0));
            assert_eq!(bits(&weighted(&members, &ws).unwrap()), bits(&w0));
            assert_eq!(vote(&members).unwrap(), v0);
        }
        m0.validate().unwrap();
        w0.validate().unwrap();
    }
}
