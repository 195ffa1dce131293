//! fmf filter expressions (`tag: A, B & tier: 1 | tag: -C`), evaluated as
//! python fmf 1.7's `fmf.utils.filter` does (spec A.11).
//!
//! Data values are compared through Python's `str()` ([`Value::py_str`]),
//! so `enabled: true` needs the filter `enabled: True`. Every clause is
//! evaluated, so an error anywhere fails the whole filter, as in python.

use std::collections::HashMap;

use crate::context::py_isspace;
use crate::pyre;
use crate::value::{Map, Value};

/// Options of [`filter`], as `fmf.utils.filter` takes them.
#[derive(Debug, Clone, Copy)]
pub struct FilterOptions<'a> {
    /// Compare case-sensitively (default in fmf).
    pub sensitive: bool,
    /// Values are Python regexes matched against whole items.
    pub regexp: bool,
    /// The node name, for name literals (no `:`).
    pub name: Option<&'a str>,
}

impl Default for FilterOptions<'_> {
    /// fmf's defaults: case-sensitive, no regexes, no node name.
    fn default() -> Self {
        FilterOptions {
            sensitive: true,
            regexp: false,
            name: None,
        }
    }
}

/// Why a filter could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// fmf's `FilterError` (unknown dimension, name literal without name).
    #[error("{0}")]
    Filter(String),
    /// A regex in the filter does not compile (python `re.error`).
    #[error("invalid regular expression: {0}")]
    Regex(String),
}

/// Evaluate `expr` against `data`.
pub fn filter(expr: &str, data: &Map, options: FilterOptions<'_>) -> Result<bool, FilterError> {
    if expr.is_empty() {
        return Ok(true);
    }
    let lowered;
    let expr = if options.sensitive {
        expr
    } else {
        lowered = expr.to_lowercase();
        lowered.as_str()
    };
    let mut evaluation = Evaluation {
        data,
        options,
        normalized: HashMap::new(),
    };
    let mut any = false;
    // Every clause is evaluated (python builds a list before `any`).
    for clause in split_unescaped(expr, '|') {
        let clause = clause.replace("\\|", "|");
        if evaluation.clause(&clause)? {
            any = true;
        }
    }
    Ok(any)
}

/// Evaluate `expr` against any value: python accepts only a dict, and an
/// empty expression is true before the data is even looked at.
pub fn filter_value(
    expr: &str,
    data: &Value,
    options: FilterOptions<'_>,
) -> Result<bool, FilterError> {
    if expr.is_empty() {
        return Ok(true);
    }
    match data {
        Value::Map(map) => filter(expr, map, options),
        other => Err(FilterError::Filter(format!(
            "Invalid data type '<class '{}'>'",
            other.py_type_name()
        ))),
    }
}

/// Compile every value regex of `expr` (as [`filter`] with `regexp` would,
/// `sensitive` as given), whatever the data: python compiles them only
/// when a data item reaches them, so a broken regex is silently "no match"
/// on tests without items. tmt selection checks its filters with this
/// first, so that such a filter is an error even then.
pub fn check_regexes(expr: &str, sensitive: bool) -> Result<(), FilterError> {
    let lowered;
    let expr = if sensitive {
        expr
    } else {
        lowered = expr.to_lowercase();
        lowered.as_str()
    };
    for clause in split_unescaped(expr, '|') {
        let clause = clause.replace("\\|", "|");
        for literal in split_unescaped(&clause, '&') {
            let literal = literal.replace("\\&", "&");
            // A name literal fails before its regex is used (no name).
            let Some((_, value)) = split_literal(&literal) else {
                continue;
            };
            for atom in split_py(value, |_, c| c == ',') {
                let atom = atom.strip_prefix('-').unwrap_or(atom);
                pyre::full_match(atom, "").map_err(|e| FilterError::Regex(e.message))?;
            }
        }
    }
    Ok(())
}

struct Evaluation<'d, 'o> {
    data: &'d Map,
    options: FilterOptions<'o>,
    /// Data values as lists of strings, computed on first use.
    normalized: HashMap<String, Option<Vec<String>>>,
}

impl Evaluation<'_, '_> {
    /// The `str()`-ed items of a dimension (lowercased when insensitive).
    fn values(&mut self, dimension: &str) -> Option<&[String]> {
        if !self.normalized.contains_key(dimension) {
            let value = if self.options.sensitive {
                self.data.get(dimension)
            } else {
                // Python lowercases the keys into a new dict: the last key
                // that lowercases to this dimension wins.
                self.data
                    .iter()
                    .rev()
                    .find(|(key, _)| key.to_lowercase() == dimension)
                    .map(|(_, value)| value)
            };
            let items = value.map(|value| {
                let items: Vec<String> = match value {
                    Value::Seq(items) => items.iter().map(Value::py_str).collect(),
                    other => vec![other.py_str()],
                };
                if self.options.sensitive {
                    items
                } else {
                    items.iter().map(|item| item.to_lowercase()).collect()
                }
            });
            self.normalized.insert(dimension.to_owned(), items);
        }
        self.normalized
            .get(dimension)
            .and_then(|items| items.as_deref())
    }

