//! Exit codes shared by every atex tool (DESIGN.md "Exit codes").

/// Done, every test passed (or nothing to run).
pub const SUCCESS: u8 = 0;
/// Done, some test result is fail/error/warn.
pub const TEST_FAILED: u8 = 1;
/// Usage error or invalid input: nothing was run.
pub const INVALID: u8 = 2;
/// Infrastructure failure: some test could not run to its end.
pub const INFRA: u8 = 3;
/// Interrupted by SIGINT, after cleanup.
pub const SIGINT: u8 = 130;
/// Interrupted by SIGTERM, after cleanup.
pub const SIGTERM: u8 = 143;
