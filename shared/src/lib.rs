//! atex-shared: the contracts between the atex tools.
#![warn(missing_docs)]

pub mod exit;
