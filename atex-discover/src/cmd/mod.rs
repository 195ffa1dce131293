//! One module per subcommand: its clap `Args` and its `run`.

pub mod filter;
pub mod ls;
pub mod matching;
pub mod plans;
pub mod show;
pub mod tests;
pub mod tree;

use crate::tree::Skipped;

/// Warn on stderr about each directory the walk could not read: its tests
/// are not listed, and python fmf would not have said so.
pub(crate) fn warn_skipped(skipped: &[Skipped]) {
    for skipped in skipped {
        eprintln!("atex-discover: warning: {skipped}");
    }
}
