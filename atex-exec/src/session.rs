//! One machine's session, driven one test at a time: [`Session::open`]
//! connects, [`Session::run_test`] runs one test (laying the machine out
//! and running the plan's prepare phases the first time a plan is seen),
//! [`Session::finish_plan`] and [`Session::close`] run the finish phases of
//! the plans prepared here and remove their work directories. Results go to
//! a [`ResultSink`] as soon as they are reported; each test's own summary
//! comes back as a [`TestOutcome`]. The `atex-exec` command is a loop over
//! this session (see [`crate::cli`]); an orchestrator holds one per
//! machine (a session is [`Send`]).
//!
//! Each plan (name and tree root) gets its own work directory on the
//! machine, made and uploaded before its first test.
//!
//! Failures that are not the test's own become `infra` results of the test
//! they hit: a setup failure, a failed prepare (that test, and every later
//! test of that plan without running), a lost connection. After an `infra`
//! result the machine is asked whether it still answers (and reconnected
//! once if not); when it does not, the session is lost
//! ([`Session::lost`]): the tests of plans not set up yet are reported
//! `infra` without running. A caller should then close the session.
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
//! a warning to the sink.
//!
//! Interrupts: every step takes the caller's [`Interrupt`]. When it ends,
//! the running test (or its setup) is killed and reported `infra` with the
//! note `Interrupted(<message>)`, the step returns saying so, and
//! [`Session::close`] then removes the work directories without running
//! finish phases. Each step on the machine after an interrupt is bounded by
//! [`CLEANUP_LIMIT`]; after one that times out (a frozen machine) the rest
//! are skipped with a warning, and a second SIGINT or SIGTERM skips them at
//! once.
//!
//! ```no_run
//! use atex_exec::session::{Interrupt, Session, SessionConfig};
//! use atex_shared::records::{Connection, Machine, Test, TestResult};
//!
//! # async fn demo(tests: Vec<Test>) -> Result<(), Box<dyn std::error::Error>> {
//! let machine = Machine {
//!     id: "local".into(),
//!     provisioner: "local".into(),
//!     connection: Connection::Local,
//!     platform: String::new(),
//!     context: Default::default(),
//!     release: serde_json::Value::Null,
//! };
//! let config = SessionConfig::new(machine, "local", "/tmp/artifacts");
//! // Never fires here; a caller would end it on a signal or a cancel.
//! let mut interrupt: Interrupt<'static> = Box::pin(std::future::pending());
//! let mut results: Vec<TestResult> = Vec::new();
//! let mut session = Session::open(config, &mut interrupt).await?;
//! for test in &tests {
//!     let outcome = session.run_test(test, 0, &mut results, &mut interrupt).await;
//!     if !outcome.reusable() {
//!         // An orchestrator would destroy this machine and use another.
//!         break;
//!     }
//! }
//! session.close(&mut results, &mut interrupt).await;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use atex_shared::connection::{Connection, ConnectionError};
use atex_shared::records::{Machine, Plan, Test, TestResult};
use indexmap::IndexMap;

use crate::artifacts::Artifacts;
use crate::control::{Deadline, Limits};
use crate::reboot::{self, BootIdentity};
use crate::remote::{self, RemoteLayout};
use crate::reporter::{DEFAULT_TESTOUT, Failure, Reporter, ResultContext, ResultView, Sink};
use crate::run::{self, Counters, RunEnd, TestRun};
use crate::runner::{Runner, RunnerError, RunnerLauncher};
use crate::wrapper::WrapperFlags;

/// Where results go: a [`Sink`] that can also say the reader went away
/// (then the caller starts no further test) and hear about the session's
/// progress.
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
/// The session sends [`Progress::Started`]; the others are made by its
/// caller from [`TestOutcome`]s and [`Session::lost`] (atex-exec prints
/// them all).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// A test starts on the machine (its plan is prepared): sent by
    /// [`Session::run_test`] right before the test's setup.
    Started {
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

/// A future that ends when the session must stop (a signal, a cancel);
/// its output is the note's message, e.g. `SIGINT`. The caller keeps one
/// for the whole session and passes it to every step: once it has ended,
/// the session does not poll it again.
pub type Interrupt<'a> = Pin<Box<dyn Future<Output = String> + Send + 'a>>;

/// What a run did, for the exit code (the command line keeps it; a
/// session reports per test in [`TestOutcome`]).
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

/// A sink keeping one test's [`Tally`] before passing results on.
struct Counting<'a, S> {
    inner: &'a mut S,
    tally: Tally,
}

