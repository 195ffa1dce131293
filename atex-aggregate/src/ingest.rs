//! Ingesting Result records into a store as they arrive: the results file,
//! the moved files, and the JUnit and HTML part files, with the per-platform
//! totals and the duplicate-run numbering the only state kept in memory.
//!
//! Store layout (docs/aggregate.md):
//!
//! ```text
//! DIR/results.jsonl[.gz|.xz]       ATEX lines or Result records
//! DIR/files/<platform>/<test>/...  the uploaded files
//! DIR/junit.xml, DIR/index.html    rewritten periodically and at the end
//! DIR/.atex-aggregate/             part files: rows.js, junit-<N>.xml
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use atex_shared::cli::Interrupt;
use atex_shared::jsonl::ReadError;

use crate::attempts::{Attempts, Reruns};
use crate::files::{self, FilePolicy};
use crate::record::{self, Incoming, Line, RecordOut};
use crate::report::{self, Row, Totals, Verdict};
use crate::store::{self, Compression, ResultsWriter};

/// What the results file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// ATEX's line `[platform, status, test, subtest, files, note]`.
    Atex,
    /// Our full Result records.
    Records,
}

/// Everything an ingest needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The store directory.
    pub output: PathBuf,
    /// The results file's format.
    pub format: Format,
    /// The results file's compression (`None`: as the existing store has
    /// it with `append`, else uncompressed).
    pub compress: Option<Compression>,
    /// How uploaded files are stored.
    pub files: FilePolicy,
    /// Continue an existing store.
    pub append: bool,
    /// Longest time a read record waits before it is written out.
    pub flush_interval: Duration,
    /// How often junit.xml and index.html are rewritten while ingesting.
    pub render_interval: Duration,
    /// The longest input line, in bytes (without its newline): a longer
    /// one is bad input (exit 2) and is not read further.
    pub max_line: usize,
    /// After SIGINT/SIGTERM, how long the input is still read while it
    /// stays open (see [`run`]); zero stops at once (the command line uses
    /// that when stdin is a terminal: nobody is writing records there).
    pub interrupt_wait: Duration,
}

/// The default longest input line: 64 MiB, far above any Result record
/// atex-exec writes (its `--max-result-json` is 4 MiB), low enough that
/// one line cannot take the memory of a long run.
pub const MAX_LINE: usize = 64 << 20;

/// How long an interrupted ingest keeps reading an open input: long
/// enough for atex-exec to report the test it interrupted, short enough
/// that a producer that never ends does not hold the terminal.
pub const INTERRUPT_WAIT: Duration = Duration::from_secs(5);

impl Config {
    /// A configuration with the defaults of the command line.
    pub fn new(output: impl Into<PathBuf>) -> Config {
        Config {
            output: output.into(),
            format: Format::Atex,
            compress: None,
            files: FilePolicy::default(),
            append: false,
            flush_interval: Duration::from_secs(1),
            render_interval: Duration::from_secs(5),
            max_line: MAX_LINE,
            interrupt_wait: INTERRUPT_WAIT,
        }
    }
}

/// Why an ingest failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line of the input is not a Result record; everything before it
    /// is in the store.
    #[error(transparent)]
    Input(#[from] ReadError),
    /// `--output` names a file, or a path under one.
    #[error("--output {}: {} is not a directory", .output.display(), .file.display())]
    NotADirectory {
        /// The `--output` path.
        output: PathBuf,
        /// The file in the way (`output` itself or one of its parents).
        file: PathBuf,
    },
    /// The directory already holds a store and `--append` was not given.
    #[error("{0} already holds a results store (use --append to continue it)")]
    Exists(PathBuf),
    /// `--append` asked for a different format or compression than the
    /// store has.
    #[error("{0}")]
    Mismatch(String),
    /// The existing store cannot be read.
    #[error("failed to read the store: {0}")]
    Corrupt(String),
    /// Reading the existing store failed.
    #[error("failed to read the store: {0}")]
    Read(#[from] io::Error),
    /// Storing a result's file failed (a full disk): nothing of it is in
    /// the store, its source is where it was.
    #[error(transparent)]
    Store(#[from] files::StoreError),
    /// Writing the store failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The exit code for this error: 2 for bad input or usage, 3 when
    /// the store could not be written.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Io { .. } | Error::Read(_) | Error::Store(_) => atex_shared::exit::INFRA,
            _ => atex_shared::exit::INVALID,
        }
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// The SIGINT and SIGTERM an ingest was sent, as the signal handlers
/// record them (the first one's number, and how many came).
#[derive(Debug, Default)]
pub struct Signals {
    first: AtomicUsize,
    count: AtomicUsize,
}

impl Signals {
    /// No signal yet.
    pub fn new() -> Signals {
        Signals::default()
    }

    /// Record that signal `number` arrived.
    pub fn raise(&self, number: i32) {
        let number = usize::try_from(number).unwrap_or(0).max(1);
        let _ = self
            .first
            .compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst);
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// The first signal, as the interrupt it asks for.
    pub fn first(&self) -> Option<Interrupt> {
        match self.first.load(Ordering::SeqCst) {
            0 => None,
            n if n == signal_hook::consts::SIGTERM as usize => Some(Interrupt::Term),
            _ => Some(Interrupt::Int),
        }
    }

    /// How many signals arrived.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// How an interrupted ingest stopped reading its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The input ended: every record its producer wrote is stored.
    InputEnded,
    /// A second signal came while the input was still open.
    SecondSignal,
    /// The input was still open [`Config::interrupt_wait`] after the signal.
    WaitOver,
    /// Not waited for ([`Config::interrupt_wait`] is zero).
    AtOnce,
}

/// An interruption: the signal, and how the reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    /// The first signal.
    pub signal: Interrupt,
    /// How the reading stopped.
    pub stopped: Stopped,
}

/// What an ingest did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Results ingested by this run.
    pub ingested: u64,
    /// The whole store's totals (earlier runs included with `--append`).
    pub totals: Totals,
    /// Set when a signal stopped the ingest.
    pub interrupted: Option<Interrupted>,
}

