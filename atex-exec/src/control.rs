//! The controller side of the ATEX test-control protocol: a sans-IO decoder
//! of the control stream and the test's duration deadline
//! (spec/atex-reference.md section 2).
//!
//! The [`Decoder`] is fed whatever byte chunks the transport delivered and
//! reports [`Event`]s to a callback. It never performs I/O itself, so the
//! caller reads the control pipe in large chunks (ATEX reads control lines
//! one byte per `read()`, spec section 9 item 4) and file payloads can be
//! written out as they arrive: [`Event::FileData`] borrows from the fed
//! chunk and the decoder never buffers file contents.
//!
//! Deviations from ATEX 1.x, on purpose (spec section 9 item 5 and beyond):
//! - Every protocol error is a [`ControlError`]: invalid UTF-8 in a control
//!   line and an invalid `duration` are [`ControlError::BadControl`] instead
//!   of `UnicodeDecodeError` / `ValueError`; a `result` JSON that is not an
//!   object, a `files` value that is not a list, a file entry that is not an
//!   object and a file `length` that is not a non-negative integer are
//!   [`ControlError::BadReportJson`] instead of crashes or silent coercion
//!   (python's `int()` turns `13.7` into 13 and a negative length into an
//!   empty file).
//! - `"files": null` means no files (python would crash iterating `None`).
//! - EOF in the middle of a control line is an error; ATEX silently drops
//!   the partial line.
//! - `result 0` is a JSON decode error; ATEX reports it as an EOF.
//! - Messages quote JSON values as JSON, not as python reprs, and the data
//!   quoted after "caused by:" is cut to [`QUOTE_LIMIT`] bytes.
//! - Every length the stream announces has a cap ([`Limits`]): ATEX buffers
//!   a `result N` JSON of any size (a test could exhaust the executor's
//!   memory with `result 3000000000` and endless data) and takes any file
//!   `length`. A length over its cap is a [`ControlError::BadControl`] as
//!   soon as it is announced, before its data is read. The control line
//!   keeps ATEX's fixed [`MAX_LINE`].

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::reporter::JsonMap;

/// The longest control line ATEX accepts, counting its `\n`.
pub const MAX_LINE: usize = 4096;

/// The default cap on the JSON of one `result` ([`Limits::result_json`]):
/// 4 MiB, far above any real result (files carry the bulk), far below what
/// hurts (decoded, a JSON list of small numbers takes 16 times its size).
pub const MAX_RESULT_JSON: usize = 4 << 20;

/// The default cap on one file's announced `length` ([`Limits::file`]):
/// 64 GiB. Payloads go to disk, never to memory; the cap bounds what one
/// announcement can make the executor write.
pub const MAX_FILE_LENGTH: u64 = 64 << 30;

/// The default cap on the partial results one test run holds
/// ([`Limits::held_partial`]): 64 MiB of memory (estimated).
pub const MAX_HELD_PARTIAL: usize = 64 << 20;

/// Caps on what the control stream announces, so that no test can make
/// the executor buffer without bound.
///
/// ```
/// use atex_exec::control::{ControlError, Decoder, Limits};
/// let limits = Limits { result_json: 10, ..Limits::default() };
/// let mut decoder = Decoder::with_limits(limits);
/// let err = decoder.feed(b"result 11\n", |_| Ok::<(), ControlError>(())).unwrap_err();
/// assert_eq!(err.to_string(), "result JSON of 11 bytes is over the limit of 10 bytes (--max-result-json)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest JSON of one `result` (the `N` of `result N`), in bytes.
    pub result_json: usize,
    /// The longest file a `result` may announce (its `length`), in bytes.
    pub file: u64,
    /// How many bytes of memory the partial results of one test run may
    /// take before they are written (estimated; they live in memory until
    /// then).
    pub held_partial: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            result_json: MAX_RESULT_JSON,
            file: MAX_FILE_LENGTH,
            held_partial: MAX_HELD_PARTIAL,
        }
    }
}

/// How many bytes of offending input an error message quotes at most.
pub const QUOTE_LIMIT: usize = 1024;

/// A protocol error: the test broke the control protocol, which is fatal
/// for the test (it becomes an `infra` result with the error in its note).
///
/// The variants carry ATEX's exception classes, so the executor can render
/// notes like ATEX does; see [`ControlError::class_name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Bad framing, an unknown control word or a bad argument (ATEX's
    /// `BadControlError`).
    #[error("{0}")]
    BadControl(String),
    /// The JSON of a `result` is malformed or violates the result format
    /// (ATEX's `BadReportJSONError`).
    #[error("{0}")]
    BadReportJson(String),
}

impl ControlError {
    /// ATEX's exception class name for this error: `BadControlError` or
    /// `BadReportJSONError`.
    ///
    /// ```
    /// use atex_exec::control::ControlError;
    /// let e = ControlError::BadControl("duration argument empty".into());
    /// assert_eq!(format!("{}({e})", e.class_name()), "BadControlError(duration argument empty)");
    /// ```
    pub fn class_name(&self) -> &'static str {
        match self {
            Self::BadControl(_) => "BadControlError",
            Self::BadReportJson(_) => "BadReportJSONError",
        }
    }
}

fn bad_control(msg: impl Into<String>) -> ControlError {
    ControlError::BadControl(msg.into())
}

fn bad_json(msg: impl Into<String>) -> ControlError {
    ControlError::BadReportJson(msg.into())
}

/// Offending bytes for an error message: lossy UTF-8, cut to [`QUOTE_LIMIT`].
fn quote(bytes: &[u8]) -> String {
    if bytes.len() > QUOTE_LIMIT {
        format!("{}...", String::from_utf8_lossy(&bytes[..QUOTE_LIMIT]))
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// One file declared by a `result`, whose `length` bytes follow the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// The file name as the test gave it (not yet normalised or confined).
    pub name: String,
    /// How many bytes of the stream belong to this file.
    pub length: u64,
}

/// The decoded JSON of a `result`, before its file payloads.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultHeader {
    /// The result object verbatim, `files` included.
    pub json: JsonMap,
    /// The validated `files` entries, in stream order.
    pub files: Vec<FileSpec>,
}

