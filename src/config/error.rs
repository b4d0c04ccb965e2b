//! Config errors as miette diagnostics.
//!
//! Guarantee: every problem in a pipeline file is a [`Problem`] with a stable
//! [`Code`] (`pipeline::…`), at least one labelled span into the file (a
//! TOML syntax error included) and, where useful, a `help`; a
//! [`ConfigError::Invalid`] carries all of them at once. Codes are part of
//! the interface: they never change meaning once released.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};

/// The source text of a pipeline file, named as given.
pub type Source = NamedSource<Arc<str>>;

/// Why a pipeline could not be loaded.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read pipeline file `{}`", path.display())]
    #[diagnostic(code(pipeline::read))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has problems; all of them are listed.
    #[error("{}", invalid_message(file, problems.len()))]
    #[diagnostic(code(pipeline::invalid))]
    Invalid {
        /// The file name as given.
        file: String,
        #[source_code]
        src: Source,
        #[related]
        problems: Vec<Problem>,
    },
}

fn invalid_message(file: &str, n: usize) -> String {
    if n == 1 {
        format!("pipeline `{file}` has a problem")
    } else {
        format!("pipeline `{file}` has {n} problems")
    }
}

impl ConfigError {
    /// The problems found (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

/// The stable code of a [`Problem`]; rendered as `pipeline::<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// TOML syntax error (the parser's message and position).
    Syntax,
    /// A key that is not a table, parameter or option at that place.
    UnknownKey,
    /// `kind = "…"` names no known node kind.
    UnknownKind,
    /// A node without `kind`.
    MissingKind,
    /// A required parameter is absent.
    MissingParam,
    /// A value of the wrong TOML type.
    Type,
    /// A number outside its bounds.
    Range,
    /// A string that is not one of the allowed choices.
    Choice,
    /// A reference to a node that is not declared.
    MissingNode,
    /// A reference to a node of a kind the parameter does not accept.
    WrongKind,
    /// A reference string that is not `x`, `x[*]` or `x[i]`.
    BadRef,
    /// `x[*]` or `x[i]` on a node with a single instance.
    SingleInstance,
    /// `x[i]` with `i` past the instances or parts of `x`.
    PickRange,
    /// Nodes that refer to each other in a circle.
    Cycle,
    /// A node following fanned nodes with different fan counts.
    FanMismatch,
    /// Two instances with the same name after expansion.
    Duplicate,
    /// A node name with characters outside `[A-Za-z0-9_.-[]]`.
    InvalidName,
    /// A problem found by the kind's own `check`.
    Check,
    /// A file declaring no node.
    Empty,
    /// A path a node needs is missing or unreadable (`foldwise check`).
    Path,
    /// `[cache] remote` is not a URL foldwise can open.
    Remote,
    /// A node's `matrix` or a grid selection that cannot be expanded: an
    /// empty axis, a reference parameter as an axis, too many instances,
    /// a selection matching no grid point.
    Grid,
}

impl Code {
    /// Every code, for docs and tests.
    pub const ALL: &'static [Code] = &[
        Code::Syntax,
        Code::UnknownKey,
        Code::UnknownKind,
        Code::MissingKind,
        Code::MissingParam,
        Code::Type,
        Code::Range,
        Code::Choice,
        Code::MissingNode,
        Code::WrongKind,
        Code::BadRef,
        Code::SingleInstance,
        Code::PickRange,
        Code::Cycle,
        Code::FanMismatch,
        Code::Duplicate,
        Code::InvalidName,
        Code::Check,
        Code::Empty,
        Code::Path,
        Code::Remote,
        Code::Grid,
    ];

    /// The rendered code, e.g. `pipeline::unknown_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "pipeline::syntax",
            Code::UnknownKey => "pipeline::unknown_key",
            Code::UnknownKind => "pipeline::unknown_kind",
            Code::MissingKind => "pipeline::missing_kind",
            Code::MissingParam => "pipeline::missing_param",
            Code::Type => "pipeline::type",
            Code::Range => "pipeline::range",
            Code::Choice => "pipeline::choice",
            Code::MissingNode => "pipeline::missing_node",
            Code::WrongKind => "pipeline::wrong_kind",
            Code::BadRef => "pipeline::bad_ref",
            Code::SingleInstance => "pipeline::single_instance",
            Code::PickRange => "pipeline::pick_range",
            Code::Cycle => "pipeline::cycle",
            Code::FanMismatch => "pipeline::fan_mismatch",
            Code::Duplicate => "pipeline::duplicate",
            Code::InvalidName => "pipeline::invalid_name",
            Code::Check => "pipeline::check",
            Code::Empty => "pipeline::empty",
            Code::Path => "pipeline::path",
            Code::Remote => "pipeline::remote",
            Code::Grid => "pipeline::grid",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in a pipeline file. The first label is the primary one.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: Code,
    pub message: String,
    pub help: Option<String>,
    /// Byte ranges into the file with their label texts.
    pub labels: Vec<(Range<usize>, Option<String>)>,
    src: Source,
}

impl Problem {
    pub(crate) fn new(src: &Source, code: Code, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: message.into(),
            help: None,
            labels: Vec::new(),
            src: src.clone(),
        }
    }

    pub(crate) fn label(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        self.labels.push((span, Some(text.into())));
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().enumerate().map(
            |(i, (span, text))| {
                if i == 0 {
                    LabeledSpan::new_primary_with_span(text.clone(), span.clone())
                } else {
                    LabeledSpan::new_with_span(text.clone(), span.clone())
                }
            },
        )))
    }
}

/// Renders a diagnostic (a [`ConfigError`], say) as miette's graphical
/// report: unicode box drawing, colours when `color`, wrapped at `width`.
pub fn render_diagnostic(diag: &dyn Diagnostic, color: bool, width: usize) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .with_links(false);
    let mut out = String::new();
    if handler.render_report(&mut out, diag).is_err() {
        // Rendering into a String only fails if a Display impl fails; fall
        // back to the plain message rather than panicking.
        out = diag.to_string();
    }
    out
}