/// The hidden directory of part files.
pub const PARTS_DIR: &str = ".atex-aggregate";
/// Under [`PARTS_DIR`]: files being copied into the store.
const TMP_DIR: &str = "tmp";

struct Platform {
    name: String,
    /// Normalised, for paths.
    dir: String,
    totals: Totals,
    junit: Part,
}

/// A part file: lines appended in batches.
struct Part {
    path: PathBuf,
    file: std::fs::File,
    pending: Vec<u8>,
}

impl Part {
    fn open(path: PathBuf) -> Result<Part, Error> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        Ok(Part {
            path,
            file,
            pending: Vec::with_capacity(1 << 16),
        })
    }

    fn flush(&mut self) -> Result<(), Error> {
        if !self.pending.is_empty() {
            io::Write::write_all(&mut self.file, &self.pending)
                .map_err(io_err("write", &self.path))?;
            self.pending.clear();
            // What a long line grew is given back.
            if self.pending.capacity() > HOLD_MAX {
                self.pending = Vec::with_capacity(1 << 16);
            }
        }
        Ok(())
    }
}

/// The run a result belongs to, per (platform, test): a later run of the
/// same test is stored as `<test> (N)`, like ATEX's `allow_duplicate`.
#[derive(Debug, Clone, Copy)]
struct RunState {
    /// Hash of (started, attempt, machine, artifacts); `None` for runs of
    /// an earlier ingest (with `--append`), which never continue.
    run: Option<u64>,
    suffix: u32,
    next: u32,
}

/// An open store being written.
pub struct Aggregator {
    dir: PathBuf,
    format: Format,
    policy: FilePolicy,
    results: ResultsWriter,
    rows: Part,
    /// The timeline's part file (one line per result, as `rows`).
    timeline: Part,
    parts: PathBuf,
    platforms: Vec<Platform>,
    last_platform: usize,
    runs: HashMap<u64, RunState, foldhash::fast::FixedState>,
    hasher: foldhash::fast::FixedState,
    warnings: u64,
    ingested: u64,
    /// Where a (short) stored line is made.
    line: Vec<u8>,
    /// The length of the input line being ingested (0 when a record is
    /// given as such): a long one has its buffers sized at once.
    line_len: usize,
    /// The store's earlier attempts (`attempts/`), for flaky marks.
    attempts: Attempts,
    /// The attempts are read on before the next result (set by each
    /// flush: atex-orchestrate writes a test's earlier attempts there
    /// before it gives its final one).
    attempts_stale: bool,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("dir", &self.dir)
            .field("ingested", &self.ingested)
            .finish_non_exhaustive()
    }
}

const MAX_WARNINGS: u64 = 20;

/// A pending buffer longer than this (a long line's) is written out at
/// once and its memory given back.
const HOLD_MAX: usize = store::HOLD_MAX;

/// Split a stored test name `"/t (3)"` into `("/t", 3)`.
pub fn split_suffix(test: &str) -> (&str, u32) {
    if let Some(rest) = test.strip_suffix(')')
        && let Some(i) = rest.rfind(" (")
        && let Ok(n) = rest[i + 2..].parse::<u32>()
        && n > 0
        && !rest[i + 2..].starts_with('0')
    {
        return (&rest[..i], n);
    }
    (test, 0)
}

