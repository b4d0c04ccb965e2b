//! The thread budget: which ready instances start now, and on how many
//! threads each, given the threads not in use and each one's
//! [`Appetite`].
//!
//! The policy, in order:
//! 1. Instances that need a set number of threads (small ones: one; a
//!    `command`: what it declares, at most the whole budget) start, in
//!    ready order, as long as their threads are free; one that does not fit
//!    waits for a later call.
//! 2. The instances that scale with threads share what is left: as many of
//!    them start as there are threads (one each at least), the threads
//!    divided evenly, the earlier ones getting the remainder. So three
//!    ready folds on 16 threads train side by side on 6, 5 and 5; ten on
//!    16 run on two threads (six of them) or one (four); a lone fold gets
//!    all 16; on 2 threads two of three folds start, one thread each.
//!
//! Why this order: folds side by side use cores nearly perfectly, whereas
//! one fold on more threads speeds up less than linearly (docs/benchmarks.md);
//! so the budget goes first to more instances, then to more threads each.
//!
//! Limits: a running instance keeps the threads it started with (its
//! thread pool is fixed), so threads freed when its neighbours finish
//! go to instances that become ready, not to it; durations are not known,
//! so the policy does not plan ahead (the critical path); a node that
//! declares more threads than are free waits while scaling nodes may take
//! what frees up.

use crate::kind::Appetite;

/// Threads instance `appetite` needs when it does not scale; `None` when
/// it does.
fn fixed_need(appetite: Appetite, budget: usize) -> Option<usize> {
    match appetite {
        Appetite::One => Some(1),
        Appetite::Fixed(n) => Some(n.clamp(1, budget.max(1))),
        Appetite::Scales => None,
    }
}

/// The instances that start now, as (position in `ready`, threads), given
/// `free` threads of a `budget` and the ready instances' appetites in ready
/// order: those with a set need first, then the scaling ones (see the
/// module docs). Never gives out more than `free` threads in all.
pub fn allocate(free: usize, budget: usize, ready: &[Appetite]) -> Vec<(usize, usize)> {
    let mut left = free;
    let mut starts = Vec::new();
    let mut scaling = Vec::new();
    for (pos, &a) in ready.iter().enumerate() {
        match fixed_need(a, budget) {
            Some(need) if need <= left => {
                left -= need;
                starts.push((pos, need));
            }
            Some(_) => {}
            None => scaling.push(pos),
        }
    }
    starts.extend(share(left, &scaling));
    starts
}

/// `threads` divided among the first of `positions`: one each at least,
/// as evenly as possible, the earlier ones getting the remainder.
fn share(threads: usize, positions: &[usize]) -> Vec<(usize, usize)> {
    let n = positions.len().min(threads);
    if n == 0 {
        return Vec::new();
    }
    let (each, extra) = (threads / n, threads % n);
    positions[..n]
        .iter()
        .enumerate()
        .map(|(k, &pos)| (pos, each + usize::from(k < extra)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Appetite::{Fixed, One, Scales};

    /// The threads each of `ready` gets (0: waits).
    fn threads(free: usize, budget: usize, ready: &[Appetite]) -> Vec<usize> {
        let mut t = vec![0; ready.len()];
        for (pos, n) in allocate(free, budget, ready) {
            t[pos] = n;
        }
        t
    }

    #[test]
    fn three_folds_on_two_threads_start_two_on_one_thread_each() {
        assert_eq!(threads(2, 2, &[Scales; 3]), [1, 1, 0]);
    }

    #[test]
    fn a_lone_fold_gets_every_thread() {
        assert_eq!(threads(16, 16, &[Scales]), [16]);
        assert_eq!(threads(1, 1, &[Scales]), [1]);
    }

    #[test]
    fn three_folds_on_sixteen_threads_share_them() {
        assert_eq!(threads(16, 16, &[Scales; 3]), [6, 5, 5]);
    }

    #[test]
    fn ten_folds_on_sixteen_threads_all_start() {
        assert_eq!(
            threads(16, 16, &[Scales; 10]),
            [2, 2, 2, 2, 2, 2, 1, 1, 1, 1]
        );
    }

    #[test]
    fn small_nodes_take_one_thread_before_the_scaling_ones_share() {
        assert_eq!(threads(8, 8, &[One, Scales, Scales, One]), [1, 3, 3, 1]);
        // On one free thread the small node goes first.
        assert_eq!(threads(1, 2, &[Scales, One]), [0, 1]);
    }

    #[test]
    fn a_declared_need_waits_until_its_threads_are_free() {
        assert_eq!(threads(2, 8, &[Fixed(4), One]), [0, 1]);
        assert_eq!(threads(8, 8, &[Fixed(4), Scales]), [4, 4]);
    }

    #[test]
    fn a_need_beyond_the_budget_is_the_whole_budget() {
        assert_eq!(threads(16, 16, &[Fixed(64)]), [16]);
        assert_eq!(threads(4, 4, &[Fixed(0)]), [1]);
    }

    #[test]
    fn nothing_starts_without_free_threads() {
        assert_eq!(threads(0, 4, &[One, Scales, Fixed(1)]), [0, 0, 0]);
        assert!(allocate(3, 4, &[]).is_empty());
    }

    #[test]
    fn never_more_than_the_free_threads() {
        for free in 0..20 {
            for n in 0..12 {
                let ready: Vec<Appetite> = (0..n).map(|i| [One, Scales, Fixed(3)][i % 3]).collect();
                let given: usize = allocate(free, 20, &ready).iter().map(|s| s.1).sum();
                assert!(given <= free, "{given} of {free} for {ready:?}");
            }
        }
    }
}
