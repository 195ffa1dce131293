//! The one place that reads YAML: fmf files into [`Value`]s with YAML 1.2
//! typing as python fmf 1.7 (ruamel.yaml's safe loader) does it.
//!
//! Why not serde-saphyr (DESIGN.md names it): serde's data model hands a
//! deserializer only "a string" for a scalar, so it cannot tell a plain
//! `2021-01-02` (a date) from a quoted `"2021-01-02"` (a string), nor carry
//! `!!binary`, `!!set`, `!!omap` or an unknown tag (an error for fmf), nor keep
//! mappings with non-string keys such as `{1: a}` whose duplicates Python
//! detects with `1 == True == 1.0`. So this module drives `saphyr-parser`
//! (the event parser serde-saphyr was built on) directly and builds
//! [`Value`]s with its own resolver: ruamel's YAML 1.2 implicit-typing rules
//! written by hand (no regex), switched to ruamel's YAML 1.1 rules when the
//! document starts with a `%YAML 1.1` directive (the parser does not report
//! the directive, so the text is pre-scanned for it).
//!
//! Behaviour follows ruamel.yaml 0.19 `YAML(typ="safe")`, including its
//! corners: merge keys (`<<`) put merged keys first, a list of merged
//! mappings is applied last-to-first, and a mapping holding `<<` is not
//! checked for duplicate keys; `! 12` is an int; a plain `=` value is an
//! error. Deliberate deviations (docs/deviations.md): aliases are deep
//! copies, not shared objects; integers beyond `i64` load as strings; two
//! datetimes with different offsets but the same instant are different keys;
//! syntax-error texts come from saphyr-parser, so their wording (and
//! sometimes the column) differs from ruamel's, while duplicate-key and
//! type errors reproduce ruamel's text.

mod build;
mod pyrepr;
mod resolve;
mod scan;
mod tags;

use std::path::Path;

use saphyr_parser::{Marker, ScanError};

use self::build::load;
use crate::error::{Error, ErrorKind, Location, Result};
use crate::value::Value;

/// Parse one fmf file's text. `path` is used for error messages and
/// locations only. An empty document is [`Value::Null`].
///
/// Errors are [`ErrorKind::FileError`] with the message
/// `Failed to parse '<path>'.\n<detail>` and the 1-based line and column of
/// the problem (for a duplicate key, of the second key).
pub fn parse(text: &str, path: &Path) -> Result<Value> {
    // ruamel's reader drops a leading BOM; positions are counted after it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    load(text).map_err(|fail| fail.into_error(text, path))
}

/// A load error as ruamel's `MarkedYAMLError` shapes it: an optional
/// context with its position, the problem with its position, and a note.
#[derive(Debug, Clone)]
struct Fail {
    context: Option<(String, Marker)>,
    problem: String,
    mark: Marker,
    note: Option<&'static str>,
}

const DUPLICATE_KEY_NOTE: &str =
    "\nTo suppress this check see:\n    https://yaml.dev/doc/ruamel.yaml/api/#Duplicate_keys\n";

impl Fail {
    fn at(mark: Marker, problem: String) -> Fail {
        Fail {
            context: None,
            problem,
            mark,
            note: None,
        }
    }

    fn in_context(context: &str, context_mark: Marker, problem: String, mark: Marker) -> Fail {
        Fail {
            context: Some((context.into(), context_mark)),
            problem,
            mark,
            note: None,
        }
    }

    fn scan(error: ScanError) -> Fail {
        Fail::at(*error.marker(), error.info().to_owned())
    }

    fn into_error(self, text: &str, path: &Path) -> Error {
        let mark = within_text(text, self.mark);
        let mut lines = Vec::new();
        if let Some((context, context_mark)) = &self.context {
            let context_mark = within_text(text, *context_mark);
            lines.push(context.clone());
            if (context_mark.line(), context_mark.col()) != (mark.line(), mark.col()) {
                lines.push(describe_mark(text, context_mark));
            }
        }
        lines.push(self.problem.clone());
        lines.push(describe_mark(text, mark));
        if let Some(note) = self.note {
            lines.push(note.to_owned());
        }
        let message = format!(
            "Failed to parse '{}'.\n{}",
            path.display(),
            lines.join("\n")
        );
        Error::new(ErrorKind::FileError, message).at(Location {
            path: path.to_path_buf(),
            line: Some(mark.line().max(1)),
            column: Some(mark.col() + 1),
        })
    }
}

