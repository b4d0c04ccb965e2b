//! Renders a sheet of generated plates for a visual quality check of the
//! `synthetic` node kind:
//!
//!     cargo run --release --example sample_sheet -- docs/img/synthetic-sample.png
//!
//! Top: a clean specimen of the ten digits in each glyph style (reading
//! order: sans, serif, condensed, segment, rounded). Below: one
//! column of generated plates per style (default parameters restricted to
//! that style), each at its own size, shrunk when it does not fit its cell.
//!
//! `sample_sheet --time N [THREADS]` instead generates a whole data set of N
//! plates (PNG files and index) into a temporary folder and prints how long
//! it took.

use foldwise::kind::NoProgress;
use foldwise::nodes::synthetic::{
    encode_png_with, render_plate, specimen, write_dataset, Style, SyntheticParams,
};
use image::codecs::png::CompressionType;
use image::{imageops, Rgb, RgbImage};

const ROWS: u32 = 8;
const CELL_W: u32 = 144;
const CELL_H: u32 = 50;
const GUTTER: u32 = 6;
const SPECIMEN_H: u32 = 48;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--time") {
        let count: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3000);
        let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
        time_generation(count, threads);
        return;
    }
    let out = args
        .first()
        .cloned()
        .unwrap_or_else(|| "synthetic-sample.png".into());
    let cols = Style::ALL.len() as u32;
    let top = GUTTER + 3 * (SPECIMEN_H + GUTTER);
    let mut sheet = RgbImage::from_pixel(
        cols * (CELL_W + GUTTER) + GUTTER,
        top + ROWS * (CELL_H + GUTTER) + GUTTER,
        Rgb([255, 255, 255]),
    );
    let digits: Vec<u8> = (0..10).collect();
    for (i, style) in Style::ALL.iter().enumerate() {
        let img = specimen(*style, &digits, SPECIMEN_H);
        let (x, y) = (
            GUTTER + (i as u32 % 2) * (sheet.width() / 2),
            GUTTER + (i as u32 / 2) * (SPECIMEN_H + GUTTER),
        );
        imageops::replace(&mut sheet, &img, x as i64, y as i64);
    }
    for (col, style) in Style::ALL.iter().enumerate() {
        let mut params = SyntheticParams::with_count(ROWS as u64);
        params.styles = vec![*style];
        for row in 0..ROWS {
            let index = (col as u32 * ROWS + row) as u64;
            let (mut img, label, _) = render_plate(&params, 2024, index);
            if img.width() > CELL_W || img.height() > CELL_H {
                let k =
                    (CELL_W as f32 / img.width() as f32).min(CELL_H as f32 / img.height() as f32);
                let (w, h) = (
                    ((img.width() as f32 * k) as u32).max(1),
                    ((img.height() as f32 * k) as u32).max(1),
                );
                img = imageops::resize(&img, w, h, imageops::FilterType::Triangle);
            }
            let x = GUTTER + col as u32 * (CELL_W + GUTTER) + (CELL_W - img.width()) / 2;
            let y = top + row * (CELL_H + GUTTER) + (CELL_H - img.height()) / 2;
            imageops::replace(&mut sheet, &img, x as i64, y as i64);
            let code: String = label.iter().map(|d| char::from(b'0' + d)).collect();
            println!("{:>9} row {row}: {code}", style.name());
        }
    }
    let bytes = encode_png_with(&sheet, CompressionType::Best).expect("encode");
    std::fs::write(&out, &bytes).expect("write sheet");
    eprintln!("wrote {out} ({} bytes)", bytes.len());
}

fn time_generation(count: u64, threads: usize) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let params = SyntheticParams::with_count(count);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let start = std::time::Instant::now();
    let index = pool
        .install(|| write_dataset(&params, 42, dir.path(), &NoProgress))
        .expect("generate");
    let secs = start.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(dir.path().join("images"))
        .expect("images")
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "{} plates on {threads} threads in {secs:.2} s ({:.0} plates/s), {:.1} MB of PNG",
        index.items.len(),
        index.items.len() as f64 / secs,
        bytes as f64 / 1e6
    );
}
