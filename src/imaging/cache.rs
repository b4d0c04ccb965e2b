//! The decoded-set cache: a whole data artifact decoded once per
//! (dataset, size) into one packed file, so training reads raw pixels
//! instead of decoding PNGs every epoch.
//!
//! File layout (little-endian):
//!
//! | bytes | content                                   |
//! |-------|-------------------------------------------|
//! | 0-7   | magic `FWDECSET`                          |
//! | 8-11  | format version (1)                        |
//! | 12-15 | n, the number of images                   |
//! | 16-19 | h, the image height                       |
//! | 20-23 | w, the image width                        |
//! | 24-27 | c, the channels (3: RGB)                  |
//! | 28-31 | reserved (0)                              |
//! | 32-   | n images of h x w x c u8, HWC, index order|
//!
//! Images are stored at the *pre-augmentation* size (e.g. 68x136 for a
//! 64x128 model; [`super::augment`] crops and transforms from there), in
//! the order of the [`DataIndex`] items.
//!
//! Guarantees: the bytes depend only on the images and the size — decoding
//! runs in parallel (rayon) but each image is decoded and resized on its
//! own, in deterministic arithmetic, into its own slot; the file appears
//! under its name only when complete (written beside it, then renamed);
//! [`DecodedSet::open`] checks the magic, version, header and exact file
//! size, and every error names the file. The payload carries no checksum:
//! bit-level corruption is the content-addressed store's job.

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::decode::decode_rgb;
use super::resize::resize_rgb;
use super::CHANNELS;
use crate::artifact::dataset::{DataIndex, IMAGES_DIR};
use crate::kind::{NodeError, Progress};

/// First bytes of a decoded-set file.
pub const MAGIC: &[u8; 8] = b"FWDECSET";
/// Format version written in the header.
pub const VERSION: u32 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 32;
/// Images decoded per parallel block (bounds memory while writing).
const BLOCK: usize = 256;

/// The data set of a data artifact decoded at `height` x `width`, shared by
/// every node through the engine's `derived` folder: named by the artifact's
/// digest and the size, decoded (to a temporary name, then renamed) only
/// when absent or unusable. Decoding is a progress stage of its own
/// (`decoding`). Nodes that want the same set at once (folds training side
/// by side) take turns on a lock file beside it, so one decodes and the
/// others open its result; without the lock (a file system that has none)
/// they may both decode: the files are identical and the last rename wins.
pub fn shared_set(
    derived: &Path,
    data_dir: &Path,
    data_digest: &str,
    index: &DataIndex,
    height: u32,
    width: u32,
    progress: &dyn Progress,
) -> Result<DecodedSet, NodeError> {
    let name =
        blake3::hash(format!("foldwise-decset-1\n{data_digest}\n{height}\n{width}").as_bytes());
    std::fs::create_dir_all(derived).map_err(|e| NodeError::io(derived, e))?;
    let path = derived.join(format!("{}.decset", name.to_hex()));
    let fits =
        |s: &DecodedSet| s.len() == index.items.len() && s.height() == height && s.width() == width;
    let _turn = take_turn(&path.with_extension("decset.lock"), progress);
    if let Ok(set) = DecodedSet::open(&path) {
        if fits(&set) {
            return Ok(set);
        }
    }
    let tmp = crate::store::temp_sibling(&path);
    decode_set(data_dir, index, height, width, &tmp, progress)?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        NodeError::io(&path, e)
    })?;
    let set = DecodedSet::open(&path)?;
    if !fits(&set) {
        return Err(NodeError::file(
            &path,
            format!(
                "decoded set holds {} images of {}x{}, want {} of {height}x{width}",
                set.len(),
                set.height(),
                set.width(),
                index.items.len()
            ),
        ));
    }
    Ok(set)
}

/// The exclusive lock of `lock_path` (held until the file is dropped),
/// waiting for whoever holds it; `None` when the file system offers none.
fn take_turn(lock_path: &Path, progress: &dyn Progress) -> Option<std::fs::File> {
    let file = std::fs::File::create(lock_path).ok()?;
    if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        progress.message("waiting for another node decoding the same images");
        file.lock().ok()?;
    }
    Some(file)
}

