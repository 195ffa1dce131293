//! Command-line interface: argument parsing and dispatch to the subcommands.
//!
//! `main()` is the only place that touches the real stdout; each
//! subcommand's `run` writes records to the writer it is given (and notes
//! for people on stderr).

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;

const EXAMPLES: &str = "\
Examples:
  # the tests of a plan for Fedora 41, one Test record per line
  atex-discover tests --root . --plan /plans/ci -c distro=fedora-41
  # the plans of the tree and their discover sections
  atex-discover plans --root .
  # node names, like `fmf ls`, and one node for people, like `fmf show`
  atex-discover ls --filter 'tier: 1' .
  atex-discover show --name '^/tests/basic$' .
  # debug adjust rules and filters
  atex-discover match 'distro >= fedora-40' -c distro=fedora-41
  atex-discover filter 'tag: fast' --data '{\"tag\": [\"fast\"]}'
  atex-discover tree . -c arch=aarch64 --selected

Exit status: 0 done; 2 invalid input or usage (the message names FILE:LINE:COL);
4 `tests` selected no test (see --no-tests); 130/143 interrupted by SIGINT/SIGTERM.";

/// Discover fmf/tmt tests and print them as line-JSON records.
#[derive(Debug, Parser)]
#[command(name = "atex-discover", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `atex-discover`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every node of an fmf tree (after adjust) as one JSON line each.
    Tree(cmd::tree::Args),
    /// Evaluate context rules (`when` expressions) against a context.
    Match(cmd::matching::Args),
    /// Evaluate fmf filter expressions against JSON data.
    Filter(cmd::filter::Args),
    /// List node names like `fmf ls`.
    Ls(cmd::ls::Args),
    /// Show nodes for people like `fmf show`.
    Show(cmd::show::Args),
    /// Print the selected tests of a plan as Test records.
    Tests(cmd::tests::Args),
    /// List plans with their discover sections.
    Plans(cmd::plans::Args),
}

/// Why a subcommand stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Invalid input or usage: exit 2, nothing printed on stdout.
    #[error("{0}")]
    Invalid(#[from] crate::Error),
    /// Invalid usage found after argument parsing.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("failed to write output: {0}")]
    Io(#[from] std::io::Error),
}

/// Run a parsed command line, writing records to `out`. Returns the exit code.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<u8, CliError> {
    match cli.command {
        Command::Tree(args) => cmd::tree::run(args, out),
        Command::Match(args) => cmd::matching::run(args, out),
        Command::Filter(args) => cmd::filter::run(args, out),
        Command::Ls(args) => cmd::ls::run(args, out),
        Command::Show(args) => cmd::show::run(args, out),
        Command::Tests(args) => cmd::tests::run(args, out),
        Command::Plans(args) => cmd::plans::run(args, out),
    }
}

/// The process entry point: parse argv, run, render errors on stderr.
pub fn main() -> ExitCode {
    let cli = match atex_shared::cli::parse::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    // One line on stderr when interrupted (DESIGN.md): `tests` counts its
    // records; the other commands write their output at the end, or are
    // for people at a terminal.
    match cli.command {
        Command::Tests(_) => crate::interrupt::install("test record", "no test records written"),
        _ => crate::interrupt::install("record", "output not complete"),
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = run(cli, &mut out).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(atex_shared::exit::SUCCESS)
        }
        Err(CliError::Invalid(e)) => {
            eprintln!("atex-discover: error: {}", e.one_line());
            ExitCode::from(atex_shared::exit::INVALID)
        }
        Err(e) => {
            eprintln!("atex-discover: error: {e}");
            ExitCode::from(atex_shared::exit::INVALID)
        }
    }
}
