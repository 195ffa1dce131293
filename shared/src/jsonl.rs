//! Line-JSON (JSON Lines) reading and writing of records: one JSON object
//! per line, errors located as `SOURCE:LINE:COLUMN`, and a broken pipe on
//! output treated as a quiet end.
//!
//! ```
//! use atex_shared::jsonl::{Reader, Writer};
//! use atex_shared::records::Plan;
//!
//! let input = b"{\"name\": \"/plans/a\"}\n\n{\"name\": \"/plans/b\"}\n";
//! let plans: Vec<Plan> = Reader::new(&input[..], "<stdin>")
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(plans[1].name, "/plans/b");
//!
//! let mut out = Vec::new();
//! let mut writer = Writer::new(&mut out);
//! writer.write(&plans[0]).unwrap();
//! assert!(out.ends_with(b"}\n"));
//! ```

use std::io::{self, BufRead, Write};
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The line is not a valid record: bad JSON, a missing field, a wrong
    /// type, invalid UTF-8. Displays as `SOURCE:LINE:COLUMN: message`.
    #[error("{source_name}:{line}:{column}: {message}")]
    Parse {
        /// Name of the input (a file name, `<stdin>`).
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column (in bytes) where the parser stopped.
        column: usize,
        /// What was wrong, from the JSON parser.
        message: String,
    },
    /// Reading the input failed.
    #[error("{source_name}:{line}: failed to read: {error}")]
    Io {
        /// Name of the input.
        source_name: String,
        /// 1-based number of the line being read.
        line: usize,
        /// The underlying error.
        #[source]
        error: io::Error,
    },
}

/// Reads records of type `T`, one JSON object per line, skipping blank
/// lines. An iterator of `Result<T, ReadError>`: after a bad line it goes on
/// with the next one, so the caller decides whether one bad line is fatal.
#[derive(Debug)]
pub struct Reader<R, T> {
    input: R,
    source_name: String,
    line: usize,
    buf: Vec<u8>,
    done: bool,
    record: PhantomData<fn() -> T>,
}

impl<R: BufRead, T: DeserializeOwned> Reader<R, T> {
    /// Read from `input`; `source_name` names it in error messages.
    pub fn new(input: R, source_name: impl Into<String>) -> Self {
        Reader {
            input,
            source_name: source_name.into(),
            line: 0,
            buf: Vec::new(),
            done: false,
            record: PhantomData,
        }
    }

    /// Number of the last line read (1-based; 0 before the first).
    pub fn line(&self) -> usize {
        self.line
    }
}

impl<R: BufRead, T: DeserializeOwned> Iterator for Reader<R, T> {
    type Item = Result<T, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            self.line += 1;
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    // Without its line break: a string left open at the end
                    // of the line is then "EOF while parsing a string" at
                    // the line's end, not a control character at 2:0 that
                    // reads as 1:1.
                    let text = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    // Bytes, not str: serde_json reports invalid UTF-8 with
                    // its column like any other syntax error.
                    return Some(serde_json::from_slice(text).map_err(|e| ReadError::Parse {
                        source_name: self.source_name.clone(),
                        line: self.line,
                        column: e.column().max(1),
                        message: strip_position(&e.to_string()),
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.line -= 1,
                Err(error) => {
                    self.done = true;
                    return Some(Err(ReadError::Io {
                        source_name: self.source_name.clone(),
                        line: self.line,
                        error,
                    }));
                }
            }
        }
        None
    }
}

/// serde_json appends " at line L column C" to its messages; our own
/// location prefix replaces it, and line 1 of a single line is misleading.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The reader of the output went away (EPIPE). Not a failure of the
    /// tool: callers stop writing and exit with [`crate::exit::SUCCESS`]
    /// (DESIGN.md: "a broken pipe on stdout ends the tool quietly").
    #[error("output closed by its reader")]
    BrokenPipe,
    /// Writing failed for another reason.
    #[error("failed to write a record: {0}")]
    Io(#[source] io::Error),
    /// The record cannot be represented as JSON (a non-UTF-8 path, a map
    /// with non-string keys).
    #[error("failed to serialize a record: {0}")]
    Serialize(#[source] serde_json::Error),
}

impl WriteError {
    /// Whether this is the quiet end of a closed pipe.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, WriteError::BrokenPipe)
    }
}

