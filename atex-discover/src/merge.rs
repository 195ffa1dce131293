//! Inheritance merge: `merge_special` with every suffix (`+ +< - -~ ~`),
//! as python fmf 1.7 `Tree._merge_special` does it (spec A.7).
//!
//! Deviation: python shares objects between the parent, the child and adjust
//! rules (YAML aliases stay aliased, a rule dict can be mutated by a later
//! rule). Here every value is owned, so merges never leak into other keys.

use crate::error::{Error, ErrorKind, Result};
use crate::pyre;
use crate::value::{Map, MapHasher, Value};

/// The operation a key suffix asks for, tested in python's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suffix {
    /// `key+`: append (or merge dicts).
    Plus,
    /// `key+<`: prepend.
    Prepend,
    /// `key-~`: drop items matching regexes.
    MinusRegexp,
    /// `key-`: subtract / remove.
    Minus,
    /// `key~`: regex substitution.
    Regexp,
    /// A plain key: set.
    Set,
}

/// Split a raw key into its target name and operation. The name is python's
/// `key.rstrip(chars)`, so `c++` targets `c` (every trailing char of the set
/// goes, not just the suffix).
pub(crate) fn split_suffix(key: &str) -> (&str, Suffix) {
    let strip = |chars: &[char]| key.trim_end_matches(chars);
    if key.ends_with('+') {
        (strip(&['+']), Suffix::Plus)
    } else if key.ends_with("+<") {
        (strip(&['+', '<']), Suffix::Prepend)
    } else if key.ends_with("-~") {
        (strip(&['-', '~']), Suffix::MinusRegexp)
    } else if key.ends_with('-') {
        (strip(&['-']), Suffix::Minus)
    } else if key.ends_with('~') {
        (strip(&['~']), Suffix::Regexp)
    } else {
        (key, Suffix::Set)
    }
}

/// Merge `source` into `data`, honouring the suffixes of `source`'s keys in
/// their order. `node` is the node name quoted in error messages.
pub(crate) fn merge_special(data: &mut Map, source: Map, node: &str) -> Result<()> {
    merge_special_pairs(data, source, node)
}

/// [`merge_special`] from key/value pairs in order (no mapping needs to be
/// built for them).
pub(crate) fn merge_special_pairs(
    data: &mut Map,
    source: impl IntoIterator<Item = (String, Value)>,
    node: &str,
) -> Result<()> {
    for (key, value) in source {
        let (name, suffix) = split_suffix(&key);
        match suffix {
            Suffix::Set => {
                data.insert(key, value);
            }
            Suffix::Plus => merge_plus(data, name, value, false, node)?,
            Suffix::Prepend => merge_plus(data, name, value, true, node)?,
            Suffix::MinusRegexp => merge_minus_regexp(data, name, &value, node)?,
            Suffix::Minus => merge_minus(data, name, &value, node)?,
            Suffix::Regexp => merge_regexp(data, name, &value, node)?,
        }
    }
    Ok(())
}

/// `merge_special` where the source may be any mapping value: a mapping
/// with non-string keys is a python crash (`key.endswith` on an int), which
/// we report as a format error.
pub(crate) fn merge_special_value(data: &mut Map, source: Value, node: &str) -> Result<()> {
    match source {
        Value::Map(map) => merge_special(data, *map, node),
        other => Err(non_string_keys(&other, node)),
    }
}

fn non_string_keys(value: &Value, node: &str) -> Error {
    Error::new(
        ErrorKind::FormatError,
        format!(
            "Invalid data in {node}: keys to merge must be strings, got {}.",
            value.py_repr()
        ),
    )
}

fn merge_error(key: &str, node: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::MergeError,
        format!("MergeError: Key '{key}' in {node} ({why})."),
    )
}

fn item_error(item: &Value, node: &str) -> Error {
    Error::new(
        ErrorKind::MergeError,
        format!(
            "MergeError: Item '{}' in {node} must be a dictionary.",
            item.py_str()
        ),
    )
}

fn regex_error(pattern: &str, error: &impl std::fmt::Display) -> Error {
    // python raises re.error here, which is no fmf error class at all
    Error::new(
        ErrorKind::GeneralError,
        format!("Invalid regular expression '{pattern}': {error}"),
    )
}

fn is_dict(value: &Value) -> bool {
    matches!(value, Value::Map(_) | Value::KeyedMap(_))
}

