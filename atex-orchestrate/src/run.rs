//! The ad-hoc pool: machines are asked for as the run starts (per spec, at
//! most its `max` and never more than tests remain); each one that is
//! ready opens an atex-exec [`Session`] in its own task and takes the next
//! test from the shared [`Queue`] whenever it is free. A test that leaves
//! its machine unusable (`infra`, lost, prepare failed) destroys it: the
//! session is closed, the machine released, and a replacement asked for
//! while tests remain. Results stream through one channel to the caller's
//! [`Output`], in the order they are reported.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use atex_exec::reporter::{ResultView, Sink};
use atex_exec::session::{Interrupt, OpenError, Progress, ResultSink, Session, SessionConfig};
use atex_provision::{Pool, PoolOptions, ProvisionError};
use atex_shared::records::{Machine, TestResult};
use tokio::sync::{mpsc, watch};

use crate::queue::{Policy, Queue, Queued};
use crate::spec::Spec;

/// Where the run's records and lines go.
pub trait Output {
    /// One Result record, serialized (one JSON object, no newline), as
    /// soon as it is reported.
    fn result(&mut self, line: &[u8]);
    /// One attempt of a test ended with these results (those given to
    /// [`Output::result`] since it started); `rerun` when it runs again,
    /// so they are not its final ones.
    fn attempt_ended(&mut self, results: Vec<Vec<u8>>, rerun: bool) {
        let _ = (results, rerun);
    }
    /// Whether the reader of the records went away (no test starts then).
    fn is_closed(&self) -> bool {
        false
    }
    /// A line for people (stderr in the command), without the tool prefix.
    fn event(&mut self, line: &str);
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
    /// How many machine setups may fail before the run stops.
    pub max_failed_setups: usize,
}

/// How a run ended, per test's final attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// The signal that stopped the run.
    pub interrupted: Option<&'static str>,
}

impl Totals {
    /// The exit code (DESIGN.md): 130/143 interrupted, 3 infra or tests
    /// not run, 1 failures, else 0.
    pub fn exit_code(&self) -> u8 {
        use atex_shared::exit;
        match self.interrupted {
            Some("SIGTERM") => exit::SIGTERM,
            Some(_) => exit::SIGINT,
            None if self.infra + self.not_run > 0 || self.broken.is_some() => exit::INFRA,
            None if self.failed > 0 => exit::TEST_FAILED,
            None => exit::SUCCESS,
        }
    }
}

/// What a worker or a pool tells the main loop.
#[derive(Debug)]
enum Event {
    Ready(usize, Box<Machine>),
    ProvisionFailed(usize, ProvisionError),
    /// A result of the named test's running attempt.
    Result(String, Vec<u8>),
    Line(String),
    /// A test's attempt ended: its verdict, and whether it runs again.
    Ended {
        name: String,
        verdict: Verdict,
        rerun: bool,
    },
    /// A machine's task ended; `destroyed` when it must not be reused,
    /// `setup` when its session could not be opened.
    Done {
        spec: usize,
        machine: String,
        setup_failed: bool,
    },
}

/// One attempt's verdict, from its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Verdict {
    #[default]
    Pass,
    Fail,
    Infra,
}

impl Verdict {
    fn count(&mut self, status: Option<&str>) {
        let seen = match status {
            Some("pass" | "info" | "skip") => Verdict::Pass,
            Some("infra") => Verdict::Infra,
            _ => Verdict::Fail,
        };
        *self = (*self).max(seen);
    }
}

/// What a pool task is told.
#[derive(Debug)]
enum PoolCommand {
    Provision(usize),
    Release(String),
    CancelPending,
}

/// A worker's sink: results to the main loop, progress as event lines.
struct ChannelSink {
    events: mpsc::UnboundedSender<Event>,
    machine: String,
    /// The test running.
    test: String,
    verdict: Verdict,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl ChannelSink {
    fn send_line(&self, line: String) {
        let _ = self.events.send(Event::Line(line));
    }
}

impl Sink for ChannelSink {
    fn result(&mut self, result: TestResult) {
        self.verdict.count(result.status.as_deref());
        match serde_json::to_vec(&result) {
            Ok(line) => {
                let _ = self.events.send(Event::Result(self.test.clone(), line));
            }
            Err(e) => self.send_line(format!("warning: failed to write a result: {e}")),
        }
    }