/// A `duration` command (the grammar is ATEX's `^([0-9]+)([mhds]?)$`, not
/// tmt's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationCommand {
    /// `duration N`: the deadline becomes now + N seconds.
    Set(u64),
    /// `duration +N`: the deadline moves N seconds later.
    Extend(u64),
    /// `duration -N`: the deadline moves N seconds earlier.
    Shorten(u64),
    /// `duration save`: remember the remaining time (nests).
    Save,
    /// `duration restore`: undo the matching `save`.
    Restore,
}

/// Something the test said on the control channel.
///
/// A `result` produces [`Event::Result`], then for each declared file in
/// order zero or more [`Event::FileData`] and one [`Event::FileEnd`] (also
/// for `length: 0`), then [`Event::ResultEnd`].
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    /// `result N`: the JSON object, with its files still to come.
    Result(ResultHeader),
    /// A piece of the `index`th file of the current result, borrowed from
    /// the chunk being fed.
    FileData {
        /// Index into [`ResultHeader::files`].
        index: usize,
        /// The bytes; never empty.
        data: &'a [u8],
    },
    /// The `index`th file of the current result is complete.
    FileEnd {
        /// Index into [`ResultHeader::files`].
        index: usize,
    },
    /// The current result and all its files are complete.
    ResultEnd,
    /// `exitcode N`.
    ExitCode(i32),
    /// `duration ...`.
    Duration(DurationCommand),
    /// `disconnect`: the decoder ignores everything fed after it, as ATEX
    /// closes its end of the pipe at this point.
    Disconnect,
    /// `noop`.
    Noop,
}

#[derive(Debug)]
enum State {
    /// Between control lines, or inside one (then `Decoder::line` holds it).
    Line,
    /// Reading the JSON of `result N`; `Decoder::json` holds what came.
    Json { length: usize },
    /// Reading file `index` of the current result (`Decoder::lengths`).
    File { index: usize, remaining: u64 },
    /// `disconnect` was received; input is ignored.
    Disconnected,
    /// An error happened; it is returned again on every call.
    Failed(ControlError),
}

/// The sans-IO control-stream decoder; see the [module docs](self).
///
/// ```
/// use atex_exec::control::{ControlError, Decoder, Event};
///
/// let mut decoder = Decoder::new();
/// let mut out = Vec::new();
/// let mut events = Vec::new();
/// // Chunks may split the stream anywhere, even inside a control word.
/// for chunk in [&b"duration 1"[..], b"5m\nresult 39\n{\"files\": [{\"na", b"me\": \"f\", \"length\": 3}]}abcexi", b"tcode 0\n"] {
///     decoder.feed(chunk, |event| {
///         match event {
///             Event::FileData { data, .. } => out.extend_from_slice(data),
///             Event::Result(header) => events.push(format!("result {}", header.files[0].name)),
///             other => events.push(format!("{other:?}")),
///         }
///         Ok::<(), ControlError>(())
///     })?;
/// }
/// decoder.finish()?;
/// assert_eq!(out, b"abc");
/// assert_eq!(events, ["Duration(Set(900))", "result f", "FileEnd { index: 0 }", "ResultEnd", "ExitCode(0)"]);
/// # Ok::<(), ControlError>(())
/// ```
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// The start of a control line split across chunks (capacity is reused).
    line: Vec<u8>,
    /// The JSON of a `result` split across chunks (capacity is reused).
    json: Vec<u8>,
    /// File lengths of the current result.
    lengths: Vec<u64>,
    /// The caps on announced lengths.
    limits: Limits,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The poison left behind when the event handler fails mid-way.
const HANDLER_FAILED: &str = "control stream abandoned after an event handler error";

