//! The command line of `atex-aggregate`: arguments, the validated
//! configuration, signals and exit codes; the work is in [`crate::ingest`],
//! [`crate::summary`] and [`crate::convert`].

use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use atex_shared::exit;
use clap::{Parser, Subcommand};

use crate::convert::{self, Kind};
use crate::files::FilePolicy;
use crate::ingest::{self, Config, Format};
use crate::store::Compression;
use crate::summary;

/// Collect result records (and their files) into a results store, JUnit XML and HTML.
///
/// Read Result records (line-JSON) on stdin and write, as they arrive, a
/// results store in DIR: results.jsonl (ATEX's lines, or our records with
/// --format records; .gz/.xz with --compress), the results' files moved
/// from atex-exec's artifacts to files/<platform>/<test>/<subtest>/, a
/// junit.xml and a static index.html. A test run stored twice for one
/// platform is stored as "<test> (1)", as ATEX does.
///
/// Exit code: 0 all passed, 1 some failed (fail, error, warn), 3 some
/// infra, 2 bad input or usage (what was read before is stored), 130/143
/// interrupted (what was read is stored).
///
/// Examples:
///     atex-discover tests --root . \
///       | atex-exec --machine "$(atex-provision local)" --artifacts out/ \
///       | atex-aggregate --output results/
///     atex-aggregate --output results/ --compress xz --compress-files --append < more.jsonl
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
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a store's totals per platform and status; exit 0 all passed, 1 some failed, 3 some infra.
    Summary {
        /// The store directory.
        dir: PathBuf,
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
        Some(Command::Summary { dir }) => match summary::run(dir, &mut io::stdout().lock()) {
            Ok(code) => ExitCode::from(code),
            Err(e) => error(e, exit::INVALID),
        },
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
            let Some(config) = config(&cli) else {
                return error("--output DIR is required", exit::INVALID);
            };
            let signal = Arc::new(AtomicUsize::new(0));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // Without the handler the default action (death) applies;
                // the store stays readable either way.
                let _ = signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize);
            }
            match ingest::run(&config, io::stdin(), "<stdin>", &signal) {
                Ok(outcome) => match outcome.interrupted {
                    Some(s) if s == signal_hook::consts::SIGTERM as usize => {
                        ExitCode::from(exit::SIGTERM)
                    }
                    Some(_) => ExitCode::from(exit::SIGINT),
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
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("atex-aggregate summary results/"), "{help}");
    }
}
