//! The command line of `atex-exec`: arguments, the validated [`Config`]
//! (everything read and checked before anything starts), the run, signals
//! and the exit code.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use atex_shared::cli::NoTests;
use atex_shared::exit;
use atex_shared::jsonl;
use atex_shared::records::{Connection, Machine, Test, TestResult};
use clap::Parser;

use crate::artifacts;
use crate::control::{self, Limits};
use crate::reporter::{ResultView, Sink};
use crate::session::{
    Interrupt, OpenError, Progress, ResultSink, Session, SessionConfig, Summary, report_not_run,
};

/// Run test records on one machine and stream result records, storing artifacts.
///
/// Read Test records (line-JSON) on stdin, run each test on one machine (a
/// Machine record) with the ATEX test-control protocol, and stream Result
/// records on stdout as they happen; test output and uploaded files go under
/// the artifacts directory, one directory per test.
///
/// Progress goes to stderr, one line when a test starts and one when it
/// ends (status, duration); `--quiet` keeps only warnings and errors.
///
/// Exit code: 0 all passed, 1 some test failed (fail, error, warn, or a
/// result without a status), 3 some test was infra, 2 bad input (nothing
/// is started), 4 no test records on stdin (see --no-tests), 130/143
/// interrupted by SIGINT/SIGTERM (the running test is stopped and reported
/// infra, the tests after it are not run).
///
/// The artifacts directory must be empty or missing: each test's directory
/// holds one run only (use one directory per run). Test records are all
/// checked before anything starts: a name is `/`-separated and absolute
/// without `.`, `..` or empty parts, a path stays inside its tree, and no
/// test comes twice (run each plan on its own atex-exec then).
///
/// Limits: a control line is at most 4096 bytes (as ATEX), a `result`'s
/// JSON at most --max-result-json, an uploaded file at most
/// --max-file-size, the partial results a test holds at most
/// --max-held-partial; over a limit, the test is stopped and recorded as
/// infra. The test's output and files are written as they come: a failed
/// write (a full disk) stops the test at once, recorded as infra.
///
/// Examples:
///     atex-discover tests --root . --plan /plans/ci \
///       | atex-exec --machine local --artifacts out/
/// With a Machine record from atex-provision, in a file, and a platform name:
///     atex-provision ssh root@vm1 -i ~/.ssh/id_ed25519 > machines.jsonl
///     atex-discover tests --root . \
///       | atex-exec --machine @machines.jsonl --artifacts out/ --platform fedora-41@x86_64
/// With the record itself:
///     atex-discover tests --root . \
///       | atex-exec --machine '{"id":"local","provisioner":"local","connection":{"kind":"local"}}'
#[derive(Debug, Parser)]
#[command(name = "atex-exec", version, verbatim_doc_comment)]
pub struct Cli {
    /// The machine to run on: a Machine record (JSON), `local` (this
    /// machine), or @FILE (a file holding one Machine record, such as a
    /// line of atex-provision's output).
    #[arg(long, value_name = "JSON|local|@FILE")]
    pub machine: String,
    /// Where test files are stored: one directory per test, named after it.
    /// It must be empty or missing.
    #[arg(long, value_name = "DIR", default_value = "artifacts")]
    pub artifacts: PathBuf,
    /// The platform results are reported for [default: the machine's
    /// platform, else its provisioner, else its id].
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,
    /// What zero Test records on stdin is: `fail` (exit 4), `warn` (exit 0
    /// with a warning) or `pass` (exit 0).
    #[arg(
        long,
        value_enum,
        value_name = "WHAT",
        default_value_t,
        hide_possible_values = true
    )]
    pub no_tests: NoTests,
    /// No progress lines on stderr (warnings and errors still show).
    #[arg(short, long)]
    pub quiet: bool,
    /// The longest JSON one `result` may announce, in bytes [default:
    /// 4 MiB].
    #[arg(long, value_name = "BYTES", default_value_t = control::MAX_RESULT_JSON, hide_default_value = true)]
    pub max_result_json: usize,
    /// The longest file one `result` may announce, in bytes [default:
    /// 64 GiB].
    #[arg(long, value_name = "BYTES", default_value_t = control::MAX_FILE_LENGTH, hide_default_value = true)]
    pub max_file_size: u64,
    /// How many bytes of memory the partial results one test holds back
    /// may take, estimated [default: 64 MiB].
    #[arg(long, value_name = "BYTES", default_value_t = control::MAX_HELD_PARTIAL, hide_default_value = true)]
    pub max_held_partial: usize,
}

