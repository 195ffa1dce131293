//! Target `control`: atex-exec's control-stream decoder
//! ([`atex_exec::control::Decoder`]), which reads what a test writes to
//! `ATEX_TEST_CONTROL`.
//!
//! Properties checked on every input:
//! - decoding never panics, with the default caps and with tight ones;
//! - the events and the final error are the same however the bytes are
//!   split into chunks (whole, one byte at a time up to 8 KiB, random
//!   chunks with empty ones between, a few random cuts): the transport
//!   decides the chunks, not the test;
//! - the events follow the protocol's grammar (a `result`, then per file
//!   its data and its end, then the end of the result; nothing after
//!   `disconnect` or an error), every file gets exactly its announced
//!   length, and no announced length is over its cap;
//! - file data is borrowed from the chunk being fed, never buffered, and is
//!   never empty;
//! - after an error the decoder stays spent: a further feed and `finish`
//!   give the same error; a failing event handler leaves it spent too.
//!
//! The chunkings are drawn from the input's own hash, so a saved input
//! replays the same way.

use atex_exec::control::{ControlError, Decoder, DurationCommand, Event, Limits, ResultHeader};

use crate::engine::{Target, fnv1a};

/// The target, for [`crate::engine::run`].
pub const TARGET: Target = Target {
    name: "control",
    check,
    dictionary: DICTIONARY,
    max_len: 32 << 10,
};

/// The longest input also fed one byte at a time.
const BYTEWISE_MAX: usize = 8 << 10;

/// Protocol words and the JSON a `result` carries (spec section 2).
const DICTIONARY: &[&[u8]] = &[
    b"result ",
    b"exitcode ",
    b"duration ",
    b"disconnect\n",
    b"noop\n",
    b"\n",
    b" ",
    b"save",
    b"restore",
    b"+",
    b"-",
    b"15m",
    b"2h",
    b"1d",
    b"result 0\n",
    b"result 2\n{}",
    b"result 4096\n",
    b"result 4194304\n",
    b"result 3000000000\n",
    b"exitcode 0\n",
    b"exitcode 128\n",
    b"duration save\n",
    b"duration restore\n",
    b"{\"status\": \"pass\"}",
    b"\"files\"",
    b"\"files\": null",
    b"\"files\": []",
    b"\"name\"",
    b"\"length\"",
    b"\"status\"",
    b"\"note\"",
    b"\"partial\": true",
    b"\"testout\": \"output.txt\"",
    b"[{\"name\": \"f\", \"length\": 3}]",
    b"{\"name\": \"../x\", \"length\": 0}",
    b"null",
    b"true",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\xff",
    b"\xc3\xa9",
];

/// Tight caps, so that inputs of a few KiB reach every "over the limit"
/// path.
const TIGHT: Limits = Limits {
    result_json: 64,
    file: 32,
    held_partial: 1024,
};

/// An [`Event`] that owns its data, so decodings can be compared.
#[derive(Debug, Clone, PartialEq)]
enum Owned {
    Result(ResultHeader),
    /// All consecutive data of one file, however it was chunked.
    Data(usize, Vec<u8>),
    FileEnd(usize),
    ResultEnd,
    ExitCode(i32),
    Duration(DurationCommand),
    Disconnect,
    Noop,
}

/// What a decoding produced: its events and how the stream ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Owned>,
    end: Result<(), ControlError>,
}

/// Where the protocol's grammar stands, fed event by event.
#[derive(Debug, Default)]
struct Grammar {
    /// The files of the current result and how many bytes each got so far;
    /// `None` between results.
    files: Option<(Vec<u64>, Vec<u64>)>,
    /// The file being read.
    current: usize,
    disconnected: bool,
}

