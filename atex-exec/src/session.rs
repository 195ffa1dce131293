//! Running a stream of Test records on one machine: connect, lay the
//! machine out once per plan and tree, run the plan's prepare phases before
//! its first test and its finish phases after its last, run every test with
//! the per-test loop ([`crate::run`]) and hand each result to a
//! [`ResultSink`] as soon as it is reported.
//!
//! Tests are grouped by plan (name and tree root), in the order each plan
//! first appears; within a plan they run in input order.
//!
//! Failures that are not the test's own become `infra` results of the test
//! they hit: a setup failure, a failed prepare (every test of that plan), a
//! lost connection. After an `infra` result the machine is asked whether it
//! still answers (and reconnected once if not); when it does not, every
//! remaining test is reported `infra` without running.
//!
//! Reboots ([`RunEnd::NeedsReconnect`]: the test sent `disconnect` and its
//! wrapper then exited non-zero) are handled by [`crate::reboot`]: the
//! machine's boot identity is recorded before every launch, the machine is
//! waited for within the test's remaining duration, and once it has really
//! rebooted the same test runs again with `TMT_REBOOT_COUNT` and
//! `TMT_TEST_RESTART_COUNT` raised (its output appended to the same
//! file). A reconnect to the same boot, a machine that does not come back,
//! or a work dir lost in the reboot make the test `infra` with a
//! `RebootError(...)` note.
//!
//! A failed finish phase or cleanup has no test to be reported on; it is
//! a warning on stderr.
//!
//! For people watching, the session also tells its [`ResultSink`] what it
//! is doing ([`Progress`]): a test starts, a test ended (the status of its
//! own last result), the machine is lost. These come once per test, never
//! per result, so they cost nothing next to a test's million results.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use atex_shared::connection::Connection;
use atex_shared::records::{Machine, Test, TestResult};
use indexmap::IndexMap;

use crate::artifacts::Artifacts;
use crate::control::Deadline;
use crate::launch::ConnectionLauncher;
use crate::reboot::{self, BootIdentity};
use crate::remote::{self, RemoteLayout};
use crate::reporter::{DEFAULT_TESTOUT, Failure, Reporter, ResultContext, ResultView, Sink};
use crate::run::{self, Counters, RunEnd, TestRun};
use crate::wrapper::WrapperFlags;

/// Where results go: a [`Sink`] that can also say the reader went away
/// (then no further test is started) and hear about the run's progress.
pub trait ResultSink: Sink {
    /// Whether results can still be delivered.
    fn is_closed(&self) -> bool {
        false
    }

    /// Take a progress event (the command line prints it on stderr);
    /// ignored unless implemented.
    fn progress(&mut self, event: Progress<'_>) {
        let _ = event;
    }
}

/// What a session is doing, for people (see [`ResultSink::progress`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// A test starts: the `index`-th (from 1) of the `total` tests read.
    Started {
        /// 1-based position in the run.
        index: usize,
        /// How many tests the session has.
        total: usize,
        /// The test's name.
        test: &'a str,
    },
    /// A test that started has ended.
    Ended {
        /// The test's name.
        test: &'a str,
        /// The status of the test's own last result: its verdict (`None`
        /// when that result had no status).
        status: Option<&'a str>,
        /// The note of that result.
        note: Option<&'a str>,
        /// From start to end, setup included.
        duration: Duration,
        /// How many results the test gave (its own and its subresults').
        results: usize,
        /// How many of them are not `pass`, `info` or `skip`.
        not_passed: usize,
    },
    /// Tests are reported `infra` without running: the machine is lost
    /// (`machine` names it) or a plan's setup failed.
    NotRun {
        /// How many tests.
        tests: usize,
        /// Why, e.g. `machine 'local' is unreachable (failed to connect: ...)`.
        why: &'a str,
    },
}

impl ResultSink for Vec<TestResult> {}

