//! The data model of fmf metadata: an order-preserving YAML value.
//!
//! fmf data is whatever YAML 1.2 (as ruamel.yaml loads it) can express, so the
//! value keeps the types that JSON cannot hold (dates, binary, sets, mappings
//! with non-string keys) and keeps mapping order. [`Value::to_json`] renders the
//! canonical JSON encoding of the conformance corpus.
//!
//! # Layout
//!
//! A discovery run holds every file's parsed data at once, so the size of
//! [`Value`] is most of the peak memory. The largest variant sets it: an
//! inline [`Map`] (an `IndexMap`: entry vector, hash table and hasher) made
//! `Value` 72 bytes, even though most values are strings, lists or scalars.
//! [`Value::Map`] therefore holds a `Box<Map>`, which makes `Value` 32 bytes
//! (a `String` or `Vec` plus the tag), at the cost of one small allocation
//! per mapping. [`Map`] uses the zero-sized [`MapHasher`] instead of std's
//! `RandomState` (16 bytes), so that box is 56 bytes, not 72. On the
//! 10,000-test benchmark tree this took the peak RSS from 45 MB to 41 MB
//! with no measurable change in time. The parser already sizes sequences
//! and mappings exactly (no spare capacity to shrink).

use std::hash::BuildHasher;

use indexmap::IndexMap;

/// A mapping with string keys, in insertion (YAML) order.
pub type Map = IndexMap<String, Value, MapHasher>;

/// The hasher of [`Map`] keys: foldhash with a fixed seed, as a zero-sized
/// type so that a map carries no hasher state (see the module's Layout).
///
/// The keys come from local metadata files, not from an adversary, so the
/// HashDoS resistance that std's randomly seeded SipHash buys is not
/// needed. Iteration order is insertion order either way, so the hasher
/// never shows in output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapHasher;

impl BuildHasher for MapHasher {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        foldhash::fast::FixedState::default().build_hasher()
    }
}

/// One YAML value, typed the way python fmf 1.7 (ruamel.yaml, YAML 1.2) types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` / `false` (YAML 1.2: `yes`/`no` are strings).
    Bool(bool),
    /// An integer. Python ints are unbounded; values beyond `i64` are rare in
    /// metadata and are loaded as strings by our YAML layer.
    Int(i64),
    /// A float, including `inf` and `nan`.
    Float(f64),
    /// A string.
    Str(String),
    /// A YAML timestamp without time, kept as its ISO form `YYYY-MM-DD`.
    Date(String),
    /// A YAML timestamp with time, kept as Python's `datetime.isoformat()`.
    DateTime(String),
    /// `!!binary` data.
    Binary(Vec<u8>),
    /// A sequence.
    Seq(Vec<Value>),
    /// A `!!set`, items in YAML order.
    Set(Vec<Value>),
    /// A mapping whose keys are all strings. Boxed to keep `Value` small
    /// (see the module's Layout).
    Map(Box<Map>),
    /// A mapping with at least one non-string key, pairs in YAML order.
    KeyedMap(Vec<(Value, Value)>),
}

