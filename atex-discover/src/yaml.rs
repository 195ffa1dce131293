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

use std::collections::HashMap;
use std::path::Path;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Tag};

use crate::error::{Error, ErrorKind, Location, Result};
use crate::value::{Map, Value};

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

fn load(text: &str) -> Result<Value, Fail> {
    let version = scan_version(text)?;
    let mut loader = Loader {
        version,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
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
                let node = loader.anchors.get(&id).cloned().ok_or_else(|| {
                    Fail::at(mark, format!("found undefined alias (anchor id {id})"))
                })?;
                loader.push(node)?;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let node = loader.scalar(&value, style, tag.as_deref(), mark)?;
                loader.anchor(anchor, &node);
                loader.push(node)?;
            }
            Event::SequenceStart(anchor, tag) => {
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

/// ruamel's scanner treats a tab as white space only inside flow
/// collections, and as content inside quoted and block scalars and
/// comments. Anywhere else, and inside any plain scalar (`a: b\tc`,
/// `[a\tb]`), a tab is an error. saphyr-parser follows YAML 1.2 and accepts
/// those tabs, so they are looked for here. `ranges` are character ranges:
/// `true` where tabs are fine, `false` for plain scalars.
fn check_tabs(text: &str, ranges: &[(usize, usize, bool)]) -> Result<(), Fail> {
    const BLOCK: u8 = 0;
    const ALLOWED: u8 = 1;
    const PLAIN: u8 = 2;
    let chars: Vec<char> = text.chars().collect();
    let mut state = vec![BLOCK; chars.len()];
    for pass in [true, false] {
        for &(start, mut end, allowed) in ranges.iter().filter(|r| r.2 == pass) {
            // A quoted scalar's span runs over the blanks after its closing quote.
            while end > start && matches!(chars.get(end - 1), Some(' ' | '\t')) {
                end -= 1;
            }
            let end = end.min(chars.len());
            if start < end {
                state[start..end].fill(if allowed { ALLOWED } else { PLAIN });
            }
        }
    }
    let (mut line, mut col) = (1usize, 0usize);
    let mut in_comment = false;
    let mut after_space = true;
    for (index, &c) in chars.iter().enumerate() {
        match c {
            '\n' => {
                (line, col) = (line + 1, 0);
                in_comment = false;
                after_space = true;
                continue;
            }
            '#' if state[index] != ALLOWED && after_space => in_comment = true,
            '\t' if state[index] == PLAIN || (state[index] == BLOCK && !in_comment) => {
                let mark = Marker::new(index, line, col);
                return Err(Fail::in_context(
                    "while scanning for the next token",
                    mark,
                    "found character '\\t' that cannot start any token".into(),
                    mark,
                ));
            }
            _ => {}
        }
        after_space = matches!(c, ' ' | '\t' | '\r');
        col += 1;
    }
    Ok(())
}

/// The typing rules in force: YAML 1.2 unless a `%YAML 1.1` directive says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V11,
    V12,
}

/// The `%YAML` directive of the (first) document, found by reading the
/// directive lines before the document starts.
fn scan_version(text: &str) -> Result<Version, Fail> {
    let mut index = 0usize;
    for (number, line) in text.split('\n').enumerate() {
        let mark = Marker::new(index, number + 1, 0);
        index += line.chars().count() + 1;
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix("%YAML") else {
            if line.starts_with('%') {
                continue;
            }
            break;
        };
        let word = rest.split_whitespace().next().unwrap_or("");
        let (major, minor) = word.split_once('.').unwrap_or((word, ""));
        let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
            // saphyr-parser reports a malformed directive itself.
            break;
        };
        if major != 1 {
            return Err(Fail::at(
                mark,
                "found incompatible YAML document (version 1.* is required)".into(),
            ));
        }
        return match minor {
            1 => Ok(Version::V11),
            2 => Ok(Version::V12),
            _ => Err(Fail::at(
                mark,
                format!("version minor part can only be 2 or 1, got (1, {minor})"),
            )),
        };
    }
    Ok(Version::V12)
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
        let mut lines = Vec::new();
        if let Some((context, context_mark)) = &self.context {
            lines.push(context.clone());
            if (context_mark.line(), context_mark.col()) != (self.mark.line(), self.mark.col()) {
                lines.push(describe_mark(text, *context_mark));
            }
        }
        lines.push(self.problem.clone());
        lines.push(describe_mark(text, self.mark));
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
            line: Some(self.mark.line().max(1)),
            column: Some(self.mark.col() + 1),
        })
    }
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

/// What kind of YAML node a [`Node`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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

/// Plain scalars that ruamel resolves to tags without a constructor: they
/// are only valid as mapping keys (`<<` merges, `=` becomes the key "=").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Merge,
    ValueKey,
}

/// A constructed node: its value plus what the parent needs to know.
#[derive(Debug, Clone)]
struct Node {
    value: Value,
    mark: Marker,
    kind: Kind,
    special: Special,
    /// Number of key/value pairs as written (before duplicates collapse).
    pairs: usize,
    /// A duplicate-key error that only counts if this mapping is used as a
    /// value: ruamel never checks a mapping that is merged inline (`<<:`).
    pending: Option<Box<Fail>>,
}

