//! The `tests` subcommand: discover a plan's tests and print one Test
//! record per selected test.

use std::io::Write;
use std::path::PathBuf;

use atex_shared::jsonl::{WriteError, Writer};

use crate::cli::CliError;
use crate::tmt::discover::{DiscoveryOptions, discover};
use crate::tmt::plan::parse_cli_context;
use crate::tmt::select::Criteria;

/// Arguments of `atex-discover tests`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A directory inside the fmf tree (its root is found by walking up to
    /// the directory holding `.fmf/`).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// The plan: an exact node name, or a regex matching exactly one plan.
    /// Without it, ATEX's built-in plan `/default/plan` (`discover: {how: fmf}`,
    /// no environment) selects every test of the tree; the tree's plans
    /// are not used.
    #[arg(long, value_name = "NAME")]
    pub plan: Option<String>,
    /// A context dimension, `DIM=VALUE[,VALUE...]`; overrides the plan's
    /// `context` for that dimension. Repeatable.
    #[arg(short = 'c', long = "context", value_name = "DIM=VAL")]
    pub context: Vec<String>,
    /// Keep only tests whose name matches one of these regexes (searched
    /// anywhere in the name). Repeatable.
    #[arg(long = "test", value_name = "RE")]
    pub tests: Vec<String>,
    /// An fmf filter (`tag: fast & tier: 1`) every test must pass, on tmt's
    /// normalized test metadata. Repeatable; all must hold.
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Drop tests whose name matches this regex. Repeatable.
    #[arg(long = "exclude", value_name = "RE")]
    pub excludes: Vec<String>,
}

/// Run the subcommand: everything is computed before the first record is
/// written, so invalid input prints no records.
pub fn run(args: Args, out: &mut dyn Write) -> Result<u8, CliError> {
    let options = DiscoveryOptions {
        root: args.root,
        plan: args.plan,
        context: parse_cli_context(&args.context)?,
        criteria: Criteria {
            names: args.tests,
            filters: args.filters,
            excludes: args.excludes,
        },
    };
    let discovery = discover(&options)?;
    let mut writer = Writer::new(out);
    for record in discovery.records() {
        match writer.write(&record) {
            Ok(()) => {}
            Err(WriteError::BrokenPipe) => break,
            Err(WriteError::Io(e)) => return Err(CliError::Io(e)),
            Err(e @ WriteError::Serialize(_)) => return Err(CliError::Usage(e.to_string())),
        }
    }
    // The process ends right after this: freeing every selected test one
    // allocation at a time would only cost time.
    std::mem::forget(discovery);
    Ok(atex_shared::exit::SUCCESS)
}
