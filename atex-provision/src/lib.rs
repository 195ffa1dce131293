//! atex-provision: the command-line interface; the tool itself is not built yet, so
//! every use but `--help` and `--version` is refused (exit 2).
#![warn(missing_docs)]

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Provision test machines and print one Machine record (a JSON line) per system.
///
/// Provision test machines from a provisioner spec (local, ssh hosts, podman
/// containers, Testing Farm) and print one Machine record per system on stdout;
/// `release` gives them back.
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

/// The process entry point: until the tool exists, `--help` and `--version`
/// work and every other use exits [`atex_shared::exit::INVALID`] with nothing
/// on stdout.
pub fn main() -> ExitCode {
    atex_shared::placeholder::main::<Cli>("atex-provision")
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_version_and_refusal() {
        atex_shared::placeholder::assert_placeholder::<super::Cli>("atex-provision");
    }
}
