//! `adjust`: apply context-dependent rules to every node.
//!
//! OWNER: tree agent. Stub until implemented.
