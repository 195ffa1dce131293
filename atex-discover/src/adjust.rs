//! `adjust`: apply context-dependent rules to one node's data, as python
//! fmf 1.7 `Tree.adjust` does it (spec A.9).
//!
//! Deviation: a `when` that is neither a string nor a bool (null, int, list)
//! crashes python with a `TypeError`; here it is a format error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;

use crate::context::{Context, MatchError};
use crate::error::{Error, ErrorKind, Result};
use crate::merge;
use crate::tmt::locate;
use crate::tree::{AdjustOptions, Undecided};
use crate::value::{Map, Value};

/// Rule keys that control a rule and are never merged into the data.
const CONTROL_KEYS: [&str; 3] = ["because", "continue", "when"];

/// Adjust the data of node `name`: its own rules (under `options.key`)
/// first, then `options.additional_rules`. A `continue: false` only stops
/// its own rule set. The rules key stays in the data. An error is located
/// in `sources` (the node's files) for its own rules, and in
/// `options.additional_sources` for the additional ones.
pub(crate) fn adjust_node(
    data: &mut Map,
    name: &str,
    sources: &[PathBuf],
    context: &Context,
    options: &AdjustOptions,
    decisions: &mut Decisions,
) -> Result<()> {
    adjust_data(
        &mut Slot::Mut(data),
        name,
        sources,
        context,
        options,
        decisions,
    )
}

/// The decisions of `when` rules already met, for one context: every node
/// repeats its ancestors' rules, and a decision depends only on the rule
/// text and the context.
#[derive(Debug, Clone, Default)]
pub(crate) struct Decisions(HashMap<String, std::result::Result<bool, MatchError>>);

impl Decisions {
    fn decide(&mut self, context: &Context, when: &str) -> std::result::Result<bool, MatchError> {
        if let Some(decision) = self.0.get(when) {
            return decision.clone();
        }
        let decision = context.matches(when);
        self.0.insert(when.to_owned(), decision.clone());
        decision
    }
}

/// [`adjust_node`] on data that may be borrowed: it is copied only when a
/// rule applies, so checking nodes that no rule changes costs no copy.
pub(crate) fn adjust_cow(
    data: &mut Cow<'_, Map>,
    name: &str,
    sources: &[PathBuf],
    context: &Context,
    options: &AdjustOptions,
    decisions: &mut Decisions,
) -> Result<()> {
    adjust_data(
        &mut Slot::Cow(data),
        name,
        sources,
        context,
        options,
        decisions,
    )
}

/// The data being adjusted: owned in place, or copied on first write.
enum Slot<'s, 'd> {
    Mut(&'s mut Map),
    Cow(&'s mut Cow<'d, Map>),
}

impl Slot<'_, '_> {
    fn read(&self) -> &Map {
        match self {
            Slot::Mut(map) => map,
            Slot::Cow(cow) => cow,
        }
    }

    fn write(&mut self) -> &mut Map {
        match self {
            Slot::Mut(map) => map,
            Slot::Cow(cow) => cow.to_mut(),
        }
    }
}

fn adjust_data(
    data: &mut Slot<'_, '_>,
    name: &str,
    sources: &[PathBuf],
    context: &Context,
    options: &AdjustOptions,
    decisions: &mut Decisions,
) -> Result<()> {
    let own_place = Place {
        sources,
        key: &options.key,
    };
    let own = match data.read().get(&options.key) {
        None => 0,
        Some(Value::Map(_) | Value::KeyedMap(_)) => 1,
        Some(Value::Seq(rules)) => rules.len(),
        Some(other) => {
            let error = Error::new(
                ErrorKind::FormatError,
                format!(
                    "Invalid adjust rule format in '{name}'. Should be a dictionary or a list of dictionaries, got '{}'.",
                    other.py_type_name()
                ),
            );
            return Err(own_place.locate(error, None));
        }
    };
    // python iterates the rule list it read first, even if a rule replaces
    // the rules key; only then is a snapshot needed. Otherwise rules are
    // read in place and only matching ones are copied.
    let touches_key = |rule: &Value| {
        rule.as_map().is_some_and(|m| {
            m.keys().any(|k| {
                k.starts_with(options.key.as_str()) && merge::split_suffix(k).0 == options.key
            })
        })
    };
    let snapshot = match data.read().get(&options.key) {
        Some(Value::Seq(rules)) if rules.iter().any(touches_key) => Some(rules.clone()),
        Some(rule) if touches_key(rule) => Some(vec![rule.clone()]),
        _ => None,
    };
    match snapshot {
        Some(rules) => apply_rules(
            data,
            Rules::Owned(&rules),
            name,
            context,
            options.undecided,
            decisions,
        ),
        None => apply_rules(
            data,
            Rules::InData(&options.key, own),
            name,
            context,
            options.undecided,
            decisions,
        ),
    }
    .map_err(|(error, when)| own_place.locate(error, when.as_deref()))?;
    let additional_place = Place {
        sources: &options.additional_sources,
        key: &options.additional_key,
    };
    apply_rules(
        data,
        Rules::Owned(&options.additional_rules),
        name,
        context,
        options.undecided,
        decisions,
    )
    .map_err(|(error, when)| additional_place.locate(error, when.as_deref()))
}

/// Where a rule set is written, to locate its errors: rules are values in
/// the data, which no longer know their place, so the place is searched
/// in the files only when an error needs it.
struct Place<'a> {
    sources: &'a [PathBuf],
    /// The key holding the rules.
    key: &'a str,
}

