//! The `tests` subcommand: discover a plan's tests and print one Test
//! record per selected test.

use std::io::Write;
use std::path::PathBuf;

use atex_shared::cli::{Interrupt, NoTests};
use atex_shared::jsonl::{WriteError, Writer};

use crate::cli::CliError;
use crate::interrupt;
use crate::tmt::discover::{Discovery, DiscoveryOptions, discover, list_names};
use crate::tmt::plan::parse_cli_context;
use crate::tmt::select::{Criteria, FilterNote};
use crate::value::Value;

/// Arguments of `atex-discover tests`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # the tests of a plan for Fedora 41, one Test record per line
  atex-discover tests --root . --plan /plans/ci -c distro=fedora-41
  # only the fast tests, without the network ones
  atex-discover tests --plan /plans/ci --filter 'tag: fast' --exclude network
  # a selection that may be empty (a nightly job on a changing tree)
  atex-discover tests --plan /plans/ci --test \"$TESTS\" --no-tests=warn

Exit status: 0 tests selected; 2 invalid input or usage (the message names
FILE:LINE:COL: a malformed plan, a discover method other than fmf, a
filter regex or `when` rule); 4 no test selected (the message names the
plan, --test, --filter, --exclude and context that selected nothing),
unless --no-tests says otherwise; 130/143 interrupted (stderr says how many
records were written). A directory that cannot be read is skipped with a
warning naming it.")]
pub struct Args {
    /// A directory inside the fmf tree (its root is found by walking up to
    /// the directory holding `.fmf/`).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
    /// The plan: an exact node name, or a regex matching exactly one plan.
    /// Without it, ATEX's built-in plan `/default/plan` (`discover: {how: fmf}`,
    /// no environment) selects every test of the tree; the tree's plans
    /// are not used (stderr lists them).
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
    /// When no test is selected: `fail` (exit 4 with a message naming what
    /// selected nothing), `warn` (the message as a warning, exit 0) or
    /// `pass` (exit 0, no message).
    #[arg(
        long,
        value_enum,
        value_name = "pass|warn|fail",
        default_value_t,
        hide_possible_values = true
    )]
    pub no_tests: NoTests,
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
    super::warn_skipped(&discovery.skipped);
    if !discovery.plans.is_empty() {
        eprintln!(
            "atex-discover: note: no --plan given, using the default plan; this tree has plans: {} (their environment and filters are not applied)",
            list_names(&discovery.plans)
        );
    }
    let interrupts = interrupt::global();
    if let Some(interrupts) = interrupts {
        interrupts.start_writing();
    }
    let mut writer = Writer::new(out);
    let mut written = 0usize;
    for record in discovery.records() {
        // Stop between records, never in the middle of one.
        if interrupts.is_some_and(|i| i.pending().is_some()) {
            break;
        }
        match writer.write(&record) {
            Ok(()) => {}
            Err(WriteError::BrokenPipe) => break,
            Err(WriteError::Io(e)) => return Err(CliError::Io(e)),
            Err(e @ WriteError::Serialize(_)) => return Err(CliError::Usage(e.to_string())),
        }
        written += 1;
        if let Some(interrupts) = interrupts {
            interrupts.set_written(written);
        }
    }
    if let Some(interrupts) = interrupts {
        // What was written reaches stdout before the report.
        let flushed = out_flush(writer);
        if let Some(interrupt) = interrupts.finish() {
            return Ok(interrupted(interrupts, interrupt, written));
        }
        flushed?;
    }
    let code = if written == 0 && discovery.tests.is_empty() {
        args.no_tests
            .report("atex-discover", &no_tests_message(&options, &discovery))
    } else {
        atex_shared::exit::SUCCESS
    };
    // The process ends right after this: freeing every selected test one
    // allocation at a time would only cost time.
    std::mem::forget(discovery);
    Ok(code)
}

/// Flush what the writer holds; a closed stdout is not an error here.
fn out_flush(writer: Writer<&mut dyn Write>) -> Result<(), CliError> {
    match writer.into_inner().flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Io(e)),
        _ => Ok(()),
    }
}