fn merge_plus(data: &mut Map, key: &str, value: Value, prepend: bool, node: &str) -> Result<()> {
    let Some(parent) = data.get_mut(key) else {
        data.insert(key.to_owned(), value);
        return Ok(());
    };
    match (parent, value) {
        (Value::Seq(items), Value::Map(child)) => {
            for item in items.iter_mut() {
                match item {
                    Value::Map(map) => merge_special(map, Map::clone(&child), node)?,
                    other => {
                        if is_dict(other) {
                            return Err(non_string_keys(other, node));
                        }
                        return Err(item_error(other, node));
                    }
                }
            }
            Ok(())
        }
        (parent @ Value::Map(_), Value::Seq(items)) => {
            let Value::Map(base) = &*parent else {
                return Ok(());
            };
            let mut result = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Map(map) => {
                        let mut merged = base.clone();
                        merge_special(&mut merged, *map, node)?;
                        result.push(Value::Map(merged));
                    }
                    other => return Err(item_error(&other, node)),
                }
            }
            *parent = Value::Seq(result);
            Ok(())
        }
        (Value::Map(map), child @ (Value::Map(_) | Value::KeyedMap(_))) => {
            merge_special_value(map, child, node)
        }
        (parent, child) => {
            let result = if prepend {
                py_add(&child, parent)
            } else {
                py_add(parent, &child)
            };
            match result {
                Ok(sum) => {
                    *parent = sum;
                    Ok(())
                }
                Err(why) => Err(merge_error(key, node, &why)),
            }
        }
    }
}

/// Python's name of a value's type inside operator error messages.
fn op_type_name(value: &Value) -> &'static str {
    match value {
        Value::Date(_) => "datetime.date",
        Value::DateTime(_) => "datetime.datetime",
        other => other.py_type_name(),
    }
}

/// Python `a + b` on YAML values, or the text of python's `TypeError`.
fn py_add(a: &Value, b: &Value) -> Result<Value, String> {
    use Value::{Binary, Bool, Float, Int, Seq, Str};
    match (a, b) {
        (Bool(_) | Int(_), Bool(_) | Int(_)) => {
            let (x, y) = (int_of(a), int_of(b));
            x.checked_add(y)
                .map(Int)
                .ok_or_else(|| "integer overflow".to_owned())
        }
        (Bool(_) | Int(_) | Float(_), Bool(_) | Int(_) | Float(_)) => Ok(Float(
            a.as_number().unwrap_or(0.0) + b.as_number().unwrap_or(0.0),
        )),
        (Str(x), Str(y)) => Ok(Str(format!("{x}{y}"))),
        (Seq(x), Seq(y)) => Ok(Seq(x.iter().chain(y).cloned().collect())),
        (Binary(x), Binary(y)) => Ok(Binary(x.iter().chain(y).copied().collect())),
        (Seq(_), other) => Err(format!(
            "can only concatenate list (not \"{}\") to list",
            op_type_name(other)
        )),
        (Str(_), other) => Err(format!(
            "can only concatenate str (not \"{}\") to str",
            op_type_name(other)
        )),
        (Binary(_), other) => Err(format!("can't concat {} to bytes", op_type_name(other))),
        (x, y) => Err(format!(
            "unsupported operand type(s) for +: '{}' and '{}'",
            op_type_name(x),
            op_type_name(y)
        )),
    }
}

fn int_of(value: &Value) -> i64 {
    match value {
        Value::Bool(b) => i64::from(*b),
        Value::Int(i) => *i,
        _ => 0,
    }
}

fn merge_minus(data: &mut Map, key: &str, value: &Value, node: &str) -> Result<()> {
    use Value::{Bool, Float, Int, KeyedMap, Map as VMap, Seq, Str};
    let Some(parent) = data.get_mut(key) else {
        return Ok(());
    };
    match (&mut *parent, value) {
        (Bool(_) | Int(_), Bool(_) | Int(_)) => {
            let difference = int_of(parent).checked_sub(int_of(value));
            *parent = Int(difference.ok_or_else(|| merge_error(key, node, "integer overflow"))?);
        }
        (Bool(_) | Int(_) | Float(_), Bool(_) | Int(_) | Float(_)) => {
            *parent = Float(parent.as_number().unwrap_or(0.0) - value.as_number().unwrap_or(0.0));
        }
        (Str(text), Str(pattern)) => {
            let regex = pyre::compile(pattern).map_err(|e| regex_error(pattern, &e))?;
            *text = regex.sub("", text).map_err(|e| regex_error(pattern, &e))?;
        }
        (Seq(items), Seq(remove)) => {
            items.retain(|item| !remove.iter().any(|r| r.py_eq(item)));
        }
        (VMap(map), Seq(remove)) => {
            for item in remove {
                if let Str(k) = item {
                    map.shift_remove(k);
                }
            }
        }
        (KeyedMap(pairs), Seq(remove)) => {
            pairs.retain(|(k, _)| !remove.iter().any(|r| r.py_eq(k)));
        }
        _ => return Err(merge_error(key, node, "wrong type")),
    }
    Ok(())
}

