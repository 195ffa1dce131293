//! One module per subcommand: its clap `Args` and its `run`.

pub mod filter;
pub mod ls;
pub mod matching;
pub mod plans;
pub mod show;
pub mod tests;
pub mod tree;
