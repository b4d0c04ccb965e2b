//! The ensemble ladder: how accuracy grows from one model to the full
//! ensemble, over the members of one prediction (model file × TTA round).
//!
//! A *member* is one model file (a train instance, `model`, and one of its
//! snapshots, `snapshot`: `final` or `c<cycle>`) predicting under one TTA
//! round (`round`; 0 is the clean image). A *single model* is a (model,
//! snapshot) pair at round 0. The rows, each the mean of its members'
//! probabilities, decoded and scored:
//!
//! 1. `single`: the best single model — highest sequence accuracy on these
//!    images, then highest character accuracy, then the first listed. It is
//!    chosen on the very images it is scored on, so it is the strongest
//!    single baseline, not one a user could pick blind;
//! 2. `snapshots`: every snapshot of that model, round 0;
//! 3. `tta`: the same snapshots, every round;
//! 4. `folds`: every member of every model — the full ensemble, the same
//!    mean the prediction artifact's `probs.fwprobs` holds.
//!
//! Context kept beside the rows: every single model's scores, their mean
//! and lowest sequence accuracy.
//!
//! Guarantees: the result does not depend on the order of the members
//! except for the tie-break of step 1 (the first listed wins); every row's
//! mean is order-independent bit for bit ([`super::ensemble::mean`]).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::metrics::evaluate_items;
use super::{decode, ensemble, Labelled, Probs};
use crate::kind::NodeError;

/// One member of a prediction.
#[derive(Debug, Clone)]
pub struct Member {
    /// The train instance (`cnn[1]`).
    pub model: String,
    /// `final` or `c<cycle>`.
    pub snapshot: String,
    /// TTA round; 0 is the clean image.
    pub round: u64,
    pub probs: Probs,
}

/// One row of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `single`, `snapshots`, `tta` or `folds`.
    pub step: String,
    /// Members averaged in this row.
    pub members: usize,
    pub seq_acc: f64,
    pub char_acc: f64,
    pub len_acc: f64,
}

/// The scores of one single model (round 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Single {
    pub model: String,
    pub snapshot: String,
    pub seq_acc: f64,
    pub char_acc: f64,
}

/// The ladder of one prediction; `metrics.json` of a `ladder` artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Images scored.
    pub n: usize,
    /// The four rows, in order.
    pub rows: Vec<Step>,
    /// The best single model (row 1).
    pub best: Single,
    /// The snapshots of the best model (row 2), in listed order.
    pub snapshots: Vec<String>,
    /// TTA rounds per model file (row 3).
    pub rounds: usize,
    /// Every model (row 4), in listed order.
    pub models: Vec<String>,
    /// Every single model, in listed order.
    pub singles: Vec<Single>,
    /// Mean sequence accuracy of the single models.
    pub single_mean_seq_acc: f64,
    /// Lowest sequence accuracy of a single model.
    pub single_min_seq_acc: f64,
}