/// How long each step on the machine after an interrupt may take:
/// stopping the running test, removing the work directory, closing the
/// connection. A step that does not end in time means the machine does
/// not answer, and the steps after it are skipped; a second SIGINT or
/// SIGTERM skips them at once.
pub const CLEANUP_LIMIT: Duration = Duration::from_secs(5);

/// The steps on the machine after an interrupt (see [`CLEANUP_LIMIT`]).
struct WindDown {
    /// SIGINT and SIGTERM, listened to from the first interrupt on (the
    /// caller's listener has fired and no longer hears them).
    second: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    /// Why the remaining steps are skipped, once they are.
    skip: Option<String>,
}

impl WindDown {
    fn start() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        // Registered at once, so a second signal that comes before the
        // first step is heard too.
        let second = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Some((int, term)),
            _ => None,
        };
        Self { second, skip: None }
    }

    /// Run `step` within [`CLEANUP_LIMIT`]; `None` when it was skipped or
    /// cut short (then [`WindDown::skipped`] says why).
    async fn step<T>(&mut self, step: impl Future<Output = T>) -> Option<T> {
        if self.skip.is_some() {
            return None;
        }
        let second = async {
            match self.second.as_mut() {
                Some((int, term)) => tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                },
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            ended = tokio::time::timeout(CLEANUP_LIMIT, step) => ended.map_err(|_| {
                format!("the machine did not answer within {} s", CLEANUP_LIMIT.as_secs())
            }),
            signal = second => Err(format!("a second signal ({signal}) came")),
        };
        match ended {
            Ok(value) => Some(value),
            Err(why) => {
                self.skip = Some(why);
                None
            }
        }
    }

    /// Why a step was skipped.
    fn skipped(&self) -> &str {
        self.skip.as_deref().unwrap_or("skipped")
    }
}

/// A future that ends when the run must stop (a signal); its output is
/// the note's message, e.g. `SIGINT`.
pub type Interrupt<'a> = Pin<Box<dyn Future<Output = String> + 'a>>;

/// What a session did, for the exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Results seen with status `pass`, `info` or `skip`.
    pub passed: usize,
    /// Results seen with status `fail`, `error` or `warn`.
    pub failed: usize,
    /// Results seen with status `infra`.
    pub infra: usize,
    /// Results with any other status (counted as failed by the exit code).
    pub other: usize,
    /// The interrupt's message, when the run was interrupted.
    pub interrupted: Option<String>,
    /// The test that was running when the interrupt came: it was stopped and
    /// reported `infra`.
    pub stopped: Option<String>,
    /// Tests that got no result at all (the run was interrupted first).
    pub not_run: usize,
    /// After an interrupt: the machine's work directory was removed.
    pub cleaned_up: bool,
}

impl Summary {
    /// Count one result's status. A result without a status (`None`, as
    /// ATEX keeps `{}`) is neither a pass nor a failure: it counts as
    /// "other", which makes the exit code 1, because a run whose verdict is
    /// unknown must not pass a gate.
    pub fn count(&mut self, status: Option<&str>) {
        match status {
            Some("pass" | "info" | "skip") => self.passed += 1,
            Some("fail" | "error" | "warn") => self.failed += 1,
            Some("infra") => self.infra += 1,
            _ => self.other += 1,
        }
    }

    /// The exit code of issue 3: 3 when some result is `infra`, else 1
    /// when some is not `pass`/`info`/`skip`, else 0 (interrupts are the
    /// caller's: they exit 130/143).
    pub fn exit_code(&self) -> u8 {
        if self.infra > 0 {
            atex_shared::exit::INFRA
        } else if self.failed + self.other > 0 {
            atex_shared::exit::TEST_FAILED
        } else {
            atex_shared::exit::SUCCESS
        }
    }
}

/// Whether a status is a pass for the exit code.
fn passes(status: Option<&str>) -> bool {
    matches!(status, Some("pass" | "info" | "skip"))
}

