//! JUnit XML and the static HTML page: one line per result appended to
//! part files as results arrive, and the whole documents assembled from
//! the parts (header from the in-memory totals, the parts copied in, a
//! footer), written to a temp file and renamed into place.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::attempts::{Earlier, Reruns};
use crate::record::{push_json_str, write_atex_line};

/// How a status counts in JUnit and in exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `pass`, `info`.
    Pass,
    /// `skip`.
    Skip,
    /// `fail`, `warn`, and any status atex does not know (as atex-exec
    /// counts them): a JUnit failure.
    Fail,
    /// `error`: a JUnit error.
    Error,
    /// `infra`: a JUnit error.
    Infra,
}

impl Verdict {
    /// The verdict of `status`.
    pub fn of(status: &str) -> Verdict {
        match status {
            "pass" | "info" => Verdict::Pass,
            "skip" => Verdict::Skip,
            "error" => Verdict::Error,
            "infra" => Verdict::Infra,
            _ => Verdict::Fail,
        }
    }
}

/// Append `s` to `out` escaped for XML text and attributes, newlines and
/// tabs as character references (so a testcase stays on one line), and
/// the characters XML 1.0 cannot hold replaced by U+FFFD.
pub fn push_xml(out: &mut Vec<u8>, s: &str) {
    // Runs of bytes that need nothing are copied at once: a note or an
    // output tail is mostly such a run (char by char was a tenth of an
    // ingest).
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'"' => b"&quot;",
            b'\'' => b"&apos;",
            b'\n' => b"&#10;",
            b'\r' => b"&#13;",
            b'\t' => b"&#9;",
            0..0x20 => "\u{fffd}".as_bytes(),
            // U+FFFE and U+FFFF (EF BF BE, EF BF BF) are not XML either.
            0xef if matches!(bytes.get(i + 1..i + 3), Some([0xbf, 0xbe | 0xbf])) => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice("\u{fffd}".as_bytes());
                i += 3;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Append `s` escaped for HTML text.
pub fn push_html(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '&' => out.extend_from_slice(b"&amp;"),
            '"' => out.extend_from_slice(b"&quot;"),
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// One result as the reports see it.
#[derive(Debug)]
pub struct Row<'a> {
    /// The platform.
    pub platform: &'a str,
    /// The status (`None`: the result had none, which counts as not
    /// passed).
    pub status: Option<&'a str>,
    /// The stored test name.
    pub test: &'a str,
    /// The subtest.
    pub subtest: Option<&'a str>,
    /// The stored file names.
    pub files: &'a [String],
    /// The note.
    pub note: Option<&'a str>,
    /// The directory of the files, relative to the store (`None` when
    /// there are none).
    pub dir: Option<&'a str>,
    /// Seconds.
    pub duration: f64,
    /// The end of the test's output, for failures.
    pub output: Option<&'a [u8]>,
    /// What the test's earlier attempts left (the store's `attempts/`),
    /// `None` when it ran once.
    pub reruns: Option<&'a Reruns>,
}

/// Append the JUnit `<testcase>` of `row`, one line. A result with
/// earlier failed attempts carries them as Surefire does: after a pass
/// (or skip) as `<flakyFailure>` / `<flakyError>`, after a failure as
/// `<rerunFailure>` / `<rerunError>`, in the order of Surefire's schema
/// (failure, rerunFailure, flakyFailure, skipped, error, rerunError,
/// flakyError), each with the attempt's status as type, its note as
/// message and the note and output tail as `<stackTrace>`.
pub fn junit_testcase(out: &mut Vec<u8>, row: &Row<'_>) {
    out.extend_from_slice(b"<testcase classname=\"");
    push_xml(out, row.test);
    out.extend_from_slice(b"\" name=\"");
    push_xml(out, row.subtest.unwrap_or(row.test));
    let _ = write!(out, "\" time=\"{:.3}\"", row.duration.max(0.0));
    let status = row.status.unwrap_or("");
    let verdict = Verdict::of(status);
    let earlier = row.reruns.map(|r| &r.failed[..]).unwrap_or(&[]);
    if verdict == Verdict::Pass && earlier.is_empty() {
        out.extend_from_slice(b"/>\n");
        return;
    }
    out.push(b'>');
    let passed = matches!(verdict, Verdict::Pass | Verdict::Skip);
    let (as_failure, as_error): (&[u8], &[u8]) = if passed {
        (b"flakyFailure", b"flakyError")
    } else {
        (b"rerunFailure", b"rerunError")
    };
    let is_error = |e: &Earlier| {
        matches!(
            Verdict::of(e.status.as_deref().unwrap_or("")),
            Verdict::Error | Verdict::Infra
        )
    };
    let reruns = |out: &mut Vec<u8>, errors: bool| {
        for (e, tail) in earlier.iter().filter(|(e, _)| is_error(e) == errors) {
            let element = if errors { as_error } else { as_failure };
            push_failure(
                out,
                element,
                e.status.as_deref(),
                e.note.as_deref(),
                tail.as_deref(),
                true,
            );
        }
    };
    match verdict {
        Verdict::Pass => {}
        Verdict::Skip => {
            reruns(out, false);
            out.extend_from_slice(b"<skipped message=\"");
            push_xml(out, row.note.unwrap_or(""));
            out.extend_from_slice(b"\"/>");
        }
        Verdict::Fail => {
            push_failure(out, b"failure", row.status, row.note, row.output, false);
            reruns(out, false);
        }
        Verdict::Error | Verdict::Infra => {
            reruns(out, false);
            push_failure(out, b"error", row.status, row.note, row.output, false);
        }
    }
    if verdict == Verdict::Pass {
        reruns(out, false);
    }
    reruns(out, true);
    out.extend_from_slice(b"</testcase>\n");
}

/// Append a `<failure>`-like element: the status as type, the note (or
/// the status, or "no status") as message, the note and the output tail
/// as text (in a `<stackTrace>` for Surefire's rerun elements).
fn push_failure(
    out: &mut Vec<u8>,
    element: &[u8],
    status: Option<&str>,
    note: Option<&str>,
    output: Option<&[u8]>,
    stack_trace: bool,
) {
    out.push(b'<');
    out.extend_from_slice(element);
    out.extend_from_slice(b" type=\"");
    push_xml(out, status.unwrap_or(""));
    out.extend_from_slice(b"\" message=\"");
    push_xml(
        out,
        note.or(status.filter(|s| !s.is_empty()))
            .unwrap_or("no status"),
    );
    out.extend_from_slice(b"\">");
    if stack_trace {
        out.extend_from_slice(b"<stackTrace>");
    }
    // The note, then a blank line and the output's end; no blank line
    // before the output when there is no note.
    if let Some(note) = note {
        push_xml(out, note);
    }
    if let Some(output) = output {
        if note.is_some() {
            out.extend_from_slice(b"&#10;&#10;");
        }
        push_xml(out, &String::from_utf8_lossy(output));
    }
    if stack_trace {
        out.extend_from_slice(b"</stackTrace>");
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(element);
    out.push(b'>');
}

/// The summed `time` of the testcases in the JUnit part file at `path`
/// (one testcase per line, as [`junit_testcase`] writes them; a missing
/// file is empty). `--append` reads it back because ATEX's lines carry no
/// duration, and the suite's time must count the whole store.
pub fn part_time(path: &Path) -> io::Result<f64> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0.0),
        Err(e) => return Err(e),
    };
    let mut reader = io::BufReader::with_capacity(1 << 18, file);
    let mut line = Vec::new();
    let mut total = 0.0;
    loop {
        line.clear();
        if io::BufRead::read_until(&mut reader, b'\n', &mut line)? == 0 {
            return Ok(total);
        }
        // Attribute values are escaped (a quote is `&quot;`), so the first
        // `" time="` is the attribute itself.
        const KEY: &[u8] = b"\" time=\"";
        let Some(at) = line.windows(KEY.len()).position(|w| w == KEY) else {
            continue;
        };
        let value = &line[at + KEY.len()..];
        let end = value.iter().position(|&b| b == b'"').unwrap_or(0);
        if let Some(t) = std::str::from_utf8(&value[..end])
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
        {
            total += t.max(0.0);
        }
    }
}

