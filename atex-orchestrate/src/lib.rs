//! atex-orchestrate: run Test records on a pool of provisioned machines,
//! handing the next test to whichever machine is free ([`run::run`]), with
//! machines from `--provision SPEC`s ([`spec`]) and the default policy in
//! [`queue`]; what happens is told through [`events`]. The command line is
//! here: its stderr lines and status line are one subscriber of the events.
#![warn(missing_docs)]

pub mod earlier;
pub mod events;
pub mod history;
pub mod live;
pub mod queue;
pub mod run;
pub mod spec;

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use atex_aggregate::ingest::{self, Aggregator};
use atex_shared::cli::NoTests;
use atex_shared::exit;
use atex_shared::jsonl;
use clap::Parser;

use crate::events::{Event, Monitor};
use crate::run::{AttemptEnded, Output, RunConfig};
use crate::spec::{DEFAULT_SPEC, Spec};

/// Run test records on a pool of provisioned machines, handing the next test to whichever machine is free.
///
/// Read Test records (line-JSON) on stdin, provision machines from each
/// --provision SPEC (an atex-provision command line without the program
/// name; at most its --max, or number of hosts, at once), and give the next
/// test (higher extra-priority first, then longest duration first) to
/// whichever machine is free. A test that ends infra destroys its machine
/// (a replacement is asked for while tests remain). Result records stream
/// on stdout; one line per event on stderr, and a status line every 30 s.
/// A second SIGINT/SIGTERM stops waiting for the machines' releases and
/// prints the records of the machines left on stderr (one JSON line each,
/// unprefixed), for `atex-provision release`.
///
/// Exit codes: 0 all passed, 1 some test failed, 2 bad input or SPEC
/// (nothing provisioned), 3 infrastructure error (a test ended infra, or
/// tests could not run), 4 no test records on stdin (see --no-tests),
/// 130/143 interrupted by SIGINT/SIGTERM.
///
/// Example:
///     atex-discover tests --plan /plans/ci -c distro=fedora-41 \
///       | atex-orchestrate --provision 'podman --image localhost/sut --max 4' \
///                          --reruns 1
#[derive(Debug, Parser)]
#[command(name = "atex-orchestrate", version, verbatim_doc_comment)]
pub struct Cli {
    /// Discover the tests here instead of reading stdin (as
    /// `atex-discover tests --root DIR`; also with --plan alone, from `.`).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// With self-discovery: the plan (as `atex-discover tests --plan`).
    #[arg(long, value_name = "NAME")]
    pub plan: Option<String>,
    /// With self-discovery: a context dimension, `DIM=VALUE[,VALUE...]`.
    /// Repeatable.
    #[arg(short = 'c', long = "context", value_name = "DIM=VAL")]
    pub context: Vec<String>,
    /// With self-discovery: keep only tests whose name matches one of
    /// these regexes. Repeatable.
    #[arg(long = "test", value_name = "RE")]
    pub tests: Vec<String>,
    /// With self-discovery: an fmf filter every test must pass. Repeatable.
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// With self-discovery: drop tests whose name matches this regex.
    /// Repeatable.
    #[arg(long = "exclude", value_name = "RE")]
    pub excludes: Vec<String>,
    /// Where machines come from: an atex-provision command line without
    /// the program name, e.g. 'podman --rootfs /:O --max 4' or
    /// 'ssh root@host1 root@host2'; `local --max N` runs N tests at once
    /// on this machine. Repeatable [default: local].
    #[arg(long, value_name = "SPEC")]
    pub provision: Vec<String>,
    /// Also write atex-aggregate's results store here (the layout, JUnit
    /// and HTML of `atex-aggregate --output`), flushed after every test,
    /// each test's files moved into it as it ends. With stdout a terminal,
    /// records are then not printed there.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Order the tests by their expected duration, the median of their
    /// earlier runs recorded in these stores (`--output` directories of
    /// atex-orchestrate; the run's own --output counts too), falling back
    /// to their `duration`. Repeatable.
    #[arg(long, value_name = "STORE")]
    pub history: Vec<PathBuf>,
    /// Run only the tests whose results in this earlier store (an
    /// `--output` directory of atex-orchestrate or atex-aggregate) did not
    /// all pass; tests the store does not have are not run either.
    #[arg(long, value_name = "STORE")]
    pub rerun_failed: Option<PathBuf>,
    /// Where test files are written: one directory per machine (numbered
    /// in the order they became ready), holding one per test. It must be
    /// empty or missing. With --output, the files are moved into the store
    /// as each test ends and the emptied directories removed at the end.
    #[arg(long, value_name = "DIR", default_value = "atex-artifacts")]
    pub artifacts: PathBuf,
    /// How many more times a test that ends fail, error or infra runs, on
    /// a machine it has not run on yet.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub reruns: u32,
    /// The exit codes of a test after which its machine runs the next
    /// test (comma-separated); after any other, or a test tagged
    /// `destructive`, the machine is released and a fresh one asked for.
    #[arg(
        long,
        value_name = "CODES",
        value_delimiter = ',',
        default_value = "0",
        allow_negative_numbers = true
    )]
    pub reuse_on_exit: Vec<i32>,
    /// How many machine setups may fail (each is replaced) before the run
    /// stops with exit 3.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_failed_setups: usize,
    /// Per --provision, how many ready machines are kept idle while no
    /// test waits but running ones may be rerun; others are released as
    /// soon as no test waits.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_spares: usize,
    /// Keep tests with these tags together: after a test with one of them,
    /// its machine takes another with the same tag first (then the base
    /// order). Repeatable, or comma-separated.
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub group_by_tag: Vec<String>,
    /// The order after `extra-priority`: the longest `duration` first, or
    /// input order.
    #[arg(long, value_enum, default_value_t = queue::Order::Longest)]
    pub order: queue::Order,
    /// After N tests failed (their final attempt fail, error, warn, no
    /// status or infra), start no new test: the running ones finish, the
    /// rest are not run, exit 1 (3 if some test ended infra).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_fail: Option<u64>,
    /// Continue the run killed while writing --output DIR: the tests with
    /// a final result there are left out, the others run (one that was
    /// running, from its start) and their results are added to the store.
    #[arg(long, requires = "output")]
    pub resume: bool,
    /// On stderr, only what went wrong (failures with their notes, lost
    /// machines, warnings) and the last line: no live view, no event or
    /// status lines.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// On a terminal, every event line above the live view too (without a
    /// terminal they are always there).
    #[arg(short, long)]
    pub verbose: bool,
    /// Seconds between two status lines on stderr (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, hide = true)]
    pub status_interval: f64,
    /// What zero Test records on stdin is: `fail` (exit 4), `warn` (exit 0
    /// with a warning) or `pass` (exit 0).
    #[arg(
        long,
        value_enum,
        value_name = "WHAT",
        default_value_t,
        hide_possible_values = true
    )]
    pub no_tests: NoTests,
}

