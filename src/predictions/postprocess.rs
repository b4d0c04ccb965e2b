//! Post-processing: correcting decoded class vectors with what else is
//! known — a length model, per-position character statistics, and the
//! shape every real code has.
//!
//! A [`State`] is the probabilities and the current class vector of every
//! image. Each [`Setting`] maps a state to a new one; settings compose in
//! the order they are applied. The steps:
//!
//! - [`Setting::Rules`]: a class vector is *well formed* when it is one or
//!   more digits followed only by blanks. A malformed one (a digit after a
//!   blank, or no digit at all) is replaced by the most probable well-formed
//!   vector under the heads: for each length L in 1..=heads, the most
//!   probable digit (0-9) at each of the first L positions and the blank
//!   after them, scored by the sum of the chosen classes' log-probabilities;
//!   the best L wins, the shortest on ties. Well-formed vectors are kept.
//! - [`Setting::LengthForce`]: the length model's most probable length L
//!   (among 1..=heads, the shortest on ties); when its probability is at
//!   least `threshold` and the decoded code has another length, the code is
//!   made to have L digits: when it is shorter, the most probable digit at
//!   each of the first L positions, blanks after; when it is longer, its
//!   least confident digits (lowest probability of the chosen class; the
//!   later one on ties) are dropped and the rest keep their order.
//! - [`Setting::LengthJoint`]: the heads' own length probabilities P_h(L) =
//!   Π_{j<L} (1 − p_j(blank)) · Π_{j≥L} p_j(blank) are combined with the
//!   length model's P_m(L) as ln P_h(L) + weight · ln P_m(L), L in
//!   1..=heads (the shortest on ties); when the best L differs from the
//!   decoded length, the code becomes the most probable digit at each of
//!   the first L positions, blanks after. Weight 0 uses the heads alone.
//! - [`Setting::PositionPrior`]: every head's probabilities are multiplied
//!   by its position's class frequencies in the training labels raised to
//!   `weight` ([`Prior`], add-one smoothed) and renormalised; a position
//!   whose class still equals the old argmax (no earlier step changed it)
//!   takes the new argmax, a changed one is kept. Weight 0 changes nothing.
//!
//! Fitting ([`fit`]): each candidate setting of a step is applied to
//! out-of-fold predictions and scored against their labels. A candidate
//! helps when it fixes more codes than it breaks there, and a one-sided
//! sign test on those fixed and broken codes gives a p-value of at most
//! `alpha` (default 0.05 in the node): a net gain of 3 codes out of 5,000
//! is not evidence. Among the helping candidates the best sequence
//! accuracy wins, ties going to the earlier one; the candidate lists
//! ([`candidates`]) go from the mildest setting to the strongest. With no
//! helping candidate the step is off.
//!
//! Guarantees: pure functions of their inputs; every output vector has the
//! input's number of heads and classes 0-10; probabilities stay valid
//! [`Probs`].

use serde::{Deserialize, Serialize};

use super::{decode, Probs, BLANK, CLASSES};

/// Probabilities and current class vectors of a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub probs: Probs,
    pub classes: Vec<Vec<u8>>,
}

impl State {
    /// The state a prediction starts in: its probabilities and its class
    /// vectors (argmax, or a vote's classes).
    pub fn new(probs: Probs, classes: Vec<Vec<u8>>) -> State {
        assert_eq!(probs.n, classes.len(), "one class vector per image");
        State { probs, classes }
    }
}

/// One step with its setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Setting {
    Rules,
    LengthForce { threshold: f64 },
    LengthJoint { weight: f64 },
    PositionPrior { weight: f64 },
}

impl Setting {
    /// A short description for reports: "on", "threshold 0.9", "weight 1".
    pub fn describe(&self) -> String {
        match self {
            Setting::Rules => "on".into(),
            Setting::LengthForce { threshold } => format!("threshold {threshold}"),
            Setting::LengthJoint { weight } | Setting::PositionPrior { weight } => {
                format!("weight {weight}")
            }
        }
    }
}