/// A bad input: printed as `atex-exec: error: ...`, exit 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The Machine record is not valid (`SOURCE:LINE:COL: message`).
    #[error("{source_name}:{line}:{column}: {message}")]
    Machine {
        /// `--machine` or the file name.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The machine file cannot be read.
    #[error("failed to read {path}: {source}")]
    MachineFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `--machine` is neither JSON nor one of the shorthands.
    #[error(
        "--machine {given:?}: a Machine record (JSON) is expected, or `local` \
         (this machine), or @FILE (a file holding one Machine record, e.g. a line \
         of `atex-provision ... > machines.jsonl`)"
    )]
    NotAMachine {
        /// What was given.
        given: String,
    },
    /// The artifacts directory holds something already.
    #[error(
        "artifacts directory '{path}' is not empty (an earlier run?); remove it or choose another"
    )]
    ArtifactsNotEmpty {
        /// The directory as given.
        path: String,
    },
    /// The artifacts directory cannot be used (not a directory, unreadable).
    #[error("cannot use artifacts directory '{path}': {source}")]
    Artifacts {
        /// The directory as given.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A stdin line is not a Test record.
    #[error(transparent)]
    Input(#[from] jsonl::ReadError),
    /// A Test record cannot be run as it is (`<stdin>:LINE: message`).
    #[error("<stdin>:{line}: {message}")]
    Test {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The session's settings.
    pub session: SessionConfig,
    /// The tests, in input order.
    pub tests: Vec<Test>,
    /// What an empty input is.
    pub no_tests: NoTests,
    /// No progress lines on stderr.
    pub quiet: bool,
}

impl Config {
    /// Validate `cli` and read every Test record from `input` (named
    /// `<stdin>` in errors); nothing is started. The artifacts directory is
    /// checked before the input is read.
    pub fn new(cli: Cli, input: impl BufRead) -> Result<Config, ConfigError> {
        let machine = parse_machine(&cli.machine)?;
        check_artifacts(&cli.artifacts)?;
        let mut reader = jsonl::Reader::<_, Test>::new(input, "<stdin>");
        let mut tests = Vec::new();
        let mut lines = Vec::new();
        while let Some(test) = reader.next() {
            tests.push(test?);
            lines.push(reader.line());
        }
        check_tests(&tests, &lines)?;
        let platform = platform(cli.platform, &machine);
        Ok(Config {
            session: SessionConfig {
                machine,
                platform,
                artifacts: absolute(cli.artifacts),
                limits: Limits {
                    result_json: cli.max_result_json,
                    file: cli.max_file_size,
                    held_partial: cli.max_held_partial,
                },
            },
            tests,
            no_tests: cli.no_tests,
            quiet: cli.quiet,
        })
    }
}

/// Check every Test record before anything starts (`lines[i]` is the
/// stdin line of `tests[i]`): names that cannot be an artifacts directory
/// of their own, paths that leave their tree, a test given twice.
fn check_tests(tests: &[Test], lines: &[usize]) -> Result<(), ConfigError> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (test, &line) in tests.iter().zip(lines) {
        let bad = |message: String| ConfigError::Test { line, message };
        check_name(&test.name).map_err(|why| bad(format!("test name {:?} {why}", test.name)))?;
        check_path(test)
            .map_err(|why| bad(format!("test {}: path {:?} {why}", test.name, test.path)))?;
        if let Some(first) = seen.insert(&test.name, line) {
            return Err(bad(format!(
                "test {} was given on line {first} already; its artifacts directory holds \
                 one run (two plans selecting it? run each plan on its own atex-exec)",
                test.name
            )));
        }
    }
    // A test named after a test's own entries (`/a/files` next to `/a`)
    // would share its directory.
    for (test, &line) in tests.iter().zip(lines) {
        if let Some((parent, last)) = test.name.rsplit_once('/')
            && matches!(last, artifacts::FILES_DIR | artifacts::TESTOUT_TEMP)
            && let Some(&other) = seen.get(parent)
        {
            return Err(ConfigError::Test {
                line,
                message: format!(
                    "test {} would be stored in the artifacts directory of test {parent} \
                     (line {other})",
                    test.name
                ),
            });
        }
    }
    Ok(())
}

/// A test name names its artifacts directory: `/` then parts that are not
/// empty, `.` or `..`, without NUL.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.contains('\0') {
        return Err("contains a NUL byte");
    }
    let Some(rest) = name.strip_prefix('/') else {
        return Err("does not start with '/'");
    };
    if rest.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err("has an empty, '.' or '..' part (a test name is like /tests/basic)");
    }
    Ok(())
}

