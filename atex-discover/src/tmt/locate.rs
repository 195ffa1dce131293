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
    for (index, line) in text.lines().enumerate() {
        // A key may follow list dashes (`- key: v`) and indentation.
        let trimmed = line.trim_start_matches([' ', '-']);
        let column = line.len() - trimmed.len() + 1;
        let unquoted = strip_quotes(trimmed, key);
        let Some(rest) = unquoted else { continue };
        let rest = ["-~", "+", "-", "~", ""]
            .iter()
            .find_map(|suffix| {
                rest.strip_prefix(suffix)
                    .filter(|r| r.trim_start().starts_with(':'))
            })
            .map(str::trim_start);
        if let Some(rest) = rest {
            let after = &rest[1..];
            if after.is_empty() || after.starts_with([' ', '\t']) {
                return Some((index + 1, column));
            }
        }
    }
    None
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
