//! The `atex-provision` command line (being written): until it exists,
//! `--help` and `--version` work and every other use exits 2.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Provision test machines and print one Machine record (a JSON line) per system.
///
/// Example:
///     atex-discover tests --root . --plan /plans/ci \
///       | atex-exec --machine "$(atex-provision local)" --artifacts out/
#[derive(Debug, Parser)]
#[command(name = "atex-provision", version, verbatim_doc_comment)]
pub struct Cli {
    /// Arguments of the future interface (not implemented yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<OsString>,
}

/// The process entry point.
pub fn main() -> ExitCode {
    atex_shared::placeholder::main::<Cli>("atex-provision")
}