/// Per-position class frequencies of training labels: `freq[h][c]` =
/// (count of class c at head h + 1) / (labels + 11), the label padded with
/// blanks to the head count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prior {
    pub labels: usize,
    pub freq: Vec<[f64; CLASSES]>,
}

impl Prior {
    /// Counts `labels` (digit codes) for `heads` positions. A code longer
    /// than `heads` is an error naming its position in the list.
    pub fn count<L: AsRef<[u8]>>(labels: &[L], heads: usize) -> Result<Prior, String> {
        let mut counts = vec![[0u64; CLASSES]; heads];
        for (k, l) in labels.iter().enumerate() {
            let l = l.as_ref();
            if l.len() > heads {
                return Err(format!(
                    "label {k} has {} digits, more than the {heads} heads",
                    l.len()
                ));
            }
            for (h, row) in counts.iter_mut().enumerate() {
                let c = l.get(h).copied().unwrap_or(BLANK);
                row[c as usize] += 1;
            }
        }
        let n = labels.len();
        let freq = counts
            .iter()
            .map(|row| row.map(|c| (c + 1) as f64 / (n + CLASSES) as f64))
            .collect();
        Ok(Prior { labels: n, freq })
    }
}

/// Whether `c` is one or more digits followed only by blanks.
pub fn well_formed(c: &[u8]) -> bool {
    let k = c.iter().take_while(|&&x| x != BLANK).count();
    k >= 1 && c[k..].iter().all(|&x| x == BLANK)
}

fn ln(x: f32) -> f64 {
    (x as f64).max(1e-30).ln()
}

/// The most probable digit (0-9) of a head's row; ties to the lowest.
fn best_digit(row: &[f32]) -> u8 {
    decode::argmax_digit(row)
}

/// The well-formed vector of length `len` made of the best digits, and the
/// sum of its classes' log-probabilities.
fn of_length(p: &Probs, i: usize, len: usize) -> (Vec<u8>, f64) {
    let mut c = Vec::with_capacity(p.heads);
    let mut score = 0.0;
    for h in 0..p.heads {
        let row = p.get(i, h);
        let k = if h < len { best_digit(row) } else { BLANK };
        score += ln(row[k as usize]);
        c.push(k);
    }
    (c, score)
}

fn digits(c: &[u8]) -> usize {
    c.iter().filter(|&&x| x != BLANK).count()
}

/// The index of the first maximum of `scores` (which is non-empty).
fn first_max(scores: &[f64]) -> usize {
    let mut best = 0;
    for (k, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = k;
        }
    }
    best
}

fn rules(s: &State) -> Vec<Vec<u8>> {
    let heads = s.probs.heads;
    s.classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if well_formed(c) {
                return c.clone();
            }
            let scores: Vec<f64> = (1..=heads).map(|l| of_length(&s.probs, i, l).1).collect();
            of_length(&s.probs, i, 1 + first_max(&scores)).0
        })
        .collect()
}

/// The length model's most probable length in 1..=heads and its
/// probability.
fn model_length(length: &Probs, i: usize, heads: usize) -> (usize, f64) {
    let row = length.get(i, 0);
    let scores: Vec<f64> = (1..=heads).map(|l| row[l] as f64).collect();
    let k = first_max(&scores);
    (k + 1, scores[k])
}

fn force(s: &State, length: &Probs, threshold: f64) -> Vec<Vec<u8>> {
    let heads = s.probs.heads;
    s.classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (l, conf) = model_length(length, i, heads);
            let cur = digits(c);
            if conf < threshold || l == cur {
                return c.clone();
            }
            if cur < l {
                return of_length(&s.probs, i, l).0;
            }
            // Drop the cur − l least confident digits.
            let mut present: Vec<(usize, f32)> = c
                .iter()
                .enumerate()
                .filter(|(_, &x)| x != BLANK)
                .map(|(h, &x)| (h, s.probs.get(i, h)[x as usize]))
                .collect();
            let mut order: Vec<usize> = (0..present.len()).collect();
            order.sort_by(|&a, &b| {
                present[a]
                    .1
                    .total_cmp(&present[b].1)
                    .then(present[b].0.cmp(&present[a].0))
            });
            let drop: Vec<usize> = order[..cur - l].iter().map(|&k| present[k].0).collect();
            present.retain(|(h, _)| !drop.contains(h));
            let mut out: Vec<u8> = present.iter().map(|(h, _)| c[*h]).collect();
            out.resize(heads, BLANK);
            out
        })
        .collect()
}

