//! The ad-hoc pool: machines are asked for as the run starts (per spec, at
//! most its `max` and never more than the tests plus the spares); each one
//! that is ready opens an atex-exec [`Session`] in its own task and takes
//! the next test from the shared [`Queue`] whenever it is free. A test
//! that leaves its machine unusable (`infra`, lost, prepare failed)
//! destroys it: the session is closed, the machine released, and a
//! replacement asked for while tests remain. When no test waits, the
//! reservations outstanding are cancelled and a machine with nothing to
//! run is released at once, unless it is kept as a spare (`max_spares`)
//! while a running test may come back for a rerun. Results stream through
//! one channel to the caller's [`Output`], in the order they are
//! reported; what happens goes to the [`Monitor`]'s subscribers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use atex_exec::reporter::{ResultView, Sink};
use atex_exec::session::{Interrupt, OpenError, ResultSink, Session, SessionConfig};
use atex_provision::{Pool, PoolOptions, ProvisionError};
use atex_shared::records::{Machine, Test, TestResult};
use indexmap::IndexMap;
use tokio::sync::{Notify, mpsc, watch};

use crate::events::{Event, Monitor, Verdict};
use crate::history::Expected;
use crate::queue::{Policy, Queue, Queued};
use crate::spec::Spec;

/// Where the run's records go.
pub trait Output {
    /// One Result record, serialized (one JSON object, no newline), as
    /// soon as it is reported.
    fn result(&mut self, line: &[u8]);
    /// One attempt of a test ended (its results are those given to
    /// [`Output::result`] since it started).
    fn attempt_ended(&mut self, ended: AttemptEnded) {
        let _ = ended;
    }
    /// Whether the reader of the records went away (no test starts then).
    fn is_closed(&self) -> bool {
        false
    }
}

/// One attempt of a test that ended, for [`Output::attempt_ended`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AttemptEnded {
    /// Its platform group (0 when the run has one).
    pub group: usize,
    /// The test's name.
    pub test: String,
    /// Its attempt (0 for the first run).
    pub attempt: u32,
    /// Its artifacts directory in this attempt (its files are under
    /// `files/` there; empty when unknown).
    pub artifacts: PathBuf,
    /// Its Result records, serialized, in the order reported.
    pub results: Vec<Vec<u8>>,
    /// It runs again, so these are not its final results.
    pub rerun: bool,
}

/// What a run is told to do.
#[derive(Debug)]
pub struct RunConfig {
    /// The machine specs; their pools are used together.
    pub specs: Vec<Spec>,
    /// The artifacts root: each machine's session gets `<root>/<n>/`.
    pub artifacts: PathBuf,
    /// Which test a free machine takes, which machines are destroyed,
    /// which tests run again.
    pub policy: Arc<dyn Policy>,
    /// How many machine setups may fail (each is replaced) before the run
    /// stops: the next failure stops it.
    pub max_failed_setups: usize,
    /// Per spec, how many ready machines are kept with no test to run
    /// while running tests may still come back for a rerun (ATEX's
    /// `max_spares`); 0 releases a machine as soon as no test waits.
    pub max_spares: usize,
    /// Where the run's events go and its snapshot is read: keep a clone.
    pub monitor: Monitor,
    /// After this many tests whose final attempt did not pass (fail,
    /// error, warn, no status or infra), no new test starts: the running
    /// ones finish, the rest are not run (cargo-nextest's `--max-fail`).
    /// `None`: no limit.
    pub max_fail: Option<usize>,
    /// Expected durations, for the ETA and the slow tests the
    /// [`Monitor`] shows (the policy has its own).
    pub expected: Expected,
}

impl RunConfig {
    /// A run of `specs` with `policy`, artifacts under `artifacts`: at
    /// most 10 failed setups, no spares, a monitor of its own.
    pub fn new(specs: Vec<Spec>, artifacts: impl Into<PathBuf>, policy: Arc<dyn Policy>) -> Self {
        RunConfig {
            specs,
            artifacts: artifacts.into(),
            policy,
            max_failed_setups: 10,
            max_spares: 0,
            monitor: Monitor::new(),
            max_fail: None,
            expected: Expected::default(),
        }
    }
}