    fn clause(&mut self, clause: &str) -> Result<bool, FilterError> {
        // Dimension -> its literal values, in order of first appearance.
        let mut literals: Vec<(String, Vec<String>)> = Vec::new();
        for literal in split_unescaped(clause, '&') {
            let literal = literal.replace("\\&", "&");
            let Some((dimension, value)) = split_literal(&literal) else {
                if self.name_matches(&literal)? {
                    continue;
                }
                return Ok(false);
            };
            match literals.iter_mut().find(|(known, _)| known == dimension) {
                Some((_, values)) => values.push(value.to_owned()),
                None => literals.push((dimension.to_owned(), vec![value.to_owned()])),
            }
        }
        let mut all = true;
        for (dimension, values) in &literals {
            if self.values(dimension).is_none() {
                return Err(FilterError::Filter(format!("Invalid filter '{dimension}'")));
            }
            for value in values {
                if !self.value_matches(dimension, value)? {
                    all = false;
                }
            }
        }
        Ok(all)
    }

    fn name_matches(&self, pattern: &str) -> Result<bool, FilterError> {
        let Some(name) = self.options.name else {
            return Err(FilterError::Filter(format!(
                "Filter by name '{pattern}' requested but node name not provided to 'filter()'."
            )));
        };
        if self.options.regexp {
            let regex = pyre::compile(pattern).map_err(|e| FilterError::Regex(e.message))?;
            Ok(regex.search(name))
        } else {
            Ok(pattern == name)
        }
    }