/// A sink counting statuses before passing results on.
struct Counting<'a, S> {
    inner: &'a mut S,
    summary: &'a mut Summary,
    /// The running test's results so far, for [`Progress::Ended`].
    tally: Tally,
}

/// One test's results as far as people are told (buffers reused from test
/// to test: a test may report a million nameless results).
#[derive(Debug, Default)]
struct Tally {
    results: usize,
    not_passed: usize,
    /// The status and note of the test's own last result (`Some` once one
    /// came).
    own: Option<(Option<String>, Option<String>)>,
}

impl Tally {
    fn count(&mut self, name: Option<&str>, status: Option<&str>, note: Option<&str>) {
        self.results += 1;
        if !passes(status) {
            self.not_passed += 1;
        }
        if name.is_none() {
            let (own_status, own_note) = self.own.get_or_insert_default();
            set(own_status, status);
            set(own_note, note);
        }
    }
}

/// `*slot = value`, reusing the slot's allocation.
fn set(slot: &mut Option<String>, value: Option<&str>) {
    match (slot.as_mut(), value) {
        (Some(buf), Some(value)) => {
            buf.clear();
            buf.push_str(value);
        }
        (_, value) => *slot = value.map(str::to_owned),
    }
}

impl<S: ResultSink> Counting<'_, S> {
    /// Tell the sink that `test` (started at `start`) ended, and reset the
    /// tally.
    fn ended(&mut self, test: &str, start: Instant) {
        let tally = std::mem::take(&mut self.tally);
        let (status, note) = tally.own.unwrap_or_default();
        self.inner.progress(Progress::Ended {
            test,
            status: status.as_deref(),
            note: note.as_deref(),
            duration: start.elapsed(),
            results: tally.results,
            not_passed: tally.not_passed,
        });
    }
}

impl<S: ResultSink> Sink for Counting<'_, S> {
    fn result(&mut self, result: TestResult) {
        let status = result.status.as_deref();
        self.summary.count(status);
        self.tally
            .count(result.name.as_deref(), status, result.note.as_deref());
        self.inner.result(result);
    }

    fn result_view(&mut self, result: ResultView<'_>) {
        self.summary.count(result.status);
        self.tally.count(result.name, result.status, result.note);
        self.inner.result_view(result);
    }

    fn warning(&mut self, message: String) {
        self.inner.warning(message);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }
}

/// What one session runs with.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The machine.
    pub machine: Machine,
    /// The platform results carry.
    pub platform: String,
    /// The artifacts root: each test's files go to `<root>/<test name>/`.
    pub artifacts: PathBuf,
}