impl Value {
    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The mapping, if this is a [`Value::Map`].
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The sequence items, if this is a [`Value::Seq`].
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The bool, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The Python type name of this value (`str`, `NoneType`, `list`, ...), as
    /// python fmf quotes it in error messages.
    pub fn py_type_name(&self) -> &'static str {
        match self {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Date(_) => "date",
            Value::DateTime(_) => "datetime",
            Value::Binary(_) => "bytes",
            Value::Seq(_) => "list",
            Value::Set(_) => "set",
            Value::Map(_) | Value::KeyedMap(_) => "dict",
        }
    }

    /// Python `==` between two values: `1 == 1.0 == True`, lists and dicts
    /// compare item-wise. fmf's `list-` and YAML duplicate-key detection
    /// rely on this.
    pub fn py_eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self.as_number(), other.as_number()) {
            (Some(a), Some(b)) => return a == b,
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => {}
        }
        match (self, other) {
            (Null, Null) => true,
            (Str(a), Str(b)) => a == b,
            (Date(a), Date(b)) | (DateTime(a), DateTime(b)) => a == b,
            (Binary(a), Binary(b)) => a == b,
            (Seq(a), Seq(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.py_eq(y)),
            (Set(a), Set(b)) => {
                a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| x.py_eq(y)))
            }
            (Map(a), Map(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v.py_eq(w)))
            }
            (KeyedMap(_) | Map(_), KeyedMap(_) | Map(_)) => {
                let (a, b) = (self.map_pairs(), other.map_pairs());
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.iter().any(|(k2, v2)| k.py_eq(k2) && v.py_eq(v2)))
            }
            _ => false,
        }
    }

    /// The numeric value of a bool, int or float (Python's numeric tower).
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            #[expect(
                clippy::cast_precision_loss,
                reason = "Python compares int and float by value; i64 beyond 2^53 in metadata is not a realistic case"
            )]
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn map_pairs(&self) -> Vec<(Value, Value)> {
        match self {
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                .collect(),
            Value::KeyedMap(p) => p.clone(),
            _ => Vec::new(),
        }
    }

    /// The canonical JSON encoding of the conformance corpus: JSON types as
    /// they are, everything else as a tagged object (`{"$date": ...}`,
    /// `{"$datetime": ...}`, `{"$binary": base64}`, `{"$float": "nan"}`,
    /// `{"$set": [...sorted]}`, `{"$map": [[k, v], ...]}`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => {
                if f.is_nan() {
                    tagged("$float", J::from("nan"))
                } else if f.is_infinite() {
                    tagged("$float", J::from(if *f > 0.0 { "inf" } else { "-inf" }))
                } else {
                    serde_json::Number::from_f64(*f).map_or(J::Null, J::Number)
                }
            }
            Value::Str(s) => J::String(s.clone()),
            Value::Date(d) => tagged("$date", J::from(d.as_str())),
            Value::DateTime(d) => tagged("$datetime", J::from(d.as_str())),
            Value::Binary(b) => {
                use base64::Engine as _;
                tagged(
                    "$binary",
                    J::from(base64::engine::general_purpose::STANDARD.encode(b)),
                )
            }
            Value::Seq(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Set(items) => {
                let mut encoded: Vec<(String, J)> = items
                    .iter()
                    .map(|v| {
                        let j = v.to_json();
                        (python_json_dumps(&j), j)
                    })
                    .collect();
                encoded.sort_by(|a, b| a.0.cmp(&b.0));
                tagged(
                    "$set",
                    J::Array(encoded.into_iter().map(|(_, j)| j).collect()),
                )
            }
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Value::KeyedMap(pairs) => tagged(
                "$map",
                J::Array(
                    pairs
                        .iter()
                        .map(|(k, v)| J::Array(vec![k.to_json(), v.to_json()]))
                        .collect(),
                ),
            ),
        }
    }

    /// Build a value from JSON (used for `--data` and `--additional-rules`).
    /// JSON objects keep their order.
    pub fn from_json(json: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::Seq(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(Box::new(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            )),
        }
    }
}

fn tagged(tag: &str, value: serde_json::Value) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert(tag.to_owned(), value);
    serde_json::Value::Object(object)
}

/// `json.dumps(value)` with Python's default separators, used only as the
/// sort key of `$set` items (the oracle sorts by it).
fn python_json_dumps(value: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match value {
        J::Array(items) => {
            let parts: Vec<String> = items.iter().map(python_json_dumps).collect();
            format!("[{}]", parts.join(", "))
        }
        J::Object(object) => {
            let parts: Vec<String> = object
                .iter()
                .map(|(k, v)| format!("{}: {}", J::String(k.clone()), python_json_dumps(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_stays_small() {
        // The module's Layout section explains these sizes; a new variant
        // or a change to `Map` that grows them costs memory on large trees.
        assert_eq!(std::mem::size_of::<Value>(), 32);
        assert_eq!(std::mem::size_of::<Map>(), 56);
    }

    #[test]
    fn python_numeric_equality() {
        assert!(Value::Int(1).py_eq(&Value::Bool(true)));
        assert!(Value::Int(1).py_eq(&Value::Float(1.0)));
        assert!(!Value::Int(1).py_eq(&Value::Str("1".into())));
    }

    #[test]
    fn tagged_encoding() {
        assert_eq!(
            Value::Float(f64::NAN).to_json().to_string(),
            r#"{"$float":"nan"}"#
        );
        assert_eq!(
            Value::Date("2021-01-02".into()).to_json().to_string(),
            r#"{"$date":"2021-01-02"}"#
        );
        assert_eq!(Value::Float(1.0).to_json().to_string(), "1.0");
    }
}