    fn result_view(&mut self, result: ResultView<'_>) {
        self.verdict.count(result.status);
        let mut line = Vec::new();
        match result.write_json(&mut line) {
            Ok(()) => {
                let _ = self.events.send(Event::Result(self.test.clone(), line));
            }
            Err(e) => self.send_line(format!("warning: failed to write a result: {e}")),
        }
    }

    fn warning(&mut self, message: String) {
        self.send_line(format!("warning: {}: {message}", self.machine));
    }
}

impl ResultSink for ChannelSink {
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn progress(&mut self, event: Progress<'_>) {
        if let Progress::Started { test } = event {
            self.send_line(format!("{}: {test} started", self.machine));
        }
    }
}

/// What every worker shares.
struct Shared {
    queue: Mutex<Queue>,
    policy: Arc<dyn Policy>,
    events: mpsc::UnboundedSender<Event>,
    interrupt: watch::Receiver<Option<&'static str>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
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
    machine: Machine,
    artifacts: PathBuf,
    session_number: usize,
) {
    let id = machine.id.clone();
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
        events: shared.events.clone(),
        machine: id.clone(),
        test: String::new(),
        verdict: Verdict::Pass,
        closed: shared.closed.clone(),
    };
    let config = SessionConfig::new(machine.clone(), platform(&machine), artifacts);
    let mut session = match Session::open(config, &mut interrupt).await {
        Ok(session) => session,
        Err(e) => {
            if !matches!(e, OpenError::Interrupted(_)) {
                sink.send_line(format!("error: {id}: setup failed: {e}"));
            }
            let _ = shared.events.send(Event::Done {
                spec,
                machine: id,
                setup_failed: true,
            });
            return;
        }
    };
    sink.send_line(format!("{id}: machine ready"));
    loop {
        if sink.is_closed() || shared.interrupt.borrow().is_some() {
            break;
        }
        let picked = shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pick(shared.policy.as_ref(), &key);
        let Some(queued) = picked else { break };
        sink.verdict = Verdict::Pass;
        sink.test.clone_from(&queued.test.name);
        let started = Instant::now();
        // The test sees which run of it this is.
        let mut test = queued.test.clone();
        test.environment
            .insert("ATEX_ATTEMPT".to_owned(), queued.attempt.to_string());
        let outcome = session
            .run_test(&test, queued.attempt, &mut sink, &mut interrupt)
            .await;
        let verdict = sink.verdict;
        let name = queued.test.name.clone();
        if outcome.reported {
            sink.send_line(format!(
                "{id}: {name} ended: {} ({:.1} s){}",
                outcome.status.as_deref().unwrap_or("no status"),
                started.elapsed().as_secs_f64(),
                if queued.attempt > 0 {
                    format!(", attempt {}", queued.attempt)
                } else {
                    String::new()
                }
            ));
        }
        let rerun = outcome.reported
            && outcome.interrupted.is_none()
            && shared
                .policy
                .rerun(&queued, &outcome, verdict == Verdict::Pass);
        let _ = shared.events.send(Event::Ended {
            name,
            verdict,
            rerun,
        });
        let destroyed = if !outcome.reusable() {
            outcome
                .lost
                .clone()
                .or(outcome.prepare_failed.clone())
                .or_else(|| outcome.infra.then(|| "the test ended infra".to_owned()))
        } else {
            shared.policy.destroys(&test, &outcome)
        };
        requeue(&shared, queued, rerun, &key);
        if outcome.interrupted.is_some() {
            break;
        }
        if let Some(why) = destroyed {
            sink.send_line(format!("{id}: machine destroyed ({why})"));
            break;
        }
    }
    session.close(&mut sink, &mut interrupt).await;
    let _ = shared.events.send(Event::Done {
        spec,
        machine: id,
        setup_failed: false,
    });
}

