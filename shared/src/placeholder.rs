//! The command line of a tool that a later issue builds: `--help` and
//! `--version` work, every other use is refused with exit 2 and nothing on
//! stdout (no fake output).

use std::ffi::OsString;
use std::io::Write;

use crate::exit;

/// Parse `argv` with the tool's clap `Cli` and answer like a tool that does
/// not exist yet: help and version text go to `stdout` (exit 0), usage
/// errors to `stderr` (clap's exit code), and any accepted command line
/// prints `<tool>: error: not implemented yet` on `stderr` and gives
/// [`exit::INVALID`].
pub fn run<C, I, T>(tool: &str, argv: I, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match C::try_parse_from(argv) {
        Ok(_) => {
            // Best effort: if stderr is gone there is no one left to tell.
            let _ = writeln!(stderr, "{tool}: error: not implemented yet");
            exit::INVALID
        }
        Err(e) => {
            // Plain text: the output is often a pipe or a file, not a terminal.
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                write!(stderr, "{text}")
            } else {
                write!(stdout, "{text}")
            };
            u8::try_from(e.exit_code()).unwrap_or(exit::INVALID)
        }
    }
}

/// The process entry point of a placeholder tool: [`run`] on the real argv,
/// stdout and stderr.
pub fn main<C: clap::Parser>(tool: &str) -> std::process::ExitCode {
    let code = run::<C, _, _>(
        tool,
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::ExitCode::from(code)
}

/// Run a placeholder tool in-process: `(exit code, stdout, stderr)`. For the
/// tools' own tests.
pub fn capture<C: clap::Parser>(tool: &str, args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once(tool).chain(args.iter().copied());
    let code = run::<C, _, _>(tool, argv, &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Assert that a placeholder tool answers `--help` and `--version` and
/// refuses any other use. For the tools' own tests.
///
/// # Panics
///
/// When the tool does not behave as described.
pub fn assert_placeholder<C: clap::Parser>(tool: &str) {
    let (code, out, _) = capture::<C>(tool, &["--help"]);
    assert_eq!(code, exit::SUCCESS);
    assert!(out.contains(&format!("Usage: {tool}")), "{out}");
    let (code, out, _) = capture::<C>(tool, &["--version"]);
    assert_eq!(code, exit::SUCCESS);
    assert!(out.starts_with(&format!("{tool} ")), "{out}");
    for args in [&[][..], &["local"][..], &["--machine", "x"][..]] {
        let (code, out, err) = capture::<C>(tool, args);
        assert_eq!(code, exit::INVALID);
        assert!(out.is_empty(), "{out}");
        assert_eq!(err, format!("{tool}: error: not implemented yet\n"));
    }
}

#[cfg(test)]
mod tests {
    /// A stand-in tool.
    #[derive(Debug, clap::Parser)]
    #[command(name = "atex-dummy", version)]
    struct Cli {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<std::ffi::OsString>,
    }

    #[test]
    fn placeholder_behaviour() {
        super::assert_placeholder::<Cli>("atex-dummy");
    }
}
