//! Exit codes shared by every atex tool (DESIGN.md "Exit codes").
//!
//! Every tool exits with one of these, so a shell script or a Makefile can
//! tell "the tests failed" (1) from "the input was wrong" (2) from "the
//! infrastructure failed" (3) without parsing any output.

/// Done, and every test passed.
pub const SUCCESS: u8 = 0;

/// Done, and some test result is `fail`, `error` or `warn`: the tests'
/// verdict, not a problem of the tool.
pub const TEST_FAILED: u8 = 1;

/// Usage error or invalid input (bad YAML, a bad JSON line, an unknown plan):
/// nothing was run, and the message on stderr names `file:line:col`.
pub const INVALID: u8 = 2;

/// Infrastructure failure: some test could not run to its end (status
/// `infra`), or provisioning failed.
pub const INFRA: u8 = 3;

/// No test was selected, run or stored (an empty selection, an empty input
/// or an empty store). Running nothing is not a pass: a release gate must
/// not go green with nothing run. The same code as cargo-nextest's
/// `NO_TESTS_RUN`; `--no-tests=pass|warn` chooses otherwise
/// ([`crate::cli::NoTests`]).
pub const NO_TESTS: u8 = 4;

/// Interrupted by SIGINT (128 + 2), after cleanup.
pub const SIGINT: u8 = 130;

/// Interrupted by SIGTERM (128 + 15), after cleanup.
pub const SIGTERM: u8 = 143;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_codes_follow_the_shell_convention() {
        assert_eq!(SIGINT, 128 + 2);
        assert_eq!(SIGTERM, 128 + 15);
    }

    #[test]
    fn codes_are_distinct() {
        let mut codes = [
            SUCCESS,
            TEST_FAILED,
            INVALID,
            INFRA,
            NO_TESTS,
            SIGINT,
            SIGTERM,
        ];
        codes.sort_unstable();
        let len = codes.len();
        let mut dedup = codes.to_vec();
        dedup.dedup();
        assert_eq!(dedup.len(), len);
    }
}
