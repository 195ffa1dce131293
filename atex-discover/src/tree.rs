//! The fmf tree: root discovery, directory walk, virtual children,
//! directives, inheritance, climb order, prune.
//!
//! OWNER: tree agent. Stub until implemented; the public API below is the
//! contract the tmt layer codes against.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::value::Map;

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

/// A loaded fmf tree.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    nodes: Vec<Node>,
}

impl Tree {
    /// Find the tree root from `path` (walking up to the directory holding
    /// `.fmf/`), walk it and run inheritance.
    pub fn load(path: &Path) -> Result<Tree> {
        let _ = path;
        Err(Error::new(ErrorKind::GeneralError, "tree: not implemented yet"))
    }

    /// The tree's root directory (the one holding `.fmf/`).
    pub fn root(&self) -> &Path {
        &self.root
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
}