/// One test's results as far as its [`TestOutcome`] tells (a test may
/// report a million nameless results: only counts and its own last status
/// are kept).
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

impl<S: ResultSink> Sink for Counting<'_, S> {
    fn result(&mut self, result: TestResult) {
        self.tally.count(
            result.name.as_deref(),
            result.status.as_deref(),
            result.note.as_deref(),
        );
        self.inner.result(result);
    }

    fn result_view(&mut self, result: ResultView<'_>) {
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
#[non_exhaustive]
pub struct SessionConfig {
    /// The machine.
    pub machine: Machine,
    /// The platform results carry.
    pub platform: String,
    /// The artifacts root: each test's files go to `<root>/<test name>/`.
    pub artifacts: PathBuf,
    /// The caps on what a test's control stream announces.
    pub limits: Limits,
}

impl SessionConfig {
    /// A configuration with the default [`Limits`].
    pub fn new(
        machine: Machine,
        platform: impl Into<String>,
        artifacts: impl Into<PathBuf>,
    ) -> Self {
        Self {
            machine,
            platform: platform.into(),
            artifacts: artifacts.into(),
            limits: Limits::default(),
        }
    }

    /// The same with these caps.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// Why [`Session::open`] gave no session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The machine cannot be connected to.
    #[error("failed to {0}")]
    Connect(#[source] ConnectionError),
    /// The interrupt came while connecting (its message).
    #[error("interrupted ({0})")]
    Interrupted(String),
}

/// How one [`Session::run_test`] went: the test's own last status, and
/// what the caller should do with the machine and the run.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TestOutcome {
    /// The test got its records (`false` only when the interrupt came
    /// before it started, or came before).
    pub reported: bool,
    /// It was started on the machine (`false`: reported `infra` without
    /// running, as when its plan's prepare failed before or the machine
    /// is lost).
    pub started: bool,
    /// It ran to its end, or failed on its own (`false`: not started, or
    /// killed by the interrupt).
    pub ended: bool,
    /// It was running when the interrupt came: it was stopped and
    /// reported `infra` (with an `Interrupted(...)` note, unless it ended
    /// `infra` on its own just before, as when a Ctrl-C reached its ssh).
    pub stopped: bool,
    /// It ended `infra` (it could not run to its end): the machine may be
    /// broken.
    pub infra: bool,
    /// The status of its own last result (`None`: that result had none,
    /// or it gave none).
    pub status: Option<String>,
    /// The note of that result.
    pub note: Option<String>,
    /// The exit code the test's script ended with, when it ended.
    pub exit_code: Option<i32>,
    /// From start to end, setup included.
    pub duration: Duration,
    /// How many results it gave (its own and its subresults').
    pub results: usize,
    /// How many of them are not `pass`, `info` or `skip`.
    pub not_passed: usize,
    /// Its plan's prepare ran in this call and failed: why (`plan 'NAME'
    /// could not be set up (...)`). The session's later tests of that plan
    /// are reported `infra` without running.
    pub prepare_failed: Option<String>,
    /// The interrupt came (its message): the caller starts no further
    /// test and calls [`Session::close`].
    pub interrupted: Option<String>,
    /// Why the machine does not answer any more (a reconnect failed too):
    /// later tests are reported `infra` without running.
    pub lost: Option<String>,
}

impl TestOutcome {
    /// Whether the machine may run another test: the test did not end
    /// `infra`, its plan was set up, the machine answers and no interrupt
    /// came. An orchestrator destroys a machine that is not.
    pub fn reusable(&self) -> bool {
        !self.infra
            && self.prepare_failed.is_none()
            && self.lost.is_none()
            && self.interrupted.is_none()
    }
}

/// What [`Session::close`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Closed {
    /// The interrupt came during the finish phases (its message); the work
    /// directories were then removed without the rest of them.
    pub interrupted: Option<String>,
    /// After an interrupt (then or before): every work directory made
    /// here was removed.
    pub cleaned_up: bool,
}

