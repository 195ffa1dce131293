//! Target `records`: the readers of record lines. Every input goes through
//! all of them:
//! - [`atex_shared::jsonl::Reader`] for [`Test`], [`Machine`] and
//!   [`TestResult`] (what atex-exec, atex-orchestrate and atex-provision
//!   read on stdin or from files);
//! - atex-aggregate's own borrowing parser of incoming Result records
//!   ([`atex_aggregate::record::Incoming`], as `ingest_line` uses it);
//! - atex-aggregate's reader of stored lines
//!   ([`atex_aggregate::record::Line::parse`]: ATEX array lines and
//!   records).
//!
//! Properties checked on every input:
//! - no reader panics;
//! - every error names `SOURCE:LINE:COLUMN` with the line the reader was
//!   on and a column inside that line (or just past its end);
//! - a record that was read is written back (by the tool's own writer) as
//!   one line that reads back to an equal record, and writing that again
//!   gives the same bytes;
//! - a line that [`TestResult`] accepts, atex-aggregate's parser accepts
//!   too with the same fields (it claims to accept exactly what
//!   `TestResult` accepts, plus `null` for empty defaults), and stores it
//!   as a record that is still a `TestResult`;
//! - a stored line that was read is written as ATEX's array line and reads
//!   back to the same fields.

use std::fmt::Debug;

use atex_aggregate::record::{Incoming, Line, RecordOut, write_atex_line, write_record};
use atex_shared::jsonl::{ReadError, Reader, Writer};
use atex_shared::records::{Machine, Test, TestResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::Target;

/// The target, for [`crate::engine::run`].
pub const TARGET: Target = Target {
    name: "records",
    check,
    dictionary: DICTIONARY,
    max_len: 16 << 10,
};

/// The name errors must carry.
const SOURCE: &str = "fuzz.jsonl";

/// JSON syntax and the records' keys and values.
const DICTIONARY: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"null",
    b"true",
    b"false",
    b"\"\"",
    b"[]",
    b"{}",
    b"\"\\u0000\"",
    b"\"\\ud83d\\ude00\"",
    b"\"\\ud800\"",
    b"\"\\u00e9\"",
    b"\xc3\xa9",
    b"\xff",
    b"1e400",
    b"-0",
    b"\"test\": ",
    b"\"name\": ",
    b"\"status\": ",
    b"\"note\": ",
    b"\"files\": ",
    b"\"platform\": ",
    b"\"machine\": ",
    b"\"artifacts\": ",
    b"\"exit_code\": ",
    b"\"started\": ",
    b"\"duration\": ",
    b"\"attempt\": ",
    b"\"root\": ",
    b"\"path\": ",
    b"\"environment\": ",
    b"\"require\": ",
    b"\"recommend\": ",
    b"\"tty\": ",
    b"\"tag\": ",
    b"\"plan\": ",
    b"\"data\": ",
    b"\"context\": ",
    b"\"prepare\": ",
    b"\"finish\": ",
    b"\"id\": ",
    b"\"provisioner\": ",
    b"\"connection\": ",
    b"\"release\": ",
    b"\"kind\": ",
    b"\"ssh\"",
    b"\"podman\"",
    b"\"local\"",
    b"\"host\": ",
    b"\"port\": ",
    b"\"user\": ",
    b"\"identity_file\": ",
    b"\"options\": ",
    b"\"container\": ",
    b"\"pass\"",
    b"\"fail\"",
    b"\"infra\"",
];

/// The lines of `input` as `BufRead::read_until(b'\n')` cuts them.
fn lines(input: &[u8]) -> Vec<&[u8]> {
    input.split_inclusive(|&b| b == b'\n').collect()
}

