//! Contest scale, measured as a user sees it (the release binary, wall time
//! per invocation, peak memory):
//!
//! - one 80,000-image data set (the contest's 30,000 + 10,000 + 40,000,
//!   about 1 GB of PNGs) and a 10-fold split: the first run, then no-op
//!   `run` and `status` (targets: at most 0.3 s and 64 MB);
//! - a generated 10,000-node pipeline: `check`, the first run, no-op `run`
//!   and `status` (target: at most 2 s each).
//!
//!     cargo bench --bench scale
//!
//! The images are generated once into `$FOLDWISE_BENCH_DIR` when set (kept
//! for the next time), else into a temporary folder. Results go to
//! docs/benchmarks.md by hand.

mod common;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

const RUNS: usize = 7;
const IMAGES: u32 = 80_000;
const NODES: usize = 10_000;

fn main() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_foldwise"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = std::env::var_os("FOLDWISE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("data"));
    let (images, labels) = generate(&data);

    let work = tmp.path();
    let big = work.join("contest.toml");
    std::fs::write(&big, contest_pipeline(&images, &labels)).unwrap();
    let wide = work.join("wide.toml");
    std::fs::write(&wide, common::tree_pipeline("wide", NODES)).unwrap();
    let cache = work.join("cache");

    common::header();
    let cases: [(&str, &Path, &[&[&str]]); 2] = [
        (
            "80,000 images, 10 folds",
            &big,
            &[&["run", "-q"], &["status"]],
        ),
        (
            "10,000 nodes",
            &wide,
            &[&["check"], &["run", "-q"], &["status"]],
        ),
    ];
    for (name, p, cmds) in cases {
        common::first(&bin, &cache, name, &["run", "-q", "-j", "2"], p);
        for cmd in cmds {
            common::repeat(&bin, &cache, name, cmd, p, RUNS);
        }
    }
}

fn contest_pipeline(images: &Path, labels: &Path) -> String {
    format!(
        "[pipeline]\nname = \"contest\"\n\n[nodes.data]\nkind = \"dataset\"\nimages = {:?}\nlabels = {:?}\n\n\
         [nodes.folds]\nkind = \"split\"\ndata = \"data\"\nmethod = \"kfold\"\nk = 10\n",
        images.display().to_string(),
        labels.display().to_string()
    )
}

/// 80,000 noisy 40x100 PNGs (about 12 KB each, like the contest's) and a
/// `file_name,file_code` label file; kept when already there.
fn generate(dir: &Path) -> (PathBuf, PathBuf) {
    let imgs = dir.join("imgs");
    let labels = dir.join("labels.csv");
    if labels.is_file() {
        return (imgs, labels);
    }
    eprintln!("generating {IMAGES} images in {}", imgs.display());
    std::fs::create_dir_all(&imgs).unwrap();
    (0..IMAGES).into_par_iter().for_each(|i| {
        let mut state = u64::from(i) * 0x9E37_79B9_7F4A_7C15 + 1;
        let img = image::RgbImage::from_fn(100, 40, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
        });
        img.save(imgs.join(format!("{i:06}.png"))).unwrap();
    });
    let mut csv = String::from("file_name,file_code\n");
    for i in 0..IMAGES {
        csv.push_str(&format!("{i:06}.png,{}\n", i % 10_000));
    }
    std::fs::write(&labels, csv).unwrap();
    (imgs, labels)
}
