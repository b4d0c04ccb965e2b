//! The `split` node kind: a hold-out, k-fold or bootstrap split of a data
//! artifact, stratified by code length, seeded. The artifact's layout, reading and
//! writing are [`crate::artifact::split`]'s.
//!
//! Guarantees:
//! - deterministic: the same data, parameters and seed give byte-identical
//!   files, whatever the thread count (all randomness comes from
//!   [`Rng::derive`] on the node's seed);
//! - k-fold: every index is in exactly one fold's `valid` list, and each
//!   fold's `train` list is the complement of its `valid` list; fold sizes
//!   differ by at most one;
//! - stratified (`stratify = true`): items are bucketed by code length, each
//!   bucket is shuffled, then dealt round-robin into the folds (k-fold; the
//!   deal continues across buckets, so both the per-length counts and the
//!   fold sizes differ by at most one between folds) or cut by `ratio`
//!   (hold-out; the number held out is `round(ratio * n)`, shared between
//!   buckets by largest remainder);
//! - bootstrap (bagging): `bags` parts; bag `b` trains on a sample of the
//!   data's size drawn with replacement (within each code-length bucket
//!   when stratified, so each bag keeps the length mix exactly; a drawn
//!   item appears in `train` as often as it was drawn) and validates on its
//!   out-of-bag items, those never drawn — which are its out-of-fold
//!   items: a prediction with `oof` over the bags gives each item the mean
//!   of the bags that left it out. Each bag has its own random stream, so
//!   adding bags leaves the earlier ones unchanged;
//! - only the parameters of the method enter the key ([`Kind::canonical`]
//!   drops `k` and `bags` from a hold-out, `ratio` and `bags` from a
//!   k-fold, `k` and `ratio` from a bootstrap).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::artifact::dataset::DataIndex;
use crate::artifact::split::{self as artifact, fold_file, Fold, FoldSummary, Summary};
#[allow(unused_imports)]
use crate::kind::schema::{float_range, int_min, int_range, Dflt, Param, Ty, RATIO};
use crate::kind::{Kind, NodeError, RunCtx};
use crate::rng::Rng;

/// Items by bucket key (a code length, or 0 for all).
type Buckets = BTreeMap<usize, Vec<usize>>;

/// Stream id for [`Rng::derive`]: the split's shuffles (one per bucket).
const RNG_STREAM: u64 = 0x5b11_7000;
/// Stream id for [`Rng::derive`]: a bootstrap's draws (one per bag).
const BAG_STREAM: u64 = 0xba99_0000;

pub struct Split;

impl Kind for Split {
    fn name(&self) -> &'static str {
        "split"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Hold-out, k-fold or bootstrap split of a labelled data set, stratified by code length, seeded. A k-fold split offers k parts and a bootstrap `bags` parts: a node that refers to it as `\"folds\"` runs once per part. A bag trains on a sample drawn with replacement and validates on its out-of-bag items, its out-of-fold predictions."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn canonical(&self, mut params: Value) -> Value {
        if let Some(obj) = params.as_object_mut() {
            let drop: &[&str] = match obj.get("method").and_then(Value::as_str) {
                Some("holdout") => &["k", "bags"],
                Some("kfold") => &["ratio", "bags"],
                Some("bootstrap") => &["k", "ratio"],
                _ => &[],
            };
            for k in drop {
                obj.remove(*k);
            }
        }
        params
    }
    fn parts(&self, params: &Value) -> Option<usize> {
        match params.get("method").and_then(Value::as_str) {
            Some("kfold") => params.get("k").and_then(Value::as_u64).map(|k| k as usize),
            Some("bootstrap") => params
                .get("bags")
                .and_then(Value::as_u64)
                .map(|b| b as usize),
            _ => None,
        }
    }
    fn part_file(&self, i: usize) -> String {
        fold_file(i)
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        let p: SplitParams = ctx.typed()?;
        let input = ctx.input("data")?;
        let index = DataIndex::load(&input.dir)?;
        let (folds, summary) = compute(&index, &p, ctx.seed, &input.node)?;
        artifact::write(ctx.out, &folds, &summary)
    }
}

