//! fmf filter expressions (`tag: A, B & tier: 1 | tag: -C`).
//!
//! OWNER: context/filter agent. Stub until implemented.

use crate::value::Map;

/// Options of [`filter`], as `fmf.utils.filter` takes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterOptions<'a> {
    /// Compare case-sensitively (default in fmf).
    pub sensitive: bool,
    /// Values are Python regexes matched against whole items.
    pub regexp: bool,
    /// The node name, for name literals (no `:`).
    pub name: Option<&'a str>,
}

/// Why a filter could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// fmf's `FilterError` (unknown dimension, name literal without name).
    #[error("{0}")]
    Filter(String),
    /// A regex in the filter does not compile (python `re.error`).
    #[error("invalid regular expression: {0}")]
    Regex(String),
}

/// Evaluate `expr` against `data`.
pub fn filter(expr: &str, data: &Map, options: FilterOptions<'_>) -> Result<bool, FilterError> {
    let _ = (expr, data, options);
    Err(FilterError::Filter("not implemented yet".into()))
}