/// How a run ended, per test's final attempt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Tests whose final attempt passed.
    pub passed: usize,
    /// Tests whose final attempt failed (fail, error, warn, or no status).
    pub failed: usize,
    /// Tests whose final attempt ended infra.
    pub infra: usize,
    /// Tests that failed first and passed on a rerun.
    pub flaky: usize,
    /// Tests that never got a result.
    pub not_run: usize,
    /// The run stopped on infrastructure (why).
    pub broken: Option<String>,
    /// No new test started after [`RunConfig::max_fail`] failures (why).
    pub failures_stopped: Option<String>,
    /// The signal that stopped the run.
    pub interrupted: Option<&'static str>,
    /// The machines not released: a second signal stopped the wait for
    /// their releases (give them to `atex-provision release`).
    pub left: Vec<Machine>,
}

impl Totals {
    /// The exit code (DESIGN.md): 130/143 interrupted, 3 infra or tests
    /// not run, 1 failures, else 0. Tests left out after `--max-fail`
    /// stopped the run are not an infrastructure failure: that run is 1
    /// (3 if some test ended infra).
    pub fn exit_code(&self) -> u8 {
        use atex_shared::exit;
        let not_run = match self.failures_stopped {
            Some(_) => 0,
            None => self.not_run,
        };
        match self.interrupted {
            Some("SIGTERM") => exit::SIGTERM,
            Some(_) => exit::SIGINT,
            None if self.infra + not_run > 0 || self.broken.is_some() => exit::INFRA,
            None if self.failed > 0 => exit::TEST_FAILED,
            None => exit::SUCCESS,
        }
    }
}

/// What a worker or a pool tells the main loop.
#[derive(Debug)]
enum Message {
    /// A pool reserved a machine.
    Reserved(usize, Box<Machine>),
    ProvisionFailed(usize, ProvisionError),
    /// A pool finished releasing a machine (well or not).
    Released(String),
    /// A result of the test's running attempt (platform group, name).
    Result(TestKey, Vec<u8>),
    /// A test's attempt ended (its results are filled in by the loop).
    Ended(AttemptEnded),
    /// A machine's task ended; `setup_failed` when its session could not
    /// be opened, `refused` when it ran nothing and no waiting test fits it.
    Done {
        spec: usize,
        machine: String,
        setup_failed: bool,
        refused: bool,
    },
}

/// What a pool task is told.
#[derive(Debug)]
enum PoolCommand {
    Provision(usize),
    Release(String),
    CancelPending,
}

/// A worker's sink: results to the main loop, warnings as events.
struct ChannelSink {
    messages: mpsc::UnboundedSender<Message>,
    monitor: Monitor,
    machine: String,
    /// The test running.
    test: TestKey,
    verdict: Verdict,
    closed: Arc<AtomicBool>,
}

impl ChannelSink {
    fn warn(&self, message: String) {
        self.monitor.emit(Event::Warning { message });
    }
}

impl Sink for ChannelSink {
    fn result(&mut self, result: TestResult) {
        self.verdict.count(result.status.as_deref());
        match serde_json::to_vec(&result) {
            Ok(line) => {
                let _ = self.messages.send(Message::Result(self.test.clone(), line));
            }
            Err(e) => self.warn(format!("failed to write a result: {e}")),
        }
    }

    fn result_view(&mut self, result: ResultView<'_>) {
        self.verdict.count(result.status);
        let mut line = Vec::new();
        match result.write_json(&mut line) {
            Ok(()) => {
                let _ = self.messages.send(Message::Result(self.test.clone(), line));
            }
            Err(e) => self.warn(format!("failed to write a result: {e}")),
        }
    }

    fn warning(&mut self, message: String) {
        self.warn(format!("{}: {message}", self.machine));
    }
}

