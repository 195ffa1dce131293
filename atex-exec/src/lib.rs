//! atex-exec: not implemented yet (a later issue builds it).
#![warn(missing_docs)]
