//! The command line of `atex-aggregate`: arguments, the validated
//! configuration, signals and exit codes; the work is in [`crate::ingest`],
//! [`crate::summary`] and [`crate::convert`].

use std::io::{self, BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use atex_shared::cli::NoTests;
use atex_shared::exit;
use clap::{Parser, Subcommand};

use crate::convert::{self, Kind};
use crate::files::FilePolicy;
use crate::ingest::{self, Config, Format, Interrupted, Signals, Stopped};
use crate::store::Compression;
use crate::summary;

/// Collect result records (and their files) into a results store, JUnit XML and HTML.
///
/// Read Result records (line-JSON) on stdin and write, as they arrive, a
/// results store in DIR: results.jsonl (ATEX's lines, or our records with
/// --format records; .gz/.xz with --compress), the results' files moved
/// from atex-exec's artifacts to files/<platform>/<test>/<subtest>/, a
/// junit.xml and a static index.html. A test run stored twice for one
/// platform is stored as "<test> (1)", as ATEX does. A result without a
/// status is stored with a null one (as ATEX) and counts as not passed.
///
/// Exit code: 0 all passed, 1 some failed (fail, error, warn, no status),
/// 3 some infra, 4 no Result record on stdin (--no-tests chooses; the
/// empty store is written all the same), 2 bad input or usage (what was
/// read before is stored), 130/143 interrupted.
///
/// Interrupted (SIGINT, SIGTERM): Ctrl-C reaches every process of a
/// pipeline, and atex-exec still writes the record of the test it
/// interrupted. So atex-aggregate reads on until its input ends (at most
/// 5 s; a second Ctrl-C stops at once; at once when stdin is a terminal),
/// writes the store, junit.xml and index.html, says in one line on stderr
/// what it stored, and exits 130 (SIGINT) or 143 (SIGTERM).
///
/// Examples:
///     atex-discover tests --root . \
///       | atex-exec --machine "$(atex-provision local)" --artifacts out/ \
///       | atex-aggregate --output results/
///     atex-aggregate --output results/ --compress xz --compress-files --append < more.jsonl
///     atex-aggregate --output results/ --no-tests=warn < maybe-empty.jsonl
///     atex-aggregate summary results/
///     atex-aggregate convert --from tmt --to atex --platform f41 results.yaml
// The text is the --help page: `<platform>` and the like are placeholders
// for people, not HTML.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Parser)]
#[command(
    name = "atex-aggregate",
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// What to do instead of ingesting.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The store directory (created if missing).
    #[arg(long, short, value_name = "DIR", required = true)]
    pub output: Option<PathBuf>,
    /// What results.jsonl holds: ATEX's lines or our full Result records.
    #[arg(long, value_enum, default_value = "atex")]
    pub format: Format,
    /// Compress results.jsonl (a gzip member or xz stream per flush) [default: none, or what --append finds].
    #[arg(long, value_enum, value_name = "HOW")]
    pub compress: Option<Compression>,
    /// Compress each stored regular file (adding .gz or .xz to its name).
    #[arg(long, value_enum, value_name = "HOW", num_args = 0..=1, default_missing_value = "gz")]
    pub compress_files: Option<Compression>,
    /// A file base name never compressed (repeatable).
    #[arg(long, value_name = "NAME")]
    pub compress_files_exclude: Vec<String>,
    /// Continue an existing store (what resume uses) instead of refusing it.
    #[arg(long)]
    pub append: bool,
    /// What no Result record on stdin means: fail (exit 4), warn or pass
    /// (exit as the store's results call for).
    #[arg(long, value_enum, default_value_t, value_name = "WHAT")]
    pub no_tests: NoTests,
    /// The longest input line, in bytes; a longer one is bad input (exit
    /// 2, what came before is stored) [default: 64 MiB].
    #[arg(long, value_name = "BYTES", default_value_t = ingest::MAX_LINE, hide_default_value = true)]
    pub max_line_size: usize,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a store's totals and the results that did not pass; exit 0 all passed, 1 some failed, 3 some infra, 4 no results
    ///
    /// The totals per platform and status, then one line per result that
    /// did not pass (fail, error, warn, infra, an unknown status or none;
    /// not skip): status, test, subtest, platform and note, at most 50
    /// (then how many more), and the verdict with its exit code.
    ///
    /// Exit code: 0 all passed, 1 some failed, 3 some infra, 4 the store
    /// holds no result (--no-tests chooses), 2 no store or a bad line.
    ///
    /// Examples:
    ///     atex-aggregate summary results/
    ///     atex-aggregate summary --no-tests=pass results/
    #[command(verbatim_doc_comment)]
    Summary {
        /// The store directory.
        dir: PathBuf,
        /// What a store without results means: fail (exit 4), warn or pass (exit 0).
        #[arg(long, value_enum, default_value_t, value_name = "WHAT")]
        no_tests: NoTests,
    },
    /// Convert results between ATEX's lines, Result records and tmt's results.yaml (read only).
    ///
    /// Writes on stdout; gzip and xz input is decompressed.
    Convert {
        /// The input's format.
        #[arg(long, value_enum)]
        from: Kind,
        /// The output's format (atex or records).
        #[arg(long, value_enum)]
        to: Kind,
        /// The platform of tmt results [default: the result's guest name].
        #[arg(long, value_name = "NAME")]
        platform: Option<String>,
        /// The input file [default: stdin].
        file: Option<PathBuf>,
    },
}