/// `mark`, or the end of the last line when `mark` is past it. saphyr-parser
/// puts the end of a text whose last line has no line break on the line
/// after it (`N+1:1`, a line the file does not have: an unterminated `[`,
/// quote or key at the end of a file was reported there); ruamel, and an
/// editor, put it right after the last character of line N.
fn within_text(text: &str, mark: Marker) -> Marker {
    if text.is_empty() || text.ends_with(['\n', '\r']) {
        return mark;
    }
    // Line breaks as YAML counts them: `\r\n`, `\n` or a lone `\r`.
    let mut lines = 1;
    let mut last_start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let lone_cr = c == '\r' && chars.peek().is_none_or(|&(_, next)| next != '\n');
        if c == '\n' || lone_cr {
            lines += 1;
            last_start = index + 1;
        }
    }
    if mark.line() <= lines {
        return mark;
    }
    let column = text
        .get(last_start..)
        .map_or(0, |last| last.chars().count());
    Marker::new(mark.index(), lines, column)
}

/// ruamel's `StringMark.__str__`: the position and a snippet of the line
/// with a caret under the column (long lines are cut around the column).
fn describe_mark(text: &str, mark: Marker) -> String {
    let line_text = text
        .split('\n')
        .nth(mark.line().saturating_sub(1))
        .unwrap_or("")
        .trim_end_matches('\r');
    let chars: Vec<char> = line_text.chars().collect();
    let pointer = mark.col().min(chars.len());
    let (mut start, mut head) = (pointer, "");
    while start > 0 {
        start -= 1;
        if 2 * (pointer - start) > 73 {
            head = " ... ";
            start += 5;
            break;
        }
    }
    let (mut end, mut tail) = (pointer, "");
    while end < chars.len() {
        end += 1;
        if 2 * (end - pointer) > 73 {
            tail = " ... ";
            end -= 5;
            break;
        }
    }
    let snippet: String = chars[start..end].iter().collect();
    format!(
        "  in \"<unicode string>\", line {}, column {}:\n    {head}{snippet}{tail}\n{}^ (line: {})",
        mark.line(),
        mark.col() + 1,
        " ".repeat(4 + pointer - start + head.len()),
        mark.line()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn load_ok(text: &str) -> Value {
        parse(text, Path::new("/t/main.fmf")).expect("parses")
    }

    /// The value of key `k` in a one-key document.
    pub(super) fn k(text: &str) -> Value {
        match load_ok(&format!("k: {text}")) {
            Value::Map(mut map) => map.shift_remove("k").expect("key k"),
            other => panic!("not a mapping: {other:?}"),
        }
    }

    pub(super) fn json(text: &str) -> String {
        load_ok(text).to_json().to_string()
    }

    /// The error for `text`: (line, column, message without the header).
    pub(super) fn fail(text: &str) -> (usize, usize, String) {
        let error = parse(text, Path::new("/t/main.fmf")).expect_err("fails");
        assert_eq!(error.kind(), ErrorKind::FileError);
        let location = error.location().expect("location");
        assert_eq!(location.path, Path::new("/t/main.fmf"));
        let detail = error
            .message()
            .strip_prefix("Failed to parse '/t/main.fmf'.\n")
            .expect("message header")
            .to_owned();
        (
            location.line.expect("line"),
            location.column.expect("column"),
            detail,
        )
    }

    pub(super) fn s(text: &str) -> Value {
        Value::Str(text.into())
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (line, column, _) = fail("missing\ncolon:\n");
        assert_eq!((line, column), (2, 6));
        let (line, column, _) = fail("list: [a, b\n");
        assert_eq!((line, column), (2, 1));
        assert_eq!(fail("a: *nowhere").0, 1);
    }

    #[test]
    fn the_end_of_an_unterminated_last_line_is_on_that_line() {
        // ruamel: the stream ends right after the last character.
        for (text, line, column) in [
            ("list: [a, b", 1, 12),
            ("x: 1\nkey: root\nli", 3, 3),
            ("x: 1\r\nm: {a: 1", 2, 9),
            ("x: 1\ry: [é", 2, 6),
            // with the line break, the end is the start of the next line
            ("x: 1\ny: [a\n", 3, 1),
        ] {
            let (got_line, got_column, detail) = fail(text);
            assert_eq!((got_line, got_column), (line, column), "{text:?}");
            assert!(
                detail.contains(&format!("line {line}, column {column}:")),
                "{text:?}: {detail}"
            );
        }
    }

    #[test]
    fn python_reprs() {
        assert_eq!(crate::pystr::float_repr(1.0), "1.0");
        assert_eq!(crate::pystr::float_repr(1e16), "1e+16");
        assert_eq!(crate::pystr::float_repr(1.5e-7), "1.5e-07");
        assert_eq!(crate::pystr::float_repr(0.0001), "0.0001");
        assert_eq!(crate::pystr::float_repr(123.456), "123.456");
        assert_eq!(crate::pystr::float_repr(-2.5), "-2.5");
        assert_eq!(crate::pystr::str_repr("it's"), "\"it's\"");
        assert_eq!(crate::pystr::str_repr("a\tb"), "'a\\tb'");
    }
}