/// Scores the mean of `members` against `items` (same order).
fn score(members: &[&Member], items: &[impl Labelled]) -> Result<(f64, f64, f64), NodeError> {
    let probs: Vec<&Probs> = members.iter().map(|m| &m.probs).collect();
    let mean = ensemble::mean(&probs)?;
    let m = evaluate_items(items, &decode::classes(&mean))?;
    Ok((m.seq_acc, m.char_acc, m.len_acc))
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// Computes the ladder of `members` over the labelled `items` (every
/// member predicts exactly these items, in this order).
pub fn ladder(members: &[Member], items: &[impl Labelled]) -> Result<Scores, NodeError> {
    if let Some(m) = members.iter().find(|m| m.probs.n != items.len()) {
        return Err(NodeError::new(
            "foldwise::ladder::members",
            format!(
                "ladder: member {} {} round {} has {} rows for {} items",
                m.model,
                m.snapshot,
                m.round,
                m.probs.n,
                items.len()
            ),
        ));
    }
    let clean: Vec<&Member> = members.iter().filter(|m| m.round == 0).collect();
    if clean.is_empty() {
        return Err(NodeError::new(
            "foldwise::ladder::members",
            "ladder: no member predicts the clean image (round 0)",
        ));
    }
    let mut singles = Vec::with_capacity(clean.len());
    for m in &clean {
        if singles
            .iter()
            .any(|s: &Single| s.model == m.model && s.snapshot == m.snapshot)
        {
            return Err(NodeError::new(
                "foldwise::ladder::members",
                format!("ladder: {} {} round 0 is listed twice", m.model, m.snapshot),
            ));
        }
        let (seq_acc, char_acc, _) = score(&[m], items)?;
        singles.push(Single {
            model: m.model.clone(),
            snapshot: m.snapshot.clone(),
            seq_acc,
            char_acc,
        });
    }
    let mut best = &singles[0];
    for s in &singles[1..] {
        if (s.seq_acc, s.char_acc) > (best.seq_acc, best.char_acc) {
            best = s;
        }
    }
    let best = best.clone();
    let row = |step: &str, ms: Vec<&Member>| -> Result<Step, NodeError> {
        let (seq_acc, char_acc, len_acc) = score(&ms, items)?;
        Ok(Step {
            step: step.into(),
            members: ms.len(),
            seq_acc,
            char_acc,
            len_acc,
        })
    };
    let own: Vec<&Member> = members.iter().filter(|m| m.model == best.model).collect();
    let own_clean: Vec<&Member> = own.iter().copied().filter(|m| m.round == 0).collect();
    let mut snapshots = Vec::new();
    for m in &own_clean {
        push_unique(&mut snapshots, &m.snapshot);
    }
    let mut models = Vec::new();
    for m in members {
        push_unique(&mut models, &m.model);
    }
    let mut rounds: Vec<u64> = members.iter().map(|m| m.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let single = clean
        .iter()
        .copied()
        .find(|m| m.model == best.model && m.snapshot == best.snapshot)
        .expect("the best single model is a clean member");
    let rows = vec![
        row("single", vec![single])?,
        row("snapshots", own_clean)?,
        row("tta", own)?,
        row("folds", members.iter().collect())?,
    ];
    let accs: Vec<f64> = singles.iter().map(|s| s.seq_acc).collect();
    Ok(Scores {
        n: items.len(),
        rows,
        best,
        snapshots,
        rounds: rounds.len(),
        models,
        single_mean_seq_acc: accs.iter().sum::<f64>() / accs.len() as f64,
        single_min_seq_acc: accs.iter().copied().fold(f64::INFINITY, f64::min),
        singles,
    })
}

/// A percentage in a 7-character column: ` 41.20%`.
fn pct(x: f64) -> String {
    format!("{:6.2}%", 100.0 * x)
}

/// The label of a row.
fn label(step: &str) -> &str {
    match step {
        "single" => "best single model",
        "snapshots" => "+ snapshots",
        "tta" => "+ TTA",
        "folds" => "+ folds (full ensemble)",
        "post_processing" => "+ post-processing",
        other => other,
    }
}

/// The `report.txt` text: the table, then what each row holds. A row
/// that adds no member to the one before it (one snapshot, one round, one
/// model) is left out of the table; `metrics.json` keeps all four.
pub fn report(l: &Scores) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "accuracy as the ensemble grows ({} images)", l.n);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<24} {:>7} {:>9} {:>10} {:>7}",
        "", "members", "sequence", "character", "gain"
    );
    let mut prev: Option<(usize, f64)> = None;
    for r in &l.rows {
        let grows = matches!(r.step.as_str(), "snapshots" | "tta" | "folds");
        if grows && prev.is_some_and(|(members, _)| members == r.members) {
            continue; // adds nothing: one snapshot, one round or one model
        }
        let gain = match prev {
            Some((_, p)) => format!("{:+.2}", 100.0 * (r.seq_acc - p)),
            None => String::new(),
        };
        let line = format!(
            "{:<24} {:>7} {:>9} {:>10} {:>7}",
            label(&r.step),
            r.members,
            pct(r.seq_acc),
            pct(r.char_acc),
            gain
        );
        let _ = writeln!(s, "{}", line.trim_end());
        prev = Some((r.members, r.seq_acc));
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "best single model: {} {}, clean image (the best of {} on these images)",
        l.best.model,
        l.best.snapshot,
        l.singles.len()
    );
    let _ = writeln!(
        s,
        "+ snapshots: {} {}; + TTA: {} round{} each (round 0 clean); + folds: {}",
        l.best.model,
        l.snapshots.join(" "),
        l.rounds,
        if l.rounds == 1 { "" } else { "s" },
        l.models.join(" ")
    );
    let _ = writeln!(
        s,
        "single models: mean {}, lowest {}",
        pct(l.single_mean_seq_acc).trim_start(),
        pct(l.single_min_seq_acc).trim_start()
    );
    let full = l.rows.iter().find(|r| r.step == "folds");
    if let (Some(first), Some(last)) = (l.rows.first(), full) {
        let _ = writeln!(
            s,
            "full ensemble ({} members) vs best single model: {:+.2} points of sequence accuracy",
            last.members,
            100.0 * (last.seq_acc - first.seq_acc)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictions::{BLANK, CLASSES};

    /// One head: `w` on `class`, the rest on the blank.
    fn sure(class: u8, w: f32) -> Vec<f32> {
        let mut r = vec![0.0; CLASSES];
        r[usize::from(class)] = w;
        r[usize::from(BLANK)] += 1.0 - w;
        r
    }

    /// One head, every class equally likely (decodes to 0).
    fn unsure() -> Vec<f32> {
        vec![1.0 / CLASSES as f32; CLASSES]
    }

    fn member(model: &str, snapshot: &str, round: u64, rows: Vec<Vec<f32>>) -> Member {
        Member {
            model: model.into(),
            snapshot: snapshot.into(),
            round,
            probs: Probs::new(rows.len(), 1, rows.concat()).unwrap(),
        }
    }

    /// Five one-digit images "1" … "5".
    fn items() -> Vec<(String, Option<Vec<u8>>)> {
        (1..=5u8)
            .map(|d| (format!("{d}.png"), Some(vec![d])))
            .collect()
    }

    /// Two models: `a` (snapshots c0, c1) and `b` (c0, c1), two rounds
    /// each: 8 members over images "1" … "5", one head. By hand:
    ///
    /// - singles (round 0): `a c0` right on images 0, 1 (2/5); `a c1` on
    ///   image 2 (1/5); `b c0`, `b c1` on image 4 (1/5);
    /// - snapshots (`a c0` + `a c1`, round 0): image 2 is 3 (0.45) over 7
    ///   (0.30) → 3/5;
    /// - TTA (+ round 1, sure of 4 on image 3): image 3 is 4 (0.45) over 8
    ///   (0.30) → 4/5;
    /// - folds (+ `b`, sure of 5 on image 4, even elsewhere): image 4 is 5
    ///   (0.45) over 9 (0.30); images 0-3 keep their winners (0.27 each,
    ///   against at most 0.20) → 5/5.
    fn hand_made() -> Vec<Member> {
        let a_c0 = || {
            vec![
                sure(1, 0.9),
                sure(2, 0.9),
                sure(7, 0.6),
                sure(8, 0.6),
                sure(9, 0.6),
            ]
        };
        let a_c1 = || {
            vec![
                sure(0, 0.6),
                sure(6, 0.55),
                sure(3, 0.9),
                sure(8, 0.6),
                sure(9, 0.6),
            ]
        };
        let with_4 = |mut rows: Vec<Vec<f32>>| {
            rows[3] = sure(4, 0.9);
            rows
        };
        let b = || vec![unsure(), unsure(), unsure(), unsure(), sure(5, 0.9)];
        vec![
            member("a", "c0", 0, a_c0()),
            member("a", "c0", 1, with_4(a_c0())),
            member("a", "c1", 0, a_c1()),
            member("a", "c1", 1, with_4(a_c1())),
            member("b", "c0", 0, b()),
            member("b", "c0", 1, b()),
            member("b", "c1", 0, b()),
            member("b", "c1", 1, b()),
        ]
    }

    fn rows(l: &Scores) -> Vec<(&str, usize, f64)> {
        l.rows
            .iter()
            .map(|r| (r.step.as_str(), r.members, r.seq_acc))
            .collect()
    }

    #[test]
    fn rows_on_hand_made_probabilities() {
        let members = hand_made();
        let l = ladder(&members, &items()).unwrap();
        assert_eq!(l.n, 5);
        assert_eq!(
            rows(&l),
            [
                ("single", 1, 0.4),
                ("snapshots", 2, 0.6),
                ("tta", 4, 0.8),
                ("folds", 8, 1.0)
            ]
        );
        let singles: Vec<(&str, &str, f64)> = l
            .singles
            .iter()
            .map(|s| (s.model.as_str(), s.snapshot.as_str(), s.seq_acc))
            .collect();
        assert_eq!(
            singles,
            [
                ("a", "c0", 0.4),
                ("a", "c1", 0.2),
                ("b", "c0", 0.2),
                ("b", "c1", 0.2)
            ]
        );
        assert_eq!(
            (l.best.model.as_str(), l.best.snapshot.as_str()),
            ("a", "c0")
        );
        assert_eq!(l.snapshots, ["c0", "c1"]);
        assert_eq!(l.models, ["a", "b"]);
        assert_eq!(l.rounds, 2);
        assert!((l.single_mean_seq_acc - 0.25).abs() < 1e-12);
        assert_eq!(l.single_min_seq_acc, 0.2);

        // The full ensemble is the plain mean of every member.
        let all: Vec<&Probs> = members.iter().map(|m| &m.probs).collect();
        let mean = ensemble::mean(&all).unwrap();
        let m = evaluate_items(&items(), &decode::classes(&mean)).unwrap();
        assert_eq!(l.rows[3].seq_acc, m.seq_acc);
        assert_eq!(l.rows[3].char_acc, m.char_acc);

        // The member order does not matter (no tie for the best here).
        let mut reversed = members.clone();
        reversed.reverse();
        let r = ladder(&reversed, &items()).unwrap();
        assert_eq!(r.rows, l.rows);
        assert_eq!(r.best, l.best);
    }

    #[test]
    fn a_tie_for_the_best_goes_to_the_first_listed() {
        let one = || {
            vec![
                sure(1, 0.9),
                sure(0, 0.9),
                sure(0, 0.9),
                sure(0, 0.9),
                sure(0, 0.9),
            ]
        };
        let members = vec![
            member("y", "final", 0, one()),
            member("x", "final", 0, one()),
        ];
        let l = ladder(&members, &items()).unwrap();
        assert_eq!(l.best.model, "y");
        assert_eq!(l.snapshots, ["final"]);
        assert_eq!(l.rounds, 1);
        assert_eq!(
            rows(&l),
            [
                ("single", 1, 0.2),
                ("snapshots", 1, 0.2),
                ("tta", 1, 0.2),
                ("folds", 2, 0.2)
            ]
        );
    }

    #[test]
    fn the_report_text() {
        let l = ladder(&hand_made(), &items()).unwrap();
        assert_eq!(
            report(&l),
            "\
accuracy as the ensemble grows (5 images)

                         members  sequence  character    gain
best single model              1    40.00%     40.00%
+ snapshots                    2    60.00%     60.00%  +20.00
+ TTA                          4    80.00%     80.00%  +20.00
+ folds (full ensemble)        8   100.00%    100.00%  +20.00

best single model: a c0, clean image (the best of 4 on these images)
+ snapshots: a c0 c1; + TTA: 2 rounds each (round 0 clean); + folds: a b
single models: mean 25.00%, lowest 20.00%
full ensemble (8 members) vs best single model: +60.00 points of sequence accuracy
"
        );
    }

    #[test]
    fn the_report_leaves_out_rows_that_add_nothing() {
        // One model, final only, three rounds: single, then TTA.
        let rows = |c: u8| {
            vec![
                sure(c, 0.9),
                sure(2, 0.9),
                sure(3, 0.9),
                sure(4, 0.9),
                sure(5, 0.9),
            ]
        };
        let members = [
            member("cnn", "final", 0, rows(0)),
            member("cnn", "final", 1, rows(1)),
            member("cnn", "final", 2, rows(1)),
        ];
        let l = ladder(&members, &items()).unwrap();
        assert_eq!(l.rows.len(), 4);
        assert_eq!(
            report(&l),
            "\
accuracy as the ensemble grows (5 images)

                         members  sequence  character    gain
best single model              1    80.00%     80.00%
+ TTA                          3   100.00%    100.00%  +20.00

best single model: cnn final, clean image (the best of 1 on these images)
+ snapshots: cnn final; + TTA: 3 rounds each (round 0 clean); + folds: cnn
single models: mean 80.00%, lowest 80.00%
full ensemble (3 members) vs best single model: +20.00 points of sequence accuracy
"
        );
    }

    #[test]
    fn errors() {
        let rows = || vec![sure(1, 0.9); 5];
        let e = ladder(&[member("a", "final", 1, rows())], &items()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ladder: no member predicts the clean image (round 0)"
        );
        let e = ladder(&[member("a", "final", 0, vec![sure(1, 0.9)])], &items()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ladder: member a final round 0 has 1 rows for 5 items"
        );
        let twice = [member("a", "c0", 0, rows()), member("a", "c0", 0, rows())];
        let e = ladder(&twice, &items()).unwrap_err();
        assert_eq!(e.to_string(), "ladder: a c0 round 0 is listed twice");
    }
}
