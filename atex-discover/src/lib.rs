//! atex-discover: the fmf engine (tree, inheritance, merge suffixes, adjust,
//! context rules, filters, conditions) and tmt test discovery.
//!
//! The engine reproduces python fmf 1.7 semantics (see `spec/fmf-tmt.md`);
//! documented deviations live in `docs/deviations.md`.
#![warn(missing_docs)]

pub mod cli;
pub mod cmd;
pub mod condition;
pub mod context;
pub mod error;
pub mod filter;
pub mod pyre;
pub mod pystr;
pub mod tmt;
pub mod tree;
pub mod value;
pub mod yaml;

mod adjust;
mod merge;

pub use context::Context;
pub use error::{Error, ErrorKind, Location, Result};
pub use tree::{Node, Tree};
pub use value::{Map, Value};