/// Writes records one per line, flushing after every line so a consumer
/// down the pipe sees each record as soon as it exists.
///
/// A [`Writer::batched`] writer instead collects lines and writes them when
/// [`Writer::flush`] is called or [`BATCH_BYTES`] are pending: a producer of
/// millions of records (one test reporting 1,000,000 results) then makes
/// one `write` per batch instead of one per record, and flushes at the
/// moments that matter to a reader (after each chunk of input it handled).
#[derive(Debug)]
pub struct Writer<W: Write> {
    output: W,
    buf: Vec<u8>,
    closed: bool,
    batched: bool,
}

/// How many bytes a [`Writer::batched`] writer collects before it writes
/// them without waiting for [`Writer::flush`].
pub const BATCH_BYTES: usize = 64 * 1024;

impl<W: Write> Writer<W> {
    /// Write to `output` (usually a locked stdout), flushing every line.
    pub fn new(output: W) -> Self {
        Writer {
            output,
            buf: Vec::new(),
            closed: false,
            batched: false,
        }
    }

    /// Write to `output`, collecting lines until [`Writer::flush`] or until
    /// [`BATCH_BYTES`] are pending. The caller must flush at the end.
    pub fn batched(output: W) -> Self {
        Writer {
            output,
            buf: Vec::with_capacity(BATCH_BYTES * 2),
            closed: false,
            batched: true,
        }
    }

