//! The `match` subcommand: evaluate `when` rules against a context, one
//! JSON line per rule (the conformance corpus' `match` mode).

use std::io::Write;

use crate::cli::CliError;
use crate::context::{Context, MatchError};

/// Arguments of `atex-discover match`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Output: one line per rule, keys sorted:
  {\"result\":true|false|\"CannotDecide\"|\"InvalidRule\",\"rule\":RULE}

Example:
  atex-discover match 'distro == fedora' 'arch ~ ^x86' -c distro=fedora-41 -c arch=x86_64
  {\"result\":true,\"rule\":\"distro == fedora\"}
  {\"result\":true,\"rule\":\"arch ~ ^x86\"}")]
pub struct Args {
    /// Rules to evaluate (fmf `when` grammar, e.g. `distro >= fedora-40`).
    #[arg(required = true, value_name = "RULE")]
    pub rules: Vec<String>,
    /// A context dimension and its values, `DIM=V1,V2` (repeatable).
    #[arg(short = 'c', long = "context", value_name = "DIM=V1,V2")]
    pub context: Vec<String>,
    /// Compare names and versions case-insensitively (as tmt does).
    #[arg(long)]
    pub case_insensitive: bool,
}

/// Run the subcommand.
pub fn run(args: Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let mut context =
        Context::from_cli(&args.context).map_err(|e| CliError::Usage(e.to_string()))?;
    context.set_case_sensitive(!args.case_insensitive);
    for rule in &args.rules {
        let result = match context.matches(rule) {
            Ok(value) => serde_json::Value::Bool(value),
            Err(MatchError::CannotDecide) => "CannotDecide".into(),
            Err(MatchError::InvalidRule(_)) => "InvalidRule".into(),
        };
        // Keys in sorted order (serde_json keeps insertion order here).
        let mut record = serde_json::Map::new();
        record.insert("result".into(), result);
        record.insert("rule".into(), rule.as_str().into());
        writeln!(out, "{}", serde_json::Value::Object(record))?;
    }
    Ok(atex_shared::exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_one_sorted_line_per_rule() {
        let args = Args {
            rules: vec!["distro == fedora".into(), "arch == x".into(), "x ==".into()],
            context: vec!["distro=fedora-41".into()],
            case_insensitive: false,
        };
        let mut out = Vec::new();
        run(args, &mut out).expect("runs");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"result\":true,\"rule\":\"distro == fedora\"}\n\
             {\"result\":\"CannotDecide\",\"rule\":\"arch == x\"}\n\
             {\"result\":\"InvalidRule\",\"rule\":\"x ==\"}\n"
        );
    }
}
