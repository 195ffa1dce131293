//! The command line of `atex-exec`: arguments, the validated [`Config`]
//! (everything read and checked before anything starts), the run, signals
//! and the exit code.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use atex_shared::exit;
use atex_shared::jsonl;
use atex_shared::records::{Machine, Test, TestResult};
use clap::Parser;

use crate::reporter::{ResultView, Sink};
use crate::session::{self, Interrupt, ResultSink, SessionConfig};

/// Run test records on one machine and stream result records, storing artifacts.
///
/// Read Test records (line-JSON) on stdin, run each test on one machine (a
/// Machine record) with the ATEX test-control protocol, and stream Result
/// records on stdout as they happen; test output and uploaded files go under
/// the artifacts directory, one directory per test.
///
/// Exit code: 0 all passed, 1 some test failed (fail, error, warn), 3 some
/// test was infra, 2 bad input (nothing is started), 130/143 interrupted
/// by SIGINT/SIGTERM (the running test is killed and reported infra).
///
/// Examples:
///     atex-discover tests --root . --plan /plans/ci \
///       | atex-exec --machine '{"id":"local","provisioner":"local","connection":{"kind":"local"}}'
/// With a Machine record in a file and a platform name:
///     atex-discover tests --root . \
///       | atex-exec --machine @machine.json --artifacts out/ --platform fedora-41@x86_64
#[derive(Debug, Parser)]
#[command(name = "atex-exec", version, verbatim_doc_comment)]
pub struct Cli {
    /// The Machine record to run on: JSON, or @FILE to read it from FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub machine: String,
    /// Where test files are stored: one directory per test, named after it.
    #[arg(long, value_name = "DIR", default_value = "artifacts")]
    pub artifacts: PathBuf,
    /// The platform results are reported for [default: the machine's].
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,
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
    /// A stdin line is not a Test record.
    #[error(transparent)]
    Input(#[from] jsonl::ReadError),
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The session's settings.
    pub session: SessionConfig,
    /// The tests, in input order.
    pub tests: Vec<Test>,
}

impl Config {
    /// Validate `cli` and read every Test record from `input` (named
    /// `<stdin>` in errors); nothing is started.
    pub fn new(cli: Cli, input: impl BufRead) -> Result<Config, ConfigError> {
        let machine = parse_machine(&cli.machine)?;
        let tests = jsonl::Reader::<_, Test>::new(input, "<stdin>").collect::<Result<_, _>>()?;
        let platform = cli.platform.unwrap_or_else(|| machine.platform.clone());
        Ok(Config {
            session: SessionConfig {
                machine,
                platform,
                artifacts: absolute(cli.artifacts),
            },
            tests,
        })
    }
}

/// Results are reported with absolute artifact paths.
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn parse_machine(arg: &str) -> Result<Machine, ConfigError> {
    let (source_name, text) = match arg.strip_prefix('@') {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::MachineFile {
                    path: path.to_owned(),
                    source,
                })?;
            (path.to_owned(), text)
        }
        None => ("--machine".to_owned(), arg.to_owned()),
    };
    serde_json::from_str(&text).map_err(|e| {
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message.get(..i).unwrap_or(&message).to_owned(),
            None => message,
        };
        ConfigError::Machine {
            source_name,
            line: e.line().max(1),
            column: e.column().max(1),
            message,
        }
    })
}

/// Writes results on stdout; warnings go to stderr.
struct Stdout<W: Write> {
    writer: jsonl::Writer<W>,
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
        self.write(&result);
    }

    fn result_view(&mut self, result: ResultView<'_>) {
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
    };
    let summary = runtime.block_on(async {
        let interrupt: Interrupt<'_> =
            Box::pin(async { atex_shared::cli::interrupted().await.name().to_owned() });
        session::run(&config.session, config.tests, &mut out, interrupt).await
    });
    out.flush();
    match summary.interrupted.as_deref() {
        Some("SIGTERM") => exit::SIGTERM,
        Some(_) => exit::SIGINT,
        None => summary.exit_code(),
    }
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
    fn defaults() {
        let config = Config::new(cli(LOCAL), &b""[..]).expect("config");
        assert!(config.session.artifacts.is_absolute());
        assert!(config.session.artifacts.ends_with("artifacts"));
        assert_eq!(config.session.machine.id, "local");
        assert!(config.tests.is_empty());
    }
}