/// A `SOURCE:LINE:COLUMN` error must point into the line it names.
fn check_location(error: &ReadError, line_no: usize, text_line: &[u8]) -> Result<(), String> {
    match error {
        ReadError::Parse {
            source_name,
            line,
            column,
            message,
        } => {
            let text = error.to_string();
            if source_name != SOURCE
                || *line != line_no
                || *column == 0
                || !text.starts_with(&format!("{SOURCE}:{line}:{column}: "))
                || message.is_empty()
            {
                return Err(format!("badly located error on line {line_no}: {text:?}"));
            }
            // serde_json counts columns in bytes; at EOF it points just
            // past the last one.
            let width = text_line.strip_suffix(b"\n").unwrap_or(text_line).len();
            if *column > width + 1 {
                return Err(format!(
                    "error column {column} is past the end of line {line_no} ({width} bytes): {text:?}"
                ));
            }
            Ok(())
        }
        ReadError::Io { .. } => Err(format!("an I/O error reading a slice: {error}")),
    }
}

/// Read `input` as records of type `T` and check each line.
fn reader_of<T>(input: &[u8], kind: &str) -> Result<(), String>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let lines = lines(input);
    let mut reader: Reader<&[u8], T> = Reader::new(input, SOURCE);
    while let Some(item) = reader.next() {
        let line_no = reader.line();
        let Some(line) = lines.get(line_no.wrapping_sub(1)) else {
            return Err(format!(
                "{kind}: reader on line {line_no} of {}",
                lines.len()
            ));
        };
        match item {
            Err(e) => check_location(&e, line_no, line).map_err(|why| format!("{kind}: {why}"))?,
            Ok(record) => round_trip(&record).map_err(|why| format!("{kind}: {why}"))?,
        }
    }
    Ok(())
}

/// Write a record with the tools' writer, read it back, write it again.
fn round_trip<T>(record: &T) -> Result<(), String>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let write = |record: &T| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut writer = Writer::new(&mut out);
        writer
            .write(record)
            .map_err(|e| format!("cannot write {record:?}: {e}"))?;
        writer.flush().map_err(|e| format!("cannot flush: {e}"))?;
        drop(writer);
        Ok(out)
    };
    let first = write(record)?;
    if first.iter().filter(|&&b| b == b'\n').count() != 1 || first.last() != Some(&b'\n') {
        return Err(format!("written as more than one line: {first:?}"));
    }
    let mut reader: Reader<&[u8], T> = Reader::new(&first[..], SOURCE);
    let back = match reader.next() {
        Some(Ok(back)) => back,
        other => {
            return Err(format!(
                "{record:?} written as {:?} reads back as {other:?}",
                String::from_utf8_lossy(&first)
            ));
        }
    };
    if &back != record {
        return Err(format!("{record:?} reads back as {back:?}"));
    }
    let second = write(&back)?;
    if second != first {
        return Err(format!(
            "written twice differently: {:?} then {:?}",
            String::from_utf8_lossy(&first),
            String::from_utf8_lossy(&second)
        ));
    }
    Ok(())
}

/// Write an incoming record the way a store does.
fn store_record(r: &Incoming<'_>) -> Result<Vec<u8>, String> {
    let files: Vec<String> = r.files.iter().map(|f| f.to_string()).collect();
    let mut out = Vec::new();
    write_record(
        &mut out,
        &RecordOut {
            incoming: r,
            test: &r.test,
            files: &files,
            artifacts: &r.artifacts,
        },
    )
    .map_err(|e| format!("cannot write {r:?}: {e}"))?;
    Ok(out)
}