impl ResultSink for ChannelSink {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// A test in its platform group: `(group, name)`.
type TestKey = (usize, String);

/// The queues and who works on them, under one lock.
struct Board {
    /// Per platform group, the tests waiting.
    queues: Vec<Queue>,
    /// Tests given to a machine and not yet back (one may be rerun).
    running: usize,
    /// Per spec, the machines waiting as spares.
    spares: Vec<usize>,
    /// Tests whose final attempt did not pass, for `max_fail`.
    failed: usize,
    /// Why no new test starts (`max_fail` reached).
    stopped: Option<String>,
}

/// What every worker shares.
struct Shared {
    board: Mutex<Board>,
    /// Woken when a test is queued again, the last running test ended,
    /// or the run is interrupted: the spares look again.
    changed: Notify,
    policy: Arc<dyn Policy>,
    max_spares: usize,
    max_fail: Option<usize>,
    expected: Expected,
    monitor: Monitor,
    messages: mpsc::UnboundedSender<Message>,
    interrupt: watch::Receiver<Option<&'static str>>,
    closed: Arc<AtomicBool>,
}

impl Shared {
    fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a free machine gets.
enum Pick {
    Test(Box<Queued>),
    /// Nothing: `refused` when tests wait but none fits this machine.
    Nothing {
        refused: bool,
    },
}

/// The next test of platform group `group` for the machine `key` of spec
/// `spec`. When no test waits while tests run, the machine waits as a
/// spare (if the spec has room for one) for a rerun to come back.
async fn next_test(shared: &Shared, spec: usize, group: usize, key: &str) -> Pick {
    let mut spare = false;
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        // Registered before the board is read: no wake-up is missed.
        notified.as_mut().enable();
        {
            let mut board = shared.board();
            // A spare looks again: it is counted again if it stays one.
            if spare {
                board.spares[spec] -= 1;
            }
            if shared.interrupt.borrow().is_some() || board.stopped.is_some() {
                return Pick::Nothing { refused: false };
            }
            let queue = &mut board.queues[group];
            if let Some(queued) = queue.pick(shared.policy.as_ref(), key) {
                board.running += 1;
                return Pick::Test(Box::new(queued));
            }
            if !queue.is_empty() {
                return Pick::Nothing { refused: true };
            }
            if board.running == 0 || board.spares[spec] >= shared.max_spares {
                return Pick::Nothing { refused: false };
            }
            board.spares[spec] += 1;
            spare = true;
        }
        notified.await;
    }
}

/// The platform results carry: the machine's, else its provisioner's name.
fn platform(machine: &Machine) -> String {
    [&machine.platform, &machine.provisioner, &machine.id]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default()
}

/// One machine: open a session, run tests while it is usable and tests
/// are left, close it.
async fn worker(
    shared: Arc<Shared>,
    spec: usize,
    group: usize,
    machine: Machine,
    artifacts: PathBuf,
    session_number: usize,
) {
    let id = machine.id.clone();
    let monitor = shared.monitor.clone();
    // What the policy knows this session by: a host given again after a
    // release (ssh) is a new session, so a test kept from the old one
    // (a rerun) can run there and the run always ends.
    let key = format!("{session_number} {id}");
    let mut rx = shared.interrupt.clone();
    let mut interrupt: Interrupt<'static> = Box::pin(async move {
        // The guard of `wait_for` is not Send: read it and let it go.
        let signal = rx
            .wait_for(Option::is_some)
            .await
            .map(|signal| (*signal).unwrap_or("SIGINT"));
        match signal {
            Ok(signal) => signal.to_owned(),
            // The run is over: nothing will interrupt.
            Err(_) => std::future::pending().await,
        }
    });
    let mut sink = ChannelSink {
        messages: shared.messages.clone(),
        monitor: monitor.clone(),
        machine: id.clone(),
        test: (group, String::new()),
        verdict: Verdict::Pass,
        closed: shared.closed.clone(),
    };
    let config = SessionConfig::new(machine.clone(), platform(&machine), artifacts.clone());
    let mut session = match Session::open(config, &mut interrupt).await {
        Ok(session) => session,
        Err(e) => {
            let interrupted = matches!(e, OpenError::Interrupted(_));
            if !interrupted {
                monitor.emit(Event::SetupFailed {
                    spec,
                    machine: id.clone(),
                    error: e.to_string(),
                });
            }
            let _ = shared.messages.send(Message::Done {
                spec,
                machine: id,
                setup_failed: !interrupted,
                refused: false,
            });
            return;
        }
    };
    monitor.emit(Event::MachineReady {
        spec,
        machine: id.clone(),
    });
    let mut ran = false;
    let mut refused = false;
    loop {
        if sink.is_closed() {
            break;
        }
        let queued = match next_test(&shared, spec, group, &key).await {
            Pick::Test(queued) => *queued,
            Pick::Nothing { refused: r } => {
                refused = r && !ran;
                break;
            }
        };
        ran = true;
        let name = queued.test.name.clone();
        let attempt = queued.attempt;
        let (expected, measured) = shared
            .expected
            .or_duration(queued.platform.as_deref(), &queued.test);
        monitor.emit(Event::TestStarted {
            machine: id.clone(),
            test: name.clone(),
            attempt,
            expected,
            measured,
        });
        sink.verdict = Verdict::Pass;
        sink.test.1.clone_from(&name);
        let started = Instant::now();
        // The test sees which run of it this is.
        let mut test = queued.test.clone();
        test.environment
            .insert("ATEX_ATTEMPT".to_owned(), attempt.to_string());
        let outcome = session
            .run_test(&test, attempt, &mut sink, &mut interrupt)
            .await;
        let verdict = outcome.reported.then_some(sink.verdict);
        let rerun = outcome.reported
            && outcome.interrupted.is_none()
            && shared
                .policy
                .rerun(&queued, &outcome, verdict == Some(Verdict::Pass));
        monitor.emit(Event::TestEnded {
            machine: id.clone(),
            group,
            test: name.clone(),
            attempt,
            status: outcome.status.clone(),
            note: outcome.note.clone(),
            verdict,
            duration: started.elapsed(),
            rerun,
        });
        let test_dir = atex_exec::artifacts::normalize(name.as_bytes())
            .map(|rel| artifacts.join(rel))
            .unwrap_or_default();
        let _ = shared.messages.send(Message::Ended(AttemptEnded {
            group,
            test: name.clone(),
            attempt,
            artifacts: test_dir,
            results: Vec::new(),
            rerun,
        }));
        let destroyed = if !outcome.reusable() {
            outcome
                .lost
                .clone()
                .or(outcome.prepare_failed.clone())
                .or_else(|| outcome.infra.then(|| "the test ended infra".to_owned()))
        } else {
            shared.policy.destroys(&test, &outcome)
        };
        {
            let mut board = shared.board();
            board.running -= 1;
            let failed = !rerun
                && outcome.interrupted.is_none()
                && outcome.reported
                && verdict != Some(Verdict::Pass);
            if failed {
                board.failed += 1;
                let reached = shared.max_fail.is_some_and(|max| board.failed >= max);
                if reached && board.stopped.is_none() {
                    let why = format!(
                        "{} tests failed (--max-fail {})",
                        board.failed,
                        shared.max_fail.unwrap_or_default()
                    );
                    monitor.emit(Event::Stopped { why: why.clone() });
                    board.stopped = Some(why);
                }
            }
            if rerun {
                board.queues[group].rerun(queued, &key);
                // Under the lock: the rerun is queued before anyone takes it.
                monitor.emit(Event::RerunQueued {
                    test: name,
                    attempt: attempt + 1,
                    expected,
                    measured,
                });
            }
        }
        // A rerun for a spare to take, or the last test ended: spares look.
        shared.changed.notify_waiters();
        if outcome.interrupted.is_some() {
            break;
        }
        if let Some(why) = destroyed {
            monitor.emit(Event::MachineDestroyed {
                machine: id.clone(),
                why,
            });
            break;
        }
    }
    session.close(&mut sink, &mut interrupt).await;
    let _ = shared.messages.send(Message::Done {
        spec,
        machine: id,
        setup_failed: false,
        refused,
    });
}

