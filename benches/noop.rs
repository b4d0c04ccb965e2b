//! No-op `run` and `status` of a 13-node pipeline over a 5,000-image data
//! set and of a generated 1,000-node pipeline, measured as a user sees them:
//! the release binary, wall time per invocation, and its peak memory.
//!
//!     cargo bench --bench noop
//!
//! Uses ../shared/data/mnist-seq/train when present, else 5,000 generated
//! images. Targets (issue 2): ≤ 30 ms and ≤ 300 ms, ≤ 50 MB peak.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

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
    std::fs::write(&p1000, pipeline_1000()).unwrap();
    let cache = work.path().join("cache");

    println!("| pipeline | command | median | min | max | peak RSS |");
    println!("|---|---|---|---|---|---|");
    for (name, p) in [("13 nodes, 5,000 images", &p13), ("1,000 nodes", &p1000)] {
        let first = invoke(&bin, &cache, &["run", "-q", "-j", "2"], p);
        assert!(first.0, "the first run of {name} failed");
        for cmd in [&["run", "-q"][..], &["status"][..]] {
            let mut times = Vec::new();
            let mut peak = 0;
            for _ in 0..RUNS {
                let (ok, secs, rss) = invoke(&bin, &cache, cmd, p);
                assert!(ok);
                times.push(secs);
                peak = peak.max(rss);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "| {name} | `{}` | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MB |",
                cmd.join(" "),
                times[RUNS / 2] * 1e3,
                times[0] * 1e3,
                times[RUNS - 1] * 1e3,
                peak as f64 / 1024.0
            );
        }
    }
}

/// Runs the binary; returns (success, wall seconds, peak RSS in KiB).
fn invoke(bin: &Path, cache: &Path, args: &[&str], pipeline: &Path) -> (bool, f64, i64) {
    let t = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let child = Command::new(bin)
        .args(args)
        .arg(pipeline)
        .env("FOLDWISE_CACHE", cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn foldwise");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills a zeroed rusage.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    assert!(r > 0, "wait4 failed");
    drop(child); // already reaped by wait4
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        secs,
        usage.ru_maxrss,
    )
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

fn pipeline_1000() -> String {
    let mut s = String::from("[pipeline]\nname = \"bench1000\"\n\n");
    s.push_str(
        "[nodes.n0]\nkind = \"command\"\nargv = [\"sh\", \"-c\", \"echo 0 > $FOLDWISE_OUT/x\"]\n\n",
    );
    for i in 1..1000 {
        s.push_str(&format!(
            "[nodes.n{i}]\nkind = \"command\"\ninputs = {{ up = \"n{}\" }}\nparams = {{ i = {i} }}\n\
             argv = [\"sh\", \"-c\", \"echo $FOLDWISE_PARAM_I > $FOLDWISE_OUT/x\"]\n\n",
            (i - 1) / 2
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
