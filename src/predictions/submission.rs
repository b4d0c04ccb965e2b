//! The contest submission CSV: `file_name,file_code`.
//!
//! Format written (exactly): the header line `file_name,file_code`, then one
//! row `name,code` per image, rows sorted by file name (byte order), every
//! line ended by `\n` (the last included). The code is the digits joined
//! ("019"); an empty code writes an empty field (`name,`). No quoting:
//! file names containing `,`, `"`, `\r` or `\n` are rejected, as are
//! duplicate names.
//!
//! The parser reads the same format and is a little lenient so it can read
//! hand-made label files too: an optional UTF-8 BOM, `\r\n` line endings, a
//! missing final newline and blank lines are accepted; anything else that
//! differs (header, field count, non-digit codes, duplicate names) is an
//! error naming the line. Rows come back in file order.

use std::collections::BTreeMap;
use std::path::Path;

use super::code_string;
use crate::kind::NodeError;

/// The header line.
pub const HEADER: &str = "file_name,file_code";

/// One submission row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub file_name: String,
    /// Digits 0-9 (blanks already dropped).
    pub code: Vec<u8>,
}

impl Row {
    pub fn new(file_name: impl Into<String>, code: Vec<u8>) -> Row {
        Row {
            file_name: file_name.into(),
            code,
        }
    }
}

/// The CSV text of `rows`, sorted by file name.
pub fn to_csv(rows: &[Row]) -> Result<String, NodeError> {
    let mut sorted: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for r in rows {
        if r.file_name.is_empty() || r.file_name.contains([',', '"', '\r', '\n']) {
            return Err(NodeError::new(
                "foldwise::submit::row",
                format!(
                    "submission: file name {:?} cannot be written unquoted",
                    r.file_name
                ),
            ));
        }
        if r.code.iter().any(|d| *d > 9) {
            return Err(NodeError::new(
                "foldwise::submit::row",
                format!("submission: code of `{}` has a non-digit", r.file_name),
            ));
        }
        if sorted.insert(&r.file_name, &r.code).is_some() {
            return Err(NodeError::new(
                "foldwise::submit::row",
                format!("submission: `{}` appears twice", r.file_name),
            ));
        }
    }
    let mut out = String::with_capacity(HEADER.len() + 1 + rows.len() * 16);
    out.push_str(HEADER);
    out.push('\n');
    for (name, code) in sorted {
        out.push_str(name);
        out.push(',');
        out.push_str(&code_string(code));
        out.push('\n');
    }
    Ok(out)
}

/// Writes the CSV of `rows` to `path`.
pub fn write(path: &Path, rows: &[Row]) -> Result<(), NodeError> {
    let text = to_csv(rows)?;
    std::fs::write(path, text).map_err(|e| NodeError::io(path, e))
}

/// Parses CSV text; errors say `line N: …`.
pub fn parse(text: &str) -> Result<Vec<Row>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !l.is_empty());
    match lines.next() {
        Some((_, HEADER)) => {}
        Some((i, l)) => return Err(format!("line {}: header {l:?}, expected {HEADER:?}", i + 1)),
        None => return Err(format!("empty file, expected the header {HEADER:?}")),
    }
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for (i, line) in lines {
        let at = i + 1;
        let mut fields = line.split(',');
        let (Some(name), Some(code), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("line {at}: expected 2 fields: {line:?}"));
        };
        if name.is_empty() {
            return Err(format!("line {at}: empty file name"));
        }
        if !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("line {at}: code {code:?} is not digits"));
        }
        if !seen.insert(name) {
            return Err(format!("line {at}: `{name}` appears twice"));
        }
        rows.push(Row::new(name, code.bytes().map(|b| b - b'0').collect()));
    }
    Ok(rows)
}

/// Reads and parses a CSV file; errors name the file.
pub fn read(path: &Path) -> Result<Vec<Row>, NodeError> {
    let bytes = std::fs::read(path).map_err(|e| NodeError::io(path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| NodeError::file(path, e.to_string()))?;
    parse(text).map_err(|m| NodeError::file(path, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row::new("000002.png", vec![0, 1, 9]),
            Row::new("000000.png", vec![1, 9]),
            Row::new("000001.png", vec![]),
            Row::new("000010.png", vec![7]),
        ]
    }

    #[test]
    fn exact_bytes_sorted() {
        let text = to_csv(&rows()).unwrap();
        assert_eq!(
            text,
            "file_name,file_code\n000000.png,19\n000001.png,\n000002.png,019\n000010.png,7\n"
        );
        assert_eq!(to_csv(&[]).unwrap(), "file_name,file_code\n");
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub.csv");
        write(&path, &rows()).unwrap();
        let mut want = rows();
        want.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        assert_eq!(read(&path).unwrap(), want);
        assert_eq!(
            to_csv(&read(&path).unwrap()).unwrap(),
            to_csv(&rows()).unwrap()
        );
    }

    #[test]
    fn writer_rejects_unwritable_rows() {
        assert!(to_csv(&[Row::new("a,b.png", vec![1])]).is_err());
        assert!(to_csv(&[Row::new("", vec![1])]).is_err());
        assert!(to_csv(&[Row::new("a.png", vec![10])]).is_err());
        let dup = [Row::new("a.png", vec![1]), Row::new("a.png", vec![2])];
        assert!(to_csv(&dup).is_err());
    }

    #[test]
    fn parser_leniency_and_errors() {
        let got = parse("\u{feff}file_name,file_code\r\na.png,12\r\n\r\nb.png,").unwrap();
        assert_eq!(
            got,
            [Row::new("a.png", vec![1, 2]), Row::new("b.png", vec![])]
        );
        assert!(parse("").is_err());
        assert!(parse("name,code\n").unwrap_err().starts_with("line 1"));
        assert!(parse("file_name,file_code\na.png\n")
            .unwrap_err()
            .starts_with("line 2"));
        assert!(parse("file_name,file_code\na.png,1,2\n").is_err());
        assert!(parse("file_name,file_code\na.png,1x\n").is_err());
        assert!(parse("file_name,file_code\n,1\n").is_err());
        assert!(parse("file_name,file_code\na.png,1\na.png,2\n")
            .unwrap_err()
            .starts_with("line 3"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, "nope\n").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("bad.csv"));
    }
}
