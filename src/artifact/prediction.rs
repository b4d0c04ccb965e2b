//! The prediction artifact: the layout every prediction-producing kind
//! (`predict`, `ensemble`, `postprocess`) writes and every consumer
//! (`ensemble`, `evaluate`, `ladder`, `postprocess`, `submit`, the report)
//! reads.
//!
//! A prediction artifact folder holds:
//! - `probs.fwprobs` ([`PROBS_FILE`]): the probabilities, one row per
//!   predicted item ([`crate::artifact::probs`]);
//! - `items.json` ([`ITEMS_FILE`]): `[{"index": i, "file": "…png"}, …]`,
//!   the predicted data items in row order;
//! - `codes.json` ([`CODES_FILE`]): the decoded code of every item;
//! - `classes.json` ([`CLASSES_FILE`], optional): per item, per head class
//!   (a vote or a correction), preferred over decoding the probabilities;
//! - `length.fwprobs` ([`LENGTH_FILE`], optional): length probabilities,
//!   one 11-way "head" whose class k means "k digits";
//! - `members.json` ([`MEMBERS_FILE`]): a `predict`'s [`Member`]s (their
//!   files under `members/`, [`MEMBERS_DIR`]) or an `ensemble`'s
//!   [`EnsembleInput`]s.
//!
//! Guarantees: every file is written atomically
//! ([`crate::artifact::write_atomic`]); [`read_output`] checks that the
//! files agree with each other (rows, heads, classes) and every error names
//! the file concerned.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::artifact::dataset::{DataIndex, DataItem, INDEX_FILE};
use crate::artifact::{probs, read_json, write_atomic, write_json};
use crate::kind::NodeError;
use crate::predictions::{code_string, decode, Probs};

#[cfg(test)]
pub(crate) mod testutil;

/// The mean probabilities of a prediction artifact.
pub const PROBS_FILE: &str = "probs.fwprobs";
/// The predicted items, in row order.
pub const ITEMS_FILE: &str = "items.json";
/// The decoded codes, in row order.
pub const CODES_FILE: &str = "codes.json";
/// Per item, per head class (written by a voting ensemble; preferred over
/// decoding `probs.fwprobs` when present).
pub const CLASSES_FILE: &str = "classes.json";
/// The members and their validation accuracy.
pub const MEMBERS_FILE: &str = "members.json";
/// Folder of the member probability files.
pub const MEMBERS_DIR: &str = "members";
/// The mean length probabilities (one 11-way "head": class k = k digits),
/// present when every model has a length head.
pub const LENGTH_FILE: &str = "length.fwprobs";

/// One predicted item: its index in the data index and its file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub index: usize,
    pub file: String,
}

/// Out-of-fold predictions gathered from several prediction artifacts.
#[derive(Debug)]
pub struct Gathered {
    /// In the order of the artifacts, then of their items; an item
    /// predicted by several artifacts appears once, where it first did.
    pub items: Vec<Item>,
    pub probs: Probs,
    /// Length probabilities, when every artifact has them.
    pub length: Option<Probs>,
    /// Each item's class vector: the artifact's (`classes.json` or the
    /// argmax), or the argmax of the mean for an item predicted several
    /// times.
    pub classes: Vec<Vec<u8>>,
    /// For each item, the artifact (index into the given list) that
    /// first predicted it.
    pub source: Vec<usize>,
}

