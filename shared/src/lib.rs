//! atex-shared: the contracts between the atex tools (records, line-JSON,
//! exit codes, the tmt duration grammar).
//!
//! Every tool reads and writes the record types of [`records`] as line-JSON
//! ([`jsonl`]), exits with one of the codes of [`exit`], and reads test
//! durations with [`duration`].
#![warn(missing_docs)]

pub mod cli;
pub mod connection;
pub mod duration;
pub mod exit;
pub mod jsonl;
pub mod records;