/// Append the HTML page's data row of `row`: ATEX's line plus the files'
/// directory and the duration (and, for a test that ran more than once,
/// `{"attempts": N, "flaky": BOOL, "earlier": [STATUS...]}`: its runs,
/// whether this result passed after earlier ones that did not, and
/// those earlier results' statuses), as a JavaScript array and a comma.
pub fn html_row(out: &mut Vec<u8>, row: &Row<'_>) {
    write_atex_line(
        out,
        row.platform,
        row.status,
        row.test,
        row.subtest,
        row.files,
        row.note,
        true,
    );
    out.pop();
    out.extend_from_slice(b", ");
    match row.dir {
        Some(dir) => push_json_str(out, dir, true),
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(
        out,
        ", {}",
        (row.duration.max(0.0) * 1000.0).round() / 1000.0
    );
    if let Some(reruns) = row.reruns {
        // Only a rerun test's row has it: other rows stay as they were.
        let _ = write!(
            out,
            ", {{\"attempts\": {}, \"flaky\": {}, \"earlier\": [",
            reruns.attempts,
            reruns.flaky(row.status)
        );
        for (i, (e, _)) in reruns.failed.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            match e.status.as_deref() {
                Some(s) => push_json_str(out, s, true),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"],\n");
}

/// Whether a result is a test stopped at the end of its `duration`: an
/// `infra` result with atex-exec's (and ATEX's) timeout note.
pub fn is_timeout(status: Option<&str>, note: Option<&str>) -> bool {
    status == Some("infra") && note.is_some_and(|n| n.contains("duration timeout reached"))
}

/// Counts of one platform.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Results per status, in first-seen order.
    pub statuses: Vec<(String, u64)>,
    /// All results.
    pub tests: u64,
    /// JUnit failures.
    pub failures: u64,
    /// JUnit errors.
    pub errors: u64,
    /// JUnit skipped.
    pub skipped: u64,
    /// `infra` results.
    pub infra: u64,
    /// Of the `infra` results, those of a test stopped at its `duration`
    /// ([`is_timeout`]).
    pub timeouts: u64,
    /// Results that passed (or were skipped) after the same result of an
    /// earlier attempt did not (the store's `attempts/`).
    pub flaky: u64,
    /// Seconds, summed.
    pub time: f64,
}

impl Totals {
    /// Count one result.
    pub fn add(&mut self, status: &str, duration: f64) {
        self.tests += 1;
        self.time += duration.max(0.0);
        match Verdict::of(status) {
            Verdict::Pass => {}
            Verdict::Skip => self.skipped += 1,
            Verdict::Fail => self.failures += 1,
            Verdict::Error => self.errors += 1,
            Verdict::Infra => {
                self.errors += 1;
                self.infra += 1;
            }
        }
        match self.statuses.iter_mut().find(|(s, _)| s == status) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((status.to_owned(), 1)),
        }
    }

    /// The exit code these results call for (DESIGN.md): 3 when some is
    /// `infra`, else 1 when some failed, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.infra > 0 {
            atex_shared::exit::INFRA
        } else if self.failures + self.errors > 0 {
            atex_shared::exit::TEST_FAILED
        } else {
            atex_shared::exit::SUCCESS
        }
    }

    /// Add another platform's counts.
    pub fn merge(&mut self, other: &Totals) {
        for (s, n) in &other.statuses {
            match self.statuses.iter_mut().find(|(x, _)| x == s) {
                Some((_, m)) => *m += n,
                None => self.statuses.push((s.clone(), *n)),
            }
        }
        self.tests += other.tests;
        self.failures += other.failures;
        self.errors += other.errors;
        self.skipped += other.skipped;
        self.infra += other.infra;
        self.timeouts += other.timeouts;
        self.flaky += other.flaky;
        self.time += other.time;
    }
}