impl Grammar {
    fn step(&mut self, event: &Event<'_>, chunk: &[u8], limits: &Limits) -> Result<(), String> {
        if self.disconnected {
            return Err(format!("event after disconnect: {event:?}"));
        }
        match event {
            Event::Result(header) => {
                if self.files.is_some() {
                    return Err("a result inside a result".into());
                }
                if let Some(f) = header.files.iter().find(|f| f.length > limits.file) {
                    return Err(format!(
                        "file {f:?} is over the cap of {} bytes",
                        limits.file
                    ));
                }
                let lengths: Vec<u64> = header.files.iter().map(|f| f.length).collect();
                let got = vec![0; lengths.len()];
                self.files = Some((lengths, got));
                self.current = 0;
            }
            Event::FileData { index, data } => {
                let Some((lengths, got)) = &mut self.files else {
                    return Err("file data outside a result".into());
                };
                if *index != self.current || *index >= lengths.len() {
                    return Err(format!("data for file {index}, expected {}", self.current));
                }
                if data.is_empty() {
                    return Err("empty file data".into());
                }
                // Borrowed from the chunk: the decoder holds no payload.
                let range = chunk.as_ptr_range();
                if !range.contains(&data.as_ptr()) || data.len() > chunk.len() {
                    return Err("file data not borrowed from the fed chunk".into());
                }
                got[*index] += data.len() as u64;
                if got[*index] > lengths[*index] {
                    return Err(format!(
                        "file {index} got {} bytes, {} announced",
                        got[*index], lengths[*index]
                    ));
                }
            }
            Event::FileEnd { index } => {
                let Some((lengths, got)) = &self.files else {
                    return Err("file end outside a result".into());
                };
                if *index != self.current || got.get(*index) != lengths.get(*index) {
                    return Err(format!(
                        "file {index} ended with {:?} of {:?} bytes (expected file {})",
                        got.get(*index),
                        lengths.get(*index),
                        self.current
                    ));
                }
                self.current += 1;
            }
            Event::ResultEnd => {
                let Some((lengths, _)) = &self.files else {
                    return Err("result end outside a result".into());
                };
                if self.current != lengths.len() {
                    return Err(format!(
                        "result ended after {} of {} files",
                        self.current,
                        lengths.len()
                    ));
                }
                self.files = None;
            }
            Event::Disconnect => {
                self.check_between_results(event)?;
                self.disconnected = true;
            }
            Event::ExitCode(_) | Event::Duration(_) | Event::Noop => {
                self.check_between_results(event)?;
            }
        }
        Ok(())
    }

    fn check_between_results(&self, event: &Event<'_>) -> Result<(), String> {
        if self.files.is_some() {
            return Err(format!("{event:?} inside a result"));
        }
        Ok(())
    }
}

fn own(event: Event<'_>, events: &mut Vec<Owned>) {
    let owned = match event {
        Event::FileData { index, data } => {
            if let Some(Owned::Data(last, bytes)) = events.last_mut()
                && *last == index
            {
                bytes.extend_from_slice(data);
                return;
            }
            Owned::Data(index, data.to_vec())
        }
        Event::Result(header) => Owned::Result(header),
        Event::FileEnd { index } => Owned::FileEnd(index),
        Event::ResultEnd => Owned::ResultEnd,
        Event::ExitCode(code) => Owned::ExitCode(code),
        Event::Duration(command) => Owned::Duration(command),
        Event::Disconnect => Owned::Disconnect,
        Event::Noop => Owned::Noop,
    };
    events.push(owned);
}

