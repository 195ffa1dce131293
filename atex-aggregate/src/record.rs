//! One incoming Result record, parsed without copying (strings borrowed from
//! the input line where they have no escapes, custom keys kept as raw JSON),
//! and the two line formats a store holds: ATEX's array line and our full
//! record.
//!
//! Parsing borrows because a million-result ingest must not allocate a
//! dozen strings per record; [`Incoming`] accepts exactly what
//! [`atex_shared::records::TestResult`] accepts (plus `null` where that one
//! has an empty default), and [`write_record`] writes the same keys in the
//! same order as serializing a `TestResult` does.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A string borrowed from the input when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// One Result record as read from a line (see
/// [`atex_shared::records::TestResult`] for the meaning of each field).
#[derive(Debug, Default, Clone)]
pub struct Incoming<'a> {
    /// The test's name.
    pub test: Cow<'a, str>,
    /// The subtest's name, `None` for the test itself.
    pub name: Option<Cow<'a, str>>,
    /// The verdict; `None` when the record has none (absent or `null`),
    /// which ATEX keeps as `null` and which counts as not passed.
    pub status: Option<Cow<'a, str>>,
    /// The note.
    pub note: Option<Cow<'a, str>>,
    /// File names relative to the result's directory under `artifacts`.
    pub files: Vec<Cow<'a, str>>,
    /// The platform.
    pub platform: Cow<'a, str>,
    /// The machine's id.
    pub machine: Cow<'a, str>,
    /// The test's artifacts directory (files are under `files/` in it).
    pub artifacts: Cow<'a, str>,
    /// The test script's exit code.
    pub exit_code: Option<i32>,
    /// When the test started.
    pub started: Cow<'a, str>,
    /// Seconds from start to the result.
    pub duration: f64,
    /// The attempt number.
    pub attempt: u32,
    /// Custom keys, verbatim, in their order.
    pub extra: Vec<(Cow<'a, str>, &'a RawValue)>,
}

fn cow(s: Option<Str<'_>>) -> Cow<'_, str> {
    s.map(|s| s.0).unwrap_or(Cow::Borrowed(""))
}

impl<'de> Deserialize<'de> for Incoming<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Incoming<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Result record (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut r = Incoming::default();
                let mut test = false;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match key.as_str() {
                        "test" => {
                            r.test = map.next_value::<Str<'de>>()?.0;
                            test = true;
                        }
                        // Optional, as in ATEX 1.2: a result without a
                        // status is stored with a null one.
                        "status" => r.status = map.next_value::<Option<Str<'de>>>()?.map(|s| s.0),
                        "name" => r.name = map.next_value::<Option<Str<'de>>>()?.map(|s| s.0),
                        "note" => r.note = map.next_value::<Option<Str<'de>>>()?.map(|s| s.0),
                        "files" => {
                            r.files = map
                                .next_value::<Option<Vec<Str<'de>>>>()?
                                .unwrap_or_default()
                                .into_iter()
                                .map(|s| s.0)
                                .collect();
                        }
                        "platform" => r.platform = cow(map.next_value()?),
                        "machine" => r.machine = cow(map.next_value()?),
                        "artifacts" => r.artifacts = cow(map.next_value()?),
                        "started" => r.started = cow(map.next_value()?),
                        "exit_code" => r.exit_code = map.next_value()?,
                        "duration" => r.duration = map.next_value::<Option<f64>>()?.unwrap_or(0.0),
                        "attempt" => r.attempt = map.next_value::<Option<u32>>()?.unwrap_or(0),
                        _ => {
                            let value: &'de RawValue = map.next_value()?;
                            r.extra.push((key.0, value));
                        }
                    }
                }
                if !test {
                    return Err(de::Error::missing_field("test"));
                }
                Ok(r)
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl Incoming<'_> {
    /// Whether the record's custom keys include `key`.
    pub fn has_extra(&self, key: &str) -> bool {
        self.extra.iter().any(|(k, _)| k == key)
    }
}

