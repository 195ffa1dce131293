//! The tmt layer: tests and plans on top of the fmf tree.
//!
//! OWNER: tmt agent. Stub until implemented.