/// Decodes every image of the data artifact at `artifact_dir` (listed by
/// `index`), resizes it to `height` x `width` and writes the packed set to
/// `out_file`. Decoding runs in parallel on the current rayon pool; the
/// first failing image (in index order) is the error, naming the file.
pub fn decode_set(
    artifact_dir: &Path,
    index: &DataIndex,
    height: u32,
    width: u32,
    out_file: &Path,
    progress: &dyn Progress,
) -> Result<(), NodeError> {
    if height == 0 || width == 0 {
        return Err(NodeError::new(
            "foldwise::decoded::size",
            format!("decoded set size must be positive, got {height}x{width}"),
        ));
    }
    let n = u32::try_from(index.items.len()).map_err(|_| {
        NodeError::new(
            "foldwise::decoded::size",
            "too many images for a decoded set",
        )
    })?;
    let per = height as usize * width as usize * CHANNELS;
    let images = artifact_dir.join(IMAGES_DIR);
    let tmp = partial_path(out_file);
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| NodeError::io(&tmp, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header(n, height, width))
            .map_err(|e| NodeError::io(&tmp, e))?;
        progress.stage("decoding", n as u64);
        let mut buf = vec![0u8; BLOCK.min(index.items.len()) * per];
        for items in index.items.chunks(BLOCK) {
            let block = &mut buf[..items.len() * per];
            let results: Vec<Result<(), NodeError>> = block
                .par_chunks_mut(per)
                .zip(items.par_iter())
                .map(|(slot, item)| {
                    let img = decode_rgb(&images.join(&item.file))?;
                    slot.copy_from_slice(&resize_rgb(
                        &img.pixels,
                        img.height,
                        img.width,
                        height,
                        width,
                    ));
                    progress.inc(1);
                    Ok(())
                })
                .collect();
            results.into_iter().collect::<Result<(), _>>()?;
            out.write_all(block).map_err(|e| NodeError::io(&tmp, e))?;
        }
        let file = out
            .into_inner()
            .map_err(|e| NodeError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| NodeError::io(&tmp, e))?;
        std::fs::rename(&tmp, out_file).map_err(|e| NodeError::io(out_file, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn partial_path(out_file: &Path) -> PathBuf {
    let mut name = out_file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out_file.with_file_name(name)
}

fn header(n: u32, h: u32, w: u32) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..8].copy_from_slice(MAGIC);
    for (i, v) in [VERSION, n, h, w, CHANNELS as u32, 0]
        .into_iter()
        .enumerate()
    {
        b[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// A decoded set held in memory: `len()` images of `height()` x `width()`
/// packed RGB u8 (HWC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSet {
    n: usize,
    h: u32,
    w: u32,
    /// The whole file (header included), or just a header and pixels for
    /// [`DecodedSet::from_pixels`].
    bytes: Vec<u8>,
}

impl DecodedSet {
    /// Reads a decoded-set file fully into memory, checking its header and
    /// size. A damaged file is an error naming it.
    pub fn open(path: &Path) -> Result<DecodedSet, NodeError> {
        let bytes = std::fs::read(path).map_err(|e| NodeError::io(path, e))?;
        let bad = |m: String| NodeError::file(path, format!("damaged decoded set: {m}"));
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(bad("wrong magic (not a decoded set)".into()));
        }
        let word = |i: usize| u32::from_le_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        let (version, n, h, w, c) = (word(0), word(1), word(2), word(3), word(4));
        if version != VERSION {
            return Err(bad(format!("format version {version}, expected {VERSION}")));
        }
        if c as usize != CHANNELS || h == 0 || w == 0 {
            return Err(bad(format!("bad header: {h}x{w}x{c}")));
        }
        let want = (n as u64) * (h as u64) * (w as u64) * (c as u64) + HEADER_LEN as u64;
        if bytes.len() as u64 != want {
            return Err(bad(format!(
                "{} bytes, the header ({n} images of {h}x{w}x{c}) needs {want}",
                bytes.len()
            )));
        }
        Ok(DecodedSet {
            n: n as usize,
            h,
            w,
            bytes,
        })
    }

    /// An in-memory set from packed pixels (`n * h * w * 3` bytes).
    pub fn from_pixels(h: u32, w: u32, pixels: Vec<u8>) -> Result<DecodedSet, NodeError> {
        let per = h as usize * w as usize * CHANNELS;
        if per == 0 || !pixels.len().is_multiple_of(per) {
            return Err(NodeError::new(
                "foldwise::decoded::bytes",
                format!("{} bytes are not whole {h}x{w} RGB images", pixels.len()),
            ));
        }
        let n = pixels.len() / per;
        let mut bytes = Vec::with_capacity(HEADER_LEN + pixels.len());
        bytes.extend_from_slice(&header(n as u32, h, w));
        bytes.extend_from_slice(&pixels);
        Ok(DecodedSet { n, h, w, bytes })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn height(&self) -> u32 {
        self.h
    }

    pub fn width(&self) -> u32 {
        self.w
    }

    /// Image `i` as packed RGB u8 HWC. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(i < self.n, "image {i} of a decoded set of {}", self.n);
        let per = self.h as usize * self.w as usize * CHANNELS;
        &self.bytes[HEADER_LEN + i * per..HEADER_LEN + (i + 1) * per]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::dataset::DataItem;
    use crate::imaging::decode_rgb;
    use crate::kind::NoProgress;
    use image::{ImageBuffer, Luma, Rgb, Rgba};

    /// A data artifact with images of mixed sizes and colour modes.
    fn artifact(dir: &Path, n: usize) -> DataIndex {
        let images = dir.join(IMAGES_DIR);
        std::fs::create_dir_all(&images).unwrap();
        let mut items = Vec::new();
        for i in 0..n {
            let file = format!("{i:06}.png");
            let (w, h) = (20 + (i as u32 * 13) % 90, 15 + (i as u32 * 7) % 50);
            let p = images.join(&file);
            match i % 3 {
                0 => {
                    ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 5) as u8, (y * 9) as u8, i as u8]))
                        .save(&p)
                        .unwrap()
                }
                1 => ImageBuffer::from_fn(w, h, |x, y| {
                    Rgba([(x * 3) as u8, 50, (y * 4) as u8, (x * 11) as u8])
                })
                .save(&p)
                .unwrap(),
                _ => ImageBuffer::from_fn(w, h, |x, y| Luma([((x + y) * 6 % 256) as u16 * 257]))
                    .save(&p)
                    .unwrap(),
            }
            items.push(DataItem {
                file,
                width: w,
                height: h,
                label: None,
                boxes: None,
            });
        }
        DataIndex {
            labelled: false,
            items,
        }
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn round_trip_and_thread_independence() {
        let dir = tempfile::tempdir().unwrap();
        let index = artifact(dir.path(), 9);
        let (f1, f2) = (dir.path().join("one.bin"), dir.path().join("two.bin"));
        pool(1)
            .install(|| decode_set(dir.path(), &index, 17, 34, &f1, &NoProgress))
            .unwrap();
        pool(2)
            .install(|| decode_set(dir.path(), &index, 17, 34, &f2, &NoProgress))
            .unwrap();
        let (b1, b2) = (std::fs::read(&f1).unwrap(), std::fs::read(&f2).unwrap());
        assert_eq!(b1, b2);
        assert_eq!(b1.len(), HEADER_LEN + 9 * 17 * 34 * 3);
        assert!(!partial_path(&f1).exists());

        let set = DecodedSet::open(&f1).unwrap();
        assert_eq!((set.len(), set.height(), set.width()), (9, 17, 34));
        for (i, item) in index.items.iter().enumerate() {
            let img = decode_rgb(&dir.path().join(IMAGES_DIR).join(&item.file)).unwrap();
            let want = resize_rgb(&img.pixels, img.height, img.width, 17, 34);
            assert_eq!(set.image(i), &want[..], "image {i}");
        }
        let mem = DecodedSet::from_pixels(17, 34, b1[HEADER_LEN..].to_vec()).unwrap();
        assert_eq!(mem, set);
    }

    #[test]
    fn a_bad_image_fails_naming_it_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let index = artifact(dir.path(), 4);
        std::fs::write(dir.path().join(IMAGES_DIR).join("000002.png"), b"junk").unwrap();
        let out = dir.path().join("set.bin");
        let e = decode_set(dir.path(), &index, 8, 8, &out, &NoProgress)
            .unwrap_err()
            .to_string();
        assert!(e.contains("000002.png"), "{e}");
        assert!(!out.exists() && !partial_path(&out).exists());
    }

    #[test]
    fn damaged_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let index = artifact(dir.path(), 3);
        let good = dir.path().join("set.bin");
        decode_set(dir.path(), &index, 6, 10, &good, &NoProgress).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let bad = dir.path().join("damaged.bin");
        let mut cases: Vec<Vec<u8>> = vec![
            bytes[..bytes.len() - 1].to_vec(),
            bytes[..20].to_vec(),
            Vec::new(),
            [bytes.clone(), vec![0]].concat(),
        ];
        let mut wrong_magic = bytes.clone();
        wrong_magic[0] = b'X';
        let mut wrong_version = bytes.clone();
        wrong_version[8] = 9;
        let mut wrong_n = bytes.clone();
        wrong_n[12] = 4;
        let mut wrong_c = bytes.clone();
        wrong_c[24] = 4;
        cases.extend([wrong_magic, wrong_version, wrong_n, wrong_c]);
        for (k, case) in cases.iter().enumerate() {
            std::fs::write(&bad, case).unwrap();
            let e = DecodedSet::open(&bad).unwrap_err().to_string();
            assert!(
                e.contains("damaged.bin") && e.contains("damaged"),
                "case {k}: {e}"
            );
        }
        let e = DecodedSet::open(&dir.path().join("nope.bin"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.bin"), "{e}");
    }

    #[test]
    fn empty_set_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let index = DataIndex {
            labelled: false,
            items: Vec::new(),
        };
        let out = dir.path().join("empty.bin");
        decode_set(dir.path(), &index, 4, 4, &out, &NoProgress).unwrap();
        let set = DecodedSet::open(&out).unwrap();
        assert!(set.is_empty());
    }
}