/// A test's path is a directory inside its tree: relative, not climbing
/// out, and (when it exists here) not a symbolic link out of the tree.
fn check_path(test: &Test) -> Result<(), String> {
    let path = &test.path;
    if path.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if path.starts_with('/') {
        return Err("is absolute (it is relative to the tree's root)".into());
    }
    if artifacts::normalize(path.as_bytes()).is_err() {
        return Err(format!("leaves the tree {}", test.root.display()));
    }
    let dir = test.root.join(path);
    if let (Ok(real), Ok(root)) = (dir.canonicalize(), test.root.canonicalize())
        && !real.starts_with(&root)
    {
        return Err(format!(
            "leaves the tree {} through a symbolic link (to {})",
            test.root.display(),
            real.display()
        ));
    }
    Ok(())
}

/// The platform results carry: `--platform`, else the machine's, else its
/// provisioner, else its id; never empty, because an empty platform merges
/// every machine's results under one nameless platform in a store.
fn platform(given: Option<String>, machine: &Machine) -> String {
    [
        given.as_deref(),
        Some(machine.platform.as_str()),
        Some(machine.provisioner.as_str()),
        Some(machine.id.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|p| !p.is_empty())
    .unwrap_or("unknown")
    .to_owned()
}

/// Refuse an artifacts directory that holds anything: a test's directory
/// must hold that run only (an earlier run's uploaded files would be
/// appended to, its outputs would block the new links). Missing is fine.
fn check_artifacts(dir: &Path) -> Result<(), ConfigError> {
    let path = || dir.display().to_string();
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(Ok(_)) => Err(ConfigError::ArtifactsNotEmpty { path: path() }),
            Some(Err(source)) => Err(ConfigError::Artifacts {
                path: path(),
                source,
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ConfigError::Artifacts {
            path: path(),
            source,
        }),
    }
}

/// Results are reported with absolute artifact paths.
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// The Machine record `--machine` names: `local`, @FILE or JSON.
fn parse_machine(arg: &str) -> Result<Machine, ConfigError> {
    if arg == "local" {
        // As atex-provision local makes it, with the id people would write.
        return Ok(Machine {
            context: Default::default(),
            id: "local".to_owned(),
            provisioner: "local".to_owned(),
            connection: Connection::Local,
            platform: String::new(),
            release: serde_json::Value::Null,
        });
    }
    let (source_name, text) = match arg.strip_prefix('@') {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::MachineFile {
                    path: path.to_owned(),
                    source,
                })?;
            (path.to_owned(), text)
        }
        // Not JSON at all (a typo, a host name, an empty `$(...)`): say
        // what is expected rather than where the JSON broke.
        None if !arg.trim_start().starts_with('{') => {
            return Err(ConfigError::NotAMachine {
                given: arg.to_owned(),
            });
        }
        None => ("--machine".to_owned(), arg.to_owned()),
    };
    let location = |offset: usize| {
        let before = text.get(..offset).unwrap_or(&text);
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    };
    let mut records = serde_json::Deserializer::from_str(&text).into_iter::<Machine>();
    let machine = match records.next() {
        Some(Ok(machine)) => machine,
        Some(Err(e)) => {
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message.get(..i).unwrap_or(&message).to_owned(),
                None => message,
            };
            return Err(ConfigError::Machine {
                source_name,
                line: e.line().max(1),
                column: e.column().max(1),
                message,
            });
        }
        None => {
            let (line, column) = location(text.len());
            return Err(ConfigError::Machine {
                source_name,
                line,
                column,
                message: "no Machine record".to_owned(),
            });
        }
    };
    // A file of several records (all of atex-provision's output): which
    // machine was meant is not ours to guess.
    let rest = text.get(records.byte_offset()..).unwrap_or_default();
    if let Some(extra) = rest.find(|c: char| !c.is_whitespace()) {
        let (line, column) = location(records.byte_offset() + extra);
        return Err(ConfigError::Machine {
            source_name,
            line,
            column,
            message: "more than one Machine record; give one (e.g. `head -n1 FILE`)".to_owned(),
        });
    }
    // What ssh would misread (a host starting with `-` is an option to
    // it), an option value with a line break, an identity file that
    // cannot be read: refused here, before anything starts.
    if let Err(e) = atex_shared::connection::validate(&machine.connection) {
        let start = text.find(|c: char| !c.is_whitespace()).unwrap_or(0);
        let (line, column) = location(start);
        return Err(ConfigError::Machine {
            source_name,
            line,
            column,
            message: e.to_string(),
        });
    }
    Ok(machine)
}

