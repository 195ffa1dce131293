//! Implicit typing of plain scalars (ruamel's VersionedResolver, by hand):
//! null, bool, int, float and timestamp under YAML 1.2 or 1.1 rules, and their constructors.

use crate::value::Value;

/// The typing rules in force: YAML 1.2 unless a `%YAML 1.1` directive says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    V11,
    V12,
}

/// Plain scalars that ruamel resolves to tags without a constructor: they
/// are only valid as mapping keys (`<<` merges, `=` becomes the key "=").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Special {
    None,
    Merge,
    ValueKey,
}

pub(super) enum Resolved {
    Value(Value),
    Special(Special),
}

/// Type a plain scalar. The order of the checks is ruamel's resolver order
/// (bool, float, int, merge, null, timestamp, value); the first match wins.
/// An error means ruamel's constructor fails on the text (it crashes with a
/// Python `ValueError`, for example on `-_`).
pub(super) fn resolve_plain(text: &str, version: Version) -> Result<Resolved, String> {
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
pub(super) fn construct_int(text: &str, version: Version) -> Result<Value, String> {
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
pub(super) fn construct_float(text: &str, version: Version) -> Result<f64, String> {
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
pub(super) struct Timestamp<'a> {
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
pub(super) fn parse_timestamp(s: &[u8], implicit: bool) -> Option<Timestamp<'_>> {
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
    pub(super) fn construct(&self) -> Result<Value, String> {
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
#[cfg(test)]
mod tests {
    use crate::value::Value;
    use crate::yaml::tests::{fail, k, load_ok, s};

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
