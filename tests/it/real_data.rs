//! The data nodes on the real data in ../shared/data (mnist-seq plates and
//! real street-number photos). Skipped, saying so, when it is absent.

use std::path::PathBuf;

use foldwise::artifact::dataset::DataIndex;

use crate::common::{names, Project};

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.join("mnist-seq/train.json").is_file() {
        Some(p.canonicalize().unwrap())
    } else {
        eprintln!("skipped: ../shared/data not present");
        None
    }
}

#[test]
fn mnist_seq_reads_splits_and_stays_fresh() {
    let Some(data) = shared() else { return };
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
fn the_real_photos_decode_in_every_colour_mode() {
    let Some(data) = shared() else { return };
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
