//! Result reporting: partial results and their merge rules, `testout`, the
//! fallback result (spec/atex-reference.md section 3).
//!
//! A [`Reporter`] receives the results one test reports (the JSON objects of
//! `result` control words, decoded, whose file payloads the executor has
//! already written through [`Artifacts`]) and hands finished
//! [`TestResult`] records to a [`Sink`] as soon as they are final, so the
//! executor can stream them. It follows ATEX's `fmf/reporter.py` and
//! `FMFExecutor._report_fallback_result`:
//!
//! - a result with a truthy `partial` is held back under its name (`None`
//!   for the test itself) and merged with later partial results of that
//!   name ([`merge_partial`]); a later non-partial result of that name is
//!   merged into it and the merge is written;
//! - `testout` links the test's output file under the result's directory,
//!   its name first in `files`, the other names sorted;
//! - [`Reporter::finish`] adds the fallback result and writes the partial
//!   results still held, in the order they first appeared.
//!
//! It does no I/O but the [`Artifacts`] file operations, and no async.
//!
//! Deliberate differences from ATEX (for docs/deviations.md):
//!
//! - **Section 9 item 6 closed:** when the run failed (timeout, protocol
//!   error, lost connection...) after the test already wrote a non-partial
//!   result for itself, ATEX writes no fallback, so the `infra` status is
//!   lost. atex still writes the fallback: an *additional* result for the
//!   test itself with status `infra` and the failure as `note`. Repeated
//!   results for the test itself are valid and the last one decides the
//!   test's status, so the test reads as `infra`; the earlier result is kept
//!   as reported. The output is linked as `output.txt` unless the test
//!   already linked that name for itself, in which case the new result just
//!   lists it (the hard link already holds the whole output).
//! - `files` names are stored confined ([`crate::artifacts::confine`]), so
//!   they name the files on disk: a leading `/` is dropped and so is a `..`
//!   that would climb out of the result's directory (as ATEX), with a
//!   warning to the [`Sink`] (at most [`CONFINED_WARNINGS`] per test run);
//!   the result stands. NUL bytes are bad report JSON.
//! - `name`, `status`, `note` and `testout` must be strings (or null);
//!   anything else is bad report JSON, because the record has typed fields.
//!   A result without `status` keeps it absent: the record's `status` is
//!   `null`, as ATEX 1.2 writes it (atex does not invent a verdict).
//! - Keys that the executor sets itself (`test`, `platform`, `machine`,
//!   `artifacts`, `exit_code`, `started`, `duration`, `attempt`) cannot also
//!   be custom keys of one record; the executor's value wins and a warning
//!   is given to the [`Sink`].
//! - When linking `testout` fails while the partial results are written at
//!   the end, ATEX logs it and drops the result; atex writes the result
//!   without that file and gives a warning.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::Instant;

use atex_shared::records::TestResult;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::artifacts::{Artifacts, ArtifactsError, confine_file, needs_confining};
use crate::control::Limits;

/// A result's top-level JSON object as decoded from the control stream, key
/// order kept.
///
/// Hashed with foldhash's fixed-seed hasher rather than serde_json's
/// SipHash-keyed map: a test may report a million results, and the keys are
/// the test's own, so flooding resistance buys nothing here. Nested objects
/// stay [`serde_json::Map`].
pub type JsonMap = IndexMap<String, Value, foldhash::fast::FixedState>;

/// The file name the test output is linked as when the test does not choose
/// one (the fallback's `testout`).
pub const DEFAULT_TESTOUT: &str = "output.txt";

/// How many "name confined" warnings one test run gives at most; the rest
/// are counted in one last warning (a test may report a million results).
pub const CONFINED_WARNINGS: usize = 10;

/// Record fields the executor fills in; a test cannot report them as custom
/// keys.
const EXECUTOR_KEYS: [&str; 8] = [
    "test",
    "platform",
    "machine",
    "artifacts",
    "exit_code",
    "started",
    "duration",
    "attempt",
];

/// Why a reported result was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The result breaks the result format (ATEX's `BadReportJSONError`).
    #[error("{0}")]
    BadReportJson(String),
    /// A name could not be used under the artifacts directory, or a file
    /// operation failed.
    #[error(transparent)]
    Artifacts(#[from] ArtifactsError),
}

impl ReportError {
    /// The ATEX exception class this error corresponds to, for notes:
    /// `BadReportJSONError`, or `OSError` for a failed file operation.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Artifacts(
                ArtifactsError::Io { .. }
                | ArtifactsError::Symlink { .. }
                | ArtifactsError::NotRegular { .. },
            ) => "OSError",
            _ => "BadReportJSONError",
        }
    }

    /// The note of an `infra` result for this error, e.g.
    /// `BadReportJSONError('testout' specified, but empty)`.
    pub fn note(&self) -> String {
        Failure::from(self).note()
    }
}

fn bad(message: impl Into<String>) -> ReportError {
    ReportError::BadReportJson(message.into())
}

/// Why a test run ended without running to its end, in ATEX's terms: an
/// exception class name and its message, rendered as `<class>(<message>)`
/// in the note of the `infra` fallback result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The class name, e.g. `TestAbortedError`.
    pub class: String,
    /// The message, e.g. `test duration timeout reached`.
    pub message: String,
}

impl Failure {
    /// A failure of class `class` with `message`.
    pub fn new(class: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class: class.into(),
            message: message.into(),
        }
    }

    /// `<class>(<message>)`, the note ATEX writes.
    pub fn note(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.class, self.message)
    }
}

impl From<&ReportError> for Failure {
    fn from(error: &ReportError) -> Self {
        Self::new(error.class(), error.to_string())
    }
}

/// How a test run ended, for [`Reporter::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The test ran to its end; `exit_code` is the evaluated exit code.
    Exited {
        /// The test's exit code after evaluation.
        exit_code: i32,
    },
    /// The run failed (timeout, cancel, protocol error, lost connection...):
    /// the test itself becomes `infra`.
    Failed {
        /// What went wrong.
        failure: Failure,
        /// The exit code, if the test reported one before the failure.
        exit_code: Option<i32>,
    },
}

/// A finished result borrowing the fields every result of a test run
/// shares, so a sink that only serializes it copies nothing.
///
/// It serializes exactly like the [`TestResult`] of [`ResultView::to_owned`]:
/// the same keys in the same order.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ResultView<'a> {
    /// See [`TestResult::test`].
    pub test: &'a str,
    /// See [`TestResult::name`].
    pub name: Option<&'a str>,
    /// See [`TestResult::status`].
    pub status: Option<&'a str>,
    /// See [`TestResult::note`].
    pub note: Option<&'a str>,
    /// See [`TestResult::files`].
    pub files: &'a [String],
    /// See [`TestResult::platform`].
    pub platform: &'a str,
    /// See [`TestResult::machine`].
    pub machine: &'a str,
    /// See [`TestResult::artifacts`].
    pub artifacts: &'a Path,
    /// See [`TestResult::exit_code`].
    pub exit_code: Option<i32>,
    /// See [`TestResult::started`].
    pub started: &'a str,
    /// See [`TestResult::duration`].
    pub duration: f64,
    /// See [`TestResult::attempt`].
    pub attempt: u32,
    /// See [`TestResult::extra`].
    #[serde(flatten)]
    pub extra: &'a IndexMap<String, Value>,
    /// The run's constant fields as JSON, rendered once from the very
    /// values above (only the reporter makes views, so they agree).
    #[serde(skip)]
    rendered: Option<&'a Rendered>,
}

