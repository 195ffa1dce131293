//! atex-discover: the fmf engine (tree, inheritance, merge suffixes, adjust,
//! context rules, filters, conditions) and tmt test discovery.
//!
//! The engine reproduces python fmf 1.7 semantics (see `spec/fmf-tmt.md`);
//! documented deviations live in `docs/deviations.md`.
//!
//! # The fmf engine as a library
//!
//! Load a tree, adjust it for a context, and select nodes the way
//! `fmf ls --filter` does:
//!
//! ```
//! use atex_discover::tree::{AdjustOptions, PruneCriteria};
//! use atex_discover::{Context, Tree};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # std::fs::create_dir(dir.path().join(".fmf"))?;
//! # std::fs::write(dir.path().join(".fmf/version"), "1\n")?;
//! # std::fs::write(dir.path().join("main.fmf"), "\
//! # tier: 1
//! # /fast:
//! #   test: ./fast.sh
//! # /slow:
//! #   test: ./slow.sh
//! #   adjust:
//! #     when: arch == s390x
//! #     enabled: false
//! # ")?;
//! let mut tree = Tree::load(dir.path())?;
//! let context = Context::from_cli(&["arch=s390x".to_owned()])?;
//! tree.adjust(&context, &AdjustOptions::default())?;
//!
//! let criteria = PruneCriteria {
//!     filters: vec!["enabled: False".into()],
//!     ..PruneCriteria::default()
//! };
//! let names: Vec<&str> = tree
//!     .prune(false, &criteria)?
//!     .into_iter()
//!     .map(|node| node.name.as_str())
//!     .collect();
//! assert_eq!(names, ["/slow"]);
//! # Ok(())
//! # }
//! ```
//!
//! Discover a plan's tests as atex Test records (what `atex-discover tests`
//! prints):
//!
//! ```
//! use atex_discover::tmt::discover::{discover, DiscoveryOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # std::fs::create_dir(dir.path().join(".fmf"))?;
//! # std::fs::write(dir.path().join(".fmf/version"), "1\n")?;
//! # std::fs::write(dir.path().join("main.fmf"), "\
//! # /plans/ci:
//! #   discover: {how: fmf, filter: 'tag: ci'}
//! #   execute: {how: tmt}
//! # /tests/a: {test: ./a.sh, tag: [ci], duration: 10m}
//! # /tests/b: {test: ./b.sh}
//! # ")?;
//! let options = DiscoveryOptions {
//!     root: dir.path().to_owned(),
//!     plan: Some("/plans/ci".into()),
//!     ..DiscoveryOptions::default()
//! };
//! let discovery = discover(&options)?;
//! let records: Vec<_> = discovery.records().collect();
//! assert_eq!(records.len(), 1);
//! assert_eq!(records[0].name, "/tests/a");
//! assert_eq!(records[0].duration, 600);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod cli;
pub mod cmd;
pub mod condition;
pub mod context;
pub mod error;
pub mod filter;
pub mod interrupt;
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