/// One spec's pool, driven by commands; machines and failures go to
/// `messages`. Stops (releasing everything) when the commands end.
async fn pool_task(
    spec: usize,
    mut pool: Pool,
    mut commands: mpsc::UnboundedReceiver<PoolCommand>,
    messages: mpsc::UnboundedSender<Message>,
    monitor: Monitor,
) {
    // Whether `next` may give something: after a provision or a release.
    let mut active = false;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(PoolCommand::Provision(n)) => {
                    pool.provision(n);
                    active = true;
                }
                Some(PoolCommand::Release(id)) => {
                    if let Err(e) = pool.release(&id).await {
                        monitor.emit(Event::Warning { message: format!("{id}: release failed: {e}") });
                    }
                    let _ = messages.send(Message::Released(id));
                    active = true;
                }
                Some(PoolCommand::CancelPending) => pool.cancel_pending(),
            },
            next = pool.next(), if active => match next {
                None => active = false,
                Some(Ok(machine)) => {
                    let _ = messages.send(Message::Reserved(spec, Box::new(machine)));
                }
                Some(Err(e)) => {
                    let _ = messages.send(Message::ProvisionFailed(spec, e));
                }
            },
        }
    }
    for e in pool.stop().await {
        monitor.emit(Event::Warning {
            message: format!("release failed: {e}"),
        });
    }
}