/// The JSON of the fields every result of one test run shares, rendered
/// once per run instead of escaped again for each of a million results.
/// Each piece is a run of the record's JSON between the varying fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rendered {
    /// `{"test":<test>,"name":`
    head: Vec<u8>,
    /// `,"platform":<platform>,"machine":<machine>,"artifacts":<artifacts>,"exit_code":`
    middle: Vec<u8>,
    /// `,"started":<started>,"duration":`
    started: Vec<u8>,
    /// `,"attempt":<attempt>`
    attempt: Vec<u8>,
}

impl Rendered {
    /// `None` when a field cannot be JSON (a non-UTF-8 artifacts path):
    /// views then serialize the slow way, which reports the error.
    fn new(context: &ResultContext, artifacts: &Path) -> Option<Rendered> {
        fn json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) -> Option<()> {
            serde_json::to_writer(out, value).ok()
        }
        let mut head = b"{\"test\":".to_vec();
        json(&mut head, &context.test)?;
        head.extend_from_slice(b",\"name\":");
        let mut middle = b",\"platform\":".to_vec();
        json(&mut middle, &context.platform)?;
        middle.extend_from_slice(b",\"machine\":");
        json(&mut middle, &context.machine)?;
        middle.extend_from_slice(b",\"artifacts\":");
        json(&mut middle, artifacts)?;
        middle.extend_from_slice(b",\"exit_code\":");
        let mut started = b",\"started\":".to_vec();
        json(&mut started, &context.started)?;
        started.extend_from_slice(b",\"duration\":");
        let mut attempt = b",\"attempt\":".to_vec();
        json(&mut attempt, &context.attempt)?;
        Some(Rendered {
            head,
            middle,
            started,
            attempt,
        })
    }
}

impl ResultView<'_> {
    /// Append the record's JSON to `out`: byte for byte what serde_json
    /// makes of the view, but the fields shared by the run are copied from
    /// their rendering instead of escaped again.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let Some(rendered) = self.rendered else {
            return serde_json::to_writer(out, self);
        };
        out.extend_from_slice(&rendered.head);
        serde_json::to_writer(&mut *out, &self.name)?;
        out.extend_from_slice(b",\"status\":");
        serde_json::to_writer(&mut *out, &self.status)?;
        out.extend_from_slice(b",\"note\":");
        serde_json::to_writer(&mut *out, &self.note)?;
        out.extend_from_slice(b",\"files\":");
        serde_json::to_writer(&mut *out, self.files)?;
        out.extend_from_slice(&rendered.middle);
        serde_json::to_writer(&mut *out, &self.exit_code)?;
        out.extend_from_slice(&rendered.started);
        serde_json::to_writer(&mut *out, &self.duration)?;
        out.extend_from_slice(&rendered.attempt);
        for (key, value) in self.extra {
            out.push(b',');
            serde_json::to_writer(&mut *out, key)?;
            out.push(b':');
            serde_json::to_writer(&mut *out, value)?;
        }
        out.push(b'}');
        Ok(())
    }

    /// The owned record.
    pub fn to_owned(&self) -> TestResult {
        TestResult {
            test: self.test.to_owned(),
            name: self.name.map(str::to_owned),
            status: self.status.map(str::to_owned),
            note: self.note.map(str::to_owned),
            files: self.files.to_vec(),
            platform: self.platform.to_owned(),
            machine: self.machine.to_owned(),
            artifacts: self.artifacts.to_path_buf(),
            exit_code: self.exit_code,
            started: self.started.to_owned(),
            duration: self.duration,
            attempt: self.attempt,
            extra: self.extra.clone(),
        }
    }
}

/// Where finished results go, one at a time, as soon as they are final.
pub trait Sink {
    /// Take one finished result.
    fn result(&mut self, result: TestResult);

    /// Take one finished result, borrowed; by default its owned copy goes
    /// to [`Sink::result`]. A sink that only writes results out implements
    /// this to skip the copy (a test may report a million results).
    fn result_view(&mut self, result: ResultView<'_>) {
        self.result(result.to_owned());
    }

    /// Take a warning about something that was not fatal (ATEX only logs
    /// these); ignored unless implemented.
    fn warning(&mut self, message: String) {
        let _ = message;
    }

    /// Deliver what was taken so far: called after each chunk of the
    /// control stream and at the end of each test, so a sink that batches
    /// its output (stdout) still streams results promptly.
    fn flush(&mut self) {}
}

/// Collects results, dropping warnings.
impl Sink for Vec<TestResult> {
    fn result(&mut self, result: TestResult) {
        self.push(result);
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn result(&mut self, result: TestResult) {
        (**self).result(result);
    }

    fn result_view(&mut self, result: ResultView<'_>) {
        (**self).result_view(result);
    }

    fn warning(&mut self, message: String) {
        (**self).warning(message);
    }

    fn flush(&mut self) {
        (**self).flush();
    }
}

/// What every result of one test run carries besides what the test reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultContext {
    /// The test's name, e.g. `/tests/basic`.
    pub test: String,
    /// The platform the test runs on.
    pub platform: String,
    /// The machine's id.
    pub machine: String,
    /// When the test started, RFC 3339.
    pub started: String,
    /// 0 for the first run, 1 for the first rerun...
    pub attempt: u32,
}