fn interrupted(interrupts: &interrupt::Interrupts, interrupt: Interrupt, written: usize) -> u8 {
    eprintln!("atex-discover: {}", interrupts.report(interrupt, written));
    interrupt.exit_code()
}

/// Why nothing was selected, naming everything that selects: the plan and
/// its sections' keys, the command-line criteria and context, how many
/// tests the tree has, and filters that raised on tests (a key no test
/// has, often a typo, deselects silently as in tmt).
pub fn no_tests_message(options: &DiscoveryOptions, discovery: &Discovery) -> String {
    let mut what = match &options.plan {
        None => "the default plan (every test of the tree)".to_owned(),
        Some(_) => format!("plan '{}'", discovery.plan.name),
    };
    let sections = discovery.plan.fmf_sections().unwrap_or_default();
    if options.plan.is_some() {
        let described: Vec<String> = sections
            .iter()
            .filter_map(|section| {
                let keys = describe_section(&section.data);
                if keys.is_empty() {
                    None
                } else if sections.len() > 1 {
                    Some(format!("section '{}': {keys}", section.name))
                } else {
                    Some(keys)
                }
            })
            .collect();
        if !described.is_empty() {
            what.push_str(&format!(" ({})", described.join("; ")));
        }
    }
    let mut given = Vec::new();
    let quoted = |option: &str, values: &[String]| {
        values
            .iter()
            .map(|value| format!("{option} '{value}'"))
            .collect::<Vec<_>>()
    };
    given.extend(quoted("--test", &options.criteria.names));
    given.extend(quoted("--filter", &options.criteria.filters));
    given.extend(quoted("--exclude", &options.criteria.excludes));
    if !discovery.plan.context.is_empty() {
        let context: Vec<String> = discovery
            .plan
            .context
            .iter()
            .map(|(dimension, values)| format!("{dimension}={}", values.join(",")))
            .collect();
        given.push(format!("context {}", context.join(" ")));
    }
    if !given.is_empty() {
        what.push_str(&format!(" with {}", given.join(", ")));
    }
    if sections.is_empty() {
        return format!(
            "no test selected: {what} has no discover phase with 'how: fmf' (that applies in this context)"
        );
    }
    let tests = discovery.stats.iter().map(|s| s.tests).max().unwrap_or(0);
    let mut message = if tests == 0 {
        format!(
            "no test selected by {what}: the tree has no enabled test (a node with 'test' that is not disabled, manual or a story)"
        )
    } else {
        let plural = if tests == 1 { "test" } else { "tests" };
        format!("no test selected by {what}: none of the tree's {tests} enabled {plural} matched")
    };
    for stats in &discovery.stats {
        for note in &stats.filter_errors {
            message.push_str("; ");
            message.push_str(&explain_filter(note, stats.tests));
        }
    }
    message
}

/// The selection keys of a discover section, for people.
fn describe_section(data: &crate::value::Map) -> String {
    ["test", "filter", "exclude", "include"]
        .iter()
        .filter_map(|key| {
            let values: Vec<String> = match data.get(*key)? {
                Value::Null => return None,
                Value::Seq(items) => items.iter().map(|v| format!("'{}'", v.py_str())).collect(),
                other => vec![format!("'{}'", other.py_str())],
            };
            Some(format!("{key} {}", values.join(", ")))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One filter that raised fmf's `FilterError`, for people.
fn explain_filter(note: &FilterNote, tests: usize) -> String {
    let source = if note.from_plan {
        "filter of the plan"
    } else {
        "--filter"
    };
    let head = format!("{source} '{}'", note.filter);
    if let Some(key) = note
        .message
        .strip_prefix("Invalid filter '")
        .and_then(|rest| rest.strip_suffix('\''))
    {
        if note.tests >= tests {
            return format!("{head}: no test has key '{key}'");
        }
        return format!(
            "{head}: {} of {tests} tests have no key '{key}'",
            note.tests
        );
    }
    if note.message.starts_with("Filter by name") {
        return format!(
            "{head}: a part without ':' matches test names, which tmt filters cannot do (use --test)"
        );
    }
    format!("{head}: {}", note.message)
}
