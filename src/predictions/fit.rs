//! Ensembles fitted on out-of-fold predictions of a library of members:
//!
//! - [`select`]: greedy forward selection with replacement (Caruana et
//!   al., 2004). Start from the best `start` members (each once), then
//!   repeatedly add the member (again, possibly) whose addition scores
//!   best, for `rounds` additions; the ensemble is the prefix that scored
//!   best (the shortest on ties). Weights are the counts, normalised.
//!   Under `seq_acc`, equal accuracies are told apart by log loss (small
//!   libraries and small data tie often).
//! - [`stack`]: non-negative weights summing to one that minimise the log
//!   loss of the weighted mean, by expectation-maximisation for mixture
//!   weights: the objective is concave in the weights, every step raises
//!   it, and the iteration stops when no weight moves by more than 1e-9.
//!
//! Scores: [`Metric::SeqAcc`] (sequence accuracy of the argmax decode, as
//! `evaluate` counts it) or [`Metric::LogLoss`] (mean over images of the
//! negative log probability of the true class at every head; a class given
//! probability 0 counts as 1e-12). Higher is better for both as returned by
//! [`score`] (the log loss is negated there).
//!
//! Guarantees: the truth is one code per image, no longer than the heads
//! (checked); a tie between members goes to the lower index, so a caller
//! that orders its members canonically gets a result independent of the
//! order they were written in; all sums are in `f64`, in a fixed order.

use super::decode::argmax;
use super::{Probs, BLANK, CLASSES};
use crate::kind::NodeError;

/// What selection maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    SeqAcc,
    LogLoss,
}

impl Metric {
    /// `seq_acc` or `log_loss`.
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "seq_acc" => Some(Metric::SeqAcc),
            "log_loss" => Some(Metric::LogLoss),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::SeqAcc => "seq_acc",
            Metric::LogLoss => "log_loss",
        }
    }

    /// The value as people read it (the log loss positive again).
    pub fn shown(self, score: f64) -> f64 {
        match self {
            Metric::SeqAcc => score,
            Metric::LogLoss => -score,
        }
    }
}

/// The true class of every image and head: the code's digits, then
/// blanks.
pub struct Truth {
    heads: usize,
    classes: Vec<u8>,
}

impl Truth {
    /// From one code per image; errors when a code is longer than `heads`.
    pub fn new<C: AsRef<[u8]>>(codes: &[C], heads: usize) -> Result<Truth, NodeError> {
        let mut classes = Vec::with_capacity(codes.len() * heads);
        for (i, c) in codes.iter().enumerate() {
            let c = c.as_ref();
            if c.len() > heads {
                return Err(NodeError::new(
                    "foldwise::ensemble::labels",
                    format!(
                        "image {i}'s label has {} digits, more than the {heads} heads",
                        c.len()
                    ),
                ));
            }
            classes.extend_from_slice(c);
            classes.extend(std::iter::repeat_n(BLANK, heads - c.len()));
        }
        Ok(Truth { heads, classes })
    }