/// Run `tests` on the machine of `config`, results to `sink`, until done
/// or `interrupt` ends: then the running test (or its setup) is killed and
/// reported `infra` with the note `Interrupted(<message>)`, no further test
/// starts, the plan's work directory is removed (also when the interrupt
/// came while it was being laid out) and the [`Summary`] says what was
/// stopped and how many tests did not run. Each of these steps on the
/// machine is bounded by [`CLEANUP_LIMIT`]; after one that times out (a
/// frozen machine) the rest are skipped with a warning, and a second
/// SIGINT or SIGTERM skips them at once. No test: nothing is connected.
pub async fn run(
    config: &SessionConfig,
    tests: Vec<Test>,
    sink: &mut impl ResultSink,
    mut interrupt: Interrupt<'_>,
) -> Summary {
    let mut summary = Summary::default();
    if tests.is_empty() {
        // Nothing to run: the machine is not even connected.
        return summary;
    }
    let total = tests.len();
    let mut out = Counting {
        inner: sink,
        summary: &mut summary,
        tally: Tally::default(),
    };
    let mut session = Session {
        config,
        conn: Connection::new(&config.machine.connection),
        lost: None,
        boot: None,
        wind: None,
    };
    let connected = tokio::select! {
        r = session.conn.connect() => r,
        message = &mut interrupt => {
            out.summary.interrupted = Some(message);
            out.summary.not_run = total;
            return summary;
        }
    };
    if let Err(e) = connected {
        session.lost = Some(format!("failed to {e}"));
    }
    let mut plans: IndexMap<(String, PathBuf), Vec<Test>> = IndexMap::new();
    for test in tests {
        let key = (test.plan.name.clone(), test.root.clone());
        plans.entry(key).or_default().push(test);
    }
    // Tests reported so far (run or not), and whether the machine's loss
    // was told.
    let mut done = 0;
    let mut lost_told = false;
    'plans: for ((_, root), tests) in plans {
        let layout = match session
            .lay_out(&root, &tests, &mut out, &mut interrupt)
            .await
        {
            Step::Done(Some(layout)) => layout,
            Step::Done(None) => {
                done += tests.len();
                continue;
            }
            Step::Interrupted => {
                // lay_out removed what it had made.
                out.summary.not_run = total - done;
                break;
            }
        };
        for test in &tests {
            if out.inner.is_closed() {
                break;
            }
            let Some(layout) = &layout else {
                // The machine is lost: report without running.
                let note = session.lost.clone().unwrap_or_default();
                if !std::mem::replace(&mut lost_told, true) {
                    let why = format!(
                        "machine '{}' is unreachable ({})",
                        config.machine.id,
                        note.lines().next().unwrap_or_default()
                    );
                    out.inner.progress(Progress::NotRun {
                        tests: total - done,
                        why: &why,
                    });
                }
                session.report_setup_failure(test, &note, &mut out);
                out.flush();
                done += 1;
                continue;
            };
            let start = Instant::now();
            out.tally = Tally::default();
            out.inner.progress(Progress::Started {
                index: done + 1,
                total,
                test: &test.name,
            });
            let step = session
                .run_one(layout, test, &mut out, &mut interrupt)
                .await;
            let infra = matches!(step, Step::Done(true));
            if let Step::Done(_) = step {
                out.ended(&test.name, start);
            }
            // A Ctrl-C in a terminal also reaches the ssh or podman client
            // of the test, which may end the run (as infra) just before the
            // interrupt is seen: it is looked at once more, so the run
            // stops here, before the next test, either way.
            let (mut interrupted, mut stopped) = match step {
                Step::Interrupted => (true, true),
                Step::Done(infra) => (fired(&mut interrupt, out.summary).await, infra),
            };
            // After an infra end the machine is checked (a reconnect to a
            // frozen machine may take its whole timeout): an interrupt
            // stops that too.
            if !interrupted && infra {
                interrupted = session
                    .check_machine(&mut interrupt, out.summary)
                    .await
                    .is_none();
                // The test had ended before.
                stopped = false;
            }
            if interrupted {
                if stopped {
                    out.summary.stopped = Some(test.name.clone());
                }
                out.summary.not_run = total - done - 1;
                // No finish phases after an interrupt, but the work
                // directory goes.
                session.remove_work_dir(layout, &mut out).await;
                break 'plans;
            }
            done += 1;
        }
        if let (Some(layout), None) = (&layout, &session.lost) {
            let finished = session
                .finish_plan(layout, &tests, &mut out, &mut interrupt)
                .await;
            if let Step::Interrupted = finished {
                out.summary.not_run = total - done;
                session.remove_work_dir(layout, &mut out).await;
                break 'plans;
            }
        }
    }
    if let (Some(boot), None) = (session.boot.take(), &session.lost) {
        match session.wind.as_mut() {
            Some(wind) => {
                let _ = wind.step(boot.forget(&session.conn)).await;
            }
            None => boot.forget(&session.conn).await,
        }
    }
    if session.wind.is_some() {
        // The master is local and answers even for a frozen machine; it
        // is bounded all the same.
        let _ = tokio::time::timeout(CLEANUP_LIMIT, session.conn.disconnect()).await;
    } else {
        let _ = session.conn.disconnect().await;
    }
    summary
}