/// The fields of a stored result that every format has (ATEX's line):
/// what `summary`, `convert` and `--append` read back from a store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line {
    /// The platform.
    pub platform: String,
    /// The status (`None`: the result had none).
    pub status: Option<String>,
    /// The test name as stored (with ` (N)` for a re-ingested test).
    pub test: String,
    /// The subtest name.
    pub subtest: Option<String>,
    /// The stored file names.
    pub files: Vec<String>,
    /// The note.
    pub note: Option<String>,
    /// Seconds from start to the result (records only; 0 in ATEX lines).
    pub duration: f64,
}

/// Why a stored line could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LineError(String);

impl Line {
    /// Parse a stored line: an ATEX array line
    /// `[platform, status, test, subtest, files, note]` or one of our
    /// Result records (an object).
    pub fn parse(text: &str) -> Result<Line, LineError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            #[derive(Deserialize)]
            struct Array(
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<Vec<String>>,
                Option<String>,
            );
            let a: Array = serde_json::from_str(text).map_err(|e| LineError(e.to_string()))?;
            Ok(Line {
                platform: a.0.unwrap_or_default(),
                status: a.1,
                test: a.2.unwrap_or_default(),
                subtest: a.3,
                files: a.4.unwrap_or_default(),
                note: a.5,
                duration: 0.0,
            })
        } else {
            let r: Incoming<'_> =
                serde_json::from_str(text).map_err(|e| LineError(e.to_string()))?;
            Ok(Line::from_incoming(&r))
        }
    }

    /// The line of a Result record (its files and test name as they are).
    pub fn from_incoming(r: &Incoming<'_>) -> Line {
        Line {
            platform: r.platform.to_string(),
            status: r.status.as_ref().map(|s| s.to_string()),
            test: r.test.to_string(),
            subtest: r.name.as_ref().map(|s| s.to_string()),
            files: r.files.iter().map(|s| s.to_string()).collect(),
            note: r.note.as_ref().map(|s| s.to_string()),
            duration: r.duration,
        }
    }

    /// The status, `""` when there is none.
    pub fn status_str(&self) -> &str {
        self.status.as_deref().unwrap_or("")
    }
}

/// Append `s` to `out` as a JSON string the way Python's `json.dumps`
/// writes it (`ensure_ascii`): non-ASCII as lowercase `\uXXXX` (surrogate
/// pairs above U+FFFF), `\n \r \t \b \f \" \\` short, other controls and
/// DEL as `\u00XX`. With `html_safe`, `<`, `>` and `&` are escaped too, so
/// the string can sit inside an HTML `<script>`.
pub fn push_json_str(out: &mut Vec<u8>, s: &str, html_safe: bool) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // One look-up per byte decides (four comparisons did: the hottest
    // loop of an ingest).
    let table = if html_safe { &ESCAPE_HTML } else { &ESCAPE };
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !table[usize::from(b)] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b if b < 0x80 => push_u_escape(out, u16::from(b)),
            // The first byte of a character beyond ASCII (the table skips
            // continuation bytes).
            _ => {
                let c = s[i..].chars().next().unwrap_or('\u{fffd}');
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_u_escape(out, *unit);
                }
                start = i + c.len_utf8();
                continue;
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Which bytes [`push_json_str`] escapes: controls, `"`, `\\`, DEL, and
/// the first byte of each non-ASCII character (continuation bytes are
/// passed over: the character is escaped from its first byte).
const ESCAPE: [bool; 256] = escape_table(false);
/// [`ESCAPE`] plus `<`, `>` and `&`.
const ESCAPE_HTML: [bool; 256] = escape_table(true);

const fn escape_table(html_safe: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0usize;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte < 0x20
            || byte == b'"'
            || byte == b'\\'
            || byte == 0x7f
            || byte >= 0xc0
            || (html_safe && (byte == b'<' || byte == b'>' || byte == b'&'));
        b += 1;
    }
    table
}

fn push_u_escape(out: &mut Vec<u8>, unit: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[usize::from((unit >> shift) & 0xf)]);
    }
}

fn push_opt(out: &mut Vec<u8>, s: Option<&str>, html_safe: bool) {
    match s {
        Some(s) => push_json_str(out, s, html_safe),
        None => out.extend_from_slice(b"null"),
    }
}