fn requeue(shared: &Shared, queued: Queued, rerun: bool, machine: &str) {
    if rerun {
        shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rerun(queued, machine);
    }
}

/// One spec's pool, driven by commands; machines and failures go to
/// `events`. Stops (releasing everything) when the commands end.
async fn pool_task(
    spec: usize,
    mut pool: Pool,
    mut commands: mpsc::UnboundedReceiver<PoolCommand>,
    events: mpsc::UnboundedSender<Event>,
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
                        let _ = events.send(Event::Line(format!("warning: {id}: release failed: {e}")));
                    }
                    active = true;
                }
                Some(PoolCommand::CancelPending) => pool.cancel_pending(),
            },
            next = pool.next(), if active => match next {
                None => active = false,
                Some(Ok(machine)) => {
                    let _ = events.send(Event::Ready(spec, Box::new(machine)));
                }
                Some(Err(e)) => {
                    let _ = events.send(Event::ProvisionFailed(spec, e));
                }
            },
        }
    }
    for e in pool.stop().await {
        let _ = events.send(Event::Line(format!("warning: release failed: {e}")));
    }
}

/// Per spec, what the main loop keeps.
struct SpecState {
    max: usize,
    /// Machines asked for and not yet ready or failed.
    pending: usize,
    /// Machines whose task runs.
    working: usize,
    commands: mpsc::UnboundedSender<PoolCommand>,
}