/// Gathers out-of-fold predictions: one artifact per fold, or per bag of a
/// bootstrap split, where an item left out of several bags is predicted by
/// each of them. Those predictions of one node's instances are averaged
/// (probabilities and length probabilities alike); an item predicted by
/// two different nodes is an error naming the second (`what` names the
/// parameter in it), as is a mismatch in heads.
pub fn gather_oof(arts: &[&crate::kind::InputArtifact], what: &str) -> Result<Gathered, NodeError> {
    let node = |a: &crate::kind::InputArtifact| crate::kind::node_of(&a.node).to_string();
    let mut items: Vec<Item> = Vec::new();
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut lengths: Option<Vec<Vec<f64>>> = Some(Vec::new());
    let mut classes: Vec<Vec<u8>> = Vec::new();
    let mut count: Vec<usize> = Vec::new();
    let mut source: Vec<usize> = Vec::new();
    let mut at: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut heads = None;
    for (k, a) in arts.iter().enumerate() {
        let o = read_output(&a.dir)?;
        if *heads.get_or_insert(o.probs.heads) != o.probs.heads {
            return Err(NodeError::new(
                "foldwise::predict::oof",
                format!(
                    "{what}: `{}` has {} heads, the other out-of-fold predictions {}",
                    a.node,
                    o.probs.heads,
                    heads.unwrap_or(0)
                ),
            ));
        }
        let width = o.probs.heads * crate::predictions::CLASSES;
        let own = o.final_classes();
        for (r, it) in o.items.iter().enumerate() {
            let row = &o.probs.data[r * width..(r + 1) * width];
            let len_row = o.length.as_ref().map(|l| l.get(r, 0).to_vec());
            match at.get(&it.index) {
                Some(&j) if node(arts[source[j]]) != node(a) => {
                    return Err(NodeError::file(
                        a.dir.join(ITEMS_FILE),
                        format!(
                            "{what}: item {} (`{}`) is predicted by `{}` and by `{}`; give one node's out-of-fold predictions (`[\"oof[*]\"]`)",
                            it.index, it.file, arts[source[j]].node, a.node
                        ),
                    ));
                }
                Some(&j) => {
                    for (s, x) in rows[j].iter_mut().zip(row) {
                        *s += *x as f64;
                    }
                    match (&mut lengths, len_row) {
                        (Some(l), Some(lr)) => {
                            for (s, x) in l[j].iter_mut().zip(lr) {
                                *s += x as f64;
                            }
                        }
                        _ => lengths = None,
                    }
                    count[j] += 1;
                }
                None => {
                    at.insert(it.index, items.len());
                    items.push(it.clone());
                    rows.push(row.iter().map(|&x| x as f64).collect());
                    match (&mut lengths, len_row) {
                        (Some(l), Some(lr)) => l.push(lr.iter().map(|&x| x as f64).collect()),
                        _ => lengths = None,
                    }
                    classes.push(own[r].clone());
                    count.push(1);
                    source.push(k);
                }
            }
        }
    }
    let heads = heads.unwrap_or(1);
    let mut data = Vec::with_capacity(rows.len() * heads * crate::predictions::CLASSES);
    for (row, &c) in rows.iter().zip(&count) {
        data.extend(row.iter().map(|&x| (x / c as f64) as f32));
    }
    let probs = Probs::new(items.len(), heads, data)?;
    for (i, &c) in count.iter().enumerate() {
        if c > 1 {
            classes[i] = decode::image_classes(&probs, i);
        }
    }
    let length = match lengths {
        Some(l) => {
            let data: Vec<f32> = l
                .iter()
                .zip(&count)
                .flat_map(|(r, &c)| r.iter().map(move |&x| (x / c as f64) as f32))
                .collect();
            Some(Probs::new(items.len(), 1, data)?)
        }
        None => None,
    };
    Ok(Gathered {
        items,
        probs,
        length,
        classes,
        source,
    })
}

/// The items of `index` at `indices`, in that order.
pub fn items_of(index: &DataIndex, indices: &[usize]) -> Vec<Item> {
    indices
        .iter()
        .map(|&i| Item {
            index: i,
            file: index.items[i].file.clone(),
        })
        .collect()
}

/// A prediction artifact read back.
#[derive(Debug, Clone)]
pub struct Output {
    pub items: Vec<Item>,
    pub probs: Probs,
    /// From `classes.json` when present.
    pub classes: Option<Vec<Vec<u8>>>,
    /// From [`LENGTH_FILE`] when present: one row per item, class k = k
    /// digits.
    pub length: Option<Probs>,
}

impl Output {
    /// The class vector of every item: `classes.json` when present, else the
    /// argmax of the probabilities.
    pub fn final_classes(&self) -> Vec<Vec<u8>> {
        self.classes
            .clone()
            .unwrap_or_else(|| decode::classes(&self.probs))
    }
}

/// Reads a prediction artifact (`predict`, `ensemble` or `postprocess`),
/// checking that its files agree with each other; errors name the files.
pub fn read_output(dir: &Path) -> Result<Output, NodeError> {
    let items_path = dir.join(ITEMS_FILE);
    let items: Vec<Item> = read_json(&items_path, "an item list")?;
    let probs_path = dir.join(PROBS_FILE);
    let probs = probs::read(&probs_path)?;
    if probs.n != items.len() {
        return Err(NodeError::file(
            &probs_path,
            format!(
                "{} rows, but {} lists {} items",
                probs.n,
                items_path.display(),
                items.len()
            ),
        ));
    }
    let classes = read_classes(dir, items.len(), probs.heads)?;
    let length = read_length(dir, items.len())?;
    Ok(Output {
        items,
        probs,
        classes,
        length,
    })
}

