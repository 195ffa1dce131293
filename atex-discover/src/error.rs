//! The error type of the fmf engine, with python fmf's error classes as kinds.

use std::fmt;
use std::path::PathBuf;

/// The class of an fmf error, named after python fmf's exception classes so
/// that error records (`{"error": "FormatError", ...}`) match the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be read or parsed (YAML errors, duplicate keys).
    FileError,
    /// The tree root (a directory holding `.fmf/`) was not found.
    RootError,
    /// Metadata has the wrong shape (directives, adjust rules, version).
    FormatError,
    /// A merge suffix (`+`, `-`, `~`, `-~`) cannot combine the two values.
    MergeError,
    /// Other fmf errors (bad config, bad arguments).
    GeneralError,
    /// A context rule (`when`) cannot be parsed.
    InvalidRule,
    /// A context rule cannot be decided and undecided rules must raise.
    CannotDecide,
    /// A filter expression is invalid for the data.
    FilterError,
}

impl ErrorKind {
    /// The python class name, as printed in error records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::FileError => "FileError",
            ErrorKind::RootError => "RootError",
            ErrorKind::FormatError => "FormatError",
            ErrorKind::MergeError => "MergeError",
            ErrorKind::GeneralError => "GeneralError",
            ErrorKind::InvalidRule => "InvalidRule",
            ErrorKind::CannotDecide => "CannotDecide",
            ErrorKind::FilterError => "FilterError",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in an input file an error was found. Lines and columns are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// 1-based column, if known.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// An fmf error: its class, a message, and where it happened when known.
///
/// `Display` renders `FILE:LINE:COL: message` when a location is known, so a
/// binary can print it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    location: Option<Location>,
}

impl Error {
    /// A new error of `kind` without a location.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            location: None,
        }
    }

    /// Attach (or replace) the file location.
    #[must_use]
    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    /// Attach a file location if none is set yet.
    #[must_use]
    pub fn in_file(mut self, path: impl Into<PathBuf>) -> Self {
        if self.location.is_none() {
            self.location = Some(Location {
                path: path.into(),
                line: None,
                column: None,
            });
        }
        self
    }

    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The location, if known.
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }
}

impl Error {
    /// The message on one line, for people: YAML errors carry python fmf's
    /// multi-line ruamel text (context excerpts with carets, a hint), of
    /// which only the unindented problem lines are kept, joined with `; `.
    pub fn summary(&self) -> String {
        if !self.message.contains('\n') {
            return self.message.clone();
        }
        let lines: Vec<&str> = self
            .message
            .lines()
            .filter(|line| {
                !line.trim().is_empty()
                    && !line.starts_with([' ', '\t'])
                    && !line.starts_with("To suppress")
                    && !line.starts_with("Failed to parse")
            })
            .collect();
        if lines.is_empty() {
            self.message.lines().next().unwrap_or_default().to_owned()
        } else {
            lines.join("; ")
        }
    }

    /// `FILE:LINE:COL: summary` (or the summary alone): the one-line form
    /// the binaries print on stderr.
    pub fn one_line(&self) -> String {
        match &self.location {
            Some(location) => format!("{location}: {}", self.summary()),
            None => self.summary(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

/// Result alias of the fmf engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_keeps_problem_lines_only() {
        let error = Error::new(
            ErrorKind::FileError,
            "Failed to parse 'x.fmf'.\nwhile constructing a mapping\n  in \"<unicode string>\", line 1\n    a: 1\n    ^\nfound duplicate key \"a\"\n\nTo suppress this check see:\n    https://example.invalid\n",
        )
        .at(Location { path: "x.fmf".into(), line: Some(2), column: Some(1) });
        assert_eq!(
            error.one_line(),
            "x.fmf:2:1: while constructing a mapping; found duplicate key \"a\""
        );
    }

    #[test]
    fn one_line_plain_message() {
        let error = Error::new(ErrorKind::FormatError, "bad").in_file("a.fmf");
        assert_eq!(error.one_line(), "a.fmf: bad");
    }
}