impl Node {
    fn scalar(value: Value, mark: Marker) -> Node {
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
enum SeqKind {
    Seq,
    Omap,
    Pairs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
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

struct Loader {
    version: Version,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
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

    fn scalar(
        &self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        mark: Marker,
    ) -> Result<Node, Fail> {
        let tag = tag.map(classify_tag);
        let value = match tag {
            None if style != ScalarStyle::Plain => Value::Str(text.to_owned()),
            None | Some(TagKind::NonSpecific) => {
                return match resolve_plain(text, self.version) {
                    Ok(Resolved::Value(value)) => Ok(Node::scalar(value, mark)),
                    Ok(Resolved::Special(special)) => Ok(Node {
                        special,
                        ..Node::scalar(Value::Str(text.to_owned()), mark)
                    }),
                    Err(problem) => Err(Fail::at(mark, problem)),
                };
            }
            Some(TagKind::Core(name)) => match name.as_str() {
                "str" => Value::Str(text.to_owned()),
                "null" => Value::Null,
                "bool" => match text.to_lowercase().as_str() {
                    "yes" | "y" | "true" | "on" => Value::Bool(true),
                    "no" | "n" | "false" | "off" => Value::Bool(false),
                    _ => {
                        return Err(Fail::at(
                            mark,
                            format!("KeyError: {}", crate::pystr::str_repr(text)),
                        ));
                    }
                },
                "int" => construct_int(text, self.version).map_err(|p| Fail::at(mark, p))?,
                "float" => Value::Float(
                    construct_float(text, self.version).map_err(|p| Fail::at(mark, p))?,
                ),
                "timestamp" => match parse_timestamp(text.as_bytes(), false) {
                    Some(stamp) => stamp.construct().map_err(|p| Fail::at(mark, p))?,
                    None => {
                        return Err(Fail::at(
                            mark,
                            format!("failed to construct timestamp from \"{text}\""),
                        ));
                    }
                },
                "binary" => Value::Binary(decode_binary(text).map_err(|p| Fail::at(mark, p))?),
                "seq" => {
                    return Err(Fail::at(
                        mark,
                        "expected a sequence node, but found scalar".into(),
                    ));
                }
                "map" | "set" => {
                    return Err(Fail::at(
                        mark,
                        "expected a mapping node, but found scalar".into(),
                    ));
                }
                "omap" => {
                    return Err(Fail::in_context(
                        "while constructing an ordered map",
                        mark,
                        "expected a sequence, but found scalar".into(),
                        mark,
                    ));
                }
                "pairs" => {
                    return Err(Fail::in_context(
                        "while constructing pairs",
                        mark,
                        "expected a sequence, but found scalar".into(),
                        mark,
                    ));
                }
                _ => return Err(undefined_tag(&format!("{CORE_PREFIX}{name}"), mark)),
            },
            Some(TagKind::Other(full)) => return Err(undefined_tag(&full, mark)),
        };
        Ok(Node::scalar(value, mark))
    }
}

fn check_not_special(node: &Node) -> Result<(), Fail> {
    match node.special {
        Special::None => Ok(()),
        Special::Merge => Err(undefined_tag(&format!("{CORE_PREFIX}merge"), node.mark)),
        Special::ValueKey => Err(undefined_tag(&format!("{CORE_PREFIX}value"), node.mark)),
    }
}

fn undefined_tag(tag: &str, mark: Marker) -> Fail {
    Fail::at(
        mark,
        format!(
            "could not determine a constructor for the tag {}",
            crate::pystr::str_repr(tag)
        ),
    )
}

const CORE_PREFIX: &str = "tag:yaml.org,2002:";

/// A node tag, as the constructor sees it.
enum TagKind {
    /// `!` alone: ruamel resolves the scalar as if it were plain.
    NonSpecific,
    /// `tag:yaml.org,2002:NAME` (`!!NAME`), by NAME.
    Core(String),
    /// Any other tag, in full: always an error (no constructor).
    Other(String),
}

fn classify_tag(tag: &Tag) -> TagKind {
    let full = match tag.handle.as_str() {
        "" if tag.suffix == "!" => return TagKind::NonSpecific,
        "!" if tag.suffix.is_empty() => return TagKind::NonSpecific,
        "!" => format!("!{}", tag.suffix),
        handle => format!("{handle}{}", tag.suffix),
    };
    match full.strip_prefix(CORE_PREFIX) {
        Some(name) => TagKind::Core(name.to_owned()),
        None => TagKind::Other(full),
    }
}

fn sequence_kind(tag: Option<&Tag>, mark: Marker) -> Result<FrameKind, Fail> {
    let kind = match tag.map(classify_tag) {
        None | Some(TagKind::NonSpecific) => SeqKind::Seq,
        Some(TagKind::Core(name)) => match name.as_str() {
            "seq" => SeqKind::Seq,
            "omap" => SeqKind::Omap,
            "pairs" => SeqKind::Pairs,
            "map" | "set" => {
                return Err(Fail::at(
                    mark,
                    "expected a mapping node, but found sequence".into(),
                ));
            }
            "str" | "null" | "bool" | "int" | "float" | "timestamp" | "binary" => {
                return Err(Fail::at(
                    mark,
                    "expected a scalar node, but found sequence".into(),
                ));
            }
            _ => return Err(undefined_tag(&format!("{CORE_PREFIX}{name}"), mark)),
        },
        Some(TagKind::Other(full)) => return Err(undefined_tag(&full, mark)),
    };
    Ok(FrameKind::Seq(kind))
}

fn mapping_kind(tag: Option<&Tag>, mark: Marker) -> Result<FrameKind, Fail> {
    match tag.map(classify_tag) {
        None | Some(TagKind::NonSpecific) => Ok(FrameKind::Map { set: false }),
        Some(TagKind::Core(name)) => match name.as_str() {
            "map" => Ok(FrameKind::Map { set: false }),
            "set" => Ok(FrameKind::Map { set: true }),
            "seq" => Err(Fail::at(
                mark,
                "expected a sequence node, but found mapping".into(),
            )),
            "omap" => Err(Fail::in_context(
                "while constructing an ordered map",
                mark,
                "expected a sequence, but found mapping".into(),
                mark,
            )),
            "pairs" => Err(Fail::in_context(
                "while constructing pairs",
                mark,
                "expected a sequence, but found mapping".into(),
                mark,
            )),
            "str" | "null" | "bool" | "int" | "float" | "timestamp" | "binary" => Err(Fail::at(
                mark,
                "expected a scalar node, but found mapping".into(),
            )),
            _ => Err(undefined_tag(&format!("{CORE_PREFIX}{name}"), mark)),
        },
        Some(TagKind::Other(full)) => Err(undefined_tag(&full, mark)),
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
        let mut map = Map::with_capacity(pairs.len());
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
        return Value::Map(map);
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

// ---------------------------------------------------------------------------
// Implicit typing of plain scalars (ruamel's VersionedResolver, by hand).

enum Resolved {
    Value(Value),
    Special(Special),
}

/// Type a plain scalar. The order of the checks is ruamel's resolver order
/// (bool, float, int, merge, null, timestamp, value); the first match wins.
/// An error means ruamel's constructor fails on the text (it crashes with a
/// Python `ValueError`, for example on `-_`).
fn resolve_plain(text: &str, version: Version) -> Result<Resolved, String> {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return Ok(Resolved::Value(Value::Null));
    };
    // Fast path: most scalars are words that no resolver can match.
    if !matches!(
        first,
        b'0'..=b'9'
            | b'+'
            | b'-'
            | b'.'
            | b'~'
            | b'<'
            | b'='
            | b't'
            | b'T'
            | b'f'
            | b'F'
            | b'n'
            | b'N'
            | b'y'
            | b'Y'
            | b'o'
            | b'O'
    ) {
        return Ok(Resolved::Value(Value::Str(text.to_owned())));
    }
    if let Some(b) = resolve_bool(text, version) {
        return Ok(Resolved::Value(Value::Bool(b)));
    }
    if is_float(bytes, version) {
        return construct_float(text, version).map(|f| Resolved::Value(Value::Float(f)));
    }
    if is_int(bytes, version) {
        return construct_int(text, version).map(Resolved::Value);
    }
    match text {
        "<<" => return Ok(Resolved::Special(Special::Merge)),
        "~" | "null" | "Null" | "NULL" => return Ok(Resolved::Value(Value::Null)),
        "=" => return Ok(Resolved::Special(Special::ValueKey)),
        _ => {}
    }
    if let Some(stamp) = parse_timestamp(bytes, true) {
        return stamp.construct().map(Resolved::Value);
    }
    Ok(Resolved::Value(Value::Str(text.to_owned())))
}

fn resolve_bool(text: &str, version: Version) -> Option<bool> {
    match (text, version) {
        ("true" | "True" | "TRUE", _) => Some(true),
        ("false" | "False" | "FALSE", _) => Some(false),
        ("y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON", Version::V11) => Some(true),
        ("n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF", Version::V11) => Some(false),
        _ => None,
    }
}

/// A tiny cursor for the hand-written matchers below.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a [u8]) -> Self {
        Cursor { s, i: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, ok: impl Fn(u8) -> bool) -> bool {
        match self.peek() {
            Some(c) if ok(c) => {
                self.i += 1;
                true
            }
            _ => false,
        }
    }
    fn eat_many(&mut self, ok: impl Fn(u8) -> bool) -> usize {
        let start = self.i;
        while self.eat(&ok) {}
        self.i - start
    }
    fn eat_lit(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }
    fn sign(&mut self) {
        self.eat(|c| c == b'+' || c == b'-');
    }
    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

fn digit(c: u8) -> bool {
    c.is_ascii_digit()
}
fn digit_us(c: u8) -> bool {
    c.is_ascii_digit() || c == b'_'
}

/// `[eE][-+]?[0-9]+` (sign required when `signed`), if present; false if
/// an exponent starts but is malformed.
fn exponent(cur: &mut Cursor, signed: bool) -> bool {
    if !cur.eat(|c| c == b'e' || c == b'E') {
        return true;
    }
    let has_sign = cur.eat(|c| c == b'+' || c == b'-');
    (has_sign || !signed) && cur.eat_many(digit) > 0
}

fn is_float(s: &[u8], version: Version) -> bool {
    let signed_dot = version == Version::V12;
    // [-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+]?[0-9]+)? | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    let mut cur = Cursor::new(s);
    cur.sign();
    if cur.eat(digit) {
        cur.eat_many(digit_us);
        if cur.eat(|c| c == b'.') {
            cur.eat_many(digit_us);
            return exponent(&mut cur, false) && cur.done();
        }
        if matches!(cur.peek(), Some(b'e' | b'E')) {
            return exponent(&mut cur, false) && cur.done();
        }
        // 1.1 sexagesimal float: [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
        if version == Version::V11 && sexagesimal_tail(&mut cur) && cur.eat(|c| c == b'.') {
            cur.eat_many(digit_us);
            return cur.done();
        }
        return false;
    }
    // [-+]?\.[0-9_]+([eE][-+][0-9]+)? (no sign in 1.1), [-+]?\.(inf|Inf|INF), \.(nan|NaN|NAN)
    let had_sign = cur.i > 0;
    if !cur.eat(|c| c == b'.') {
        return false;
    }
    let rest = &s[cur.i..];
    if matches!(rest, b"inf" | b"Inf" | b"INF") {
        return true;
    }
    if matches!(rest, b"nan" | b"NaN" | b"NAN") {
        return !had_sign;
    }
    if had_sign && !signed_dot {
        return false;
    }
    cur.eat_many(digit_us) > 0 && exponent(&mut cur, true) && cur.done()
}

/// `(:[0-5]?[0-9])+`
fn sexagesimal_tail(cur: &mut Cursor) -> bool {
    let mut groups = 0;
    while cur.peek() == Some(b':') {
        let save = cur.i;
        cur.i += 1;
        let a = cur.peek();
        let b = cur.s.get(cur.i + 1).copied();
        match (a, b) {
            (Some(a @ b'0'..=b'5'), Some(b)) if digit(b) && digit(a) => cur.i += 2,
            (Some(a), _) if digit(a) => cur.i += 1,
            _ => {
                cur.i = save;
                break;
            }
        }
        groups += 1;
    }
    groups > 0
}

fn is_int(s: &[u8], version: Version) -> bool {
    let mut cur = Cursor::new(s);
    cur.sign();
    let body = &s[cur.i..];
    let all = |b: &[u8], ok: fn(u8) -> bool| !b.is_empty() && b.iter().all(|&c| ok(c));
    if body
        .strip_prefix(b"0b")
        .is_some_and(|rest| all(rest, |c| c == b'0' || c == b'1' || c == b'_'))
    {
        return true;
    }
    if body
        .strip_prefix(b"0x")
        .is_some_and(|rest| all(rest, |c| c.is_ascii_hexdigit() || c == b'_'))
    {
        return true;
    }
    match version {
        Version::V12 => {
            if body
                .strip_prefix(b"0o")
                .is_some_and(|rest| all(rest, |c| (b'0'..=b'7').contains(&c) || c == b'_'))
            {
                return true;
            }
            all(body, digit_us)
        }
        Version::V11 => {
            if all(body, |c| (b'0'..=b'7').contains(&c) || c == b'_') || body == b"0" {
                return true;
            }
            let mut cur = Cursor::new(body);
            if !cur.eat(|c| (b'1'..=b'9').contains(&c)) {
                return false;
            }
            cur.eat_many(digit_us);
            if cur.done() {
                return true;
            }
            sexagesimal_tail(&mut cur) && cur.done()
        }
    }
}

/// ruamel's `construct_yaml_int`: `_` removed, `0b`/`0x`/`0o` prefixes, and
/// in YAML 1.1 a leading `0` means octal and `:` means base 60.
fn construct_int(text: &str, version: Version) -> Result<Value, String> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (negative, body) = match cleaned.as_bytes().first() {
        None => return Err("IndexError: string index out of range".into()),
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        Some(_) => (false, cleaned.as_str()),
    };
    let parsed: Result<i128, String> = if body == "0" {
        Ok(0)
    } else if let Some(digits) = body.strip_prefix("0b") {
        python_int(digits, 2)
    } else if let Some(digits) = body.strip_prefix("0x") {
        python_int(digits, 16)
    } else if let Some(digits) = body.strip_prefix("0o") {
        python_int(digits, 8)
    } else if version == Version::V11 && body.starts_with('0') {
        python_int(body, 8)
    } else if version == Version::V11 && body.contains(':') {
        body.split(':').try_fold(0i128, |acc, part| {
            let part = python_int(part, 10)?;
            Ok(acc.saturating_mul(60).saturating_add(part))
        })
    } else {
        python_int(body, 10)
    };
    let magnitude = parsed?;
    let value = if negative {
        magnitude.checked_neg()
    } else {
        Some(magnitude)
    };
    // Python ints are unbounded; ours are i64, so bigger ones stay text.
    Ok(value
        .and_then(|v| i64::try_from(v).ok())
        .map_or_else(|| Value::Str(text.to_owned()), Value::Int))
}

/// Python `int(text, base)` for the digit strings the resolver lets
/// through; saturates instead of growing beyond `i128`.
fn python_int(text: &str, base: u32) -> Result<i128, String> {
    let invalid = || {
        format!(
            "invalid literal for int() with base {base}: {}",
            crate::pystr::str_repr(text)
        )
    };
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if digits.is_empty() {
        return Err(invalid());
    }
    let mut value: i128 = 0;
    for c in digits.chars() {
        let d = c.to_digit(base).ok_or_else(invalid)?;
        value = value
            .saturating_mul(i128::from(base))
            .saturating_add(i128::from(d));
    }
    Ok(if negative { -value } else { value })
}

/// ruamel's `construct_yaml_float`: `_` removed, case folded, `.inf` and
/// `.nan`, base 60 in YAML 1.1, otherwise Python `float()`.
fn construct_float(text: &str, version: Version) -> Result<f64, String> {
    let cleaned: String = text
        .chars()
        .filter(|&c| c != '_')
        .collect::<String>()
        .to_lowercase();
    let (sign, body) = match cleaned.as_bytes().first() {
        None => return Err("IndexError: string index out of range".into()),
        Some(b'-') => (-1.0, &cleaned[1..]),
        Some(b'+') => (1.0, &cleaned[1..]),
        Some(_) => (1.0, cleaned.as_str()),
    };
    if body == ".inf" {
        return Ok(sign * f64::INFINITY);
    }
    if body == ".nan" {
        return Ok(f64::NAN);
    }
    if version == Version::V11 && body.contains(':') {
        let mut value = 0.0;
        for part in body.split(':') {
            value = value * 60.0 + python_float(part)?;
        }
        return Ok(sign * value);
    }
    Ok(sign * python_float(body)?)
}

fn python_float(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let plausible = !trimmed.is_empty()
        && trimmed
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-'));
    plausible
        .then(|| trimmed.parse::<f64>().ok())
        .flatten()
        .ok_or_else(|| {
            format!(
                "could not convert string to float: {}",
                crate::pystr::str_repr(text)
            )
        })
}

/// The parts of a YAML timestamp, as ruamel's `timestamp_regexp` captures them.
#[derive(Debug, PartialEq)]
struct Timestamp<'a> {
    year: u32,
    month: u32,
    day: u32,
    time: Option<Time<'a>>,
}

#[derive(Debug, PartialEq)]
struct Time<'a> {
    hour: u32,
    minute: u32,
    second: u32,
    fraction: &'a [u8],
    /// Offset in minutes east of UTC, if a zone was given.
    offset: Option<i64>,
}

fn number(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |acc, &c| acc * 10 + u32::from(c - b'0'))
}

