//! Inheritance merge: `merge_special` with every suffix (`+ +< - -~ ~`).
//!
//! OWNER: tree agent. Stub until implemented.
