//! The `show` subcommand: nodes and their data for people, like
//! `fmf show` (spec A.14).
//!
//! Strings and lists of strings print exactly as fmf prints them; other
//! values go through an emulation of Python's `pprint.pformat` (width 80,
//! sorted dict keys) that covers dicts, lists and strings; other long
//! containers (sets, binary) stay on one line.

use std::io::Write;

use crate::cli::CliError;
use crate::cmd::ls::{Select, colour, paint};
use crate::tree::Node;
use crate::value::{Map, Value};

/// Arguments of `atex-discover show`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Prints each selected node's name, then one `key: value` line per key in
sorted order, with a blank line between nodes.

Examples:
  atex-discover show tests/basic
  atex-discover show --key test --filter 'tier: 1'
  atex-discover show --whole --name '^/plans/'")]
pub struct Args {
    /// What to show.
    #[command(flatten)]
    pub select: Select,
}

/// Run the subcommand.
pub fn run(args: Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let colour = colour();
    let trees = args.select.trees()?;
    // Build everything first: on error nothing reaches stdout.
    let mut shown = Vec::new();
    for tree in &trees {
        for node in args.select.nodes(tree)? {
            shown.push(show(node, colour));
        }
    }
    // The process ends right after this; freeing every node of a big tree
    // one allocation at a time would cost more than loading it.
    std::mem::forget(trees);
    out.write_all(shown.join("\n").as_bytes())?;
    Ok(atex_shared::exit::SUCCESS)
}

/// python `Tree.show()` for one node.
fn show(node: &Node, colour: bool) -> String {
    let mut output = paint(&node.name, "0;31", colour);
    let mut keys: Vec<&String> = node.data.keys().collect();
    keys.sort();
    for key in keys {
        output.push('\n');
        output.push_str(&paint(key, "0;32", colour));
        output.push_str(": ");
        output.push_str(&render(&node.data[key]));
    }
    output.push('\n');
    output
}

fn render(value: &Value) -> String {
    match value {
        Value::Str(text) => text.trim_end_matches('\n').to_owned(),
        Value::Seq(items) if items.iter().all(|i| matches!(i, Value::Str(_))) => {
            listed(items.iter().filter_map(Value::as_str).collect())
        }
        other => {
            let mut out = String::new();
            pformat(&sorted_dicts(other), &mut out, 0, 0, 0);
            out
        }
    }
}

/// `fmf.utils.listed`: `a`, `a and b`, `a, b and c`.
fn listed(items: Vec<&str>) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The width `pprint.pformat` fills.
const WIDTH: usize = 80;

fn width_of(text: &str) -> usize {
    text.chars().count()
}

/// python `PrettyPrinter._format` (indent 1, width 80, not compact) for
/// dicts, lists and strings; everything else is its `repr`.
fn pformat(value: &Value, out: &mut String, indent: usize, allowance: usize, level: usize) {
    let rep = value.py_repr();
    if width_of(&rep) + indent + allowance <= WIDTH {
        out.push_str(&rep);
        return;
    }
    let level = level + 1;
    match value {
        Value::Map(map) if !map.is_empty() => {
            out.push('{');
            let indent = indent + 1;
            let last = map.len() - 1;
            for (i, (key, item)) in map.iter().enumerate() {
                let key_rep = Value::Str(key.clone()).py_repr();
                out.push_str(&key_rep);
                out.push_str(": ");
                let item_allowance = if i == last { allowance + 1 } else { 1 };
                pformat(
                    item,
                    out,
                    indent + width_of(&key_rep) + 2,
                    item_allowance,
                    level,
                );
                if i != last {
                    out.push_str(",\n");
                    out.push_str(&" ".repeat(indent));
                }
            }
            out.push('}');
        }
        Value::Seq(items) if !items.is_empty() => {
            out.push('[');
            let indent = indent + 1;
            let last = items.len() - 1;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                    out.push_str(&" ".repeat(indent));
                }
                let item_allowance = if i == last { allowance + 1 } else { 1 };
                pformat(item, out, indent, item_allowance, level);
            }
            out.push(']');
        }
        Value::Str(text) if !text.is_empty() => {
            pformat_str(text, out, indent, allowance, level, &rep)
        }
        _ => out.push_str(&rep),
    }
}

