//! The fmf tree: root discovery, directory walk, virtual children,
//! directives, inheritance, climb order, adjust and prune (spec A.1-A.9,
//! A.14), with python fmf 1.7 semantics.
//!
//! Loading has three steps: the directory walk lists the fmf files and the
//! order python would meet them in (it never depends on file contents), the
//! files are read and parsed on every core, and the raw nodes are built by
//! replaying the walk, so the first error reported is the one python meets
//! first. [`RawTree`] keeps each node's own data in climb order (pre-order,
//! siblings sorted by name segment); its visits run inheritance node by node
//! with a stack of the ancestors' data, and [`Tree::load`] keeps every
//! node's result.
//!
//! Deliberate deviations from python fmf (see `docs/deviations.md`):
//! - a child value (a `/child:` key or a whole non-`main` file) that is not a
//!   mapping or null is a format error; python treats a string as a
//!   directory path relative to the CWD and crashes on other types;
//! - non-string keys at node level, and a list or scalar `main.fmf`, are
//!   format errors (python crashes);
//! - values are never shared: YAML aliases and adjust rules are copies;
//! - a directory the walk cannot read is skipped as in python, but listed
//!   in [`Tree::skipped`] for the caller to warn about.
//!
//! The submodules: `walk` finds the root, reads `.fmf/` and lists the walk;
//! `build` parses the files and builds the raw nodes in walk order; `raw`
//! holds [`RawTree`] and its inheritance visits; `prune` selects nodes.

mod build;
mod prune;
mod raw;
mod walk;

use std::path::{Path, PathBuf};

use crate::adjust;
use crate::context::Context;
use crate::error::Result;
use crate::value::{Map, Value};

pub use raw::{RawTree, Visited};
pub(crate) use walk::absolute_path;

/// One node of a loaded tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// Full name, `/` for the root, `/a/b` below.
    pub name: String,
    /// The node's data after inheritance (and after adjust once run).
    pub data: Map,
    /// Absolute paths of the source files, parents' first.
    pub sources: Vec<PathBuf>,
    /// Whether the node has no children.
    pub leaf: bool,
    /// The `select` directive, or `leaf` when none was given.
    pub select: bool,
}

/// A directory the walk could not read (no permission, a path longer than
/// `PATH_MAX`, an I/O error). Python fmf skips it without a word (os.walk);
/// atex skips it too and hands it to the caller to warn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The directory.
    pub path: PathBuf,
    /// The OS's reason (`Permission denied (os error 13)`).
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped {}: {}", self.path.display(), self.reason)
    }
}

/// A loaded fmf tree.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    /// Nodes in climb order.
    nodes: Vec<Node>,
    /// Directories the walk could not read.
    skipped: Vec<Skipped>,
}

/// What to do with a rule whose dimension is not in the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Undecided {
    /// Skip the rule (fmf's default, and what tmt does).
    #[default]
    Skip,
    /// Fail with a [`ErrorKind::CannotDecide`](crate::error::ErrorKind::CannotDecide) error.
    Raise,
}

/// Options of [`Tree::adjust`], as python `Tree.adjust` takes them.
#[derive(Debug, Clone)]
pub struct AdjustOptions {
    /// The data key holding the rules (`adjust`).
    pub key: String,
    /// What to do with undecidable rules.
    pub undecided: Undecided,
    /// Compare context names and versions case-sensitively (tmt: false).
    pub case_sensitive: bool,
    /// Rules applied to every node after its own rules (tmt's
    /// `adjust-tests`); each item should be a mapping.
    pub additional_rules: Vec<Value>,
    /// The files `additional_rules` are written in, and the key holding
    /// them there: where their errors are located.
    pub additional_sources: Vec<PathBuf>,
    /// See `additional_sources`.
    pub additional_key: String,
}

impl Default for AdjustOptions {
    fn default() -> Self {
        AdjustOptions {
            key: "adjust".to_owned(),
            undecided: Undecided::Skip,
            case_sensitive: true,
            additional_rules: Vec::new(),
            additional_sources: Vec::new(),
            additional_key: "adjust-tests".to_owned(),
        }
    }
}

