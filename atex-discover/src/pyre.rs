//! Python `re` compatibility: compile Python patterns with fancy-regex and
//! provide `search`, `match`, full match and `sub` with Python semantics.
//!
//! OWNER: context/filter agent. Stub until implemented.
