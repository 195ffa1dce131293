//! Events to values: drives saphyr-parser and builds mappings, sequences,
//! anchors and aliases, merge keys and the duplicate-key check as ruamel does.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

use super::pyrepr::{py_str, py_str_shallow};
use super::resolve::{Special, Version};
use super::scan::{check_tabs, scan_version};
use super::tags::{CORE_PREFIX, mapping_kind, sequence_kind, undefined_tag};
use super::{DUPLICATE_KEY_NOTE, Fail};
use crate::value::{Map, MapHasher, Value};

pub(super) fn load(text: &str) -> Result<Value, Fail> {
    let version = scan_version(text)?;
    let mut loader = Loader {
        version,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        written: 0,
        copied: 0,
    };
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0usize;
    // Character ranges where ruamel accepts tabs (quoted and block scalars,
    // flow collections); only collected when the text has a tab at all.
    let mut tab_ok: Option<Vec<(usize, usize, bool)>> = text.contains('\t').then(Vec::new);
    let mut flow_starts: Vec<usize> = Vec::new();
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(Fail::scan)?;
        let mark = span.start;
        if let Some(ranges) = tab_ok.as_mut() {
            match &event {
                Event::Scalar(_, style, _, _) => {
                    let plain = *style == ScalarStyle::Plain;
                    ranges.push((span.start.index(), span.end.index(), !plain));
                }
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    flow_starts.push(mark.index())
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    // A flow collection's end event covers its `]` or `}`;
                    // a block collection's is empty.
                    let start = flow_starts.pop().unwrap_or(0);
                    if span.end.index() > span.start.index() {
                        ranges.push((start, span.end.index(), true));
                    }
                }
                _ => {}
            }
        }
        match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    let context = loader.root.as_ref().map_or(mark, |node| node.mark);
                    return Err(Fail {
                        context: Some(("expected a single document in the stream".into(), context)),
                        problem: "but found another document".into(),
                        mark,
                        note: None,
                    });
                }
            }
            Event::Alias(id) => {
                let node = loader.anchors.get(&id).ok_or_else(|| {
                    Fail::at(mark, format!("found undefined alias (anchor id {id})"))
                })?;
                let budget = alias_budget(loader.written).saturating_sub(loader.copied);
                let size = nodes_within(&node.value, budget).ok_or_else(|| {
                    Fail::at(
                        mark,
                        format!(
                            "aliases expand to more than {} nodes (the alias budget of a \
                             file with {} nodes); a nested alias bomb?",
                            alias_budget(loader.written),
                            loader.written
                        ),
                    )
                })?;
                loader.copied += size;
                let node = node.clone();
                loader.push(node)?;
            }
            Event::Scalar(value, style, anchor, tag) => {
                loader.written += 1;
                let node = loader.scalar(&value, style, tag.as_deref(), mark)?;
                loader.anchor(anchor, &node);
                loader.push(node)?;
            }
            Event::SequenceStart(anchor, tag) => {
                loader.written += 1;
                check_depth(loader.stack.len(), mark)?;
                let kind = sequence_kind(tag.as_deref(), mark)?;
                loader.stack.push(Frame {
                    kind,
                    anchor,
                    mark,
                    // most sequences are short lists
                    children: Vec::with_capacity(4),
                    pending: None,
                });
            }
            Event::MappingStart(anchor, tag) => {
                loader.written += 1;
                check_depth(loader.stack.len(), mark)?;
                let kind = mapping_kind(tag.as_deref(), mark)?;
                loader.stack.push(Frame {
                    kind,
                    anchor,
                    mark,
                    // a key and a value per entry; fmf nodes have a handful
                    children: Vec::with_capacity(16),
                    pending: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = loader.stack.pop() else {
                    return Err(Fail::at(mark, "unbalanced collection end".into()));
                };
                let anchor = frame.anchor;
                let node = match frame.kind {
                    FrameKind::Map { set } => finish_mapping(frame, set)?,
                    FrameKind::Seq(_) => finish_sequence(frame)?,
                };
                loader.anchor(anchor, &node);
                loader.push(node)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
    if let Some(ranges) = tab_ok {
        check_tabs(text, &ranges)?;
    }
    Ok(loader.root.map_or(Value::Null, |node| node.value))
}

/// What kind of YAML node a [`Node`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Scalar,
    Sequence,
    Mapping,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Scalar => "scalar",
            Kind::Sequence => "sequence",
            Kind::Mapping => "mapping",
        }
    }
}