/// The patterns of a `~` / `-~` value: a string or a list of strings.
fn pattern_list<'v>(value: &'v Value, node: &str) -> Result<Vec<&'v str>> {
    let not_str = |v: &Value| {
        Error::new(
            ErrorKind::FormatError,
            format!(
                "Invalid pattern in {node}: expected a string, got {}.",
                v.py_repr()
            ),
        )
    };
    match value {
        Value::Str(s) => Ok(vec![s.as_str()]),
        Value::Seq(items) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| not_str(v)))
            .collect(),
        other => Err(not_str(other)),
    }
}

/// Split `<d>PATTERN<d>REPLACEMENT<d>` (python `split_pattern_replacement`).
fn split_pattern_replacement(source: &str) -> Result<(&str, &str)> {
    let format = |message: String| Error::new(ErrorKind::FormatError, message);
    let Some(delimiter) = source.chars().next() else {
        return Err(format(
            "'' has to start and end with the same delimiter.".to_owned(),
        ));
    };
    if !source.ends_with(delimiter) {
        return Err(format(format!("'{source}' has to end with '{delimiter}'.")));
    }
    let width = delimiter.len_utf8();
    let middle = if source.len() >= 2 * width {
        &source[width..source.len() - width]
    } else {
        ""
    };
    let parts: Vec<&str> = middle.split(delimiter).collect();
    let [pattern, replacement] = parts[..] else {
        return Err(format(format!("'{source}' can't be split in two parts")));
    };
    if pattern.is_empty() {
        return Err(format(format!("Pattern cannot be empty: '{source}'.")));
    }
    Ok((pattern, replacement))
}

fn merge_regexp(data: &mut Map, key: &str, value: &Value, node: &str) -> Result<()> {
    let Some(parent) = data.get_mut(key) else {
        return Ok(());
    };
    let mut rules = Vec::new();
    for source in pattern_list(value, node)? {
        let (pattern, replacement) = split_pattern_replacement(source)?;
        let regex = pyre::compile(pattern).map_err(|e| regex_error(pattern, &e))?;
        rules.push((regex, replacement, pattern));
    }
    for (regex, replacement, pattern) in &rules {
        match parent {
            Value::Seq(items) => {
                if items.iter().any(|item| !matches!(item, Value::Str(_))) {
                    return Err(merge_error(key, node, "not a string"));
                }
                for item in items.iter_mut() {
                    if let Value::Str(text) = item {
                        *text = regex
                            .sub(replacement, text)
                            .map_err(|e| regex_error(pattern, &e))?;
                    }
                }
            }
            Value::Str(text) => {
                *text = regex
                    .sub(replacement, text)
                    .map_err(|e| regex_error(pattern, &e))?;
            }
            _ => return Err(merge_error(key, node, "wrong type")),
        }
    }
    Ok(())
}

/// Compiles the `-~` patterns on first use: python compiles inside
/// `re.search`, so a bad pattern that is never reached is no error.
struct LazyPatterns<'v> {
    sources: Vec<&'v str>,
    compiled: Vec<Option<pyre::PyRegex>>,
}

impl<'v> LazyPatterns<'v> {
    fn new(sources: Vec<&'v str>) -> Self {
        let compiled = sources.iter().map(|_| None).collect();
        LazyPatterns { sources, compiled }
    }

