//! Python `str()` and `repr()` of [`crate::Value`]s (`True`, `None`, `1.0`,
//! `1e+16`, `{'a': 1}`), which fmf filters and tmt environments depend on.
//!
//! Known approximations: Python's `str.isprintable()` is approximated by a
//! table of the common non-printable ranges (controls, format characters,
//! separators, private use), and sets print in YAML order where Python
//! prints them in hash order (which is not stable across runs anyway).

use std::fmt::Write as _;

use crate::value::Value;

impl Value {
    /// Python `str(value)`: strings as they are, dates in ISO form,
    /// everything else like [`Value::py_repr`].
    pub fn py_str(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Date(d) => d.clone(),
            Value::DateTime(d) => datetime_str(d),
            _ => self.py_repr(),
        }
    }

    /// Python `repr(value)`.
    pub fn py_repr(&self) -> String {
        let mut out = String::new();
        write_repr(self, &mut out);
        out
    }
}

/// Python `repr(float)`: the shortest string that round-trips, in fixed
/// notation for exponents -4..16 and in scientific notation (`1e+16`,
/// `1.5e-05`) outside.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // `{:e}` gives the shortest round-trip digits ("-1.2345e-5"), but not
    // always the closest of the shortest candidates, which Python picks:
    // the correctly rounded form with the same digit count is that one.
    let shortest = format!("{f:e}");
    let count = shortest
        .split('e')
        .next()
        .map_or(0, |m| m.chars().filter(char::is_ascii_digit).count());
    let rounded = format!("{:.*e}", count.saturating_sub(1), f);
    let sci = if rounded
        .parse::<f64>()
        .is_ok_and(|back| back.to_bits() == f.to_bits())
    {
        rounded
    } else {
        shortest
    };
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::from(sign);
    if !(-4..16).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
        return out;
    }
    let point = exponent + 1; // digits before the decimal point
    if point <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let point = point.unsigned_abs() as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            out.push_str(&"0".repeat(point - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Python `repr(str)`: single quotes unless the text contains `'` and no `"`.
pub fn str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_str_repr(s, &mut out);
    out
}

fn write_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&float_repr(*f)),
        Value::Str(s) => write_str_repr(s, out),
        Value::Date(d) => out.push_str(&date_repr(d)),
        Value::DateTime(d) => out.push_str(&datetime_repr(d)),
        Value::Binary(bytes) => write_bytes_repr(bytes, out),
        Value::Seq(items) => {
            out.push('[');
            write_items(items, out);
            out.push(']');
        }
        Value::Set(items) => {
            if items.is_empty() {
                out.push_str("set()");
            } else {
                out.push('{');
                write_items(items, out);
                out.push('}');
            }
        }
        Value::Map(map) => {
            out.push('{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_str_repr(key, out);
                out.push_str(": ");
                write_repr(item, out);
            }
            out.push('}');
        }
        Value::KeyedMap(pairs) => {
            out.push('{');
            for (index, (key, item)) in pairs.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_repr(key, out);
                out.push_str(": ");
                write_repr(item, out);
            }
            out.push('}');
        }
    }
}

fn write_items(items: &[Value], out: &mut String) {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        write_repr(item, out);
    }
}

fn write_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c == ' ' || is_printable(c) => out.push(c),
            c => {
                let code = u32::from(c);
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
        }
    }
    out.push(quote);
}

fn write_bytes_repr(bytes: &[u8], out: &mut String) {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push('b');
    out.push(char::from(quote));
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b == quote => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            b => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push(char::from(quote));
}

/// Python's `str.isprintable()` for one character, approximated: Cc, Cf,
/// Zs (except space), Zl, Zp, Co and the noncharacters are not printable.
fn is_printable(c: char) -> bool {
    let code = u32::from(c);
    if c.is_control() {
        return false;
    }
    let separators = matches!(
        code,
        0xa0 | 0x1680 | 0x2000..=0x200a | 0x2028 | 0x2029 | 0x202f | 0x205f | 0x3000
    );
    let format = matches!(
        code,
        0xad | 0x600..=0x605
            | 0x61c
            | 0x6dd
            | 0x70f
            | 0x890..=0x891
            | 0x8e2
            | 0x180e
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
    );
    let private = matches!(code, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd);
    let noncharacter = (code & 0xfffe) == 0xfffe || (0xfdd0..=0xfdef).contains(&code);
    // Large unassigned areas (Cn); unassigned points inside assigned blocks
    // are not known here.
    let unassigned = matches!(code, 0x2fa20..=0x2ffff | 0x323b0..=0xdffff | 0xe0080..=0xe00ff | 0xe01f0..=0xeffff);
    !(separators || format || private || noncharacter || unassigned)
}

fn number(text: &str) -> u32 {
    text.parse().unwrap_or(0)
}

/// `datetime.date(2021, 1, 2)` from `2021-01-02`.
fn date_repr(iso: &str) -> String {
    let mut parts = iso.splitn(3, '-');
    let (y, m, d) = (
        number(parts.next().unwrap_or("")),
        number(parts.next().unwrap_or("")),
        number(parts.next().unwrap_or("")),
    );
    format!("datetime.date({y}, {m}, {d})")
}

/// Python `str(datetime)`: the ISO form with a space between date and time.
fn datetime_str(iso: &str) -> String {
    iso.replacen('T', " ", 1)
}

