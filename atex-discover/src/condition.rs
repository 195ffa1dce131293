//! The safe subset of fmf `condition` expressions (spec A.12).
//!
//! OWNER: tree agent. Stub until implemented.