impl Decoder {
    /// A decoder at the start of a stream, with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A decoder at the start of a stream, with these caps.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            state: State::Line,
            line: Vec::new(),
            json: Vec::new(),
            lengths: Vec::new(),
            limits,
        }
    }

    /// Whether `disconnect` was received (later input is ignored).
    pub fn is_disconnected(&self) -> bool {
        matches!(self.state, State::Disconnected)
    }

    /// Decodes the next chunk of the stream, calling `on_event` for each
    /// event in order.
    ///
    /// A protocol error is returned as `E::from(ControlError)`; an error of
    /// `on_event` is returned as is. Either way the decoder is spent: later
    /// calls fail again (with the same protocol error, or a
    /// [`ControlError::BadControl`] saying the handler failed).
    pub fn feed<E, F>(&mut self, input: &[u8], mut on_event: F) -> Result<(), E>
    where
        E: From<ControlError>,
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        // Poison first, so an early return through `?` leaves the decoder spent.
        let state = std::mem::replace(&mut self.state, State::Failed(bad_control(HANDLER_FAILED)));
        match self.run(state, input, &mut on_event) {
            Ok(state) => {
                self.state = state;
                Ok(())
            }
            Err(Fail::Protocol(e)) => {
                self.state = State::Failed(e.clone());
                Err(E::from(e))
            }
            Err(Fail::Handler(e)) => Err(e),
        }
    }

    /// Checks the end of the stream: EOF between control lines (or after
    /// `disconnect`) is fine, EOF inside a line or a `result` payload is an
    /// error naming what was being read.
    pub fn finish(&self) -> Result<(), ControlError> {
        match &self.state {
            State::Line if self.line.is_empty() => Ok(()),
            State::Line => Err(bad_control(format!(
                "EOF when reading a control line, got so far: {}",
                quote(&self.line)
            ))),
            State::Json { length } => Err(bad_control(format!(
                "EOF when reading data, got so far: {} of {length} bytes of result JSON",
                self.json.len()
            ))),
            State::File { index, remaining } => {
                let total = self.lengths.get(*index).copied().unwrap_or(0);
                Err(bad_control(format!(
                    "EOF when reading data: file {} of the result got {} of {total} bytes",
                    index + 1,
                    total - remaining
                )))
            }
            State::Disconnected => Ok(()),
            State::Failed(e) => Err(e.clone()),
        }
    }

    fn run<E, F>(
        &mut self,
        mut state: State,
        mut input: &[u8],
        on_event: &mut F,
    ) -> Result<State, Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        loop {
            state = match state {
                State::Line => {
                    if input.is_empty() {
                        return Ok(State::Line);
                    }
                    match input.iter().position(|&b| b == b'\n') {
                        None => {
                            if self.line.len() + input.len() >= MAX_LINE {
                                return Err(Fail::Protocol(line_full()));
                            }
                            self.line.extend_from_slice(input);
                            return Ok(State::Line);
                        }
                        Some(at) => {
                            if self.line.len() + at >= MAX_LINE {
                                return Err(Fail::Protocol(line_full()));
                            }
                            let rest = &input[at + 1..];
                            let next = if self.line.is_empty() {
                                self.dispatch(&input[..at], on_event)?
                            } else {
                                let mut line = std::mem::take(&mut self.line);
                                line.extend_from_slice(&input[..at]);
                                let next = self.dispatch(&line, on_event);
                                line.clear();
                                self.line = line;
                                next?
                            };
                            input = rest;
                            next
                        }
                    }
                }
                State::Json { length } => {
                    if self.json.is_empty() && input.len() >= length {
                        // The whole JSON is in this chunk: parse it in place.
                        let (json, rest) = input.split_at(length);
                        input = rest;
                        self.start_result(json, on_event)?
                    } else {
                        let take = (length - self.json.len()).min(input.len());
                        self.json.extend_from_slice(&input[..take]);
                        input = &input[take..];
                        if self.json.len() < length {
                            return Ok(State::Json { length });
                        }
                        let json = std::mem::take(&mut self.json);
                        let next = self.start_result(&json, on_event);
                        self.json = json;
                        self.json.clear();
                        next?
                    }
                }
                State::File { index, remaining } => {
                    if remaining == 0 {
                        on_event(Event::FileEnd { index }).map_err(Fail::Handler)?;
                        self.next_file(index + 1, on_event)?
                    } else if input.is_empty() {
                        return Ok(State::File { index, remaining });
                    } else {
                        let take =
                            usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                        let (data, rest) = input.split_at(take);
                        input = rest;
                        on_event(Event::FileData { index, data }).map_err(Fail::Handler)?;
                        State::File {
                            index,
                            remaining: remaining - take as u64,
                        }
                    }
                }
                State::Disconnected => return Ok(State::Disconnected),
                State::Failed(e) => return Err(Fail::Protocol(e)),
            };
        }
    }

    /// Handles one control line (without its `\n`) and returns the next state.
    fn dispatch<E, F>(&mut self, line: &[u8], on_event: &mut F) -> Result<State, Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        if line.is_empty() {
            return Err(Fail::Protocol(bad_control(
                r"empty control line (just '\n')",
            )));
        }
        let line = std::str::from_utf8(line).map_err(|e| {
            Fail::Protocol(bad_control(format!(
                "control line is not valid UTF-8 ({e}): {}",
                quote(line)
            )))
        })?;
        let (word, arg) = line.split_once(' ').unwrap_or((line, ""));
        let event = match word {
            "result" => {
                let length = parse_json_length(arg).map_err(Fail::Protocol)?;
                if length > self.limits.result_json {
                    return Err(Fail::Protocol(bad_control(format!(
                        "result JSON of {length} bytes is over the limit of {} bytes (--max-result-json)",
                        self.limits.result_json
                    ))));
                }
                self.json.clear();
                return Ok(State::Json { length });
            }
            "exitcode" => Event::ExitCode(parse_exit_code(arg).map_err(Fail::Protocol)?),
            "duration" => Event::Duration(parse_duration_command(arg).map_err(Fail::Protocol)?),
            "disconnect" => {
                on_event(Event::Disconnect).map_err(Fail::Handler)?;
                return Ok(State::Disconnected);
            }
            "noop" => Event::Noop,
            _ => {
                return Err(Fail::Protocol(bad_control(format!(
                    "unknown control word: {word}"
                ))));
            }
        };
        on_event(event).map_err(Fail::Handler)?;
        Ok(State::Line)
    }

    /// Parses and validates a result's JSON, emits it and returns the state
    /// that reads its files.
    fn start_result<E, F>(&mut self, json: &[u8], on_event: &mut F) -> Result<State, Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        let header = parse_result(json).map_err(Fail::Protocol)?;
        if let Some(file) = header.files.iter().find(|f| f.length > self.limits.file) {
            return Err(Fail::Protocol(bad_control(format!(
                "file {} of {} bytes is over the limit of {} bytes (--max-file-size)",
                file.name, file.length, self.limits.file
            ))));
        }
        self.lengths.clear();
        self.lengths.extend(header.files.iter().map(|f| f.length));
        on_event(Event::Result(header)).map_err(Fail::Handler)?;
        self.next_file(0, on_event)
    }

    /// The state that reads file `index` of the current result, or the end
    /// of the result when there is none left.
    fn next_file<E, F>(&mut self, index: usize, on_event: &mut F) -> Result<State, Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        match self.lengths.get(index) {
            Some(&remaining) => Ok(State::File { index, remaining }),
            None => {
                on_event(Event::ResultEnd).map_err(Fail::Handler)?;
                Ok(State::Line)
            }
        }
    }
}

/// Why a run stopped: the stream is bad, or the caller's handler failed.
enum Fail<E> {
    Protocol(ControlError),
    Handler(E),
}

fn line_full() -> ControlError {
    bad_control(format!("line buffer reached {MAX_LINE} bytes"))
}

/// Python's `int(s)` for the decimal strings a shell writes: surrounding
/// whitespace, an optional sign, digits with single `_` between them.
/// `None` when python would raise, or when the value does not fit `i64`.
fn py_int(s: &str) -> Option<i64> {
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut value: i64 = 0;
    for b in digits.bytes() {
        match b {
            b'_' => {}
            b'0'..=b'9' => {
                let d = i64::from(b - b'0');
                value = value.checked_mul(10)?;
                value = if negative {
                    value.checked_sub(d)?
                } else {
                    value.checked_add(d)?
                };
            }
            _ => return None,
        }
    }
    Some(value)
}