/// Results on stdout (unless `print` is off) and into the stores.
struct Terminal {
    writer: jsonl::Writer<io::Stdout>,
    print: bool,
    /// Each test's final attempt.
    store: Store,
    /// Earlier attempts, in `<output>/attempts/` (ATEX's `old_aggregator`),
    /// opened at the first rerun.
    attempts: Store,
    /// Where the attempts store goes.
    attempts_dir: Option<PathBuf>,
    /// Each attempt's duration, in the store (`--history` reads them).
    durations: Option<history::Recorder>,
}

/// A results store being written, or why not.
#[derive(Default)]
struct Store {
    aggregator: Option<Aggregator>,
    /// Results ingested, for the store's error locations.
    ingested: usize,
    /// It failed (then nothing more goes there): exit 3.
    failed: bool,
}

impl Store {
    /// Ingest one attempt's results and flush them.
    fn ingest(&mut self, results: &[Vec<u8>]) {
        let Some(store) = &mut self.aggregator else {
            return;
        };
        let mut done = Ok(());
        for line in results {
            self.ingested += 1;
            done = store.ingest_line(line, "atex-orchestrate", self.ingested);
            if done.is_err() {
                break;
            }
        }
        if let Err(e) = done.and_then(|()| store.flush()) {
            self.fail(&e);
        }
    }