/// Match a timestamp. `implicit` applies the resolver's stricter form: a
/// date alone needs two-digit month and day.
fn parse_timestamp(s: &[u8], implicit: bool) -> Option<Timestamp<'_>> {
    let mut cur = Cursor::new(s);
    let take = |cur: &mut Cursor, min: usize, max: usize| -> Option<u32> {
        let start = cur.i;
        while cur.i - start < max && cur.eat(digit) {}
        (cur.i - start >= min).then(|| number(&cur.s[start..cur.i]))
    };
    let year = take(&mut cur, 4, 4)?;
    cur.eat_lit(b"-").then_some(())?;
    let month_start = cur.i;
    let month = take(&mut cur, 1, 2)?;
    let month_len = cur.i - month_start;
    cur.eat_lit(b"-").then_some(())?;
    let day_start = cur.i;
    let day = take(&mut cur, 1, 2)?;
    let day_len = cur.i - day_start;
    if cur.done() {
        if implicit && (month_len != 2 || day_len != 2) {
            return None;
        }
        return Some(Timestamp {
            year,
            month,
            day,
            time: None,
        });
    }
    if !cur.eat(|c| c == b'T' || c == b't') && cur.eat_many(|c| c == b' ' || c == b'\t') == 0 {
        return None;
    }
    let hour = take(&mut cur, 1, 2)?;
    cur.eat_lit(b":").then_some(())?;
    let minute = take(&mut cur, 2, 2)?;
    cur.eat_lit(b":").then_some(())?;
    let second = take(&mut cur, 2, 2)?;
    let mut fraction: &[u8] = b"";
    if cur.eat_lit(b".") {
        let start = cur.i;
        cur.eat_many(digit);
        fraction = &s[start..cur.i];
    }
    let mut offset = None;
    if !cur.done() {
        cur.eat_many(|c| c == b' ' || c == b'\t');
        if cur.eat_lit(b"Z") {
            offset = Some(0);
        } else {
            let negative = match cur.peek() {
                Some(b'+') => false,
                Some(b'-') => true,
                _ => return None,
            };
            cur.i += 1;
            let hours = i64::from(take(&mut cur, 1, 2)?);
            let minutes = if cur.eat_lit(b":") {
                i64::from(take(&mut cur, 2, 2)?)
            } else {
                0
            };
            let total = hours * 60 + minutes;
            offset = Some(if negative { -total } else { total });
        }
    }
    cur.done().then_some(Timestamp {
        year,
        month,
        day,
        time: Some(Time {
            hour,
            minute,
            second,
            fraction,
            offset,
        }),
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Timestamp<'_> {
    /// ruamel's `create_timestamp`, rendered as Python `isoformat()`.
    fn construct(&self) -> Result<Value, String> {
        let Timestamp {
            mut year,
            mut month,
            mut day,
            ..
        } = *self;
        if !(1..=9999).contains(&year) {
            return Err(format!("ValueError: year {year} is out of range"));
        }
        if !(1..=12).contains(&month) {
            return Err("ValueError: month must be in 1..12".into());
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err("ValueError: day is out of range for month".into());
        }
        let Some(time) = &self.time else {
            return Ok(Value::Date(format!("{year:04}-{month:02}-{day:02}")));
        };
        let (mut hour, mut minute, mut second) = (time.hour, time.minute, time.second);
        if hour > 23 {
            return Err("ValueError: hour must be in 0..23".into());
        }
        if minute > 59 {
            return Err("ValueError: minute must be in 0..59".into());
        }
        if second > 59 {
            return Err("ValueError: second must be in 0..59".into());
        }
        // Six digits of microseconds, the seventh rounds half up; a carry
        // past 999999 becomes one more second.
        let mut micro = 0u32;
        if !time.fraction.is_empty() {
            let mut six = time.fraction.iter().take(6).copied().collect::<Vec<u8>>();
            six.resize(6, b'0');
            micro = number(&six);
            if time.fraction.get(6).is_some_and(|&c| c > b'4') {
                micro += 1;
            }
        }
        if micro > 999_999 {
            micro = 0;
            second += 1;
            if second == 60 {
                second = 0;
                minute += 1;
            }
            if minute == 60 {
                minute = 0;
                hour += 1;
            }
            if hour == 24 {
                hour = 0;
                day += 1;
            }
            if day > days_in_month(year, month) {
                day = 1;
                month += 1;
            }
            if month == 13 {
                month = 1;
                year += 1;
            }
            if year > 9999 {
                return Err("OverflowError: date value out of range".into());
            }
        }
        let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
        if micro != 0 {
            text.push_str(&format!(".{micro:06}"));
        }
        if let Some(offset) = time.offset {
            if offset.abs() >= 24 * 60 {
                return Err("ValueError: offset must be a timedelta strictly between -timedelta(hours=24) and timedelta(hours=24)".into());
            }
            let sign = if offset < 0 { '-' } else { '+' };
            text.push_str(&format!(
                "{sign}{:02}:{:02}",
                offset.abs() / 60,
                offset.abs() % 60
            ));
        }
        Ok(Value::DateTime(text))
    }
}

/// `!!binary`: ASCII only, whitespace and other non-alphabet characters
/// ignored (Python's `base64.decodebytes`), padding required.
fn decode_binary(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    if !text.is_ascii() {
        return Err("failed to convert base64 data into ascii".into());
    }
    let data: Vec<u8> = text
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
        .collect();
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    engine
        .decode(&data)
        .map_err(|error| format!("failed to decode base64 data: {error}"))
}

// ---------------------------------------------------------------------------
// Python `str()`/`repr()` of loaded values, for ruamel's duplicate-key text.

/// `str(value)` of a key (keys are built deep; lists are tuples).
fn py_str(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        other => py_repr(other),
    }
}

