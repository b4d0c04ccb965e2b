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

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

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
    std::fs::write(&wide, wide_pipeline(NODES)).unwrap();
    let cache = work.join("cache");

    println!("| pipeline | command | median | min | max | peak RSS |");
    println!("|---|---|---|---|---|---|");
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
        let (ok, secs, rss) = invoke(&bin, &cache, &["run", "-q", "-j", "2"], p);
        assert!(ok, "the first run of {name} failed");
        row(name, "first `run -q -j 2`", &[secs], rss);
        for cmd in cmds {
            let mut times = Vec::new();
            let mut peak = 0;
            for _ in 0..RUNS {
                let (ok, secs, rss) = invoke(&bin, &cache, cmd, p);
                assert!(ok, "`{}` of {name} failed", cmd.join(" "));
                times.push(secs);
                peak = peak.max(rss);
            }
            row(name, &format!("`{}`", cmd.join(" ")), &times, peak);
        }
    }
}

fn row(name: &str, cmd: &str, times: &[f64], peak_kib: i64) {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    println!(
        "| {name} | {cmd} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} MB |",
        t[t.len() / 2] * 1e3,
        t[0] * 1e3,
        t[t.len() - 1] * 1e3,
        peak_kib as f64 / 1024.0
    );
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

fn contest_pipeline(images: &Path, labels: &Path) -> String {
    format!(
        "[pipeline]\nname = \"contest\"\n\n[nodes.data]\nkind = \"dataset\"\nimages = {:?}\nlabels = {:?}\n\n\
         [nodes.folds]\nkind = \"split\"\ndata = \"data\"\nmethod = \"kfold\"\nk = 10\n",
        images.display().to_string(),
        labels.display().to_string()
    )
}

/// A binary tree of `n` command nodes, each with its own parameter.
fn wide_pipeline(n: usize) -> String {
    let mut s = String::from("[pipeline]\nname = \"wide\"\n\n");
    s.push_str(
        "[nodes.n0]\nkind = \"command\"\nargv = [\"sh\", \"-c\", \"echo 0 > $FOLDWISE_OUT/x\"]\n\n",
    );
    for i in 1..n {
        s.push_str(&format!(
            "[nodes.n{i}]\nkind = \"command\"\ninputs = {{ up = \"n{}\" }}\nparams = {{ i = {i} }}\n\
             argv = [\"sh\", \"-c\", \"echo $FOLDWISE_PARAM_I > $FOLDWISE_OUT/x\"]\n\n",
            (i - 1) / 2
        ));
    }
    s
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