/// Decode `input` fed as `chunks` (their lengths add up to the input's),
/// checking the grammar as events come.
fn decode(input: &[u8], chunks: &[usize], limits: Limits) -> Result<Outcome, String> {
    let mut decoder = Decoder::with_limits(limits);
    let mut events = Vec::new();
    let mut grammar = Grammar::default();
    let mut violation: Option<String> = None;
    let mut rest = input;
    let mut end = Ok(());
    for &size in chunks {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        let fed = decoder.feed(chunk, |event| {
            if violation.is_none()
                && let Err(why) = grammar.step(&event, chunk, &limits)
            {
                violation = Some(why);
            }
            own(event, &mut events);
            Ok::<(), ControlError>(())
        });
        if let Some(why) = violation {
            return Err(why);
        }
        if let Err(e) = fed {
            end = Err(e);
            break;
        }
    }
    if !rest.is_empty() && end.is_ok() {
        return Err("chunks do not cover the input".into());
    }
    match &end {
        Ok(()) => end = decoder.finish(),
        Err(e) => {
            // Spent: the same error again, whatever comes.
            let again = decoder.feed(b"noop\n", |_| Ok::<(), ControlError>(()));
            if again.as_ref().err() != Some(e) || decoder.finish().as_ref().err() != Some(e) {
                return Err(format!(
                    "after {e:?} the decoder said {again:?} / {:?}",
                    decoder.finish()
                ));
            }
        }
    }
    if end.is_ok() && grammar.files.is_some() && !decoder.is_disconnected() {
        return Err("the stream ended inside a result without an error".into());
    }
    Ok(Outcome { events, end })
}

/// A small generator seeded by the input, for chunkings that replay.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound.max(1) as u64) as usize
    }
}

/// The chunkings tried on an input: random chunks of 0..=64 bytes (empty
/// feeds included) and two or three random cuts.
fn chunkings(input: &[u8]) -> [Vec<usize>; 2] {
    let mut rng = XorShift(fnv1a(input) | 1);
    let mut small = Vec::new();
    let mut left = input.len();
    while left > 0 {
        let size = rng.next(65).min(left);
        small.push(size);
        left -= size;
    }
    let mut cuts: Vec<usize> = (0..1 + rng.next(3))
        .map(|_| rng.next(input.len() + 1))
        .collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut previous = 0;
    let few = cuts
        .into_iter()
        .map(|cut| {
            let size = cut - previous;
            previous = cut;
            size
        })
        .collect();
    [small, few]
}

/// The properties of the module docs, for one input.
pub fn check(input: &[u8]) -> Result<(), String> {
    for limits in [Limits::default(), TIGHT] {
        let whole = decode(input, &[input.len()], limits)?;
        // One byte at a time is what ATEX's own reader does; past 8 KiB
        // (twice the control line) it costs more cases than it finds.
        if input.len() <= BYTEWISE_MAX {
            let bytes = decode(input, &vec![1; input.len()], limits)?;
            if bytes != whole {
                return Err(format!(
                    "byte-at-a-time decoding differs (limits {limits:?}):\n  whole: {whole:?}\n  bytes: {bytes:?}"
                ));
            }
        }
        for chunks in chunkings(input) {
            let split = decode(input, &chunks, limits)?;
            if split != whole {
                return Err(format!(
                    "decoding in chunks {chunks:?} differs (limits {limits:?}):\n  whole: {whole:?}\n  split: {split:?}"
                ));
            }
        }
    }
    handler_failure(input)
}

/// A handler error stops the decoding where it happened and leaves the
/// decoder spent.
fn handler_failure(input: &[u8]) -> Result<(), String> {
    #[derive(Debug, PartialEq)]
    enum Stop {
        Control(ControlError),
        Handler,
    }
    impl From<ControlError> for Stop {
        fn from(e: ControlError) -> Stop {
            Stop::Control(e)
        }
    }
    let fail_at = XorShift(fnv1a(input) ^ 0x5555).next(8);
    let mut seen = 0;
    let mut decoder = Decoder::new();
    let fed = decoder.feed(input, |_| {
        seen += 1;
        if seen > fail_at {
            Err(Stop::Handler)
        } else {
            Ok(())
        }
    });
    if fed == Err(Stop::Handler) {
        let again = decoder.feed(b"noop\n", |_| Ok::<(), ControlError>(()));
        if again.is_ok() || decoder.finish().is_ok() {
            return Err("the decoder went on after its handler failed".into());
        }
    }
    Ok(())
}