/// Turn the ingest arguments into a [`Config`].
pub fn config(cli: &Cli) -> Option<Config> {
    let mut config = Config::new(cli.output.clone()?);
    config.format = cli.format;
    config.compress = cli.compress;
    config.files = FilePolicy {
        compress: cli.compress_files.filter(|c| *c != Compression::None),
        exclude: cli.compress_files_exclude.clone(),
    };
    config.append = cli.append;
    config.max_line = cli.max_line_size;
    Some(config)
}

fn error(message: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("atex-aggregate: error: {message}");
    ExitCode::from(code)
}

/// The process entry point.
pub fn main() -> ExitCode {
    let cli: Cli = match atex_shared::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    match &cli.command {
        Some(Command::Summary { dir, no_tests }) => {
            match summary::run(dir, *no_tests, &mut io::stdout().lock()) {
                Ok(code) => ExitCode::from(code),
                Err(e) => error(e, exit::INVALID),
            }
        }
        Some(Command::Convert {
            from,
            to,
            platform,
            file,
        }) => {
            let (input, name): (Box<dyn io::BufRead>, String) = match file {
                Some(path) => match std::fs::File::open(path) {
                    Ok(f) => (Box::new(BufReader::new(f)), path.display().to_string()),
                    Err(e) => {
                        return error(
                            format!("failed to open {}: {e}", path.display()),
                            exit::INVALID,
                        );
                    }
                },
                None => (Box::new(io::stdin().lock()), "<stdin>".to_owned()),
            };
            match convert::run(
                input,
                &name,
                *from,
                *to,
                platform.as_deref(),
                &mut io::stdout().lock(),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(convert::Error::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                    ExitCode::SUCCESS
                }
                Err(e) => error(e, exit::INVALID),
            }
        }
        None => {
            let Some(mut config) = config(&cli) else {
                return error("--output DIR is required", exit::INVALID);
            };
            // Nobody writes records on a terminal: a Ctrl-C there stops at
            // once instead of waiting for more input.
            if io::stdin().is_terminal() {
                config.interrupt_wait = Duration::ZERO;
            }
            let signals = Arc::new(Signals::new());
            watch_signals(&signals);
            match ingest::run(&config, io::stdin(), "<stdin>", &signals) {
                Ok(outcome) => match outcome.interrupted {
                    Some(interrupted) => {
                        eprintln!(
                            "{}",
                            interrupted_line(&interrupted, outcome.ingested, &config)
                        );
                        ExitCode::from(interrupted.signal.exit_code())
                    }
                    None if outcome.ingested == 0 => {
                        let earlier = outcome.totals.tests;
                        let what = if earlier == 0 {
                            format!(
                                "no Result record on stdin; {} is an empty store",
                                config.output.display()
                            )
                        } else {
                            format!(
                                "no Result record on stdin; the store in {} keeps its {}",
                                config.output.display(),
                                results(earlier)
                            )
                        };
                        match cli.no_tests.report("atex-aggregate", &what) {
                            exit::SUCCESS => ExitCode::from(outcome.totals.exit_code()),
                            code => ExitCode::from(code),
                        }
                    }
                    None => ExitCode::from(outcome.totals.exit_code()),
                },
                Err(e) => {
                    let code = e.exit_code();
                    error(e, code)
                }
            }
        }
    }
}

