//! `adjust`: apply context-dependent rules to one node's data, as python
//! fmf 1.7 `Tree.adjust` does it (spec A.9).
//!
//! Deviation: a `when` that is neither a string nor a bool (null, int, list)
//! crashes python with a `TypeError`; here it is a format error.

use crate::context::{Context, MatchError};
use crate::error::{Error, ErrorKind, Result};
use crate::merge;
use crate::tree::{AdjustOptions, Undecided};
use crate::value::{Map, Value};

/// Rule keys that control a rule and are never merged into the data.
const CONTROL_KEYS: [&str; 3] = ["because", "continue", "when"];

/// Adjust the data of node `name`: its own rules (under `options.key`)
/// first, then `options.additional_rules`. A `continue: false` only stops
/// its own rule set. The rules key stays in the data.
pub(crate) fn adjust_node(
    data: &mut Map,
    name: &str,
    context: &Context,
    options: &AdjustOptions,
) -> Result<()> {
    let rules = match data.get(&options.key) {
        None => Vec::new(),
        Some(rule @ (Value::Map(_) | Value::KeyedMap(_))) => vec![rule.clone()],
        Some(Value::Seq(rules)) => rules.clone(),
        Some(other) => {
            return Err(Error::new(
                ErrorKind::FormatError,
                format!(
                    "Invalid adjust rule format in '{name}'. Should be a dictionary or a list of dictionaries, got '{}'.",
                    other.py_type_name()
                ),
            ));
        }
    };
    apply_rules(data, rules, name, context, options.undecided)?;
    apply_rules(
        data,
        options.additional_rules.clone(),
        name,
        context,
        options.undecided,
    )
}

fn apply_rules(
    data: &mut Map,
    rules: Vec<Value>,
    name: &str,
    context: &Context,
    undecided: Undecided,
) -> Result<()> {
    for rule in rules {
        let mut rule = match rule {
            Value::Map(rule) => rule,
            Value::KeyedMap(_) => {
                // python would crash merging a non-string key
                return Err(Error::new(
                    ErrorKind::FormatError,
                    format!("Adjust rule in '{name}' should have string keys only."),
                ));
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::FormatError,
                    "Adjust rule should be a dictionary.",
                ));
            }
        };
        let continue_ = match rule.get("continue") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(Error::new(
                    ErrorKind::FormatError,
                    format!(
                        "The 'continue' value should be bool, got '{}'.",
                        other.py_str()
                    ),
                ));
            }
        };
        let decision = match rule.get("when") {
            None => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Str(when)) => context.matches(when),
            Some(other) => {
                return Err(Error::new(
                    ErrorKind::FormatError,
                    format!(
                        "Invalid 'when' in an adjust rule of '{name}': should be a string or bool, got '{}'.",
                        other.py_type_name()
                    ),
                ));
            }
        };
        match decision {
            Ok(true) => {
                let stop = !continue_;
                for key in CONTROL_KEYS {
                    rule.shift_remove(key);
                }
                merge::merge_special(data, rule, name)?;
                if stop {
                    break;
                }
            }
            Ok(false) => {}
            Err(MatchError::CannotDecide) => {
                if undecided == Undecided::Raise {
                    let when = rule.get("when").map(Value::py_str).unwrap_or_default();
                    return Err(Error::new(
                        ErrorKind::CannotDecide,
                        format!("Cannot decide rule '{when}' in '{name}'."),
                    ));
                }
            }
            Err(MatchError::InvalidRule(message)) => {
                return Err(Error::new(ErrorKind::InvalidRule, message));
            }
        }
    }
    Ok(())
}