/// Writes results on stdout; warnings and progress go to stderr.
struct Stdout<W: Write> {
    writer: jsonl::Writer<W>,
    /// No progress lines.
    quiet: bool,
    /// The statuses of the results written, the interrupt.
    summary: Summary,
    /// The 1-based position of the test being run, for its started line.
    index: usize,
    /// How many tests were read.
    total: usize,
}

impl<W: Write> Stdout<W> {
    fn write<T: serde::Serialize>(&mut self, result: &T) {
        match self.writer.write(result) {
            Ok(()) => {}
            // Quietly: the reader went away; no further test starts.
            Err(e) if e.is_broken_pipe() => {}
            Err(e) => eprintln!("atex-exec: warning: failed to write a result: {e}"),
        }
    }
}

impl<W: Write> Sink for Stdout<W> {
    fn result(&mut self, result: TestResult) {
        self.summary.count(result.status.as_deref());
        self.write(&result);
    }

    fn result_view(&mut self, result: ResultView<'_>) {
        self.summary.count(result.status);
        match self.writer.write_with(|buf| result.write_json(buf)) {
            Ok(()) => {}
            Err(e) if e.is_broken_pipe() => {}
            Err(e) => eprintln!("atex-exec: warning: failed to write a result: {e}"),
        }
    }

    fn warning(&mut self, message: String) {
        eprintln!("atex-exec: warning: {message}");
    }

    fn flush(&mut self) {
        match self.writer.flush() {
            Ok(()) => {}
            Err(e) if e.is_broken_pipe() => {}
            Err(e) => eprintln!("atex-exec: warning: failed to write results: {e}"),
        }
    }
}

impl<W: Write> ResultSink for Stdout<W> {
    fn is_closed(&self) -> bool {
        self.writer.is_closed()
    }

    fn progress(&mut self, event: Progress<'_>) {
        if let Progress::NotRun { .. } = event {
            // An error, not progress: shown even with --quiet.
        } else if self.quiet {
            return;
        }
        eprintln!("{}", progress_line(&event, self.index, self.total));
    }
}

/// The stderr line of a progress event, e.g. `atex-exec: [3/10] /tests/foo
/// started` (`index` of `total`, for [`Progress::Started`] only) or
/// `atex-exec: /tests/foo: fail (1.2 s)`.
pub fn progress_line(event: &Progress<'_>, index: usize, total: usize) -> String {
    match *event {
        Progress::Started { test } => {
            format!("atex-exec: [{index}/{total}] {test} started")
        }
        Progress::Ended {
            test,
            status,
            note,
            duration,
            results,
            not_passed,
        } => {
            let mut line = format!(
                "atex-exec: {test}: {} ({:.1} s",
                status.unwrap_or("no status"),
                duration.as_secs_f64()
            );
            if results > 1 {
                line.push_str(&format!(", {results} results"));
                if not_passed > 0 {
                    line.push_str(&format!(", {not_passed} not passed"));
                }
            }
            line.push(')');
            // Why it did not pass, when the result says (one line of it).
            if !matches!(status, Some("pass" | "info" | "skip"))
                && let Some(note) = note.and_then(|n| n.lines().next())
                && !note.is_empty()
            {
                let cut: String = note.chars().take(200).collect();
                line.push_str(": ");
                line.push_str(&cut);
            }
            line
        }
        Progress::NotRun { tests, why } => format!(
            "atex-exec: error: {why}: {tests} test{} recorded as infra without running",
            if tests == 1 { "" } else { "s" }
        ),
    }
}

