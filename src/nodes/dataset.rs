//! The `dataset` node kind: a folder of images on disk, with optional
//! labels, turned into a data artifact (see [`crate::artifact::dataset`]).
//!
//! What it reads:
//! - `images`: the image files directly inside the folder (not its
//!   sub-folders) whose extension is `png`, `jpg` or `jpeg` in any case;
//!   hidden files (names starting with `.`) and other files are ignored;
//! - `labels` (optional): an mchar JSON file (`{"name.png": {"label": [..],
//!   "left": [..], "top": [..], "width": [..], "height": [..]}}`; the four box
//!   lists may be absent; numbers may be integers or floats; a lone number is
//!   taken as a one-element list) or a CSV file with the header
//!   `file_name,file_code` (fields may be quoted, CRLF line ends and blank
//!   lines are accepted).
//!
//! What it guarantees:
//! - every image in the artifact decodes completely (truncated or corrupt
//!   files are rejected), in any colour mode and size; `index.json` records
//!   each image's width and height, items sorted by file name;
//! - a labelled artifact has a label of 1 or more digits 0-9 for every image,
//!   and every label entry names an image that exists;
//! - all problems are collected and reported together in one error (the
//!   first [`MAX_REPORTED`] in full, then a count of the rest), each naming
//!   the file it is about;
//! - the output depends only on the folder's images, the label file and the
//!   parameters (both paths are declared as external inputs, so their
//!   contents are hashed into the key).
//!
//! Images enter the artifact as **hard links** where the file system allows
//! it (copies otherwise, e.g. across file systems). A hard-linked file shares
//! its bytes with the source file: editing a source image in place also
//! changes the cached artifact (the cache's integrity check will then flag
//! it), and changing its permissions changes both. Replace source files
//! (write a new file, rename it over the old one) rather than edit them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::artifact::dataset::{DataIndex, DataItem, IMAGES_DIR};
#[allow(unused_imports)]
use crate::kind::schema::{float_range, int_min, int_range, Dflt, Param, Ty, RATIO};
use crate::kind::{resolve_path, Appetite, Kind, NodeError, Progress, RunCtx};

/// How many problems an error lists in full before it only counts the rest.
pub const MAX_REPORTED: usize = 10;

pub struct Dataset;

impl Kind for Dataset {
    fn name(&self) -> &'static str {
        "dataset"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "A folder of images with optional labels (an mchar JSON or a `file_name,file_code` CSV). Images of any size and colour mode (PNG, JPEG). The artifact holds the images (hard-linked or copied), `index.json` and the labels in mchar format."
    }
    fn appetite(&self, _params: &Value) -> Appetite {
        Appetite::Scales
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn external_inputs(&self, params: &Value, base_dir: &Path) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for name in ["images", "labels"] {
            if let Some(p) = params.get(name).and_then(Value::as_str) {
                out.push((name.to_string(), resolve_path(base_dir, p)));
            }
        }
        out
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        let p: DatasetParams = ctx.typed()?;
        run(ctx, &p)
    }
}

static PARAMS: &[Param] = &[
    Param { name: "images", ty: Ty::Path, default: Dflt::Required, doc: "Folder of images (png, jpg, jpeg), relative to the pipeline file." },
    Param { name: "labels", ty: Ty::Path, default: Dflt::Optional, doc: "Label file: mchar JSON (`.json`) or `file_name,file_code` CSV (`.csv`). Absent for a test set." },
    Param { name: "labels_format", ty: Ty::Choice(&["auto", "mchar", "csv"]), default: Dflt::Value("\"auto\""), doc: "How to read `labels`; `auto` goes by the file extension." },
    Param { name: "unlabelled", ty: Ty::Choice(&["error", "skip"]), default: Dflt::Value("\"error\""), doc: "What to do with images that have no label when `labels` is given." },
    Param { name: "limit", ty: int_min(1), default: Dflt::Optional, doc: "Keep only the first N images (by file name)." },
];

#[derive(Debug, Deserialize)]
struct DatasetParams {
    images: String,
    labels: Option<String>,
    labels_format: String,
    unlabelled: String,
    limit: Option<u64>,
}

/// One label read from a label file.
#[derive(Debug, Clone, PartialEq)]
struct Label {
    digits: Vec<u8>,
    boxes: Option<Vec<[f32; 4]>>,
}

/// Problems found so far, each naming its file.
#[derive(Default)]
struct Problems(Vec<(PathBuf, String)>);

impl Problems {
    fn push(&mut self, path: &Path, msg: impl Into<String>) {
        self.0.push((path.to_path_buf(), msg.into()));
    }

    /// `Ok` when empty; one problem → a file error; several → one message
    /// listing the first [`MAX_REPORTED`] and counting the rest.
    fn into_result(self) -> Result<(), NodeError> {
        let mut list = self.0;
        match list.len() {
            0 => Ok(()),
            1 => {
                let (path, message) = list.pop().expect("one problem");
                Err(NodeError::file(path, message))
            }
            n => {
                let mut msg = format!("{n} problems in the data set:");
                for (path, m) in list.iter().take(MAX_REPORTED) {
                    msg.push_str(&format!("\n  {}: {m}", path.display()));
                }
                if n > MAX_REPORTED {
                    msg.push_str(&format!("\n  … and {} more", n - MAX_REPORTED));
                }
                Err(NodeError::new("foldwise::dataset::images", msg))
            }
        }
    }
}

