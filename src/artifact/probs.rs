//! Storing [`Probs`] in a file: a simple, deterministic binary format with a
//! JSON sidecar of the decoded codes for people and other tools.
//!
//! Binary layout (all little-endian):
//! - 8 bytes: magic `FWPROBS1`;
//! - u64: `n`; u64: `heads`;
//! - `n * heads * 11` f32 values, in [`Probs::data`] order.
//!
//! Sidecar `<file name>.codes.json` (see [`sidecar_path`]):
//! `{"n":N,"heads":H,"codes":["19","",…]}` (fields in that order), one decoded code
//! ([`super::decode::codes`]) per image, in order.
//!
//! Guarantees: equal probabilities give byte-identical files. Reading checks
//! the magic, the header, the exact size and then the [`Probs`] invariants;
//! a damaged file (wrong magic, truncated, size mismatch, invalid values)
//! gives an error naming the file. The sidecar is never read back.

use std::path::{Path, PathBuf};

use crate::kind::NodeError;
use crate::predictions::{code_string, decode, Probs, CLASSES};

/// The first 8 bytes of every probability file.
pub const MAGIC: &[u8; 8] = b"FWPROBS1";
const HEADER_LEN: usize = 8 + 8 + 8;

/// The sidecar of `path`: `.codes.json` appended to its file name.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".codes.json");
    PathBuf::from(name)
}

/// The file bytes of `p`.
pub fn to_bytes(p: &Probs) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + p.data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(p.n as u64).to_le_bytes());
    out.extend_from_slice(&(p.heads as u64).to_le_bytes());
    for x in &p.data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Parses file bytes; the message does not name the file ([`read`] adds it).
pub fn from_bytes(bytes: &[u8]) -> Result<Probs, String> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a probability file (wrong magic)".into());
    }
    if bytes.len() < HEADER_LEN {
        return Err(format!("truncated header: {} bytes", bytes.len()));
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let (n, heads) = (word(8), word(16));
    let values = n
        .checked_mul(heads)
        .and_then(|v| v.checked_mul(CLASSES as u64))
        .filter(|v| v.checked_mul(4).is_some_and(|b| b <= usize::MAX as u64));
    let Some(values) = values else {
        return Err(format!("header says {n} images × {heads} heads: too large"));
    };
    let want = HEADER_LEN as u64 + values * 4;
    if bytes.len() as u64 != want {
        return Err(format!(
            "size mismatch: {n} images × {heads} heads need {want} bytes, the file has {}",
            bytes.len()
        ));
    }
    let data = bytes[HEADER_LEN..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Probs::new(n as usize, heads as usize, data).map_err(|e| e.to_string())
}

/// Writes `p` to `path` and its sidecar beside it.
pub fn write(path: &Path, p: &Probs) -> Result<(), NodeError> {
    p.check_shape()?;
    std::fs::write(path, to_bytes(p)).map_err(|e| NodeError::io(path, e))?;
    let codes: Vec<String> = decode::codes(p).iter().map(|c| code_string(c)).collect();
    let side = sidecar_path(path);
    let text = serde_json::to_vec(&Sidecar {
        n: p.n,
        heads: p.heads,
        codes,
    })
    .expect("codes serialise");
    std::fs::write(&side, text).map_err(|e| NodeError::io(&side, e))
}

/// The sidecar's content, fields in this order.
#[derive(serde::Serialize)]
struct Sidecar {
    n: usize,
    heads: usize,
    codes: Vec<String>,
}

/// Reads a probability file; errors name the file.
pub fn read(path: &Path) -> Result<Probs, NodeError> {
    let bytes = std::fs::read(path).map_err(|e| NodeError::io(path, e))?;
    from_bytes(&bytes).map_err(|m| NodeError::file(path, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Probs {
        let mut data = Vec::new();
        for c in [1usize, 10, 2, 10, 10, 10] {
            let mut r = [0.01f32; CLASSES];
            r[c] = 1.0 - 0.01 * 10.0;
            data.extend_from_slice(&r);
        }
        Probs::new(2, 3, data).unwrap()
    }

    #[test]
    fn round_trip_and_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pred.bin");
        let p = sample();
        write(&path, &p).unwrap();
        assert_eq!(read(&path).unwrap(), p);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"FWPROBS1");
        assert_eq!(
            &bytes[8..24],
            &[2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(bytes.len(), 24 + 2 * 3 * 11 * 4);
        assert_eq!(bytes, to_bytes(&p));
        let side = std::fs::read_to_string(dir.path().join("pred.bin.codes.json")).unwrap();
        assert_eq!(side, r#"{"n":2,"heads":3,"codes":["12",""]}"#);
        // deterministic: writing again gives the same bytes
        write(&path, &p).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // empty set
        let e = Probs::new(0, 4, vec![]).unwrap();
        write(&path, &e).unwrap();
        assert_eq!(read(&path).unwrap(), e);
    }

    #[test]
    fn damaged_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = to_bytes(&sample());
        let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
        let mut magic = good.clone();
        magic[0] = b'X';
        cases.push(("magic.bin", magic, "wrong magic"));
        cases.push(("empty.bin", vec![], "wrong magic"));
        cases.push(("header.bin", good[..20].to_vec(), "truncated header"));
        cases.push((
            "short.bin",
            good[..good.len() - 4].to_vec(),
            "size mismatch",
        ));
        let mut long = good.clone();
        long.push(0);
        cases.push(("long.bin", long, "size mismatch"));
        let mut heads = good.clone();
        heads[16] = 4;
        cases.push(("heads.bin", heads, "size mismatch"));
        let mut huge = good.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        cases.push(("huge.bin", huge, "too large"));
        let mut nan = good.clone();
        nan[24..28].copy_from_slice(&f32::NAN.to_le_bytes());
        cases.push(("nan.bin", nan, "not a probability"));
        for (name, bytes, why) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let msg = read(&path).unwrap_err().to_string();
            assert!(msg.contains(name) && msg.contains(why), "{name}: {msg}");
        }
        let missing = dir.path().join("missing.bin");
        assert!(read(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing.bin"));
    }
}