    /// Write junit.xml and index.html.
    fn render(&mut self) {
        if let Some(store) = &mut self.aggregator
            && let Err(e) = store.render()
        {
            self.fail(&e);
        }
    }

    fn fail(&mut self, e: &ingest::Error) {
        eprintln!("atex-orchestrate: error: results store: {e}");
        self.aggregator = None;
        self.failed = true;
    }
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("print", &self.print)
            .finish()
    }
}

impl Output for Terminal {
    fn attempt_ended(&mut self, ended: AttemptEnded) {
        if let Some(recorder) = &mut self.durations
            && let Err(e) = recorder.record(&ended.test, ended.attempt, &ended.results)
        {
            eprintln!(
                "atex-orchestrate: warning: {}: {e}: no more durations are kept",
                recorder.path().display()
            );
            self.durations = None;
        }
        if !ended.rerun {
            self.store.ingest(&ended.results);
            return;
        }
        if let Some(dir) = self.attempts_dir.take() {
            // Continued: a resumed run's earlier attempts are there (the
            // store itself refuses an existing directory otherwise).
            match Aggregator::open(&ingest::Config {
                append: true,
                ..ingest::Config::new(dir)
            }) {
                Ok(store) => self.attempts.aggregator = Some(store),
                Err(e) => self.attempts.fail(&e),
            }
        }
        self.attempts.ingest(&ended.results);
    }

    fn result(&mut self, line: &[u8]) {
        if !self.print {
            return;
        }
        let written = self.writer.write_with(|buf| {
            buf.extend_from_slice(line);
            Ok(())
        });
        match written.and_then(|()| self.writer.flush()) {
            Ok(()) => {}
            // Quietly: the reader went away; no further test starts.
            Err(e) if e.is_broken_pipe() => {}
            Err(e) => eprintln!("atex-orchestrate: warning: failed to write a result: {e}"),
        }
    }

    fn is_closed(&self) -> bool {
        // A closed stdout stops the run only when it is the only output.
        self.writer.is_closed() && self.store.aggregator.is_none() && !self.store.failed
    }
}

/// The store of `--rerun-failed`, read; the error (bad input) names it,
/// or an `output` that is the store itself.
fn read_rerun_store(
    store: &Path,
    output: Option<&Path>,
    labels: &[Option<String>],
) -> Result<earlier::Earlier, String> {
    let same = output.is_some_and(|output| {
        matches!(
            (store.canonicalize(), output.canonicalize()),
            (Ok(a), Ok(b)) if a == b
        )
    });
    if same {
        return Err(format!(
            "--output {} is the --rerun-failed store: write the new run elsewhere",
            store.display()
        ));
    }
    earlier::Earlier::read(store, labels)
        .map_err(|e| format!("--rerun-failed {}: {e}", store.display()))
}

/// `--resume`: cut off what the kill left half written in the store at
/// `output` and read it (a directory without a store yet holds nothing).
fn read_resumed_store(
    output: &Path,
    labels: &[Option<String>],
) -> Result<earlier::Earlier, String> {
    use atex_aggregate::summary::{Error, cut_unfinished};
    let what = |e: Error| format!("--resume: {}: {e}", output.display());
    match cut_unfinished(output) {
        Ok(cut) => {
            for (platform, test) in cut {
                eprintln!(
                    "atex-orchestrate: --resume: {test} on {platform} was running: its results so far are taken out, it runs again"
                );
            }
        }
        Err(Error::NoStore(_)) => return Ok(earlier::Earlier::empty()),
        Err(e) => return Err(what(e)),
    }
    earlier::Earlier::read(output, labels).map_err(what)
}

