//! Where models train and predict: `[pipeline] device` and `run --device`.
//!
//! Never part of a key: a run on a GPU is the same experiment as one on the
//! CPU (its numbers differ in the last bits, not in meaning), so a model
//! trained on either is reused by both.

use std::fmt;

/// A device as the pipeline or the command line asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when this foldwise was built with it and a GPU is visible, else
    /// the CPU.
    #[default]
    Auto,
    Cpu,
    /// `cuda` (`None`: the first GPU) or `cuda:N`.
    Cuda(Option<u32>),
}

/// The values `device` takes, for messages.
pub const DEVICE_VALUES: &str = "\"auto\", \"cpu\", \"cuda\" or \"cuda:N\"";

impl DeviceChoice {
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Option<DeviceChoice> {
        match s {
            "auto" => Some(DeviceChoice::Auto),
            "cpu" => Some(DeviceChoice::Cpu),
            "cuda" => Some(DeviceChoice::Cuda(None)),
            _ => {
                let n = s.strip_prefix("cuda:")?;
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                n.parse().ok().map(|n| DeviceChoice::Cuda(Some(n)))
            }
        }
    }

    /// Whether it asks for a GPU by name (`cuda`, `cuda:N`): a Slurm job
    /// of a model node then asks for one.
    pub fn wants_gpu(self) -> bool {
        matches!(self, DeviceChoice::Cuda(_))
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(None) => f.write_str("cuda"),
            DeviceChoice::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for s in ["auto", "cpu", "cuda", "cuda:0", "cuda:3"] {
            assert_eq!(DeviceChoice::parse(s).unwrap().to_string(), s);
        }
        for s in [
            "gpu",
            "CUDA",
            "cuda:",
            "cuda:-1",
            "cuda:x",
            "cuda:+1",
            "",
            "cuda:99999999999",
        ] {
            assert_eq!(DeviceChoice::parse(s), None, "{s}");
        }
        assert!(DeviceChoice::parse("cuda:1").unwrap().wants_gpu());
        assert!(!DeviceChoice::Auto.wants_gpu());
    }
}