/// `str(value)` of a mapping value at the time ruamel compares keys: nested
/// collections are still empty then.
fn py_str_shallow(value: &Value) -> String {
    match value {
        Value::Seq(_) => "[]".into(),
        Value::Set(_) => "set()".into(),
        Value::Map(_) | Value::KeyedMap(_) => "{}".into(),
        Value::DateTime(text) => text.replacen('T', " ", 1),
        other => py_str(other),
    }
}

fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::pystr::float_repr(*f),
        Value::Str(s) => crate::pystr::str_repr(s),
        Value::Date(d) => d.clone(),
        Value::DateTime(d) => d.replacen('T', " ", 1),
        Value::Binary(bytes) => {
            let mut out = String::from("b'");
            for &b in bytes {
                match b {
                    b'\\' => out.push_str("\\\\"),
                    b'\'' => out.push_str("\\'"),
                    b'\n' => out.push_str("\\n"),
                    b'\r' => out.push_str("\\r"),
                    b'\t' => out.push_str("\\t"),
                    0x20..=0x7e => out.push(char::from(b)),
                    _ => out.push_str(&format!("\\x{b:02x}")),
                }
            }
            out.push('\'');
            out
        }
        Value::Seq(items) => {
            let parts: Vec<String> = items.iter().map(py_repr).collect();
            if parts.len() == 1 {
                format!("({},)", parts[0])
            } else {
                format!("({})", parts.join(", "))
            }
        }
        Value::Set(_) | Value::Map(_) | Value::KeyedMap(_) => py_str_shallow(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_ok(text: &str) -> Value {
        parse(text, Path::new("/t/main.fmf")).expect("parses")
    }

    /// The value of key `k` in a one-key document.
    fn k(text: &str) -> Value {
        match load_ok(&format!("k: {text}")) {
            Value::Map(mut map) => map.shift_remove("k").expect("key k"),
            other => panic!("not a mapping: {other:?}"),
        }
    }

    fn json(text: &str) -> String {
        load_ok(text).to_json().to_string()
    }

    /// The error for `text`: (line, column, message without the header).
    fn fail(text: &str) -> (usize, usize, String) {
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

    fn s(text: &str) -> Value {
        Value::Str(text.into())
    }

    #[test]
    fn booleans_are_yaml_1_2() {
        for text in ["true", "True", "TRUE"] {
            assert_eq!(k(text), Value::Bool(true));
        }
        for text in ["false", "False", "FALSE"] {
            assert_eq!(k(text), Value::Bool(false));
        }
        for text in ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "tRue"] {
            assert_eq!(k(text), s(text));
        }
    }

    #[test]
    fn nulls() {
        for text in ["~", "null", "Null", "NULL", ""] {
            assert_eq!(k(text), Value::Null, "{text:?}");
        }
        assert_eq!(k("nulls"), s("nulls"));
        assert_eq!(load_ok(""), Value::Null);
        assert_eq!(load_ok("# only a comment\n"), Value::Null);
        assert_eq!(load_ok("---\n"), Value::Null);
    }

    #[test]
    fn integers() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("7", 7),
            ("-3", -3),
            ("+4", 4),
            ("017", 17),
            ("0017", 17),
            ("08", 8),
            ("0o17", 15),
            ("0x1F", 31),
            ("-0x1F", -31),
            ("+0x1F", 31),
            ("0b101", 5),
            ("1_000", 1000),
            ("1__0", 10),
            ("1_", 1),
            ("0_", 0),
            ("-0", 0),
            ("-9223372036854775808", i64::MIN),
        ];
        for &(text, value) in cases {
            assert_eq!(k(text), Value::Int(value), "{text}");
        }
        for text in ["0o8", "0b12", "0X1F", "0O7", "_1", "_", "0x", "1e", "0o-1"] {
            assert_eq!(k(text), s(text), "{text}");
        }
        // Deviation: Python ints are unbounded, ours stay text beyond i64.
        assert_eq!(k("9223372036854775808"), s("9223372036854775808"));
    }

    #[test]
    fn floats() {
        let cases: &[(&str, f64)] = &[
            ("1.10", 1.1),
            ("1.0", 1.0),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("1e-3", 0.001),
            ("1.", 1.0),
            ("0.", 0.0),
            ("-2.5", -2.5),
            ("1_0.5", 10.5),
            ("6.02e+23", 6.02e23),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1.e5", 100_000.0),
            (".5e+3", 500.0),
            ("1_e3", 1000.0),
        ];
        for &(text, value) in cases {
            assert_eq!(k(text), Value::Float(value), "{text}");
        }
        assert_eq!(k(".inf"), Value::Float(f64::INFINITY));
        assert_eq!(k("+.INF"), Value::Float(f64::INFINITY));
        assert_eq!(k("-.inf"), Value::Float(f64::NEG_INFINITY));
        for text in [".nan", ".NaN", ".NAN"] {
            assert!(matches!(k(text), Value::Float(f) if f.is_nan()), "{text}");
        }
        // .5e3 needs a signed exponent; -.nan and .Nan are not floats.
        for text in [".5e3", "-.nan", ".Nan", ".", "1e3_", "12.5.3"] {
            assert_eq!(k(text), s(text), "{text}");
        }
        assert_eq!(k("\"1.10\""), s("1.10"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(k("2021-01-02"), Value::Date("2021-01-02".into()));
        let cases = [
            ("2021-01-02 10:00:00", "2021-01-02T10:00:00"),
            ("2021-01-02t10:00:00", "2021-01-02T10:00:00"),
            ("2021-1-2 1:00:00", "2021-01-02T01:00:00"),
            ("2021-01-02   10:00:00", "2021-01-02T10:00:00"),
            ("2021-01-02T10:00:00+02:00", "2021-01-02T10:00:00+02:00"),
            ("2021-01-02T10:00:00Z", "2021-01-02T10:00:00+00:00"),
            ("2021-01-02T10:00:00 Z", "2021-01-02T10:00:00+00:00"),
            ("2021-01-02T10:00:00-00:00", "2021-01-02T10:00:00+00:00"),
            ("2021-01-02T10:00:00+2", "2021-01-02T10:00:00+02:00"),
            ("2021-01-02 10:00:00 -05:30", "2021-01-02T10:00:00-05:30"),
            ("2021-01-02T10:00:00.5", "2021-01-02T10:00:00.500000"),
            ("2021-01-02T10:00:00.", "2021-01-02T10:00:00"),
            ("2021-01-02T10:00:00.000000", "2021-01-02T10:00:00"),
            (
                "2021-01-02T10:00:00.123456789",
                "2021-01-02T10:00:00.123457",
            ),
            ("2021-12-31T23:59:59.9999999", "2022-01-01T00:00:00"),
        ];
        for (text, iso) in cases {
            assert_eq!(k(text), Value::DateTime(iso.into()), "{text}");
        }
        for text in ["2021-1-2", "2021-01-2", "12:30:00", "1:30", "5m", "1h30m"] {
            assert_eq!(k(text), s(text), "{text}");
        }
        assert_eq!(k("\"2021-01-02\""), s("2021-01-02"));
        // Matching but impossible dates are errors, as in ruamel (ValueError).
        for text in ["2021-02-30", "2021-13-01", "2021-01-02T25:00:00"] {
            let (line, column, _) = fail(&format!("k: {text}"));
            assert_eq!((line, column), (1, 4), "{text}");
        }
        assert_eq!(k("2020-02-29"), Value::Date("2020-02-29".into()));
    }

    #[test]
    fn explicit_tags() {
        assert_eq!(k("!!str 1.10"), s("1.10"));
        assert_eq!(k("!!float 1"), Value::Float(1.0));
        assert_eq!(k("!!int \"42\""), Value::Int(42));
        assert_eq!(k("!!bool yes"), Value::Bool(true));
        assert_eq!(k("!!null abc"), Value::Null);
        assert_eq!(k("!!str"), s(""));
        assert_eq!(k("!!timestamp 2021-1-2"), Value::Date("2021-01-02".into()));
        assert_eq!(k("!!binary aGVsbG8="), Value::Binary(b"hello".to_vec()));
        assert_eq!(
            k("!!binary |\n  aGVs\n  bG8="),
            Value::Binary(b"hello".to_vec())
        );
        assert_eq!(k("!!set {b, a}"), Value::Set(vec![s("b"), s("a")]));
        assert_eq!(json("k: !!omap [{z: 1}, {a: 2}]"), r#"{"k":{"z":1,"a":2}}"#);
        assert_eq!(
            json("k: !!pairs [{a: 1}, {a: 2}]"),
            r#"{"k":[["a",1],["a",2]]}"#
        );
        assert_eq!(json("k: !!seq [a]"), r#"{"k":["a"]}"#);
        assert_eq!(json("k: !!map {a: 1}"), r#"{"k":{"a":1}}"#);
        // ruamel resolves the non-specific tag like a plain scalar, even quoted.
        assert_eq!(k("! '12'"), Value::Int(12));
        assert_eq!(k("!<tag:yaml.org,2002:str> 12"), s("12"));
        assert_eq!(
            load_ok("%TAG !e! tag:yaml.org,2002:\n--- !e!int \"1\""),
            Value::Int(1)
        );
    }

    #[test]
    fn unknown_and_mismatched_tags_fail() {
        let (line, column, detail) = fail("x: !custom value\n");
        assert_eq!((line, column), (1, 4));
        assert!(detail.starts_with("could not determine a constructor for the tag '!custom'\n"));
        assert!(
            detail.contains("\n    x: !custom value\n       ^ (line: 1)"),
            "{detail}"
        );
        for text in [
            "!!python/str x",
            "!foo [a]",
            "!!str [a]",
            "!!seq {a: 1}",
            "!!map [a]",
            "!!set [a]",
            "!!omap {a: 1}",
            "!!omap [{a: 1}, {a: 2}]",
            "!!omap [{a: 1, b: 2}]",
            "!!int abc",
            "!!float abc",
            "!!bool x",
            "!!binary é",
            "!!binary a",
            "!!timestamp x",
            "=",
            "<<",
            "-_",
        ] {
            let (line, _, _) = fail(&format!("\nk: {text}"));
            assert_eq!(line, 2, "{text}");
        }
    }

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

    #[test]
    fn yaml_1_1_directive() {
        assert_eq!(
            json(
                "%YAML 1.1\n---\n[yes, On, n, 017, 08, 0_7, 190:20:30, 190:20:30.15, 0b1, 0o17, 1_000]"
            ),
            r#"[true,true,false,15,"08",7,685230,685230.15,1,"0o17",1000]"#
        );
        assert_eq!(json("# c\n%YAML 1.2\n---\n[yes, 017]"), r#"["yes",17]"#);
        assert_eq!(fail("%YAML 1.3\n--- x").0, 1);
        assert_eq!(fail("%YAML 2.0\n--- x").0, 1);
    }

    #[test]
    fn tabs() {
        let (line, column, detail) = fail("x:\n\ta: 1\n");
        assert_eq!(line, 2);
        assert!(column <= 2);
        assert!(!detail.is_empty());
        // Where ruamel's scanner rejects tabs although YAML 1.2 allows them.
        for (text, column) in [
            ("a: \t1", 4),
            ("a: 1\t# c", 5),
            ("a: b\tc", 5),
            ("-\tb", 2),
            ("[a\tb]", 3),
        ] {
            let (line, col, detail) = fail(text);
            assert_eq!((line, col), (1, column), "{text:?}");
            assert!(detail.starts_with("while scanning for the next token\nfound character '\\t'"));
        }
        // ...and where it accepts them.
        assert_eq!(
            json("a: [1,\t2]  # x\t y\n# \tc\nb: \"x\ty\"\nc: |\n  x\ty\n"),
            r#"{"a":[1,2],"b":"x\ty","c":"x\ty\n"}"#
        );
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

    proptest::proptest! {
        #[test]
        fn plain_decimal_ints_round_trip(n in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(k(&n.to_string()), Value::Int(n));
        }

        #[test]
        fn quoted_strings_stay_strings(text in "[ -~]{0,12}") {
            let quoted = format!("'{}'", text.replace('\'', "''"));
            proptest::prop_assert_eq!(k(&quoted), Value::Str(text));
        }
    }
}
