//! Node selection: [`Tree::prune`] with its criteria, name patterns and
//! conditions compiled on first use, as python does.

use std::cell::OnceCell;
use std::path::PathBuf;

use super::walk::absolute;
use super::{Node, PruneCriteria, Tree};
use crate::condition;
use crate::error::{Error, ErrorKind, Result};
use crate::filter::{self, FilterOptions};
use crate::pyre;

impl Tree {
    /// The climbed nodes that meet every criterion, in climb order. Criteria
    /// are tested in python's order (keys, names, sources, filters,
    /// conditions); a filter or condition that refers to a missing key
    /// means "not selected", any other failure is an error.
    pub fn prune(&self, whole: bool, criteria: &PruneCriteria) -> Result<Vec<&Node>> {
        let names: Vec<LazyRegex<'_>> = criteria.names.iter().map(LazyRegex::new).collect();
        let sources: Vec<PathBuf> = criteria
            .sources
            .iter()
            .map(|s| absolute(s))
            .collect::<Result<_>>()?;
        let conditions: Vec<LazyCondition<'_>> =
            criteria.conditions.iter().map(LazyCondition::new).collect();
        let mut selected = Vec::new();
        'nodes: for node in self.climb(whole) {
            if !criteria.keys.iter().all(|k| node.data.contains_key(k)) {
                continue;
            }
            if !names.is_empty() {
                // python builds the whole list before `any`
                let mut any = false;
                for name in &names {
                    any |= name.get()?.search(&node.name);
                }
                if !any {
                    continue;
                }
            }
            if !sources.is_empty() && !node.sources.iter().any(|s| sources.contains(s)) {
                continue;
            }
            let options = FilterOptions {
                sensitive: true,
                regexp: true,
                name: Some(node.name.as_str()),
            };
            let mut all = true;
            for expr in &criteria.filters {
                match filter::filter(expr, &node.data, options) {
                    Ok(result) => all &= result,
                    Err(filter::FilterError::Filter(_)) => continue 'nodes,
                    Err(e @ filter::FilterError::Regex(_)) => {
                        return Err(Error::new(
                            ErrorKind::GeneralError,
                            format!("Invalid filter '{expr}': {e}"),
                        ));
                    }
                }
            }
            if !all {
                continue;
            }
            for condition in &conditions {
                match condition.get()?.evaluate(&node.data) {
                    Ok(result) => all &= result,
                    Err(condition::ConditionError::Missing(_)) => continue 'nodes,
                    Err(e) => {
                        return Err(Error::new(
                            ErrorKind::GeneralError,
                            format!("Invalid condition '{}': {e}", condition.source),
                        ));
                    }
                }
            }
            if all {
                selected.push(node);
            }
        }
        Ok(selected)
    }
}

/// A name regex compiled on first use: python compiles inside `re.search`,
/// so a bad pattern is only an error once some node reaches it.
struct LazyRegex<'a> {
    source: &'a str,
    compiled: OnceCell<std::result::Result<pyre::PyRegex, pyre::PyReError>>,
}

impl<'a> LazyRegex<'a> {
    fn new(source: &'a String) -> Self {
        LazyRegex {
            source,
            compiled: OnceCell::new(),
        }
    }

    fn get(&self) -> Result<&pyre::PyRegex> {
        self.compiled
            .get_or_init(|| pyre::compile(self.source))
            .as_ref()
            .map_err(|e| {
                Error::new(
                    ErrorKind::GeneralError,
                    format!("Invalid name pattern '{}': {e}", self.source),
                )
            })
    }
}

/// A condition parsed on first use (python parses inside `eval`).
struct LazyCondition<'a> {
    source: &'a str,
    parsed: OnceCell<std::result::Result<condition::Condition, condition::ConditionError>>,
}

impl<'a> LazyCondition<'a> {
    fn new(source: &'a String) -> Self {
        LazyCondition {
            source,
            parsed: OnceCell::new(),
        }
    }

    fn get(&self) -> Result<&condition::Condition> {
        self.parsed
            .get_or_init(|| condition::Condition::parse(self.source))
            .as_ref()
            .map_err(|e| {
                Error::new(
                    ErrorKind::GeneralError,
                    format!("Invalid condition '{}': {e}", self.source),
                )
            })
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::super::fixtures::tree;
    use super::*;

    #[test]
    fn prune_criteria() {
        let (_dir, tree) = tree(&[
            ("a.fmf", "tag: [x]\nmanual: false\n"),
            ("b.fmf", "tag: [y]\n"),
            ("c.fmf", "other: 1\n"),
        ]);
        let tree = tree.unwrap();
        let pick = |criteria: PruneCriteria| -> Vec<String> {
            tree.prune(false, &criteria)
                .unwrap()
                .iter()
                .map(|n| n.name.clone())
                .collect()
        };
        assert_eq!(
            pick(PruneCriteria {
                keys: vec!["tag".into()],
                ..Default::default()
            }),
            ["/a", "/b"]
        );
        assert_eq!(
            pick(PruneCriteria {
                names: vec!["[bc]$".into()],
                ..Default::default()
            }),
            ["/b", "/c"]
        );
        assert_eq!(
            pick(PruneCriteria {
                filters: vec!["tag: y".into()],
                ..Default::default()
            }),
            ["/b"]
        );
        assert_eq!(
            pick(PruneCriteria {
                conditions: vec!["manual is False".into()],
                ..Default::default()
            }),
            ["/a"]
        );
        let bad = PruneCriteria {
            conditions: vec!["manual.x".into()],
            ..Default::default()
        };
        assert!(tree.prune(false, &bad).is_err());
    }
}