/// Reads [`CLASSES_FILE`] when present, checking it holds `items` × `heads`
/// classes 0-10.
fn read_classes(dir: &Path, items: usize, heads: usize) -> Result<Option<Vec<Vec<u8>>>, NodeError> {
    let path = dir.join(CLASSES_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let c: Vec<Vec<u8>> = read_json(&path, "a class list")?;
    if c.len() != items
        || c.iter()
            .any(|v| v.len() != heads || v.iter().any(|x| *x > 10))
    {
        return Err(NodeError::file(
            &path,
            format!("does not hold {items} items × {heads} heads of classes 0-10"),
        ));
    }
    Ok(Some(c))
}

/// Reads [`LENGTH_FILE`] of a prediction artifact when present, checking it
/// has one row per item and one head.
pub fn read_length(dir: &Path, items: usize) -> Result<Option<Probs>, NodeError> {
    let path = dir.join(LENGTH_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let l = probs::read(&path)?;
    if l.n != items || l.heads != 1 {
        return Err(NodeError::file(
            &path,
            format!(
                "holds {} rows × {} heads, want {items} rows × 1 length head",
                l.n, l.heads
            ),
        ));
    }
    Ok(Some(l))
}

/// Writes [`LENGTH_FILE`].
pub fn write_length(out: &Path, length: &Probs) -> Result<(), NodeError> {
    write_probs(&out.join(LENGTH_FILE), length)
}

/// Writes probabilities to `path` in the FWPROBS1 format, without a
/// sidecar (the artifact's `codes.json` is the one list of codes).
pub fn write_probs(path: &Path, p: &Probs) -> Result<(), NodeError> {
    write_atomic(path, &probs::to_bytes(p))
}

/// Writes the shared prediction layout: `probs.fwprobs`, `items.json`,
/// `codes.json` and, when given, `classes.json` (whose codes then win).
pub fn write_output(
    out: &Path,
    items: &[Item],
    probs: &Probs,
    classes: Option<&[Vec<u8>]>,
) -> Result<(), NodeError> {
    write_probs(&out.join(PROBS_FILE), probs)?;
    write_json(&out.join(ITEMS_FILE), &items)?;
    let codes: Vec<String> = match classes {
        Some(c) => c.iter().map(|v| code_string(&decode::code(v))).collect(),
        None => decode::codes(probs)
            .iter()
            .map(|c| code_string(c))
            .collect(),
    };
    write_json(&out.join(CODES_FILE), &codes)?;
    if let Some(c) = classes {
        write_json(&out.join(CLASSES_FILE), &c)?;
    }
    Ok(())
}

/// What round 0 of a member shows when it is not the centre crop, as
/// `members.json` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundView {
    /// The whole image resized to the input size (`tta.view = "resize"`).
    Resize,
    /// An augmented view: the prediction has no clean round
    /// (`tta.clean = false`).
    Augmented,
}

/// One member of a `predict` artifact as `members.json` lists it, in
/// member-file order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The member's probabilities, artifact-relative (`members/…`).
    pub file: String,
    /// The train instance (`cnn[1]`).
    pub model: String,
    /// `final` or `c<cycle>`.
    pub snapshot: String,
    pub cycle: Option<u64>,
    /// TTA round; 0 is the clean image unless `view` says otherwise.
    pub round: u64,
    /// Round 0's view when it is not the centre crop; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<RoundView>,
    /// The snapshot's validation accuracy, `null` when unknown.
    pub valid_seq_acc: Option<f64>,
    /// The member's length probabilities, when every model has a length
    /// head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_file: Option<String>,
}

/// One input of an `ensemble` artifact as its `members.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleInput {
    /// The input artifact's digest.
    pub input: String,
    /// The input's mean validation accuracy, `null` when unknown.
    pub valid_seq_acc: Option<f64>,
}

/// Members of any prediction artifact as `members.json` lists them (a
/// `predict`'s [`Member`]s or an `ensemble`'s [`EnsembleInput`]s): the
/// member file (when the artifact has one) and its validation accuracy.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberEntry {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub length_file: Option<String>,
    #[serde(default)]
    pub valid_seq_acc: Option<f64>,
}

/// Reads `members.json` of a prediction artifact, or `None` when absent.
pub fn read_members(dir: &Path) -> Result<Option<Vec<MemberEntry>>, NodeError> {
    let path = dir.join(MEMBERS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path, "a member list").map(Some)
}

/// The mean `valid_seq_acc` of a prediction artifact's members, when
/// `members.json` lists some and knows it for every one.
pub fn mean_valid_acc(dir: &Path) -> Result<Option<f64>, NodeError> {
    Ok(read_members(dir)?.and_then(|m| {
        let accs: Option<Vec<f64>> = m.iter().map(|e| e.valid_seq_acc).collect();
        accs.filter(|a| !a.is_empty())
            .map(|a| a.iter().sum::<f64>() / a.len() as f64)
    }))
}