/// Per spec, what the main loop keeps.
struct SpecState {
    max: usize,
    /// Machines asked for and not yet ready or failed.
    pending: usize,
    /// Machines whose task runs.
    working: usize,
    /// A fresh machine of it took none of the tests waiting: none is asked
    /// for until a test is queued again.
    exhausted: bool,
    /// `None` once the pool is told to stop.
    commands: Option<mpsc::UnboundedSender<PoolCommand>>,
}

impl SpecState {
    fn send(&self, command: PoolCommand) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(command);
        }
    }

    /// Cancel the reservations outstanding.
    fn cancel(&mut self, index: usize, monitor: &Monitor) {
        if self.pending > 0 {
            monitor.emit(Event::ReservationsCancelled {
                spec: index,
                count: self.pending,
            });
        }
        self.pending = 0;
        self.send(PoolCommand::CancelPending);
    }

    /// Give machine `id` back.
    fn release(&self, index: usize, id: String, monitor: &Monitor) {
        monitor.emit(Event::MachineReleased {
            spec: index,
            machine: id.clone(),
        });
        self.send(PoolCommand::Release(id));
    }
}

/// SIGINT and SIGTERM, listened to for the whole run.
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    /// Listen from now on; when the handlers cannot be installed, no
    /// signal is heard (their default action applies).
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Signals(Some((int, term))),
            _ => Signals(None),
        }
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        match &mut self.0 {
            Some((int, term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            None => std::future::pending().await,
        }
    }
}

/// Run `tests` on the pools of `config.specs`; returns per-test totals.
/// Must run inside a multi-threaded tokio runtime. SIGINT and SIGTERM are
/// handled: the first stops the running tests (reported `infra`) and
/// releases everything; a second stops waiting for the releases and
/// returns the machines left in [`Totals::left`].
pub async fn run(config: RunConfig, tests: Vec<Test>, out: &mut dyn Output) -> Totals {
    let tests = PlatformTests {
        platform: None,
        tests,
    };
    run_platforms(config, vec![tests], out).await
}

/// The tests of one platform group, for [`run_platforms`].
#[derive(Debug, Clone, Default)]
pub struct PlatformTests {
    /// The group's `--platform` (`None`: its machines' specs have none):
    /// the tests' expected durations are looked up there first.
    pub platform: Option<String>,
    /// Its tests.
    pub tests: Vec<Test>,
}

