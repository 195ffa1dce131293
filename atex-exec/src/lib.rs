//! atex-exec: the command-line interface; the tool itself is not built yet, so
//! every use but `--help` and `--version` is refused (exit 2).
#![warn(missing_docs)]

pub mod artifacts;
pub mod control;
pub mod wrapper;
pub mod remote;
pub mod reporter;
pub mod run;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Run test records on one machine and stream result records, storing artifacts.
///
/// Read Test records (line-JSON) on stdin, run each test on one machine (a
/// Machine record) with the ATEX test-control protocol, and stream Result
/// records on stdout as they happen; test output and uploaded files go under
/// the artifacts directory.
///
/// Example:
///     atex-discover tests --root . --plan /plans/ci -c distro=fedora-41 \
///       | atex-exec --machine "$(atex-provision local)" --artifacts out/
#[derive(Debug, Parser)]
#[command(name = "atex-exec", version, verbatim_doc_comment)]
pub struct Cli {
    /// Arguments of the future interface (not implemented yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<OsString>,
}

/// The process entry point: until the tool exists, `--help` and `--version`
/// work and every other use exits [`atex_shared::exit::INVALID`] with nothing
/// on stdout.
pub fn main() -> ExitCode {
    atex_shared::placeholder::main::<Cli>("atex-exec")
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_version_and_refusal() {
        atex_shared::placeholder::assert_placeholder::<super::Cli>("atex-exec");
    }
}