/// A plan as the session knows it: `(name, tree root)`.
type PlanKey = (String, PathBuf);

/// One plan on this machine.
enum PlanState {
    /// Laid out and prepared: its finish phases run before the session
    /// ends. (Boxed: plans are few, and the failed ones small.)
    Ready {
        layout: RemoteLayout,
        plan: Box<Plan>,
    },
    /// Its setup failed (the note its tests are reported with).
    Failed(String),
}

/// One machine's session (see the [module docs](self)).
pub struct Session {
    config: SessionConfig,
    conn: Connection,
    /// The plans seen here, in the order they were.
    plans: IndexMap<PlanKey, PlanState>,
    /// Why the machine is considered gone, once it is.
    lost: Option<String>,
    /// The boot identity recorded before the last launch.
    boot: Option<BootIdentity>,
    /// The warm runner on the machine ([`crate::runner`]), once a test
    /// started it; a new one is started after a reboot or a reconnect.
    runner: Option<Runner>,
    /// The steps after an interrupt, once one came.
    wind: Option<WindDown>,
    /// The interrupt's message, once it came (the interrupt is not polled
    /// again).
    interrupted: Option<String>,
    /// After an interrupt: `Some(true)` when work directories were removed
    /// and none failed to be, `Some(false)` when one stayed.
    cleaned: Option<bool>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("machine", &self.config.machine.id)
            .field("plans", &self.plans.len())
            .field("lost", &self.lost)
            .field("interrupted", &self.interrupted)
            .finish_non_exhaustive()
    }
}

/// Whether the interrupt came already (its message is returned), without
/// waiting for it.
async fn fired(interrupt: &mut Interrupt<'_>) -> Option<String> {
    tokio::select! {
        biased;
        message = interrupt => Some(message),
        () = std::future::ready(()) => None,
    }
}

enum Step<T> {
    Done(T),
    Interrupted,
}

/// How [`Session::run_one`] ended (`Step::Done`).
struct Ended {
    infra: bool,
    exit_code: Option<i32>,
}

impl Ended {
    const INFRA: Ended = Ended {
        infra: true,
        exit_code: None,
    };
}

impl Session {
    /// Connect to the machine of `config`. Nothing is laid out yet: each
    /// plan's work directory is made before its first test.
    pub async fn open(
        config: SessionConfig,
        interrupt: &mut Interrupt<'_>,
    ) -> Result<Session, OpenError> {
        let mut conn = Connection::new(&config.machine.connection);
        let connected = tokio::select! {
            r = conn.connect() => r,
            message = interrupt => return Err(OpenError::Interrupted(message)),
        };
        if let Err(e) = connected {
            let _ = conn.disconnect().await;
            return Err(OpenError::Connect(e));
        }
        Ok(Session {
            config,
            conn,
            plans: IndexMap::new(),
            lost: None,
            boot: None,
            runner: None,
            wind: None,
            interrupted: None,
            cleaned: None,
        })
    }