/// The heads' own probability that the code has `len` digits (the first
/// `len` heads not blank, the others blank), as a log.
pub fn heads_length_ln(p: &Probs, i: usize, len: usize) -> f64 {
    (0..p.heads)
        .map(|h| {
            let b = p.get(i, h)[BLANK as usize];
            if h < len {
                ln(1.0 - b)
            } else {
                ln(b)
            }
        })
        .sum()
}

fn joint(s: &State, length: &Probs, weight: f64) -> Vec<Vec<u8>> {
    let heads = s.probs.heads;
    s.classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let row = length.get(i, 0);
            let scores: Vec<f64> = (1..=heads)
                .map(|l| heads_length_ln(&s.probs, i, l) + weight * ln(row[l]))
                .collect();
            let l = 1 + first_max(&scores);
            if l == digits(c) {
                c.clone()
            } else {
                of_length(&s.probs, i, l).0
            }
        })
        .collect()
}

fn prior(s: &State, prior: &Prior, weight: f64) -> State {
    let p = &s.probs;
    let mut data = Vec::with_capacity(p.data.len());
    let mut classes = s.classes.clone();
    for (i, cls) in classes.iter_mut().enumerate() {
        for (h, slot) in cls.iter_mut().enumerate() {
            let row = p.get(i, h);
            let mut q: Vec<f64> = row
                .iter()
                .zip(&prior.freq[h])
                .map(|(x, f)| *x as f64 * f.powf(weight))
                .collect();
            let sum: f64 = q.iter().sum();
            if sum > 0.0 {
                q.iter_mut().for_each(|x| *x /= sum);
            } else {
                q = row.iter().map(|x| *x as f64).collect();
            }
            let q: Vec<f32> = q.iter().map(|x| *x as f32).collect();
            if *slot == decode::argmax(row) {
                *slot = decode::argmax(&q);
            }
            data.extend(q);
        }
    }
    let probs = Probs {
        n: p.n,
        heads: p.heads,
        data,
    };
    State { probs, classes }
}

/// What a step needs besides the state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Aids<'a> {
    /// Length probabilities, one 11-way row per image (class k = k digits).
    pub length: Option<&'a Probs>,
    pub prior: Option<&'a Prior>,
}

/// Applies one step. Panics when the step's aid is missing or has another
/// number of rows or heads (the node checks both first).
pub fn apply(setting: &Setting, s: &State, aids: Aids<'_>) -> State {
    let length = || {
        let l = aids.length.expect("length probabilities");
        assert!(l.n == s.probs.n && l.heads == 1, "length rows");
        l
    };
    match *setting {
        Setting::Rules => State {
            probs: s.probs.clone(),
            classes: rules(s),
        },
        Setting::LengthForce { threshold } => State {
            probs: s.probs.clone(),
            classes: force(s, length(), threshold),
        },
        Setting::LengthJoint { weight } => State {
            probs: s.probs.clone(),
            classes: joint(s, length(), weight),
        },
        Setting::PositionPrior { weight } => {
            let pr = aids.prior.expect("a prior");
            assert_eq!(pr.freq.len(), s.probs.heads, "prior heads");
            if weight == 0.0 {
                return s.clone();
            }
            prior(s, pr, weight)
        }
    }
}

/// How a change of codes compares with the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Change {
    /// Images whose code changed.
    pub changed: usize,
    /// Wrong before, right after.
    pub fixed: usize,
    /// Right before, wrong after.
    pub broke: usize,
}

/// Counts the changed codes between `before` and `after` and, given the
/// true codes, the fixed and broken ones (else those stay 0).
pub fn change(before: &[Vec<u8>], after: &[Vec<u8>], truth: Option<&[Vec<u8>]>) -> Change {
    let mut c = Change::default();
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        let (b, a) = (decode::code(b), decode::code(a));
        if a == b {
            continue;
        }
        c.changed += 1;
        if let Some(t) = truth {
            c.fixed += (a == t[i]) as usize;
            c.broke += (b == t[i]) as usize;
        }
    }
    c
}

