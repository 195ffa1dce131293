//! The `ls` subcommand: node names like `fmf ls` (spec A.14).

use std::io::Write;
use std::path::PathBuf;

use crate::cli::CliError;
use crate::tree::{Node, PruneCriteria, Tree};

/// Selection arguments shared by `ls` and `show` (`fmf ls`/`fmf show`).
#[derive(Debug, Clone, clap::Args)]
pub struct Select {
    /// Directories inside fmf trees (each tree's root is found by walking
    /// up to the directory holding `.fmf/`).
    #[arg(value_name = "PATH", default_value = ".")]
    pub paths: Vec<PathBuf>,
    /// A key every listed node must have (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// A Python regex searched in node names; any must match (repeatable).
    #[arg(long = "name", value_name = "REGEX")]
    pub names: Vec<String>,
    /// An fmf filter every listed node must match (repeatable).
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// A condition every listed node must satisfy (repeatable; a safe
    /// subset of Python expressions such as `manual is False`).
    #[arg(long = "condition", value_name = "EXPR")]
    pub conditions: Vec<String>,
    /// List every node, branches included.
    #[arg(long)]
    pub whole: bool,
}

impl Select {
    /// Load each tree and prune it; trees in argument order, nodes in
    /// climb order.
    pub(crate) fn trees(&self) -> Result<Vec<Tree>, CliError> {
        let trees: Vec<Tree> = self
            .paths
            .iter()
            .map(|p| Tree::load(p).map_err(CliError::Invalid))
            .collect::<Result<_, _>>()?;
        for tree in &trees {
            super::warn_skipped(tree.skipped());
        }
        Ok(trees)
    }

    /// The selected nodes of one tree.
    pub(crate) fn nodes<'t>(&self, tree: &'t Tree) -> Result<Vec<&'t Node>, CliError> {
        let criteria = PruneCriteria {
            keys: self.keys.clone(),
            names: self.names.clone(),
            sources: Vec::new(),
            filters: self.filters.clone(),
            conditions: self.conditions.clone(),
        };
        Ok(tree.prune(self.whole, &criteria)?)
    }
}

/// Arguments of `atex-discover ls`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Prints one node name per line: leaves and `select: true` branches, or every
node with --whole. Names are red when stdout is a terminal (COLOR=0 turns
colour off, COLOR=1 forces it).

Examples:
  atex-discover ls
  atex-discover ls tests/ --filter 'tag: tier1' --condition 'manual is False'
  atex-discover ls --whole --name '^/plans'")]
pub struct Args {
    /// What to list.
    #[command(flatten)]
    pub select: Select,
}

/// Whether to colour the output, as fmf decides it: `COLOR=0` off,
/// `COLOR=1` on, otherwise on for a terminal.
pub(crate) fn colour() -> bool {
    use std::io::IsTerminal as _;
    match std::env::var("COLOR").ok().as_deref() {
        Some("0") => false,
        Some("1") => true,
        _ => std::io::stdout().is_terminal(),
    }
}

/// `fmf.utils.color(text, colour)`.
pub(crate) fn paint(text: &str, code: &str, enabled: bool) -> String {
    if enabled {
        format!("\x1b[{code}m{text}\x1b[1;m")
    } else {
        text.to_owned()
    }
}

/// Run the subcommand.
pub fn run(args: Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let colour = colour();
    let trees = args.select.trees()?;
    // Build everything first: on error nothing reaches stdout.
    let mut output = String::new();
    for tree in &trees {
        for node in args.select.nodes(tree)? {
            output.push_str(&paint(&node.name, "0;31", colour));
            output.push('\n');
        }
    }
    // The process ends right after this; freeing every node of a big tree
    // one allocation at a time would cost more than loading it.
    std::mem::forget(trees);
    out.write_all(output.as_bytes())?;
    Ok(atex_shared::exit::SUCCESS)
}