/// Turns one test run's reported results into [`TestResult`] records.
///
/// ```
/// use atex_exec::artifacts::Artifacts;
/// use atex_exec::reporter::{Outcome, Reporter, ResultContext};
/// use serde_json::json;
/// let tmp = tempfile::tempdir().unwrap();
/// let artifacts = Artifacts::for_test(tmp.path(), "/t").unwrap();
/// std::fs::write(artifacts.testout_path(), "output").unwrap();
/// let context = ResultContext { test: "/t".into(), ..Default::default() };
/// let mut reporter = Reporter::new(artifacts, context, Vec::new());
/// let result = |v: serde_json::Value| -> atex_exec::reporter::JsonMap {
///     v.as_object().unwrap().clone().into_iter().collect()
/// };
/// reporter.report(result(json!({"name": "sub", "status": "fail", "rerun": 3}))).unwrap();
/// reporter.report(result(json!({"status": "warn", "partial": true}))).unwrap();
/// let results = reporter.finish(&Outcome::Exited { exit_code: 0 });
/// assert_eq!(results[0].name.as_deref(), Some("sub"));
/// assert_eq!(results[0].extra["rerun"], 3);
/// assert_eq!((results[1].name.as_deref(), results[1].status.as_deref().unwrap_or("")), (None, "warn"));
/// assert_eq!(results[1].files, ["output.txt"]);
/// ```
#[derive(Debug)]
pub struct Reporter<S> {
    context: ResultContext,
    artifacts: Artifacts,
    start: Instant,
    /// The partial results held, with how many bytes of JSON each took
    /// on the wire (merges included).
    partial: IndexMap<Option<String>, (JsonMap, usize)>,
    /// The sum of those bytes, capped by `max_held`.
    held: usize,
    /// [`Limits::held_partial`].
    max_held: usize,
    nameless_result_seen: bool,
    /// `(result name, testout name)` pairs linked so far.
    linked: HashSet<(Option<String>, String)>,
    exit_code: Option<i32>,
    /// The shared fields' JSON (`None` when they cannot be JSON).
    rendered: Option<Rendered>,
    /// Names confined so far (for [`CONFINED_WARNINGS`]).
    confined: usize,
    sink: S,
}

impl<S: Sink> Reporter<S> {
    /// A reporter for one test run storing its files in `artifacts`; the
    /// test's output is expected at [`Artifacts::testout_path`]. Result
    /// durations count from now (see [`Reporter::started_at`]).
    pub fn new(artifacts: Artifacts, context: ResultContext, sink: S) -> Self {
        Self {
            rendered: Rendered::new(&context, artifacts.dir()),
            context,
            artifacts,
            start: Instant::now(),
            partial: IndexMap::new(),
            held: 0,
            max_held: Limits::default().held_partial,
            nameless_result_seen: false,
            linked: HashSet::new(),
            exit_code: None,
            confined: 0,
            sink,
        }
    }

    /// Count result durations from `start` instead of from the reporter's
    /// creation.
    pub fn started_at(mut self, start: Instant) -> Self {
        self.start = start;
        self
    }

    /// The artifacts directory results are stored in.
    pub fn artifacts(&self) -> &Artifacts {
        &self.artifacts
    }

    /// Whether a non-partial result for the test itself was written.
    pub fn nameless_result_seen(&self) -> bool {
        self.nameless_result_seen
    }

    /// The partial result held for `name` (`None`: the test itself).
    pub fn partial(&self, name: Option<&str>) -> Option<&JsonMap> {
        self.partial
            .get(&name.map(str::to_owned))
            .map(|(json, _)| json)
    }

    /// Take one reported result: hold it if it is partial, else write it
    /// (merged into the partial result of the same name, if any).
    ///
    /// `files` may hold names or the wire form's `{"name": ..., "length":
    /// ...}` objects; only the names are kept.
    ///
    /// Partial results are held in memory until they are written: their
    /// size in memory (estimated, see [`weight`]) counts against a cap
    /// ([`Limits::held_partial`]); over it the result is refused.
    pub fn report(&mut self, result: JsonMap) -> Result<(), ReportError> {
        self.report_inner(result, false)
    }

    /// Hold at most `bytes` of partial results (in memory, estimated)
    /// instead of the default cap ([`Limits::held_partial`]).
    #[must_use]
    pub fn with_held_limit(mut self, bytes: usize) -> Self {
        self.max_held = bytes;
        self
    }

    /// The name of the test whose results these are.
    pub fn test(&self) -> &str {
        &self.context.test
    }

    /// Give the sink a warning about this test run.
    pub fn warning(&mut self, message: String) {
        self.sink.warning(message);
    }

    fn report_inner(&mut self, mut result: JsonMap, replay: bool) -> Result<(), ReportError> {
        // One pass to find the keys checked below (no hashing per key; a
        // test may report a million results); the checks keep their order.
        let (mut name, mut status, mut note, mut testout) = (None, None, None, None);
        let (mut has_files, mut has_partial) = (false, false);
        for (key, value) in &result {
            match key.as_str() {
                "name" => name = Some(value),
                "status" => status = Some(value),
                "note" => note = Some(value),
                "testout" => testout = Some(value),
                "files" => has_files = true,
                "partial" => has_partial = true,
                _ => {}
            }
        }
        let name = result_name(name)?;
        check_string(status, "status")?;
        check_string(note, "note")?;
        check_string(testout, "testout")?;
        let testout = testout.and_then(Value::as_str);
        if testout == Some("") {
            return Err(bad("'testout' specified, but empty"));
        }
        // Names the test points outside its directory with are kept inside
        // (as ATEX), but not silently. Checked here, once per reported
        // name: the files were written already, under the same names.
        let mut confined = Vec::new();
        let has_testout = testout.is_some();
        if let Some(testout) = testout
            && needs_confining(testout.as_bytes())
        {
            confined.push(testout.to_owned());
        }
        if let Some(name) = &name
            && (has_files || has_testout)
            && needs_confining(name.as_bytes())
        {
            confined.push(name.clone());
        }
        if has_files && let Some(files) = result.get_mut("files") {
            *files = file_names(files, &mut confined)?;
        }
        if !confined.is_empty() {
            self.warn_confined(name.as_deref(), confined);
        }
        let partial = has_partial && result.shift_remove("partial").is_some_and(|v| truthy(&v));
        if partial {
            // Held results live in memory until they are written: capped.
            // A merge grows the held result by about what is merged in.
            let length = result
                .iter()
                .map(|(k, v)| k.len() + weight(v))
                .sum::<usize>();
            let held = self.held.saturating_add(length);
            if held > self.max_held {
                return Err(bad(format!(
                    "partial results held take about {held} bytes of memory, over the limit \
                     of {} bytes (--max-held-partial)",
                    self.max_held
                )));
            }
            self.held = held;
            match self.partial.get_mut(&name) {
                Some((json, bytes)) => {
                    merge_partial(json, result);
                    *bytes += length;
                }
                None => {
                    self.partial.insert(name, (result, length));
                }
            }
            return Ok(());
        }
        let held = if self.partial.is_empty() {
            None
        } else {
            self.partial.shift_remove(&name)
        };
        let merged = match held {
            Some((mut json, bytes)) => {
                self.held -= bytes.min(self.held);
                merge_partial(&mut json, result);
                json
            }
            None => result,
        };
        self.write(name, merged, replay)
    }