/// Sequence accuracy of class vectors against true codes.
pub fn seq_acc(classes: &[Vec<u8>], truth: &[Vec<u8>]) -> f64 {
    if classes.is_empty() {
        return 0.0;
    }
    let right = classes
        .iter()
        .zip(truth)
        .filter(|(c, t)| decode::code(c) == **t)
        .count();
    right as f64 / classes.len() as f64
}

/// The candidate settings fitting tries for a step, after "off": the
/// mildest first. `kind` is `rules`, `length_force`, `length_joint` or
/// `position_prior`.
pub fn candidates(kind: &str) -> Vec<Setting> {
    match kind {
        "rules" => vec![Setting::Rules],
        "length_force" => [0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5]
            .map(|threshold| Setting::LengthForce { threshold })
            .to_vec(),
        "length_joint" => [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]
            .map(|weight| Setting::LengthJoint { weight })
            .to_vec(),
        "position_prior" => [0.1, 0.25, 0.5, 1.0]
            .map(|weight| Setting::PositionPrior { weight })
            .to_vec(),
        other => panic!("no candidates for step kind {other}"),
    }
}

/// One candidate's out-of-fold score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tried {
    /// `None`: the step off.
    pub setting: Option<Setting>,
    pub seq_acc: f64,
    /// Out-of-fold codes it fixed and broke.
    pub fixed: usize,
    pub broke: usize,
    /// One-sided sign test of "it fixes more than it breaks": the
    /// probability of at least `fixed` fixes among `fixed + broke` changed
    /// outcomes if each were a fair coin ([`sign_test`]).
    pub p_value: f64,
}

/// P(X ≥ k) for X ~ Binomial(n, 1/2), computed in log space (exact to
/// rounding for any n); 1 when n = 0.
pub fn sign_test(k: usize, n: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    // ln P(X = j), from j = 0 upwards.
    let mut ln_p = -(n as f64) * std::f64::consts::LN_2;
    let mut terms = Vec::with_capacity(n - k + 1);
    for j in 0..=n {
        if j > 0 {
            ln_p += ((n - j + 1) as f64).ln() - (j as f64).ln();
        }
        if j >= k {
            terms.push(ln_p);
        }
    }
    let top = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - top).exp()).sum();
    (top + sum.ln()).exp().min(1.0)
}