fn parse_json_length(arg: &str) -> Result<usize, ControlError> {
    let value = py_int(arg).ok_or_else(|| {
        bad_control(format!(
            "reading json length: invalid literal for int() with base 10: '{arg}'"
        ))
    })?;
    usize::try_from(value).map_err(|_| {
        bad_control(format!(
            "reading json length: {value} is not a valid length"
        ))
    })
}

fn parse_exit_code(arg: &str) -> Result<i32, ControlError> {
    if arg.is_empty() {
        return Err(bad_control("exitcode argument empty"));
    }
    py_int(arg)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| bad_control(format!("'{arg}' is not an integer exit code")))
}

/// ATEX's `duration_to_seconds`: `^([0-9]+)([mhds]?)$`.
fn duration_seconds(spec: &str) -> Result<u64, ControlError> {
    let invalid = || bad_control(format!("invalid fmf duration format: {spec}"));
    let (digits, unit) = match spec.as_bytes().last() {
        Some(b'm') => (&spec[..spec.len() - 1], 60),
        Some(b'h') => (&spec[..spec.len() - 1], 60 * 60),
        Some(b'd') => (&spec[..spec.len() - 1], 60 * 60 * 24),
        Some(b's') => (&spec[..spec.len() - 1], 1),
        _ => (spec, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let mut value: u64 = 0;
    for b in digits.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| bad_control(format!("fmf duration too large: {spec}")))?;
    }
    value
        .checked_mul(unit)
        .ok_or_else(|| bad_control(format!("fmf duration too large: {spec}")))
}

fn parse_duration_command(arg: &str) -> Result<DurationCommand, ControlError> {
    // The order of the checks is ATEX's: a sign first, then the keywords.
    if arg.is_empty() {
        Err(bad_control("duration argument empty"))
    } else if let Some(rest) = arg.strip_prefix('+') {
        duration_seconds(rest).map(DurationCommand::Extend)
    } else if let Some(rest) = arg.strip_prefix('-') {
        duration_seconds(rest).map(DurationCommand::Shorten)
    } else if arg == "save" {
        Ok(DurationCommand::Save)
    } else if arg == "restore" {
        Ok(DurationCommand::Restore)
    } else {
        duration_seconds(arg).map(DurationCommand::Set)
    }
}

/// Decodes and validates the JSON of a `result`.
fn parse_result(json: &[u8]) -> Result<ResultHeader, ControlError> {
    // Straight into the result's map; only a failure decodes again, as a
    // plain value, to tell bad JSON from JSON that is not an object.
    let map: JsonMap = match result_map(json) {
        Ok(map) => map,
        Err(_) => {
            return Err(match serde_json::from_slice::<Value>(json) {
                Err(e) => bad_json(format!("JSON decode: {e} caused by: {}", quote(json))),
                Ok(_) => bad_json(format!(
                    "JSON decode: not a JSON object caused by: {}",
                    quote(json)
                )),
            });
        }
    };
    // A scan, not a hashed lookup: results have a handful of keys.
    let files = match map.iter().find(|(key, _)| *key == "files").map(|(_, v)| v) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries
            .iter()
            .map(parse_file_entry)
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad_json(format!("'files' is not a list: {other}"))),
    };
    Ok(ResultHeader { json: map, files })
}

/// Decode a JSON object into a [`JsonMap`] sized for a typical result's
/// keys up front: growing an empty map key by key reallocates it several
/// times per result, and a test may report a million of them.
fn result_map(json: &[u8]) -> serde_json::Result<JsonMap> {
    struct Object;
    impl<'de> serde::de::Visitor<'de> for Object {
        type Value = JsonMap;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut access: A,
        ) -> Result<JsonMap, A::Error> {
            let mut map = JsonMap::with_capacity_and_hasher(
                access.size_hint().unwrap_or(0).max(4),
                Default::default(),
            );
            while let Some((key, value)) = access.next_entry::<String, Value>()? {
                // Like json.loads: a repeated key keeps its first place and
                // takes the last value.
                map.insert(key, value);
            }
            Ok(map)
        }
    }
    let mut decoder = serde_json::Deserializer::from_slice(json);
    let map = serde::Deserializer::deserialize_map(&mut decoder, Object)?;
    decoder.end()?;
    Ok(map)
}

fn parse_file_entry(entry: &Value) -> Result<FileSpec, ControlError> {
    let Value::Object(fields) = entry else {
        return Err(bad_json(format!("file entry is not an object: {entry}")));
    };
    // Like ATEX: an empty name counts as missing, a null length too.
    let name = match fields.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        Some(Value::String(_) | Value::Null) | None => {
            return Err(bad_json(format!(
                "file entry missing 'name' or 'length': {entry}"
            )));
        }
        Some(other) => {
            return Err(bad_json(format!(
                "file entry name is not a string: {other}"
            )));
        }
    };
    let length = match fields.get("length") {
        None | Some(Value::Null) => {
            return Err(bad_json(format!(
                "file entry missing 'name' or 'length': {entry}"
            )));
        }
        Some(length) => length.as_u64().ok_or_else(|| {
            bad_json(format!(
                "file entry {name} length: {length} is not a non-negative integer"
            ))
        })?,
    };
    Ok(FileSpec {
        name: name.clone(),
        length,
    })
}