static PARAMS: &[Param] = &[
    Param {
        name: "data",
        ty: Ty::Ref(&["dataset", "synthetic"]),
        default: Dflt::Required,
        doc: "The data set to split.",
    },
    Param {
        name: "method",
        ty: Ty::Choice(&["holdout", "kfold", "bootstrap"]),
        default: Dflt::Value("\"kfold\""),
        doc: "`holdout`: one train/valid split; `kfold`: k folds; `bootstrap`: `bags` bootstrap samples, each validated on its out-of-bag items.",
    },
    Param {
        name: "k",
        ty: int_min(2),
        default: Dflt::Value("5"),
        doc: "Number of folds (kfold only).",
    },
    Param {
        name: "ratio",
        ty: RATIO,
        default: Dflt::Value("0.2"),
        doc: "Share of the data held out for validation (holdout only).",
    },
    Param {
        name: "bags",
        ty: int_min(1),
        default: Dflt::Value("5"),
        doc: "Number of bootstrap samples (bootstrap only).",
    },
    Param {
        name: "stratify",
        ty: Ty::Bool,
        default: Dflt::Value("true"),
        doc: "Keep the code-length mix equal across folds.",
    },
];

#[derive(Debug, Deserialize)]
struct SplitParams {
    method: String,
    k: Option<usize>,
    ratio: Option<f64>,
    #[serde(default)]
    bags: Option<usize>,
    stratify: bool,
}

/// Computes the folds and the summary. `node` names the data in errors.
fn compute(
    index: &DataIndex,
    p: &SplitParams,
    seed: u64,
    node: &str,
) -> Result<(Vec<Fold>, Summary), NodeError> {
    if p.stratify && !index.labelled {
        return Err(NodeError::new("foldwise::split::unlabelled", format!(
            "data `{node}` is unlabelled, so it cannot be stratified by code length; set `stratify = false`"
        )));
    }
    let lengths: Option<Vec<usize>> = index.labelled.then(|| {
        index
            .items
            .iter()
            .map(|it| it.label.as_ref().map_or(0, Vec::len))
            .collect()
    });
    let n = index.items.len();
    let buckets = shuffled_buckets(lengths.as_deref().filter(|_| p.stratify), n, seed);
    let folds = match p.method.as_str() {
        "kfold" => kfold(&buckets, n, p.k.unwrap_or(5), node)?,
        "bootstrap" => bootstrap(&buckets, n, p.bags.unwrap_or(5), seed, node)?,
        _ => holdout(&buckets, n, p.ratio.unwrap_or(0.2), node)?,
    };
    let summary = summarise(p, n, lengths.as_deref(), &folds);
    Ok((folds, summary))
}

/// The items bucketed by code length (`lengths`; one bucket without), each
/// bucket shuffled with its own derived stream.
fn shuffled_buckets(lengths: Option<&[usize]>, n: usize, seed: u64) -> Buckets {
    let mut buckets: Buckets = BTreeMap::new();
    for i in 0..n {
        buckets
            .entry(lengths.map_or(0, |l| l[i]))
            .or_default()
            .push(i);
    }
    for (&key, bucket) in buckets.iter_mut() {
        Rng::derive(seed, RNG_STREAM, key as u64).shuffle(bucket);
    }
    buckets
}

/// `k` folds: the buckets dealt round-robin, the deal continuing across
/// buckets.
fn kfold(buckets: &Buckets, n: usize, k: usize, node: &str) -> Result<Vec<Fold>, NodeError> {
    if k > n {
        return Err(NodeError::new(
            "foldwise::split::too_few",
            format!("k = {k} folds need at least {k} items, but data `{node}` has {n}"),
        ));
    }
    // valid_of[i] = the fold whose valid part holds item i.
    let mut valid_of = vec![0usize; n];
    for (next, &i) in buckets.values().flatten().enumerate() {
        valid_of[i] = next % k;
    }
    Ok((0..k).map(|f| fold_of(&valid_of, f)).collect())
}

