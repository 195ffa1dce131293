//! atex-aggregate: collect Result records (and their files) into a results
//! store that ATEX's consumers read, JUnit XML and a static HTML page; the
//! command line is in [`cli`], the ingest in [`ingest`].
#![warn(missing_docs)]

pub mod attempts;
pub mod cli;
pub mod convert;
pub mod files;
pub mod ingest;
pub mod record;
pub mod report;
pub mod store;
pub mod summary;
pub mod timeline;

pub use cli::{Cli, main};