/// A test's duration deadline with ATEX's `duration` semantics.
///
/// Sans-IO: every method takes the current time, so the executor decides
/// which clock runs (it keeps running across reboots).
///
/// ```
/// use std::time::{Duration, Instant};
/// use atex_exec::control::{Deadline, DurationCommand};
///
/// let t0 = Instant::now();
/// let mut deadline = Deadline::new(t0, Duration::from_secs(300));
/// deadline.apply(DurationCommand::Save, t0 + Duration::from_secs(100));
/// deadline.apply(DurationCommand::Set(600), t0 + Duration::from_secs(100));
/// // ... long infrastructure work ...
/// deadline.apply(DurationCommand::Restore, t0 + Duration::from_secs(500));
/// assert_eq!(deadline.remaining(t0 + Duration::from_secs(500)), Duration::from_secs(200));
/// assert!(!deadline.expired(t0 + Duration::from_secs(699)));
/// assert!(deadline.expired(t0 + Duration::from_secs(700)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// When the test runs out of time; `None` when it is so far away that it
    /// does not fit an `Instant` (never expires).
    at: Option<Instant>,
    /// Time left when the outermost `save` happened (`None`: never expires).
    saved: Option<Option<Duration>>,
    /// Nesting depth of `save`.
    saves: u32,
}

impl Deadline {
    /// A deadline `duration` after `start` (ATEX fixes it when the test
    /// starts, before its setup runs).
    pub fn new(start: Instant, duration: Duration) -> Self {
        Self {
            at: start.checked_add(duration),
            saved: None,
            saves: 0,
        }
    }

    /// Applies a `duration` command received at `now`.
    pub fn apply(&mut self, command: DurationCommand, now: Instant) {
        match command {
            DurationCommand::Set(secs) => self.at = now.checked_add(Duration::from_secs(secs)),
            DurationCommand::Extend(secs) => {
                self.at = self
                    .at
                    .and_then(|at| at.checked_add(Duration::from_secs(secs)));
            }
            DurationCommand::Shorten(secs) => {
                // An instant before the clock's epoch cannot be represented;
                // clamping to `now` is just as expired.
                self.at = self.at.map(|at| {
                    at.checked_sub(Duration::from_secs(secs))
                        .unwrap_or(now)
                        .min(at)
                });
            }
            DurationCommand::Save => {
                if self.saves == 0 {
                    self.saved = Some(self.at.map(|at| at.saturating_duration_since(now)));
                }
                self.saves = self.saves.saturating_add(1);
            }
            DurationCommand::Restore => match self.saves {
                0 => {}
                1 => {
                    self.saves = 0;
                    if let Some(saved) = self.saved.take() {
                        self.at = saved.and_then(|left| now.checked_add(left));
                    }
                }
                _ => self.saves -= 1,
            },
        }
    }