/// Append ATEX's array `[platform, status, test, subtest, files, note]`
/// (no newline), byte for byte as ATEX's `json.dumps` writes it. A missing
/// status is written as `null`, as ATEX writes a result that had none.
#[expect(
    clippy::too_many_arguments,
    reason = "the six fields of ATEX's line, borrowed from wherever they are"
)]
pub fn write_atex_line<S: AsRef<str>>(
    out: &mut Vec<u8>,
    platform: &str,
    status: Option<&str>,
    test: &str,
    subtest: Option<&str>,
    files: &[S],
    note: Option<&str>,
    html_safe: bool,
) {
    out.push(b'[');
    push_json_str(out, platform, html_safe);
    out.extend_from_slice(b", ");
    push_opt(out, status, html_safe);
    out.extend_from_slice(b", ");
    push_json_str(out, test, html_safe);
    out.extend_from_slice(b", ");
    push_opt(out, subtest, html_safe);
    out.extend_from_slice(b", [");
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        push_json_str(out, f.as_ref(), html_safe);
    }
    out.extend_from_slice(b"], ");
    push_opt(out, note, html_safe);
    out.push(b']');
}

/// A borrowed Result record to write: serializes with the keys of
/// [`atex_shared::records::TestResult`] in its order, custom keys last.
#[derive(Debug)]
pub struct RecordOut<'r, 'a> {
    /// The record as read.
    pub incoming: &'r Incoming<'a>,
    /// The stored test name.
    pub test: &'r str,
    /// The stored file names.
    pub files: &'r [String],
    /// The stored artifacts directory.
    pub artifacts: &'r str,
}

impl Serialize for RecordOut<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.incoming;
        let mut m = s.serialize_map(Some(12 + r.extra.len()))?;
        m.serialize_entry("test", self.test)?;
        m.serialize_entry("name", &r.name)?;
        m.serialize_entry("status", &r.status)?;
        m.serialize_entry("note", &r.note)?;
        m.serialize_entry("files", self.files)?;
        m.serialize_entry("platform", &r.platform)?;
        m.serialize_entry("machine", &r.machine)?;
        m.serialize_entry("artifacts", self.artifacts)?;
        m.serialize_entry("exit_code", &r.exit_code)?;
        m.serialize_entry("started", &r.started)?;
        m.serialize_entry("duration", &r.duration)?;
        m.serialize_entry("attempt", &r.attempt)?;
        for (k, v) in &r.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Append `record` as one compact JSON object (no newline).
