//! `atex-aggregate summary DIR`: a store's totals and the results that did
//! not pass, for people, and the exit code its results call for.

use std::io::{self, Write};
use std::path::Path;

use atex_shared::cli::NoTests;
use atex_shared::exit;

use indexmap::IndexMap;

use crate::attempts::Attempts;
use crate::ingest::split_suffix;
use crate::record::Line;
use crate::report::{Totals, Verdict, is_timeout};
use crate::store;

/// How many results that did not pass are listed; the rest are counted.
pub const LISTED: usize = 50;

/// The longest note shown, in characters (a note can be a whole log).
const NOTE_CHARS: usize = 200;

/// Why a store could not be summarised.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is no results file.
    #[error("{0} holds no results store (no results.jsonl, .jsonl.gz or .jsonl.xz)")]
    NoStore(String),
    /// A line of the results file is not a result.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The results file.
        path: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// Reading failed.
    #[error("failed to read the store: {0}")]
    Io(#[from] io::Error),
}

/// What `summary` found in a store.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Totals per platform, in first-seen order.
    pub platforms: Vec<(String, Totals)>,
    /// The first [`LISTED`] results that did not pass (fail, error, warn,
    /// infra, an unknown status or none), in store order.
    pub not_passed: Vec<Line>,
    /// How many more did not pass.
    pub more: u64,
    /// Whether the results file has a part that could not be read (a
    /// cut-off last line or member, a damaged member): the summary counts
    /// what could.
    pub damaged: Option<store::ReadBack>,
    /// The flaky tests, in store order: every final result passed (or was
    /// skipped) and an earlier attempt's did not (the store's `attempts/`,
    /// as atex-orchestrate counts them).
    pub flaky: Vec<Flaky>,
}

/// A test that failed, then passed on a rerun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flaky {
    /// The platform.
    pub platform: String,
    /// The test.
    pub test: String,
    /// How many times it ran, the final attempt included.
    pub attempts: u32,
}

/// Whether a result with `status` did not pass: it decides a failing
/// exit code (a skip does not).
fn not_passed(status: Option<&str>) -> bool {
    !matches!(
        Verdict::of(status.unwrap_or("")),
        Verdict::Pass | Verdict::Skip
    )
}

/// Call `each` with every result line of the store in `dir`, in store
/// order (blank lines skipped; a crash's cut-off tail ignored, as the
/// returned [`store::ReadBack`] says).
fn for_each_line(
    dir: &Path,
    mut each: impl FnMut(Line) -> Result<(), Error>,
) -> Result<store::ReadBack, Error> {
    for_each_line_at(dir, |line, _| each(line))
}

/// [`for_each_line`], with where each line ends in an uncompressed
/// results file (the byte after its newline).
fn for_each_line_at(
    dir: &Path,
    mut each: impl FnMut(Line, u64) -> Result<(), Error>,
) -> Result<store::ReadBack, Error> {
    let (path, compression) =
        store::find_results(dir).ok_or_else(|| Error::NoStore(dir.display().to_string()))?;
    let mut n = 0u64;
    let mut end = 0u64;
    store::read_lines::<Error>(&path, compression, |bytes| {
        n += 1;
        end += bytes.len() as u64 + 1;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let bad = |message: String| Error::Line {
            path: path.display().to_string(),
            line: n,
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
        each(Line::parse(text).map_err(|e| bad(e.to_string()))?, end)
    })
}

/// Read the store in `dir`: totals per platform and the results that did
/// not pass; a crash's cut-off tail is ignored.
pub fn read(dir: &Path) -> Result<Summary, Error> {
    let mut summary = Summary::default();
    let mut attempts = Attempts::new(dir);
    // Lines of the sub-store that are not results only cost flaky marks.
    attempts.refresh()?;
    // Per test with failed earlier attempts: whether all its final
    // results passed, and its runs.
    let mut rerun: IndexMap<(String, String), (bool, u32)> = IndexMap::new();
    let back = for_each_line(dir, |line| {
        if !attempts.is_empty() {
            let (base, _) = split_suffix(&line.test);
            if let Some(runs) = attempts.test(&line.platform, base)
                && runs.failed
            {
                let passed = !not_passed(line.status.as_deref());
                let entry = rerun
                    .entry((line.platform.clone(), base.to_owned()))
                    .or_insert((true, runs.runs + 1));
                entry.0 &= passed;
            }
        }
        let platforms = &mut summary.platforms;
        let i = match platforms.iter().position(|(p, _)| *p == line.platform) {
            Some(i) => i,
            None => {
                platforms.push((line.platform.clone(), Totals::default()));
                platforms.len() - 1
            }
        };
        platforms[i].1.add(line.status_str(), line.duration);
        if is_timeout(line.status.as_deref(), line.note.as_deref()) {
            platforms[i].1.timeouts += 1;
        }
        if not_passed(line.status.as_deref()) {
            if summary.not_passed.len() < LISTED {
                summary.not_passed.push(line);
            } else {
                summary.more += 1;
            }
        }
        Ok(())
    })?;
    summary.damaged = back.damaged.then_some(back);
    summary.flaky = rerun
        .into_iter()
        .filter(|(_, (passed, _))| *passed)
        .map(|((platform, test), (_, attempts))| Flaky {
            platform,
            test,
            attempts,
        })
        .collect();
    Ok(summary)
}

/// A test of a store on one platform: `(platform, test)`, the test's name
/// without the ` (N)` of a run ingested again.
pub type TestKey = (String, String);

/// How one test stands in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// All its results (its own and its subtests') passed or were skipped.
    pub passed: bool,
    /// Its own result (the one without a subtest name) is there: the
    /// attempt that wrote it ended.
    pub finished: bool,
    /// Its own result is `infra`.
    pub infra: bool,
}