/// `bags` bootstrap samples: bag `b` draws, from each bucket (in its
/// shuffled order, so the draw does not depend on item numbering alone),
/// as many items as the bucket holds, with replacement, from its own
/// stream; its valid part is every item never drawn.
fn bootstrap(
    buckets: &Buckets,
    n: usize,
    bags: usize,
    seed: u64,
    node: &str,
) -> Result<Vec<Fold>, NodeError> {
    let mut folds = Vec::with_capacity(bags);
    for b in 0..bags {
        let mut rng = Rng::derive(seed, BAG_STREAM, b as u64);
        let mut drawn = vec![0usize; n];
        for bucket in buckets.values() {
            for _ in 0..bucket.len() {
                drawn[bucket[rng.below(bucket.len() as u64) as usize]] += 1;
            }
        }
        let mut train = Vec::with_capacity(n);
        let mut valid = Vec::new();
        for (i, &c) in drawn.iter().enumerate() {
            if c == 0 {
                valid.push(i);
            }
            train.extend(std::iter::repeat_n(i, c));
        }
        if valid.is_empty() {
            return Err(NodeError::new(
                "foldwise::split::empty_part",
                format!(
                    "bootstrap bag {b} of data `{node}` drew every one of its {n} items, so it has no out-of-bag items to validate on; use more data or a different seed"
                ),
            ));
        }
        folds.push(Fold { train, valid });
    }
    Ok(folds)
}

/// One fold holding out `round(ratio * n)` items, shared between the
/// buckets by largest remainder.
fn holdout(buckets: &Buckets, n: usize, ratio: f64, node: &str) -> Result<Vec<Fold>, NodeError> {
    let total = (ratio * n as f64).round() as usize;
    if total == 0 || total >= n {
        let empty = if total == 0 { "valid" } else { "train" };
        return Err(NodeError::new("foldwise::split::empty_part", format!(
            "a hold-out with ratio = {ratio} of the {n} items of data `{node}` leaves the {empty} part empty"
        )));
    }
    let quotas = largest_remainder(buckets, ratio, total);
    // valid_of[i]: 0 for valid, 1 for train.
    let mut valid_of = vec![1usize; n];
    for (bucket, q) in buckets.values().zip(quotas) {
        for &i in &bucket[..q] {
            valid_of[i] = 0;
        }
    }
    Ok(vec![fold_of(&valid_of, 0)])
}

/// `split.json` of `folds` over `n` items; the per-length counts when
/// `lengths` are known.
fn summarise(p: &SplitParams, n: usize, lengths: Option<&[usize]>, folds: &[Fold]) -> Summary {
    let count_lengths = |idx: &[usize]| -> Option<BTreeMap<usize, usize>> {
        lengths.map(|l| {
            let mut m = BTreeMap::new();
            for &i in idx {
                *m.entry(l[i]).or_insert(0) += 1;
            }
            m
        })
    };
    let all: Vec<usize> = (0..n).collect();
    Summary {
        method: p.method.clone(),
        k: (p.method == "kfold").then_some(folds.len()),
        ratio: (p.method == "holdout").then(|| p.ratio.unwrap_or(0.2)),
        bags: (p.method == "bootstrap").then_some(folds.len()),
        stratify: p.stratify,
        items: n,
        by_length: count_lengths(&all),
        folds: folds
            .iter()
            .map(|f| FoldSummary {
                train: f.train.len(),
                valid: f.valid.len(),
                valid_by_length: count_lengths(&f.valid),
            })
            .collect(),
    }
}

/// Fold `f` of an assignment: valid = items assigned to `f`, train = rest.
fn fold_of(valid_of: &[usize], f: usize) -> Fold {
    let (valid, train): (Vec<usize>, Vec<usize>) =
        (0..valid_of.len()).partition(|&i| valid_of[i] == f);
    Fold { train, valid }
}

