//! A store's earlier attempts: the `attempts/` sub-store atex-orchestrate
//! writes (each test's attempts before its final one), read through the
//! store's own reader and kept as a small index, so a final result can be
//! marked flaky (passed after failed attempts) or rerun (failed every
//! time) in JUnit, on the page and in `summary`.
//!
//! The index holds only what earlier attempts left: per (platform, test)
//! how many runs, per (platform, test, subtest) the results that did not
//! pass. A store without `attempts/` costs one `stat` per batch.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::files;
use crate::ingest::split_suffix;
use crate::record::Line;
use crate::report::Verdict;
use crate::store::{self, Compression};

/// The sub-store's directory name in a store.
pub const DIR: &str = "attempts";

/// One earlier result that did not pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Earlier {
    /// Its status (`None`: it had none).
    pub status: Option<String>,
    /// Its note.
    pub note: Option<String>,
    /// Its stored `output.txt` (else its first file), when it has one.
    output: Option<PathBuf>,
}

impl Earlier {
    /// The last [`files::OUTPUT_TAIL`] bytes of its output, when stored.
    pub fn output_tail(&self) -> Option<Vec<u8>> {
        self.output.as_deref().and_then(files::tail)
    }
}

/// What earlier attempts of a final result's test left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reruns {
    /// How many times the test ran, the final attempt included.
    pub attempts: u32,
    /// The earlier results of the same test and subtest that did not
    /// pass, oldest first (each with its output tail, when stored).
    pub failed: Vec<(Earlier, Option<Vec<u8>>)>,
}

impl Reruns {
    /// A final result with `status` and these reruns is flaky: it passed
    /// (or was skipped, as atex-orchestrate counts it) after earlier
    /// results that did not.
    pub fn flaky(&self, status: Option<&str>) -> bool {
        !self.failed.is_empty()
            && matches!(
                Verdict::of(status.unwrap_or("")),
                Verdict::Pass | Verdict::Skip
            )
    }
}

/// Per (platform, test) of the sub-store.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestRuns {
    /// Earlier runs (the sub-store's `<test>`, `<test> (1)`, ...).
    pub runs: u32,
    /// Whether one of their results did not pass.
    pub failed: bool,
}

/// The index of a store's `attempts/` sub-store, read on as it grows.
#[derive(Debug)]
pub struct Attempts {
    dir: PathBuf,
    results: Option<(PathBuf, Compression)>,
    /// Plain file: bytes read; compressed: the file's length when read.
    offset: u64,
    /// Lines read (a compressed file is read again whole when it grew).
    lines: u64,
    tests: HashMap<String, TestRuns>,
    failed: HashMap<String, Vec<Earlier>>,
}

fn test_key(platform: &str, test: &str) -> String {
    format!("{platform}\0{test}")
}

fn result_key(platform: &str, test: &str, subtest: Option<&str>) -> String {
    match subtest {
        Some(s) => format!("{platform}\0{test}\0{s}"),
        None => format!("{platform}\0{test}"),
    }
}

