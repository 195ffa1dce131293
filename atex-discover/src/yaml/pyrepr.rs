//! Python `str()`/`repr()` of loaded values, for ruamel's duplicate-key text.

use crate::value::Value;

/// `str(value)` of a key (keys are built deep; lists are tuples).
pub(super) fn py_str(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        other => py_repr(other),
    }
}

/// `str(value)` of a mapping value at the time ruamel compares keys: nested
/// collections are still empty then.
pub(super) fn py_str_shallow(value: &Value) -> String {
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