impl Aggregator {
    /// Create the store in `config.output`, or continue it with
    /// `config.append`.
    pub fn open(config: &Config) -> Result<Aggregator, Error> {
        let dir = &config.output;
        // A file where the store should be is a usage error, not a failure
        // to write the store.
        if let Some(file) = dir
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .find(|a| std::fs::metadata(a).is_ok_and(|m| !m.is_dir()))
        {
            return Err(Error::NotADirectory {
                output: dir.clone(),
                file: file.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let dir = dir.canonicalize().map_err(io_err("resolve", dir))?;
        let existing = store::find_results(&dir);
        let parts = dir.join(PARTS_DIR);
        let compression = match (&existing, config.append) {
            (Some(_), false) => return Err(Error::Exists(dir)),
            (None, false) if dir.join("files").exists() => return Err(Error::Exists(dir)),
            (Some((_, c)), true) => {
                if config.compress.is_some_and(|want| want != *c) {
                    return Err(Error::Mismatch(format!(
                        "the store's results file is {}, not what --compress asks for",
                        c.results_name()
                    )));
                }
                *c
            }
            (None, _) => config.compress.unwrap_or(Compression::None),
        };
        if existing.is_none() {
            // Parts of an earlier, unfinished store would describe
            // results this one does not have.
            let _ = std::fs::remove_dir_all(&parts);
        }
        std::fs::create_dir_all(&parts).map_err(io_err("create", &parts))?;
        // Copies an earlier run did not finish (killed): never part of the
        // store, gone.
        let tmp = parts.join(TMP_DIR);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        let results_path = dir.join(compression.results_name());
        let mut agg = Aggregator {
            results: ResultsWriter::open(&results_path, compression)
                .map_err(io_err("open", &results_path))?,
            rows: Part::open(parts.join("rows.js"))?,
            timeline: Part::open(parts.join(crate::timeline::PART))?,
            dir: dir.clone(),
            format: config.format,
            policy: config.files.clone(),
            parts,
            platforms: Vec::new(),
            last_platform: 0,
            runs: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x61746578)),
            hasher: foldhash::fast::FixedState::with_seed(0x61746578),
            warnings: 0,
            ingested: 0,
            line_len: 0,
            line: Vec::with_capacity(1024),
            attempts: Attempts::new(&dir),
            attempts_stale: true,
        };
        if existing.is_some() {
            agg.recover(&results_path, compression)?;
            // The repair may have replaced the file (a rewrite renamed
            // over it): appending through the handle opened before would
            // write to the old, unlinked file and lose every result.
            agg.results = ResultsWriter::open(&results_path, compression)
                .map_err(io_err("open", &results_path))?;
        }
        Ok(agg)
    }

    /// Read an existing store back: totals, platforms, run numbering; cut
    /// a crash's partial tail; bring the part files in line with it.
    fn recover(&mut self, path: &Path, compression: Compression) -> Result<(), Error> {
        let rows_have =
            store::trim_lines(&self.rows.path, None).map_err(io_err("read", &self.rows.path))?;
        let timeline_have = store::trim_lines(&self.timeline.path, None)
            .map_err(io_err("read", &self.timeline.path))?;
        let mut junit_have: Vec<u64> = Vec::new();
        let mut index = 0u64;
        self.refresh_attempts();
        let mut format: Option<Format> = None;
        let back = {
            let this = &mut *self;
            store::read_lines::<Error>(path, compression, |bytes| {
                index += 1;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| Error::Corrupt(format!("{}:{index}: {e}", path.display())))?;
                let line = Line::parse(text)
                    .map_err(|e| Error::Corrupt(format!("{}:{index}: {e}", path.display())))?;
                let kind = if text.trim_start().starts_with('[') {
                    Format::Atex
                } else {
                    Format::Records
                };
                if *format.get_or_insert(kind) != kind {
                    return Err(Error::Corrupt(format!(
                        "{}:{index}: mixed line formats",
                        path.display()
                    )));
                }
                let p = this.platform(&line.platform)?;
                if p >= junit_have.len() {
                    let part = this.platforms[p].junit.path.clone();
                    junit_have.push(store::trim_lines(&part, None).map_err(io_err("read", &part))?);
                }
                let (base, n) = split_suffix(&line.test);
                let key = this.key(&line.platform, base);
                let state = this.runs.entry(key).or_insert(RunState {
                    run: None,
                    suffix: n,
                    next: 0,
                });
                state.run = None;
                state.suffix = n;
                state.next = state.next.max(n + 1);
                let reruns = this
                    .attempts
                    .take(&line.platform, base, line.subtest.as_deref());
                let plat = &mut this.platforms[p];
                let nth = plat.totals.tests;
                plat.totals.add(line.status_str(), line.duration);
                if reruns
                    .as_ref()
                    .is_some_and(|r| r.flaky(line.status.as_deref()))
                {
                    plat.totals.flaky += 1;
                }
                let dir = (!line.files.is_empty()).then(|| {
                    format!(
                        "files/{}/{}",
                        plat.dir,
                        stored_rel(&line.test, line.subtest.as_deref())
                    )
                });
                let row = Row {
                    platform: &line.platform,
                    status: line.status.as_deref(),
                    test: &line.test,
                    subtest: line.subtest.as_deref(),
                    files: &line.files,
                    note: line.note.as_deref(),
                    dir: dir.as_deref(),
                    duration: line.duration,
                    output: None,
                    reruns: reruns.as_ref(),
                };
                // Rows the crash kept from the part files stay; the ones it
                // lost are made again from the line (without output).
                if nth >= junit_have[p] {
                    report::junit_testcase(&mut plat.junit.pending, &row);
                }
                if index > rows_have {
                    report::html_row(&mut this.rows.pending, &row);
                }
                if index > timeline_have {
                    crate::timeline::push_recovered(&mut this.timeline.pending, text);
                }
                Ok(())
            })?
        };
        if let Some(found) = format
            && found != self.format
        {
            return Err(Error::Mismatch(format!(
                "the store holds {} lines; give --format {}",
                if found == Format::Atex {
                    "ATEX"
                } else {
                    "record"
                },
                if found == Format::Atex {
                    "atex"
                } else {
                    "records"
                }
            )));
        }
        if back.damaged {
            let kept = store::repair(path, compression, &back, &self.parts)
                .map_err(io_err("repair", path))?;
            let (what, aside) = if compression == Compression::None {
                ("a cut-off last line", "the cut-off part")
            } else {
                ("a cut-off, damaged or foreign part", "the file as it was")
            };
            eprintln!(
                "atex-aggregate: warning: {} is damaged ({} of its {} bytes unreadable: {what}); kept the {} it holds and continued it{}",
                path.display(),
                back.unreadable,
                back.file_len,
                lines(back.lines),
                kept.map(|k| format!("; {aside} is kept as {}", k.display()))
                    .unwrap_or_default()
            );
        }
        // Parts longer than the results (flushed before a crash cut the
        // results) are cut back.
        store::trim_lines(&self.rows.path, Some(back.lines))
            .map_err(io_err("trim", &self.rows.path))?;
        store::trim_lines(&self.timeline.path, Some(back.lines))
            .map_err(io_err("trim", &self.timeline.path))?;
        for p in &mut self.platforms {
            store::trim_lines(&p.junit.path, Some(p.totals.tests))
                .map_err(io_err("trim", &p.junit.path))?;
        }
        self.flush()?;
        // ATEX's lines have no duration: the suites' times come from the
        // testcases' (the part files, now in line with the results), so
        // JUnit's times count the whole store, not only this batch.
        for p in &mut self.platforms {
            p.totals.time =
                report::part_time(&p.junit.path).map_err(io_err("read", &p.junit.path))?;
        }
        Ok(())
    }