/// Reads the [`Member`]s of the `predict` artifact `dir` (`node` names it
/// in errors); an artifact whose `members.json` is not a `predict`'s, or is
/// missing, is an error naming the file.
pub fn read_predict_members(dir: &Path, node: &str) -> Result<Vec<Member>, NodeError> {
    read_json(
        &dir.join(MEMBERS_FILE),
        &format!("the member list of a `predict` node (`{node}`)"),
    )
}

/// Reads a member's probability file `file` (artifact-relative) of the
/// prediction artifact `dir`, checking it has the `shape` (rows, heads) of
/// the artifact's own probabilities; otherwise the error names the file
/// and says `mismatch(rows, heads)` of what it holds.
pub fn read_member_probs(
    dir: &Path,
    file: &str,
    shape: (usize, usize),
    mismatch: impl FnOnce(usize, usize) -> String,
) -> Result<Probs, NodeError> {
    let path = dir.join(Path::new(file));
    let q = probs::read(&path)?;
    if (q.n, q.heads) != shape {
        return Err(NodeError::file(&path, mismatch(q.n, q.heads)));
    }
    Ok(q)
}

/// The labelled data items behind the predicted `items` of the prediction
/// artifact `pred_dir`, in the same order. Errors (naming the file): an
/// index outside the data, a file name that differs from the data's, an
/// item without a label.
pub fn labelled_items(
    pred_dir: &Path,
    items: &[Item],
    data_dir: &Path,
    data_node: &str,
) -> Result<Vec<DataItem>, NodeError> {
    let index = DataIndex::load(data_dir)?;
    let index_path = data_dir.join(INDEX_FILE);
    let items_path = pred_dir.join(ITEMS_FILE);
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let Some(d) = index.items.get(it.index) else {
            return Err(NodeError::file(
                &items_path,
                format!(
                    "item {} is outside data `{data_node}` ({} has {} items)",
                    it.index,
                    index_path.display(),
                    index.items.len()
                ),
            ));
        };
        if d.file != it.file {
            return Err(NodeError::file(
                &items_path,
                format!(
                    "item {} is `{}`, but in {} it is `{}`: the predictions were made on other data",
                    it.index,
                    it.file,
                    index_path.display(),
                    d.file
                ),
            ));
        }
        if d.label.is_none() {
            return Err(NodeError::file(
                &index_path,
                format!("data `{data_node}` is unlabelled (`{}` has no label), so predictions cannot be scored", d.file),
            ));
        }
        out.push(d.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::InputArtifact;
    use crate::predictions::CLASSES;

    /// A prediction of `items` (index, class with probability 0.6 at
    /// head 0) with two heads, written in `dir`.
    fn art(root: &Path, name: &str, rows: &[(usize, u8)]) -> InputArtifact {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut data = Vec::new();
        for &(_, c) in rows {
            for h in 0..2 {
                for k in 0..CLASSES {
                    let hit = if h == 0 { c } else { 10 };
                    data.push(if k == hit as usize { 0.6 } else { 0.04 });
                }
            }
        }
        let items: Vec<Item> = rows
            .iter()
            .map(|&(i, _)| Item {
                index: i,
                file: format!("{i}.png"),
            })
            .collect();
        write_output(
            &dir,
            &items,
            &Probs::new(rows.len(), 2, data).unwrap(),
            None,
        )
        .unwrap();
        InputArtifact {
            digest: name.into(),
            node: name.into(),
            dir,
            part: None,
        }
    }

    #[test]
    fn an_item_out_of_several_bags_gets_their_mean_and_one_in_two_nodes_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let b0 = art(d.path(), "oof[0]", &[(0, 1), (2, 3)]);
        let b1 = art(d.path(), "oof[1]", &[(2, 5), (4, 7)]);
        let g = gather_oof(&[&b0, &b1], "oof").unwrap();
        assert_eq!(
            g.items.iter().map(|i| i.index).collect::<Vec<_>>(),
            [0, 2, 4]
        );
        assert_eq!(g.source, [0, 0, 1]);
        // Item 2: the mean of class 3 at 0.6 and class 5 at 0.6.
        let row = g.probs.get(1, 0);
        assert!(
            (row[3] - 0.32).abs() < 1e-6 && (row[5] - 0.32).abs() < 1e-6,
            "{row:?}"
        );
        // Its classes follow the mean (a tie: the lower class), the others
        // their artifact's.
        assert_eq!(g.classes, [vec![1, 10], vec![3, 10], vec![7, 10]]);
        assert!(g.length.is_none());

        let other = art(d.path(), "other", &[(4, 1)]);
        let e = gather_oof(&[&b0, &b1, &other], "oof")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("other/items.json: oof: item 4 (`4.png`) is predicted by `oof[1]` and by `other`; give one node's out-of-fold predictions (`[\"oof[*]\"]`)"),
            "{e}"
        );
    }
}
