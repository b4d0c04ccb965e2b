//! No-op `run` and `status` of a 13-node pipeline over a 5,000-image data
//! set and of a generated 1,000-node pipeline, measured as a user sees them:
//! the release binary, wall time per invocation, and its peak memory.
//!
//!     cargo bench --bench noop
//!
//! Uses ../shared/data/mnist-seq/train when present, else 5,000 generated
//! images. Targets (issue 2): ≤ 30 ms and ≤ 300 ms, ≤ 50 MB peak.

mod common;

use std::path::{Path, PathBuf};

const RUNS: usize = 15;

fn main() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_foldwise"));
    let work = tempfile::tempdir().expect("temp dir");
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist-seq");
    let (images, labels) = if shared.join("train.json").is_file() {
        (shared.join("train"), shared.join("train.json"))
    } else {
        eprintln!("../shared/data not present: generating 5,000 images");
        generate(work.path())
    };

    let p13 = work.path().join("p13.toml");
    std::fs::write(&p13, pipeline_13(&images, &labels)).unwrap();
    let p1000 = work.path().join("p1000.toml");
    std::fs::write(&p1000, common::tree_pipeline("bench1000", 1000)).unwrap();
    let cache = work.path().join("cache");

    common::header();
    for (name, p) in [("13 nodes, 5,000 images", &p13), ("1,000 nodes", &p1000)] {
        common::first(&bin, &cache, name, &["run", "-q", "-j", "2"], p);
        for cmd in [&["run", "-q"][..], &["status"][..]] {
            common::repeat(&bin, &cache, name, cmd, p, RUNS);
        }
    }
}

fn pipeline_13(images: &Path, labels: &Path) -> String {
    let mut s = format!(
        "[pipeline]\nname = \"bench13\"\n\n[nodes.data]\nkind = \"dataset\"\nimages = {:?}\nlabels = {:?}\n\n\
         [nodes.split]\nkind = \"split\"\ndata = \"data\"\nmethod = \"holdout\"\n\n",
        images.display().to_string(),
        labels.display().to_string()
    );
    // 11 command stages: a chain with side branches, like a DVC pipeline of
    // featurise / train / evaluate stages.
    for i in 0..11 {
        let input = match i {
            0 => "split".to_string(),
            i => format!("s{}", (i - 1) / 2),
        };
        s.push_str(&format!(
            "[nodes.s{i}]\nkind = \"command\"\ninputs = {{ up = \"{input}\" }}\n\
             argv = [\"sh\", \"-c\", \"ls $FOLDWISE_INPUT_UP > $FOLDWISE_OUT/list.txt\"]\n\n"
        ));
    }
    s
}

fn generate(dir: &Path) -> (PathBuf, PathBuf) {
    let imgs = dir.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let mut csv = String::from("file_name,file_code\n");
    for i in 0..5000u32 {
        let img = image::RgbImage::from_fn(60, 40, |x, y| {
            image::Rgb([(x * 4 + i) as u8, (y * 6) as u8, (i % 251) as u8])
        });
        let name = format!("{i:06}.png");
        img.save(imgs.join(&name)).unwrap();
        csv.push_str(&format!("{name},{}\n", i % 1000));
    }
    let labels = dir.join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    (imgs, labels)
}
