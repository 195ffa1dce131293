//! Explicit tags: `!!str`, `!!int`, `!!binary`, `!!set`, `!!omap`, `!!pairs`
//! and the rest, the non-specific `!`, and the error for any other tag.

use saphyr_parser::{Marker, ScalarStyle, Tag};

use super::Fail;
use super::build::{FrameKind, Loader, Node, SeqKind};
use super::resolve::{Resolved, construct_float, construct_int, parse_timestamp, resolve_plain};
use crate::value::Value;

// The scalar constructor of the loader lives here because it is mostly tag handling.
impl Loader {
    pub(super) fn scalar(
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

pub(super) fn undefined_tag(tag: &str, mark: Marker) -> Fail {
    Fail::at(
        mark,
        format!(
            "could not determine a constructor for the tag {}",
            crate::pystr::str_repr(tag)
        ),
    )
}

pub(super) const CORE_PREFIX: &str = "tag:yaml.org,2002:";

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

pub(super) fn sequence_kind(tag: Option<&Tag>, mark: Marker) -> Result<FrameKind, Fail> {
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

pub(super) fn mapping_kind(tag: Option<&Tag>, mark: Marker) -> Result<FrameKind, Fail> {
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
#[cfg(test)]
mod tests {
    use crate::value::Value;
    use crate::yaml::tests::{fail, json, k, load_ok, s};

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
}