impl Place<'_> {
    /// `error` located at the rule's `when: <when>` line when `when` is
    /// given and found, else at the rules key, else in the last source.
    fn locate(&self, error: Error, when: Option<&str>) -> Error {
        if error.location().is_some() {
            return error;
        }
        let location = when
            .and_then(|when| locate::locate_value(self.sources, "when", when))
            .or_else(|| locate::locate_key(self.sources, self.key));
        match (location, self.sources.last()) {
            (Some(location), _) => error.at(location),
            (None, Some(path)) => error.in_file(path),
            (None, None) => error,
        }
    }
}

/// An error of a rule set, with the `when` text of the rule it is about.
type RuleError = (Error, Option<String>);

/// Where a rule set lives.
#[derive(Clone, Copy)]
enum Rules<'r> {
    /// A list that does not change while it is applied.
    Owned(&'r [Value]),
    /// `count` rules under this key of the node data (a list, or one
    /// mapping when the value is not a list).
    InData(&'r str, usize),
}

impl Rules<'_> {
    fn len(self) -> usize {
        match self {
            Rules::Owned(rules) => rules.len(),
            Rules::InData(_, count) => count,
        }
    }

    fn get<'d>(self, data: &'d Map, index: usize) -> Option<&'d Value>
    where
        Self: 'd,
    {
        match self {
            Rules::Owned(rules) => rules.get(index),
            Rules::InData(key, _) => match data.get(key)? {
                Value::Seq(rules) => rules.get(index),
                rule => Some(rule),
            },
        }
    }
}

fn apply_rules(
    data: &mut Slot<'_, '_>,
    rules: Rules<'_>,
    name: &str,
    context: &Context,
    undecided: Undecided,
    decisions: &mut Decisions,
) -> std::result::Result<(), RuleError> {
    for index in 0..rules.len() {
        let Some(rule) = rules.get(data.read(), index) else {
            break;
        };
        let rule = match rule {
            Value::Map(rule) => rule,
            Value::KeyedMap(_) => {
                // python would crash merging a non-string key
                return Err((
                    Error::new(
                        ErrorKind::FormatError,
                        format!("Adjust rule in '{name}' should have string keys only."),
                    ),
                    None,
                ));
            }
            _ => {
                return Err((
                    Error::new(
                        ErrorKind::FormatError,
                        "Adjust rule should be a dictionary.",
                    ),
                    None,
                ));
            }
        };
        let when_text = || match rule.get("when") {
            Some(Value::Str(when)) => Some(when.clone()),
            _ => None,
        };
        let continue_ = match rule.get("continue") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                let error = Error::new(
                    ErrorKind::FormatError,
                    format!(
                        "The 'continue' value should be bool, got '{}'.",
                        other.py_str()
                    ),
                );
                return Err((error, when_text()));
            }
        };
        let decision = match rule.get("when") {
            None => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Str(when)) => decisions.decide(context, when),
            Some(other) => {
                let error = Error::new(
                    ErrorKind::FormatError,
                    format!(
                        "Invalid 'when' in an adjust rule of '{name}': should be a string or bool, got '{}'.",
                        other.py_type_name()
                    ),
                );
                return Err((error, None));
            }
        };
        match decision {
            Ok(true) => {
                // The rule is copied, in order, straight into the data.
                let apply: Vec<(String, Value)> = rule
                    .iter()
                    .filter(|(k, _)| !CONTROL_KEYS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                // (the rule borrows the data: its error is located at the
                // rules key)
                merge::merge_special_pairs(data.write(), apply, name).map_err(|e| (e, None))?;
                if !continue_ {
                    break;
                }
            }
            Ok(false) => {}
            Err(MatchError::CannotDecide) => {
                if undecided == Undecided::Raise {
                    let when = rule.get("when").map(Value::py_str).unwrap_or_default();
                    let error = Error::new(
                        ErrorKind::CannotDecide,
                        format!("Cannot decide rule '{when}' in '{name}'."),
                    );
                    return Err((error, when_text()));
                }
            }
            Err(MatchError::InvalidRule(message)) => {
                return Err((Error::new(ErrorKind::InvalidRule, message), when_text()));
            }
        }
    }
    Ok(())
}