    /// The configuration the session runs with.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Why the machine is lost (it did not answer after an `infra` end and
    /// a reconnect failed), once it is.
    pub fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }

    /// Run `test` (its `attempt`-th run, 0 for the first) and report its
    /// results to `sink`. The first time its plan is seen here, the
    /// plan's work directory is made, its tree uploaded and its prepare
    /// phases run first; when that fails, the test is reported `infra`
    /// (as every later test of the plan will be, without running). On a
    /// lost machine ([`Session::lost`]), a test whose plan is not set up
    /// yet is reported `infra` without running; one of a plan set up before
    /// is still tried (it ends `infra` unless the machine answers again).
    ///
    /// When `interrupt` ends, the test (or the plan's setup) is stopped and
    /// reported `infra`, and the outcome says so: call [`Session::close`]
    /// then (it removes the work directories). After an interrupt, no test
    /// runs: the outcome only repeats it.
    pub async fn run_test<S: ResultSink>(
        &mut self,
        test: &Test,
        attempt: u32,
        sink: &mut S,
        interrupt: &mut Interrupt<'_>,
    ) -> TestOutcome {
        let mut outcome = TestOutcome {
            interrupted: self.interrupted.clone(),
            ..TestOutcome::default()
        };
        if self.interrupted.is_some() {
            return outcome;
        }
        let mut out = Counting {
            inner: sink,
            tally: Tally::default(),
        };
        let start = Instant::now();
        let key = (test.plan.name.clone(), test.root.clone());
        let failed = match self.plans.get(&key) {
            Some(PlanState::Failed(note)) => Some(note.clone()),
            Some(PlanState::Ready { .. }) => None,
            None => self.lost.clone(),
        };
        if let Some(note) = failed {
            report_not_run(&self.config, test, attempt, &note, &mut out);
            outcome.reported = true;
            outcome.infra = true;
            outcome.lost.clone_from(&self.lost);
            return Self::finish_outcome(outcome, out.tally, start.elapsed());
        }
        if !self.plans.contains_key(&key) {
            match self.prepare(&key, test, &mut out, interrupt).await {
                Step::Done(Ok(())) => {}
                Step::Done(Err(note)) => {
                    outcome.prepare_failed = Some(format!(
                        "plan '{}' could not be set up ({})",
                        test.plan.name,
                        note.lines().next().unwrap_or_default()
                    ));
                    report_not_run(&self.config, test, attempt, &note, &mut out);
                    self.plans.insert(key, PlanState::Failed(note));
                    outcome.reported = true;
                    outcome.infra = true;
                    if self.check_machine(interrupt).await.is_none() {
                        outcome.interrupted.clone_from(&self.interrupted);
                    }
                    outcome.lost.clone_from(&self.lost);
                    return Self::finish_outcome(outcome, out.tally, start.elapsed());
                }
                Step::Interrupted => {
                    outcome.interrupted.clone_from(&self.interrupted);
                    return outcome;
                }
            }
        }
        let Some(PlanState::Ready { layout, .. }) = self.plans.get(&key) else {
            return outcome;
        };
        let layout = layout.clone();
        out.inner.progress(Progress::Started { test: &test.name });
        let start = Instant::now();
        let duration;
        outcome.started = true;
        outcome.reported = true;
        match self
            .run_one(&layout, test, attempt, &mut out, interrupt)
            .await
        {
            Step::Done(ended) => {
                duration = start.elapsed();
                outcome.ended = true;
                outcome.infra = ended.infra;
                outcome.exit_code = ended.exit_code;
                // A Ctrl-C in a terminal also reaches the ssh or podman
                // client of the test, which may end the run (as infra)
                // just before the interrupt is seen: it is looked at once
                // more, so the caller stops here either way.
                if let Some(message) = fired(interrupt).await {
                    outcome.stopped = ended.infra;
                    self.interrupt_came(message);
                } else if ended.infra {
                    // The machine is checked (a reconnect to a frozen
                    // machine may take its whole timeout): an interrupt
                    // stops that too.
                    let _ = self.check_machine(interrupt).await;
                }
            }
            Step::Interrupted => {
                duration = start.elapsed();
                outcome.stopped = true;
            }
        }
        outcome.interrupted.clone_from(&self.interrupted);
        outcome.lost.clone_from(&self.lost);
        Self::finish_outcome(outcome, out.tally, duration)
    }

    /// Fill `outcome` from the test's tally.
    fn finish_outcome(mut outcome: TestOutcome, tally: Tally, duration: Duration) -> TestOutcome {
        outcome.duration = duration;
        outcome.results = tally.results;
        outcome.not_passed = tally.not_passed;
        if let Some((status, note)) = tally.own {
            outcome.status = status;
            outcome.note = note;
        }
        outcome
    }

    /// Note the interrupt's message; the steps after it are bounded.
    fn interrupt_came(&mut self, message: String) {
        self.interrupted = Some(message);
    }

    /// Run the finish phases of the plan of `test` (when it was prepared
    /// here) and remove its work directory; a later test of the plan lays
    /// it out anew. Failures are warnings to `sink`. `Err` with the
    /// interrupt's message when it came meanwhile: the work directory is
    /// then removed by [`Session::close`].
    pub async fn finish_plan<S: ResultSink>(
        &mut self,
        test: &Test,
        sink: &mut S,
        interrupt: &mut Interrupt<'_>,
    ) -> Result<(), String> {
        let key = (test.plan.name.clone(), test.root.clone());
        self.finish_key(&key, false, sink, interrupt).await
    }

    /// [`Session::finish_plan`] of the plan `key`; with `last`, the boot
    /// marker goes in the same script as the work directory (one ssh
    /// session less at the end of a session).
    async fn finish_key(
        &mut self,
        key: &PlanKey,
        last: bool,
        sink: &mut impl Sink,
        interrupt: &mut Interrupt<'_>,
    ) -> Result<(), String> {
        if let Some(message) = &self.interrupted {
            return Err(message.clone());
        }
        let Some(PlanState::Ready { layout, plan }) = self.plans.get(key) else {
            self.plans.shift_remove(key);
            return Ok(());
        };
        if self.lost.is_none() {
            let finished = tokio::select! {
                r = layout.run_finish(&self.conn, plan) => r,
                message = &mut *interrupt => {
                    self.interrupt_came(message.clone());
                    return Err(message);
                }
            };
            if let Err(e) = finished {
                sink.warning(format!("plan {}: failed to {e}", plan.name));
            }
            let boot = if last { self.boot.take() } else { None };
            let marker = boot.as_ref().map(|b| b.marker.as_str());
            if let Err(e) = self.remove_remotely(layout, marker).await {
                sink.warning(format!("failed to {e}"));
            }
        }
        self.plans.shift_remove(key);
        Ok(())
    }

    /// End the session: the finish phases of every plan prepared here (in
    /// the order they were prepared) and the removal of their work
    /// directories, then the connection is closed. After an interrupt
    /// (before or during this), no finish phase runs: the work directories
    /// are removed, each step bounded by [`CLEANUP_LIMIT`].
    pub async fn close<S: ResultSink>(
        mut self,
        sink: &mut S,
        interrupt: &mut Interrupt<'_>,
    ) -> Closed {
        let mut closed = Closed::default();
        while self.interrupted.is_none() {
            let Some(key) = self.plans.keys().next().cloned() else {
                break;
            };
            let last = self.plans.len() == 1;
            if let Err(message) = self.finish_key(&key, last, sink, interrupt).await {
                closed.interrupted = Some(message);
            }
        }
        if self.interrupted.is_some() {
            let plans = std::mem::take(&mut self.plans);
            for state in plans.into_values() {
                if let PlanState::Ready { layout, .. } = state {
                    self.remove_work_dir(&layout, sink).await;
                }
            }
            closed.cleaned_up = self.cleaned == Some(true);
        }
        if let (Some(boot), None) = (self.boot.take(), &self.lost) {
            match self.wind.as_mut() {
                Some(wind) => {
                    let _ = wind.step(boot.forget(&self.conn)).await;
                }
                None => {
                    if !self.removed_by_runner(&[&boot.marker]).await {
                        boot.forget(&self.conn).await;
                    }
                }
            }
        }
        if let Some(runner) = self.runner.take() {
            // Its tests were stopped already; it exits on its own when its
            // stdin closes, which this does sooner (bounded: a frozen
            // machine never answers).
            match self.wind.as_mut() {
                Some(wind) => {
                    let _ = wind.step(runner.stop()).await;
                }
                None => {
                    let _ = tokio::time::timeout(CLEANUP_LIMIT, runner.stop()).await;
                }
            }
        }
        if self.wind.is_some() {
            // The master is local and answers even for a frozen machine;
            // it is bounded all the same.
            let _ = tokio::time::timeout(CLEANUP_LIMIT, self.conn.disconnect()).await;
        } else {
            let _ = self.conn.disconnect().await;
        }
        closed
    }

    /// Lay the machine out for the plan of `test` and run its prepare
    /// phases; `Done(Err(note))` when that fails (nothing is left behind).
    /// An interrupt removes what was made.
    async fn prepare(
        &mut self,
        key: &PlanKey,
        test: &Test,
        out: &mut impl Sink,
        interrupt: &mut Interrupt<'_>,
    ) -> Step<Result<(), String>> {
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
                self.interrupt_came(message);
                match made {
                    Some(Ok(layout)) => self.remove_work_dir(&layout, out).await,
                    // Nothing was made.
                    Some(Err(_)) => {}
                    None => {
                        self.cleaned = Some(false);
                        let why = self.wind.as_ref().map_or("", |w| w.skipped());
                        out.warning(format!(
                            "the work directory being made was not removed: {why}"
                        ));
                    }
                }
                return Step::Interrupted;
            }
        };
        let root = &test.root;
        let conn = &self.conn;
        let runner = &mut self.runner;
        let prepared = async {
            let layout = created?;
            let ready = async {
                // The runner needs the layout's files, not the tree: it
                // starts while the tree travels (a failure to start shows,
                // with its message, when the first test needs it).
                let (uploaded, _) = tokio::join!(
                    layout.upload_tree(conn, root),
                    ensure_runner(runner, conn, &layout)
                );
                uploaded?;
                layout.run_prepare(conn, &test.plan).await
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
        match prepared.await {
            Ok(Ok(layout)) => {
                self.plans.insert(
                    key.clone(),
                    PlanState::Ready {
                        layout,
                        plan: Box::new(test.plan.clone()),
                    },
                );
                Step::Done(Ok(()))
            }
            Ok(Err((layout, message))) => {
                // Interrupted while uploading or in a prepare phase.
                self.interrupt_came(message);
                self.remove_work_dir(&layout, out).await;
                Step::Interrupted
            }
            Err(e) => Step::Done(Err(format!("failed to {e}"))),
        }
    }

    /// Remove `layout`'s work dir and the boot `marker` (when given): by
    /// the runner when it runs (no session for it), else by a script.
    async fn remove_remotely(
        &self,
        layout: &RemoteLayout,
        marker: Option<&str>,
    ) -> Result<(), remote::RemoteError> {
        let mut paths = vec![layout.work_dir()];
        paths.extend(marker);
        if self.removed_by_runner(&paths).await {
            return Ok(());
        }
        layout.cleanup_and_forget(&self.conn, marker).await
    }

    /// Whether the session's runner, when it runs, removed `paths`
    /// (`false`: the caller removes them by a script).
    async fn removed_by_runner(&self, paths: &[&str]) -> bool {
        match self.runner.as_ref().filter(|r| r.is_alive()) {
            Some(runner) => runner.remove(paths).await.is_ok(),
            None => false,
        }
    }

    /// After an interrupt: remove the work dir (see [`CLEANUP_LIMIT`]),
    /// or say why it stays.
    async fn remove_work_dir(&mut self, layout: &RemoteLayout, out: &mut impl Sink) {
        let wind = self.wind.get_or_insert_with(WindDown::start);
        match wind.step(layout.cleanup(&self.conn)).await {
            Some(Ok(())) => {
                self.cleaned.get_or_insert(true);
            }
            Some(Err(e)) => {
                self.cleaned = Some(false);
                out.warning(format!("failed to {e}"));
            }
            None => {
                self.cleaned = Some(false);
                out.warning(format!(
                    "the work directory {} was not removed: {}",
                    layout.work_dir(),
                    wind.skipped()
                ));
            }
        }
    }

    /// After an `infra` result: is the machine still there? One reconnect
    /// is tried; when that fails too, the machine is lost. `None`: the
    /// interrupt came meanwhile.
    async fn check_machine(&mut self, interrupt: &mut Interrupt<'_>) -> Option<()> {
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
            // The runner went with the old connection.
            self.runner = None;
            if let Err(e) = self.conn.connect().await {
                self.lost = Some(format!("failed to {e}"));
            }
        };
        let message = tokio::select! {
            () = check => return Some(()),
            message = interrupt => message,
        };
        self.interrupt_came(message);
        None
    }

    /// Run one test, across its reboots. An interrupt kills it and reports
    /// it `infra`.
    async fn run_one<S: ResultSink>(
        &mut self,
        layout: &RemoteLayout,
        test: &Test,
        attempt: u32,
        out: &mut Counting<'_, S>,
        interrupt: &mut Interrupt<'_>,
    ) -> Step<Ended> {
        let start = Instant::now();
        let context = context(&self.config, test, attempt);
        let artifacts = match Artifacts::for_test(&self.config.artifacts, &test.name) {
            Ok(artifacts) => artifacts,
            Err(e) => {
                out.result(bare_result(
                    test,
                    &context,
                    format!("OSError(failed to {e})"),
                ));
                out.flush();
                return Step::Done(Ended::INFRA);
            }
        };
        let limits = self.config.limits;
        let reporter = Reporter::new(artifacts, context, &mut *out)
            .started_at(start)
            .with_held_limit(limits.held_partial);
        // The setup may install packages for minutes: an interrupt stops it
        // too, and the test is reported like one stopped while running.
        let boot = &mut self.boot;
        let conn = &self.conn;
        let runner = &mut self.runner;
        let setup = async {
            let runner = ensure_runner(runner, conn, layout)
                .await
                .map_err(|e| e.to_string())?;
            // The boot identity is known before the setup, so the setup
            // writes the first attempt's whole environment (marker
            // included) and the run loop need not write it again.
            if boot.is_none() {
                *boot = BootIdentity::record_by(runner, None).await.ok();
            }
            let mut setup_extra = Vec::new();
            if let Some(boot) = boot.as_ref() {
                setup_extra.push((reboot::MARKER_VAR.to_owned(), boot.marker.clone()));
            }
            setup_test(conn, runner, layout, test, &setup_extra).await
        };
        let setup = tokio::select! {
            setup = setup => Ok(setup),
            message = &mut *interrupt => Err(message),
        };
        let files = match setup {
            Ok(Ok(files)) => files,
            Ok(Err(note)) => {
                reporter.setup_failed(&format!("failed to {note}"));
                return Step::Done(Ended::INFRA);
            }
            Err(message) => {
                drop(reporter);
                let failure = Failure::new("Interrupted", message.clone());
                self.report_interrupted(test, attempt, &failure, start, out);
                self.interrupt_came(message);
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
        let mut test_run =
            TestRun::with_deadline(reporter, Deadline::new(start, duration)).with_limits(limits);
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
            let runner = match ensure_runner(&mut self.runner, &self.conn, layout).await {
                Ok(runner) => &*runner,
                Err(e) => {
                    test_run.abort(Failure::new("TestSetupError", format!("failed to {e}")));
                    return Step::Done(Ended::INFRA);
                }
            };
            let boot = match &self.boot {
                Some(boot) => Ok(boot.clone()),
                None => BootIdentity::record_by(runner, None).await,
            };
            self.boot = boot.as_ref().ok().cloned();
            let mut extra = Vec::new();
            if let Ok(boot) = &boot {
                extra.push((reboot::MARKER_VAR.to_owned(), boot.marker.clone()));
            }
            let environment =
                layout.test_environment(test, &extra, counters.reboot, counters.restart);
            let launcher = RunnerLauncher::new(runner);
            let end = tokio::select! {
                end = test_run.run(&launcher, &run_layout, &environment, counters) => end,
                message = &mut *interrupt => {
                    let wind = self.wind.get_or_insert_with(WindDown::start);
                    match wind.step(runner.stop_tests()).await {
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
                    self.report_interrupted(test, attempt, &failure, start, out);
                    self.interrupt_came(message);
                    return Step::Interrupted;
                }
            };
            let paused = match end {
                RunEnd::Finished(finished) => {
                    return Step::Done(Ended {
                        infra: finished.is_infra(),
                        exit_code: finished.exit_code(),
                    });
                }
                RunEnd::NeedsReconnect(paused) => paused,
            };
            let boot = match boot {
                Ok(boot) => boot,
                Err(e) => {
                    let message = format!("cannot tell a reboot without a boot identity: {e}");
                    paused.abort(Failure::new("RebootError", message));
                    return Step::Done(Ended::INFRA);
                }
            };
            // The duration clock keeps running while the machine reboots.
            let now = Instant::now();
            let until = now + paused.deadline().remaining(now);
            let waited = tokio::select! {
                waited = reboot::wait_for_reboot(&mut self.conn, &boot, layout.work_dir(), until) => waited,
                message = &mut *interrupt => {
                    paused.abort(Failure::new("Interrupted", message.clone()));
                    self.interrupt_came(message);
                    return Step::Interrupted;
                }
            };
            if let Err(e) = waited {
                paused.abort(Failure::new("RebootError", e.to_string()));
                return Step::Done(Ended::INFRA);
            }
            counters.reboot += 1;
            counters.restart += 1;
            // The old marker went with the old boot: record the new boot.
            self.boot = None;
            // The runner went with the old connection: the next launch
            // starts a new one.
            self.runner = None;
            test_run = *paused;
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
        attempt: u32,
        failure: &Failure,
        start: Instant,
        out: &mut Counting<'_, S>,
    ) {
        let context = context(&self.config, test, attempt);
        let mut result = bare_result(test, &context, failure.note());
        result.duration = start.elapsed().as_secs_f64();
        match Artifacts::for_test(&self.config.artifacts, &test.name) {
            Ok(artifacts) => {
                result.artifacts = artifacts.dir().to_path_buf();
                // Through the directory's handle, never a path: a link
                // planted meanwhile is not followed.
                match artifacts.keep_testout(DEFAULT_TESTOUT) {
                    Ok(true) => result.files.push(DEFAULT_TESTOUT.to_owned()),
                    Ok(false) => {}
                    Err(e) => out.warning(format!("failed to {e}")),
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

/// The session's runner, started (from `layout`'s `W/runner.py`) when there
/// is none or the last one is gone.
async fn ensure_runner<'a>(
    slot: &'a mut Option<Runner>,
    conn: &Connection,
    layout: &RemoteLayout,
) -> Result<&'a mut Runner, RunnerError> {
    if slot.as_ref().is_some_and(|runner| !runner.is_alive()) {
        *slot = None;
    }
    match slot {
        Some(runner) => Ok(runner),
        None => {
            let runner = Runner::start(conn, layout.python(), &layout.runner()).await?;
            Ok(slot.insert(runner))
        }
    }
}

/// Set `test` up through the runner (its files; packages, when it needs
/// some, by a script on the connection); the error is the `infra` note
/// after "failed to".
async fn setup_test(
    conn: &Connection,
    runner: &Runner,
    layout: &RemoteLayout,
    test: &Test,
    extra: &[(String, String)],
) -> Result<remote::TestFiles, String> {
    let setup = layout
        .test_setup(test, extra, 0, 0)
        .map_err(|e| e.to_string())?;
    runner
        .prepare_test(&setup)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(install) = &setup.install {
        layout
            .install_packages(conn, test, install)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(setup.files)
}

/// Report `test` (its `attempt`-th run) to `sink` as one `infra` result
/// with a `TestSetupError(note)` note, without running it: what a test of
/// a plan whose setup failed, or of a lost machine, gets. Its artifacts
/// directory is made (and keeps the note), as for a test that ran.
pub fn report_not_run(
    config: &SessionConfig,
    test: &Test,
    attempt: u32,
    note: &str,
    sink: &mut impl Sink,
) {
    let context = context(config, test, attempt);
    match Artifacts::for_test(&config.artifacts, &test.name) {
        Ok(artifacts) => {
            Reporter::new(artifacts, context, &mut *sink).setup_failed(note);
        }
        Err(e) => {
            let note = format!("TestSetupError({note}; and failed to {e})");
            sink.result(bare_result(test, &context, note));
        }
    }
    sink.flush();
}

/// The fields results of `test` share.
fn context(config: &SessionConfig, test: &Test, attempt: u32) -> ResultContext {
    ResultContext {
        test: test.name.clone(),
        platform: config.platform.clone(),
        machine: config.machine.id.clone(),
        started: rfc3339(SystemTime::now()),
        attempt,
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
        attempt: context.attempt,
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