    /// Time left at `now` (zero once expired; `Duration::MAX` when the
    /// deadline is beyond what the clock can represent).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.at
            .map_or(Duration::MAX, |at| at.saturating_duration_since(now))
    }

    /// Whether the test ran out of time at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.at.is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An event with its borrowed data copied, for comparisons.
    #[derive(Debug, Clone, PartialEq)]
    enum Owned {
        Result(ResultHeader),
        FileData(usize, Vec<u8>),
        FileEnd(usize),
        ResultEnd,
        ExitCode(i32),
        Duration(DurationCommand),
        Disconnect,
        Noop,
    }

    /// Decodes `chunks`, merging adjacent file data so chunking does not show.
    fn decode_chunks(chunks: &[&[u8]]) -> (Vec<Owned>, Result<(), ControlError>) {
        let mut decoder = Decoder::new();
        let mut events: Vec<Owned> = Vec::new();
        for chunk in chunks {
            let fed = decoder.feed(chunk, |event| {
                let owned = match event {
                    Event::Result(h) => Owned::Result(h),
                    Event::FileData { index, data } => {
                        assert!(!data.is_empty());
                        if let Some(Owned::FileData(i, buf)) = events.last_mut()
                            && *i == index
                        {
                            buf.extend_from_slice(data);
                            return Ok(());
                        }
                        Owned::FileData(index, data.to_vec())
                    }
                    Event::FileEnd { index } => Owned::FileEnd(index),
                    Event::ResultEnd => Owned::ResultEnd,
                    Event::ExitCode(c) => Owned::ExitCode(c),
                    Event::Duration(d) => Owned::Duration(d),
                    Event::Disconnect => Owned::Disconnect,
                    Event::Noop => Owned::Noop,
                };
                events.push(owned);
                Ok::<(), ControlError>(())
            });
            if let Err(e) = fed {
                return (events, Err(e));
            }
        }
        let end = decoder.finish();
        (events, end)
    }

    fn decode(stream: &[u8]) -> (Vec<Owned>, Result<(), ControlError>) {
        decode_chunks(&[stream])
    }

    fn err_of(stream: &[u8]) -> ControlError {
        decode(stream).1.expect_err("stream should fail")
    }

    fn header(json: &str) -> Owned {
        let Value::Object(map) = serde_json::from_str(json).unwrap() else {
            panic!("not an object")
        };
        let map = map.into_iter().collect();
        Owned::Result(
            parse_result(json.as_bytes())
                .map(|h| ResultHeader {
                    json: map,
                    files: h.files,
                })
                .unwrap(),
        )
    }

    #[test]
    fn spec_wire_example() {
        let j1 = r#"{"status": "pass", "name": "some/test", "files": [{"name": "A", "length": 13}, {"name": "B", "length": 13}]}"#;
        let j2 = r#"{"status": "pass", "name": "another/test"}"#;
        assert_eq!(j1.len(), 108);
        assert_eq!(j2.len(), 42);
        let stream = format!("result 108\n{j1}contents of Acontents of Bresult 42\n{j2}");
        let (events, end) = decode(stream.as_bytes());
        assert_eq!(end, Ok(()));
        let Owned::Result(h) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            h.files,
            [
                FileSpec {
                    name: "A".into(),
                    length: 13
                },
                FileSpec {
                    name: "B".into(),
                    length: 13
                }
            ]
        );
        assert_eq!(h.json["status"], "pass");
        assert_eq!(
            events[1..],
            [
                Owned::FileData(0, b"contents of A".to_vec()),
                Owned::FileEnd(0),
                Owned::FileData(1, b"contents of B".to_vec()),
                Owned::FileEnd(1),
                Owned::ResultEnd,
                header(j2),
                Owned::ResultEnd,
            ]
        );
    }

    #[test]
    fn every_control_word() {
        let stream = b"noop\nnoop with args\nexitcode 3\nexitcode -1\nexitcode  +7 \nduration 15m\nduration 10\n\
duration 2h\nduration 1d\nduration 5s\nduration +60\nduration -5m\nduration save\nduration restore\n\
result 2\n{}disconnect now please\nnoop\ngarbage\n";
        let (events, end) = decode(stream);
        assert_eq!(end, Ok(()));
        use DurationCommand::*;
        assert_eq!(
            events,
            [
                Owned::Noop,
                Owned::Noop,
                Owned::ExitCode(3),
                Owned::ExitCode(-1),
                Owned::ExitCode(7),
                Owned::Duration(Set(900)),
                Owned::Duration(Set(10)),
                Owned::Duration(Set(7200)),
                Owned::Duration(Set(86400)),
                Owned::Duration(Set(5)),
                Owned::Duration(Extend(60)),
                Owned::Duration(Shorten(300)),
                Owned::Duration(Save),
                Owned::Duration(Restore),
                header("{}"),
                Owned::ResultEnd,
                // Everything after `disconnect` is ignored.
                Owned::Disconnect,
            ]
        );
    }

    #[test]
    fn framing_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"\n", r"empty control line (just '\n')"),
            (b"noop\n\n", r"empty control line (just '\n')"),
            (b"Noop\n", "unknown control word: Noop"),
            (b" noop\n", "unknown control word: "),
            (b"noop\r\n", "unknown control word: noop\r"),
            (b"exitcode\n", "exitcode argument empty"),
            (b"exitcode \n", "exitcode argument empty"),
            (b"exitcode x1\n", "'x1' is not an integer exit code"),
            (b"exitcode 1.0\n", "'1.0' is not an integer exit code"),
            (
                b"exitcode 99999999999\n",
                "'99999999999' is not an integer exit code",
            ),
            (b"duration\n", "duration argument empty"),
            (b"duration 1.5h\n", "invalid fmf duration format: 1.5h"),
            (b"duration 1h 30m\n", "invalid fmf duration format: 1h 30m"),
            (b"duration +\n", "invalid fmf duration format: "),
            (b"duration save \n", "invalid fmf duration format: save "),
            (
                b"duration 99999999999999999999\n",
                "fmf duration too large: 99999999999999999999",
            ),
            (
                b"duration 999999999999999999d\n",
                "fmf duration too large: 999999999999999999d",
            ),
            (
                b"result\n",
                "reading json length: invalid literal for int() with base 10: ''",
            ),
            (
                b"result abc\n",
                "reading json length: invalid literal for int() with base 10: 'abc'",
            ),
            (
                b"result -5\n",
                "reading json length: -5 is not a valid length",
            ),
            (b"noop", "EOF when reading a control line, got so far: noop"),
            (
                b"result 10\n{}",
                "EOF when reading data, got so far: 2 of 10 bytes of result JSON",
            ),
            (
                b"result 39\n{\"files\": [{\"name\": \"x\", \"length\": 5}]}ab",
                "EOF when reading data: file 1 of the result got 2 of 5 bytes",
            ),
        ];
        for (stream, message) in cases {
            assert_eq!(
                err_of(stream),
                ControlError::BadControl((*message).into()),
                "{}",
                String::from_utf8_lossy(stream)
            );
        }
    }

    #[test]
    fn line_length_limit() {
        // 4095 bytes plus `\n` is the longest line ATEX accepts.
        let ok = format!("noop {}\n", "x".repeat(MAX_LINE - 6));
        assert_eq!(ok.len(), MAX_LINE);
        assert_eq!(decode(ok.as_bytes()), (vec![Owned::Noop], Ok(())));
        let full = ControlError::BadControl("line buffer reached 4096 bytes".into());
        let long = format!("noop {}\n", "x".repeat(MAX_LINE - 5));
        assert_eq!(err_of(long.as_bytes()), full);
        // Without a newline the error comes as soon as 4096 bytes are buffered,
        // whether they arrive at once or byte by byte.
        let endless = "x".repeat(MAX_LINE);
        assert_eq!(err_of(endless.as_bytes()), full);
        let bytes: Vec<&[u8]> = endless.as_bytes().chunks(1).collect();
        assert_eq!(decode_chunks(&bytes).1, Err(full.clone()));
        let split = [&ok.as_bytes()[..100], &ok.as_bytes()[100..]];
        assert_eq!(decode_chunks(&split), (vec![Owned::Noop], Ok(())));
        assert_eq!(
            decode_chunks(&[&long.as_bytes()[..100], &long.as_bytes()[100..]]).1,
            Err(full)
        );
    }

    #[test]
    fn announced_lengths_have_caps() {
        let limits = Limits {
            result_json: 20,
            file: 5,
            held_partial: 0,
        };
        let feed = |stream: &[u8]| {
            let mut decoder = Decoder::with_limits(limits);
            decoder.feed(stream, |_| Ok::<(), ControlError>(()))
        };
        // At the cap is fine; over it fails as soon as the length is read,
        // whatever follows (here: nothing).
        assert!(feed(b"result 20\n").is_ok());
        assert_eq!(
            feed(b"result 3000000000\n"),
            Err(ControlError::BadControl(
                "result JSON of 3000000000 bytes is over the limit of 20 bytes (--max-result-json)"
                    .into()
            ))
        );
        let json = |n: u64| format!(r#"{{"files":[{{"name":"f","length":{n}}}]}}"#);
        let ok = json(5);
        let ok = format!("result {}\n{ok}", ok.len());
        assert!(
            Decoder::new()
                .feed(ok.as_bytes(), |_| Ok::<(), ControlError>(()))
                .is_ok()
        );
        let over = json(6);
        let mut decoder = Decoder::with_limits(Limits {
            result_json: 100,
            ..limits
        });
        assert_eq!(
            decoder.feed(format!("result {}\n{over}", over.len()).as_bytes(), |_| {
                Ok::<(), ControlError>(())
            }),
            Err(ControlError::BadControl(
                "file f of 6 bytes is over the limit of 5 bytes (--max-file-size)".into()
            ))
        );
        assert_eq!(Decoder::new().limits, Limits::default());
    }

    #[test]
    fn utf8_errors() {
        let err = err_of(b"noop \xff\xfe\n");
        let ControlError::BadControl(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.starts_with("control line is not valid UTF-8"), "{msg}");
        // UTF-8 in arguments is fine, and a bad sequence split across chunks
        // is judged on the whole line.
        let err = decode_chunks(&[b"exitcode \xc3", b"\xa9\n"]).1.unwrap_err();
        assert_eq!(
            err,
            ControlError::BadControl("'\u{e9}' is not an integer exit code".into())
        );
        assert!(decode(b"noop \xc3\xa9\n").1.is_ok());
    }

    #[test]
    fn report_json_errors() {
        let cases: &[(&str, &str)] = &[
            ("[1]", "JSON decode: not a JSON object caused by: [1]"),
            ("\"s\"", "JSON decode: not a JSON object caused by: \"s\""),
            (r#"{"files": "x"}"#, "'files' is not a list: \"x\""),
            (r#"{"files": [1]}"#, "file entry is not an object: 1"),
            (
                r#"{"files": [{"name": "a"}]}"#,
                r#"file entry missing 'name' or 'length': {"name":"a"}"#,
            ),
            (
                r#"{"files": [{"length": 1}]}"#,
                r#"file entry missing 'name' or 'length': {"length":1}"#,
            ),
            (
                r#"{"files": [{"name": "", "length": 1}]}"#,
                r#"file entry missing 'name' or 'length': {"name":"","length":1}"#,
            ),
            (
                r#"{"files": [{"name": "a", "length": null}]}"#,
                r#"file entry missing 'name' or 'length': {"name":"a","length":null}"#,
            ),
            (
                r#"{"files": [{"name": 3, "length": 1}]}"#,
                "file entry name is not a string: 3",
            ),
            (
                r#"{"files": [{"name": "a", "length": -1}]}"#,
                "file entry a length: -1 is not a non-negative integer",
            ),
            (
                r#"{"files": [{"name": "a", "length": 1.5}]}"#,
                "file entry a length: 1.5 is not a non-negative integer",
            ),
            (
                r#"{"files": [{"name": "a", "length": "1"}]}"#,
                "file entry a length: \"1\" is not a non-negative integer",
            ),
        ];
        for (json, message) in cases {
            let stream = format!("result {}\n{json}", json.len());
            assert_eq!(
                err_of(stream.as_bytes()),
                ControlError::BadReportJson((*message).into()),
                "{json}"
            );
        }
        for json in ["", "{", "{} {}", "{}x", "\u{fffd}"] {
            let stream = format!("result {}\n{json}", json.len());
            let err = err_of(stream.as_bytes());
            let ControlError::BadReportJson(msg) = &err else {
                panic!("{err:?}")
            };
            assert!(msg.starts_with("JSON decode: "), "{msg}");
            assert!(msg.ends_with(&format!(" caused by: {json}")), "{msg}");
        }
        assert_eq!(err_of(b"result 3\n[1]").class_name(), "BadReportJSONError");
        assert_eq!(err_of(b"nope\n").class_name(), "BadControlError");
        let long = format!("[{}1]", "1,".repeat(2000));
        let err = err_of(format!("result {}\n{long}", long.len()).as_bytes());
        assert!(err.to_string().len() < QUOTE_LIMIT + 100);
    }

    #[test]
    fn files_edge_cases() {
        // `length: 0` still ends its file; `files: null` means no files.
        let json = r#"{"files": [{"name": "e", "length": 0}, {"name": "f", "length": 1}, {"name": "g", "length": 0}]}"#;
        let stream = format!("result {}\n{json}Znoop\n", json.len());
        let (events, end) = decode(stream.as_bytes());
        assert_eq!(end, Ok(()));
        assert_eq!(
            events[1..],
            [
                Owned::FileEnd(0),
                Owned::FileData(1, b"Z".to_vec()),
                Owned::FileEnd(1),
                Owned::FileEnd(2),
                Owned::ResultEnd,
                Owned::Noop,
            ]
        );
        let json = r#"{"files": null, "x": [1, {"y": null}]}"#;
        let (events, end) = decode(format!("result {}\n{json}", json.len()).as_bytes());
        assert_eq!(end, Ok(()));
        assert_eq!(events, [header(json), Owned::ResultEnd]);
        // Payload bytes that look like control lines are payload.
        let json = r#"{"files": [{"name": "f", "length": 5}]}"#;
        let (events, _) =
            decode(format!("result {}\n{json}\n\n\n\nxnoop\n", json.len()).as_bytes());
        assert_eq!(events[1], Owned::FileData(0, b"\n\n\n\nx".to_vec()));
        assert_eq!(events.last(), Some(&Owned::Noop));
        // The JSON keeps key order, custom keys and duplicate keys resolve last-wins.
        let json = r#"{"z": 1, "a": {"k": [true]}, "z": 2}"#;
        let (events, _) = decode(format!("result {}\n{json}", json.len()).as_bytes());
        let Owned::Result(h) = &events[0] else {
            panic!()
        };
        assert_eq!(
            serde_json::to_string(&h.json).unwrap(),
            r#"{"z":2,"a":{"k":[true]}}"#
        );
    }

    #[test]
    fn errors_are_sticky_and_handler_errors_pass_through() {
        let mut decoder = Decoder::new();
        let e = decoder
            .feed(b"bogus\n", |_| Ok::<(), ControlError>(()))
            .unwrap_err();
        assert_eq!(
            e,
            ControlError::BadControl("unknown control word: bogus".into())
        );
        assert_eq!(
            decoder.feed(b"noop\n", |_| Ok::<(), ControlError>(())),
            Err(e.clone())
        );
        assert_eq!(decoder.finish(), Err(e));

        #[derive(Debug, PartialEq)]
        enum MyError {
            Disk,
            Control(ControlError),
        }
        impl From<ControlError> for MyError {
            fn from(e: ControlError) -> Self {
                Self::Control(e)
            }
        }
        let mut decoder = Decoder::new();
        assert_eq!(
            decoder.feed(b"noop\nnoop\n", |_| Err(MyError::Disk)),
            Err(MyError::Disk)
        );
        assert_eq!(
            decoder.feed(b"noop\n", |_| Ok(())),
            Err(MyError::Control(ControlError::BadControl(
                HANDLER_FAILED.into()
            )))
        );
    }

    #[test]
    fn disconnect_stops_decoding() {
        let mut decoder = Decoder::new();
        let mut n = 0;
        decoder
            .feed(b"noop\ndisconnect\nthis is ignored", |_| {
                n += 1;
                Ok::<(), ControlError>(())
            })
            .unwrap();
        assert!(decoder.is_disconnected());
        decoder
            .feed(b"\n\n", |_| -> Result<(), ControlError> {
                panic!("no events")
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn a_million_results() {
        let json = r#"{"status": "pass", "name": "sub/x"}"#;
        let one = format!("result {}\n{json}", json.len()).into_bytes();
        let stream: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * 1_000_000)
            .collect();
        let mut decoder = Decoder::new();
        let (mut results, mut ends) = (0u32, 0u32);
        // Feed in pipe-sized chunks, which split lines and JSON anywhere.
        for chunk in stream.chunks(65_536) {
            decoder
                .feed(chunk, |event| {
                    match event {
                        Event::Result(h) => {
                            debug_assert_eq!(h.json.len(), 2);
                            results += 1;
                        }
                        Event::ResultEnd => ends += 1,
                        other => panic!("{other:?}"),
                    }
                    Ok::<(), ControlError>(())
                })
                .unwrap();
        }
        decoder.finish().unwrap();
        assert_eq!((results, ends), (1_000_000, 1_000_000));
    }

    #[test]
    fn deadline_set_extend_shorten() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Deadline::new(t0, s(300));
        assert_eq!(d.remaining(t0), s(300));
        assert!(!d.expired(t0 + s(299)));
        assert!(d.expired(t0 + s(300)));
        d.apply(DurationCommand::Set(60), t0 + s(100));
        assert_eq!(d.remaining(t0 + s(100)), s(60));
        d.apply(DurationCommand::Extend(60), t0 + s(150));
        assert_eq!(d.remaining(t0 + s(150)), s(70));
        d.apply(DurationCommand::Shorten(100), t0 + s(150));
        assert!(d.expired(t0 + s(150)));
        assert_eq!(d.remaining(t0 + s(150)), Duration::ZERO);
        // A huge duration never expires instead of overflowing.
        d.apply(DurationCommand::Set(u64::MAX), t0);
        assert!(!d.expired(t0 + s(1_000_000_000)));
        d.apply(DurationCommand::Shorten(10), t0);
        assert!(!d.expired(t0 + s(1_000_000_000)));
    }

    #[test]
    fn deadline_save_restore_nesting() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Deadline::new(t0, s(300));
        // A restore without a save does nothing.
        d.apply(DurationCommand::Restore, t0 + s(10));
        assert_eq!(d.remaining(t0 + s(10)), s(290));
        // Only the first save records; inner restores only decrement.
        d.apply(DurationCommand::Save, t0 + s(100)); // 200 left
        d.apply(DurationCommand::Set(1000), t0 + s(100));
        d.apply(DurationCommand::Save, t0 + s(200)); // not recorded
        d.apply(DurationCommand::Set(5), t0 + s(200));
        d.apply(DurationCommand::Restore, t0 + s(201));
        assert_eq!(d.remaining(t0 + s(201)), s(4));
        d.apply(DurationCommand::Extend(1000), t0 + s(201));
        d.apply(DurationCommand::Restore, t0 + s(900));
        assert_eq!(d.remaining(t0 + s(900)), s(200));
        // The saved value was cleared: another restore does nothing.
        d.apply(DurationCommand::Restore, t0 + s(950));
        assert_eq!(d.remaining(t0 + s(950)), s(150));
        // Saving while already expired restores an expired deadline.
        d.apply(DurationCommand::Save, t0 + s(2000));
        d.apply(DurationCommand::Set(60), t0 + s(2000));
        d.apply(DurationCommand::Restore, t0 + s(2010));
        assert!(d.expired(t0 + s(2010)));
    }

    /// One arbitrary, valid control message.
    fn message() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"noop\n".to_vec()),
            any::<i32>().prop_map(|c| format!("exitcode {c}\n").into_bytes()),
            (0u32..100_000, "[+-]?", "[mhds]?")
                .prop_map(|(n, sign, unit)| format!("duration {sign}{n}{unit}\n").into_bytes()),
            Just(b"duration save\n".to_vec()),
            Just(b"duration restore\n".to_vec()),
            (
                "[a-z/]{0,8}",
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4)
            )
                .prop_map(|(name, files)| {
                    let entries: Vec<String> = files
                        .iter()
                        .enumerate()
                        .map(|(i, f)| format!(r#"{{"name": "f{i}", "length": {}}}"#, f.len()))
                        .collect();
                    let json = format!(
                        r#"{{"name": "{name}", "files": [{}], "x": "é\n"}}"#,
                        entries.join(", ")
                    );
                    let mut out = format!("result {}\n{json}", json.len()).into_bytes();
                    files.iter().for_each(|f| out.extend_from_slice(f));
                    out
                }),
        ]
    }

    proptest! {
        #[test]
        fn chunking_does_not_matter(
            messages in proptest::collection::vec(message(), 0..12),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..20),
            truncate in any::<Option<proptest::sample::Index>>(),
        ) {
            let mut stream = messages.concat();
            if let Some(at) = truncate {
                stream.truncate(at.index(stream.len() + 1));
            }
            let whole = decode(&stream);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&stream[start..p]);
                start = p;
            }
            chunks.push(&stream[start..]);
            prop_assert_eq!(decode_chunks(&chunks), whole.clone());
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(decode_chunks(&bytes), whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let _ = decode_chunks(&chunks);
        }
    }
}