    /// One literal value: comma-separated atoms, any of which may match.
    fn value_matches(&mut self, dimension: &str, value: &str) -> Result<bool, FilterError> {
        let regexp = self.options.regexp;
        let items = self.values(dimension).unwrap_or_default();
        for atom in split_py(value, |_, c| c == ',') {
            if let Some(negated) = atom.strip_prefix('-') {
                let mut found = false;
                for item in items {
                    if item_matches(negated, item, regexp)? {
                        found = true;
                        break;
                    }
                }
                if !found {
                    return Ok(true);
                }
            } else {
                for item in items {
                    if item_matches(atom, item, regexp)? {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

fn item_matches(atom: &str, item: &str, regexp: bool) -> Result<bool, FilterError> {
    if regexp {
        pyre::full_match(atom, item).map_err(|e| FilterError::Regex(e.message))
    } else {
        Ok(atom == item)
    }
}

/// `re.match(r"^([^:]*)\s*:\s*(.*)$", literal)`: the dimension is
/// everything before the first `:` (trailing spaces included); the value
/// cannot span lines.
fn split_literal(literal: &str) -> Option<(&str, &str)> {
    let (dimension, rest) = literal.split_once(':')?;
    let rest = rest.trim_start_matches(py_isspace);
    let (value, remainder) = rest.split_at(rest.find('\n').unwrap_or(rest.len()));
    (remainder.is_empty() || remainder == "\n").then_some((dimension, value))
}

/// `re.split(r"\s*(?<!\\)SEP\s*", text)`: split on separators that do not
/// follow a backslash, dropping the whitespace around them.
fn split_unescaped(text: &str, separator: char) -> Vec<&str> {
    split_py(text, |previous, c| c == separator && previous != Some('\\'))
}

/// `re.split(r"\s*SEP\s*", text)` for a one-character separator decided by
/// `is_separator(previous char, char)`.
fn split_py(text: &str, is_separator: impl Fn(Option<char>, char) -> bool) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut previous = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if is_separator(previous, c) {
            // The whitespace before the separator, not reaching back past
            // the end of the previous separator.
            let before = text[piece_start..at].trim_end_matches(py_isspace);
            pieces.push(before);
            let mut end = at + c.len_utf8();
            let mut last = c;
            while let Some(&(next_at, next)) = chars.peek() {
                if !py_isspace(next) {
                    break;
                }
                end = next_at + next.len_utf8();
                last = next;
                chars.next();
            }
            piece_start = end;
            previous = Some(last);
        } else {
            previous = Some(c);
        }
    }
    pieces.push(&text[piece_start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Map {
        let json = serde_json::json!({
            "tag": ["Tier1", "TIPpass", "mod:S"],
            "category": "Sanity",
            "enabled": true,
            "list": [1, true, null, 2.0],
            "dict": {"a": 1},
            "text": "multi\nline",
        });
        match Value::from_json(&json) {
            Value::Map(map) => *map,
            _ => Map::default(),
        }
    }

    fn run(expr: &str) -> Result<bool, FilterError> {
        filter(expr, &data(), FilterOptions::default())
    }

    fn run_re(expr: &str) -> Result<bool, FilterError> {
        filter(
            expr,
            &data(),
            FilterOptions {
                regexp: true,
                ..FilterOptions::default()
            },
        )
    }

    #[test]
    fn regexes_checked_without_data() {
        assert_eq!(check_regexes("tag: a.*, -b & tier: 1 | x: y", true), Ok(()));
        assert!(matches!(
            check_regexes("tag: fast | tier: (", true),
            Err(FilterError::Regex(_))
        ));
        assert!(matches!(
            check_regexes("tag: -[", true),
            Err(FilterError::Regex(_))
        ));
        // Name literals and escaped separators are not value regexes.
        assert_eq!(check_regexes("/tests/(", true), Ok(()));
        assert_eq!(check_regexes("tag: a\\|b", true), Ok(()));
    }

    #[test]
    fn spec_examples() {
        assert_eq!(run("tag: Tier1"), Ok(true));
        assert_eq!(run("tag: -Tier1"), Ok(false));
        assert_eq!(run("tag: Tier2, TIPpass"), Ok(true));
        assert_eq!(run("tag: Tier1 & category: Sanity"), Ok(true));
        assert_eq!(run("tag: Tier2 | category: Sanity"), Ok(true));
        assert_eq!(run("tag: A, B & category: 1 | tag: -C"), Ok(true));
        assert_eq!(run("tag: mod:S"), Ok(true));
        assert_eq!(run(""), Ok(true));
    }

    #[test]
    fn python_str_normalization() {
        assert_eq!(run("enabled: True"), Ok(true));
        assert_eq!(run("enabled: true"), Ok(false));
        assert_eq!(run("list: None"), Ok(true));
        assert_eq!(run("list: 2.0"), Ok(true));
        assert_eq!(run("list: 2"), Ok(false));
        assert_eq!(run("dict: {'a': 1}"), Ok(true));
        // A value cannot span lines: this is a name literal.
        assert!(matches!(
            run("text: multi\nline"),
            Err(FilterError::Filter(_))
        ));
    }

    #[test]
    fn whitespace_rules() {
        assert!(matches!(run(" tag: Tier1"), Err(FilterError::Filter(_))));
        assert!(matches!(run("tag : Tier1"), Err(FilterError::Filter(_))));
        assert_eq!(run("tag: Tier1 "), Ok(false));
        assert_eq!(run("tag:  Tier1"), Ok(true));
        assert_eq!(run("tag:Tier1"), Ok(true));
    }

    #[test]
    fn errors_are_eager() {
        assert!(matches!(
            run("tag: Tier1 | missing: x"),
            Err(FilterError::Filter(_))
        ));
        assert!(matches!(
            run("/b | tag: Tier1"),
            Err(FilterError::Filter(_))
        ));
        let named = FilterOptions {
            name: Some("/tests/one"),
            ..FilterOptions::default()
        };
        assert_eq!(filter("/tests/one & tag: Tier1", &data(), named), Ok(true));
        assert_eq!(filter("/tests/two & missing: x", &data(), named), Ok(false));
        assert!(matches!(run_re("tag: ["), Err(FilterError::Regex(_))));
    }

    #[test]
    fn regexes_and_escapes() {
        assert_eq!(run_re("tag: Tier.*"), Ok(true));
        assert_eq!(run_re("tag: -Tier.*"), Ok(false));
        assert_eq!(run_re(r"tag: Tier(1\|2)"), Ok(true));
        assert!(matches!(
            run_re("category: (Sanity|Security)"),
            Err(FilterError::Regex(_))
        ));
        assert_eq!(run_re("tag: Tier"), Ok(false));
        assert_eq!(run_re("text: multi.*"), Ok(false));
        assert_eq!(run_re("text: multi\\nline"), Ok(true));
    }

    #[test]
    fn insensitive() {
        let options = FilterOptions {
            sensitive: false,
            ..FilterOptions::default()
        };
        assert_eq!(filter("TAG: tier1", &data(), options), Ok(true));
        assert_eq!(filter("tag: TIPPASS", &data(), options), Ok(true));
    }

    #[test]
    fn splitting() {
        assert_eq!(split_unescaped("a | b|c", '|'), vec!["a", "b", "c"]);
        assert_eq!(split_unescaped(r"a\|b", '|'), vec![r"a\|b"]);
        assert_eq!(split_unescaped(r"a\ | b", '|'), vec![r"a\", "b"]);
        assert_eq!(split_unescaped("a | | b", '|'), vec!["a", "", "b"]);
        assert_eq!(split_literal("tag :x"), Some(("tag ", "x")));
        assert_eq!(split_literal("tag: x\n"), Some(("tag", "x")));
        assert_eq!(split_literal("tag:\n x\ny"), None);
    }

    proptest::proptest! {
        /// Any expression, with any options, gives an answer or an error,
        /// never a panic (filters come from users' command lines).
        #[test]
        fn arbitrary_expressions_never_panic(
            expr in "[a-zA-Z0-9:,|&\\\\ .*+?()\\[\\]{}^$-]{0,40}",
            regexp: bool,
            sensitive: bool,
        ) {
            let data = data();
            let options = FilterOptions { sensitive, regexp, name: Some("/a/b") };
            let _ = filter(&expr, &data, options);
        }
    }
}
