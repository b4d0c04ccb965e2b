//! The data nodes on the real data in ../shared/data (mnist-seq plates and
//! real street-number photos). Listed as ignored, with the paths each test
//! reads, unless `FOLDWISE_FULL_SUITE=1` (as `.ci/run` sets).

use foldwise::artifact::dataset::DataIndex;

use crate::common::{names, Project};
use crate::testutil::shared_data;

#[test]
#[cfg_attr(
    not(any(full_suite, shared_data)),
    ignore = "needs ../shared/data/mnist-seq/{train, train.json, val, val.json}"
)]
fn mnist_seq_reads_splits_and_stays_fresh() {
    let data = shared_data(&[
        "mnist-seq/train",
        "mnist-seq/train.json",
        "mnist-seq/val",
        "mnist-seq/val.json",
    ])
    .canonicalize()
    .unwrap();
    let p = Project::new(&format!(
        r#"
[pipeline]
name = "mnist-seq"
seed = 3

[nodes.train]
kind = "dataset"
images = "{d}/mnist-seq/train"
labels = "{d}/mnist-seq/train.json"

[nodes.val]
kind = "dataset"
images = "{d}/mnist-seq/val"
labels = "{d}/mnist-seq/val.json"

[nodes.folds]
kind = "split"
data = "train"
k = 5
"#,
        d = data.display()
    ));
    let r = p.run();
    assert_eq!(r.executed(), names(&["train", "val", "folds"]));
    let st = p.status();
    let train = DataIndex::load(&st[0].artifact.as_ref().unwrap().dir).unwrap();
    let val = DataIndex::load(&st[1].artifact.as_ref().unwrap().dir).unwrap();
    assert_eq!((train.items.len(), val.items.len()), (5000, 1000));
    assert!(train.labelled && val.labelled);
    // The first entry of train.json, as the README of the data shows.
    let lens: Vec<usize> = train
        .items
        .iter()
        .map(|i| i.label.as_ref().unwrap().len())
        .collect();
    assert!(lens.iter().all(|&l| (1..=6).contains(&l)));
    assert!(p.run().executed().is_empty());
}

#[test]
#[cfg_attr(
    not(any(full_suite, shared_data)),
    ignore = "needs ../shared/data/{real-samples, real-samples/labels.csv}"
)]
fn the_real_photos_decode_in_every_colour_mode() {
    let data = shared_data(&["real-samples", "real-samples/labels.csv"])
        .canonicalize()
        .unwrap();
    let p = Project::new(&format!(
        r#"
[pipeline]
name = "real"

[nodes.photos]
kind = "dataset"
images = "{d}/real-samples"
labels = "{d}/real-samples/labels.csv"
"#,
        d = data.display()
    ));
    assert_eq!(p.run().executed(), names(&["photos"]));
    let st = p.status();
    let idx = DataIndex::load(&st[0].artifact.as_ref().unwrap().dir).unwrap();
    assert_eq!(idx.items.len(), 17);
    let big = idx.items.iter().map(|i| i.width).max().unwrap();
    assert_eq!(big, 741, "the full SVHN photo keeps its size");
}