/// [`run`] for several platforms at once: `groups[g]` are the tests of
/// platform group `g`, run by the machines of the specs whose
/// [`Spec::group`] is `g` (a test named in two groups runs in each).
pub async fn run_platforms(
    config: RunConfig,
    groups: Vec<PlatformTests>,
    out: &mut dyn Output,
) -> Totals {
    let sizes: Vec<usize> = groups.iter().map(|g| g.tests.len()).collect();
    let total = sizes.iter().sum();
    let monitor = config.monitor.clone();
    let (mut work, mut unmeasured) = (std::time::Duration::ZERO, 0);
    for group in &groups {
        for test in &group.tests {
            let (expected, measured) = config.expected.or_duration(group.platform.as_deref(), test);
            work += expected;
            unmeasured += usize::from(!measured);
        }
    }
    monitor.start(total, work, unmeasured);
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    let (interrupt_tx, interrupt_rx) = watch::channel(None);
    let closed = Arc::new(AtomicBool::new(false));
    let mut shared = Some(Arc::new(Shared {
        board: Mutex::new(Board {
            queues: groups
                .into_iter()
                .map(|g| Queue::on_platform(g.tests, g.platform.as_deref()))
                .collect(),
            running: 0,
            spares: vec![0; config.specs.len()],
            failed: 0,
            stopped: None,
        }),
        changed: Notify::new(),
        policy: config.policy.clone(),
        max_spares: config.max_spares,
        max_fail: config.max_fail,
        expected: config.expected.clone(),
        monitor: monitor.clone(),
        messages: messages_tx.clone(),
        interrupt: interrupt_rx,
        closed: closed.clone(),
    }));
    let mut signals = Signals::new();
    let mut specs = Vec::new();
    let mut pool_tasks = tokio::task::JoinSet::new();
    for (index, spec) in config.specs.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        let log_monitor = monitor.clone();
        let options = PoolOptions {
            retries: spec.retries,
            log: Some(Arc::new(move |line: &str| {
                log_monitor.emit(Event::Warning {
                    message: line.to_owned(),
                });
            })),
            ..PoolOptions::default()
        };
        let pool = Pool::new(spec.provisioner.clone(), options);
        pool_tasks.spawn(pool_task(
            index,
            pool,
            rx,
            messages_tx.clone(),
            monitor.clone(),
        ));
        let tests = sizes.get(spec.group).copied().unwrap_or(0);
        let wanted = spec.max.min(tests.saturating_add(config.max_spares));
        let _ = tx.send(PoolCommand::Provision(wanted));
        monitor.emit(Event::MachinesRequested {
            spec: index,
            count: wanted,
        });
        specs.push(SpecState {
            max: spec.max,
            pending: wanted,
            working: 0,
            exhausted: false,
            commands: Some(tx),
        });
    }
    drop(messages_tx);
    let mut totals = Totals::default();
    // The results of each test's running attempt, until it ends.
    let mut attempts: HashMap<TestKey, Vec<Vec<u8>>> = HashMap::new();
    // Machines reserved and not yet released, for a second signal.
    let mut held: IndexMap<String, Machine> = IndexMap::new();
    let mut failed_setups = 0;
    let mut serial = 0usize;
    let mut workers = tokio::task::JoinSet::new();
    let mut finishing = false;
    let mut abandoned = false;
    loop {
        let (waiting, running) = match &shared {
            Some(shared) => {
                let board = shared.board();
                if totals.failures_stopped.is_none() {
                    totals.failures_stopped.clone_from(&board.stopped);
                }
                (
                    board.queues.iter().map(Queue::len).sum::<usize>(),
                    board.running,
                )
            }
            None => (0, 0),
        };
        let stopping = totals.interrupted.is_some()
            || totals.broken.is_some()
            || totals.failures_stopped.is_some();
        if shared.is_some() {
            let working: usize = specs.iter().map(|s| s.working).sum();
            let pending: usize = specs.iter().map(|s| s.pending).sum();
            if working == 0 && (waiting == 0 || stopping || pending == 0) {
                if waiting > 0 && pending == 0 && !stopping {
                    let why = if specs.iter().any(|s| s.exhausted) {
                        "no machine takes the tests left"
                    } else {
                        "no machine could be provisioned"
                    };
                    totals.broken = Some(why.to_owned());
                    monitor.emit(Event::Stopped {
                        why: why.to_owned(),
                    });
                }
                // Every machine is back: the pools stop (releasing what
                // they still hold), and the channel ends once they have.
                for spec in &mut specs {
                    spec.commands = None;
                }
                shared = None;
                continue;
            }
            // Nothing left to hand out: stop asking for machines at once.
            if (waiting == 0 || stopping) && !finishing {
                finishing = true;
                for (index, spec) in specs.iter_mut().enumerate() {
                    spec.cancel(index, &monitor);
                }
            }
        }
        let message = tokio::select! {
            message = messages.recv() => message,
            signal = signals.recv() => {
                if totals.interrupted.is_some() {
                    // The second: stop waiting for the releases.
                    abandoned = true;
                    break;
                }
                totals.interrupted = Some(signal);
                let _ = interrupt_tx.send(Some(signal));
                if let Some(shared) = &shared {
                    shared.changed.notify_waiters();
                }
                monitor.emit(Event::Interrupted { signal: signal.to_owned() });
                continue;
            }
        };
        let Some(message) = message else { break };
        match message {
            Message::Result(test, line) => {
                out.result(&line);
                attempts.entry(test).or_default().push(line);
                if out.is_closed() {
                    closed.store(true, Ordering::Relaxed);
                }
            }
            Message::Ended(mut ended) => {
                let key = (ended.group, std::mem::take(&mut ended.test));
                ended.results = attempts.remove(&key).unwrap_or_default();
                ended.test = key.1;
                if ended.rerun {
                    // A test is back: it may fit a spec that had none.
                    for spec in &mut specs {
                        spec.exhausted = false;
                    }
                }
                out.attempt_ended(ended);
            }
            Message::Released(id) => {
                held.shift_remove(&id);
            }
            Message::Reserved(index, machine) => {
                let group = config.specs[index].group;
                let waiting = match &shared {
                    Some(shared) => shared.board().queues.get(group).map_or(0, Queue::len),
                    None => 0,
                };
                let spec = &mut specs[index];
                spec.pending = spec.pending.saturating_sub(1);
                monitor.emit(Event::MachineReserved {
                    spec: index,
                    machine: machine.id.clone(),
                });
                held.insert(machine.id.clone(), (*machine).clone());
                let spare = config.max_spares > 0 && running > 0;
                let Some(shared) = shared
                    .as_ref()
                    .filter(|_| !stopping && !spec.exhausted && (waiting > 0 || spare))
                else {
                    spec.release(index, machine.id, &monitor);
                    continue;
                };
                spec.working += 1;
                let artifacts = config.artifacts.join(serial.to_string());
                workers.spawn(worker(
                    shared.clone(),
                    index,
                    group,
                    *machine,
                    artifacts,
                    serial,
                ));
                serial += 1;
            }
            Message::ProvisionFailed(index, e) => {
                let spec = &mut specs[index];
                spec.pending = spec.pending.saturating_sub(1);
                monitor.emit(Event::ReservationFailed {
                    spec: index,
                    error: format!("--provision {:?}: {e}", config.specs[index].text),
                });
            }
            Message::Done {
                spec: index,
                machine,
                setup_failed,
                refused,
            } => {
                let spec = &mut specs[index];
                spec.working -= 1;
                spec.release(index, machine, &monitor);
                if setup_failed && !stopping {
                    failed_setups += 1;
                    if failed_setups > config.max_failed_setups {
                        let why =
                            format!("setup failed {failed_setups} times: broken infrastructure?");
                        monitor.emit(Event::Stopped { why: why.clone() });
                        totals.broken = Some(why);
                        // The running tests stop (reported infra).
                        let _ = interrupt_tx.send(Some("broken infrastructure"));
                        if let Some(shared) = &shared {
                            shared.changed.notify_waiters();
                        }
                        continue;
                    }
                }
                if refused {
                    // No test waiting fits this spec's fresh machines.
                    spec.exhausted = true;
                    spec.cancel(index, &monitor);
                }
                // A replacement while tests wait that no machine of this
                // spec will take (the ones working may not: a rerun avoids
                // the machine it ran on).
                let group = config.specs[index].group;
                let waiting = match &shared {
                    Some(shared) => shared.board().queues.get(group).map_or(0, Queue::len),
                    None => 0,
                };
                if waiting > 0
                    && !stopping
                    && !spec.exhausted
                    && spec.working + spec.pending < spec.max
                {
                    finishing = false;
                    spec.pending += 1;
                    spec.send(PoolCommand::Provision(1));
                    monitor.emit(Event::MachinesRequested {
                        spec: index,
                        count: 1,
                    });
                }
            }
        }
    }
    if abandoned {
        totals.left = held.into_values().collect();
        // Dropping the tasks aborts them; the pools cancel what is in
        // flight as they go.
        workers.abort_all();
        pool_tasks.abort_all();
    } else {
        while workers.join_next().await.is_some() {}
        while pool_tasks.join_next().await.is_some() {}
    }
    // Results of attempts that did not end (an abandoned run's).
    for ((group, test), results) in attempts.drain() {
        out.attempt_ended(AttemptEnded {
            group,
            test,
            results,
            ..AttemptEnded::default()
        });
    }
    let done = monitor.snapshot().done;
    totals.passed = done.passed;
    totals.failed = done.failed;
    totals.infra = done.infra;
    totals.flaky = done.flaky;
    totals.not_run = total.saturating_sub(done.total());
    monitor.finish();
    totals
}