/// Write `path` atomically: `fill` writes a temp file beside it, which is
/// then renamed over `path`.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let file = File::create(&tmp)?;
        let mut w = io::BufWriter::with_capacity(1 << 16, file);
        fill(&mut w)?;
        w.flush()?;
    }
    std::fs::rename(&tmp, path)
}

fn copy_part(part: &Path, out: &mut dyn Write) -> io::Result<()> {
    match File::open(part) {
        Ok(mut f) => io::copy(&mut f, out).map(|_| ()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Write `junit.xml`: one `<testsuite>` per platform (its counts from
/// `platforms`, its testcases from its part file).
pub fn write_junit(path: &Path, platforms: &[(&str, &Totals, &Path)]) -> io::Result<()> {
    write_atomically(path, |out| {
        let mut all = Totals::default();
        for (_, t, _) in platforms {
            all.merge(t);
        }
        let mut head = Vec::new();
        head.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            head,
            "<testsuites name=\"atex\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            all.tests, all.failures, all.errors, all.skipped, all.time
        );
        out.write_all(&head)?;
        for (id, (name, t, part)) in platforms.iter().enumerate() {
            let mut s = Vec::new();
            s.extend_from_slice(b"<testsuite name=\"");
            push_xml(&mut s, name);
            let _ = writeln!(
                s,
                "\" id=\"{id}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
                t.tests, t.failures, t.errors, t.skipped, t.time
            );
            out.write_all(&s)?;
            copy_part(part, out)?;
            out.write_all(b"</testsuite>\n")?;
        }
        out.write_all(b"</testsuites>\n")
    })
}

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// The result rows `index.html` holds itself; the others are in
/// [`ROWS_DIR`], loaded by the page when they are needed.
pub const PAGE_ROWS: usize = 2000;

/// The result rows in each file of [`ROWS_DIR`].
pub const CHUNK_ROWS: usize = 20_000;

/// The directory beside `index.html` with the rows past the first
/// [`PAGE_ROWS`]: `000001.js`, `000002.js`, ... of [`CHUNK_ROWS`] rows each
/// (`ATEX_ROWS(n, [...]);`).
pub const ROWS_DIR: &str = "rows";

/// Stream up to `n` lines from `reader` into `out` (`None`: only count
/// them), a line never held whole (one can be tens of megabytes); the
/// lines and the bytes of those lines passed (an unended last line, of a
/// file still being written, is not counted).
fn pass_lines(
    reader: &mut impl io::BufRead,
    mut out: Option<&mut dyn Write>,
    n: usize,
) -> io::Result<(usize, u64)> {
    let (mut lines, mut bytes, mut partial) = (0, 0u64, 0u64);
    while lines < n {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        // Every line the buffer ends, up to the n-th: one scan of the
        // buffer, not one call per line.
        let mut take = buf.len();
        let mut last_end = None;
        for at in memchr::memchr_iter(b'\n', buf) {
            lines += 1;
            last_end = Some(at + 1);
            if lines == n {
                take = at + 1;
                break;
            }
        }
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&buf[..take])?;
        }
        reader.consume(take);
        match last_end {
            Some(end) => {
                bytes += partial + end as u64;
                partial = (take - end) as u64;
            }
            None => partial += take as u64,
        }
    }
    Ok((lines, bytes))
}

/// A series of chunk files in one directory: `<prefix>000001.js`, ...,
/// each `<call><n>, [\n<lines>]);` with up to `lines` lines of a part
/// file; the page loads them one after another when it needs them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunks<'a> {
    /// The directory, beside `index.html`.
    pub dir: &'a Path,
    /// What each file's name starts with.
    pub prefix: &'a str,
    /// The start of each file: the function it calls and its first
    /// arguments, up to the chunk number (`ATEX_ROWS(`).
    pub call: &'a str,
    /// Lines in each file.
    pub lines: usize,
}