/// The one line an interrupted run ends with, saying what was done.
pub fn interrupted_line(signal: &str, summary: &Summary) -> String {
    let stopped = match &summary.stopped {
        Some(test) => format!("test {test} stopped and recorded as infra"),
        None => "no test was running".to_owned(),
    };
    let n = summary.not_run;
    let cleaned = if summary.cleaned_up {
        "; cleaned up"
    } else {
        ""
    };
    format!(
        "atex-exec: interrupted ({signal}): {stopped}, {n} test{} not run{cleaned}",
        if n == 1 { "" } else { "s" }
    )
}

/// Run a validated configuration; returns the exit code.
pub fn run(config: Config) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("atex-exec: error: failed to start the async runtime: {e}");
            return exit::INFRA;
        }
    };
    let mut out = Stdout {
        // Batched: one test may report a million results; the run loop
        // flushes after every chunk of the control stream it handled.
        writer: jsonl::Writer::batched(io::stdout()),
        quiet: config.quiet,
        summary: Summary::default(),
        index: 0,
        total: config.tests.len(),
    };
    runtime.block_on(run_tests(config.session, config.tests, &mut out));
    // The interrupted test's record is out before the line that says so.
    out.flush();
    let summary = &out.summary;
    match summary.interrupted.as_deref() {
        Some(signal) => {
            eprintln!("{}", interrupted_line(signal, summary));
            if signal == "SIGTERM" {
                exit::SIGTERM
            } else {
                exit::SIGINT
            }
        }
        None => summary.exit_code(),
    }
}

/// Run `tests` on one [`Session`], one after the other: grouped by plan
/// (name and tree root) in the order each plan first appears, in input
/// order within a plan, each plan finished after its last test. Until done
/// or SIGINT/SIGTERM; what happened goes to `out.summary`.
async fn run_tests<W: Write>(config: SessionConfig, tests: Vec<Test>, out: &mut Stdout<W>) {
    let total = tests.len();
    let mut interrupt: Interrupt<'static> =
        Box::pin(async { atex_shared::cli::interrupted().await.name().to_owned() });
    let mut plans: indexmap::IndexMap<(&str, &Path), Vec<&Test>> = indexmap::IndexMap::new();
    for test in &tests {
        let key = (test.plan.name.as_str(), test.root.as_path());
        plans.entry(key).or_default().push(test);
    }
    let unreachable = |note: &str| {
        format!(
            "machine '{}' is unreachable ({})",
            config.machine.id,
            note.lines().next().unwrap_or_default()
        )
    };
    let mut session = match Session::open(config.clone(), &mut interrupt).await {
        Ok(session) => session,
        Err(OpenError::Interrupted(message)) => {
            out.summary.interrupted = Some(message);
            out.summary.not_run = total;
            return;
        }
        Err(e) => {
            // Every test is reported infra without running.
            let note = e.to_string();
            out.progress(Progress::NotRun {
                tests: total,
                why: &unreachable(&note),
            });
            for test in plans.values().flatten() {
                if out.is_closed() {
                    break;
                }
                report_not_run(&config, test, 0, &note, out);
            }
            return;
        }
    };
    // Tests reported so far (run or not), and whether the machine's loss
    // was told.
    let mut done = 0;
    let mut lost_told = false;
    'plans: for tests in plans.values() {
        // A plan that starts on a lost machine is not set up: its tests
        // and the later plans' are reported without running (the tests of
        // a plan set up before are still tried).
        if let Some(lost) = session.lost()
            && !out.is_closed()
            && !std::mem::replace(&mut lost_told, true)
        {
            let why = unreachable(lost);
            out.progress(Progress::NotRun {
                tests: total - done,
                why: &why,
            });
        }
        for &test in tests {
            if out.is_closed() {
                break 'plans;
            }
            out.index = done + 1;
            let outcome = session.run_test(test, 0, out, &mut interrupt).await;
            if let Some(why) = &outcome.prepare_failed {
                out.progress(Progress::NotRun {
                    tests: tests.len(),
                    why,
                });
            }
            if outcome.ended {
                out.progress(Progress::Ended {
                    test: &test.name,
                    status: outcome.status.as_deref(),
                    note: outcome.note.as_deref(),
                    duration: outcome.duration,
                    results: outcome.results,
                    not_passed: outcome.not_passed,
                });
            }
            if let Some(message) = outcome.interrupted {
                out.summary.interrupted = Some(message);
                if outcome.stopped {
                    out.summary.stopped = Some(test.name.clone());
                }
                out.summary.not_run = total - done - usize::from(outcome.reported);
                break 'plans;
            }
            done += 1;
        }
        if let Some(&last) = tests.last()
            && let Err(message) = session.finish_plan(last, out, &mut interrupt).await
        {
            out.summary.interrupted = Some(message);
            out.summary.not_run = total - done;
            break;
        }
    }
    let closed = session.close(out, &mut interrupt).await;
    if let Some(message) = closed.interrupted {
        out.summary.interrupted = Some(message);
        out.summary.not_run = total - done;
    }
    out.summary.cleaned_up = closed.cleaned_up;
}