/// Shares `total` held-out items between the buckets in proportion to their
/// sizes: floors first, then one more to the largest remainders (ties: the
/// shorter code length first).
fn largest_remainder(buckets: &Buckets, ratio: f64, total: usize) -> Vec<usize> {
    let exact: Vec<f64> = buckets.values().map(|b| ratio * b.len() as f64).collect();
    let mut quotas: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    // The remainders sum to less than the number of buckets with one, and
    // `total` exceeds the floors by at most that sum rounded: one pass does.
    let left = total.saturating_sub(quotas.iter().sum());
    for &b in order.iter().take(left) {
        quotas[b] += 1;
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::dataset::DataItem;
    use crate::artifact::split::{load_fold, SUMMARY_FILE};
    use crate::kind::InputArtifact;
    use crate::kind::NoProgress;
    use serde_json::json;
    use std::fs;
    use std::path::Path;

    /// A labelled index whose item i has code length `lens[i]`.
    fn index_with_lengths(lens: &[usize]) -> DataIndex {
        DataIndex {
            labelled: true,
            items: lens
                .iter()
                .enumerate()
                .map(|(i, &l)| DataItem {
                    file: format!("{i:05}.png"),
                    width: 10,
                    height: 10,
                    label: Some(vec![1; l]),
                    boxes: None,
                })
                .collect(),
        }
    }

    /// The mchar-like mix: lengths 1..=5, mostly 2.
    fn mixed(n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| match i % 20 {
                0..=2 => 1,
                3..=13 => 2,
                14..=18 => 3,
                _ => 4 + (i / 20) % 2,
            })
            .collect()
    }

    /// Writes `index` as an artifact, runs the split with `params` (defaults
    /// filled in, canonicalised) and returns the output folder.
    fn run_split(
        index: &DataIndex,
        params: Value,
        seed: u64,
    ) -> (tempfile::TempDir, tempfile::TempDir, Result<(), NodeError>) {
        let data = tempfile::tempdir().unwrap();
        index.save(data.path()).unwrap();
        let mut p = json!({"data": "plates", "method": "kfold", "k": 5, "ratio": 0.2, "bags": 5, "stratify": true});
        for (k, v) in params.as_object().unwrap() {
            p[k] = v.clone();
        }
        let p = Split.canonical(p);
        let out = tempfile::tempdir().unwrap();
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "data".to_string(),
            vec![InputArtifact {
                digest: String::new(),
                node: "plates".into(),
                dir: data.path().to_path_buf(),
                part: None,
            }],
        );
        let ctx = RunCtx {
            instance: "folds",
            fold: None,
            params: &p,
            seed,
            base_dir: Path::new("."),
            inputs: &inputs,
            out: out.path(),
            progress: &NoProgress,
            threads: 1,
            work: None,
            derived: Path::new("/nonexistent/derived"),
            device: crate::kind::DeviceChoice::Auto,
        };
        let r = Split.run(&ctx);
        (data, out, r)
    }

    fn read_folds(out: &Path, k: usize) -> Vec<Fold> {
        (0..k)
            .map(|i| {
                load_fold(&InputArtifact {
                    digest: String::new(),
                    node: "folds".into(),
                    dir: out.to_path_buf(),
                    part: Some(out.join(fold_file(i))),
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn kfold_partitions_every_index_and_is_sorted() {
        let idx = index_with_lengths(&mixed(103));
        let (_d, out, r) = run_split(&idx, json!({"k": 4}), 9);
        r.unwrap();
        let folds = read_folds(out.path(), 4);
        assert!(!out.path().join(fold_file(4)).exists());
        let mut seen = vec![0; 103];
        for f in &folds {
            assert!(f.valid.windows(2).all(|w| w[0] < w[1]));
            assert!(f.train.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(f.train.len() + f.valid.len(), 103);
            assert!(f.valid.iter().all(|i| f.train.binary_search(i).is_err()));
            for &i in &f.valid {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1));
        let sizes: Vec<_> = folds.iter().map(|f| f.valid.len()).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
    }

    #[test]
    fn kfold_is_stratified_by_length() {
        let lens = mixed(500);
        let idx = index_with_lengths(&lens);
        let (_d, out, r) = run_split(&idx, json!({"k": 7}), 3);
        r.unwrap();
        let folds = read_folds(out.path(), 7);
        for len in 1..=5 {
            let counts: Vec<usize> = folds
                .iter()
                .map(|f| f.valid.iter().filter(|&&i| lens[i] == len).count())
                .collect();
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 1, "length {len}: {counts:?}");
        }
        let summary: Value =
            serde_json::from_slice(&fs::read(out.path().join(SUMMARY_FILE)).unwrap()).unwrap();
        assert_eq!(summary["method"], "kfold");
        assert_eq!(summary["k"], 7);
        assert!(summary.get("ratio").is_none());
        assert_eq!(summary["items"], 500);
        assert_eq!(summary["by_length"]["2"], 275);
        assert_eq!(summary["folds"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn split_is_deterministic_and_seeded() {
        let idx = index_with_lengths(&mixed(200));
        let (_d1, a, r1) = run_split(&idx, json!({}), 42);
        let (_d2, b, r2) = run_split(&idx, json!({}), 42);
        let (_d3, c, r3) = run_split(&idx, json!({}), 43);
        r1.unwrap();
        r2.unwrap();
        r3.unwrap();
        assert_eq!(
            crate::testutil::all_bytes(a.path()),
            crate::testutil::all_bytes(b.path())
        );
        assert_ne!(
            fs::read(a.path().join(fold_file(0))).unwrap(),
            fs::read(c.path().join(fold_file(0))).unwrap()
        );
        // Not simply index order.
        let f = &read_folds(a.path(), 5)[0];
        assert_ne!(f.valid, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn holdout_takes_ratio_per_length() {
        let lens = mixed(1000);
        let idx = index_with_lengths(&lens);
        let (_d, out, r) = run_split(&idx, json!({"method": "holdout", "ratio": 0.25}), 5);
        r.unwrap();
        assert!(!out.path().join(fold_file(1)).exists());
        // A hold-out consumer has no part: load_fold reads fold-0.
        let f = load_fold(&InputArtifact {
            digest: String::new(),
            node: "folds".into(),
            dir: out.path().to_path_buf(),
            part: None,
        })
        .unwrap();
        assert_eq!(f.valid.len(), 250);
        assert_eq!(f.train.len(), 750);
        for len in 1..=5 {
            let all = lens.iter().filter(|&&l| l == len).count() as f64;
            let held = f.valid.iter().filter(|&&i| lens[i] == len).count() as f64;
            assert!(
                (held - all * 0.25).abs() <= 1.0,
                "length {len}: {held} of {all}"
            );
        }
        let summary: Value =
            serde_json::from_slice(&fs::read(out.path().join(SUMMARY_FILE)).unwrap()).unwrap();
        assert_eq!(summary["ratio"], 0.25);
        assert!(summary.get("k").is_none());
        assert_eq!(summary["folds"][0]["valid"], 250);
    }

    #[test]
    fn holdout_total_is_exact_with_many_small_buckets() {
        // Six buckets of 3: per-bucket rounding alone would hold out 6 or 0.
        let lens: Vec<usize> = (0..18).map(|i| 1 + i % 6).collect();
        let idx = index_with_lengths(&lens);
        let (_d, out, r) = run_split(&idx, json!({"method": "holdout", "ratio": 0.2}), 1);
        r.unwrap();
        let f = &read_folds(out.path(), 1)[0];
        assert_eq!(f.valid.len(), 4); // round(3.6)
    }

    #[test]
    fn unstratified_split_works_on_unlabelled_data() {
        let mut idx = index_with_lengths(&mixed(50));
        idx.labelled = false;
        idx.items.iter_mut().for_each(|i| i.label = None);
        let (_d, out, r) = run_split(&idx, json!({"k": 5, "stratify": false}), 2);
        r.unwrap();
        let folds = read_folds(out.path(), 5);
        assert!(folds.iter().all(|f| f.valid.len() == 10));
        let summary: Value =
            serde_json::from_slice(&fs::read(out.path().join(SUMMARY_FILE)).unwrap()).unwrap();
        assert!(summary.get("by_length").is_none());

        let (_d, _o, r) = run_split(&idx, json!({}), 2);
        assert_eq!(
            r.unwrap_err().to_string(),
            "data `plates` is unlabelled, so it cannot be stratified by code length; set `stratify = false`"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let idx = index_with_lengths(&[1, 2, 3]);
        let (_d, _o, r) = run_split(&idx, json!({"k": 4}), 1);
        assert_eq!(
            r.unwrap_err().to_string(),
            "k = 4 folds need at least 4 items, but data `plates` has 3"
        );
        let (_d, _o, r) = run_split(&idx, json!({"method": "holdout", "ratio": 0.1}), 1);
        assert_eq!(
            r.unwrap_err().to_string(),
            "a hold-out with ratio = 0.1 of the 3 items of data `plates` leaves the valid part empty"
        );
        let (_d, _o, r) = run_split(&idx, json!({"method": "holdout", "ratio": 0.9}), 1);
        assert_eq!(
            r.unwrap_err().to_string(),
            "a hold-out with ratio = 0.9 of the 3 items of data `plates` leaves the train part empty"
        );
        // k = n is fine: one item per fold.
        let (_d, out, r) = run_split(&idx, json!({"k": 3}), 1);
        r.unwrap();
        assert!(read_folds(out.path(), 3).iter().all(|f| f.valid.len() == 1));
    }

    #[test]
    fn canonical_drops_what_cannot_matter() {
        let p = json!({"data": "d", "method": "holdout", "k": 5, "ratio": 0.2, "bags": 5, "stratify": true});
        assert_eq!(
            Split.canonical(p),
            json!({"data": "d", "method": "holdout", "ratio": 0.2, "stratify": true})
        );
        let p = json!({"data": "d", "method": "kfold", "k": 5, "ratio": 0.2, "bags": 5, "stratify": true});
        let c = Split.canonical(p);
        assert_eq!(
            c,
            json!({"data": "d", "method": "kfold", "k": 5, "stratify": true})
        );
        assert_eq!(Split.parts(&c), Some(5));
        assert_eq!(
            Split.parts(&json!({"method": "holdout", "ratio": 0.2})),
            None
        );
        assert_eq!(Split.part_file(3), "folds/fold-3.json");
    }

    #[test]
    fn a_bag_draws_with_replacement_per_length_and_validates_out_of_bag() {
        let lens = mixed(200);
        let idx = index_with_lengths(&lens);
        let (_d, out, r) = run_split(&idx, json!({"method": "bootstrap", "bags": 4}), 5);
        r.unwrap();
        assert!(!out.path().join(fold_file(4)).exists());
        let bags = read_folds(out.path(), 4);
        for f in &bags {
            // A sample of the data's size, sorted, repeats allowed.
            assert_eq!(f.train.len(), 200);
            assert!(f.train.windows(2).all(|w| w[0] <= w[1]));
            assert!(f.train.windows(2).any(|w| w[0] == w[1]));
            // Each length drawn exactly as often as the data has it.
            for len in 1..=5 {
                let want = lens.iter().filter(|&&l| l == len).count();
                let got = f.train.iter().filter(|&&i| lens[i] == len).count();
                assert_eq!(got, want, "length {len}");
            }
            // Out of bag: exactly the items never drawn.
            let drawn: std::collections::BTreeSet<usize> = f.train.iter().copied().collect();
            let oob: Vec<usize> = (0..200).filter(|i| !drawn.contains(i)).collect();
            assert_eq!(f.valid, oob);
            // About e^-1 of the items.
            assert!((50..=95).contains(&f.valid.len()), "{}", f.valid.len());
        }
        assert_ne!(bags[0], bags[1]);
        let summary: Value =
            serde_json::from_slice(&fs::read(out.path().join(SUMMARY_FILE)).unwrap()).unwrap();
        assert_eq!(summary["method"], "bootstrap");
        assert_eq!(summary["bags"], 4);
        assert!(summary.get("k").is_none() && summary.get("ratio").is_none());
        // More bags leave the first ones as they were; the seed changes them.
        let (_d2, out6, r) = run_split(&idx, json!({"method": "bootstrap", "bags": 6}), 5);
        r.unwrap();
        assert_eq!(read_folds(out6.path(), 6)[..4], bags[..]);
        let (_d3, other, r) = run_split(&idx, json!({"method": "bootstrap", "bags": 4}), 6);
        r.unwrap();
        assert_ne!(read_folds(other.path(), 4)[0], bags[0]);
        // Keys: a bootstrap keeps `bags` only; the others drop it.
        let c = Split.canonical(json!({"data": "d", "method": "bootstrap", "k": 5, "ratio": 0.2, "bags": 3, "stratify": true}));
        assert_eq!(
            c,
            json!({"data": "d", "method": "bootstrap", "bags": 3, "stratify": true})
        );
        assert_eq!(Split.parts(&c), Some(3));
        // A bag that drew every item has nothing to validate on.
        let (_d4, _o, r) = run_split(
            &index_with_lengths(&[1]),
            json!({"method": "bootstrap", "bags": 1}),
            1,
        );
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with("bootstrap bag 0 of data `plates` drew every one of its 1 items, so it has no out-of-bag items"),
            "{e}"
        );
    }
}