    pub fn len(&self) -> usize {
        self.classes.len() / self.heads.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

/// Checks that every member has the truth's images and heads.
fn check(members: &[&Probs], truth: &Truth) -> Result<(), NodeError> {
    if members.is_empty() {
        return Err(NodeError::new(
            "foldwise::ensemble::members",
            "no members to fit",
        ));
    }
    for (k, m) in members.iter().enumerate() {
        m.check_shape()?;
        if (m.n, m.heads) != (truth.len(), truth.heads) {
            return Err(NodeError::new(
                "foldwise::ensemble::oof",
                format!(
                    "member {k}'s out-of-fold predictions have {} images × {} heads, the labels {} × {}",
                    m.n,
                    m.heads,
                    truth.len(),
                    truth.heads
                ),
            ));
        }
    }
    Ok(())
}

/// The score of a sum of probabilities (any positive scale: argmax and the
/// normalised probability do not depend on it), `total` being the scale.
fn score_sum(sum: &[f64], total: f64, truth: &Truth, metric: Metric) -> f64 {
    let heads = truth.heads;
    let n = truth.len();
    if n == 0 {
        return 0.0;
    }
    match metric {
        Metric::SeqAcc => {
            let mut right = 0usize;
            let mut row = [0f32; CLASSES];
            for i in 0..n {
                let ok = (0..heads).all(|h| {
                    let at = (i * heads + h) * CLASSES;
                    // Ties as the decode breaks them: on the f32 mean.
                    for (c, r) in row.iter_mut().enumerate() {
                        *r = (sum[at + c] / total) as f32;
                    }
                    argmax(&row) == truth.classes[i * heads + h]
                });
                right += usize::from(ok);
            }
            right as f64 / n as f64
        }
        Metric::LogLoss => {
            let mut loss = 0.0;
            for s in 0..n * heads {
                let p = sum[s * CLASSES + truth.classes[s] as usize] / total;
                loss -= p.max(1e-12).ln();
            }
            -(loss / n as f64)
        }
    }
}

/// The ranking of a sum under `metric`: the score, then (for `seq_acc`)
/// minus the log loss, to break ties.
fn rank(sum: &[f64], total: f64, truth: &Truth, metric: Metric) -> (f64, f64) {
    let primary = score_sum(sum, total, truth, metric);
    let second = match metric {
        Metric::SeqAcc => score_sum(sum, total, truth, Metric::LogLoss),
        Metric::LogLoss => primary,
    };
    (primary, second)
}

fn better(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
}

/// The score of one prediction.
pub fn score(p: &Probs, truth: &Truth, metric: Metric) -> Result<f64, NodeError> {
    check(&[p], truth)?;
    let sum: Vec<f64> = p.data.iter().map(|&x| x as f64).collect();
    Ok(score_sum(&sum, 1.0, truth, metric))
}

/// The outcome of a selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// How many times each member was chosen.
    pub counts: Vec<usize>,
    /// The counts normalised to sum 1.
    pub weights: Vec<f64>,
    /// The ensemble's score.
    pub score: f64,
    /// Each member's own score.
    pub member_scores: Vec<f64>,
    /// Member chosen at each step (the start first) and the score after it.
    pub path: Vec<(usize, f64)>,
}

/// Greedy forward selection with replacement; see the module doc.
pub fn select(
    members: &[&Probs],
    truth: &Truth,
    metric: Metric,
    start: usize,
    rounds: usize,
) -> Result<Selection, NodeError> {
    check(members, truth)?;
    let k = members.len();
    let as_f64 = |m: &Probs| -> Vec<f64> { m.data.iter().map(|&x| x as f64).collect() };
    let member_scores: Vec<f64> = members
        .iter()
        .map(|m| score_sum(&as_f64(m), 1.0, truth, metric))
        .collect();
    // The best `start` members, best first (ties: lower index).
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| {
        member_scores[b]
            .total_cmp(&member_scores[a])
            .then(a.cmp(&b))
    });
    let mut sum = vec![0f64; members[0].data.len()];
    let mut counts = vec![0usize; k];
    let mut path = Vec::new();
    let mut total = 0.0;
    for &j in order.iter().take(start.clamp(1, k)) {
        for (s, &x) in sum.iter_mut().zip(&members[j].data) {
            *s += x as f64;
        }
        counts[j] += 1;
        total += 1.0;
        path.push((j, score_sum(&sum, total, truth, metric)));
    }
    let mut best = (rank(&sum, total, truth, metric), counts.clone());
    let mut trial = vec![0f64; sum.len()];
    for _ in 0..rounds {
        let mut pick: Option<(usize, (f64, f64))> = None;
        for (j, m) in members.iter().enumerate() {
            for ((t, &s), &x) in trial.iter_mut().zip(&sum).zip(&m.data) {
                *t = s + x as f64;
            }
            let r = rank(&trial, total + 1.0, truth, metric);
            if pick.is_none_or(|(_, b)| better(r, b)) {
                pick = Some((j, r));
            }
        }
        let (j, r) = pick.expect("at least one member");
        for (s, &x) in sum.iter_mut().zip(&members[j].data) {
            *s += x as f64;
        }
        counts[j] += 1;
        total += 1.0;
        path.push((j, r.0));
        if better(r, best.0) {
            best = (r, counts.clone());
        }
    }
    let ((score, _), counts) = best;
    let n: usize = counts.iter().sum();
    Ok(Selection {
        weights: counts.iter().map(|&c| c as f64 / n as f64).collect(),
        counts,
        score,
        member_scores,
        path,
    })
}

/// The outcome of stacking.
#[derive(Debug, Clone, PartialEq)]
pub struct Stacked {
    pub weights: Vec<f64>,
    /// The weighted mean's log loss (positive).
    pub log_loss: f64,
    /// Each member's own log loss.
    pub member_losses: Vec<f64>,
    pub iterations: usize,
}