/// The process entry point.
pub fn main() -> ExitCode {
    let cli: Cli = match atex_shared::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let config = match Config::new(cli, io::stdin().lock()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("atex-exec: error: {e}");
            return ExitCode::from(exit::INVALID);
        }
    };
    if config.tests.is_empty() {
        // Nothing is connected or set up for an empty input.
        let what = "no test records on stdin (did atex-discover select no test?)";
        return ExitCode::from(config.no_tests.report("atex-exec", what));
    }
    ExitCode::from(run(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(machine: &str) -> Cli {
        Cli::try_parse_from(["atex-exec", "--machine", machine]).expect("arguments")
    }

    const LOCAL: &str = r#"{"id":"local","provisioner":"local","connection":{"kind":"local"}}"#;

    #[test]
    fn machine_errors_have_a_location() {
        let err = Config::new(cli("{\"id\": 1}"), &b""[..]).expect_err("bad machine");
        let text = err.to_string();
        assert!(text.starts_with("--machine:1:"), "{text}");
        assert!(!text.contains(" at line "), "{text}");
    }

    #[test]
    fn stdin_errors_have_a_location() {
        let input = b"\n{\"nope\": 1}\n";
        let err = Config::new(cli(LOCAL), &input[..]).expect_err("bad stdin");
        assert!(err.to_string().starts_with("<stdin>:2:"), "{err}");
    }

    #[test]
    fn machine_shorthands() {
        let local = parse_machine("local").expect("local");
        assert_eq!(
            (local.id.as_str(), local.connection),
            ("local", Connection::Local)
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let one = tmp.path().join("one.json");
        std::fs::write(&one, format!("{LOCAL}\n")).expect("write");
        let machine = parse_machine(&format!("@{}", one.display())).expect("@FILE");
        assert_eq!(machine.id, "local");
        // atex-provision's output with two machines: which one is meant?
        let two = tmp.path().join("two.jsonl");
        std::fs::write(&two, format!("{LOCAL}\n{LOCAL}\n")).expect("write");
        let err = parse_machine(&format!("@{}", two.display())).expect_err("two");
        let text = err.to_string();
        assert!(text.contains("two.jsonl:2:1: more than one"), "{text}");
        for bad in ["", "localhost", "vm1.example.com", "@"] {
            let err = parse_machine(bad).expect_err("not a machine");
            assert!(!matches!(err, ConfigError::Machine { .. }), "{bad}: {err}");
        }
        let err = parse_machine("lcoal").expect_err("typo").to_string();
        assert!(
            err.contains("Machine record (JSON) is expected") && err.contains("`local`"),
            "{err}"
        );
    }

    #[test]
    fn platform_is_never_empty() {
        let mut machine = parse_machine(LOCAL).expect("machine");
        assert_eq!(platform(None, &machine), "local");
        assert_eq!(platform(Some(String::new()), &machine), "local");
        assert_eq!(platform(Some("f41".into()), &machine), "f41");
        machine.provisioner.clear();
        machine.id = "vm1".into();
        assert_eq!(platform(None, &machine), "vm1");
        machine.platform = "fedora-41@x86_64".into();
        assert_eq!(platform(None, &machine), "fedora-41@x86_64");
    }

    #[test]
    fn artifacts_must_be_empty_or_missing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(check_artifacts(&tmp.path().join("missing")).is_ok());
        assert!(check_artifacts(tmp.path()).is_ok());
        std::fs::create_dir(tmp.path().join("tests")).expect("mkdir");
        let err = check_artifacts(tmp.path()).expect_err("not empty");
        assert!(
            err.to_string()
                .ends_with("is not empty (an earlier run?); remove it or choose another"),
            "{err}"
        );
        let file = tmp.path().join("tests/file");
        std::fs::write(&file, "").expect("write");
        assert!(matches!(
            check_artifacts(&file),
            Err(ConfigError::Artifacts { .. })
        ));
    }

    #[test]
    fn progress_lines() {
        let line = progress_line(&Progress::Started { test: "/tests/foo" }, 3, 10);
        assert_eq!(line, "atex-exec: [3/10] /tests/foo started");
        let ended = |status, results, not_passed| {
            progress_line(
                &Progress::Ended {
                    test: "/t",
                    status,
                    note: Some("TestAbortedError(test duration timeout reached)\nmore"),
                    duration: std::time::Duration::from_millis(1234),
                    results,
                    not_passed,
                },
                0,
                0,
            )
        };
        assert_eq!(ended(Some("pass"), 1, 0), "atex-exec: /t: pass (1.2 s)");
        assert_eq!(
            ended(Some("infra"), 1, 1),
            "atex-exec: /t: infra (1.2 s): TestAbortedError(test duration timeout reached)"
        );
        assert!(
            ended(None, 3, 2)
                .starts_with("atex-exec: /t: no status (1.2 s, 3 results, 2 not passed): ")
        );
        let mut summary = Summary {
            stopped: Some("/x".into()),
            not_run: 3,
            cleaned_up: true,
            ..Summary::default()
        };
        assert_eq!(
            interrupted_line("SIGINT", &summary),
            "atex-exec: interrupted (SIGINT): test /x stopped and recorded as infra, 3 tests not run; cleaned up"
        );
        summary.stopped = None;
        summary.not_run = 1;
        summary.cleaned_up = false;
        assert_eq!(
            interrupted_line("SIGTERM", &summary),
            "atex-exec: interrupted (SIGTERM): no test was running, 1 test not run"
        );
    }

    #[test]
    fn test_records_are_checked_with_their_line() {
        let record = |name: &str, path: &str| {
            serde_json::json!({"name": name, "root": "/nonexistent", "path": path, "test": "true"})
                .to_string()
        };
        let check = |lines: &[String]| {
            let input = lines.join("\n\n");
            Config::new(cli(LOCAL), input.as_bytes()).map(|c| c.tests.len())
        };
        let good = record("/a", "a");
        assert_eq!(check(&[good.clone(), record("/a/b", "")]).ok(), Some(2));
        for (bad, message) in [
            (
                record("", "a"),
                "<stdin>:3: test name \"\" does not start with '/'",
            ),
            (record("/", "a"), "<stdin>:3: test name \"/\" has an empty"),
            (
                record("/x/../a", "a"),
                "<stdin>:3: test name \"/x/../a\" has an empty",
            ),
            (
                record("/x\0", "a"),
                "<stdin>:3: test name \"/x\\0\" contains a NUL byte",
            ),
            (
                record("/x", "../../../../etc"),
                "<stdin>:3: test /x: path \"../../../../etc\" leaves the tree",
            ),
            (
                record("/x", "/etc"),
                "<stdin>:3: test /x: path \"/etc\" is absolute",
            ),
            (
                record("/a", "b"),
                "<stdin>:3: test /a was given on line 1 already",
            ),
            (
                record("/a/testout.temp", "b"),
                "<stdin>:3: test /a/testout.temp would be stored in the artifacts directory of test /a (line 1)",
            ),
        ] {
            let err = check(&[good.clone(), bad.clone()])
                .expect_err(&bad)
                .to_string();
            assert!(err.starts_with(message), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults() {
        let config = Config::new(cli(LOCAL), &b""[..]).expect("config");
        assert!(config.session.artifacts.is_absolute());
        assert!(config.session.artifacts.ends_with("artifacts"));
        assert_eq!(config.session.machine.id, "local");
        assert_eq!(config.session.platform, "local");
        assert_eq!(config.no_tests, NoTests::Fail);
        assert!(!config.quiet);
        assert!(config.tests.is_empty());
    }
}