impl Chunks<'_> {
    fn path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("{}{n:06}.js", self.prefix))
    }

    /// Write the lines `reader` has left into the chunk files (one already
    /// there with the same length is left as it is: part files are only
    /// ever appended to), and remove the series' files past the last;
    /// returns how many there are. An unended last line (a part file
    /// being written by another process) is left for the next time.
    pub fn write(&self, reader: &mut io::BufReader<File>) -> io::Result<usize> {
        use std::io::Seek;
        let mut chunks = 0;
        loop {
            let start = reader.stream_position()?;
            let (lines, bytes) = pass_lines(reader, None, self.lines)?;
            if lines == 0 {
                break;
            }
            chunks += 1;
            if chunks == 1 {
                std::fs::create_dir_all(self.dir)?;
            }
            let head = format!("{}{chunks}, [\n", self.call);
            let tail = b"]);\n";
            let path = self.path(chunks);
            let len = (head.len() + tail.len()) as u64 + bytes;
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == len) {
                continue;
            }
            let end = reader.stream_position()?;
            reader.seek(io::SeekFrom::Start(start))?;
            write_atomically(&path, |out| {
                out.write_all(head.as_bytes())?;
                pass_lines(reader, Some(out), lines)?;
                out.write_all(tail)
            })?;
            reader.seek(io::SeekFrom::Start(end))?;
        }
        self.clear(chunks)?;
        Ok(chunks)
    }

    /// Remove the series' files numbered past `last`.
    pub fn clear(&self, last: usize) -> io::Result<()> {
        let entries = match std::fs::read_dir(self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let number = name
                .to_str()
                .and_then(|n| n.strip_prefix(self.prefix))
                .and_then(|n| n.strip_suffix(".js"))
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<usize>().ok());
            if number.is_some_and(|n| n > last) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Write `index.html`: the totals table (plain HTML), the filters, and the
/// result rows, shown by the page's own script: the first [`PAGE_ROWS`]
/// in the page, the others in [`ROWS_DIR`] files the page loads when a
/// filter, a sort or "show more" needs them (so the page of a
/// million-result store stays small); `timeline` says how many timeline
/// chunk files [`crate::timeline::write`] wrote for the page to load
/// when its timeline is opened.
pub fn write_html(
    path: &Path,
    platforms: &[(&str, &Totals)],
    rows: &Path,
    timeline: crate::timeline::Written,
) -> io::Result<()> {
    let mut reader = match File::open(rows) {
        Ok(file) => Some(io::BufReader::with_capacity(1 << 16, file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    write_atomically(path, |out| {
        let mut all = Totals::default();
        for (_, t) in platforms {
            all.merge(t);
        }
        let mut h = Vec::new();
        h.extend_from_slice(b"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>atex results</title>\n<style>\n");
        h.extend_from_slice(STYLE.as_bytes());
        h.extend_from_slice(b"</style></head><body>\n<h1>atex results</h1>\n<table id=\"totals\"><thead><tr><th>platform</th><th>results</th>");
        for (s, _) in &all.statuses {
            h.extend_from_slice(b"<th class=\"st-");
            push_html(&mut h, s);
            h.extend_from_slice(b"\">");
            push_html(&mut h, if s.is_empty() { "(none)" } else { s });
            h.extend_from_slice(b"</th>");
        }
        // Only a store with flaky results shows them (others stay as
        // they were).
        let flaky = all.flaky > 0;
        if flaky {
            h.extend_from_slice(b"<th class=\"flaky\">flaky</th>");
        }
        h.extend_from_slice(b"</tr></thead><tbody>\n");
        let rows_of = |name: &str, t: &Totals, h: &mut Vec<u8>| {
            h.extend_from_slice(b"<tr><td>");
            push_html(h, name);
            let _ = write!(h, "</td><td>{}</td>", t.tests);
            for (s, _) in &all.statuses {
                let n = t
                    .statuses
                    .iter()
                    .find(|(x, _)| x == s)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                let _ = write!(h, "<td>{n}</td>");
            }
            if flaky {
                let _ = write!(h, "<td>{}</td>", t.flaky);
            }
            h.extend_from_slice(b"</tr>\n");
        };
        for (name, t) in platforms {
            rows_of(name, t, &mut h);
        }
        if platforms.len() > 1 {
            rows_of("all", &all, &mut h);
        }
        h.extend_from_slice(b"</tbody></table>\n<details id=\"timeline\"><summary>timeline: a row per machine, a bar per test attempt</summary><div id=\"timeline-view\"></div></details>\n<form id=\"filters\" onsubmit=\"return false\">\n<fieldset id=\"status-filter\"><legend>status</legend>\n");
        for (s, n) in &all.statuses {
            h.extend_from_slice(
                b"<label><input type=\"checkbox\" checked name=\"status\" value=\"",
            );
            push_html(&mut h, s);
            h.extend_from_slice(b"\"> ");
            push_html(&mut h, if s.is_empty() { "(none)" } else { s });
            let _ = writeln!(h, " ({n})</label>");
        }
        h.extend_from_slice(b"</fieldset>\n");
        if flaky {
            let _ = writeln!(
                h,
                "<label><input type=\"checkbox\" id=\"flaky-only\"> flaky only ({})</label>",
                all.flaky
            );
        }
        h.extend_from_slice(
            b"<label>platform <select id=\"platform\"><option value=\"\">all</option>",
        );
        for (name, _) in platforms {
            h.extend_from_slice(b"<option>");
            push_html(&mut h, name);
            h.extend_from_slice(b"</option>");
        }
        h.extend_from_slice(b"</select></label>\n<label>name <input id=\"name\" type=\"search\" placeholder=\"substring of test or subtest\"></label>\n</form>\n<p id=\"count\"></p>\n<table id=\"results\"><thead><tr><th>platform</th><th data-sort=\"1\">status</th><th data-sort=\"2\">test</th><th>subtest</th><th>note</th><th>files</th><th data-sort=\"7\">seconds</th></tr></thead><tbody></tbody></table>\n<p><button id=\"more\" type=\"button\" hidden>show more</button></p>\n<noscript>The result table needs JavaScript; the totals above do not.</noscript>\n<script>\nconst ROWS = [\n");
        out.write_all(&h)?;
        let series = Chunks {
            dir: &path.with_file_name(ROWS_DIR),
            prefix: "",
            call: "ATEX_ROWS(",
            lines: CHUNK_ROWS,
        };
        let chunks = match &mut reader {
            Some(reader) => {
                pass_lines(reader, Some(&mut *out), PAGE_ROWS)?;
                series.write(reader)?
            }
            None => 0,
        };
        if chunks == 0 {
            series.clear(0)?;
        }
        let _ = write!(
            out,
            "];\nconst ROW_CHUNKS = {chunks};\nconst ROWS_DIR = '{ROWS_DIR}';\nconst TIMELINE = {{dir: '{}', chunks: {}, earlier: {}}};\n",
            crate::timeline::DIR,
            timeline.chunks,
            timeline.earlier
        );
        out.write_all(SCRIPT.as_bytes())?;
        out.write_all(b"</script>\n</body></html>\n")
    })
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The char-by-char escaping `push_xml` replaced, as the reference.
    fn push_xml_chars(out: &mut Vec<u8>, s: &str) {
        for c in s.chars() {
            match c {
                '<' => out.extend_from_slice(b"&lt;"),
                '>' => out.extend_from_slice(b"&gt;"),
                '&' => out.extend_from_slice(b"&amp;"),
                '"' => out.extend_from_slice(b"&quot;"),
                '\'' => out.extend_from_slice(b"&apos;"),
                '\n' => out.extend_from_slice(b"&#10;"),
                '\r' => out.extend_from_slice(b"&#13;"),
                '\t' => out.extend_from_slice(b"&#9;"),
                c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                    out.extend_from_slice("\u{fffd}".as_bytes())
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
    }

    proptest! {
        #[test]
        fn xml_escaping_matches_the_char_by_char_one(
            s in "([a-z<>&\"'\n\r\t\u{0}-\u{1f}é\u{fffe}\u{ffff}\u{fffd}\u{efbf}😀]|\\PC){0,40}"
        ) {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            push_xml(&mut fast, &s);
            push_xml_chars(&mut slow, &s);
            prop_assert_eq!(fast, slow);
        }
    }

    fn row<'a>(
        status: Option<&'a str>,
        note: Option<&'a str>,
        output: Option<&'a [u8]>,
    ) -> Row<'a> {
        Row {
            platform: "p",
            status,
            test: "/t",
            subtest: Some("s<1>"),
            files: &[],
            note,
            dir: None,
            duration: 1.5,
            output,
            reruns: None,
        }
    }

    #[test]
    fn testcases_are_one_line_each() {
        let mut out = Vec::new();
        junit_testcase(&mut out, &row(Some("pass"), None, None));
        junit_testcase(
            &mut out,
            &row(Some("fail"), Some("bad\n\"x\""), Some(b"line1\nline2\x01")),
        );
        junit_testcase(&mut out, &row(Some("infra"), None, None));
        junit_testcase(&mut out, &row(Some("skip"), Some("n/a"), None));
        junit_testcase(&mut out, &row(None, None, None));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0],
            r#"<testcase classname="/t" name="s&lt;1&gt;" time="1.500"/>"#
        );
        assert_eq!(
            lines[1],
            "<testcase classname=\"/t\" name=\"s&lt;1&gt;\" time=\"1.500\"><failure type=\"fail\" message=\"bad&#10;&quot;x&quot;\">bad&#10;&quot;x&quot;&#10;&#10;line1&#10;line2\u{fffd}</failure></testcase>"
        );
        assert!(lines[2].contains("<error type=\"infra\" message=\"infra\">"));
        assert!(lines[3].contains("<skipped message=\"n/a\"/>"));
        // No status: not passed, a failure.
        assert!(lines[4].contains("<failure type=\"\" message=\"no status\">"));
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("junit-0.xml");
        std::fs::write(&part, &text).unwrap();
        assert_eq!(part_time(&part).unwrap(), 7.5);
        assert_eq!(part_time(&dir.path().join("none")).unwrap(), 0.0);
    }

    #[test]
    fn earlier_attempts_follow_surefires_schema_order() {
        let earlier = |status: &str| {
            let e = crate::attempts::tests::earlier(status, "n");
            (e, None)
        };
        let reruns = Reruns {
            attempts: 3,
            failed: vec![earlier("infra"), earlier("fail")],
        };
        let case = |status: &str| {
            let mut out = Vec::new();
            let mut r = row(Some(status), Some("final"), None);
            r.reruns = Some(&reruns);
            junit_testcase(&mut out, &r);
            let text = String::from_utf8(out).unwrap();
            let start = text.find('>').unwrap() + 1;
            text[start..].trim_end().to_owned()
        };
        let fail =
            "<rerunFailure type=\"fail\" message=\"n\"><stackTrace>n</stackTrace></rerunFailure>";
        let infra =
            "<rerunError type=\"infra\" message=\"n\"><stackTrace>n</stackTrace></rerunError>";
        assert_eq!(
            case("fail"),
            format!(
                "<failure type=\"fail\" message=\"final\">final</failure>{fail}{infra}</testcase>"
            )
        );
        assert_eq!(
            case("error"),
            format!(
                "{fail}<error type=\"error\" message=\"final\">final</error>{infra}</testcase>"
            )
        );
        let (fail, infra) = (
            fail.replace("rerunFailure", "flakyFailure"),
            infra.replace("rerunError", "flakyError"),
        );
        assert_eq!(case("pass"), format!("{fail}{infra}</testcase>"));
        assert_eq!(
            case("skip"),
            format!("{fail}<skipped message=\"final\"/>{infra}</testcase>")
        );
    }

    #[test]
    fn exit_codes_follow_design() {
        let mut t = Totals::default();
        t.add("pass", 0.0);
        t.add("skip", 0.0);
        assert_eq!(t.exit_code(), 0);
        t.add("weird", 0.0);
        assert_eq!(t.exit_code(), 1);
        t.add("infra", 0.0);
        assert_eq!(t.exit_code(), 3);
    }
}
