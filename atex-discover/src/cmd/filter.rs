//! The `filter` subcommand: evaluate fmf filter expressions against JSON
//! data, one JSON line per expression (the conformance corpus' `filter`
//! mode).

use std::io::Write;

use crate::cli::CliError;
use crate::filter::{FilterError, FilterOptions, filter_value};
use crate::value::Value;

/// Arguments of `atex-discover filter`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Output: one line per expression, keys sorted:
  {\"filter\":EXPR,\"result\":true|false|\"FilterError\"|\"re.error\"}

Example:
  atex-discover filter 'tag: Tier1 & tier: 1' 'tag: -slow' --data '{\"tag\": [\"Tier1\"], \"tier\": 1}'
  {\"filter\":\"tag: Tier1 & tier: 1\",\"result\":true}
  {\"filter\":\"tag: -slow\",\"result\":true}")]
pub struct Args {
    /// Filter expressions (`tag: A, B & tier: 1 | tag: -C`).
    #[arg(required = true, value_name = "EXPR")]
    pub expressions: Vec<String>,
    /// The data the filter sees, a JSON object (`{"tag": ["Tier1"]}`).
    #[arg(long, value_name = "JSON")]
    pub data: String,
    /// Values are Python regular expressions matched against whole items.
    #[arg(long)]
    pub regexp: bool,
    /// Compare case-insensitively (expression, keys and values lowercased).
    #[arg(long)]
    pub insensitive: bool,
    /// The node name, for literals without `:` (name searches).
    #[arg(long, value_name = "NODE")]
    pub name: Option<String>,
}

/// Run the subcommand.
pub fn run(args: Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let json: serde_json::Value = serde_json::from_str(&args.data)
        .map_err(|e| CliError::Usage(format!("invalid --data JSON: {e}")))?;
    let data = Value::from_json(&json);
    let options = FilterOptions {
        sensitive: !args.insensitive,
        regexp: args.regexp,
        name: args.name.as_deref(),
    };
    for expression in &args.expressions {
        let result = match filter_value(expression, &data, options) {
            Ok(value) => serde_json::Value::Bool(value),
            Err(FilterError::Filter(_)) => "FilterError".into(),
            Err(FilterError::Regex(_)) => "re.error".into(),
        };
        // Keys in sorted order (serde_json keeps insertion order here).
        let mut record = serde_json::Map::new();
        record.insert("filter".into(), expression.as_str().into());
        record.insert("result".into(), result);
        writeln!(out, "{}", serde_json::Value::Object(record))?;
    }
    Ok(atex_shared::exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_one_sorted_line_per_expression() {
        let args = Args {
            expressions: vec!["tag: x".into(), "nope: x".into(), "tag: [".into()],
            data: r#"{"tag": ["x"]}"#.into(),
            regexp: true,
            insensitive: false,
            name: None,
        };
        let mut out = Vec::new();
        run(args, &mut out).expect("runs");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"filter\":\"tag: x\",\"result\":true}\n\
             {\"filter\":\"nope: x\",\"result\":\"FilterError\"}\n\
             {\"filter\":\"tag: [\",\"result\":\"re.error\"}\n"
        );
    }
}
