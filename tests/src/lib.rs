//! Harness of the cross-tool integration tests: temp dirs, fixtures, running
//! the real binaries.
#![warn(missing_docs)]