/// `datetime.datetime(2021, 1, 2, 10, 0[, s[, us]][, tzinfo=...])` from the
/// ISO form `YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM]`.
fn datetime_repr(iso: &str) -> String {
    let (date, time) = iso.split_once(['T', ' ']).unwrap_or((iso, "00:00:00"));
    let date_part = date_repr(date);
    let ymd = date_part
        .strip_prefix("datetime.date(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or("");
    // Split off the UTC offset, if any.
    let offset_at = time.find(['+', '-', 'Z']);
    let (clock, offset) = match offset_at {
        Some(at) => (&time[..at], Some(&time[at..])),
        None => (time, None),
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut fields = hms.split(':');
    let (h, mi, s) = (
        number(fields.next().unwrap_or("")),
        number(fields.next().unwrap_or("")),
        number(fields.next().unwrap_or("")),
    );
    let micros = if fraction.is_empty() {
        0
    } else {
        let padded: String = fraction.chars().chain("000000".chars()).take(6).collect();
        number(&padded)
    };
    let mut out = format!("datetime.datetime({ymd}, {h}, {mi}");
    if s != 0 || micros != 0 {
        let _ = write!(out, ", {s}");
    }
    if micros != 0 {
        let _ = write!(out, ", {micros}");
    }
    if let Some(offset) = offset {
        let seconds = parse_offset(offset);
        if seconds == 0 {
            out.push_str(", tzinfo=datetime.timezone.utc");
        } else if seconds > 0 {
            let _ = write!(
                out,
                ", tzinfo=datetime.timezone(datetime.timedelta(seconds={seconds}))"
            );
        } else {
            // Python normalizes negative timedeltas to days=-1 plus seconds.
            let days = seconds.div_euclid(86400);
            let rest = seconds.rem_euclid(86400);
            let delta = if rest == 0 {
                format!("days={days}")
            } else {
                format!("days={days}, seconds={rest}")
            };
            let _ = write!(
                out,
                ", tzinfo=datetime.timezone(datetime.timedelta({delta}))"
            );
        }
    }
    out.push(')');
    out
}

fn parse_offset(offset: &str) -> i64 {
    if offset == "Z" {
        return 0;
    }
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut fields = offset[1..].split(':');
    let h: i64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let m: i64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    sign * (h * 3600 + m * 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Map;
    use proptest::prelude::*;

    #[test]
    fn scalars() {
        assert_eq!(Value::Bool(true).py_str(), "True");
        assert_eq!(Value::Null.py_str(), "None");
        assert_eq!(Value::Int(-3).py_str(), "-3");
        assert_eq!(Value::Str("x".into()).py_str(), "x");
        assert_eq!(Value::Str("x".into()).py_repr(), "'x'");
        assert_eq!(Value::Date("2021-01-02".into()).py_str(), "2021-01-02");
        assert_eq!(
            Value::Date("2021-01-02".into()).py_repr(),
            "datetime.date(2021, 1, 2)"
        );
        assert_eq!(
            Value::DateTime("2021-01-02T10:00:00".into()).py_repr(),
            "datetime.datetime(2021, 1, 2, 10, 0)"
        );
        assert_eq!(
            Value::DateTime("2021-01-02T10:00:00".into()).py_str(),
            "2021-01-02 10:00:00"
        );
        assert_eq!(Value::Binary(b"a'\x00".to_vec()).py_repr(), r#"b"a'\x00""#);
    }

    #[test]
    fn floats() {
        for (f, text) in [
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (0.001, "0.001"),
            (-0.0, "-0.0"),
            (8.5, "8.5"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (1500000000000000.2, "1500000000000000.2"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(Value::Float(f).py_str(), text);
        }
    }

    #[test]
    fn strings() {
        assert_eq!(str_repr("it's"), r#""it's""#);
        assert_eq!(str_repr(r#"it's "x""#), r#"'it\'s "x"'"#);
        assert_eq!(str_repr("a\nb\\"), r"'a\nb\\'");
        assert_eq!(str_repr("ť\u{7f}\u{a0}"), r"'ť\x7f\xa0'");
        assert_eq!(str_repr("\u{200b}"), r"'\u200b'");
    }

    #[test]
    fn containers() {
        let list = Value::Seq(vec![
            Value::Int(1),
            Value::Str("a".into()),
            Value::Bool(true),
            Value::Null,
            Value::Float(2.0),
        ]);
        assert_eq!(list.py_str(), "[1, 'a', True, None, 2.0]");
        let mut map = Map::default();
        map.insert("a".into(), Value::Int(1));
        assert_eq!(Value::Map(Box::new(map)).py_str(), "{'a': 1}");
        assert_eq!(
            Value::Set(vec![Value::Int(1), Value::Int(2)]).py_str(),
            "{1, 2}"
        );
        assert_eq!(Value::Set(vec![]).py_str(), "set()");
        assert_eq!(
            Value::KeyedMap(vec![(Value::Int(1), Value::Str("a".into()))]).py_str(),
            "{1: 'a'}"
        );
    }

    proptest! {
        #[test]
        fn float_repr_round_trips(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let text = float_repr(f);
            let back: f64 = text.parse().expect("parses");
            prop_assert_eq!(back.to_bits(), f.to_bits());
        }
    }
}
