//! The `tree` subcommand: every node of an fmf tree (after adjust and
//! prune) as one JSON line, in the conformance corpus' `tree` mode format.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::CliError;
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::tree::{AdjustOptions, Node, PruneCriteria, Tree, Undecided};
use crate::value::Value;

/// Arguments of `atex-discover tree`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Output: one line per node, keys sorted, sources relative to the tree root:
  {\"data\":{...},\"leaf\":true,\"name\":\"/a/b\",\"select\":true,\"sources\":[\"main.fmf\",\"a/b.fmf\"]}
On error: one line {\"error\":\"FormatError\",\"message\":\"...\"} and exit status 2.

Examples:
  atex-discover tree . --selected
  atex-discover tree tests/ -c distro=fedora-41 -c arch=x86_64 --case-insensitive
  atex-discover tree . --adjust --filter 'tag: tier1' --condition 'manual is False'")]
pub struct Args {
    /// A directory inside the tree (the root is found by walking up to the
    /// directory holding `.fmf/`).
    #[arg(value_name = "TREE")]
    pub tree: PathBuf,
    /// A context dimension and its values, `DIM=V1,V2` (repeatable); any
    /// context runs adjust.
    #[arg(short = 'c', long = "context", value_name = "DIM=V1,V2")]
    pub context: Vec<String>,
    /// Run adjust even with an empty context.
    #[arg(long)]
    pub adjust: bool,
    /// The data key holding the adjust rules.
    #[arg(long, value_name = "KEY", default_value = "adjust")]
    pub adjust_key: String,
    /// Compare context names and versions case-insensitively (as tmt does).
    #[arg(long)]
    pub case_insensitive: bool,
    /// What to do with rules the context cannot decide.
    #[arg(long, value_name = "HOW", default_value = "skip", value_parser = ["skip", "raise"])]
    pub undecided: String,
    /// Extra rules applied to every node after its own (a JSON list or
    /// mapping, like tmt's `adjust-tests`); runs adjust.
    #[arg(long, value_name = "JSON")]
    pub additional_rules: Option<String>,
    /// Only nodes `fmf ls` lists: leaves and `select: true` branches.
    #[arg(long)]
    pub selected: bool,
    /// An fmf filter every listed node must match (repeatable).
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// A condition every listed node must satisfy (repeatable; a safe
    /// subset of Python expressions).
    #[arg(long = "condition", value_name = "EXPR")]
    pub conditions: Vec<String>,
    /// A key every listed node must have (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// A Python regex searched in node names; any must match (repeatable).
    #[arg(long = "name", value_name = "REGEX")]
    pub names: Vec<String>,
    /// Leave `sources` out of the records.
    #[arg(long)]
    pub no_sources: bool,
    /// Sort the lines by full node name instead of climb order.
    #[arg(long)]
    pub by_name: bool,
}

/// Run the subcommand.
pub fn run(args: Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let context = Context::from_cli(&args.context).map_err(|e| CliError::Usage(e.to_string()))?;
    let output = match records(&args, &context) {
        Ok(lines) => {
            let mut output = String::new();
            for line in lines {
                output.push_str(&line);
                output.push('\n');
            }
            output
        }
        Err(error) => {
            // python's message: the location is not part of it
            let message = error.message().to_owned();
            // the corpus oracle hides the absolute path the same way
            let message = match crate::tree::absolute_path(&args.tree) {
                Ok(root) => message.replace(&root.display().to_string(), "<root>"),
                Err(_) => message,
            };
            let mut record = serde_json::Map::new();
            record.insert("error".into(), error.kind().as_str().into());
            record.insert("message".into(), message.into());
            writeln!(out, "{}", serde_json::Value::Object(record))?;
            return Ok(atex_shared::exit::INVALID);
        }
    };
    out.write_all(output.as_bytes())?;
    Ok(atex_shared::exit::SUCCESS)
}

fn records(args: &Args, context: &Context) -> Result<Vec<String>, Error> {
    let mut tree = Tree::load(&args.tree)?;
    super::warn_skipped(tree.skipped());
    if !args.context.is_empty() || args.adjust || args.additional_rules.is_some() {
        let additional_rules = match &args.additional_rules {
            None => Vec::new(),
            Some(text) => {
                let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                    Error::new(
                        ErrorKind::GeneralError,
                        format!("Invalid --additional-rules JSON: {e}"),
                    )
                })?;
                match Value::from_json(&json) {
                    Value::Null => Vec::new(),
                    Value::Seq(rules) => rules,
                    rule @ Value::Map(_) => vec![rule],
                    // python iterates whatever it got; none of it is a rule
                    _ => {
                        return Err(Error::new(
                            ErrorKind::FormatError,
                            "Adjust rule should be a dictionary.",
                        ));
                    }
                }
            }
        };
        let options = AdjustOptions {
            key: args.adjust_key.clone(),
            undecided: if args.undecided == "raise" {
                Undecided::Raise
            } else {
                Undecided::Skip
            },
            case_sensitive: !args.case_insensitive,
            additional_rules,
            ..AdjustOptions::default()
        };
        tree.adjust(context, &options)?;
    }
    let whole = !args.selected;
    let nodes: Vec<&Node> = if args.filters.is_empty()
        && args.conditions.is_empty()
        && args.keys.is_empty()
        && args.names.is_empty()
    {
        tree.climb(whole).collect()
    } else {
        let criteria = PruneCriteria {
            keys: args.keys.clone(),
            names: args.names.clone(),
            sources: Vec::new(),
            filters: args.filters.clone(),
            conditions: args.conditions.clone(),
        };
        tree.prune(whole, &criteria)?
    };
    let mut lines: Vec<(&str, String)> = nodes
        .into_iter()
        .map(|node| {
            (
                node.name.as_str(),
                record(node, tree.root(), !args.no_sources),
            )
        })
        .collect();
    if args.by_name {
        lines.sort_by(|a, b| a.0.cmp(b.0));
    }
    let lines = lines.into_iter().map(|(_, line)| line).collect();
    // The process ends right after this; freeing every node of a big tree
    // one allocation at a time would cost more than loading it.
    std::mem::forget(tree);
    Ok(lines)
}

/// One node as a compact JSON object with sorted keys at every depth.
fn record(node: &Node, root: &Path, sources: bool) -> String {
    let mut record = serde_json::Map::new();
    record.insert(
        "data".into(),
        sorted(serde_json::Value::Object(
            node.data
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )),
    );
    record.insert("leaf".into(), node.leaf.into());
    record.insert("name".into(), node.name.as_str().into());
    record.insert("select".into(), node.select.into());
    if sources {
        let relative: Vec<serde_json::Value> = node
            .sources
            .iter()
            .map(|s| {
                s.strip_prefix(root)
                    .unwrap_or(s)
                    .display()
                    .to_string()
                    .into()
            })
            .collect();
        record.insert("sources".into(), relative.into());
    }
    serde_json::Value::Object(record).to_string()
}

/// Sort object keys recursively (python `json.dumps(sort_keys=True)`).
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(object) => {
            let mut pairs: Vec<(String, serde_json::Value)> = object.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(pairs.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}