/// A label file as read: its path and its labels (`None` when it could not
/// be read as a whole).
type LabelFile = (PathBuf, Option<LabelMap>);

/// An image file name and its label, if the data set is labelled.
type Entry = (String, Option<Label>);

fn run(ctx: &RunCtx<'_>, p: &DatasetParams) -> Result<(), NodeError> {
    let folder = resolve_path(ctx.base_dir, &p.images);
    let mut problems = Problems::default();
    let names = list_images(&folder, &mut problems)?;
    let labels = match &p.labels {
        None => None,
        Some(l) => Some(read_labels(ctx.base_dir, l, p, &mut problems)?),
    };
    let mut items = match &labels {
        None => names.iter().map(|n| (n.clone(), None)).collect(),
        Some(file) => match_labels(&names, file, &folder, p, &mut problems),
    };
    if let Some(limit) = p.limit {
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    if items.is_empty() && problems.0.is_empty() {
        // Only reachable with labels and `unlabelled = "skip"`.
        let (label_path, _) = labels.as_ref().expect("names were not empty");
        return Err(NodeError::file(
            &folder,
            format!(
                "no image in this folder has a label in {}",
                label_path.display()
            ),
        ));
    }
    let pool = worker_pool(ctx.threads)?;
    let sizes = decode_sizes(&pool, &folder, &items, ctx.progress);
    for ((name, _), r) in items.iter().zip(&sizes) {
        if let Err(e) = r {
            problems.push(&folder.join(name), e.clone());
        }
    }
    problems.into_result()?;
    write_artifact(&pool, &folder, ctx.out, items, sizes, labels.is_some())
}

/// Reads the label file `labels` (relative to `base_dir`) in the format
/// `p.labels_format` names or its extension implies; problems in it go to
/// `problems`.
fn read_labels(
    base_dir: &Path,
    labels: &str,
    p: &DatasetParams,
    problems: &mut Problems,
) -> Result<LabelFile, NodeError> {
    let path = resolve_path(base_dir, labels);
    let format = match p.labels_format.as_str() {
        "auto" => label_format_of(&path)?,
        other => other,
    };
    let text = fs::read(&path).map_err(|e| NodeError::io(&path, e))?;
    let text = String::from_utf8_lossy(&text);
    let map = match format {
        "csv" => read_csv(&text, &path, problems),
        _ => read_mchar(&text, &path, problems),
    };
    Ok((path, map))
}

/// Pairs image names with their labels: a label without an image and (unless
/// `unlabelled = "skip"`) an image without a label are problems. A label
/// file that could not be read as a whole (a syntax error, a wrong header)
/// gives no per-image problems: its one problem says it all.
fn match_labels(
    names: &[String],
    (label_path, map): &LabelFile,
    folder: &Path,
    p: &DatasetParams,
    problems: &mut Problems,
) -> Vec<Entry> {
    let Some(map) = map else {
        return Vec::new();
    };
    let present: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    for name in map.keys() {
        if !present.contains(name.as_str()) {
            problems.push(
                label_path,
                format!(
                    "label for `{name}`, but there is no such image in {}",
                    folder.display()
                ),
            );
        }
    }
    let mut items = Vec::with_capacity(names.len());
    for name in names {
        match map.get(name) {
            Some(Some(l)) => items.push((name.clone(), Some(l.clone()))),
            // A malformed entry: already reported.
            Some(None) => {}
            None if p.unlabelled == "skip" => {}
            None => problems.push(
                &folder.join(name),
                format!(
                    "no label in {} (set `unlabelled = \"skip\"` to leave such images out)",
                    label_path.display()
                ),
            ),
        }
    }
    items
}

/// A pool of `threads` (at least 1) worker threads.
fn worker_pool(threads: usize) -> Result<rayon::ThreadPool, NodeError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| {
            NodeError::new(
                "foldwise::dataset::threads",
                format!("cannot start worker threads: {e}"),
            )
        })
}

/// Decodes every kept image fully, in parallel: its size, or why not.
fn decode_sizes(
    pool: &rayon::ThreadPool,
    folder: &Path,
    items: &[Entry],
    progress: &dyn Progress,
) -> Vec<Result<(u32, u32), String>> {
    progress.stage("decoding", items.len() as u64);
    pool.install(|| {
        items
            .par_iter()
            .map(|(name, _)| {
                let r = decode_size(&folder.join(name));
                progress.inc(1);
                r
            })
            .collect()
    })
}

