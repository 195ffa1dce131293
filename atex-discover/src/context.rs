//! fmf contexts and the `when` rule grammar, with three-valued evaluation.
//!
//! OWNER: context/filter agent. Stub until implemented.

use indexmap::IndexMap;

/// An fmf context: dimension -> values, plus case sensitivity.
#[derive(Debug, Clone, Default)]
pub struct Context {
    dimensions: IndexMap<String, Vec<String>>,
    case_sensitive: bool,
}

/// Why a rule did not give true or false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchError {
    /// The rule depends on a dimension the context does not define.
    CannotDecide,
    /// The rule cannot be parsed; the message says why.
    InvalidRule(String),
}

impl Context {
    /// A context from `dimension -> values` (values as `tmt -c` splits them).
    pub fn new(dimensions: IndexMap<String, Vec<String>>) -> Self {
        Context { dimensions, case_sensitive: true }
    }

    /// Set case sensitivity of name and version comparisons (not of `~`).
    pub fn set_case_sensitive(&mut self, case_sensitive: bool) {
        self.case_sensitive = case_sensitive;
    }

    /// Evaluate a rule string.
    pub fn matches(&self, rule: &str) -> Result<bool, MatchError> {
        let _ = (rule, &self.dimensions, self.case_sensitive);
        Err(MatchError::InvalidRule("not implemented yet".into()))
    }
}