    fn key(&self, platform: &str, test: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        platform.hash(&mut h);
        test.hash(&mut h);
        h.finish()
    }

    fn platform(&mut self, name: &str) -> Result<usize, Error> {
        if let Some(p) = self.platforms.get(self.last_platform)
            && p.name == name
        {
            return Ok(self.last_platform);
        }
        let i = match self.platforms.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                let i = self.platforms.len();
                self.platforms.push(Platform {
                    name: name.to_owned(),
                    dir: files::normalize(name).unwrap_or_else(|| name.replace(['/', '\0'], "_")),
                    totals: Totals::default(),
                    junit: Part::open(self.parts.join(format!("junit-{i}.xml")))?,
                });
                i
            }
        };
        self.last_platform = i;
        Ok(i)
    }

    /// The store directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ingest one line of input (a Result record); `line_no` and `source`
    /// locate errors.
    pub fn ingest_line(&mut self, bytes: &[u8], source: &str, line_no: usize) -> Result<(), Error> {
        self.line_len = bytes.len();
        let r: Incoming<'_> = serde_json::from_slice(bytes).map_err(|e| {
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_owned(),
                None => message,
            };
            ReadError::Parse {
                source_name: source.to_owned(),
                line: line_no,
                column: e.column().max(1),
                message,
            }
        })?;
        let ingested = self.ingest(&r);
        self.line_len = 0;
        ingested
    }

    /// Read on in the store's `attempts/` (once per batch: a store
    /// without one costs a `stat`). A problem there costs the flaky
    /// marks, not the ingest: a warning.
    fn refresh_attempts(&mut self) {
        self.attempts_stale = false;
        match self.attempts.refresh() {
            Ok(0) => {}
            Ok(bad) => self.warn(&format!(
                "{}: {} that are not results, skipped",
                self.dir.join(crate::attempts::DIR).display(),
                lines(bad)
            )),
            Err(e) => self.warn(&format!(
                "failed to read {}: {e}; earlier attempts are not shown",
                self.dir.join(crate::attempts::DIR).display()
            )),
        }
    }

    /// What earlier attempts of `r`'s test left, from the store's
    /// `attempts/` (read on first when a batch was written since).
    fn reruns(&mut self, r: &Incoming<'_>) -> Option<Reruns> {
        if self.attempts_stale {
            self.refresh_attempts();
        }
        if self.attempts.is_empty() {
            return None;
        }
        self.attempts.take(&r.platform, &r.test, r.name.as_deref())
    }

    /// Ingest one Result record.
    pub fn ingest(&mut self, r: &Incoming<'_>) -> Result<(), Error> {
        let reruns = self.reruns(r);
        let p = self.platform(&r.platform)?;
        let key = self.key(&r.platform, &r.test);
        let run = {
            let mut h = self.hasher.build_hasher();
            r.started.hash(&mut h);
            r.attempt.hash(&mut h);
            r.machine.hash(&mut h);
            r.artifacts.hash(&mut h);
            h.finish()
        };
        let state = self.runs.entry(key).or_insert(RunState {
            run: Some(run),
            suffix: 0,
            next: 1,
        });
        if state.run != Some(run) {
            state.run = Some(run);
            state.suffix = state.next;
            state.next += 1;
        }
        let test: Cow<'_, str> = if state.suffix == 0 {
            Cow::Borrowed(&r.test)
        } else {
            Cow::Owned(format!("{} ({})", r.test, state.suffix))
        };
        let status = r.status.as_deref();
        let verdict = Verdict::of(status.unwrap_or(""));
        let mut output = None;
        let mut dir = None;
        let stored: Vec<String>;
        if r.files.is_empty() {
            stored = Vec::new();
        } else {
            let rel = stored_rel(&test, r.name.as_deref());
            let platform_dir = &self.platforms[p].dir;
            let d = format!("files/{platform_dir}/{rel}");
            let dst = self.dir.join(&d);
            if r.artifacts.is_empty() {
                stored = r.files.iter().map(|f| f.to_string()).collect();
            } else {
                let mut src = Path::new(r.artifacts.as_ref()).join("files");
                if let Some(name) = r.name.as_deref() {
                    src.push(files::normalize(name).unwrap_or_default());
                }
                if !matches!(verdict, Verdict::Pass | Verdict::Skip) {
                    // The test's output, else the result's first file (the
                    // log `tmt-report-result -o LOG` uploaded with it).
                    output = r
                        .files
                        .iter()
                        .find(|f| f.as_ref() == "output.txt")
                        .or_else(|| r.files.first())
                        .and_then(|f| files::tail(&src.join(f.as_ref())));
                }
                let tmp = self.parts.join(TMP_DIR);
                let s = files::store(&src, &dst, &r.files, &self.policy, &tmp)?;
                for problem in s.problems {
                    self.warn(&format!("{}: {problem}", r.test));
                }
                stored = s.names;
            }
            dir = Some(d);
        }
        // A long line: each buffer it goes into is sized once, not
        // doubled past it (the address space stays near two copies).
        let long = self.line_len > HOLD_MAX;
        let size = self.line_len;
        let reserve = |buffer: &mut Vec<u8>| {
            if long {
                reserve_long(buffer, size);
            }
        };
        // A short line is made in a small buffer that stays in the cache,
        // then copied; a long one straight into the pending buffer, not
        // copied once more on its way.
        let mut scratch = std::mem::take(&mut self.line);
        scratch.clear();
        let pending = if long {
            let pending = self.results.pending();
            reserve(pending);
            pending
        } else {
            &mut scratch
        };
        let mark = pending.len();
        match self.format {
            Format::Atex => record::write_atex_line(
                pending,
                &r.platform,
                status,
                &test,
                r.name.as_deref(),
                &stored,
                r.note.as_deref(),
                false,
            ),
            Format::Records => {
                let artifacts = self
                    .dir
                    .join("files")
                    .join(&self.platforms[p].dir)
                    .join(files::normalize(&test).unwrap_or_default());
                let artifacts = artifacts.to_string_lossy();
                let out = RecordOut {
                    incoming: r,
                    test: &test,
                    files: &stored,
                    artifacts: &artifacts,
                };
                if let Err(e) = record::write_record(pending, &out) {
                    pending.truncate(mark);
                    return Err(Error::Corrupt(e.to_string()));
                }
            }
        }
        pending.push(b'\n');
        if !long {
            self.results.pending().extend_from_slice(&scratch);
        }
        self.line = scratch;
        // A long line is written out at once rather than held with its
        // row and testcase: memory stays near two copies of the line.
        if self.results.pending_len() > HOLD_MAX {
            let path = self.results.path().to_path_buf();
            self.results.flush().map_err(io_err("write", &path))?;
        }
        let row = Row {
            platform: &r.platform,
            status,
            test: &test,
            subtest: r.name.as_deref(),
            files: &stored,
            note: r.note.as_deref(),
            dir: dir.as_deref(),
            duration: r.duration,
            output: output.as_deref(),
            reruns: reruns.as_ref(),
        };
        reserve(&mut self.rows.pending);
        report::html_row(&mut self.rows.pending, &row);
        if self.rows.pending.len() > HOLD_MAX {
            self.rows.flush()?;
        }
        crate::timeline::push_entry(&mut self.timeline.pending, r, status);
        if self.timeline.pending.len() > HOLD_MAX {
            self.timeline.flush()?;
        }
        let plat = &mut self.platforms[p];
        reserve(&mut plat.junit.pending);
        report::junit_testcase(&mut plat.junit.pending, &row);
        if plat.junit.pending.len() > HOLD_MAX {
            plat.junit.flush()?;
        }
        plat.totals.add(status.unwrap_or(""), r.duration);
        if reruns.as_ref().is_some_and(|x| x.flaky(status)) {
            plat.totals.flaky += 1;
        }
        self.ingested += 1;
        Ok(())
    }

    fn warn(&mut self, message: &str) {
        self.warnings += 1;
        if self.warnings <= MAX_WARNINGS {
            eprintln!("atex-aggregate: warning: {message}");
        } else if self.warnings == MAX_WARNINGS + 1 {
            eprintln!("atex-aggregate: warning: more file problems; not shown");
        }
    }

    /// Bytes of results waiting for [`Aggregator::flush`].
    pub fn pending(&self) -> usize {
        self.results.pending_len()
    }

    /// Write out everything ingested so far: the results file first (the
    /// store's truth), then the part files.
    pub fn flush(&mut self) -> Result<(), Error> {
        let path = self.results.path().to_path_buf();
        self.results.flush().map_err(io_err("write", &path))?;
        self.rows.flush()?;
        self.timeline.flush()?;
        for p in &mut self.platforms {
            p.junit.flush()?;
        }
        self.attempts_stale = true;
        Ok(())
    }

    /// Flush, then rewrite junit.xml and index.html.
    pub fn render(&mut self) -> Result<(), Error> {
        self.flush()?;
        let junit = self.dir.join("junit.xml");
        let suites: Vec<_> = self
            .platforms
            .iter()
            .map(|p| (p.name.as_str(), &p.totals, p.junit.path.as_path()))
            .collect();
        report::write_junit(&junit, &suites).map_err(io_err("write", &junit))?;
        // The earlier attempts of rerun tests are bars too.
        let earlier = self
            .dir
            .join(crate::attempts::DIR)
            .join(PARTS_DIR)
            .join(crate::timeline::PART);
        let timeline = crate::timeline::write(&self.dir, &self.timeline.path, &earlier)
            .map_err(io_err("write", &self.dir.join(crate::timeline::DIR)))?;
        let html = self.dir.join("index.html");
        let plats: Vec<_> = self
            .platforms
            .iter()
            .map(|p| (p.name.as_str(), &p.totals))
            .collect();
        report::write_html(&html, &plats, &self.rows.path, timeline).map_err(io_err("write", &html))
    }

    /// The totals of the whole store.
    pub fn totals(&self) -> Totals {
        let mut all = Totals::default();
        for p in &self.platforms {
            all.merge(&p.totals);
        }
        all
    }

    /// Results ingested by this run.
    pub fn ingested(&self) -> u64 {
        self.ingested
    }
}

