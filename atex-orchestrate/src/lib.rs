//! atex-orchestrate: the command-line interface; the tool itself is not built yet, so
//! every use but `--help` and `--version` is refused (exit 2).
#![warn(missing_docs)]

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Run test records on a pool of provisioned machines, handing the next test to whichever machine is free.
///
/// Read Test records (line-JSON) on stdin, provision a pool of machines from
/// provisioner specs, give the next test (longest expected first) to whichever
/// machine is free, rerun failures, and aggregate the results, all in one
/// process.
///
/// Example:
///     atex-discover tests --plan /plans/ci -c distro=fedora-41 \
///       | atex-orchestrate --provision 'podman image=localhost/sut max=8' \
///                          --reruns 1 --output results/
#[derive(Debug, Parser)]
#[command(name = "atex-orchestrate", version, verbatim_doc_comment)]
pub struct Cli {
    /// Arguments of the future interface (not implemented yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<OsString>,
}

/// The process entry point: until the tool exists, `--help` and `--version`
/// work and every other use exits [`atex_shared::exit::INVALID`] with nothing
/// on stdout.
pub fn main() -> ExitCode {
    atex_shared::placeholder::main::<Cli>("atex-orchestrate")
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_version_and_refusal() {
        atex_shared::placeholder::assert_placeholder::<super::Cli>("atex-orchestrate");
    }
}