/// Scores "off" and every candidate on the out-of-fold state `s` against
/// `truth`. A candidate counts as helping when it fixes more codes than
/// it breaks with a sign-test p-value of at most `alpha` (1 accepts any
/// net gain); among those the best sequence accuracy wins, the earliest
/// (mildest) on ties. Returns the scores (off first) and the winner,
/// `None` (off) when no candidate helps.
pub fn fit(
    cands: &[Setting],
    s: &State,
    aids: Aids<'_>,
    truth: &[Vec<u8>],
    alpha: f64,
) -> (Vec<Tried>, Option<Setting>) {
    let base = seq_acc(&s.classes, truth);
    let mut tried = vec![Tried {
        setting: None,
        seq_acc: base,
        fixed: 0,
        broke: 0,
        p_value: 1.0,
    }];
    for c in cands {
        let after = apply(c, s, aids);
        let ch = change(&s.classes, &after.classes, Some(truth));
        tried.push(Tried {
            setting: Some(*c),
            seq_acc: seq_acc(&after.classes, truth),
            fixed: ch.fixed,
            broke: ch.broke,
            p_value: sign_test(ch.fixed, ch.fixed + ch.broke),
        });
    }
    let mut best: Option<&Tried> = None;
    for t in &tried[1..] {
        let helps = t.fixed > t.broke && t.p_value <= alpha;
        if helps && best.is_none_or(|b| t.seq_acc > b.seq_acc) {
            best = Some(t);
        }
    }
    let best = best.and_then(|t| t.setting);
    (tried, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u8 = BLANK;

    /// A head row with `top` at probability `p`, the blank at `blank` (when
    /// `top` is not the blank) and the rest spread evenly.
    fn row(top: u8, p: f32, blank: f32) -> Vec<f32> {
        let mut r = vec![0.0f32; CLASSES];
        r[top as usize] = p;
        let mut left = 1.0 - p;
        if top != B {
            r[B as usize] = blank;
            left -= blank;
        }
        let free = if top != B { CLASSES - 2 } else { CLASSES - 1 };
        for (c, x) in r.iter_mut().enumerate() {
            if c != top as usize && (top == B || c != B as usize) {
                *x = left / free as f32;
            }
        }
        r
    }

    fn probs(rows: &[Vec<Vec<f32>>]) -> Probs {
        let heads = rows[0].len();
        Probs::new(rows.len(), heads, rows.concat().concat()).unwrap()
    }

    fn state(rows: &[Vec<Vec<f32>>]) -> State {
        let p = probs(rows);
        let c = decode::classes(&p);
        State::new(p, c)
    }

    fn lengths(rows: &[[f32; CLASSES]]) -> Probs {
        Probs::new(rows.len(), 1, rows.concat()).unwrap()
    }

    fn length_row(pairs: &[(usize, f32)]) -> [f32; CLASSES] {
        let mut r = [0.0; CLASSES];
        let used: f32 = pairs.iter().map(|p| p.1).sum();
        for (l, p) in pairs {
            r[*l] = *p;
        }
        let rest = CLASSES - pairs.len();
        for x in r.iter_mut() {
            if *x == 0.0 {
                *x = (1.0 - used) / rest as f32;
            }
        }
        r
    }

    #[test]
    fn well_formed_codes() {
        assert!(well_formed(&[1, 2, B, B]));
        assert!(well_formed(&[1, 2, 3, 4]));
        assert!(!well_formed(&[1, B, 2, B]));
        assert!(!well_formed(&[B, B, B, B]));
        assert!(!well_formed(&[B, 1, B, B]));
    }

    #[test]
    fn rules_fix_a_digit_after_a_blank_and_empty_codes() {
        let s = state(&[
            // "1 _ 2 _": the blank at 1 is weak (0.4, its best digit 7 at
            // 0.3), the 2 is strong: filling gives "172".
            vec![
                row(1, 0.9, 0.05),
                {
                    let mut r = row(B, 0.4, 0.0);
                    r[7] = 0.3;
                    let rest = (1.0 - 0.7) / 9.0;
                    for (c, x) in r.iter_mut().enumerate() {
                        if c != 7 && c != B as usize {
                            *x = rest;
                        }
                    }
                    r
                },
                row(2, 0.9, 0.05),
                row(B, 0.95, 0.0),
            ],
            // "1 _ 2 _" with a sure blank and a weak 2 (0.35 vs blank 0.3):
            // truncating to "1" wins.
            vec![
                row(1, 0.9, 0.05),
                row(B, 0.99, 0.0),
                row(2, 0.35, 0.3),
                row(B, 0.95, 0.0),
            ],
            // All blank: the most probable one-digit code (4 at head 0).
            vec![
                {
                    let mut r = row(B, 0.6, 0.0);
                    r[4] = 0.3;
                    let rest = 0.1 / 9.0;
                    for (c, x) in r.iter_mut().enumerate() {
                        if c != 4 && c != B as usize {
                            *x = rest;
                        }
                    }
                    r
                },
                row(B, 0.99, 0.0),
                row(B, 0.99, 0.0),
                row(B, 0.99, 0.0),
            ],
            // Well formed: kept even though other vectors are close.
            vec![
                row(5, 0.5, 0.45),
                row(B, 0.51, 0.0),
                row(B, 0.99, 0.0),
                row(B, 0.99, 0.0),
            ],
        ]);
        assert_eq!(
            s.classes,
            vec![
                vec![1, B, 2, B],
                vec![1, B, 2, B],
                vec![B; 4],
                vec![5, B, B, B]
            ]
        );
        let out = apply(&Setting::Rules, &s, Aids::default());
        assert_eq!(
            out.classes,
            vec![
                vec![1, 7, 2, B],
                vec![1, B, B, B],
                vec![4, B, B, B],
                vec![5, B, B, B]
            ]
        );
        assert_eq!(out.probs, s.probs);
    }

    fn three_images() -> State {
        state(&[
            // "12": digits sure.
            vec![
                row(1, 0.9, 0.05),
                row(2, 0.8, 0.1),
                row(B, 0.6, 0.0),
                row(B, 0.9, 0.0),
            ],
            // "345": 4 is the least confident.
            vec![
                row(3, 0.9, 0.05),
                row(4, 0.5, 0.3),
                row(5, 0.7, 0.2),
                row(B, 0.9, 0.0),
            ],
            // "6": the blank at head 1 is weak, 8 second there.
            vec![
                row(6, 0.9, 0.05),
                {
                    let mut r = row(B, 0.45, 0.0);
                    r[8] = 0.4;
                    let rest = 0.15 / 9.0;
                    for (c, x) in r.iter_mut().enumerate() {
                        if c != 8 && c != B as usize {
                            *x = rest;
                        }
                    }
                    r
                },
                row(B, 0.9, 0.0),
                row(B, 0.9, 0.0),
            ],
        ])
    }

    #[test]
    fn force_lengthens_shortens_and_respects_the_threshold() {
        let s = three_images();
        let l = lengths(&[
            length_row(&[(2, 0.97)]), // agrees: unchanged
            length_row(&[(2, 0.9)]),  // "345" → drop the 4 → "35"
            length_row(&[(2, 0.8)]),  // "6" → best digits at 2 heads → "68"
        ]);
        let aids = Aids {
            length: Some(&l),
            prior: None,
        };
        let out = apply(&Setting::LengthForce { threshold: 0.75 }, &s, aids);
        assert_eq!(
            out.classes,
            vec![vec![1, 2, B, B], vec![3, 5, B, B], vec![6, 8, B, B]]
        );
        // Above the third image's confidence: it stays.
        let out = apply(&Setting::LengthForce { threshold: 0.85 }, &s, aids);
        assert_eq!(out.classes[2], vec![6, B, B, B]);
        assert_eq!(out.classes[1], vec![3, 5, B, B]);
        // A length model that disagrees with sure heads still wins at a low
        // threshold: that is why the threshold is fitted out of fold.
        let l1 = lengths(&[length_row(&[(1, 0.6)]); 3]);
        let out = apply(
            &Setting::LengthForce { threshold: 0.5 },
            &s,
            Aids {
                length: Some(&l1),
                prior: None,
            },
        );
        assert_eq!(
            out.classes,
            vec![vec![1, B, B, B], vec![3, B, B, B], vec![6, B, B, B]]
        );
    }

    #[test]
    fn force_ties_drop_the_later_digit_and_pick_the_shorter_length() {
        // Two digits equally confident: the later one goes.
        let s = state(&[vec![row(7, 0.6, 0.2), row(9, 0.6, 0.2), row(B, 0.9, 0.0)]]);
        // Lengths 1 and 3 tie at 0.45: the shorter (1) wins.
        let l = lengths(&[length_row(&[(1, 0.45), (3, 0.45)])]);
        let out = apply(
            &Setting::LengthForce { threshold: 0.4 },
            &s,
            Aids {
                length: Some(&l),
                prior: None,
            },
        );
        assert_eq!(out.classes, vec![vec![7, B, B]]);
    }

    #[test]
    fn joint_combines_the_heads_length_with_the_model() {
        let s = three_images();
        // Image 2: heads say P(len 1) ∝ 0.95·0.45·0.9·0.9, P(len 2) ∝
        // 0.95·0.55·0.9·0.9; the heads alone (weight 0) already prefer 2.
        let l = lengths(&[
            length_row(&[(2, 0.9)]),
            length_row(&[(3, 0.9)]),
            length_row(&[(1, 0.9)]),
        ]);
        let aids = Aids {
            length: Some(&l),
            prior: None,
        };
        let alone = apply(&Setting::LengthJoint { weight: 0.0 }, &s, aids);
        assert_eq!(alone.classes[2], vec![6, 8, B, B]);
        assert_eq!(alone.classes[..2], s.classes[..2]);
        // With the model's confident "1", the code stays "6".
        let with = apply(&Setting::LengthJoint { weight: 1.0 }, &s, aids);
        assert_eq!(with.classes, s.classes);
        let ln2 = heads_length_ln(&s.probs, 2, 2);
        let want = (0.95f64).ln() + (0.55f64).ln() + 2.0 * (0.9f64).ln();
        assert!((ln2 - want).abs() < 1e-5, "{ln2} vs {want}");
    }

    #[test]
    fn position_prior_counts_reweights_and_keeps_earlier_edits() {
        let pr = Prior::count(&[vec![1u8], vec![1, 2], vec![3]], 2).unwrap();
        assert_eq!(pr.labels, 3);
        // head 0: 1 twice, 3 once; head 1: 2 once, blank twice
        assert!((pr.freq[0][1] - 3.0 / 14.0).abs() < 1e-12);
        assert!((pr.freq[0][3] - 2.0 / 14.0).abs() < 1e-12);
        assert!((pr.freq[0][0] - 1.0 / 14.0).abs() < 1e-12);
        assert!((pr.freq[1][B as usize] - 3.0 / 14.0).abs() < 1e-12);
        assert!(Prior::count(&[vec![1u8, 2, 3]], 2)
            .unwrap_err()
            .contains("label 0 has 3 digits"));

        // Head 0 undecided between 0 (0.40) and 1 (0.38): the prior favours 1.
        let mut r0 = vec![0.0f32; CLASSES];
        r0[0] = 0.40;
        r0[1] = 0.38;
        r0[B as usize] = 0.22;
        let s = State::new(
            probs(&[vec![r0.clone(), row(B, 0.9, 0.0)]]),
            vec![vec![0, B]],
        );
        let aids = Aids {
            length: None,
            prior: Some(&pr),
        };
        assert_eq!(apply(&Setting::PositionPrior { weight: 0.0 }, &s, aids), s);
        let out = apply(&Setting::PositionPrior { weight: 1.0 }, &s, aids);
        assert_eq!(out.classes, vec![vec![1, B]]);
        out.probs.validate().unwrap();
        // An earlier step's edit (head 0 set to 5) is kept.
        let edited = State::new(s.probs.clone(), vec![vec![5, B]]);
        assert_eq!(
            apply(&Setting::PositionPrior { weight: 1.0 }, &edited, aids).classes,
            vec![vec![5, B]]
        );
    }

    #[test]
    fn steps_compose_in_order() {
        // All blank, and a length model saying 2 digits.
        let s = state(&[vec![
            {
                let mut r = row(B, 0.5, 0.0);
                r[4] = 0.4;
                let rest = 0.1 / 9.0;
                for (c, x) in r.iter_mut().enumerate() {
                    if c != 4 && c != B as usize {
                        *x = rest;
                    }
                }
                r
            },
            {
                let mut r = row(B, 0.7, 0.0);
                r[6] = 0.2;
                let rest = 0.1 / 9.0;
                for (c, x) in r.iter_mut().enumerate() {
                    if c != 6 && c != B as usize {
                        *x = rest;
                    }
                }
                r
            },
            row(B, 0.99, 0.0),
        ]]);
        let l = lengths(&[length_row(&[(2, 0.9)])]);
        let aids = Aids {
            length: Some(&l),
            prior: None,
        };
        let force = Setting::LengthForce { threshold: 0.8 };
        // rules first: "4"; then the length model makes it "46".
        let a = apply(&force, &apply(&Setting::Rules, &s, aids), aids);
        assert_eq!(a.classes, vec![vec![4, 6, B]]);
        // length first: "46" straight away; rules then keep it.
        let b = apply(&Setting::Rules, &apply(&force, &s, aids), aids);
        assert_eq!(b.classes, vec![vec![4, 6, B]]);
        // With a model saying 1 digit: rules give "4", the length step
        // agrees; without rules the empty code becomes "4" as well.
        let l1 = lengths(&[length_row(&[(1, 0.9)])]);
        let aids1 = Aids {
            length: Some(&l1),
            prior: None,
        };
        assert_eq!(apply(&force, &s, aids1).classes, vec![vec![4, B, B]]);
        // Order matters: a prior that prefers 6 at head 0, applied after
        // rules, keeps the rules' edit ("4"); applied before, it turns the
        // untouched blank at head 0 into a 6, which rules then keep.
        let pr = Prior {
            labels: 1,
            freq: vec![
                {
                    let mut f = [0.01; CLASSES];
                    f[6] = 0.9;
                    f
                },
                [1.0 / 11.0; CLASSES],
                [1.0 / 11.0; CLASSES],
            ],
        };
        let aids_p = Aids {
            length: None,
            prior: Some(&pr),
        };
        let w = Setting::PositionPrior { weight: 1.0 };
        let rules_then_prior = apply(&w, &apply(&Setting::Rules, &s, aids_p), aids_p);
        assert_eq!(rules_then_prior.classes, vec![vec![4, B, B]]);
        let prior_then_rules = apply(&Setting::Rules, &apply(&w, &s, aids_p), aids_p);
        assert_eq!(prior_then_rules.classes, vec![vec![6, B, B]]);
    }

    #[test]
    fn change_counts_fixed_and_broken() {
        let before = vec![vec![1, B], vec![2, B], vec![3, B], vec![4, B]];
        let after = vec![vec![1, B], vec![5, B], vec![3, 3], vec![7, B]];
        let truth = vec![vec![1], vec![5], vec![3], vec![8]];
        assert_eq!(
            change(&before, &after, Some(&truth)),
            Change {
                changed: 3,
                fixed: 1,
                broke: 1
            }
        );
        assert_eq!(change(&before, &after, None).fixed, 0);
        assert!((seq_acc(&after, &truth) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn fit_prefers_off_unless_a_candidate_strictly_helps() {
        let s = three_images();
        let l = lengths(&[
            length_row(&[(2, 0.97)]),
            length_row(&[(2, 0.9)]),
            length_row(&[(2, 0.8)]),
        ]);
        let aids = Aids {
            length: Some(&l),
            prior: None,
        };
        let cands = candidates("length_force");
        // The truth agrees with the heads: forcing only breaks; off wins.
        let truth = vec![vec![1, 2], vec![3, 4, 5], vec![6]];
        let (tried, best) = fit(&cands, &s, aids, &truth, 1.0);
        assert_eq!(best, None);
        assert_eq!(tried.len(), 1 + cands.len());
        assert_eq!(tried[0].seq_acc, 1.0);
        assert_eq!((tried[4].fixed, tried[4].broke), (0, 2));
        // The truth agrees with the length model: the mildest threshold
        // that fixes both (0.8) wins over lower ones with the same score.
        let truth = vec![vec![1, 2], vec![3, 5], vec![6, 8]];
        let (tried, best) = fit(&cands, &s, aids, &truth, 1.0);
        assert_eq!(best, Some(Setting::LengthForce { threshold: 0.8 }));
        assert_eq!((tried[4].fixed, tried[4].broke), (2, 0));
        assert_eq!(tried[4].p_value, 0.25);
        // Two fixes are no evidence at the 5% level: off.
        let (_, best) = fit(&cands, &s, aids, &truth, 0.05);
        assert_eq!(best, None);
    }

    #[test]
    fn sign_test_tail_probabilities() {
        assert_eq!(sign_test(0, 0), 1.0);
        assert_eq!(sign_test(0, 5), 1.0);
        assert_eq!(sign_test(6, 5), 0.0);
        assert!((sign_test(6, 6) - 1.0 / 64.0).abs() < 1e-15);
        // P(X >= 5 | n = 7) = (21 + 7 + 1) / 128
        assert!((sign_test(5, 7) - 29.0 / 128.0).abs() < 1e-14);
        // Large n stays finite and sensible: 550 of 1,000 is significant,
        // 510 is not.
        assert!(sign_test(550, 1000) < 0.001);
        assert!(sign_test(510, 1000) > 0.2);
        assert!((sign_test(500, 1000) - 0.5126).abs() < 1e-3);
    }
}