/// Make room in `buffer` for what a long input line of `len` bytes gives
/// (about as long: ATEX's line and the rows hold its strings escaped).
#[cold]
fn reserve_long(buffer: &mut Vec<u8>, len: usize) {
    buffer.reserve_exact(len.saturating_add(4096));
}

/// "1 line", "12 lines".
fn lines(n: u64) -> String {
    format!("{n} line{}", if n == 1 { "" } else { "s" })
}

/// Where a result's files sit under `files/<platform>/`: the test name
/// (as stored) and the subtest, normalised.
fn stored_rel(test: &str, subtest: Option<&str>) -> String {
    let t = files::normalize(test).unwrap_or_else(|| test.replace('/', "_"));
    match subtest.map(|s| files::normalize(s).unwrap_or_default()) {
        Some(s) if !s.is_empty() => format!("{t}/{s}"),
        _ => t,
    }
}

/// Bytes read from the input per block.
const BLOCK: usize = 256 * 1024;
/// A compressed store flushes when this much is pending (or after the flush
/// interval); an uncompressed one after every block it read.
const COMPRESSED_BATCH: usize = 1 << 20;

/// Ingest every Result record of `input` (named `source` in errors) into
/// the store of `config`, writing as records arrive.
///
/// `signals` is polled. After the first SIGINT or SIGTERM the input is
/// still read while it stays open, because on Ctrl-C every process of
/// `atex-exec | atex-aggregate` gets the signal and atex-exec's last
/// record (the test it interrupted, as `infra`) is still on its way. The
/// reading stops when the input ends, at a second signal, or
/// [`Config::interrupt_wait`] after the first; then everything read is
/// written out and the stop is returned as [`Outcome::interrupted`].
pub fn run<R: Read + Send + 'static>(
    config: &Config,
    input: R,
    source: &str,
    signals: &Signals,
) -> Result<Outcome, Error> {
    let mut agg = Aggregator::open(config)?;
    let (tx, rx) = mpsc::sync_channel::<Result<Vec<u8>, ReadFail>>(4);
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let max_line = config.max_line;
    // A reader thread: blocking reads do not keep the loop from flushing
    // on time or noticing a signal, and reading overlaps ingesting.
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_blocks(input, max_line, &tx, &ack_rx))
        .map_err(io_err("start the reader of", Path::new(source)))?;
    let compressed = agg.results.path().extension().is_some_and(|e| e != "jsonl");
    let mut line_no = 0usize;
    let mut oldest: Option<Instant> = None;
    let mut last_render = Instant::now();
    let mut render_every = config.render_interval;
    let mut rendered = agg.ingested();
    let poll = Duration::from_millis(100).min(config.flush_interval);
    // When the first signal was seen: reading goes on until the input
    // ends, a second signal, or the wait is over.
    let mut signalled: Option<(Interrupt, Instant)> = None;
    let result = loop {
        if let Some(signal) = signals.first() {
            let (signal, since) = *signalled.get_or_insert((signal, Instant::now()));
            let stopped = if config.interrupt_wait.is_zero() {
                Some(Stopped::AtOnce)
            } else if signals.count() > 1 {
                Some(Stopped::SecondSignal)
            } else if since.elapsed() >= config.interrupt_wait {
                Some(Stopped::WaitOver)
            } else {
                None
            };
            if let Some(stopped) = stopped {
                break Ok(Some(Interrupted { signal, stopped }));
            }
        }
        match rx.recv_timeout(poll) {
            Ok(Ok(block)) => {
                let mut failed = None;
                for line in block.split(|&b| b == b'\n') {
                    line_no += 1;
                    if line.len() > config.max_line {
                        failed = Some(too_long(source, line_no, config.max_line));
                        break;
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if let Err(e) = agg.ingest_line(line, source, line_no) {
                        failed = Some(e);
                        break;
                    }
                }
                // The block ends with a newline: its last split is empty.
                line_no -= 1;
                if block.len() > BIG_BLOCK {
                    // The reader waits for this before it reads on.
                    let _ = ack_tx.send(());
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                oldest.get_or_insert_with(Instant::now);
                if !compressed || agg.pending() >= COMPRESSED_BATCH {
                    agg.flush()?;
                    oldest = None;
                }
            }
            Ok(Err(ReadFail::Io(e))) => {
                break Err(Error::Input(ReadError::Io {
                    source_name: source.to_owned(),
                    line: line_no + 1,
                    error: e,
                }));
            }
            Ok(Err(ReadFail::TooLong)) => {
                break Err(too_long(source, line_no + 1, config.max_line));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Ok(signalled.map(|(signal, _)| Interrupted {
                    signal,
                    stopped: Stopped::InputEnded,
                }));
            }
        }
        if oldest.is_some_and(|t| t.elapsed() >= config.flush_interval) {
            agg.flush()?;
            oldest = None;
        }
        // Nothing new, nothing to rewrite: a long run idles cheaply.
        if last_render.elapsed() >= render_every && agg.ingested() != rendered {
            let start = Instant::now();
            agg.render()?;
            rendered = agg.ingested();
            // Rewriting the reports copies the whole part files: keep that
            // under a tenth of the time for big stores.
            render_every = config.render_interval.max(start.elapsed() * 10);
            last_render = Instant::now();
        }
    };
    // Whatever happened, what was read is written out and the reports
    // describe it.
    let finished = agg.render();
    let interrupted = result?;
    finished?;
    Ok(Outcome {
        ingested: agg.ingested(),
        totals: agg.totals(),
        interrupted,
    })
}

/// Why the reader thread stopped early.
#[derive(Debug)]
enum ReadFail {
    /// Reading failed.
    Io(io::Error),
    /// The line being read is longer than the cap.
    TooLong,
}

/// A block longer than this holds a long line: the reader waits until it
/// is ingested before reading on, so at most one such block is in flight
/// besides the line being read (memory stays within a few times the cap).
const BIG_BLOCK: usize = 4 * BLOCK;

/// The error for line `line_no`, longer than `max_line` bytes.
fn too_long(source: &str, line_no: usize, max_line: usize) -> Error {
    Error::Input(ReadError::Parse {
        source_name: source.to_owned(),
        line: line_no,
        column: max_line.saturating_add(1),
        message: match human_bytes(max_line) {
            Some(human) => {
                format!("the line is longer than {max_line} bytes ({human}; --max-line-size)")
            }
            None => format!("the line is longer than {max_line} bytes (--max-line-size)"),
        },
    })
}

/// `67108864` as "64 MiB": whole MiB or KiB only.
fn human_bytes(n: usize) -> Option<String> {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        Some(format!("{} MiB", n >> 20))
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        Some(format!("{} KiB", n >> 10))
    } else {
        None
    }
}