impl Attempts {
    /// The index of `store`'s sub-store, empty until [`Attempts::refresh`].
    pub fn new(store: &Path) -> Attempts {
        Attempts {
            dir: store.join(DIR),
            results: None,
            offset: 0,
            lines: 0,
            tests: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// Whether nothing is known of earlier attempts.
    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    /// Read what the sub-store gained since the last call (it may not
    /// exist yet). Lines that do not parse are skipped and counted in
    /// the returned number.
    pub fn refresh(&mut self) -> io::Result<u64> {
        if self.results.is_none() {
            self.results = store::find_results(&self.dir);
        }
        let Some((path, compression)) = self.results.clone() else {
            return Ok(0);
        };
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        if len < self.offset {
            // Rewritten (a repair): read again from the start.
            self.offset = 0;
            self.lines = 0;
            self.tests.clear();
            self.failed.clear();
        }
        if len == self.offset {
            return Ok(0);
        }
        let mut bad = 0u64;
        let mut seen = 0u64;
        // A plain file is read from where the last reading ended; a
        // compressed one again whole, past the lines already taken.
        let (from, skip) = match compression {
            Compression::None => (self.offset, 0),
            _ => (0, self.lines),
        };
        let dir = self.dir.clone();
        let back = store::read_lines_from::<io::Error>(&path, compression, from, |bytes| {
            seen += 1;
            if seen <= skip || bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            match std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| Line::parse(t).ok())
            {
                Some(line) => self.add(&dir, &line),
                None => bad += 1,
            }
            Ok(())
        })?;
        match compression {
            Compression::None => {
                self.offset = from + back.valid_len;
                self.lines += back.lines;
            }
            _ => {
                self.offset = len;
                self.lines = self.lines.max(back.lines);
            }
        }
        Ok(bad)
    }

    fn add(&mut self, dir: &Path, line: &Line) {
        let (base, n) = split_suffix(&line.test);
        let t = self
            .tests
            .entry(test_key(&line.platform, base))
            .or_default();
        t.runs = t.runs.max(n + 1);
        if matches!(
            Verdict::of(line.status_str()),
            Verdict::Pass | Verdict::Skip
        ) {
            return;
        }
        t.failed = true;
        // The test's output, else the result's first file (a log
        // `tmt-report-result -o LOG` uploaded with it), as for a failure.
        let file = line
            .files
            .iter()
            .find(|f| *f == "output.txt")
            .or_else(|| line.files.first());
        let output = file.map(|file| {
            let platform =
                files::normalize(&line.platform).unwrap_or_else(|| line.platform.replace('/', "_"));
            let test = files::normalize(&line.test).unwrap_or_else(|| line.test.replace('/', "_"));
            let mut p = dir.join("files").join(platform).join(test);
            if let Some(sub) = line.subtest.as_deref().and_then(files::normalize) {
                p.push(sub);
            }
            p.join(file)
        });
        self.failed
            .entry(result_key(&line.platform, base, line.subtest.as_deref()))
            .or_default()
            .push(Earlier {
                status: line.status.clone(),
                note: line.note.clone(),
                output,
            });
    }

    /// The earlier runs of `test` (without a ` (N)` suffix) on `platform`.
    pub fn test(&self, platform: &str, test: &str) -> Option<TestRuns> {
        if self.tests.is_empty() {
            return None;
        }
        self.tests.get(&test_key(platform, test)).copied()
    }

    /// What earlier attempts left for the final result of `test`
    /// (without a ` (N)` suffix) / `subtest` on `platform`, its failed
    /// results taken out of the index (a later result of the same name
    /// is another run's); `None` when the test ran once.
    pub fn take(&mut self, platform: &str, test: &str, subtest: Option<&str>) -> Option<Reruns> {
        let runs = self.test(platform, test)?;
        let failed = if runs.failed {
            self.failed
                .remove(&result_key(platform, test, subtest))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Some(Reruns {
            attempts: runs.runs + 1,
            failed: failed
                .into_iter()
                .map(|e| {
                    let tail = e.output_tail();
                    (e, tail)
                })
                .collect(),
        })
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// An earlier result with `status` and `note`, without output.
    pub(crate) fn earlier(status: &str, note: &str) -> Earlier {
        Earlier {
            status: Some(status.to_owned()),
            note: Some(note.to_owned()),
            output: None,
        }
    }

    #[test]
    fn the_index_reads_on_as_the_sub_store_grows() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Attempts::new(dir.path());
        // No attempts/ yet: nothing, and no error.
        assert_eq!(a.refresh().unwrap(), 0);
        assert!(a.is_empty());
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        let path = dir.path().join(DIR).join("results.jsonl");
        let mut file = std::fs::File::create(&path).unwrap();
        writeln!(file, r#"["p", "fail", "/t", null, [], "one"]"#).unwrap();
        // A line being written (no newline yet) waits for its end.
        write!(file, r#"["p", "pass", "/u", null, [], null]"#).unwrap();
        assert_eq!(a.refresh().unwrap(), 0);
        assert!(a.test("p", "/u").is_none());
        writeln!(file).unwrap();
        writeln!(file, r#"["p", "error", "/t (1)", "sub", [], "two"]"#).unwrap();
        writeln!(file, "not a result").unwrap();
        assert_eq!(a.refresh().unwrap(), 1);
        let u = a.test("p", "/u").unwrap();
        assert_eq!((u.runs, u.failed), (1, false));
        let t = a.take("p", "/t", None).unwrap();
        assert_eq!(t.attempts, 3);
        assert_eq!(t.failed.len(), 1);
        assert_eq!(t.failed[0].0, earlier("fail", "one"));
        assert!(t.flaky(Some("pass")) && t.flaky(Some("skip")) && !t.flaky(Some("fail")));
        // Used once: a later result of the same name gets the runs only.
        assert!(a.take("p", "/t", None).unwrap().failed.is_empty());
        let sub = a.take("p", "/t", Some("sub")).unwrap();
        assert_eq!(sub.failed[0].0, earlier("error", "two"));
        assert!(a.take("q", "/t", None).is_none());
    }
}