/// `--resume`: a killed run's artifacts directory (files of the tests it
/// was running) is moved aside to `<dir>.interrupted[.N]`, so that the
/// run can use `dir`; nothing is deleted.
fn set_aside(dir: &Path) -> Result<(), String> {
    let used = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if !used {
        return Ok(());
    }
    let name = dir
        .file_name()
        .unwrap_or(dir.as_os_str())
        .to_string_lossy()
        .into_owned();
    let aside = (0..1000)
        .map(|n| match n {
            0 => dir.with_file_name(format!("{name}.interrupted")),
            n => dir.with_file_name(format!("{name}.interrupted.{n}")),
        })
        .find(|path| std::fs::symlink_metadata(path).is_err())
        .ok_or_else(|| format!("--resume: {}: no free name to move it aside", dir.display()))?;
    std::fs::rename(dir, &aside)
        .map_err(|e| format!("--resume: failed to move {} aside: {e}", dir.display()))?;
    eprintln!(
        "atex-orchestrate: --resume: the interrupted run's artifacts {} are now {}",
        dir.display(),
        aside.display()
    );
    Ok(())
}

/// One platform of the run: the specs with the same `--platform` (or,
/// without one, the same `-c` context) share its tests; each platform
/// runs every test.
#[derive(Debug)]
struct Group {
    label: Option<String>,
    /// Its `-c` arguments (the first spec's).
    context: Vec<String>,
}

/// Sort `specs` into platform groups, setting each one's
/// [`Spec::group`]; the error (bad input) says which specs clash.
fn platform_groups(specs: &mut [Spec]) -> Result<Vec<Group>, String> {
    use std::collections::BTreeMap;
    let parsed = |spec: &Spec| -> BTreeMap<String, Vec<String>> {
        atex_shared::records::parse_context(&spec.context)
            .unwrap_or_default()
            .into_iter()
            .collect()
    };
    let mut groups: Vec<(Group, BTreeMap<String, Vec<String>>, String)> = Vec::new();
    for spec in specs.iter_mut() {
        let context = parsed(spec);
        let found = groups
            .iter()
            .position(|(group, c, _)| match (&spec.platform, &group.label) {
                (Some(a), Some(b)) => a == b,
                (None, None) => *c == context,
                _ => false,
            });
        match found {
            Some(at) if groups[at].1 != context => {
                return Err(format!(
                    "--provision {:?} and --provision {:?}: one --platform with two contexts (-c)",
                    groups[at].2, spec.text
                ));
            }
            Some(at) => spec.group = at,
            None => {
                spec.group = groups.len();
                let group = Group {
                    label: spec.platform.clone(),
                    context: spec.context.clone(),
                };
                groups.push((group, context, spec.text.clone()));
            }
        }
    }
    if groups.iter().filter(|(g, _, _)| g.label.is_none()).count() > 1 {
        return Err(
            "machines of different contexts (-c) run every test once each: give each --provision its --platform"
                .to_owned(),
        );
    }
    Ok(groups.into_iter().map(|(group, _, _)| group).collect())
}

/// The stderr subscriber without a terminal: one line per event a person
/// cares about (with [`live::Lines::Important`], only what went wrong),
/// and the status line from the monitor's snapshot every `every` (never
/// when `None`). Ends with the run.
async fn print_events(
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    monitor: Monitor,
    every: Option<Duration>,
    lines: live::Lines,
) {
    let mut ticks = every.map(|every| {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let tick = async |ticks: &mut Option<tokio::time::Interval>| match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    };
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    let line = match lines {
                        live::Lines::All => event.line(),
                        live::Lines::Important if live::important(&event) => {
                            live::line_with_note(&event)
                        }
                        live::Lines::Important => None,
                    };
                    if let Some(line) = line {
                        eprintln!("atex-orchestrate: {line}");
                    }
                }
                None => break,
            },
            () = tick(&mut ticks) => {
                eprintln!("atex-orchestrate: status: {}", monitor.snapshot());
            }
        }
    }
}

/// Remove the empty directories under `dir`, and `dir` itself when it ends
/// up empty: what is left of the artifacts once the store took the files.
fn remove_empty_dirs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&entry.path());
        }
    }
    // Fails, as it should, when something is left.
    let _ = std::fs::remove_dir(dir);
}

/// A bad option or input: `atex-orchestrate: error: ...`, exit 2.
fn invalid(message: impl std::fmt::Display) -> u8 {
    eprintln!("atex-orchestrate: error: {message}");
    exit::INVALID
}