/// Writes the artifact into `out`: the images (linked or copied) and the
/// index, `sizes` holding every image's decoded size.
fn write_artifact(
    pool: &rayon::ThreadPool,
    folder: &Path,
    out: &Path,
    items: Vec<Entry>,
    sizes: Vec<Result<(u32, u32), String>>,
    labelled: bool,
) -> Result<(), NodeError> {
    let images_out = out.join(IMAGES_DIR);
    fs::create_dir_all(&images_out).map_err(|e| NodeError::io(&images_out, e))?;
    pool.install(|| {
        items
            .par_iter()
            .try_for_each(|(name, _)| link_or_copy(&folder.join(name), &images_out.join(name)))
    })?;
    let index = DataIndex {
        labelled,
        items: items
            .into_iter()
            .zip(sizes)
            .map(|((file, label), size)| {
                let (width, height) = size.expect("decode errors were reported");
                let (label, boxes) = match label {
                    Some(l) => (Some(l.digits), l.boxes),
                    None => (None, None),
                };
                DataItem {
                    file,
                    width,
                    height,
                    label,
                    boxes,
                }
            })
            .collect(),
    };
    index.save(out)
}

/// The image file names directly inside `folder`, sorted.
fn list_images(folder: &Path, problems: &mut Problems) -> Result<Vec<String>, NodeError> {
    let rd = fs::read_dir(folder).map_err(|e| NodeError::io(folder, e))?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| NodeError::io(folder, e))?;
        let path = entry.path();
        let raw = entry.file_name();
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !["png", "jpg", "jpeg"]
            .iter()
            .any(|x| ext.eq_ignore_ascii_case(x))
        {
            continue;
        }
        // Follows symbolic links: a link to an image counts as an image.
        if !fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false) {
            continue;
        }
        match raw.to_str() {
            Some(n) if n.starts_with('.') => {}
            Some(n) => names.push(n.to_string()),
            None => problems.push(&path, "the file name is not valid UTF-8"),
        }
    }
    if names.is_empty() && problems.0.is_empty() {
        return Err(
            NodeError::file(folder, "no images (png, jpg, jpeg) in this folder").with_help(
                "only files directly inside the folder count, not those in its sub-folders",
            ),
        );
    }
    names.sort();
    Ok(names)
}

/// `"csv"` or `"mchar"` from the label file's extension.
fn label_format_of(path: &Path) -> Result<&'static str, NodeError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext.eq_ignore_ascii_case("json") {
        Ok("mchar")
    } else if ext.eq_ignore_ascii_case("csv") {
        Ok("csv")
    } else {
        Err(NodeError::file(
            path,
            "cannot tell the label format from the extension (expected `.json` or `.csv`); set `labels_format = \"mchar\"` or `\"csv\"`",
        ))
    }
}

/// Decodes the whole image (so truncated files fail) and returns its size.
fn decode_size(path: &Path) -> Result<(u32, u32), String> {
    let img = image::ImageReader::open(path)
        .map_err(|e| format!("cannot read image: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read image: {e}"))?
        .decode()
        .map_err(|e| format!("cannot decode image: {e}"))?;
    Ok((img.width(), img.height()))
}

/// Hard-links `src` to `dst`, copying when linking is not possible.
fn link_or_copy(src: &Path, dst: &Path) -> Result<(), NodeError> {
    if fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    fs::copy(src, dst)
        .map(|_| ())
        .map_err(|e| NodeError::io(dst, e))
}

// ---------------------------------------------------------------- mchar JSON

/// Labels by image file name; `None` for an entry that was malformed (and
/// reported). The whole map is `None` when the file could not be read at all.
type LabelMap = BTreeMap<String, Option<Label>>;

/// Reads an mchar JSON label file; problems go to `problems`.
fn read_mchar(text: &str, path: &Path, problems: &mut Problems) -> Option<LabelMap> {
    let root: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(path, json_syntax_message(&e));
            return None;
        }
    };
    let Value::Object(map) = root else {
        problems.push(
            path,
            "expected a JSON object mapping image file names to label entries",
        );
        return None;
    };
    let mut out = LabelMap::new();
    for (name, entry) in map {
        let label = mchar_entry(&entry)
            .map_err(|m| problems.push(path, format!("entry `{name}`: {m}")))
            .ok();
        out.insert(name, label);
    }
    Some(out)
}

/// "JSON syntax error at line L, column C: <what>".
fn json_syntax_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let what = full.strip_suffix(&suffix).unwrap_or(&full);
    format!(
        "JSON syntax error at line {}, column {}: {what}",
        e.line(),
        e.column()
    )
}

/// A list of numbers (a lone number counts as a one-element list).
fn number_list(v: &Value, key: &str) -> Result<Vec<f64>, String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Number(_) => vec![v],
        other => return Err(format!("`{key}` must be a list of numbers, found {other}")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .ok_or_else(|| format!("`{key}` entry {i} is {x}, not a number"))
        })
        .collect()
}