/// Log-loss-minimising mixture weights; see the module doc.
pub fn stack(members: &[&Probs], truth: &Truth) -> Result<Stacked, NodeError> {
    check(members, truth)?;
    let k = members.len();
    let samples = truth.classes.len();
    // q[s][j]: member j's probability of the true class of sample s.
    let q: Vec<f64> = (0..samples)
        .flat_map(|s| {
            let c = truth.classes[s] as usize;
            members
                .iter()
                .map(move |m| (m.data[s * CLASSES + c] as f64).max(1e-12))
        })
        .collect();
    let loss_of = |w: &[f64]| -> f64 {
        let mut loss = 0.0;
        for row in q.chunks_exact(k) {
            let p: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum();
            loss -= p.ln();
        }
        loss / truth.len().max(1) as f64
    };
    let member_losses: Vec<f64> = (0..k)
        .map(|j| {
            let mut w = vec![0.0; k];
            w[j] = 1.0;
            loss_of(&w)
        })
        .collect();
    let mut w = vec![1.0 / k as f64; k];
    let mut iterations = 0;
    let mut next = vec![0f64; k];
    while iterations < 10_000 {
        iterations += 1;
        next.iter_mut().for_each(|x| *x = 0.0);
        for row in q.chunks_exact(k) {
            let p: f64 = row.iter().zip(&w).map(|(a, b)| a * b).sum();
            for j in 0..k {
                next[j] += w[j] * row[j] / p;
            }
        }
        let n = samples.max(1) as f64;
        let mut moved = 0f64;
        for j in 0..k {
            let v = next[j] / n;
            moved = moved.max((v - w[j]).abs());
            w[j] = v;
        }
        // Renormalise against rounding drift.
        let s: f64 = w.iter().sum();
        w.iter_mut().for_each(|x| *x /= s);
        if moved < 1e-9 {
            break;
        }
    }
    Ok(Stacked {
        log_loss: loss_of(&w),
        weights: w,
        member_losses,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One head, `n` images; `rows[i]` = (class, probability of it), the
    /// rest spread evenly.
    fn probs(rows: &[(u8, f32)]) -> Probs {
        let mut data = Vec::new();
        for &(c, p) in rows {
            let rest = (1.0 - p) / (CLASSES as f32 - 1.0);
            for k in 0..CLASSES {
                data.push(if k == c as usize { p } else { rest });
            }
        }
        Probs::new(rows.len(), 1, data).unwrap()
    }

    fn truth(codes: &[&[u8]]) -> Truth {
        Truth::new(codes, 1).unwrap()
    }

    #[test]
    fn scores_of_one_prediction() {
        let t = truth(&[&[1], &[2], &[]]);
        let p = probs(&[(1, 0.9), (3, 0.6), (10, 0.5)]);
        assert_eq!(score(&p, &t, Metric::SeqAcc).unwrap(), 2.0 / 3.0);
        // -ln(0.9) - ln(0.04) - ln(0.5), over 3 images; image 2's true class 2
        // has (1 - 0.6) / 10.
        let want = -((0.9f32 as f64).ln() + ((0.4f32 / 10.0) as f64).ln() + 0.5f64.ln()) / 3.0;
        let got = Metric::LogLoss.shown(score(&p, &t, Metric::LogLoss).unwrap());
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert!(Truth::new(&[vec![1u8, 2]], 1).is_err());
    }

    #[test]
    fn selection_adds_the_member_that_fixes_the_rest() {
        // a: right on images 0-2, b: right on 3; c: always wrong but sure.
        // a is best alone (3/4); a+b twice... the best mixture is found.
        let t = truth(&[&[1], &[1], &[1], &[2]]);
        let a = probs(&[(1, 0.9), (1, 0.9), (1, 0.9), (1, 0.55)]);
        let b = probs(&[(4, 0.5), (4, 0.5), (4, 0.5), (2, 0.95)]);
        let c = probs(&[(5, 0.99), (5, 0.99), (5, 0.99), (5, 0.99)]);
        let s = select(&[&a, &b, &c], &t, Metric::SeqAcc, 1, 5).unwrap();
        assert_eq!(s.member_scores, vec![0.75, 0.25, 0.0]);
        assert_eq!(s.path[0], (0, 0.75));
        // a + b: image 3's class 2 has (0.045 + 0.95) / 2 > (0.55 + 0.005) / 2,
        // images 0-2 keep class 1 ((0.9 + 0.05) / 2 > (0.01 + 0.5) / 2).
        assert_eq!(s.path[1], (1, 1.0));
        assert_eq!(s.score, 1.0);
        // Of the prefixes at 100%, log loss prefers 3 a : 2 b.
        assert_eq!(s.counts, vec![3, 2, 0]);
        assert_eq!(s.weights, vec![0.6, 0.4, 0.0]);
        assert_eq!(s.path.len(), 6);
    }

    #[test]
    fn a_sorted_start_takes_the_best_n_once_each() {
        let t = truth(&[&[1], &[2]]);
        let a = probs(&[(1, 0.9), (3, 0.9)]);
        let b = probs(&[(1, 0.6), (2, 0.6)]);
        let c = probs(&[(4, 0.9), (2, 0.9)]);
        let s = select(&[&a, &b, &c], &t, Metric::LogLoss, 2, 0).unwrap();
        // b is best alone by log loss, then a or c (equal): the lower index.
        assert_eq!(s.path.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 0]);
        assert_eq!(s.counts, vec![1, 1, 0]);
    }

    #[test]
    fn the_order_of_the_members_changes_only_the_indices() {
        let t = truth(&[&[1], &[2], &[3], &[]]);
        let a = probs(&[(1, 0.7), (2, 0.4), (4, 0.5), (10, 0.6)]);
        let b = probs(&[(1, 0.5), (5, 0.6), (3, 0.7), (10, 0.3)]);
        let c = probs(&[(6, 0.5), (2, 0.8), (3, 0.4), (1, 0.5)]);
        let s1 = select(&[&a, &b, &c], &t, Metric::LogLoss, 1, 10).unwrap();
        let s2 = select(&[&c, &a, &b], &t, Metric::LogLoss, 1, 10).unwrap();
        assert_eq!(s1.counts, vec![s2.counts[1], s2.counts[2], s2.counts[0]]);
        assert_eq!(s1.score, s2.score);
        let k1 = stack(&[&a, &b, &c], &t).unwrap();
        let k2 = stack(&[&c, &a, &b], &t).unwrap();
        for (x, y) in k1
            .weights
            .iter()
            .zip([k2.weights[1], k2.weights[2], k2.weights[0]])
        {
            assert!((x - y).abs() < 1e-7, "{:?} {:?}", k1.weights, k2.weights);
        }
    }

    #[test]
    fn stacking_finds_the_log_loss_minimum() {
        // Two members, each right where the other is unsure: the optimum of
        // -ln(w a + (1-w) b) summed is found by EM; check it against a fine
        // grid search.
        let t = truth(&[&[1], &[2], &[3], &[4], &[5]]);
        let a = probs(&[(1, 0.9), (2, 0.8), (3, 0.2), (4, 0.6), (9, 0.5)]);
        let b = probs(&[(1, 0.3), (2, 0.2), (3, 0.9), (4, 0.7), (5, 0.4)]);
        let k = stack(&[&a, &b], &t).unwrap();
        assert!((k.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let loss = |w: f64| -> f64 {
            let m = ensemble_mean(&a, &b, w);
            Metric::LogLoss.shown(score(&m, &t, Metric::LogLoss).unwrap())
        };
        let grid_best = (0..=1000)
            .map(|i| loss(i as f64 / 1000.0))
            .fold(f64::INFINITY, f64::min);
        assert!(
            k.log_loss <= grid_best + 1e-6,
            "{} vs {grid_best}",
            k.log_loss
        );
        assert!((loss(k.weights[0]) - k.log_loss).abs() < 1e-5);
        assert!(k.log_loss < k.member_losses[0] && k.log_loss < k.member_losses[1]);
        // A useless member gets (almost) nothing.
        let c = probs(&[(7, 0.99), (7, 0.99), (7, 0.99), (7, 0.99), (7, 0.99)]);
        let k = stack(&[&a, &b, &c], &t).unwrap();
        assert!(k.weights[2] < 1e-3, "{:?}", k.weights);
    }

    fn ensemble_mean(a: &Probs, b: &Probs, w: f64) -> Probs {
        let data = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (w * *x as f64 + (1.0 - w) * *y as f64) as f32)
            .collect();
        Probs::new(a.n, a.heads, data).unwrap()
    }
}