/// "1 result", "12 results".
fn results(n: u64) -> String {
    format!("{n} result{}", if n == 1 { "" } else { "s" })
}

/// Record SIGINT and SIGTERM in `signals` from a thread of their own. When
/// the handlers cannot be installed, the default action (death) applies;
/// the store stays readable either way.
fn watch_signals(signals: &Arc<Signals>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut incoming) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    let signals = Arc::clone(signals);
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for number in incoming.forever() {
                signals.raise(number);
            }
        });
}

/// The one line an interrupted ingest prints on stderr: what it did with
/// the input and what the store holds.
fn interrupted_line(i: &Interrupted, stored: u64, config: &Config) -> String {
    let signal = i.signal.name();
    let stored = format!("stored {} in {}", results(stored), config.output.display());
    match i.stopped {
        Stopped::InputEnded => format!(
            "atex-aggregate: interrupted ({signal}): read on until the input ended; {stored}, the store is complete up to the interruption"
        ),
        Stopped::SecondSignal => format!(
            "atex-aggregate: interrupted ({signal}), then a second signal: stopped reading; {stored}, records not read yet are not stored"
        ),
        Stopped::WaitOver => format!(
            "atex-aggregate: interrupted ({signal}): the input was still open {} s later, stopped reading; {stored}, later records are not stored",
            config.interrupt_wait.as_secs_f64()
        ),
        Stopped::AtOnce => format!("atex-aggregate: interrupted ({signal}): {stored}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        let cli = Cli::try_parse_from([
            "atex-aggregate",
            "-o",
            "d",
            "--compress",
            "xz",
            "--compress-files",
            "--append",
        ])
        .expect("args");
        let config = config(&cli).expect("config");
        assert_eq!(
            (config.compress, config.files.compress, config.append),
            (Some(Compression::Xz), Some(Compression::Gz), true)
        );
        assert!(Cli::try_parse_from(["atex-aggregate"]).is_err());
        let cli = Cli::try_parse_from(["atex-aggregate", "summary", "d"]).expect("summary");
        assert!(matches!(cli.command, Some(Command::Summary { .. })));
        assert!(
            Cli::try_parse_from([
                "atex-aggregate",
                "convert",
                "--from",
                "tmt",
                "--to",
                "atex",
                "f"
            ])
            .is_ok()
        );
    }

    #[test]
    fn help_has_examples() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        let help = command.render_long_help().to_string();
        assert!(help.contains("atex-aggregate summary results/"), "{help}");
        assert!(
            help.contains("--no-tests=warn < maybe-empty.jsonl"),
            "{help}"
        );
        assert!(help.contains("a second Ctrl-C stops at once"), "{help}");
        let summary = command
            .find_subcommand_mut("summary")
            .expect("summary")
            .render_long_help()
            .to_string();
        assert!(
            summary.contains("atex-aggregate summary --no-tests=pass results/"),
            "{summary}"
        );
    }
}
