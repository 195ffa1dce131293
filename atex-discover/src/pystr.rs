//! Python `str()` and `repr()` of [`crate::Value`]s (`True`, `None`, `1.0`,
//! `1e+16`, `{'a': 1}`), which fmf filters and tmt environments depend on.
//!
//! OWNER: context/filter agent. Stub until implemented.