/// Whether the interrupt came already (its message then goes into
/// `summary`), without waiting for it. Not called again once it did: a
/// finished future must not be polled.
async fn fired(interrupt: &mut Interrupt<'_>, summary: &mut Summary) -> bool {
    tokio::select! {
        biased;
        message = interrupt => {
            summary.interrupted = Some(message);
            true
        }
        () = std::future::ready(()) => false,
    }
}

enum Step<T> {
    Done(T),
    Interrupted,
}

struct Session<'c> {
    config: &'c SessionConfig,
    conn: Connection,
    /// Why the machine is considered gone, once it is.
    lost: Option<String>,
    /// The boot identity recorded before the last launch.
    boot: Option<BootIdentity>,
    /// The steps after an interrupt, once one came.
    wind: Option<WindDown>,
}

impl Session<'_> {
    /// Lay the machine out for one plan and run its prepare phases; when
    /// that fails, every test of the plan is reported `infra`
    /// (`Done(None)`). `Done(Some(None))`: the machine is lost.
    async fn lay_out<S: ResultSink>(
        &mut self,
        root: &Path,
        tests: &[Test],
        out: &mut Counting<'_, S>,
        interrupt: &mut Interrupt<'_>,
    ) -> Step<Option<Option<RemoteLayout>>> {
        if self.lost.is_some() {
            return Step::Done(Some(None));
        }
        let Some(first) = tests.first() else {
            return Step::Done(None);
        };
        // The work dir is made first, on its own: once the script that
        // makes it runs, its path must come back, or an interrupt would
        // leave it behind unnamed.
        let created = {
            let mut create = std::pin::pin!(RemoteLayout::create(&self.conn));
            tokio::select! {
                r = &mut create => Ok(r),
                message = &mut *interrupt => {
                    let wind = self.wind.get_or_insert_with(WindDown::start);
                    Err((message, wind.step(create).await))
                }
            }
        };
        let created = match created {
            Ok(created) => created,
            Err((message, made)) => {
                out.summary.interrupted = Some(message);
                match made {
                    Some(Ok(layout)) => self.remove_work_dir(&layout, out).await,
                    // Nothing was made.
                    Some(Err(_)) => {}
                    None => {
                        let why = self.wind.as_ref().map_or("", |w| w.skipped());
                        out.warning(format!(
                            "the work directory being made was not removed: {why}"
                        ));
                    }
                }
                return Step::Interrupted;
            }
        };
        let prepare = async {
            let layout = created?;
            let ready = async {
                layout.upload_tree(&self.conn, root).await?;
                layout.run_prepare(&self.conn, &first.plan).await
            };
            let ready = tokio::select! {
                r = ready => r,
                message = &mut *interrupt => return Ok(Err((layout, message))),
            };
            if let Err(e) = ready {
                let _ = layout.cleanup(&self.conn).await;
                return Err(e);
            }
            Ok::<_, remote::RemoteError>(Ok(layout))
        };
        let prepared = match prepare.await {
            Ok(Ok(layout)) => Ok(layout),
            Ok(Err((layout, message))) => {
                // Interrupted while uploading or in a prepare phase.
                out.summary.interrupted = Some(message);
                self.remove_work_dir(&layout, out).await;
                return Step::Interrupted;
            }
            Err(e) => Err(e),
        };
        match prepared {
            Ok(layout) => Step::Done(Some(Some(layout))),
            Err(e) => {
                let note = format!("failed to {e}");
                let why = format!(
                    "plan '{}' could not be set up ({})",
                    first.plan.name,
                    note.lines().next().unwrap_or_default()
                );
                out.inner.progress(Progress::NotRun {
                    tests: tests.len(),
                    why: &why,
                });
                for test in tests {
                    self.report_setup_failure(test, &note, out);
                }
                match self.check_machine(interrupt, out.summary).await {
                    Some(()) => Step::Done(None),
                    None => Step::Interrupted,
                }
            }
        }
    }

    /// Run the plan's finish phases and remove the work dir; an interrupt
    /// stops the phases (the caller then removes the work dir).
    async fn finish_plan<S: ResultSink>(
        &self,
        layout: &RemoteLayout,
        tests: &[Test],
        out: &mut Counting<'_, S>,
        interrupt: &mut Interrupt<'_>,
    ) -> Step<()> {
        if let Some(first) = tests.first() {
            let finished = tokio::select! {
                r = layout.run_finish(&self.conn, &first.plan) => r,
                message = interrupt => {
                    out.summary.interrupted = Some(message);
                    return Step::Interrupted;
                }
            };
            if let Err(e) = finished {
                out.warning(format!("plan {}: failed to {e}", first.plan.name));
            }
        }
        if let Err(e) = layout.cleanup(&self.conn).await {
            out.warning(format!("failed to {e}"));
        }
        Step::Done(())
    }

    /// After an interrupt: remove the work dir (see [`CLEANUP_LIMIT`]),
    /// or say why it stays.
    async fn remove_work_dir<S: ResultSink>(
        &mut self,
        layout: &RemoteLayout,
        out: &mut Counting<'_, S>,
    ) {
        let wind = self.wind.get_or_insert_with(WindDown::start);
        match wind.step(layout.cleanup(&self.conn)).await {
            Some(Ok(())) => out.summary.cleaned_up = true,
            Some(Err(e)) => out.warning(format!("failed to {e}")),
            None => out.warning(format!(
                "the work directory {} was not removed: {}",
                layout.work_dir(),
                wind.skipped()
            )),
        }
    }

    /// After an `infra` result: is the machine still there? One reconnect
    /// is tried; when that fails too, the machine is lost. `None`: the
    /// interrupt came meanwhile (its message is in `summary`).
    async fn check_machine(
        &mut self,
        interrupt: &mut Interrupt<'_>,
        summary: &mut Summary,
    ) -> Option<()> {
        // An infra end may mean the machine rebooted on its own: the boot
        // identity is recorded anew before the next test, and the old
        // marker removed while the machine answers.
        let boot = self.boot.take();
        let check = async {
            if self.conn.check_alive().await.is_ok() {
                if let Some(boot) = boot {
                    boot.forget(&self.conn).await;
                }
                return;
            }
            if let Err(e) = self.conn.connect().await {
                self.lost = Some(format!("failed to {e}"));
            }
        };
        tokio::select! {
            () = check => Some(()),
            message = interrupt => {
                summary.interrupted = Some(message);
                None
            }
        }
    }

    fn context(&self, test: &Test) -> ResultContext {
        ResultContext {
            test: test.name.clone(),
            platform: self.config.platform.clone(),
            machine: self.config.machine.id.clone(),
            started: rfc3339(SystemTime::now()),
            attempt: 0,
        }
    }

    /// Run one test, across its reboots; `Done(true)` when it ended
    /// `infra`. An interrupt kills it and reports it `infra`.
    async fn run_one<S: ResultSink>(
        &mut self,
        layout: &RemoteLayout,
        test: &Test,
        out: &mut Counting<'_, S>,
        interrupt: &mut Interrupt<'_>,
    ) -> Step<bool> {
        let start = Instant::now();
        let context = self.context(test);
        let artifacts = match Artifacts::for_test(&self.config.artifacts, &test.name) {
            Ok(artifacts) => artifacts,
            Err(e) => {
                out.result(bare_result(
                    test,
                    &context,
                    format!("OSError(failed to {e})"),
                ));
                out.flush();
                return Step::Done(true);
            }
        };
        let reporter = Reporter::new(artifacts, context, &mut *out).started_at(start);
        // The setup may install packages for minutes: an interrupt stops it
        // too, and the test is reported like one stopped while running.
        let boot = &mut self.boot;
        let conn = &self.conn;
        let setup = async {
            // The boot identity is known before the setup, so the setup
            // script writes the first attempt's whole environment (marker
            // included) and the run loop need not write it again.
            if boot.is_none() {
                *boot = BootIdentity::record(conn, None).await.ok();
            }
            let mut setup_extra = Vec::new();
            if let Some(boot) = boot.as_ref() {
                setup_extra.push((reboot::MARKER_VAR.to_owned(), boot.marker.clone()));
            }
            layout.setup_test(conn, test, &setup_extra, 0, 0).await
        };
        let setup = tokio::select! {
            setup = setup => Ok(setup),
            message = &mut *interrupt => Err(message),
        };
        let files = match setup {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => {
                reporter.setup_failed(&format!("failed to {e}"));
                return Step::Done(true);
            }
            Err(message) => {
                drop(reporter);
                let failure = Failure::new("Interrupted", message.clone());
                self.report_interrupted(test, &failure, start, out);
                out.summary.interrupted = Some(message);
                return Step::Interrupted;
            }
        };
        let run_layout = run::RemoteLayout {
            python: layout.python().to_owned(),
            wrapper: layout.wrapper(),
            env_file: files.env_file,
            test_script: files.script,
            workdir: files.workdir,
            flags: WrapperFlags {
                pty: test.tty,
                ..WrapperFlags::default()
            },
        };
        let duration = Duration::from_secs(test.duration);
        let mut test_run = TestRun::with_deadline(reporter, Deadline::new(start, duration));
        if self.boot.is_some() {
            // The loop below uses this same boot identity for the first
            // launch, so the setup wrote exactly its environment.
            test_run = test_run.with_env_written();
        }
        let mut counters = Counters::default();
        loop {
            // Recorded once per boot of the machine, not per test (a remote
            // round trip less per test): it stays valid until a reboot is
            // confirmed or a test ends as infra (the machine may have
            // rebooted on its own), which forget it.
            let boot = match &self.boot {
                Some(boot) => Ok(boot.clone()),
                None => BootIdentity::record(&self.conn, None).await,
            };
            self.boot = boot.as_ref().ok().cloned();
            let mut extra = Vec::new();
            if let Ok(boot) = &boot {
                extra.push((reboot::MARKER_VAR.to_owned(), boot.marker.clone()));
            }
            let environment =
                layout.test_environment(test, &extra, counters.reboot, counters.restart);
            let launcher = ConnectionLauncher::new(&self.conn);
            let end = tokio::select! {
                end = test_run.run(&launcher, &run_layout, &environment, counters) => end,
                message = &mut *interrupt => {
                    let wind = self.wind.get_or_insert_with(WindDown::start);
                    match wind.step(launcher.kill_running()).await {
                        Some(Ok(())) => {}
                        Some(Err(e)) => {
                            out.warning(format!("failed to stop the interrupted test: {e}"));
                        }
                        None => out.warning(format!(
                            "the interrupted test was not stopped: {}",
                            wind.skipped()
                        )),
                    }
                    let failure = Failure::new("Interrupted", message.clone());
                    self.report_interrupted(test, &failure, start, out);
                    out.summary.interrupted = Some(message);
                    return Step::Interrupted;
                }
            };
            drop(launcher);
            let paused = match end {
                RunEnd::Finished(finished) => return Step::Done(finished.is_infra()),
                RunEnd::NeedsReconnect(paused) => paused,
            };
            let boot = match boot {
                Ok(boot) => boot,
                Err(e) => {
                    let message = format!("cannot tell a reboot without a boot identity: {e}");
                    paused.abort(Failure::new("RebootError", message));
                    return Step::Done(true);
                }
            };
            // The duration clock keeps running while the machine reboots.
            let now = Instant::now();
            let until = now + paused.deadline().remaining(now);
            let waited = tokio::select! {
                waited = reboot::wait_for_reboot(&mut self.conn, &boot, layout.work_dir(), until) => waited,
                message = &mut *interrupt => {
                    paused.abort(Failure::new("Interrupted", message.clone()));
                    out.summary.interrupted = Some(message);
                    return Step::Interrupted;
                }
            };
            if let Err(e) = waited {
                paused.abort(Failure::new("RebootError", e.to_string()));
                return Step::Done(true);
            }
            counters.reboot += 1;
            counters.restart += 1;
            // The old marker went with the old boot: record the new boot.
            self.boot = None;
            test_run = *paused;
        }
    }

    /// Report `test` as one `infra` result with a `TestSetupError` note.
    fn report_setup_failure<S: ResultSink>(
        &self,
        test: &Test,
        note: &str,
        out: &mut Counting<'_, S>,
    ) {
        let context = self.context(test);
        match Artifacts::for_test(&self.config.artifacts, &test.name) {
            Ok(artifacts) => {
                Reporter::new(artifacts, context, &mut *out).setup_failed(note);
            }
            Err(e) => {
                let note = format!("TestSetupError({note}; and failed to {e})");
                out.result(bare_result(test, &context, note));
                out.flush();
            }
        }
    }

    /// Report the interrupted `test` as `infra` with `failure`, keeping
    /// the output it wrote. Its reporter was dropped with the run (partial
    /// results it held are lost), and may already have linked the output
    /// as `files/output.txt`, so the result is made here, not by a new
    /// reporter (which would try to link it again).
    fn report_interrupted<S: ResultSink>(
        &self,
        test: &Test,
        failure: &Failure,
        start: Instant,
        out: &mut Counting<'_, S>,
    ) {
        let context = self.context(test);
        let mut result = bare_result(test, &context, failure.note());
        result.duration = start.elapsed().as_secs_f64();
        match Artifacts::for_test(&self.config.artifacts, &test.name) {
            Ok(artifacts) => {
                result.artifacts = artifacts.dir().to_path_buf();
                let testout = artifacts.testout_path();
                let linked = artifacts.dir().join("files").join(DEFAULT_TESTOUT);
                let kept = linked.exists()
                    || (testout.exists()
                        && std::fs::create_dir_all(artifacts.dir().join("files"))
                            .and_then(|()| std::fs::rename(&testout, &linked))
                            .is_ok());
                if kept {
                    result.files.push(DEFAULT_TESTOUT.to_owned());
                }
                if let Err(e) = artifacts.remove_testout() {
                    out.warning(format!("failed to {e}"));
                }
            }
            Err(e) => {
                result.note = Some(format!("{}; and failed to {e}", failure.note()));
            }
        }
        out.result(result);
        out.flush();
    }
}

/// An `infra` result made without a reporter (no artifacts directory).
fn bare_result(test: &Test, context: &ResultContext, note: String) -> TestResult {
    TestResult {
        test: test.name.clone(),
        name: None,
        status: Some("infra".into()),
        note: Some(note),
        files: Vec::new(),
        platform: context.platform.clone(),
        machine: context.machine.clone(),
        artifacts: PathBuf::new(),
        exit_code: None,
        started: context.started.clone(),
        duration: 0.0,
        attempt: 0,
        extra: IndexMap::new(),
    }
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g.
/// `2026-11-22T00:52:46.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_827_166_123);
        assert_eq!(rfc3339(t), "2026-11-28T00:52:46.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn exit_codes() {
        let mut s = Summary::default();
        assert_eq!(s.exit_code(), 0);
        s.count(Some("pass"));
        s.count(Some("skip"));
        assert_eq!(s.exit_code(), 0);
        // A result without a status is not a pass.
        let mut unknown = s.clone();
        unknown.count(None);
        assert_eq!(unknown.exit_code(), 1);
        s.count(Some("warn"));
        assert_eq!(s.exit_code(), 1);
        s.count(Some("infra"));
        assert_eq!(s.exit_code(), 3);
    }
}