/// Discover the tests as `atex-discover tests` would, through its
/// library, with `-c` and then `context` (a platform's, which wins); the
/// Test records as lines, or the error message.
fn discover(cli: &Cli, context: &[String]) -> Result<Vec<u8>, String> {
    use atex_discover::tmt::{discover, plan, select};
    let context: Vec<String> = cli.context.iter().chain(context).cloned().collect();
    let options = discover::DiscoveryOptions {
        root: cli.root.clone().unwrap_or_else(|| PathBuf::from(".")),
        plan: cli.plan.clone(),
        context: plan::parse_cli_context(&context).map_err(|e| e.to_string())?,
        criteria: select::Criteria {
            names: cli.tests.clone(),
            filters: cli.filters.clone(),
            excludes: cli.excludes.clone(),
        },
    };
    let discovery = discover::discover(&options).map_err(|e| e.to_string())?;
    let mut writer = jsonl::Writer::new(Vec::new());
    for record in discovery.records() {
        writer.write(&record).map_err(|e| e.to_string())?;
    }
    writer.flush().map_err(|e| e.to_string())?;
    Ok(writer.into_inner())
}

/// Run a parsed command line, reading tests from `input` (unless --root
/// or --plan ask for self-discovery); returns the exit code.
pub fn run(cli: Cli, input: impl io::BufRead) -> u8 {
    let self_discovery = cli.root.is_some() || cli.plan.is_some();
    let selects = !(cli.context.is_empty()
        && cli.tests.is_empty()
        && cli.filters.is_empty()
        && cli.excludes.is_empty());
    if selects && !self_discovery {
        return invalid(
            "-c, --test, --filter and --exclude select tests to discover: give --root or --plan too",
        );
    }
    let status_every = match Duration::try_from_secs_f64(cli.status_interval) {
        Ok(every) if every.is_zero() => None,
        Ok(every) => Some(every),
        Err(_) => {
            return invalid(format!(
                "--status-interval {}: a number of seconds is expected",
                cli.status_interval
            ));
        }
    };
    let texts = if cli.provision.is_empty() {
        vec![DEFAULT_SPEC.to_owned()]
    } else {
        cli.provision.clone()
    };
    let mut specs = Vec::new();
    for text in &texts {
        match Spec::parse(text) {
            Ok(spec) => specs.push(spec),
            Err(e) => return invalid(e),
        }
    }
    let groups = match platform_groups(&mut specs) {
        Ok(groups) => groups,
        Err(message) => return invalid(message),
    };
    let labels: Vec<Option<String>> = groups.iter().map(|g| g.label.clone()).collect();
    if cli.resume
        && let Err(message) = set_aside(&cli.artifacts)
    {
        return invalid(message);
    }
    // atex-exec's own checks of the artifacts directory and of every Test
    // record (names, paths, duplicates), with its locations in messages.
    let read_tests = |input: &mut dyn io::BufRead| {
        let exec = atex_exec::Cli::try_parse_from([
            "atex-exec".as_ref(),
            "--machine".as_ref(),
            "local".as_ref(),
            "--artifacts".as_ref(),
            cli.artifacts.as_os_str(),
        ])
        .map_err(|e| e.to_string().trim().to_owned())?;
        atex_exec::cli::Config::new(exec, input).map_err(|e| e.to_string())
    };
    // Each platform group's tests: discovered with its context, or the
    // records of stdin for every one.
    let mut lists: Vec<Vec<atex_shared::records::Test>> = Vec::new();
    let mut artifacts = cli.artifacts.clone();
    if self_discovery {
        for group in &groups {
            let config =
                discover(&cli, &group.context).and_then(|lines| read_tests(&mut &lines[..]));
            match config {
                Ok(config) => {
                    artifacts = config.session.artifacts;
                    lists.push(config.tests);
                }
                Err(message) => return invalid(message),
            }
        }
    } else {
        let mut input = input;
        match read_tests(&mut input) {
            Ok(config) => {
                artifacts = config.session.artifacts;
                lists = vec![config.tests; groups.len()];
            }
            Err(message) => return invalid(message),
        }
    }
    if lists.iter().all(Vec::is_empty) {
        // Nothing is provisioned for an empty input.
        let what = match self_discovery {
            true => "no test selected (see --plan, --test, --filter, --exclude, -c)",
            false => "no test records on stdin (did atex-discover select no test?)",
        };
        return cli.no_tests.report("atex-orchestrate", what);
    }
    if let Some(store) = &cli.rerun_failed {
        let earlier = match read_rerun_store(store, cli.output.as_deref(), &labels) {
            Ok(earlier) => earlier,
            Err(message) => return invalid(message),
        };
        let given: usize = lists.iter().map(Vec::len).sum();
        for (tests, label) in lists.iter_mut().zip(&labels) {
            earlier.keep_failed(label.as_deref(), tests);
        }
        let kept: usize = lists.iter().map(Vec::len).sum();
        eprintln!(
            "atex-orchestrate: --rerun-failed {}: {kept} of the {given} tests did not pass there",
            store.display(),
        );
        if kept == 0 {
            let what = format!(
                "--rerun-failed {}: no test of the input failed there",
                store.display()
            );
            return cli.no_tests.report("atex-orchestrate", &what);
        }
    }
    let mut finished = earlier::Finished::default();
    if cli.resume
        && let Some(output) = &cli.output
    {
        let earlier = match read_resumed_store(output, &labels) {
            Ok(earlier) => earlier,
            Err(message) => return invalid(message),
        };
        for (tests, label) in lists.iter_mut().zip(&labels) {
            earlier.drop_finished(label.as_deref(), tests, &mut finished);
        }
        let left: usize = lists.iter().map(Vec::len).sum();
        eprintln!(
            "atex-orchestrate: --resume {}: {} tests ended there, {left} left to run",
            output.display(),
            finished.total()
        );
    }
    if groups.len() > 1 {
        for (group, tests) in groups.iter().zip(&lists) {
            eprintln!(
                "atex-orchestrate: platform {}: {} tests",
                group.label.as_deref().unwrap_or("(without --platform)"),
                tests.len()
            );
        }
    }
    let mut history = cli.history.clone();
    if let Some(output) = cli
        .output
        .as_ref()
        .filter(|dir| dir.join(history::FILE).is_file())
    {
        history.push(output.clone());
    }
    let expected = match history::Expected::load(&history) {
        Ok(expected) => expected,
        Err(message) => return invalid(format!("--history: {message}")),
    };
    if !history.is_empty() {
        let known = lists
            .iter()
            .flatten()
            .filter(|t| expected.of(&t.name).is_some())
            .count();
        eprintln!(
            "atex-orchestrate: --history: expected durations of {known} of the {} tests",
            lists.iter().map(Vec::len).sum::<usize>()
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("atex-orchestrate: error: failed to start the async runtime: {e}");
            return exit::INFRA;
        }
    };
    let code = runtime.block_on(async {
        for spec in &specs {
            match spec.check().await {
                Ok(()) => {}
                Err(atex_provision::ProvisionError::Invalid(message)) => {
                    return invalid(format!("--provision {:?}: {message}", spec.text));
                }
                Err(e) => {
                    eprintln!("atex-orchestrate: error: --provision {:?}: {e}", spec.text);
                    return exit::INFRA;
                }
            }
        }
        let store = match &cli.output {
            Some(dir) => match Aggregator::open(&ingest::Config {
                append: cli.resume,
                ..ingest::Config::new(dir)
            }) {
                Ok(store) => Some(store),
                Err(e) => {
                    eprintln!("atex-orchestrate: error: --output: {e}");
                    return e.exit_code();
                }
            },
            None => None,
        };
        let mut run_config = RunConfig::new(
            specs,
            artifacts.clone(),
            std::sync::Arc::new(queue::DefaultPolicy {
                group_by_tag: cli.group_by_tag.clone(),
                order: cli.order,
                expected: expected.clone(),
                ..queue::DefaultPolicy::new(cli.reruns, cli.reuse_on_exit.clone())
            }),
        );
        run_config.max_failed_setups = cli.max_failed_setups;
        run_config.max_spares = cli.max_spares;
        run_config.max_fail = cli.max_fail.and_then(|n| usize::try_from(n).ok());
        run_config.expected = expected;
        let monitor = run_config.monitor.clone();
        let lines = match cli.verbose {
            true => live::Lines::All,
            false => live::Lines::Important,
        };
        let printer = if cli.quiet {
            tokio::spawn(print_events(
                monitor.subscribe(),
                monitor.clone(),
                None,
                lines,
            ))
        } else if io::stderr().is_terminal() {
            tokio::spawn(live::live_view(monitor.subscribe(), monitor.clone(), lines))
        } else {
            let all = live::Lines::All;
            tokio::spawn(print_events(
                monitor.subscribe(),
                monitor.clone(),
                status_every,
                all,
            ))
        };
        let mut out = Terminal {
            writer: jsonl::Writer::new(io::stdout()),
            // A person at the terminal reads the events and the store.
            print: store.is_none() || !io::stdout().is_terminal(),
            store: Store {
                aggregator: store,
                ..Store::default()
            },
            attempts: Store::default(),
            attempts_dir: cli.output.as_ref().map(|dir| dir.join("attempts")),
            durations: match &cli.output {
                Some(dir) => match history::Recorder::open(dir) {
                    Ok(recorder) => Some(recorder),
                    Err(e) => {
                        eprintln!(
                            "atex-orchestrate: warning: {}: {e}: no durations are kept",
                            dir.join(history::FILE).display()
                        );
                        None
                    }
                },
                None => None,
            },
        };
        let groups = groups
            .into_iter()
            .zip(lists)
            .map(|(group, tests)| run::PlatformTests {
                platform: group.label,
                tests,
            })
            .collect();
        let mut totals = run::run_platforms(run_config, groups, &mut out).await;
        totals.passed += finished.passed;
        totals.failed += finished.failed;
        totals.infra += finished.infra;
        // The run ended every subscription: the printer has its last lines.
        let _ = printer.await;
        out.store.render();
        out.attempts.render();
        if cli.output.is_some() {
            // The store took the files as the tests ended.
            remove_empty_dirs(&artifacts);
        }
        let _ = io::stderr().flush();
        let mut line = format!(
            "atex-orchestrate: {} passed, {} failed, {} infra",
            totals.passed, totals.failed, totals.infra
        );
        if totals.flaky > 0 {
            line.push_str(&format!(", {} flaky", totals.flaky));
        }
        if totals.not_run > 0 {
            line.push_str(&format!(", {} not run", totals.not_run));
        }
        if let Some(why) = totals.broken.as_ref().or(totals.failures_stopped.as_ref()) {
            line.push_str(&format!(" (stopped: {why})"));
        }
        if finished.total() > 0 {
            line.push_str(&format!(
                " ({} of them from the interrupted run)",
                finished.total()
            ));
        }
        eprintln!("{line}");
        if !totals.left.is_empty() {
            // stdout is the results stream: the records go to stderr, one
            // JSON object per line, unprefixed (`grep '^{'` takes them).
            eprintln!(
                "atex-orchestrate: error: a second signal came: {} machines were not released; \
                 give the records below to `atex-provision release`",
                totals.left.len()
            );
            for machine in &totals.left {
                match serde_json::to_string(machine) {
                    Ok(record) => eprintln!("{record}"),
                    Err(e) => eprintln!("atex-orchestrate: error: {}: {e}", machine.id),
                }
            }
        }
        match totals.exit_code() {
            exit::SUCCESS | exit::TEST_FAILED if out.store.failed || out.attempts.failed => {
                exit::INFRA
            }
            code => code,
        }
    });
    // A second signal left releases or ssh masters behind: do not wait.
    runtime.shutdown_background();
    code
}

/// The process entry point.
pub fn main() -> ExitCode {
    let cli: Cli = match atex_shared::cli::parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    ExitCode::from(run(cli, io::stdin().lock()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_has_the_options() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for option in ["--provision", "--artifacts", "--reruns", "--no-tests"] {
            assert!(help.contains(option), "{option} missing from --help");
        }
    }
}
