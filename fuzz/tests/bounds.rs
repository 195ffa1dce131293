//! Memory bounds of the decoders on inputs far larger than the fuzz cases:
//! a test (or an fmf file) that announces or sends without end must not
//! make the reader hold it. Resident memory is read from
//! `/proc/self/status`; all checks run in one test so that nothing else in
//! this process allocates meanwhile.

use std::path::Path;

use atex_exec::control::{ControlError, Decoder, Event, MAX_LINE};

/// The process's resident memory now and at its peak, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const MIB: u64 = 1 << 20;
/// What the decoder may hold beyond its input chunk: far below the data
/// each case sends (256 MiB and more), far above its fixed buffers.
const SLACK: u64 = 48 * MIB;

/// Feed `head`, then `total` bytes of `fill` in 64 KiB chunks, and return
/// the first error, the events seen and the bytes of file data.
fn stream(head: &[u8], fill: u8, total: u64) -> (Option<ControlError>, usize, u64) {
    let chunk = vec![fill; 64 << 10];
    let mut decoder = Decoder::new();
    let mut events = 0;
    let mut data = 0u64;
    let mut on_event = |event: Event<'_>| {
        events += 1;
        if let Event::FileData { data: bytes, .. } = event {
            data += bytes.len() as u64;
        }
        Ok::<(), ControlError>(())
    };
    if let Err(e) = decoder.feed(head, &mut on_event) {
        return (Some(e), events, data);
    }
    let mut sent = 0;
    while sent < total {
        if let Err(e) = decoder.feed(&chunk, &mut on_event) {
            return (Some(e), events, data);
        }
        sent += chunk.len() as u64;
    }
    (decoder.finish().err(), events, data)
}

#[test]
fn decoders_hold_no_more_than_their_caps() {
    let (start, _) = memory();
    let check = |what: &str| {
        let (_, peak) = memory();
        assert!(
            peak < start + SLACK,
            "{what}: peak resident memory {} MiB, started at {} MiB",
            peak / MIB,
            start / MIB
        );
    };

    // An announced JSON over the cap fails at its line, before any data.
    let (error, events, _) = stream(b"result 3000000000\n", b'x', 256 * MIB);
    let error = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("over the limit"), "{error}");
    assert_eq!(events, 0);
    check("result 3000000000");

    // A control line without end fails at MAX_LINE.
    let (error, _, _) = stream(b"noop ", b'x', 256 * MIB);
    let error = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains(&MAX_LINE.to_string()), "{error}");
    check("an endless control line");

    // A JSON at the cap (4 MiB of nesting) is read and refused.
    let (error, _, _) = stream(b"result 4194304\n", b'[', 4 * MIB);
    assert!(error.is_some());
    check("4 MiB of [");

    // A 1 GiB file streams through as borrowed data.
    let gib = 1u64 << 30;
    let json = format!("{{\"files\": [{{\"name\": \"f\", \"length\": {gib}}}]}}");
    let head = format!("result {}\n{json}", json.len());
    let (error, events, data) = stream(head.as_bytes(), b'z', gib);
    assert_eq!(error, None);
    assert_eq!(data, gib);
    assert_eq!(events as u64, 1 + gib / (64 << 10) + 2);
    check("a 1 GiB file");

    // Many results one after another reuse the decoder's buffers.
    let one = b"result 18\n{\"status\": \"pass\"}";
    let many = one.repeat(10_000);
    let mut decoder = Decoder::new();
    let mut results = 0;
    for _ in 0..10 {
        let fed = decoder.feed(&many, |event| {
            if matches!(event, Event::ResultEnd) {
                results += 1;
            }
            Ok::<(), ControlError>(())
        });
        assert_eq!(fed, Ok(()));
    }
    assert_eq!(results, 100_000);
    check("100,000 results");

    // The 426-byte alias bomb of issue 10 item 2 stops at the alias budget.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (name, alias) in ["bcdefghij".chars().zip("abcdefghi".chars())]
        .into_iter()
        .flatten()
    {
        let items = vec![format!("*{alias}"); 10].join(", ");
        bomb.push_str(&format!("{name}: &{name} [{items}]\n"));
    }
    let error = atex_discover::yaml::parse(&bomb, Path::new("bomb.fmf"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("alias budget"), "{error}");
    assert!(error.starts_with("bomb.fmf:"), "{error}");
    check("the alias bomb");
}