fn mchar_entry(entry: &Value) -> Result<Label, String> {
    let Value::Object(e) = entry else {
        return Err(format!(
            "expected an object with a `label` list, found {entry}"
        ));
    };
    let label = e.get("label").ok_or("no `label` list")?;
    let nums = number_list(label, "label")?;
    if nums.is_empty() {
        return Err("`label` is empty".into());
    }
    let mut digits = Vec::with_capacity(nums.len());
    for (i, &d) in nums.iter().enumerate() {
        if d.fract() != 0.0 || !(0.0..=9.0).contains(&d) {
            return Err(format!("`label` entry {i} is {d}, not a digit 0-9"));
        }
        digits.push(d as u8);
    }
    const BOX_KEYS: [&str; 4] = ["left", "top", "width", "height"];
    let mut cols: Vec<Option<Vec<f64>>> = Vec::with_capacity(4);
    for key in BOX_KEYS {
        match e.get(key) {
            None | Some(Value::Null) => cols.push(None),
            Some(v) => {
                let col = number_list(v, key)?;
                if col.len() != digits.len() {
                    return Err(format!(
                        "`label` has {} entries but `{key}` has {}",
                        digits.len(),
                        col.len()
                    ));
                }
                cols.push(Some(col));
            }
        }
    }
    let present: Vec<&str> = BOX_KEYS
        .iter()
        .zip(&cols)
        .filter(|(_, c)| c.is_some())
        .map(|(k, _)| *k)
        .collect();
    let boxes = match present.len() {
        0 => None,
        4 => {
            let c: Vec<&Vec<f64>> = cols.iter().flatten().collect();
            Some(
                (0..digits.len())
                    .map(|i| {
                        [
                            c[0][i] as f32,
                            c[1][i] as f32,
                            c[2][i] as f32,
                            c[3][i] as f32,
                        ]
                    })
                    .collect(),
            )
        }
        _ => {
            let missing: Vec<String> = BOX_KEYS
                .iter()
                .filter(|k| !present.contains(k))
                .map(|k| format!("`{k}`"))
                .collect();
            return Err(format!(
                "has box lists {} but not {}",
                present
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                missing.join(", ")
            ));
        }
    };
    Ok(Label { digits, boxes })
}

// ----------------------------------------------------------------------- CSV

/// Splits one CSV line into fields (RFC 4180 quoting, `""` inside quotes).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && cur.trim().is_empty() && !was_quoted {
            cur.clear();
            in_quotes = true;
            was_quoted = true;
        } else if c == ',' {
            fields.push(std::mem::take(&mut cur));
            was_quoted = false;
        } else if was_quoted && !c.is_whitespace() {
            return Err(format!("unexpected `{c}` after a closing quote"));
        } else {
            cur.push(c);
        }
    }
    if in_quotes {
        return Err("a quoted field is not closed".into());
    }
    fields.push(cur);
    Ok(fields.into_iter().map(|f| f.trim().to_string()).collect())
}

/// Reads a `file_name,file_code` CSV; problems go to `problems`.
fn read_csv(text: &str, path: &Path, problems: &mut Problems) -> Option<LabelMap> {
    let mut out = LabelMap::new();
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut header_seen = false;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let fields = match csv_fields(line) {
            Ok(f) => f,
            Err(m) => {
                problems.push(path, format!("line {n}: {m}"));
                continue;
            }
        };
        if !header_seen {
            header_seen = true;
            if fields != ["file_name", "file_code"] {
                problems.push(
                    path,
                    format!("line {n}: expected the header `file_name,file_code`, found `{line}`"),
                );
                return None;
            }
            continue;
        }
        let name = fields[0].clone();
        if name.is_empty() {
            problems.push(path, format!("line {n}: empty file name"));
            continue;
        }
        if let Some(first) = first_line.get(&name) {
            problems.push(
                path,
                format!("line {n}: `{name}` appears again (first on line {first})"),
            );
            continue;
        }
        first_line.insert(name.clone(), n);
        let label = csv_label(&fields)
            .map_err(|m| problems.push(path, format!("line {n}: {m}")))
            .ok();
        out.insert(name, label);
    }
    if !header_seen {
        problems.push(
            path,
            "empty file: expected the header `file_name,file_code`",
        );
        return None;
    }
    Some(out)
}

