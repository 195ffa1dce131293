//! Best-effort source locations for errors found in node data after parsing.
//!
//! Once a tree is loaded, values no longer know where they came from, so an
//! invalid `duration` or a `discover: 5` is located by searching the node's
//! source files for the key. This is a textual search: it finds the first
//! line of the last source file that has `KEY:` (or `KEY+:`, `KEY-:`,
//! `KEY~:`, `KEY-~:`, optionally quoted) as a block-mapping key. A key
//! written inside a flow mapping or set by an `adjust` rule defined in
//! another node may be missed or attributed to a different place; then the
//! error names the last source file without a line.

use std::path::{Path, PathBuf};

use crate::error::Location;

/// The location of `key` in the last of `sources` that defines it.
pub fn locate_key(sources: &[PathBuf], key: &str) -> Option<Location> {
    sources
        .iter()
        .rev()
        .find_map(|path| locate_in_file(path, key))
}

fn locate_in_file(path: &Path, key: &str) -> Option<Location> {
    let text = std::fs::read_to_string(path).ok()?;
    let (line, column) = find_key(&text, key)?;
    Some(Location {
        path: path.to_path_buf(),
        line: Some(line),
        column: Some(column),
    })
}

/// 1-based line and column of the first block-mapping key `key` in `text`.
pub(crate) fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    key_lines(text, key)
        .next()
        .map(|(line, column, _)| (line, column))
}

/// The location of the block-mapping key `key` whose value is written as
/// `value` (bare or quoted, on the key's line) in the last of `sources`
/// that has one: the place of one rule among several `when:` keys.
pub fn locate_value(sources: &[PathBuf], key: &str, value: &str) -> Option<Location> {
    sources.iter().rev().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        let (line, column, _) =
            key_lines(&text, key).find(|(_, _, rest)| unquote(rest) == value.trim())?;
        Some(Location {
            path: path.to_path_buf(),
            line: Some(line),
            column: Some(column),
        })
    })
}

/// The text of a scalar written on one line: without its quotes (escapes
/// are left as written) or without a trailing comment.
fn unquote(text: &str) -> &str {
    let text = text.trim();
    for quote in ['"', '\''] {
        if let Some(rest) = text.strip_prefix(quote) {
            return rest.find(quote).map_or(rest, |end| &rest[..end]);
        }
    }
    match text.find(" #") {
        Some(comment) => text[..comment].trim_end(),
        None => text,
    }
}

/// Every line of `text` where `key` is a block-mapping key: its 1-based
/// line and column, and the text after the colon.
fn key_lines<'t>(text: &'t str, key: &'t str) -> impl Iterator<Item = (usize, usize, &'t str)> {
    text.lines().enumerate().filter_map(move |(index, line)| {
        // A key may follow list dashes (`- key: v`) and indentation.
        let trimmed = line.trim_start_matches([' ', '-']);
        let column = line.len() - trimmed.len() + 1;
        let rest = strip_quotes(trimmed, key)?;
        let rest = ["-~", "+", "-", "~", ""]
            .iter()
            .find_map(|suffix| {
                rest.strip_prefix(suffix)
                    .filter(|r| r.trim_start().starts_with(':'))
            })
            .map(str::trim_start)?;
        let after = &rest[1..];
        (after.is_empty() || after.starts_with([' ', '\t'])).then_some((index + 1, column, after))
    })
}

/// `text` after the key `key`, bare or quoted; the closing quote is kept out.
fn strip_quotes<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    for quote in ["\"", "'"] {
        if let Some(rest) = text.strip_prefix(quote) {
            let rest = rest.strip_prefix(key)?;
            // The suffix operator may sit inside the quotes: `"key+": v`.
            return ["-~", "+", "-", "~", ""]
                .iter()
                .find_map(|s| rest.strip_prefix(s).and_then(|r| r.strip_prefix(quote)));
        }
    }
    text.strip_prefix(key)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    #[test]
    fn finds_block_keys() {
        let text = "summary: x\n/child:\n    duration: 5x\n";
        assert_eq!(find_key(text, "duration"), Some((3, 5)));
        assert_eq!(find_key(text, "summary"), Some((1, 1)));
        assert_eq!(find_key(text, "missing"), None);
    }

    #[test]
    fn finds_suffixed_quoted_and_listed_keys() {
        assert_eq!(
            find_key("a: 1\nduration+: '*2'\n", "duration"),
            Some((2, 1))
        );
        assert_eq!(find_key("\"duration\": 1\n", "duration"), Some((1, 1)));
        assert_eq!(find_key("adjust:\n  - when: a\n", "when"), Some((2, 5)));
        // A longer key with the same prefix is not the key.
        assert_eq!(find_key("durations: 1\n", "duration"), None);
        // A value is not a key.
        assert_eq!(find_key("x: duration: 1\n", "duration"), None);
        assert_eq!(find_key("url:http\n", "url"), None);
    }

    #[test]
    fn finds_a_key_by_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.fmf");
        std::fs::write(
            &path,
            "adjust:\n  - when: arch == x86_64\n    a: 1\n  - when: 'distro =='  # bad\n",
        )
        .unwrap();
        let sources = [path.clone()];
        let location = locate_value(&sources, "when", "distro ==").unwrap();
        assert_eq!((location.line, location.column), (Some(4), Some(5)));
        let location = locate_value(&sources, "when", "arch == x86_64").unwrap();
        assert_eq!(location.line, Some(2));
        assert!(locate_value(&sources, "when", "other").is_none());
    }

    #[test]
    fn last_source_wins() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("main.fmf");
        let b = dir.path().join("b.fmf");
        std::fs::write(&a, "duration: 1m\n").unwrap();
        std::fs::write(&b, "test: x\n\nduration: 1x\n").unwrap();
        let location = locate_key(&[a.clone(), b.clone()], "duration").unwrap();
        assert_eq!(
            (location.path, location.line, location.column),
            (b.clone(), Some(3), Some(1))
        );
        let location = locate_key(&[a.clone(), b], "summary");
        assert!(location.is_none());
    }
}