    /// Write out every pending line. A no-op for a line-flushing writer.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if self.closed {
            return Err(WriteError::BrokenPipe);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self
            .output
            .write_all(&self.buf)
            .and_then(|()| self.output.flush());
        self.buf.clear();
        self.outcome(written)
    }

    fn outcome(&mut self, written: io::Result<()>) -> Result<(), WriteError> {
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Err(WriteError::BrokenPipe)
            }
            Err(e) => Err(WriteError::Io(e)),
        }
    }

    /// Serialize `record` as one line and flush it (a batched writer flushes
    /// only when [`BATCH_BYTES`] are pending). After a broken pipe,
    /// every further call returns [`WriteError::BrokenPipe`] without writing.
    pub fn write<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<(), WriteError> {
        self.write_with(|buf| serde_json::to_writer(buf, record))
    }

    /// Like [`Writer::write`], for a record that renders its own JSON:
    /// `render` appends exactly one JSON value (no newline) to the buffer
    /// it is given. A producer of millions of records uses it to reuse
    /// JSON pieces it rendered once (atex-exec's result records).
    pub fn write_with(
        &mut self,
        render: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
    ) -> Result<(), WriteError> {
        if self.closed {
            return Err(WriteError::BrokenPipe);
        }
        let start = self.buf.len();
        if let Err(e) = render(&mut self.buf) {
            // Drop the half-written line; earlier pending lines stay.
            self.buf.truncate(start);
            return Err(WriteError::Serialize(e));
        }
        self.buf.push(b'\n');
        if self.batched && self.buf.len() < BATCH_BYTES {
            return Ok(());
        }
        self.flush()
    }

    /// Whether the reader has gone away.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Give back the underlying output.
    pub fn into_inner(self) -> W {
        self.output
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use crate::records::{Plan, TestResult};
    use proptest::prelude::*;

    fn read_all<T: DeserializeOwned>(input: &[u8]) -> Vec<Result<T, ReadError>> {
        Reader::new(input, "in.jsonl").collect()
    }

    #[test]
    fn skips_blank_lines_and_numbers_lines_from_one() {
        let input = b"\n  \n{\"name\": \"/a\"}\r\n\t\n{\"name\": 5}\n{\"name\": \"/c\"}";
        let items: Vec<Result<Plan, _>> = read_all(input);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().name, "/a");
        let err = items[1].as_ref().unwrap_err();
        let ReadError::Parse { line, column, .. } = err else {
            panic!("{err}");
        };
        assert_eq!(*line, 5);
        assert!(*column > 1);
        assert!(err.to_string().starts_with("in.jsonl:5:"), "{err}");
        assert!(!err.to_string().contains(" at line "), "{err}");
        assert_eq!(items[2].as_ref().unwrap().name, "/c");
    }

    #[test]
    fn bad_json_and_missing_fields_are_located() {
        let items: Vec<Result<TestResult, _>> = read_all(b"{\"status\": \"pass\"}\n{oops\n");
        let first = items[0].as_ref().unwrap_err().to_string();
        assert!(first.starts_with("in.jsonl:1:"), "{first}");
        assert!(first.contains("`test`"), "{first}");
        let second = items[1].as_ref().unwrap_err().to_string();
        assert!(second.starts_with("in.jsonl:2:2: "), "{second}");
    }

    #[test]
    fn an_unterminated_string_is_located_at_the_end_of_its_line() {
        let items: Vec<Result<TestResult, _>> =
            read_all(b"{\"test\": \"/a\", \"status\": \"pass\"}\n{\"test\": \"/b\n");
        let err = items[1].as_ref().unwrap_err().to_string();
        assert!(
            err.starts_with("in.jsonl:2:12: EOF while parsing a string"),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_is_a_parse_error() {
        let items: Vec<Result<Plan, _>> = read_all(b"{\"name\": \"\xff\"}\n");
        assert!(matches!(items[0], Err(ReadError::Parse { line: 1, .. })));
    }

    #[test]
    fn batched_writer_writes_on_flush_and_when_full() {
        let mut writer = Writer::batched(Vec::new());
        let plan = Plan {
            name: "/p".into(),
            ..Plan::default()
        };
        writer.write(&plan).unwrap();
        writer.write(&plan).unwrap();
        assert!(writer.output.is_empty(), "nothing written before a flush");
        writer.flush().unwrap();
        let text = String::from_utf8(writer.output.clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        for _ in 0..BATCH_BYTES {
            writer.write(&plan).unwrap();
            if writer.output.len() > text.len() {
                break;
            }
        }
        assert!(writer.output.len() > text.len(), "a full batch is written");
        assert!(writer.buf.len() < BATCH_BYTES);
    }

    struct Pipe {
        accept: usize,
        data: Vec<u8>,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.accept == 0 {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            self.accept -= 1;
            self.data.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn broken_pipe_is_a_quiet_typed_end() {
        let mut writer = Writer::new(Pipe {
            accept: 1,
            data: Vec::new(),
        });
        writer.write(&Plan::default()).unwrap();
        let err = writer.write(&Plan::default()).unwrap_err();
        assert!(err.is_broken_pipe());
        assert!(writer.is_closed());
        assert!(writer.write(&Plan::default()).unwrap_err().is_broken_pipe());
        assert_eq!(
            writer
                .into_inner()
                .data
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            1
        );
    }

    #[test]
    fn other_write_errors_are_io() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = Writer::new(Full).write(&Plan::default()).unwrap_err();
        assert!(matches!(err, WriteError::Io(_)));
    }

    proptest! {
        #[test]
        fn written_lines_read_back(names in proptest::collection::vec("\\PC{0,10}", 0..6)) {
            let mut writer = Writer::new(Vec::new());
            for name in &names {
                writer.write(&Plan { name: name.clone(), ..Plan::default() }).unwrap();
            }
            let out = writer.into_inner();
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), names.len());
            let back: Vec<Plan> = Reader::new(&out[..], "x").collect::<Result<_, _>>().unwrap();
            let back: Vec<String> = back.into_iter().map(|p| p.name).collect();
            prop_assert_eq!(back, names);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for item in Reader::<_, TestResult>::new(&bytes[..], "g") {
                if let Err(ReadError::Parse { line, column, .. }) = item {
                    prop_assert!(line >= 1 && column >= 1);
                }
            }
        }
    }
}
