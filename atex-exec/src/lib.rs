//! atex-exec: the command-line interface; the tool itself is not built yet, so
//! every use but `--help` and `--version` is refused (exit 2).
#![warn(missing_docs)]

use std::ffi::OsString;
use std::io::Write;
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

/// Run with the given argv, writing help and version text to `stdout` and
/// errors to `stderr`; returns the exit code.
///
/// Until the tool exists, every use but `--help` and `--version` fails with
/// [`atex_shared::exit::INVALID`] and prints nothing on stdout.
pub fn run_args<I, T>(argv: I, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Cli::try_parse_from(argv) {
        Ok(_) => {
            // Best effort: if stderr is gone there is no one left to tell.
            let _ = writeln!(stderr, "atex-exec: error: not implemented yet");
            atex_shared::exit::INVALID
        }
        Err(e) => {
            // Plain text: the output is often a pipe or a file, not a terminal.
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                write!(stderr, "{text}")
            } else {
                write!(stdout, "{text}")
            };
            u8::try_from(e.exit_code()).unwrap_or(atex_shared::exit::INVALID)
        }
    }
}

/// The process entry point.
pub fn main() -> ExitCode {
    let code = run_args(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let argv = std::iter::once("atex-exec").chain(args.iter().copied());
        let code = run_args(argv, &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn help_and_version_succeed() {
        let (code, out, _) = run(&["--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("Usage: atex-exec"), "{out}");
        let (code, out, _) = run(&["--version"]);
        assert_eq!(code, 0);
        assert!(out.starts_with("atex-exec "), "{out}");
    }

    #[test]
    fn any_other_use_is_refused() {
        for args in [&[][..], &["local"][..], &["--machine", "x"][..]] {
            let (code, out, err) = run(args);
            assert_eq!(code, atex_shared::exit::INVALID);
            assert!(out.is_empty());
            assert_eq!(err, "atex-exec: error: not implemented yet\n");
        }
    }
}
