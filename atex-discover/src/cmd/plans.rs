//! The `plans` subcommand: list the plans of a tree with their discover
//! phases, one JSON line each.

use std::io::Write;
use std::path::PathBuf;

use atex_shared::jsonl::{WriteError, Writer};

use crate::cli::CliError;
use crate::tmt::discover::list_plans;
use crate::tmt::plan::parse_cli_context;
use crate::value::Value;

/// Arguments of `atex-discover plans`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A directory inside the fmf tree.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// A context dimension, `DIM=VALUE[,VALUE...]`, for `adjust` and the
    /// phases' `when`. Repeatable.
    #[arg(short = 'c', long = "context", value_name = "DIM=VAL")]
    pub context: Vec<String>,
}

/// Run the subcommand. Each line is `{"name", "summary", "discover"}`,
/// where `discover` lists the phases whose `when` matches, with their
/// `name` (`default-N` when unnamed) and `how` (`fmf` when unset) filled in.
pub fn run(args: Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let context = parse_cli_context(&args.context)?;
    let (plans, skipped) = list_plans(&args.root, &context)?;
    super::warn_skipped(&skipped);
    let lines: Vec<serde_json::Value> = plans
        .iter()
        .map(|plan| {
            serde_json::json!({
                "name": plan.name,
                "summary": plan.data.get("summary").map_or(serde_json::Value::Null, Value::to_json),
                "discover": plan
                    .discover
                    .iter()
                    .map(|phase| Value::Map(Box::new(phase.data.clone())).to_json())
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut writer = Writer::new(out);
    for line in &lines {
        match writer.write(line) {
            Ok(()) => {}
            Err(WriteError::BrokenPipe) => break,
            Err(WriteError::Io(e)) => return Err(CliError::Io(e)),
            Err(e @ WriteError::Serialize(_)) => return Err(CliError::Usage(e.to_string())),
        }
    }
    Ok(atex_shared::exit::SUCCESS)
}