    fn any_search(&mut self, text: &str) -> Result<bool> {
        for (source, slot) in self.sources.iter().zip(self.compiled.iter_mut()) {
            if slot.is_none() {
                *slot = Some(pyre::compile(source).map_err(|e| regex_error(source, &e))?);
            }
            if let Some(regex) = slot
                && regex.search(text)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn merge_minus_regexp(data: &mut Map, key: &str, value: &Value, node: &str) -> Result<()> {
    let Some(parent) = data.get_mut(key) else {
        return Ok(());
    };
    let mut patterns = LazyPatterns::new(pattern_list(value, node)?);
    match parent {
        Value::Seq(items) => {
            let mut kept = Vec::with_capacity(items.len());
            for item in items.drain(..) {
                let text = match &item {
                    Value::Str(s) => std::borrow::Cow::Borrowed(s.as_str()),
                    other => std::borrow::Cow::Owned(other.py_str()),
                };
                if !patterns.any_search(&text)? {
                    kept.push(item);
                }
            }
            *items = kept;
        }
        Value::Str(text) => {
            if patterns.any_search(text)? {
                text.clear();
            }
        }
        Value::Map(map) => {
            let mut kept = Map::with_capacity_and_hasher(map.len(), MapHasher);
            for (k, v) in map.drain(..) {
                if !patterns.any_search(&k)? {
                    kept.insert(k, v);
                }
            }
            **map = kept;
        }
        Value::KeyedMap(pairs) => {
            let mut kept = Vec::with_capacity(pairs.len());
            for (k, v) in pairs.drain(..) {
                if !patterns.any_search(&k.py_str())? {
                    kept.push((k, v));
                }
            }
            *pairs = kept;
        }
        _ => return Err(merge_error(key, node, "wrong type")),
    }
    Ok(())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Value)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn s(text: &str) -> Value {
        Value::Str(text.to_owned())
    }

    fn seq(items: &[Value]) -> Value {
        Value::Seq(items.to_vec())
    }

    fn merged(parent: &[(&str, Value)], child: &[(&str, Value)]) -> Result<Map> {
        let mut data = map(parent);
        merge_special(&mut data, map(child), "/n")?;
        Ok(data)
    }

    #[test]
    fn suffix_table() {
        assert_eq!(split_suffix("a+"), ("a", Suffix::Plus));
        assert_eq!(split_suffix("c++"), ("c", Suffix::Plus));
        assert_eq!(split_suffix("a+<"), ("a", Suffix::Prepend));
        assert_eq!(split_suffix("a<+<"), ("a", Suffix::Prepend));
        assert_eq!(split_suffix("a-~"), ("a", Suffix::MinusRegexp));
        assert_eq!(split_suffix("a~-~"), ("a", Suffix::MinusRegexp));
        assert_eq!(split_suffix("a-"), ("a", Suffix::Minus));
        assert_eq!(split_suffix("a--"), ("a", Suffix::Minus));
        assert_eq!(split_suffix("a~"), ("a", Suffix::Regexp));
        assert_eq!(split_suffix("a"), ("a", Suffix::Set));
        assert_eq!(split_suffix("a<"), ("a<", Suffix::Set));
    }

    #[test]
    fn plus_on_python_types() {
        let d = merged(
            &[
                ("s", s("a")),
                ("l", seq(&[s("x")])),
                ("b", Value::Bool(true)),
                ("f", Value::Float(1.5)),
            ],
            &[
                ("s+", s("b")),
                ("l+<", seq(&[s("y")])),
                ("b+", Value::Bool(true)),
                ("f+", Value::Int(1)),
            ],
        )
        .unwrap();
        assert_eq!(d["s"], s("ab"));
        assert_eq!(d["l"], seq(&[s("y"), s("x")]));
        assert_eq!(d["b"], Value::Int(2));
        assert_eq!(d["f"], Value::Float(2.5));
        let e = merged(&[("l", seq(&[]))], &[("l+", s("x"))]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MergeError);
        assert_eq!(
            e.message(),
            "MergeError: Key 'l' in /n (can only concatenate list (not \"str\") to list)."
        );
        let e = merged(&[("n", Value::Null)], &[("n+", seq(&[]))]).unwrap_err();
        assert!(e.message().contains("'NoneType' and 'list'"));
    }

    #[test]
    fn plus_keeps_nested_suffixes_for_missing_keys() {
        let inner = Value::Map(Box::new(map(&[("deeper+", s("v"))])));
        let d = merged(&[], &[("new+", inner.clone())]).unwrap();
        assert_eq!(d["new"], inner);
    }

    #[test]
    fn plus_dict_and_list_combinations() {
        let parent = Value::Map(Box::new(map(&[("a", Value::Int(1))])));
        let items = seq(&[
            Value::Map(Box::new(map(&[("b", Value::Int(2))]))),
            Value::Map(Box::new(map(&[]))),
        ]);
        let d = merged(&[("x", parent)], &[("x+", items)]).unwrap();
        assert_eq!(
            d["x"],
            seq(&[
                Value::Map(Box::new(map(&[("a", Value::Int(1)), ("b", Value::Int(2))]))),
                Value::Map(Box::new(map(&[("a", Value::Int(1))]))),
            ])
        );
        let e = merged(
            &[("x", seq(&[s("no")]))],
            &[("x+", Value::Map(Box::new(map(&[]))))],
        )
        .unwrap_err();
        assert_eq!(
            e.message(),
            "MergeError: Item 'no' in /n must be a dictionary."
        );
    }

    #[test]
    fn minus_variants() {
        let d = merged(
            &[
                ("flag", Value::Bool(true)),
                (
                    "l",
                    seq(&[Value::Int(1), Value::Bool(true), s("1"), Value::Int(2)]),
                ),
                (
                    "d",
                    Value::Map(Box::new(map(&[("a", Value::Int(1)), ("b", Value::Int(2))]))),
                ),
                ("s", s("abcabc")),
            ],
            &[
                ("flag-", Value::Bool(true)),
                ("l-", seq(&[Value::Float(1.0)])),
                ("d-", seq(&[s("a")])),
                ("s-", s("b")),
                ("missing-", s("x")),
            ],
        )
        .unwrap();
        assert_eq!(d["flag"], Value::Int(0));
        assert_eq!(d["l"], seq(&[s("1"), Value::Int(2)]));
        assert_eq!(d["d"], Value::Map(Box::new(map(&[("b", Value::Int(2))]))));
        assert_eq!(d["s"], s("acac"));
        assert!(!d.contains_key("missing"));
        let e = merged(&[("l", seq(&[]))], &[("l-", s("x"))]).unwrap_err();
        assert_eq!(e.message(), "MergeError: Key 'l' in /n (wrong type).");
    }

    #[test]
    fn regexp_patterns() {
        let d = merged(
            &[("t", seq(&[s("Tier1"), s("Tier2")]))],
            &[("t~", seq(&[s("/Tier(.)/t\\1/"), s("/t2/t3/")]))],
        )
        .unwrap();
        assert_eq!(d["t"], seq(&[s("t1"), s("t3")]));
        for (bad, message) in [
            ("", "'' has to start and end with the same delimiter."),
            ("/x/y", "'/x/y' has to end with '/'."),
            ("/x/", "'/x/' can't be split in two parts"),
            ("/a/b/c/", "'/a/b/c/' can't be split in two parts"),
            ("//b/", "Pattern cannot be empty: '//b/'."),
        ] {
            let e = merged(&[("t", s("x"))], &[("t~", s(bad))]).unwrap_err();
            assert_eq!((e.kind(), e.message()), (ErrorKind::FormatError, message));
        }
        // an absent key is never validated
        assert!(merged(&[], &[("t~", s(""))]).is_ok());
        let e = merged(&[("t", Value::Int(1))], &[("t~", s("/1/2/"))]).unwrap_err();
        assert_eq!(e.message(), "MergeError: Key 't' in /n (wrong type).");
        let e = merged(
            &[("t", seq(&[s("x"), Value::Int(1)]))],
            &[("t~", s("/x/y/"))],
        )
        .unwrap_err();
        assert_eq!(e.message(), "MergeError: Key 't' in /n (not a string).");
    }

    #[test]
    fn minus_regexp_uses_python_str() {
        let d = merged(
            &[
                (
                    "l",
                    seq(&[Value::Int(1), s("1"), Value::Bool(true), s("x")]),
                ),
                ("s", s("abc")),
                (
                    "d",
                    Value::Map(Box::new(map(&[
                        ("keep", Value::Null),
                        ("drop", Value::Null),
                    ]))),
                ),
            ],
            &[
                ("l-~", s("^1$")),
                ("s-~", s("b")),
                ("d-~", seq(&[s("^dr")])),
            ],
        )
        .unwrap();
        assert_eq!(d["l"], seq(&[Value::Bool(true), s("x")]));
        assert_eq!(d["s"], s(""));
        assert_eq!(d["d"], Value::Map(Box::new(map(&[("keep", Value::Null)]))));
        let d = merged(&[("l", seq(&[Value::Bool(true)]))], &[("l-~", s("^True$"))]).unwrap();
        assert_eq!(d["l"], seq(&[]));
        let e = merged(&[("i", Value::Int(5))], &[("i-~", s("5"))]).unwrap_err();
        assert_eq!(e.message(), "MergeError: Key 'i' in /n (wrong type).");
    }

    #[test]
    fn order_of_operations_matters() {
        let d = merged(
            &[("t", seq(&[s("a")]))],
            &[("t-", seq(&[s("a")])), ("t+", seq(&[s("a")]))],
        )
        .unwrap();
        assert_eq!(d["t"], seq(&[s("a")]));
        let d = merged(
            &[("t", seq(&[s("a")]))],
            &[("t+", seq(&[s("a")])), ("t-", seq(&[s("a")]))],
        )
        .unwrap();
        assert_eq!(d["t"], seq(&[]));
    }
}
