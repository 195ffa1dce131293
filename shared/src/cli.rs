//! What every tool's entry point does the same way: parse the command line
//! (help and version on stdout with exit 0, usage errors on stderr with
//! exit 2) and wait for the first SIGINT or SIGTERM.

use crate::exit;

/// Parse the process's arguments into `C`. `Err` carries the exit code
/// once clap printed what it had to say: 0 after `--help`/`--version`,
/// [`exit::INVALID`] after a usage error.
pub fn parse<C: clap::Parser>() -> Result<C, u8> {
    C::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            exit::INVALID
        } else {
            exit::SUCCESS
        }
    })
}

/// What a tool does when it selected, ran or stored no test at all
/// (`--no-tests`, as cargo-nextest's option of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NoTests {
    /// Nothing to run is a success: exit 0, no message.
    Pass,
    /// Nothing to run is a success, with a warning on stderr.
    Warn,
    /// Nothing to run is an error: a message on stderr and exit 4.
    #[default]
    Fail,
}

impl NoTests {
    /// Report that `what` (for example "no test matched plan '/plans/ci'")
    /// happened in `tool`, on stderr as the choice says, and return the exit
    /// code the tool ends with.
    pub fn report(self, tool: &str, what: &str) -> u8 {
        match self {
            NoTests::Pass => exit::SUCCESS,
            NoTests::Warn => {
                eprintln!("{tool}: warning: {what}");
                exit::SUCCESS
            }
            NoTests::Fail => {
                eprintln!(
                    "{tool}: error: {what} (exit {}; --no-tests=pass or --no-tests=warn accepts it)",
                    exit::NO_TESTS
                );
                exit::NO_TESTS
            }
        }
    }
}

/// The signal that asked a tool to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT (Ctrl-C).
    Int,
    /// SIGTERM.
    Term,
}

impl Interrupt {
    /// The exit code after cleaning up: [`exit::SIGINT`] or [`exit::SIGTERM`].
    pub fn exit_code(self) -> u8 {
        match self {
            Interrupt::Int => exit::SIGINT,
            Interrupt::Term => exit::SIGTERM,
        }
    }

    /// `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Int => "SIGINT",
            Interrupt::Term => "SIGTERM",
        }
    }
}

/// Resolves at the first SIGINT or SIGTERM that arrives after the call.
/// Must run inside a tokio runtime with signals enabled. When the handlers
/// cannot be installed it never resolves: the default action (death)
/// applies then.
pub async fn interrupted() -> Interrupt {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => Interrupt::Int,
        _ = term.recv() => Interrupt::Term,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_map_to_their_exit_codes() {
        assert_eq!(Interrupt::Int.exit_code(), 130);
        assert_eq!(Interrupt::Term.exit_code(), 143);
        assert_eq!(Interrupt::Term.name(), "SIGTERM");
    }

    #[test]
    fn no_tests_fails_by_default() {
        assert_eq!(NoTests::default(), NoTests::Fail);
        assert_eq!(NoTests::Fail.report("t", "nothing"), exit::NO_TESTS);
        assert_eq!(NoTests::Warn.report("t", "nothing"), exit::SUCCESS);
        assert_eq!(NoTests::Pass.report("t", "nothing"), exit::SUCCESS);
    }
}