/// atex-aggregate's parser of incoming lines, as `ingest_line` calls it.
fn incoming(input: &[u8]) -> Result<(), String> {
    for (i, line) in lines(input).into_iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<Incoming<'_>>(line);
        let shared = serde_json::from_slice::<TestResult>(line);
        let r = match parsed {
            Err(e) => {
                let width = line.strip_suffix(b"\n").unwrap_or(line).len();
                if e.column().max(1) > width + 1 {
                    return Err(format!(
                        "Incoming: error column {} past the end of line {} ({width} bytes): {e}",
                        e.column(),
                        i + 1
                    ));
                }
                if let Ok(result) = shared {
                    return Err(format!(
                        "line {} is a TestResult ({result:?}) but atex-aggregate refuses it: {e}",
                        i + 1
                    ));
                }
                continue;
            }
            Ok(r) => r,
        };
        if let Ok(result) = &shared {
            same_fields(&r, result).map_err(|why| format!("line {}: {why}", i + 1))?;
        }
        let is_test_result = shared.is_ok();
        let first = store_record(&r)?;
        let back: Incoming<'_> = serde_json::from_slice(&first).map_err(|e| {
            format!(
                "stored record {:?} does not read back: {e}",
                String::from_utf8_lossy(&first)
            )
        })?;
        let second = store_record(&back)?;
        if second != first {
            return Err(format!(
                "stored record written twice differently: {:?} then {:?}",
                String::from_utf8_lossy(&first),
                String::from_utf8_lossy(&second)
            ));
        }
        // What a store holds of a valid record must be a record every tool
        // reads. (Custom keys are kept verbatim, so a line that is not a
        // valid TestResult, say with a custom `1e400`, is stored as it came.)
        if !is_test_result {
            continue;
        }
        if let Err(e) = serde_json::from_slice::<TestResult>(&first) {
            return Err(format!(
                "stored record {:?} is not a TestResult: {e}",
                String::from_utf8_lossy(&first)
            ));
        }
    }
    Ok(())
}

/// atex-aggregate's parse and atex-shared's of the same line agree.
fn same_fields(r: &Incoming<'_>, t: &TestResult) -> Result<(), String> {
    let artifacts = t.artifacts.to_string_lossy();
    let same = r.test == t.test
        && r.name.as_deref() == t.name.as_deref()
        && r.status.as_deref() == t.status.as_deref()
        && r.note.as_deref() == t.note.as_deref()
        && r.files
            .iter()
            .map(|f| f.as_ref())
            .eq(t.files.iter().map(String::as_str))
        && r.platform == t.platform
        && r.machine == t.machine
        && r.artifacts == artifacts
        && r.exit_code == t.exit_code
        && r.started == t.started
        && r.duration.to_bits() == t.duration.to_bits()
        && r.attempt == t.attempt;
    if !same {
        return Err(format!(
            "atex-aggregate reads {r:?}, TestResult reads {t:?}"
        ));
    }
    Ok(())
}

/// atex-aggregate's reader of stored lines.
fn stored_lines(input: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(input) else {
        // Stores are read as text; a store with invalid UTF-8 fails before
        // any line is parsed.
        return Ok(());
    };
    for line in text.lines() {
        let Ok(parsed) = Line::parse(line) else {
            continue;
        };
        let mut out = Vec::new();
        write_atex_line(
            &mut out,
            &parsed.platform,
            parsed.status.as_deref(),
            &parsed.test,
            parsed.subtest.as_deref(),
            &parsed.files,
            parsed.note.as_deref(),
            false,
        );
        let written = String::from_utf8(out).map_err(|e| format!("ATEX line not UTF-8: {e}"))?;
        let back = Line::parse(&written)
            .map_err(|e| format!("ATEX line {written:?} does not read back: {e}"))?;
        let expected = Line {
            duration: 0.0,
            ..parsed
        };
        if back != expected {
            return Err(format!(
                "{line:?} read as {expected:?}, written as {written:?}, read back as {back:?}"
            ));
        }
    }
    Ok(())
}

/// The properties of the module docs, for one input.
pub fn check(input: &[u8]) -> Result<(), String> {
    reader_of::<Test>(input, "Test")?;
    reader_of::<Machine>(input, "Machine")?;
    reader_of::<TestResult>(input, "TestResult")?;
    incoming(input)?;
    stored_lines(input)
}