    /// Finish the record and hand it to the sink (ATEX `_report_to_file`).
    fn write(
        &mut self,
        name: Option<String>,
        result: JsonMap,
        replay: bool,
    ) -> Result<(), ReportError> {
        // One pass over the keys (a test may report a million results, so
        // no per-key removals): the keys the record has fields for are
        // taken out, the rest are the custom keys, in their order.
        let mut files_value = None;
        let mut testout_value = None;
        let mut status = None;
        let mut note = None;
        let mut dropped = Vec::new();
        // Allocated only when a custom key comes.
        let mut extra = IndexMap::new();
        for (key, value) in result {
            match key.as_str() {
                "files" => files_value = Some(value),
                "testout" => testout_value = Some(value),
                "status" => status = Some(value),
                "note" => note = Some(value),
                "name" => {}
                k if EXECUTOR_KEYS.contains(&k) => dropped.push(key),
                _ => {
                    extra.insert(key, value);
                }
            }
        }
        let mut files: Vec<String> = match files_value {
            Some(Value::Array(files)) => files
                .into_iter()
                .filter_map(|f| match f {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        files.sort();
        if let Some(Value::String(testout)) = testout_value {
            let name_bytes = name.as_deref().map(str::as_bytes);
            match self.artifacts.link_testout(name_bytes, testout.as_bytes()) {
                Ok(relative) => {
                    let relative = relative.to_string_lossy().into_owned();
                    self.linked.insert((name.clone(), relative.clone()));
                    files.insert(0, relative);
                }
                Err(e) if replay => self.sink.warning(format!(
                    "result {}: failed to link the test output: {e}",
                    self.display_name(name.as_deref())
                )),
                Err(ArtifactsError::Exists { .. }) => {
                    return Err(bad(format!("file '{testout}' already exists")));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if name.is_none() {
            self.nameless_result_seen = true;
        }
        let string = |value: Option<Value>| match value {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let status = string(status);
        let note = string(note);
        for key in dropped {
            self.sink.warning(format!(
                "result {}: dropped the reported key '{key}': the executor sets it",
                self.display_name(name.as_deref())
            ));
        }
        let record = ResultView {
            test: &self.context.test,
            name: name.as_deref(),
            status: status.as_deref(),
            note: note.as_deref(),
            files: &files,
            platform: &self.context.platform,
            machine: &self.context.machine,
            artifacts: self.artifacts.dir(),
            exit_code: self.exit_code,
            started: &self.context.started,
            duration: self.start.elapsed().as_secs_f64(),
            attempt: self.context.attempt,
            extra: &extra,
            rendered: self.rendered.as_ref(),
        };
        self.sink.result_view(record);
        Ok(())
    }

    /// Warn that `names` (of result `result`) were confined, within
    /// [`CONFINED_WARNINGS`] per run.
    fn warn_confined(&mut self, result: Option<&str>, names: Vec<String>) {
        for original in names {
            self.confined += 1;
            if self.confined > CONFINED_WARNINGS {
                continue;
            }
            let stored = confine_file(original.as_bytes())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut message = format!(
                "result {}: the name '{original}' points outside the test's artifacts \
                 directory; kept inside it as '{stored}'",
                self.display_name(result)
            );
            if self.confined == CONFINED_WARNINGS {
                message.push_str(" (further such names of this test are not reported)");
            }
            self.sink.warning(message);
        }
    }

    fn display_name(&self, name: Option<&str>) -> String {
        match name {
            Some(name) => format!("{}/{name}", self.context.test),
            None => self.context.test.clone(),
        }
    }

    /// Write every partial result still held, in the order they first
    /// appeared (ATEX `replay_partial`); errors become warnings.
    pub fn stop(&mut self) {
        self.held = 0;
        for (name, (result, _)) in std::mem::take(&mut self.partial) {
            if let Err(e) = self.write(name.clone(), result, true) {
                self.sink.warning(format!(
                    "result {}: {e}",
                    self.display_name(name.as_deref())
                ));
            }
        }
    }

    /// End the run: add the fallback result for the test itself, write the
    /// partial results still held, remove the test's output file, and give
    /// the sink back.
    ///
    /// The fallback (always partial, so it merges into the test's own
    /// partial result) is: on [`Outcome::Failed`], status `infra` with the
    /// failure as note, overriding the partial's status and note; on
    /// [`Outcome::Exited`], the partial's status if it has one, else `pass`
    /// for exit code 0 and `fail` otherwise. It links the output as
    /// `output.txt` unless the partial has a `testout` or already lists
    /// `output.txt`. As in ATEX there is no fallback after a test ran to its
    /// end having written a non-partial result for itself; unlike ATEX there
    /// is one after a failure even then (see the module docs).
    pub fn finish(mut self, outcome: &Outcome) -> S {
        let (exit_code, fallback) = match outcome {
            Outcome::Exited { exit_code } => {
                let status = self
                    .partial(None)
                    .and_then(|p| p.get("status"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| if *exit_code == 0 { "pass" } else { "fail" }.to_owned());
                let fallback = (!self.nameless_result_seen).then(|| {
                    let mut map = JsonMap::default();
                    map.insert("status".into(), Value::String(status));
                    map
                });
                (Some(*exit_code), fallback)
            }
            Outcome::Failed { failure, exit_code } => {
                let mut map = JsonMap::default();
                map.insert("status".into(), "infra".into());
                map.insert("note".into(), failure.note().into());
                (*exit_code, Some(map))
            }
        };
        self.exit_code = exit_code;
        if let Some(mut fallback) = fallback {
            fallback.insert("partial".into(), Value::Bool(true));
            self.add_testout(&mut fallback);
            if let Err(e) = self.report_inner(fallback, true) {
                self.sink
                    .warning(format!("failed to add the fallback result: {e}"));
            }
        }
        self.stop();
        if let Err(e) = self.artifacts.remove_testout() {
            self.sink.warning(format!("failed to {e}"));
        }
        self.sink.flush();
        self.sink
    }

    /// Deliver the results taken so far (see [`Sink::flush`]).
    pub fn flush(&mut self) {
        self.sink.flush();
    }

    /// The fallback's `testout` addition.
    fn add_testout(&self, fallback: &mut JsonMap) {
        let held = self.partial(None);
        let has_testout = held.is_some_and(|p| p.contains_key("testout"));
        let lists_default = held
            .and_then(|p| p.get("files"))
            .and_then(Value::as_array)
            .is_some_and(|files| files.iter().any(|f| f == DEFAULT_TESTOUT));
        if has_testout || lists_default {
            return;
        }
        if self.linked.contains(&(None, DEFAULT_TESTOUT.to_owned())) {
            fallback.insert("files".into(), Value::Array(vec![DEFAULT_TESTOUT.into()]));
        } else {
            fallback.insert("testout".into(), DEFAULT_TESTOUT.into());
        }
    }

    /// End a run whose setup failed: write the single result `infra` with
    /// note `TestSetupError(<output>)` and no files, drop anything held, and
    /// give the sink back. No fallback is added.
    pub fn setup_failed(mut self, output: &str) -> S {
        self.partial.clear();
        self.held = 0;
        let mut map = JsonMap::default();
        map.insert("status".into(), "infra".into());
        map.insert(
            "note".into(),
            Failure::new("TestSetupError", output).note().into(),
        );
        if let Err(e) = self.write(None, map, true) {
            self.sink
                .warning(format!("failed to report the setup failure: {e}"));
        }
        if let Err(e) = self.artifacts.remove_testout() {
            self.sink.warning(format!("failed to {e}"));
        }
        self.sink.flush();
        self.sink
    }
}

fn result_name(name: Option<&Value>) -> Result<Option<String>, ReportError> {
    match name {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => Ok(Some(name.clone())),
        Some(other) => Err(bad(format!("'name' must be a string, not {other}"))),
    }
}

fn check_string(value: Option<&Value>, key: &str) -> Result<(), ReportError> {
    match value {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(other) => Err(bad(format!("'{key}' must be a string, not {other}"))),
    }
}

/// The `files` of a result as a list of unique confined names; the names
/// that confining changed are added to `confined`.
fn file_names(files: &Value, confined: &mut Vec<String>) -> Result<Value, ReportError> {
    let entries = match files {
        Value::Null => return Ok(Value::Null),
        Value::Array(entries) => entries,
        other => return Err(bad(format!("'files' must be a list, not {other}"))),
    };
    let mut names: Vec<Value> = Vec::new();
    for entry in entries {
        let name = match entry {
            Value::String(name) => name,
            Value::Object(map) => match map.get("name") {
                Some(Value::String(name)) => name,
                _ => return Err(bad(format!("file entry missing 'name': {entry}"))),
            },
            _ => return Err(bad(format!("file entry missing 'name': {entry}"))),
        };
        let normal = confine_file(name.as_bytes())?;
        if needs_confining(name.as_bytes()) {
            confined.push(name.clone());
        }
        let normal = Value::String(normal.to_string_lossy().into_owned());
        if !names.contains(&normal) {
            names.push(normal);
        }
    }
    Ok(Value::Array(names))
}

/// About how many bytes `value` takes in memory: each value its
/// `serde_json::Value` plus its strings and its entries, so that a list of
/// a million small numbers (2 bytes each on the wire) counts 32 bytes each.
pub fn weight(value: &Value) -> usize {
    /// Per object entry, besides key and value: the map's index and hash.
    const ENTRY: usize = 16;
    std::mem::size_of::<Value>()
        + match value {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(weight).sum(),
            Value::Object(map) => map.iter().map(|(k, v)| ENTRY + k.len() + weight(v)).sum(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

/// Python truthiness of a JSON value (`partial` is tested this way).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Merge `src` into `dst` by ATEX's `_merge_partial` rules: a null value
/// deletes the key (and is never added); new keys are added; a value of
/// another type replaces the old one; objects merge recursively; lists are
/// extended, except the top-level `files`, a set of names, which is
/// deduplicated; strings, numbers and booleans are replaced.
pub fn merge_partial(dst: &mut JsonMap, src: JsonMap) {
    for (key, new) in src {
        if new.is_null() {
            dst.shift_remove(&key);
            continue;
        }
        let Some(old) = dst.get_mut(&key) else {
            dst.insert(key, new);
            continue;
        };
        match (old, new) {
            (Value::Array(old), Value::Array(new)) if key == "files" => {
                for name in new {
                    if !old.contains(&name) {
                        old.push(name);
                    }
                }
            }
            (old, new) => merge_value(old, new),
        }
    }
}

/// Merge below the top level, where no key is special.
fn merge_nested(dst: &mut serde_json::Map<String, Value>, src: serde_json::Map<String, Value>) {
    for (key, new) in src {
        if new.is_null() {
            dst.shift_remove(&key);
            continue;
        }
        match dst.get_mut(&key) {
            Some(old) => merge_value(old, new),
            None => {
                dst.insert(key, new);
            }
        }
    }
}

fn merge_value(old: &mut Value, new: Value) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => merge_nested(old, new),
        (Value::Array(old), Value::Array(new)) => old.extend(new),
        (old, new) => *old = new,
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;
    use std::io::Write;

    #[derive(Debug, Default)]
    struct Collect {
        results: Vec<TestResult>,
        warnings: Vec<String>,
    }

    impl Sink for Collect {
        fn result(&mut self, result: TestResult) {
            self.results.push(result);
        }
        fn warning(&mut self, message: String) {
            self.warnings.push(message);
        }
    }

    fn obj(value: Value) -> JsonMap {
        let Value::Object(map) = value else {
            panic!("not an object")
        };
        map.into_iter().collect()
    }

    struct Run {
        _tmp: tempfile::TempDir,
        artifacts: Artifacts,
    }

    fn setup() -> (Run, Reporter<Collect>) {
        let tmp = tempfile::tempdir().unwrap();
        let artifacts = Artifacts::for_test(tmp.path(), "/tests/basic").unwrap();
        fs::write(artifacts.testout_path(), b"test output\n").unwrap();
        let context = ResultContext {
            test: "/tests/basic".into(),
            platform: "fedora-41@x86_64".into(),
            machine: "local/0".into(),
            started: "2026-01-02T03:04:05Z".into(),
            attempt: 1,
        };
        let reporter = Reporter::new(artifacts.clone(), context, Collect::default());
        (
            Run {
                _tmp: tmp,
                artifacts,
            },
            reporter,
        )
    }

    /// The rendered fast path writes exactly what serde_json makes of the
    /// view, for awkward strings, absent fields and custom keys.
    #[test]
    fn write_json_matches_serde() {
        let context = ResultContext {
            test: "/tests/\"quoted\"/ünï\u{1}".into(),
            platform: "fedora-41@x86_64".into(),
            machine: "podman/\\x".into(),
            started: "2026-01-02T03:04:05Z".into(),
            attempt: 7,
        };
        let dir = Path::new("/abs/out/tests/\"q\"");
        let rendered = Rendered::new(&context, dir).expect("renders");
        let mut extra = IndexMap::new();
        extra.insert("custom\n".to_owned(), json!({"a": [1, 2.5, null]}));
        extra.insert("b".to_owned(), json!("\u{7f}\t"));
        let none = IndexMap::new();
        let files = vec!["output.txt".to_owned(), "a/\"b\"".to_owned()];
        for (name, note, exit_code, duration, extra) in [
            (None, None, None, 0.0, &none),
            (
                Some("sub/\u{2028}x"),
                Some("note \\ \""),
                Some(-3),
                1.25e-7,
                &extra,
            ),
            (Some(""), Some(""), Some(0), f64::NAN, &extra),
        ] {
            let view = ResultView {
                test: &context.test,
                name,
                status: (name != Some("")).then_some("pass"),
                note,
                files: &files,
                platform: &context.platform,
                machine: &context.machine,
                artifacts: dir,
                exit_code,
                started: &context.started,
                duration,
                attempt: context.attempt,
                extra,
                rendered: Some(&rendered),
            };
            let mut fast = Vec::new();
            view.write_json(&mut fast).unwrap();
            let slow = serde_json::to_vec(&view).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
        }
    }

    fn exited(exit_code: i32) -> Outcome {
        Outcome::Exited { exit_code }
    }

    fn timeout() -> Outcome {
        Outcome::Failed {
            failure: Failure::new("TestAbortedError", "test duration timeout reached"),
            exit_code: None,
        }
    }

    /// `(name, status, note, files)` of one result.
    type Summary<'a> = (Option<&'a str>, &'a str, Option<&'a str>, Vec<&'a str>);

    /// [`Summary`] of each result.
    fn summary(results: &[TestResult]) -> Vec<Summary<'_>> {
        results
            .iter()
            .map(|r| {
                (
                    r.name.as_deref(),
                    r.status.as_deref().unwrap_or(""),
                    r.note.as_deref(),
                    r.files.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn merge_rules() {
        let mut dst = obj(json!({
            "gone": 1, "str": "a", "int": 1, "float": 1.5, "bool": true,
            "list": [1, 2], "files": ["a", "b"], "kind": [1],
            "dict": {"keep": 1, "drop": 2, "deep": {"x": [1]}, "over": "s"},
        }));
        merge_partial(
            &mut dst,
            obj(json!({
                "gone": null, "never": null, "new": {"n": 1},
                "str": "b", "int": 2, "float": 2.5, "bool": false,
                "list": [2, 3], "files": ["b", "c"], "kind": {"now": "dict"},
                "dict": {"drop": null, "add": 3, "deep": {"x": [2]}, "over": 5},
            })),
        );
        assert_eq!(
            Value::Object(dst.into_iter().collect()),
            json!({
                "str": "b", "int": 2, "float": 2.5, "bool": false,
                // Lists are extended, duplicates kept...
                "list": [1, 2, 2, 3],
                // ...but `files` is a set.
                "files": ["a", "b", "c"],
                // A change of type replaces.
                "kind": {"now": "dict"},
                "dict": {"keep": 1, "deep": {"x": [1, 2]}, "over": 5, "add": 3},
                "new": {"n": 1},
            })
        );
        // `files` deep inside a dict is an ordinary list.
        let mut nested = obj(json!({"d": {"files": ["a"]}}));
        merge_partial(&mut nested, obj(json!({"d": {"files": ["a"]}})));
        assert_eq!(nested["d"]["files"], json!(["a", "a"]));
    }

    #[test]
    fn held_partial_results_are_capped_by_their_memory() {
        let (_run, reporter) = setup();
        let list = |n: usize| obj(json!({"partial": true, "l": vec![1; n]}));
        // 100 small numbers weigh about 100 values, not 200 bytes of JSON.
        let one = weight(&json!(vec![1; 100]));
        assert!(one >= 100 * std::mem::size_of::<Value>(), "{one}");
        let mut reporter = reporter.with_held_limit(3 * one);
        reporter.report(list(100)).unwrap();
        reporter.report(list(100)).unwrap();
        let err = reporter.report(list(100)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("partial results held take about ")
                && err.to_string().ends_with(" (--max-held-partial)"),
            "{err}"
        );
        assert_eq!(err.class(), "BadReportJSONError");
        // A final result writes what was held, which no longer counts.
        reporter.report(obj(json!({"status": "pass"}))).unwrap();
        reporter.report(list(100)).unwrap();
        reporter.report(list(100)).unwrap();
    }

    #[test]
    fn partial_then_final_is_one_merged_result() {
        let (_run, mut reporter) = setup();
        reporter
            .report(obj(json!({
                "name": "sub", "status": "fail", "note": "n", "a": 1, "partial": true,
            })))
            .unwrap();
        assert!(reporter.partial(Some("sub")).is_some());
        reporter
            .report(obj(
                json!({"name": "sub", "status": "pass", "note": null, "partial": false}),
            ))
            .unwrap();
        assert!(reporter.partial(Some("sub")).is_none());
        let sink = reporter.finish(&exited(0));
        let sub = &sink.results[0];
        assert_eq!(
            (
                sub.name.as_deref(),
                sub.status.as_deref().unwrap_or(""),
                sub.note.as_deref()
            ),
            (Some("sub"), "pass", None)
        );
        assert_eq!(sub.extra.len(), 1);
        assert_eq!(sub.extra["a"], 1);
        // Written before the test exited: no exit code yet.
        assert_eq!(sub.exit_code, None);
        assert_eq!(sink.results.len(), 2);
        assert_eq!(sink.results[1].exit_code, Some(0));
    }

    #[test]
    fn replay_in_first_seen_order() {
        let (_run, mut reporter) = setup();
        for name in ["b", "a", "c"] {
            reporter
                .report(obj(json!({"name": name, "status": "info", "partial": 1})))
                .unwrap();
        }
        reporter
            .report(obj(json!({"status": "warn", "partial": true})))
            .unwrap();
        // Merging into "b" keeps its place; finishing "a" frees it.
        reporter
            .report(obj(json!({"name": "b", "status": "fail", "partial": true})))
            .unwrap();
        reporter
            .report(obj(json!({"name": "a", "status": "pass"})))
            .unwrap();
        reporter
            .report(obj(json!({"name": "a", "status": "skip", "partial": true})))
            .unwrap();
        let sink = reporter.finish(&exited(1));
        assert_eq!(
            summary(&sink.results),
            [
                (Some("a"), "pass", None, vec![]),
                (Some("b"), "fail", None, vec![]),
                (Some("c"), "info", None, vec![]),
                (None, "warn", None, vec!["output.txt"]),
                (Some("a"), "skip", None, vec![]),
            ]
        );
        assert!(sink.warnings.is_empty(), "{:?}", sink.warnings);
    }

    #[test]
    fn files_appended_on_repeat_and_listed_once() {
        let (run, mut reporter) = setup();
        for chunk in [&b"one "[..], b"two"] {
            let mut file = run.artifacts.open_append(Some(b"sub"), b"log").unwrap();
            file.write_all(chunk).unwrap();
            reporter
                .report(obj(json!({
                    "name": "sub", "partial": true,
                    "files": [{"name": "log", "length": chunk.len()}, {"name": "/log", "length": 0}],
                })))
                .unwrap();
        }
        reporter
            .report(obj(
                json!({"name": "sub", "status": "pass", "files": ["./log"]}),
            ))
            .unwrap();
        let sink = reporter.finish(&exited(0));
        assert_eq!(sink.results[0].files, ["log"]);
        let stored = run.artifacts.dir().join("files/sub/log");
        assert_eq!(fs::read(stored).unwrap(), b"one two");
    }

    #[test]
    fn testout_first_then_sorted_and_linked() {
        let (run, mut reporter) = setup();
        for name in ["z.log", "a.log", "m/x"] {
            run.artifacts
                .open_append(Some(b"sub"), name.as_bytes())
                .unwrap();
        }
        reporter
            .report(obj(json!({
                "name": "sub", "status": "pass", "testout": "out.txt",
                "files": ["z.log", "m/x", "a.log"],
            })))
            .unwrap();
        assert!(!reporter.nameless_result_seen());
        let sink = reporter.finish(&exited(0));
        assert_eq!(sink.results[0].files, ["out.txt", "a.log", "m/x", "z.log"]);
        assert_eq!(sink.results[0].extra.get("testout"), None);
        let linked = run.artifacts.dir().join("files/sub/out.txt");
        assert_eq!(fs::read(linked).unwrap(), b"test output\n");
        // The temporary output is gone; the links keep the content.
        assert!(!run.artifacts.testout_path().exists());
        assert!(run.artifacts.dir().join("files/output.txt").is_file());
    }

    #[test]
    fn testout_errors() {
        let (_run, mut reporter) = setup();
        let err = reporter
            .report(obj(json!({"status": "pass", "testout": ""})))
            .unwrap_err();
        assert!(matches!(err, ReportError::BadReportJson(_)));
        assert_eq!(
            err.note(),
            "BadReportJSONError('testout' specified, but empty)"
        );
        reporter
            .report(obj(json!({"name": "x", "testout": "o"})))
            .unwrap();
        let err = reporter
            .report(obj(json!({"name": "x", "testout": "o"})))
            .unwrap_err();
        assert_eq!(err.to_string(), "file 'o' already exists");
        // At the end it is only a warning, and the result is still written.
        reporter
            .report(obj(json!({"name": "x", "testout": "o", "partial": true})))
            .unwrap();
        let sink = reporter.finish(&exited(0));
        assert_eq!(
            summary(&sink.results),
            [
                (Some("x"), "", None, vec!["o"]),
                // The partial "x" was seen before the fallback was added.
                (Some("x"), "", None, vec![]),
                (None, "pass", None, vec!["output.txt"]),
            ]
        );
        assert_eq!(sink.warnings.len(), 1, "{:?}", sink.warnings);
        assert!(sink.warnings[0].contains("file 'o' already exists"));
    }

    #[test]
    fn spec_example_lines() {
        // {"status": "pass", "files": ["output.txt"]}
        let (_run, reporter) = setup();
        let sink = reporter.finish(&exited(0));
        assert_eq!(
            summary(&sink.results),
            [(None, "pass", None, vec!["output.txt"])]
        );
        let r = &sink.results[0];
        assert_eq!(
            (r.test.as_str(), r.platform.as_str(), r.machine.as_str()),
            ("/tests/basic", "fedora-41@x86_64", "local/0")
        );
        assert_eq!((r.started.as_str(), r.attempt), ("2026-01-02T03:04:05Z", 1));
        assert!(r.artifacts.ends_with("tests/basic") && r.duration >= 0.0);
        assert!(r.extra.is_empty());

        // {"status": "infra", "note": "TestAbortedError(test duration
        // timeout reached)", "files": ["output.txt"]}
        let (_run, reporter) = setup();
        let sink = reporter.finish(&timeout());
        assert_eq!(
            summary(&sink.results),
            [(
                None,
                "infra",
                Some("TestAbortedError(test duration timeout reached)"),
                vec!["output.txt"]
            )]
        );

        // {"status": "pass", "files": ["output.txt", "custom.txt"]}
        let (run, mut reporter) = setup();
        run.artifacts.open_append(None, b"custom.txt").unwrap();
        reporter
            .report(obj(json!({
                "partial": true, "files": [{"name": "custom.txt", "length": 0}],
            })))
            .unwrap();
        let sink = reporter.finish(&exited(0));
        assert_eq!(
            summary(&sink.results),
            [(None, "pass", None, vec!["output.txt", "custom.txt"])]
        );
    }

    #[test]
    fn fallback_without_results_follows_the_exit_code() {
        let (_run, reporter) = setup();
        let sink = reporter.finish(&exited(2));
        assert_eq!(
            summary(&sink.results),
            [(None, "fail", None, vec!["output.txt"])]
        );
        assert_eq!(sink.results[0].exit_code, Some(2));
    }

    #[test]
    fn fallback_keeps_the_partial_status() {
        let (_run, mut reporter) = setup();
        reporter
            .report(obj(
                json!({"status": "warn", "note": "n", "partial": true, "k": [1]}),
            ))
            .unwrap();
        let sink = reporter.finish(&exited(1));
        assert_eq!(
            summary(&sink.results),
            [(None, "warn", Some("n"), vec!["output.txt"])]
        );
        assert_eq!(sink.results[0].extra["k"], json!([1]));
    }

    #[test]
    fn failure_overrides_the_partial_status_and_note() {
        let (_run, mut reporter) = setup();
        reporter
            .report(obj(
                json!({"status": "pass", "note": "fine", "partial": true}),
            ))
            .unwrap();
        let sink = reporter.finish(&Outcome::Failed {
            failure: Failure::new("BadControlError", "unknown control word: 'x'"),
            exit_code: Some(0),
        });
        assert_eq!(
            summary(&sink.results),
            [(
                None,
                "infra",
                Some("BadControlError(unknown control word: 'x')"),
                vec!["output.txt"]
            )]
        );
        assert_eq!(sink.results[0].exit_code, Some(0));
    }

    #[test]
    fn no_testout_addition_when_the_partial_has_one() {
        let (run, mut reporter) = setup();
        run.artifacts.open_append(None, b"output.txt").unwrap();
        reporter
            .report(obj(json!({"partial": true, "files": ["output.txt"]})))
            .unwrap();
        let sink = reporter.finish(&exited(0));
        assert_eq!(
            summary(&sink.results),
            [(None, "pass", None, vec!["output.txt"])]
        );
        // The uploaded file was not replaced by the output.
        assert_eq!(
            fs::read(run.artifacts.dir().join("files/output.txt")).unwrap(),
            b""
        );

        let (_run, mut reporter) = setup();
        reporter
            .report(obj(json!({"partial": true, "testout": "mine.log"})))
            .unwrap();
        let sink = reporter.finish(&exited(0));
        assert_eq!(
            summary(&sink.results),
            [(None, "pass", None, vec!["mine.log"])]
        );
    }

    #[test]
    fn no_fallback_after_a_nameless_result() {
        let (_run, mut reporter) = setup();
        reporter
            .report(obj(json!({"status": "fail", "rerun": 3})))
            .unwrap();
        assert!(reporter.nameless_result_seen());
        let sink = reporter.finish(&exited(0));
        assert_eq!(summary(&sink.results), [(None, "fail", None, vec![])]);
        assert_eq!(sink.results[0].extra["rerun"], 3);
    }

    #[test]
    fn failure_after_a_nameless_result_is_not_lost() {
        // Section 9 item 6: ATEX writes nothing more here; atex adds infra.
        let (_run, mut reporter) = setup();
        reporter.report(obj(json!({"status": "pass"}))).unwrap();
        let sink = reporter.finish(&timeout());
        assert_eq!(
            summary(&sink.results),
            [
                (None, "pass", None, vec![]),
                (
                    None,
                    "infra",
                    Some("TestAbortedError(test duration timeout reached)"),
                    vec!["output.txt"]
                ),
            ]
        );

        // The output already linked as output.txt is listed, not relinked.
        let (run, mut reporter) = setup();
        reporter
            .report(obj(json!({"status": "pass", "testout": "output.txt"})))
            .unwrap();
        let sink = reporter.finish(&timeout());
        assert_eq!(
            summary(&sink.results)[1],
            (
                None,
                "infra",
                Some("TestAbortedError(test duration timeout reached)"),
                vec!["output.txt"]
            )
        );
        assert!(sink.warnings.is_empty(), "{:?}", sink.warnings);
        assert!(run.artifacts.dir().join("files/output.txt").is_file());
    }

    #[test]
    fn setup_failure_is_one_infra_result() {
        let (run, reporter) = setup();
        let sink = reporter.setup_failed("+ dnf install -y nope\nNo match for argument: nope");
        assert_eq!(
            summary(&sink.results),
            [(
                None,
                "infra",
                Some("TestSetupError(+ dnf install -y nope\nNo match for argument: nope)"),
                vec![]
            )]
        );
        assert!(!run.artifacts.dir().join("files").exists());
    }

    #[test]
    fn types_and_nul_are_bad_report_json() {
        let (run, mut reporter) = setup();
        for bad in [
            json!({"files": ["a\u{0}b"]}),
            json!({"files": [{"length": 1}]}),
            json!({"files": "log"}),
            json!({"files": [".."]}),
            json!({"testout": "a/.."}),
            json!({"name": 3}),
            json!({"status": 1}),
            json!({"note": ["x"]}),
        ] {
            let err = reporter.report(obj(bad.clone())).unwrap_err();
            assert_eq!(err.class(), "BadReportJSONError", "{bad}: {err}");
        }
        let sink = reporter.finish(&exited(0));
        assert_eq!(sink.results.len(), 1);
        assert!(sink.warnings.is_empty(), "{:?}", sink.warnings);
        let inside: Vec<_> = fs::read_dir(run.artifacts.dir().join("files"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(inside, ["output.txt"]);
    }

    /// As ATEX: names pointing outside are kept inside the test's
    /// directory and the result stands, with a warning each.
    #[test]
    fn names_climbing_out_are_confined_with_a_warning() {
        let (run, mut reporter) = setup();
        for good in [
            json!({"name": "a", "status": "pass", "files": ["../x", "a/../../y", "ok/../z"]}),
            json!({"name": "b", "status": "pass", "testout": "../escape"}),
            json!({"name": "../..", "status": "pass", "testout": "out"}),
            json!({"name": "c", "status": "pass", "files": ["/abs/f"]}),
        ] {
            reporter.report(obj(good)).unwrap();
        }
        let sink = reporter.finish(&exited(0));
        assert_eq!(
            summary(&sink.results),
            [
                (Some("a"), "pass", None, vec!["x", "y", "z"]),
                (Some("b"), "pass", None, vec!["escape"]),
                (Some("../.."), "pass", None, vec!["out"]),
                (Some("c"), "pass", None, vec!["abs/f"]),
                (None, "pass", None, vec!["output.txt"]),
            ]
        );
        // "ok/../z" stays inside: no warning for it.
        assert_eq!(sink.warnings.len(), 5, "{:?}", sink.warnings);
        assert!(
            sink.warnings[0].contains("'../x'") && sink.warnings[0].contains("as 'x'"),
            "{:?}",
            sink.warnings
        );
        assert!(run.artifacts.dir().join("files/b/escape").is_file());
        assert!(run.artifacts.dir().join("files/out").is_file());
        // Nothing beside the test's directory.
        let root = run.artifacts.dir().parent().unwrap().parent().unwrap();
        let outside: Vec<_> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outside, ["tests"]);
        let beside: Vec<_> = fs::read_dir(root.join("tests"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(beside, ["basic"]);
    }

    #[test]
    fn confined_warnings_are_capped() {
        let (_run, mut reporter) = setup();
        for i in 0..3 * CONFINED_WARNINGS {
            reporter
                .report(obj(json!({"name": format!("s{i}"), "files": ["/f"]})))
                .unwrap();
        }
        let sink = reporter.finish(&exited(0));
        assert_eq!(sink.warnings.len(), CONFINED_WARNINGS);
        assert!(sink.warnings[CONFINED_WARNINGS - 1].contains("not reported"));
    }

    /// ATEX 1.2 keeps a result without a status as `null`.
    #[test]
    fn a_result_without_status_keeps_it_null() {
        let (_run, mut reporter) = setup();
        reporter.report(obj(json!({"name": "sub"}))).unwrap();
        reporter.report(obj(json!({}))).unwrap();
        let sink = reporter.finish(&exited(0));
        assert_eq!(sink.results.len(), 2, "no fallback after a nameless result");
        for result in &sink.results {
            assert_eq!(result.status, None);
            let line = serde_json::to_value(result).unwrap();
            assert_eq!(line["status"], Value::Null);
        }
    }

    /// The fast path writes `"status":null` too.
    #[test]
    fn write_json_of_a_missing_status_is_null() {
        let context = ResultContext::default();
        let dir = Path::new("/a");
        let rendered = Rendered::new(&context, dir).expect("renders");
        let extra = IndexMap::new();
        let view = ResultView {
            test: "/t",
            name: None,
            status: None,
            note: None,
            files: &[],
            platform: "p",
            machine: "m",
            artifacts: dir,
            exit_code: None,
            started: "",
            duration: 0.0,
            attempt: 0,
            extra: &extra,
            rendered: Some(&rendered),
        };
        let mut fast = Vec::new();
        view.write_json(&mut fast).unwrap();
        let text = String::from_utf8(fast).unwrap();
        assert!(text.contains(r#""status":null"#), "{text}");
    }

    #[test]
    fn executor_keys_are_not_custom_keys() {
        let (_run, mut reporter) = setup();
        reporter
            .report(obj(json!({
                "name": "s", "status": "pass", "duration": "5m", "custom": {"a": null},
            })))
            .unwrap();
        let sink = reporter.finish(&exited(0));
        let line = serde_json::to_value(&sink.results[0]).unwrap();
        assert!(line["duration"].is_f64());
        assert_eq!(line["custom"], json!({"a": null}));
        assert_eq!(sink.warnings.len(), 1);
        assert!(
            sink.warnings[0].contains("'duration'"),
            "{:?}",
            sink.warnings
        );
    }
}