/// python `PrettyPrinter._pprint_str`: split a long string into adjacent
/// literals at line ends and whitespace.
fn pformat_str(
    text: &str,
    out: &mut String,
    indent: usize,
    allowance: usize,
    level: usize,
    rep: &str,
) {
    let (indent, allowance) = if level == 1 {
        (indent + 1, allowance + 1)
    } else {
        (indent, allowance)
    };
    let repr = |s: &str| Value::Str(s.to_owned()).py_repr();
    let max_width = WIDTH.saturating_sub(indent);
    let mut max_width1 = max_width;
    let mut chunks = Vec::new();
    let lines: Vec<&str> = text.split_inclusive(['\n', '\r']).collect();
    let mut last_rep = rep.to_owned();
    for (i, line) in lines.iter().enumerate() {
        let line_rep = repr(line);
        if i == lines.len() - 1 {
            max_width1 = max_width1.saturating_sub(allowance);
        }
        if width_of(&line_rep) <= max_width1 {
            last_rep.clone_from(&line_rep);
            chunks.push(line_rep);
            continue;
        }
        // alternating non-space / space runs, as re.findall(r'\S*\s*')
        let mut parts = Vec::new();
        let mut start = 0;
        let mut in_space = false;
        for (at, c) in line.char_indices() {
            if c.is_whitespace() {
                in_space = true;
            } else if in_space {
                parts.push(&line[start..at]);
                start = at;
                in_space = false;
            }
        }
        parts.push(&line[start..]);
        let mut max_width2 = max_width;
        let mut current = String::new();
        for (j, part) in parts.iter().enumerate() {
            let candidate = format!("{current}{part}");
            if j == parts.len() - 1 && i == lines.len() - 1 {
                max_width2 = max_width2.saturating_sub(allowance);
            }
            if width_of(&repr(&candidate)) > max_width2 {
                if !current.is_empty() {
                    chunks.push(repr(&current));
                }
                current = (*part).to_owned();
            } else {
                current = candidate;
            }
        }
        if !current.is_empty() {
            chunks.push(repr(&current));
        }
        last_rep = line_rep;
    }
    if chunks.len() == 1 {
        out.push_str(&last_rep);
        return;
    }
    if level == 1 {
        out.push('(');
    }
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(chunk);
    }
    if level == 1 {
        out.push(')');
    }
}

/// A copy with every string-keyed mapping sorted by key, as `pprint` prints
/// dicts.
fn sorted_dicts(value: &Value) -> Value {
    match value {
        Value::Map(map) => {
            let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            Value::Map(Box::new(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_dicts(v)))
                    .collect::<Map>(),
            ))
        }
        Value::Seq(items) => Value::Seq(items.iter().map(sorted_dicts).collect()),
        Value::KeyedMap(pairs) => Value::KeyedMap(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), sorted_dicts(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_like_fmf() {
        assert_eq!(listed(vec![]), "");
        assert_eq!(listed(vec!["a"]), "a");
        assert_eq!(listed(vec!["a", "b"]), "a and b");
        assert_eq!(listed(vec!["a", "b", "c"]), "a, b and c");
    }

    #[test]
    fn node_rendering() {
        let mut data = Map::default();
        data.insert("summary".into(), Value::Str("text\n".into()));
        data.insert("enabled".into(), Value::Bool(true));
        data.insert(
            "tag".into(),
            Value::Seq(vec![Value::Str("a".into()), Value::Str("b".into())]),
        );
        let node = Node {
            name: "/t".into(),
            data,
            sources: Vec::new(),
            leaf: true,
            select: true,
        };
        assert_eq!(
            show(&node, false),
            "/t\nenabled: True\nsummary: text\ntag: a and b\n"
        );
        let empty = Node {
            name: "/e".into(),
            data: Map::default(),
            sources: Vec::new(),
            leaf: true,
            select: true,
        };
        assert_eq!(show(&empty, false), "/e\n");
    }
}
