//! The tmt layer on top of the fmf tree: plans, their phases and
//! environment, test selection, and the test records built from nodes.
//!
//! The discovery follows Python ATEX's `FMFExecutor.discover()`
//! (`spec/atex-reference.md` section 4) with tmt's plan and test semantics
//! (`spec/fmf-tmt.md` sections B and C). Deliberate deviations are listed on
//! the items that make them.

pub mod discover;
pub mod environment;
pub mod locate;
pub mod plan;
pub mod select;
pub mod test;

use std::path::PathBuf;

use crate::error::{Error, ErrorKind};

pub use discover::{Discovery, DiscoveryOptions, discover};
pub use plan::{Phase, Plan};
pub use test::DiscoveredTest;

/// An error about the value of `key` in a node's data: the message is
/// prefixed with the node name, and the location is the key's place in the
/// node's sources when [`locate::locate_key`] can find it.
pub(crate) fn data_error(
    kind: ErrorKind,
    node: &str,
    sources: &[PathBuf],
    key: &str,
    message: impl std::fmt::Display,
) -> Error {
    let error = Error::new(kind, format!("{node}: {message}"));
    match locate::locate_key(sources, key) {
        Some(location) => error.at(location),
        None => match sources.last() {
            Some(path) => error.in_file(path),
            None => error,
        },
    }
}