/// Run `tests` on the pools of `config.specs`; returns per-test totals.
/// Must run inside a multi-threaded tokio runtime.
pub async fn run(
    config: RunConfig,
    tests: Vec<atex_shared::records::Test>,
    out: &mut dyn Output,
) -> Totals {
    let total = tests.len();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (interrupt_tx, interrupt_rx) = watch::channel(None);
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::new(tests)),
        policy: config.policy.clone(),
        events: events_tx.clone(),
        interrupt: interrupt_rx,
        closed: closed.clone(),
    });
    let mut specs = Vec::new();
    let mut pool_tasks = tokio::task::JoinSet::new();
    for (index, spec) in config.specs.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        let events = events_tx.clone();
        let log_events = events_tx.clone();
        let options = PoolOptions {
            retries: spec.retries,
            log: Some(Arc::new(move |line: &str| {
                let _ = log_events.send(Event::Line(line.to_owned()));
            })),
            ..PoolOptions::default()
        };
        let pool = Pool::new(spec.provisioner.clone(), options);
        pool_tasks.spawn(pool_task(index, pool, rx, events));
        let wanted = spec.max.min(total);
        let _ = tx.send(PoolCommand::Provision(wanted));
        specs.push(SpecState {
            max: spec.max,
            pending: wanted,
            working: 0,
            commands: tx,
        });
    }
    drop(events_tx);
    let mut totals = Totals::default();
    let mut finals: std::collections::HashMap<String, (Verdict, bool)> =
        std::collections::HashMap::new();
    // The results of each test's running attempt, until it ends.
    let mut attempts: std::collections::HashMap<String, Vec<Vec<u8>>> =
        std::collections::HashMap::new();
    let mut failed_setups = 0;
    let mut serial = 0usize;
    let mut workers = tokio::task::JoinSet::new();
    let mut finishing = false;
    let signal = atex_shared::cli::interrupted();
    tokio::pin!(signal);
    loop {
        let waiting = shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let working: usize = specs.iter().map(|s| s.working).sum();
        let pending: usize = specs.iter().map(|s| s.pending).sum();
        let stopping = totals.interrupted.is_some() || totals.broken.is_some();
        if working == 0 && (waiting == 0 || stopping || pending == 0) {
            if waiting > 0 && pending == 0 && !stopping {
                totals.broken = Some("no machine could be provisioned".to_owned());
            }
            break;
        }
        // Nothing left to hand out: stop asking for machines at once.
        if (waiting == 0 || stopping) && !finishing {
            finishing = true;
            for spec in &mut specs {
                let _ = spec.commands.send(PoolCommand::CancelPending);
                spec.pending = 0;
            }
        }
        let event = tokio::select! {
            event = events.recv() => event,
            signal = &mut signal, if totals.interrupted.is_none() => {
                totals.interrupted = Some(signal.name());
                let _ = interrupt_tx.send(Some(signal.name()));
                out.event(&format!("interrupted ({}): stopping the running tests", signal.name()));
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            Event::Result(test, line) => {
                out.result(&line);
                attempts.entry(test).or_default().push(line);
                if out.is_closed() {
                    closed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Event::Line(line) => out.event(&line),
            Event::Ended {
                name,
                verdict,
                rerun,
            } => {
                out.attempt_ended(attempts.remove(&name).unwrap_or_default(), rerun);
                // The second flag: an attempt before did not pass (flaky
                // when the last one passes).
                match finals.get_mut(&name) {
                    Some(entry) => *entry = (verdict, entry.1 || entry.0 != Verdict::Pass),
                    None => {
                        finals.insert(name, (verdict, false));
                    }
                }
            }
            Event::Ready(index, machine) => {
                let spec = &mut specs[index];
                spec.pending = spec.pending.saturating_sub(1);
                if waiting == 0 || stopping {
                    let _ = spec.commands.send(PoolCommand::Release(machine.id));
                    continue;
                }
                spec.working += 1;
                let artifacts = config.artifacts.join(serial.to_string());
                workers.spawn(worker(shared.clone(), index, *machine, artifacts, serial));
                serial += 1;
            }
            Event::ProvisionFailed(index, e) => {
                let spec = &mut specs[index];
                spec.pending = spec.pending.saturating_sub(1);
                out.event(&format!(
                    "error: --provision {:?}: no machine: {e}",
                    config.specs[index].text
                ));
            }
            Event::Done {
                spec: index,
                machine,
                setup_failed,
            } => {
                let spec = &mut specs[index];
                spec.working -= 1;
                let _ = spec.commands.send(PoolCommand::Release(machine));
                if setup_failed && !stopping {
                    failed_setups += 1;
                    if failed_setups > config.max_failed_setups {
                        totals.broken = Some(format!(
                            "setup failed {failed_setups} times: broken infrastructure?"
                        ));
                        // The running tests stop (reported infra).
                        let _ = interrupt_tx.send(Some("broken infrastructure"));
                        continue;
                    }
                }
                // A replacement while tests wait that no machine of this
                // spec will take (the ones working may not: a rerun avoids
                // the machine it ran on).
                let waiting = shared
                    .queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len();
                if waiting > 0 && !stopping && spec.working + spec.pending < spec.max {
                    finishing = false;
                    spec.pending += 1;
                    let _ = spec.commands.send(PoolCommand::Provision(1));
                }
            }
        }
    }
    // Workers end on their own once the queue is empty or the interrupt
    // came; wait for their sessions to close.
    while workers.join_next().await.is_some() {}
    // Dropping the command senders stops every pool (releasing its
    // machines); the channel ends once the pools and workers are gone.
    specs.clear();
    drop(shared);
    while let Some(event) = events.recv().await {
        match event {
            Event::Result(test, line) => {
                out.result(&line);
                attempts.entry(test).or_default().push(line);
            }
            Event::Line(line) => out.event(&line),
            _ => {}
        }
    }
    // Results of attempts that did not end (none, but nothing is lost).
    for (_, results) in attempts.drain() {
        out.attempt_ended(results, false);
    }
    while pool_tasks.join_next().await.is_some() {}
    for (verdict, failed_before) in finals.values() {
        match verdict {
            Verdict::Pass if *failed_before => {
                totals.passed += 1;
                totals.flaky += 1;
            }
            Verdict::Pass => totals.passed += 1,
            Verdict::Fail => totals.failed += 1,
            Verdict::Infra => totals.infra += 1,
        }
    }
    totals.not_run = total.saturating_sub(finals.len());
    totals
}
