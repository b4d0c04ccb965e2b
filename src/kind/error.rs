//! [`NodeError`]: why a node failed, as a diagnostic — a stable code, a
//! message that names the file where there is one, and help where there is
//! some — the way pipeline-file errors already are.
//!
//! Guarantee: the text (`Display`) is the message alone, prefixed by the
//! file it is about; the code and help travel beside it (through
//! [`miette::Diagnostic`]) to the run report, the history and the terminal.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a node failed. Errors about a file name the file.
#[derive(Debug)]
pub struct NodeError {
    code: &'static str,
    message: String,
    path: Option<PathBuf>,
    help: Option<String>,
    source: Option<std::io::Error>,
}

/// Codes shared by every kind; a kind's own codes are
/// `foldwise::<kind>::<what>`, declared where they are raised.
pub mod codes {
    /// A file could not be read or written.
    pub const IO: &str = "foldwise::node::io";
    /// A file exists but its content is not what the node expects.
    pub const BAD_FILE: &str = "foldwise::node::bad_file";
    /// An input is missing or is not the one the node expects.
    pub const INPUT: &str = "foldwise::node::input";
    /// A node's code panicked (a bug in foldwise: please report it).
    pub const PANIC: &str = "foldwise::node::panic";
    /// A failure of the tensor engine.
    pub const MODEL: &str = "foldwise::node::model";
}

impl NodeError {
    /// A failure with its code (`foldwise::<kind>::<what>`).
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        NodeError {
            code,
            message: message.into(),
            path: None,
            help: None,
            source: None,
        }
    }

    /// A file whose content is wrong ([`codes::BAD_FILE`]).
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        NodeError {
            path: Some(path.into()),
            ..NodeError::new(codes::BAD_FILE, message)
        }
    }

    /// A file that could not be read or written ([`codes::IO`]).
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NodeError {
            path: Some(path.into()),
            message: source.to_string(),
            source: Some(source),
            ..NodeError::new(codes::IO, "")
        }
    }

    /// The same failure with another code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// The same failure with help: what the user can do about it.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The same failure, about `path`.
    pub fn at(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl miette::Diagnostic for NodeError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_the_file_and_code_and_help_travel_beside_it() {
        let e = NodeError::file("/d/labels.json", "not a JSON array")
            .with_code("foldwise::dataset::labels")
            .with_help("write the labels as [[1, 2], [3]]");
        assert_eq!(e.to_string(), "/d/labels.json: not a JSON array");
        let d: &dyn miette::Diagnostic = &e;
        assert_eq!(d.code().unwrap().to_string(), "foldwise::dataset::labels");
        assert_eq!(
            d.help().unwrap().to_string(),
            "write the labels as [[1, 2], [3]]"
        );
        let io = NodeError::io(
            "/x",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(io.to_string(), "/x: gone");
        assert_eq!(io.code(), codes::IO);
        assert!(std::error::Error::source(&io).is_some());
    }
}