/// Read `input` in blocks that end at a newline (the last block gets one
/// when the input lacks it) and send them; stop with [`ReadFail::TooLong`]
/// when the line being read grows over `max_line` bytes.
///
/// Linear in the input: a long line grows one buffer (amortised doubling)
/// and only the bytes just read are searched for a newline (copying and
/// searching the whole partial line per read made a 80 MB line take 14 s).
fn read_blocks<R: Read>(
    mut input: R,
    max_line: usize,
    tx: &mpsc::SyncSender<Result<Vec<u8>, ReadFail>>,
    ack: &mpsc::Receiver<()>,
) {
    // The bytes read after the last newline sent: the line being read.
    let mut block: Vec<u8> = Vec::with_capacity(BLOCK);
    loop {
        let start = block.len();
        if block.capacity() < start + BLOCK {
            // Doubling (linear overall), but never far past the cap: the
            // address space taken stays within the cap and two blocks.
            let want = start
                .saturating_mul(2)
                .min(max_line.saturating_add(2 * BLOCK))
                .max(start + BLOCK);
            block.reserve_exact(want - start);
        }
        block.resize(start + BLOCK, 0);
        let n = match input.read(&mut block[start..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                block.truncate(start);
                continue;
            }
            Err(e) => {
                let _ = tx.send(Err(ReadFail::Io(e)));
                return;
            }
        };
        block.truncate(start + n);
        if n == 0 {
            if !block.is_empty() {
                block.push(b'\n');
                let _ = tx.send(Ok(block));
            }
            return;
        }
        if let Some(i) = block[start..].iter().rposition(|&b| b == b'\n') {
            let rest = block[start + i + 1..].to_vec();
            block.truncate(start + i + 1);
            let big = block.len() > BIG_BLOCK;
            if tx.send(Ok(block)).is_err() || (big && ack.recv().is_err()) {
                return;
            }
            block = Vec::with_capacity(rest.len() + BLOCK);
            block.extend_from_slice(&rest);
        }
        // The line being read (the whole block when no newline came in
        // it) is checked here; complete lines by the ingest loop.
        let partial = block.len();
        if partial > max_line {
            let _ = tx.send(Err(ReadFail::TooLong));
            return;
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    #[test]
    fn suffixes_split() {
        assert_eq!(split_suffix("/t (1)"), ("/t", 1));
        assert_eq!(split_suffix("/t (12)"), ("/t", 12));
        assert_eq!(split_suffix("/t (0)"), ("/t (0)", 0));
        assert_eq!(split_suffix("/t (x)"), ("/t (x)", 0));
        assert_eq!(split_suffix("/t"), ("/t", 0));
    }

    #[test]
    fn blocks_end_at_newlines() {
        let (tx, rx) = mpsc::sync_channel(100);
        let (_ack_tx, ack_rx) = mpsc::channel();
        let input = b"{\"a\":1}\n{\"b\":2}".repeat(50_000);
        read_blocks(&input[..], MAX_LINE, &tx, &ack_rx);
        drop(tx);
        let all: Vec<u8> = rx.iter().flat_map(|b| b.unwrap()).collect();
        let mut want = input.clone();
        want.push(b'\n');
        assert_eq!(all, want);
    }
}