/// Every test of the store in `dir`, per platform, in first-seen order:
/// what `atex-orchestrate --rerun-failed` and `--resume` read.
pub fn stored_tests(dir: &Path) -> Result<IndexMap<TestKey, Stored>, Error> {
    let mut tests: IndexMap<TestKey, Stored> = IndexMap::new();
    for_each_line(dir, |line| {
        let own = line.subtest.is_none();
        let key = (line.platform, split_suffix(&line.test).0.to_owned());
        let stored = tests.entry(key).or_insert(Stored {
            passed: true,
            finished: false,
            infra: false,
        });
        stored.passed &= !not_passed(line.status.as_deref());
        stored.finished |= own;
        stored.infra |= own && line.status.as_deref() == Some("infra");
        Ok(())
    })?;
    Ok(tests)
}

/// Cut off the results of an attempt a crash interrupted: the lines after
/// the last result of a test's own (atex-orchestrate ingests an attempt's
/// results together, its own one last, so only the tail can hold them).
/// Returns the tests cut, whose stored files are removed too, so that each
/// runs again from the start into a store that never saw it. Only an
/// uncompressed results file is cut; a compressed one is left as it is.
pub fn cut_unfinished(dir: &Path) -> Result<Vec<TestKey>, Error> {
    let (path, compression) =
        store::find_results(dir).ok_or_else(|| Error::NoStore(dir.display().to_string()))?;
    if compression != store::Compression::None {
        return Ok(Vec::new());
    }
    let mut cut_at = 0u64;
    let mut tail: IndexMap<TestKey, ()> = IndexMap::new();
    for_each_line_at(dir, |line, end| {
        if line.subtest.is_none() {
            cut_at = end;
            tail.clear();
        } else {
            tail.insert((line.platform, split_suffix(&line.test).0.to_owned()), ());
        }
        Ok(())
    })?;
    if tail.is_empty() {
        return Ok(Vec::new());
    }
    store::trim_to(&path, cut_at)?;
    let cut: Vec<TestKey> = tail.into_keys().collect();
    for (platform, test) in &cut {
        match std::fs::remove_dir_all(crate::files::test_dir(dir, platform, test)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(cut)
}

/// Totals per platform, in first-seen order, of the store in `dir`; a
/// crash's cut-off tail is ignored.
pub fn totals(dir: &Path) -> Result<Vec<(String, Totals)>, Error> {
    Ok(read(dir)?.platforms)
}

fn status_name(status: &str) -> &str {
    if status.is_empty() {
        "(no status)"
    } else {
        status
    }
}

fn describe(t: &Totals) -> String {
    let parts: Vec<String> = t
        .statuses
        .iter()
        .map(|(s, n)| match (s.as_str(), t.timeouts) {
            ("infra", timeouts) if timeouts > 0 => {
                format!("{n} infra ({timeouts} timed out)")
            }
            _ => format!("{n} {}", status_name(s)),
        })
        .collect();
    format!(
        "{} result{}: {}",
        t.tests,
        if t.tests == 1 { "" } else { "s" },
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    )
}

/// A note on one line: line breaks and other controls become spaces, and
/// a long note is cut.
fn one_line(note: &str) -> String {
    let mut out = String::with_capacity(note.len().min(NOTE_CHARS + 3));
    for (i, c) in note.trim().chars().enumerate() {
        if i == NOTE_CHARS {
            out.push_str("...");
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// How a result's status is shown: `timeout` for an `infra` result of a
/// test stopped at its `duration`.
fn label(line: &Line) -> &str {
    if is_timeout(line.status.as_deref(), line.note.as_deref()) {
        "timeout"
    } else {
        status_name(line.status_str())
    }
}

/// The listing of the results that did not pass: a heading, one line each
/// (status, test/subtest, the platform when the store has several, the
/// note), and how many more.
fn not_passed_text(summary: &Summary) -> String {
    let mut text = String::new();
    if summary.not_passed.is_empty() {
        return text;
    }
    let total = summary.not_passed.len() as u64 + summary.more;
    text.push_str(&format!("did not pass ({total}):\n"));
    let width = summary
        .not_passed
        .iter()
        .map(|l| label(l).chars().count())
        .max()
        .unwrap_or(0);
    let platforms = summary.platforms.len() > 1;
    for line in &summary.not_passed {
        let mut row = format!("  {:<width$}  {}", label(line), line.test);
        if let Some(sub) = &line.subtest {
            row.push('/');
            row.push_str(sub);
        }
        if platforms {
            row.push_str(&format!(" (on {})", line.platform));
        }
        if let Some(note) = line.note.as_deref().map(one_line)
            && !note.is_empty()
        {
            row.push_str(": ");
            row.push_str(&note);
        }
        text.push_str(row.trim_end());
        text.push('\n');
    }
    if summary.more > 0 {
        text.push_str(&format!(
            "  ... and {} more (index.html in the store lists them all)\n",
            summary.more
        ));
    }
    text
}

/// The listing of the flaky tests: a heading with their number, one line
/// each (test, the platform when the store has several, its attempts),
/// and how many more; nothing when there is none.
fn flaky_text(summary: &Summary) -> String {
    let mut text = String::new();
    if summary.flaky.is_empty() {
        return text;
    }
    text.push_str(&format!(
        "flaky ({}): failed, then passed on a rerun\n",
        summary.flaky.len()
    ));
    let platforms = summary.platforms.len() > 1;
    for f in summary.flaky.iter().take(LISTED) {
        text.push_str("  ");
        text.push_str(&f.test);
        if platforms {
            text.push_str(&format!(" (on {})", f.platform));
        }
        text.push_str(&format!(": {} attempts\n", f.attempts));
    }
    if summary.flaky.len() > LISTED {
        text.push_str(&format!(
            "  ... and {} more (index.html in the store marks them all)\n",
            summary.flaky.len() - LISTED
        ));
    }
    text
}

/// Print the totals of the store in `dir` and the results that did not
/// pass on `out`; returns the exit code (0 all passed, 1 some failed, 3
/// some infra; a store without results as `no_tests` says, 4 by default).
pub fn run(dir: &Path, no_tests: NoTests, out: &mut dyn Write) -> Result<u8, Error> {
    let summary = read(dir)?;
    if let Some(back) = &summary.damaged {
        eprintln!(
            "atex-aggregate: warning: the results file in {} is damaged ({} of its {} bytes unreadable); counted the {} line{} it holds (--append repairs it)",
            dir.display(),
            back.unreadable,
            back.file_len,
            back.lines,
            if back.lines == 1 { "" } else { "s" }
        );
    }
    let mut all = Totals::default();
    let mut text = String::new();
    for (name, t) in &summary.platforms {
        all.merge(t);
        text.push_str(&format!(
            "{}: {}\n",
            if name.is_empty() {
                "(no platform)"
            } else {
                name
            },
            describe(t)
        ));
    }
    if summary.platforms.len() != 1 {
        text.push_str(&format!("all: {}\n", describe(&all)));
    }
    text.push_str(&flaky_text(&summary));
    text.push_str(&not_passed_text(&summary));
    let code = if all.tests == 0 {
        // Said on stderr by the choice, before the verdict on stdout.
        let what = format!("the store in {} holds no results", dir.display());
        no_tests.report("atex-aggregate", &what)
    } else {
        all.exit_code()
    };
    let verdict = match code {
        _ if all.tests == 0 => "no results",
        exit::SUCCESS => "passed",
        exit::TEST_FAILED => "some failed",
        _ => "infrastructure failures",
    };
    text.push_str(&format!("verdict: {verdict} (exit {code})\n"));
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(code)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    fn line(platform: &str, status: Option<&str>, test: &str, note: Option<&str>) -> Line {
        Line {
            platform: platform.to_owned(),
            status: status.map(str::to_owned),
            test: test.to_owned(),
            note: note.map(str::to_owned),
            ..Line::default()
        }
    }

    #[test]
    fn an_interrupted_attempt_is_cut_off_and_finished_tests_kept() {
        let dir = tempfile::tempdir().unwrap();
        let finished = concat!(
            "[\"p\",\"pass\",\"/a\",null,[],null]\n",
            "[\"p\",\"fail\",\"/b\",\"sub\",[],null]\n",
            "[\"p\",\"pass\",\"/b\",null,[],null]\n",
            "[\"q\",\"infra\",\"/a\",null,[],null]\n",
        );
        let tail = "[\"p\",\"pass\",\"/c\",\"sub\",[\"log\"],null]\n[\"p\",\"pa";
        std::fs::write(
            dir.path().join("results.jsonl"),
            format!("{finished}{tail}"),
        )
        .unwrap();
        let files = crate::files::test_dir(dir.path(), "p", "/c");
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(files.join("log"), "half").unwrap();
        let tests = stored_tests(dir.path()).unwrap();
        let c = tests[&("p".to_owned(), "/c".to_owned())];
        assert!(!c.finished, "{c:?}");
        let cut = cut_unfinished(dir.path()).unwrap();
        assert_eq!(cut, vec![("p".to_owned(), "/c".to_owned())]);
        assert!(!files.exists(), "the cut test's files stay");
        let kept = std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap();
        assert_eq!(kept, finished);
        let tests = stored_tests(dir.path()).unwrap();
        let key = |p: &str, t: &str| (p.to_owned(), t.to_owned());
        assert_eq!(tests.len(), 3);
        let b = tests[&key("p", "/b")];
        assert!(b.finished && !b.passed && !b.infra, "{b:?}");
        let a = tests[&key("q", "/a")];
        assert!(a.finished && !a.passed && a.infra, "{a:?}");
        assert!(tests[&key("p", "/a")].passed);
        // Nothing unfinished: nothing cut.
        assert!(cut_unfinished(dir.path()).unwrap().is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap(),
            finished
        );
    }

    #[test]
    fn listing_is_one_line_per_result() {
        let mut s = Summary {
            platforms: vec![("p".into(), Totals::default())],
            not_passed: vec![
                line("p", Some("fail"), "/a", Some("bad\nworse")),
                line("p", None, "/b", None),
            ],
            more: 0,
            damaged: None,
            flaky: Vec::new(),
        };
        s.not_passed[1].subtest = Some("sub".into());
        assert_eq!(
            not_passed_text(&s),
            "did not pass (2):\n  fail         /a: bad worse\n  (no status)  /b/sub\n"
        );
        s.platforms.push(("q".into(), Totals::default()));
        s.more = 7;
        let text = not_passed_text(&s);
        assert!(text.starts_with("did not pass (9):\n"), "{text}");
        assert!(text.contains("/a (on p): bad worse\n"), "{text}");
        assert!(text.ends_with("  ... and 7 more (index.html in the store lists them all)\n"));
    }

    #[test]
    fn long_notes_are_cut() {
        let note = "x".repeat(500);
        assert_eq!(one_line(&note).chars().count(), NOTE_CHARS + 3);
        assert!(not_passed(None) && not_passed(Some("weird")) && !not_passed(Some("skip")));
        let _ = totals(Path::new("/nonexistent")).unwrap_err();
    }
}