/// The label of one CSV record (`fields[0]` is a non-empty file name).
fn csv_label(fields: &[String]) -> Result<Label, String> {
    if fields.len() != 2 {
        return Err(format!(
            "expected 2 fields (file_name,file_code), found {}",
            fields.len()
        ));
    }
    let (name, code) = (&fields[0], &fields[1]);
    if code.is_empty() {
        return Err(format!("empty code for `{name}`"));
    }
    if let Some(c) = code.chars().find(|c| !c.is_ascii_digit()) {
        return Err(format!("code `{code}` for `{name}` has a non-digit `{c}`"));
    }
    Ok(Label {
        digits: code.bytes().map(|b| b - b'0').collect(),
        boxes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::{InputArtifact, NoProgress};
    use image::{ImageBuffer, Luma, Rgb, Rgba};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn png_rgb(path: &Path, w: u32, h: u32) {
        ImageBuffer::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 7u8]))
            .save(path)
            .unwrap();
    }

    /// Runs the kind with `params` (defaults filled in here) from `base`.
    fn run_with(base: &Path, params: Value) -> (tempfile::TempDir, Result<(), NodeError>) {
        let mut p = json!({"labels_format": "auto", "unlabelled": "error"});
        for (k, v) in params.as_object().unwrap() {
            p[k] = v.clone();
        }
        let out = tempfile::tempdir().unwrap();
        let inputs: BTreeMap<String, Vec<InputArtifact>> = BTreeMap::new();
        let ctx = RunCtx {
            instance: "data",
            fold: None,
            params: &p,
            seed: 1,
            base_dir: base,
            inputs: &inputs,
            out: out.path(),
            progress: &NoProgress,
            threads: 2,
            work: None,
            derived: Path::new("/nonexistent/derived"),
            device: crate::kind::DeviceChoice::Auto,
        };
        let r = Dataset.run(&ctx);
        (out, r)
    }

    fn err_text(r: Result<(), NodeError>) -> String {
        r.expect_err("expected an error").to_string()
    }

    /// The artifact of a successful run and its index.
    fn loaded(run: (tempfile::TempDir, Result<(), NodeError>)) -> (tempfile::TempDir, DataIndex) {
        let (out, r) = run;
        r.unwrap();
        let idx = DataIndex::load(out.path()).unwrap();
        (out, idx)
    }

    /// [`three_images`] with a label file `file` holding `text`.
    fn with_labels(file: &str, text: &str) -> tempfile::TempDir {
        let d = three_images();
        fs::write(d.path().join(file), text).unwrap();
        d
    }

    /// Runs on `d`'s `imgs` with the label file `file` and the `extra`
    /// parameters.
    fn run_labelled(
        d: &tempfile::TempDir,
        file: &str,
        extra: Value,
    ) -> (tempfile::TempDir, Result<(), NodeError>) {
        let mut params = json!({"images": "imgs", "labels": file});
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        run_with(d.path(), params)
    }

    /// A one-problem error about `rel` (relative to `d`): `PATH: message`.
    fn at(d: &tempfile::TempDir, rel: &str, message: &str) -> String {
        format!("{}: {message}", d.path().join(rel).display())
    }

    /// A folder `imgs` with a.png (20x10), b.png (30x12), c.png (8x8).
    fn three_images() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let imgs = d.path().join("imgs");
        fs::create_dir(&imgs).unwrap();
        png_rgb(&imgs.join("a.png"), 20, 10);
        png_rgb(&imgs.join("b.png"), 30, 12);
        png_rgb(&imgs.join("c.png"), 8, 8);
        d
    }

    #[test]
    fn reads_mchar_labels_with_boxes_and_float_numbers() {
        let d = with_labels(
            "l.json",
            r#"{"a.png": {"label": [1, 9], "left": [1, 5.5], "top": [0, 0], "width": [3, 3], "height": [9, 9]},
                "b.png": {"label": [0.0]},
                "c.png": {"label": 7, "left": 1, "top": 2, "width": 3, "height": 4}}"#,
        );
        let (out, idx) = loaded(run_labelled(&d, "l.json", json!({})));
        assert!(idx.labelled);
        let files: Vec<_> = idx.items.iter().map(|i| i.file.as_str()).collect();
        assert_eq!(files, ["a.png", "b.png", "c.png"]);
        assert_eq!(idx.items[0].label, Some(vec![1, 9]));
        assert_eq!(
            idx.items[0].boxes,
            Some(vec![[1.0, 0.0, 3.0, 9.0], [5.5, 0.0, 3.0, 9.0]])
        );
        assert_eq!((idx.items[0].width, idx.items[0].height), (20, 10));
        assert_eq!(idx.items[1].label, Some(vec![0]));
        assert_eq!(idx.items[1].boxes, None);
        assert_eq!(idx.items[2].boxes, Some(vec![[1.0, 2.0, 3.0, 4.0]]));
        assert!(out.path().join("labels.json").is_file());
    }

    #[test]
    fn reads_csv_labels_quoted_crlf_trailing_blank() {
        let d = with_labels(
            "l.csv",
            "file_name,file_code\r\n\"a.png\",\"019\"\r\nb.png,5\r\nc.png, 42 \r\n\r\n",
        );
        let (_out, idx) = loaded(run_labelled(&d, "l.csv", json!({})));
        let codes: Vec<_> = idx.items.iter().map(|i| i.code()).collect();
        assert_eq!(codes, ["019", "5", "42"]);
    }

    #[test]
    fn explicit_format_overrides_extension() {
        let d = with_labels("l.txt", "file_name,file_code\na.png,1\nb.png,2\nc.png,3\n");
        let (_o, r) = run_labelled(&d, "l.txt", json!({"labels_format": "csv"}));
        r.unwrap();
        let (_o, r) = run_labelled(&d, "l.txt", json!({}));
        let l = d.path().join("l.txt");
        assert_eq!(
            err_text(r),
            format!(
                "{}: cannot tell the label format from the extension (expected `.json` or `.csv`); set `labels_format = \"mchar\"` or `\"csv\"`",
                l.display()
            )
        );
    }

    #[test]
    fn unlabelled_set_ignores_other_and_hidden_files() {
        let d = three_images();
        let imgs = d.path().join("imgs");
        fs::write(imgs.join("notes.txt"), "hi").unwrap();
        fs::write(imgs.join(".hidden.png"), "not an image").unwrap();
        fs::create_dir(imgs.join("sub.png")).unwrap();
        fs::create_dir(imgs.join("deeper")).unwrap();
        png_rgb(&imgs.join("deeper/z.png"), 4, 4);
        png_rgb(&imgs.join("D.PNG"), 5, 6);
        let (out, idx) = loaded(run_with(d.path(), json!({"images": "imgs"})));
        assert!(!idx.labelled);
        let files: Vec<_> = idx.items.iter().map(|i| i.file.as_str()).collect();
        assert_eq!(files, ["D.PNG", "a.png", "b.png", "c.png"]);
        assert!(idx.items.iter().all(|i| i.label.is_none()));
        assert!(!out.path().join("labels.json").exists());
    }

    #[test]
    fn decodes_rgba_grey_16bit_and_jpeg() {
        let d = tempfile::tempdir().unwrap();
        let imgs = d.path().join("imgs");
        fs::create_dir(&imgs).unwrap();
        ImageBuffer::from_fn(9, 7, |x, _| Rgba([x as u8, 0u8, 0u8, 128u8]))
            .save(imgs.join("rgba.png"))
            .unwrap();
        ImageBuffer::from_fn(11, 3, |x, _| Luma([x as u8]))
            .save(imgs.join("grey.png"))
            .unwrap();
        ImageBuffer::from_fn(5, 4, |x, _| Luma([x as u16 * 1000]))
            .save(imgs.join("grey16.png"))
            .unwrap();
        ImageBuffer::from_fn(16, 12, |x, y| Rgb([x as u8 * 10, y as u8 * 10, 50u8]))
            .save(imgs.join("photo.JPG"))
            .unwrap();
        ImageBuffer::from_fn(6, 8, |x, _| Luma([x as u8 * 30]))
            .save(imgs.join("grey.jpeg"))
            .unwrap();
        let (_out, idx) = loaded(run_with(d.path(), json!({"images": "imgs"})));
        let sizes: Vec<_> = idx
            .items
            .iter()
            .map(|i| (i.file.as_str(), i.width, i.height))
            .collect();
        assert_eq!(
            sizes,
            [
                ("grey.jpeg", 6, 8),
                ("grey.png", 11, 3),
                ("grey16.png", 5, 4),
                ("photo.JPG", 16, 12),
                ("rgba.png", 9, 7)
            ]
        );
    }

    #[test]
    fn images_are_hard_linked() {
        use std::os::unix::fs::MetadataExt;
        let d = three_images();
        let (out, r) = run_with(d.path(), json!({"images": "imgs"}));
        r.unwrap();
        let src = fs::metadata(d.path().join("imgs/a.png")).unwrap();
        let dst = fs::metadata(out.path().join("images/a.png")).unwrap();
        // Both temp dirs normally live on the same file system.
        if src.dev() == dst.dev() {
            assert_eq!(src.ino(), dst.ino());
            assert!(src.nlink() >= 2);
        }
        assert_eq!(
            fs::read(d.path().join("imgs/b.png")).unwrap(),
            fs::read(out.path().join("images/b.png")).unwrap()
        );
    }

    #[test]
    fn link_falls_back_to_copy() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("a");
        fs::write(&src, b"bytes").unwrap();
        // Linking fails when the target exists; copying still works.
        let dst = d.path().join("b");
        fs::write(&dst, b"old").unwrap();
        link_or_copy(&src, &dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"bytes");
        let err = link_or_copy(&src, &d.path().join("missing/c")).unwrap_err();
        assert!(err.to_string().contains("missing/c"), "{err}");
    }

    #[test]
    fn limit_keeps_first_images_by_name_after_matching() {
        let d = with_labels("l.csv", "file_name,file_code\nb.png,2\nc.png,3\n");
        let (out, idx) = loaded(run_labelled(
            &d,
            "l.csv",
            json!({"unlabelled": "skip", "limit": 1}),
        ));
        assert_eq!(idx.items.len(), 1);
        assert_eq!(idx.items[0].file, "b.png");
        assert!(!out.path().join("images/a.png").exists());
        assert!(!out.path().join("images/c.png").exists());

        let (_out, idx) = loaded(run_with(d.path(), json!({"images": "imgs", "limit": 2})));
        let files: Vec<_> = idx.items.iter().map(|i| i.file.as_str()).collect();
        assert_eq!(files, ["a.png", "b.png"]);
    }

    #[test]
    fn unlabelled_skip_drops_images_without_labels() {
        let d = with_labels("l.json", r#"{"c.png": {"label": [4, 2]}}"#);
        let (_out, idx) = loaded(run_labelled(&d, "l.json", json!({"unlabelled": "skip"})));
        assert_eq!(idx.items.len(), 1);
        assert_eq!(idx.items[0].code(), "42");
        assert!(idx.labelled);
    }

    #[test]
    fn skip_leaving_nothing_is_an_error() {
        let d = with_labels("l.csv", "file_name,file_code\n");
        let (_o, r) = run_labelled(&d, "l.csv", json!({"unlabelled": "skip"}));
        let l = d.path().join("l.csv");
        let want = format!("no image in this folder has a label in {}", l.display());
        assert_eq!(err_text(r), at(&d, "imgs", &want));
    }

    #[test]
    fn unmatched_images_and_labels_are_errors() {
        // (CSV rows, the file the error is about, its message with `{l}` for
        // the label file and `{imgs}` for the image folder)
        let cases = [
            (
                "a.png,1\nc.png,3\n",
                "imgs/b.png",
                "no label in {l} (set `unlabelled = \"skip\"` to leave such images out)",
            ),
            (
                "a.png,1\nb.png,2\nc.png,3\nzz.png,4\n",
                "l.csv",
                "label for `zz.png`, but there is no such image in {imgs}",
            ),
        ];
        for (rows, about, message) in cases {
            let d = with_labels("l.csv", &format!("file_name,file_code\n{rows}"));
            let (_o, r) = run_labelled(&d, "l.csv", json!({}));
            let want = message
                .replace("{l}", &d.path().join("l.csv").display().to_string())
                .replace("{imgs}", &d.path().join("imgs").display().to_string());
            assert_eq!(err_text(r), at(&d, about, &want));
        }
    }

    #[test]
    fn corrupt_and_truncated_images_are_errors() {
        let d = three_images();
        let imgs = d.path().join("imgs");
        let full = fs::read(imgs.join("b.png")).unwrap();
        fs::write(imgs.join("b.png"), &full[..full.len() / 2]).unwrap();
        fs::write(imgs.join("c.png"), b"this is not a png").unwrap();
        let (_o, r) = run_with(d.path(), json!({"images": "imgs"}));
        let e = err_text(r);
        assert!(e.starts_with("2 problems in the data set:\n"), "{e}");
        let lines: Vec<_> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(
            lines[1].starts_with(&format!(
                "  {}: cannot decode image: ",
                imgs.join("b.png").display()
            )),
            "{e}"
        );
        assert!(
            lines[2].starts_with(&format!(
                "  {}: cannot decode image: ",
                imgs.join("c.png").display()
            )),
            "{e}"
        );
    }

    #[test]
    fn malformed_mchar_entries_are_reported_together() {
        let d = with_labels(
            "l.json",
            r#"{"a.png": {"label": [1, 2], "left": [1, 2, 3], "top": [0, 0], "width": [1, 1], "height": [1, 1]},
                "b.png": {"label": [1, 12]},
                "c.png": {"label": []},
                "d.png": {"label": [1], "left": [0]},
                "e.png": {"label": ["x"]},
                "f.png": {"boxes": []},
                "g.png": [1]}"#,
        );
        let (_o, r) = run_labelled(&d, "l.json", json!({}));
        let l = d.path().join("l.json");
        let l = l.display();
        let imgs = d.path().join("imgs");
        let expected = [
            "11 problems in the data set:".to_string(),
            format!("  {l}: entry `a.png`: `label` has 2 entries but `left` has 3"),
            format!("  {l}: entry `b.png`: `label` entry 1 is 12, not a digit 0-9"),
            format!("  {l}: entry `c.png`: `label` is empty"),
            format!("  {l}: entry `d.png`: has box lists `left` but not `top`, `width`, `height`"),
            format!("  {l}: entry `e.png`: `label` entry 0 is \"x\", not a number"),
            format!("  {l}: entry `f.png`: no `label` list"),
            format!("  {l}: entry `g.png`: expected an object with a `label` list, found [1]"),
            format!(
                "  {l}: label for `d.png`, but there is no such image in {}",
                imgs.display()
            ),
            format!(
                "  {l}: label for `e.png`, but there is no such image in {}",
                imgs.display()
            ),
            format!(
                "  {l}: label for `f.png`, but there is no such image in {}",
                imgs.display()
            ),
            "  … and 1 more".to_string(),
        ];
        assert_eq!(err_text(r), expected.join("\n"));
    }

    #[test]
    fn json_syntax_error_has_line_and_column() {
        let d = with_labels("l.json", "{\n  \"a.png\": {\"label\": [1,]}\n}");
        let (_o, r) = run_labelled(&d, "l.json", json!({}));
        // Only the syntax error: no "no label" problem for every image.
        assert_eq!(
            err_text(r),
            at(
                &d,
                "l.json",
                "JSON syntax error at line 2, column 25: trailing comma"
            )
        );
        fs::write(d.path().join("l.json"), "[1, 2]").unwrap();
        let (_o, r) = run_labelled(&d, "l.json", json!({"unlabelled": "skip"}));
        assert_eq!(
            err_text(r),
            at(
                &d,
                "l.json",
                "expected a JSON object mapping image file names to label entries"
            )
        );
    }

    #[test]
    fn malformed_csv_lines_are_reported_with_line_numbers() {
        let d = with_labels(
            "l.csv",
            "file_name,file_code\na.png,1x2\nb.png,2,3\nc.png,\n\"d.png,4\nc.png,5\nc.png,6\n",
        );
        let (_o, r) = run_labelled(&d, "l.csv", json!({}));
        let l = d.path().join("l.csv");
        let l = l.display();
        // Images with a malformed entry get no second "no label" problem.
        let expected = [
            "6 problems in the data set:".to_string(),
            format!("  {l}: line 2: code `1x2` for `a.png` has a non-digit `x`"),
            format!("  {l}: line 3: expected 2 fields (file_name,file_code), found 3"),
            format!("  {l}: line 4: empty code for `c.png`"),
            format!("  {l}: line 5: a quoted field is not closed"),
            format!("  {l}: line 6: `c.png` appears again (first on line 4)"),
            format!("  {l}: line 7: `c.png` appears again (first on line 4)"),
        ];
        assert_eq!(err_text(r), expected.join("\n"));
    }

    #[test]
    fn csv_needs_the_header() {
        let d = with_labels("l.csv", "name,code\na.png,1\n");
        let (_o, r) = run_labelled(&d, "l.csv", json!({"unlabelled": "skip"}));
        assert_eq!(
            err_text(r),
            at(
                &d,
                "l.csv",
                "line 1: expected the header `file_name,file_code`, found `name,code`"
            )
        );
    }

    #[test]
    fn no_images_and_missing_folder_are_errors() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("empty")).unwrap();
        fs::write(d.path().join("empty/readme.txt"), "x").unwrap();
        let (_o, r) = run_with(d.path(), json!({"images": "empty"}));
        assert_eq!(
            err_text(r),
            at(&d, "empty", "no images (png, jpg, jpeg) in this folder")
        );
        let (_o, r) = run_with(d.path(), json!({"images": "nope"}));
        let e = err_text(r);
        assert!(e.starts_with(&at(&d, "nope", "")), "{e}");
    }

    #[test]
    fn many_problems_are_capped() {
        let d = tempfile::tempdir().unwrap();
        let imgs = d.path().join("imgs");
        fs::create_dir(&imgs).unwrap();
        for i in 0..13 {
            fs::write(imgs.join(format!("{i:02}.png")), b"junk").unwrap();
        }
        let (_o, r) = run_with(d.path(), json!({"images": "imgs"}));
        let e = err_text(r);
        assert!(e.starts_with("13 problems in the data set:\n"), "{e}");
        assert_eq!(e.lines().count(), 1 + MAX_REPORTED + 1);
        assert!(e.ends_with("\n  … and 3 more"), "{e}");
    }

    #[test]
    fn external_inputs_are_absolute() {
        let base = Path::new("/pipelines/x");
        let got =
            Dataset.external_inputs(&json!({"images": "imgs", "labels": "/abs/l.json"}), base);
        assert_eq!(
            got,
            vec![
                ("images".to_string(), PathBuf::from("/pipelines/x/imgs")),
                ("labels".to_string(), PathBuf::from("/abs/l.json")),
            ]
        );
        let got = Dataset.external_inputs(&json!({"images": "imgs"}), base);
        assert_eq!(got.len(), 1);
    }

    #[test]
    #[cfg_attr(
        not(any(full_suite, shared_data)),
        ignore = "needs ../shared/data/{real-samples, real-samples/labels.csv, real-samples/labels.json}"
    )]
    fn real_samples_decode_with_csv_labels() {
        let dir = crate::testutil::shared_data(&[
            "real-samples",
            "real-samples/labels.csv",
            "real-samples/labels.json",
        ])
        .join("real-samples");
        let dir = dir.as_path();
        let (_out, idx) = loaded(run_with(
            dir,
            json!({"images": ".", "labels": "labels.csv"}),
        ));
        assert!(idx.labelled);
        assert_eq!(idx.items.len(), 17);
        let it = idx
            .items
            .iter()
            .find(|i| i.file == "svhn-train-1.png")
            .unwrap();
        assert_eq!((it.width, it.height), (741, 350));
        assert_eq!(it.code(), "19");
        assert!(idx.items.iter().all(|i| !i.code().is_empty()));

        let (_out, idx) = loaded(run_with(
            dir,
            json!({"images": ".", "labels": "labels.json", "unlabelled": "skip"}),
        ));
        assert_eq!(idx.items.len(), 2);
        assert_eq!(idx.items[0].boxes.as_ref().unwrap().len(), 2);
    }

    #[test]
    #[cfg_attr(
        not(any(full_suite, shared_data)),
        ignore = "needs ../shared/data/{mnist-seq/val, mnist-seq/val.json}"
    )]
    fn mnist_seq_val_reads_with_mchar_json() {
        let dir = crate::testutil::shared_data(&["mnist-seq/val", "mnist-seq/val.json"])
            .join("mnist-seq");
        let dir = dir.as_path();
        let (_out, idx) = loaded(run_with(
            dir,
            json!({"images": "val", "labels": "val.json"}),
        ));
        assert_eq!(idx.items.len(), 1000);
        assert!(idx.items.iter().all(|i| {
            let n = i.label.as_ref().unwrap().len();
            (1..=6).contains(&n) && i.boxes.as_ref().unwrap().len() == n
        }));
    }
}