/// A constructed node: its value plus what the parent needs to know.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) value: Value,
    pub(super) mark: Marker,
    pub(super) kind: Kind,
    pub(super) special: Special,
    /// Number of key/value pairs as written (before duplicates collapse).
    pub(super) pairs: usize,
    /// A duplicate-key error that only counts if this mapping is used as a
    /// value: ruamel never checks a mapping that is merged inline (`<<:`).
    pub(super) pending: Option<Box<Fail>>,
}

impl Node {
    pub(super) fn scalar(value: Value, mark: Marker) -> Node {
        Node {
            value,
            mark,
            kind: Kind::Scalar,
            special: Special::None,
            pairs: 0,
            pending: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SeqKind {
    Seq,
    Omap,
    Pairs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrameKind {
    Seq(SeqKind),
    Map { set: bool },
}

/// A collection being read: its children so far.
struct Frame {
    kind: FrameKind,
    anchor: usize,
    mark: Marker,
    children: Vec<Node>,
    pending: Option<Box<Fail>>,
}

pub(super) struct Loader {
    pub(super) version: Version,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    /// Nodes written in the text so far (scalars and collections).
    written: usize,
    /// Nodes copied by aliases so far, checked against [`alias_budget`].
    copied: usize,
}

/// The deepest nesting of collections a file may have. Values are built,
/// merged, adjusted and dropped by recursion on threads with 2 MiB stacks;
/// 64 KB of `- - - ...` overflowed them. Python fmf gives up far earlier
/// (its recursion limit is 1,000 frames, several per level), and real
/// metadata nests a handful of levels.
const MAX_DEPTH: usize = 256;

/// Refuse a collection opened inside `open` others beyond [`MAX_DEPTH`].
fn check_depth(open: usize, mark: Marker) -> Result<(), Fail> {
    if open >= MAX_DEPTH {
        return Err(Fail::at(
            mark,
            format!("collections nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(())
}

/// How many nodes aliases may copy in all, for a file of `written` nodes:
/// 100,000, or 10 times the file's own nodes when that is more. Aliases
/// are deep copies (docs/deviations.md), so ten nested levels of ten
/// aliases each would otherwise build 10^10 nodes from a 426-byte file;
/// real metadata reuses an anchor a handful of times.
fn alias_budget(written: usize) -> usize {
    100_000usize.max(written.saturating_mul(10))
}

/// The number of nodes in `value`, or `None` when it is more than `limit`
/// (counting stops there, so a huge value costs no more than the limit).
fn nodes_within(value: &Value, limit: usize) -> Option<usize> {
    fn walk(value: &Value, count: &mut usize, limit: usize) -> bool {
        *count += 1;
        if *count > limit {
            return false;
        }
        match value {
            Value::Seq(items) | Value::Set(items) => items.iter().all(|v| walk(v, count, limit)),
            Value::Map(map) => map.values().all(|v| {
                *count += 1; // the key
                walk(v, count, limit)
            }),
            Value::KeyedMap(pairs) => pairs
                .iter()
                .all(|(k, v)| walk(k, count, limit) && walk(v, count, limit)),
            _ => true,
        }
    }
    let mut count = 0;
    walk(value, &mut count, limit).then_some(count)
}

impl Loader {
    fn anchor(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    /// Hand a finished node to its parent collection (or make it the root).
    fn push(&mut self, mut node: Node) -> Result<(), Fail> {
        let Some(frame) = self.stack.last_mut() else {
            check_not_special(&node)?;
            if let Some(fail) = node.pending.take() {
                return Err(*fail);
            }
            self.root = Some(node);
            return Ok(());
        };
        match frame.kind {
            FrameKind::Map { .. } => {
                let is_key = frame.children.len() % 2 == 0;
                let merge_value = !is_key
                    && frame
                        .children
                        .last()
                        .is_some_and(|key| key.special == Special::Merge);
                if !is_key {
                    check_not_special(&node)?;
                }
                if !merge_value && let Some(fail) = node.pending.take() {
                    return Err(*fail);
                }
            }
            FrameKind::Seq(kind) => {
                check_not_special(&node)?;
                match kind {
                    SeqKind::Seq => {
                        if frame.pending.is_none() {
                            frame.pending = node.pending.take();
                        }
                    }
                    // ruamel reads omap/pairs items without checking them as mappings.
                    SeqKind::Omap | SeqKind::Pairs => node.pending = None,
                }
            }
        }
        frame.children.push(node);
        Ok(())
    }
}

fn check_not_special(node: &Node) -> Result<(), Fail> {
    match node.special {
        Special::None => Ok(()),
        Special::Merge => Err(undefined_tag(&format!("{CORE_PREFIX}merge"), node.mark)),
        Special::ValueKey => Err(undefined_tag(&format!("{CORE_PREFIX}value"), node.mark)),
    }
}

/// Build a mapping (or a `!!set`) the way ruamel's `construct_mapping`
/// does, merge keys included.
fn finish_mapping(frame: Frame, set: bool) -> Result<Node, Fail> {
    let written = frame.children.len() / 2;
    let mut merged: Vec<(Value, Value, Marker)> = Vec::new();
    let mut merge_seen = false;
    let mut own: Vec<(Value, Value, Marker)> = Vec::with_capacity(written);
    let mut children = frame.children.into_iter();
    while let (Some(key), Some(value)) = (children.next(), children.next()) {
        if key.special == Special::Merge {
            if merge_seen {
                return Err(Fail {
                    context: Some(("while constructing a mapping".into(), frame.mark)),
                    problem: "found duplicate merge key \"<<\"".into(),
                    mark: key.mark,
                    note: Some(
                        "Duplicate merge keys are never allowed, not even when\n\
                         `.allow_duplicate_keys` is set to True\n",
                    ),
                });
            }
            merge_seen = true;
            merge_from(&value, frame.mark, &mut merged)?;
            continue;
        }
        check_hashable(&key.value, frame.mark, key.mark)?;
        own.push((key.value, value.value, key.mark));
    }
    let (value, pending) = if merge_seen {
        // ruamel checks no duplicates in a mapping with a merge key.
        merged.extend(own);
        (collect_pairs(merged, None), None)
    } else {
        let mut dup = None;
        let value = collect_pairs(own, Some((&mut dup, frame.mark)));
        (value, dup.map(Box::new))
    };
    let value = if set { into_set(value) } else { value };
    Ok(Node {
        value,
        mark: frame.mark,
        kind: Kind::Mapping,
        special: Special::None,
        pairs: written,
        pending,
    })
}

/// Append the pairs a `<<` value contributes: a mapping's pairs, or those
/// of a list of mappings applied last to first (ruamel reverses the list).
fn merge_from(
    value: &Node,
    context: Marker,
    out: &mut Vec<(Value, Value, Marker)>,
) -> Result<(), Fail> {
    match value.kind {
        Kind::Mapping => {
            out.extend(
                map_pairs(&value.value)
                    .into_iter()
                    .map(|(k, v)| (k, v, value.mark)),
            );
            Ok(())
        }
        Kind::Sequence => {
            let Value::Seq(items) = &value.value else {
                return Err(not_mergeable(
                    context,
                    "expected a mapping for merging, but found sequence",
                    value.mark,
                ));
            };
            for item in items.iter().rev() {
                match item {
                    Value::Map(_) | Value::KeyedMap(_) | Value::Set(_) => {
                        out.extend(map_pairs(item).into_iter().map(|(k, v)| (k, v, value.mark)));
                    }
                    other => {
                        let found = match other {
                            Value::Seq(_) => "sequence",
                            _ => "scalar",
                        };
                        return Err(not_mergeable(
                            context,
                            &format!("expected a mapping for merging, but found {found}"),
                            value.mark,
                        ));
                    }
                }
            }
            Ok(())
        }
        Kind::Scalar => Err(not_mergeable(
            context,
            "expected a mapping or list of mappings for merging, but found scalar",
            value.mark,
        )),
    }
}

fn not_mergeable(context: Marker, problem: &str, mark: Marker) -> Fail {
    Fail::in_context(
        "while constructing a mapping",
        context,
        problem.into(),
        mark,
    )
}

fn map_pairs(value: &Value) -> Vec<(Value, Value)> {
    match value {
        Value::Map(map) => map
            .iter()
            .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
            .collect(),
        Value::KeyedMap(pairs) => pairs.clone(),
        Value::Set(items) => items.iter().map(|k| (k.clone(), Value::Null)).collect(),
        _ => Vec::new(),
    }
}

/// Python refuses dicts and sets as keys; lists become tuples, which hold
/// only hashable items.
fn check_hashable(key: &Value, context: Marker, mark: Marker) -> Result<(), Fail> {
    fn inner(value: &Value) -> Option<&'static str> {
        match value {
            Value::Map(_) | Value::KeyedMap(_) => Some("dict"),
            Value::Set(_) => Some("set"),
            Value::Seq(items) => items.iter().find_map(|item| match item {
                Value::Seq(_) => inner(item),
                other => inner(other),
            }),
            _ => None,
        }
    }
    match key {
        Value::Map(_) | Value::KeyedMap(_) | Value::Set(_) => Err(Fail::in_context(
            "while constructing a mapping",
            context,
            "found unhashable key".into(),
            mark,
        )),
        _ => match inner(key) {
            Some(kind) => Err(Fail::at(
                mark,
                format!("TypeError: unhashable type: '{kind}'"),
            )),
            None => Ok(()),
        },
    }
}

/// Collect pairs into a mapping with Python dict semantics: a repeated key
/// keeps its first position and takes the last value. With `check`, the
/// first repeat is recorded as ruamel's duplicate-key error.
fn collect_pairs(
    pairs: Vec<(Value, Value, Marker)>,
    mut check: Option<(&mut Option<Fail>, Marker)>,
) -> Value {
    let mut note_dup = |key: &Value, new: &Value, old: &Value, mark: Marker| {
        if let Some((slot, context)) = check.as_mut()
            && slot.is_none()
        {
            **slot = Some(Fail {
                context: Some(("while constructing a mapping".into(), *context)),
                problem: format!(
                    "found duplicate key \"{}\" with value \"{}\" (original value: \"{}\")",
                    py_str(key),
                    py_str_shallow(new),
                    py_str_shallow(old)
                ),
                mark,
                note: Some(DUPLICATE_KEY_NOTE),
            });
        }
    };
    if pairs.iter().all(|(key, _, _)| matches!(key, Value::Str(_))) {
        let mut map = Map::with_capacity_and_hasher(pairs.len(), MapHasher);
        for (key, value, mark) in pairs {
            let Value::Str(name) = key else { continue };
            // one hash per key: a repeat keeps its place, takes the value
            match map.entry(name) {
                indexmap::map::Entry::Occupied(mut entry) => {
                    note_dup(&Value::Str(entry.key().clone()), &value, entry.get(), mark);
                    entry.insert(value);
                }
                indexmap::map::Entry::Vacant(entry) => {
                    entry.insert(value);
                }
            }
        }
        return Value::Map(Box::new(map));
    }
    let mut out: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
    for (key, value, mark) in pairs {
        if let Some(slot) = out.iter_mut().find(|(old, _)| key_eq(old, &key)) {
            note_dup(&key, &value, &slot.1, mark);
            slot.1 = value;
        } else {
            out.push((key, value));
        }
    }
    Value::KeyedMap(out)
}

fn into_set(value: Value) -> Value {
    match value {
        Value::Map(map) => Value::Set(map.into_keys().map(Value::Str).collect()),
        Value::KeyedMap(pairs) => Value::Set(pairs.into_iter().map(|(k, _)| k).collect()),
        other => other,
    }
}

/// Python `key in dict` for loaded keys: `==`, except that every `.nan` is
/// the same object in ruamel (identity makes them equal).
fn key_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) if x.is_nan() && y.is_nan() => true,
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| key_eq(p, q))
        }
        _ => a.py_eq(b),
    }
}

/// Build `!!seq`, `!!omap` (an ordered mapping) or `!!pairs` (a list of
/// two-item lists).
fn finish_sequence(frame: Frame) -> Result<Node, Fail> {
    let FrameKind::Seq(kind) = frame.kind else {
        return Err(Fail::at(frame.mark, "internal: not a sequence".into()));
    };
    let value = match kind {
        SeqKind::Seq => {
            // Not an in-place `collect`: it would keep the larger buffer of
            // the nodes for the whole life of the value.
            let mut items = Vec::with_capacity(frame.children.len());
            items.extend(frame.children.into_iter().map(|node| node.value));
            Value::Seq(items)
        }
        SeqKind::Omap | SeqKind::Pairs => {
            let context = if kind == SeqKind::Omap {
                "while constructing an ordered map"
            } else {
                "while constructing pairs"
            };
            let mut pairs = Vec::with_capacity(frame.children.len());
            for item in frame.children {
                if item.kind != Kind::Mapping {
                    return Err(Fail::in_context(
                        context,
                        frame.mark,
                        format!(
                            "expected a mapping of length 1, but found {}",
                            item.kind.name()
                        ),
                        item.mark,
                    ));
                }
                if item.pairs != 1 {
                    return Err(Fail::in_context(
                        context,
                        frame.mark,
                        format!(
                            "expected a single mapping item, but found {} items",
                            item.pairs
                        ),
                        item.mark,
                    ));
                }
                if let Some((key, value)) = map_pairs(&item.value).into_iter().next() {
                    pairs.push((key, value, item.mark));
                }
            }
            if kind == SeqKind::Pairs {
                Value::Seq(
                    pairs
                        .into_iter()
                        .map(|(k, v, _)| Value::Seq(vec![k, v]))
                        .collect(),
                )
            } else {
                let mut dup = None;
                let value = collect_pairs(pairs, Some((&mut dup, frame.mark)));
                if let Some(mut fail) = dup {
                    fail.context = Some((context.into(), frame.mark));
                    fail.note = None;
                    return Err(fail);
                }
                value
            }
        }
    };
    Ok(Node {
        value,
        mark: frame.mark,
        kind: Kind::Sequence,
        special: Special::None,
        pairs: 0,
        pending: frame.pending,
    })
}
#[cfg(test)]
mod tests {
    use super::load;
    use crate::yaml::tests::{fail, json, k, s};

    #[test]
    fn block_and_quoted_scalars() {
        let data = "lit: |\n  one\n  two\nfold: >\n  a\n  b\nkeep: |+\n  k\n\nstrip: |-\n  s\n\
                    q: ['it''s', \"tab\\t\\u00e9\"]\nplain: this is\n  multi line\n";
        assert_eq!(
            json(data),
            r#"{"lit":"one\ntwo\n","fold":"a b\n","keep":"k\n\n","strip":"s","q":["it's","tab\té"],"plain":"this is multi line"}"#
        );
        assert_eq!(k("'true'"), s("true"));
        assert_eq!(k("\"~\""), s("~"));
        assert_eq!(k("http://example.com/x#y"), s("http://example.com/x#y"));
    }

    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let deep = format!("a:\n{}x\n", "- ".repeat(32_000));
        let fail = load(&deep).expect_err("too deep");
        assert!(fail.problem.contains("nested deeper"), "{}", fail.problem);
        assert_eq!(fail.mark.line(), 2);
        let flow = format!("a: {}{}\n", "[".repeat(300), "]".repeat(300));
        assert!(load(&flow).is_err());
        let ok = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert!(load(&ok).is_ok());
    }

    #[test]
    fn nested_aliases_stop_at_the_budget() {
        // Ten levels of ten aliases each: 10^10 nodes if expanded.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let prev = level - 1;
            let items = vec![format!("*a{prev}"); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        let fail = load(&text).expect_err("an alias bomb");
        assert!(fail.problem.contains("alias budget"), "{}", fail.problem);
        assert!(
            fail.mark.line() > 4,
            "the alias that went over: {:?}",
            fail.mark
        );
        // A few reuses of an anchor stay well within it.
        assert!(load("a: &a {k: [1, 2, 3]}\nb: *a\nc: *a\nd: {<<: *a}\n").is_ok());
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        assert_eq!(
            json("a: &x {p: 1, q: [1, 2]}\nb: *x\n"),
            r#"{"a":{"p":1,"q":[1,2]},"b":{"p":1,"q":[1,2]}}"#
        );
        // Merged keys come first; own keys override them.
        assert_eq!(
            json("a: &x {x: 1, y: 2}\nm:\n  z: 0\n  <<: *x\n  y: 3\n"),
            r#"{"a":{"x":1,"y":2},"m":{"x":1,"y":3,"z":0}}"#
        );
        // A list of merged mappings is applied last to first: earlier ones win.
        assert_eq!(
            json("{<<: [{a: 1}, {b: 2}], c: 3}"),
            r#"{"b":2,"a":1,"c":3}"#
        );
        assert_eq!(json("{<<: [{a: 1}, {a: 2}]}"), r#"{"a":1}"#);
        assert_eq!(json("{a: 1, <<: {a: 2, b: 3}}"), r#"{"a":1,"b":3}"#);
        // ruamel checks no duplicates in a mapping that merges, nor in an
        // inline merged mapping.
        assert_eq!(json("{<<: {x: 1}, a: 1, a: 2}"), r#"{"x":1,"a":2}"#);
        assert_eq!(json("{<<: {a: 1, a: 2}}"), r#"{"a":2}"#);
        // A quoted '<<' is a plain key; `=` as a key is the string "=".
        assert_eq!(json("'<<': {a: 1}"), r#"{"<<":{"a":1}}"#);
        assert_eq!(json("=: x"), r#"{"=":"x"}"#);
        let (line, column, detail) = fail("{<<: {x: 1},\n <<: {y: 1}}");
        assert_eq!((line, column), (2, 2));
        assert!(
            detail.contains("found duplicate merge key \"<<\""),
            "{detail}"
        );
        let (line, _, detail) = fail("a: 1\n<<: 1\n");
        assert_eq!(line, 2);
        assert!(
            detail.contains("expected a mapping or list of mappings for merging"),
            "{detail}"
        );
        assert_eq!(fail("a: <<").0, 1);
    }

    #[test]
    fn non_string_keys_make_a_keyed_map() {
        assert_eq!(
            json("{1: one, false: no, null: none, 2.5: float, [a, b]: seq}"),
            r#"{"$map":[[1,"one"],[false,"no"],[null,"none"],[2.5,"float"],[["a","b"],"seq"]]}"#
        );
        assert_eq!(
            json("{2021-01-02: a, '2021-01-02': b}"),
            r#"{"$map":[[{"$date":"2021-01-02"},"a"],["2021-01-02","b"]]}"#
        );
        let (line, column, detail) = fail("{{a: 1}: 1}");
        assert_eq!((line, column), (1, 2));
        assert!(detail.contains("found unhashable key"), "{detail}");
    }

    #[test]
    fn duplicate_keys_fail_at_the_second_key() {
        let (line, column, detail) = fail("a: b\na: c\n");
        assert_eq!((line, column), (2, 1));
        assert_eq!(
            detail,
            "while constructing a mapping\n  in \"<unicode string>\", line 1, column 1:\n    a: b\n    ^ (line: 1)\n\
             found duplicate key \"a\" with value \"c\" (original value: \"b\")\n  in \"<unicode string>\", line 2, column 1:\n    a: c\n    ^ (line: 2)\n\n\
             To suppress this check see:\n    https://yaml.dev/doc/ruamel.yaml/api/#Duplicate_keys\n"
        );
        let (line, column, _) = fail("x:\n  a: 1\n  a: 2\n");
        assert_eq!((line, column), (3, 3));
        let (line, column, detail) = fail("/child:\n  a: 1\n/child:\n  b: 2\n");
        assert_eq!((line, column), (3, 1));
        assert!(
            detail.contains(
                "found duplicate key \"/child\" with value \"{}\" (original value: \"{}\")"
            )
        );
        // Python equality: 1 == True == 1.0.
        let (line, column, detail) = fail("x: {1: one, true: yes}");
        assert_eq!((line, column), (1, 13));
        assert!(
            detail.contains(
                "found duplicate key \"True\" with value \"yes\" (original value: \"one\")"
            )
        );
        let (_, column, detail) = fail("x: {1: a, 1.0: b}");
        assert_eq!(column, 11);
        assert!(detail.contains("found duplicate key \"1.0\""));
        assert!(
            fail("{[a]: 1, [a]: 2}")
                .2
                .contains("found duplicate key \"('a',)\"")
        );
        assert_eq!(fail("{.nan: 1, .nan: 2}").1, 11);
        assert_eq!(fail("- {a: 1, a: 2}").0, 1);
        assert_eq!(fail("k: !!set {a, a}").1, 14);
    }

    #[test]
    fn documents() {
        let (line, column, detail) = fail("a: 1\n---\nb: 2\n");
        assert_eq!((line, column), (2, 1));
        assert!(
            detail.starts_with("expected a single document in the stream\n"),
            "{detail}"
        );
        assert!(detail.contains("but found another document"));
        assert_eq!(json("---\na: 1\n...\n"), r#"{"a":1}"#);
        assert_eq!(json("\u{feff}bom: present\n"), r#"{"bom":"present"}"#);
    }
}
