//! atex-aggregate: the command-line interface; the tool itself is not built yet, so
//! every use but `--help` and `--version` is refused (exit 2).
#![warn(missing_docs)]

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Collect result records (and artifacts) into a results store, JUnit XML and HTML.
///
/// Read Result records (line-JSON) on stdin, together with their artifacts,
/// and write a results store that a later run can resume from, a JUnit XML
/// file and a static HTML report.
///
/// Example:
///     atex-discover tests --root . --plan /plans/ci \
///       | atex-exec --machine "$(atex-provision local)" --artifacts out/ \
///       | atex-aggregate --output results/
#[derive(Debug, Parser)]
#[command(name = "atex-aggregate", version, verbatim_doc_comment)]
pub struct Cli {
    /// Arguments of the future interface (not implemented yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<OsString>,
}

/// The process entry point: until the tool exists, `--help` and `--version`
/// work and every other use exits [`atex_shared::exit::INVALID`] with nothing
/// on stdout.
pub fn main() -> ExitCode {
    atex_shared::placeholder::main::<Cli>("atex-aggregate")
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_version_and_refusal() {
        atex_shared::placeholder::assert_placeholder::<super::Cli>("atex-aggregate");
    }
}
