//! The learning-rate schedules of the `train` kind, per batch (`e` =
//! 0-based epoch, `b` = batch in the epoch, `S` = batches per epoch):
//! `constant`: lr; `step`: lr × gamma^⌊e / step_epochs⌋; `cosine`: min_lr +
//! (lr − min_lr)(1 + cos(π t)) / 2 with t = (e·S + b) / (epochs·S);
//! `cosine-restarts` (SGDR): the same cosine within each cycle of
//! `cycle_epochs` epochs, restarting at lr, each cycle's end a snapshot.
//!
//! Guarantee: a rate depends only on the parameters and (e, b, S), in
//! plain f64 arithmetic, so a resumed run steps at the same rates.

use super::TrainParams;

/// The learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Schedule {
    Constant,
    Step {
        every: usize,
        gamma: f64,
    },
    Cosine {
        epochs: usize,
        min_lr: f64,
    },
    Restarts {
        cycle: usize,
        cycles: usize,
        min_lr: f64,
    },
}

impl Schedule {
    pub(super) fn from_params(p: &TrainParams) -> Schedule {
        let s = &p.schedule;
        let min_lr = s.min_lr.unwrap_or(0.0);
        match s.kind.as_str() {
            "constant" => Schedule::Constant,
            "step" => Schedule::Step {
                every: s.step_epochs.unwrap_or(10).max(1),
                gamma: s.gamma.unwrap_or(0.1),
            },
            "cosine-restarts" => Schedule::Restarts {
                cycle: s.cycle_epochs.unwrap_or(5).max(1),
                cycles: s.cycles.unwrap_or(2).max(1),
                min_lr,
            },
            _ => Schedule::Cosine {
                epochs: p.epochs.unwrap_or(10).max(1),
                min_lr,
            },
        }
    }

    pub(super) fn epochs(&self, epochs: usize) -> usize {
        match *self {
            Schedule::Cosine { epochs, .. } => epochs,
            Schedule::Restarts { cycle, cycles, .. } => cycle * cycles,
            _ => epochs,
        }
    }

    /// The rate of batch `b` (of `per_epoch`) in 0-based epoch `e`.
    pub(super) fn lr(&self, base: f64, e: usize, b: usize, per_epoch: usize) -> f64 {
        let cosine = |min: f64, pos: usize, len: usize| {
            let t = pos as f64 / len as f64;
            min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        };
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((e / every) as i32),
            Schedule::Cosine { epochs, min_lr } => {
                cosine(min_lr, e * per_epoch + b, epochs * per_epoch)
            }
            Schedule::Restarts { cycle, min_lr, .. } => {
                cosine(min_lr, (e % cycle) * per_epoch + b, cycle * per_epoch)
            }
        }
    }

    /// The snapshot cycle that ends with 1-based epoch `epoch`, if any.
    pub(super) fn snapshot_of(&self, epoch: usize) -> Option<usize> {
        match *self {
            Schedule::Restarts { cycle, .. } if epoch.is_multiple_of(cycle) => {
                Some(epoch / cycle - 1)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_per_batch() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let c = Schedule::Constant;
        assert_eq!(c.lr(0.1, 7, 3, 10), 0.1);
        let s = Schedule::Step {
            every: 2,
            gamma: 0.5,
        };
        assert!(close(s.lr(1.0, 1, 9, 10), 1.0));
        assert!(close(s.lr(1.0, 2, 0, 10), 0.5));
        assert!(close(s.lr(1.0, 5, 0, 10), 0.25));
        let cos = Schedule::Cosine {
            epochs: 2,
            min_lr: 0.1,
        };
        assert!(close(cos.lr(1.0, 0, 0, 4), 1.0));
        assert!(close(cos.lr(1.0, 1, 0, 4), 0.55));
        assert!(cos.lr(1.0, 1, 3, 4) < cos.lr(1.0, 1, 2, 4));
        assert_eq!(cos.epochs(9), 2);
        assert_eq!(cos.snapshot_of(2), None);
        let r = Schedule::Restarts {
            cycle: 3,
            cycles: 2,
            min_lr: 0.0,
        };
        assert_eq!(r.epochs(99), 6);
        assert!(close(r.lr(1.0, 3, 0, 4), 1.0));
        assert!(close(r.lr(1.0, 4, 2, 4), r.lr(1.0, 1, 2, 4)));
        assert_eq!(
            (1..=6).map(|e| r.snapshot_of(e)).collect::<Vec<_>>(),
            [None, None, Some(0), None, None, Some(1)]
        );
    }
}