pub fn write_record(
    out: &mut Vec<u8>,
    record: &RecordOut<'_, '_>,
) -> Result<(), serde_json::Error> {
    serde_json::to_writer(out, record)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use atex_shared::records::TestResult;
    use proptest::prelude::*;

    fn line<S: AsRef<str>>(
        p: &str,
        s: Option<&str>,
        t: &str,
        sub: Option<&str>,
        f: &[S],
        n: Option<&str>,
    ) -> String {
        let mut out = Vec::new();
        write_atex_line(&mut out, p, s, t, sub, f, n, false);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn atex_line_matches_python_json_dumps() {
        // The spec's example, as json.dumps writes it.
        assert_eq!(
            line(
                "10.2@s390x",
                Some("fail"),
                "/unit/syscalls",
                Some("connect"),
                &["test.txt"],
                Some("Got errno: ECONNABORTED")
            ),
            r#"["10.2@s390x", "fail", "/unit/syscalls", "connect", ["test.txt"], "Got errno: ECONNABORTED"]"#
        );
        assert_eq!(
            line::<&str>("p", None, "/t", None, &[], None),
            r#"["p", null, "/t", null, [], null]"#
        );
        // An empty status is a status: kept as given.
        assert_eq!(
            line::<&str>("p", Some(""), "/t", None, &[], None),
            r#"["p", "", "/t", null, [], null]"#
        );
        // json.dumps("é\x01\x7f😀\"\\\n") with ensure_ascii
        assert_eq!(
            line::<&str>(
                "p",
                Some("pass"),
                "/t",
                None,
                &[],
                Some("é\u{1}\u{7f}😀\"\\\n\t")
            ),
            r#"["p", "pass", "/t", null, [], "\u00e9\u0001\u007f\ud83d\ude00\"\\\n\t"]"#
        );
    }

    #[test]
    fn html_safe_escapes_markup() {
        let mut out = Vec::new();
        push_json_str(&mut out, "</script><!--&", true);
        assert_eq!(out, br#""\u003c/script\u003e\u003c!--\u0026""#);
    }

    #[test]
    fn incoming_borrows_and_keeps_custom_keys() {
        let text = r#"{"test": "/t", "status": "pass", "rerun": [1, {"a": 2}], "name": "s\"x", "files": ["a"], "duration": 1.5}"#;
        let r: Incoming<'_> = serde_json::from_str(text).unwrap();
        assert!(matches!(r.test, Cow::Borrowed(_)));
        assert_eq!(r.name.as_deref(), Some("s\"x"));
        assert_eq!(r.extra.len(), 1);
        assert_eq!(r.extra[0].1.get(), r#"[1, {"a": 2}]"#);
        assert_eq!(r.duration, 1.5);
        // No status (absent or null) is accepted, as ATEX 1.2 accepts it.
        for text in [r#"{"test": "/t"}"#, r#"{"test": "/t", "status": null}"#] {
            let r: Incoming<'_> = serde_json::from_str(text).unwrap();
            assert_eq!(r.status, None, "{text}");
        }
        assert!(
            serde_json::from_str::<Incoming<'_>>(r#"{"status": "x"}"#)
                .unwrap_err()
                .to_string()
                .contains("test")
        );
        assert!(serde_json::from_str::<Incoming<'_>>(r#"{"test": 1, "status": "x"}"#).is_err());
    }

    fn arb_result() -> impl Strategy<Value = TestResult> {
        let s = "[a-z/é\"\\\\ \n<]{0,8}";
        (
            s,
            proptest::option::of(s),
            proptest::option::of(s),
            proptest::option::of(s),
            proptest::collection::vec(s, 0..3),
            s,
            any::<Option<i32>>(),
            -1e6f64..1e6,
            any::<u32>(),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(
                |(
                    test,
                    name,
                    status,
                    note,
                    files,
                    platform,
                    exit_code,
                    duration,
                    attempt,
                    custom,
                )| TestResult {
                    test,
                    name,
                    status,
                    note,
                    files,
                    platform: platform.clone(),
                    machine: platform.clone(),
                    artifacts: platform.clone().into(),
                    exit_code,
                    started: platform,
                    duration,
                    attempt,
                    extra: custom
                        .map(|c| ("custom".to_owned(), serde_json::json!({"n": c})))
                        .into_iter()
                        .collect(),
                },
            )
    }

    proptest! {
        #[test]
        fn record_round_trips_like_test_result(result in arb_result()) {
            let text = serde_json::to_string(&result).unwrap();
            let incoming: Incoming<'_> = serde_json::from_str(&text).unwrap();
            let mut out = Vec::new();
            let files = result.files.clone();
            let artifacts = result.artifacts.to_string_lossy().into_owned();
            write_record(&mut out, &RecordOut { incoming: &incoming, test: &result.test, files: &files, artifacts: &artifacts }).unwrap();
            prop_assert_eq!(String::from_utf8(out).unwrap(), text);
        }

        #[test]
        fn atex_line_parses_back(result in arb_result()) {
            let mut out = Vec::new();
            write_atex_line(&mut out, &result.platform, result.status.as_deref(), &result.test, result.name.as_deref(), &result.files, result.note.as_deref(), false);
            let back = Line::parse(std::str::from_utf8(&out).unwrap()).unwrap();
            prop_assert_eq!(back.platform, result.platform);
            prop_assert_eq!(back.status, result.status);
            prop_assert_eq!(back.subtest, result.name);
            prop_assert_eq!(back.files, result.files);
            prop_assert_eq!(back.note, result.note);
        }
    }
}
