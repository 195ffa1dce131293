//! atex-exec: run Test records on one machine and stream Result records;
//! the command line is in [`cli`], one machine's run in [`session`].
#![warn(missing_docs)]

pub mod artifacts;
pub mod cli;
pub mod control;
pub mod helpers;
pub mod launch;
pub mod reboot;
pub mod remote;
pub mod reporter;
pub mod run;
pub mod runner;
pub mod session;
pub mod wrapper;

pub use cli::{Cli, main};