/// Selection criteria of [`Tree::prune`]; every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct PruneCriteria {
    /// Keys that must all be present in the data.
    pub keys: Vec<String>,
    /// Python regexes; any must be found (`re.search`) in the node name.
    pub names: Vec<String>,
    /// Source files (relative to the CWD or absolute); any must be among the
    /// node's sources.
    pub sources: Vec<PathBuf>,
    /// fmf filter expressions; all must hold.
    pub filters: Vec<String>,
    /// Condition expressions (the safe subset of spec A.12); all must hold.
    pub conditions: Vec<String>,
}

impl Tree {
    /// Find the tree root from `path` (walking up to the directory holding
    /// `.fmf/`), walk it and run inheritance.
    pub fn load(path: &Path) -> Result<Tree> {
        let raw = RawTree::load(path)?;
        let root = raw.root().to_path_buf();
        let skipped = raw.skipped().to_vec();
        let mut nodes = Vec::with_capacity(raw.len());
        raw.into_visit(|node| {
            nodes.push(Node {
                name: node.name.to_owned(),
                data: node.data.into_owned(),
                sources: node.sources.into_owned(),
                leaf: node.leaf,
                select: node.select,
            });
        })?;
        Ok(Tree {
            root,
            nodes,
            skipped,
        })
    }

    /// The tree's root directory (the one holding `.fmf/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directories the walk could not read and skipped; see
    /// [`Skipped`].
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Nodes in climb order (pre-order, siblings sorted by name segment);
    /// with `whole` false only selected nodes (leaves and `select: true`).
    pub fn climb(&self, whole: bool) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| whole || n.select)
    }

    /// The node with exactly this name.
    pub fn find(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Apply the context-dependent rules of every node (spec A.9). Each node
    /// uses its own inherited rules; an invalid rule aborts the whole run.
    pub fn adjust(&mut self, context: &Context, options: &AdjustOptions) -> Result<()> {
        let mut context = context.clone();
        context.set_case_sensitive(options.case_sensitive);
        let mut decisions = adjust::Decisions::default();
        for node in &mut self.nodes {
            adjust::adjust_node(
                &mut node.data,
                &node.name,
                &node.sources,
                &context,
                options,
                &mut decisions,
            )?;
        }
        Ok(())
    }
}

/// Fixtures shared by the submodules' tests.
#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod fixtures {
    use std::fs;
    use std::path::Path;

    use super::Tree;
    use crate::error::Result;

    pub(super) fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    pub(super) fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Tree>) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".fmf/version", "1\n");
        for (file, text) in files {
            write(dir.path(), file, text);
        }
        let tree = Tree::load(dir.path());
        (dir, tree)
    }

    pub(super) fn names(tree: &Tree, whole: bool) -> Vec<&str> {
        tree.climb(whole).map(|n| n.name.as_str()).collect()
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use indexmap::IndexMap;

    use super::fixtures::tree;
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn adjust_rules() {
        let (_dir, tree) = tree(&[(
            "main.fmf",
            "adjust:\n  - when: distro == fedora\n    x: 1\n    continue: false\n  - x: 2\n/t: {}\n",
        )]);
        let mut tree = tree.unwrap();
        let mut dims = IndexMap::new();
        dims.insert("distro".to_owned(), vec!["fedora-41".to_owned()]);
        let extra = Value::Map(Box::new(
            [("y".to_owned(), Value::Int(3))].into_iter().collect(),
        ));
        let options = AdjustOptions {
            additional_rules: vec![extra],
            ..Default::default()
        };
        tree.adjust(&Context::new(dims), &options).unwrap();
        let t = tree.find("/t").unwrap();
        assert_eq!(t.data.get("x"), Some(&Value::Int(1)));
        assert_eq!(t.data.get("y"), Some(&Value::Int(3)));
        assert!(t.data.contains_key("adjust"));
        let raise = AdjustOptions {
            undecided: Undecided::Raise,
            ..Default::default()
        };
        let error = tree.adjust(&Context::default(), &raise).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::CannotDecide);
    }
}
