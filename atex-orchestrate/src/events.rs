//! What a run tells the people and programs watching it: typed [`Event`]s,
//! delivered to every subscriber in the order they happened, and a
//! [`Snapshot`] of the queue and the pool that can be asked for at any
//! time. Both come from a [`Monitor`], a cloneable handle given to the run
//! in [`RunConfig::monitor`](crate::run::RunConfig::monitor); the command's
//! stderr lines ([`Event::line`]) and its status line (the [`Snapshot`]'s
//! `Display`) are one subscriber.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::mpsc;

/// One attempt's verdict, from its results: the worst of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum Verdict {
    /// Every result is `pass`, `info` or `skip`.
    #[default]
    Pass,
    /// A result is `fail`, `error`, `warn` or has no status.
    Fail,
    /// A result is `infra`: the test could not run to its end.
    Infra,
}

impl Verdict {
    /// Take one more result's status into account.
    pub fn count(&mut self, status: Option<&str>) {
        let seen = match status {
            Some("pass" | "info" | "skip") => Verdict::Pass,
            Some("infra") => Verdict::Infra,
            _ => Verdict::Fail,
        };
        *self = (*self).max(seen);
    }
}

/// Something that happened in a run. Machines are named by their id
/// (`Machine::id`), specs by their index in
/// [`RunConfig::specs`](crate::run::RunConfig::specs).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `count` more machines of a spec were asked for.
    MachinesRequested {
        /// The spec.
        spec: usize,
        /// How many.
        count: usize,
    },
    /// A reservation failed all its tries: one machine fewer comes.
    ReservationFailed {
        /// The spec.
        spec: usize,
        /// Why.
        error: String,
    },
    /// Reservations not yet made were cancelled: no test is left for them.
    ReservationsCancelled {
        /// The spec.
        spec: usize,
        /// How many were outstanding.
        count: usize,
    },
    /// A machine was reserved; its setup (connecting) starts.
    MachineReserved {
        /// The spec.
        spec: usize,
        /// The machine.
        machine: String,
    },
    /// A machine is set up and takes tests.
    MachineReady {
        /// The spec.
        spec: usize,
        /// The machine.
        machine: String,
    },
    /// A machine's setup failed: it is released (and replaced while tests
    /// wait, up to the run's setup-failure limit).
    SetupFailed {
        /// The spec.
        spec: usize,
        /// The machine.
        machine: String,
        /// Why.
        error: String,
    },
    /// A test was given to a machine.
    TestStarted {
        /// The machine.
        machine: String,
        /// The test's name.
        test: String,
        /// Its attempt (0 for the first run).
        attempt: u32,
        /// How long it is expected to take: the median of its earlier
        /// runs ([`RunConfig::expected`](crate::run::RunConfig::expected)),
        /// else its `duration`.
        expected: Duration,
        /// `expected` was measured (earlier runs), not its `duration` limit.
        measured: bool,
    },
    /// A test's attempt ended.
    TestEnded {
        /// The machine.
        machine: String,
        /// The test's platform group (0 when the run has one).
        group: usize,
        /// The test's name.
        test: String,
        /// Its attempt (0 for the first run).
        attempt: u32,
        /// The status of the test's own last result (`None`: it had none).
        status: Option<String>,
        /// The note of the test's own last result.
        note: Option<String>,
        /// The worst of its results; `None` when it got none (the run was
        /// interrupted before it started: it counts as not run).
        verdict: Option<Verdict>,
        /// From being given to the machine to its end.
        duration: Duration,
        /// It runs again ([`Event::RerunQueued`] follows).
        rerun: bool,
    },
    /// A test was queued again for its next attempt.
    RerunQueued {
        /// The test's name.
        test: String,
        /// The attempt it will be.
        attempt: u32,
        /// How long it is expected to take (as in [`Event::TestStarted`]).
        expected: Duration,
        /// `expected` was measured (as in [`Event::TestStarted`]).
        measured: bool,
    },
    /// A machine runs no further test: it is released once its session
    /// is closed.
    MachineDestroyed {
        /// The machine.
        machine: String,
        /// Why.
        why: String,
    },
    /// A machine was given back to its provisioner (a failed release is a
    /// [`Event::Warning`]).
    MachineReleased {
        /// The spec.
        spec: usize,
        /// The machine.
        machine: String,
    },
    /// Something a person should know that does not stop the run (a
    /// reservation tried again, a release that failed, a result that
    /// could not be written).
    Warning {
        /// The message.
        message: String,
    },
    /// A signal came: the running tests are stopped and everything is
    /// released.
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: String,
    },
    /// The run stops on broken infrastructure (the tests left are not
    /// run).
    Stopped {
        /// Why.
        why: String,
    },
}

impl Event {
    /// The line a person reads for this event (the command prints it on
    /// stderr after `atex-orchestrate: `), or `None` for the events that
    /// only feed the [`Snapshot`] (requests and reservations).
    pub fn line(&self) -> Option<String> {
        Some(match self {
            Event::MachinesRequested { .. } | Event::MachineReserved { .. } => return None,
            Event::ReservationFailed { error, .. } => format!("error: no machine: {error}"),
            Event::ReservationsCancelled { count, .. } => {
                format!("{count} reservations cancelled: no test left for them")
            }
            Event::MachineReady { machine, .. } => format!("{machine}: machine ready"),
            Event::SetupFailed { machine, error, .. } => {
                format!("error: {machine}: setup failed: {error}")
            }
            Event::TestStarted {
                machine,
                test,
                attempt,
                ..
            } => match attempt {
                0 => format!("{machine}: {test} started"),
                n => format!("{machine}: {test} started (attempt {n})"),
            },
            Event::TestEnded {
                machine,
                test,
                attempt,
                status,
                duration,
                verdict,
                ..
            } => {
                let status = match (status, verdict) {
                    (_, None) => "not run (interrupted)",
                    (Some(status), _) => status.as_str(),
                    (None, _) => "no status",
                };
                let mut line = format!(
                    "{machine}: {test} ended: {status} ({:.1} s)",
                    duration.as_secs_f64()
                );
                if *attempt > 0 {
                    line.push_str(&format!(", attempt {attempt}"));
                }
                line
            }
            Event::RerunQueued { test, attempt, .. } => {
                format!("{test}: rerun queued (attempt {attempt})")
            }
            Event::MachineDestroyed { machine, why } => {
                format!("{machine}: machine destroyed ({why})")
            }
            Event::MachineReleased { machine, .. } => format!("{machine}: machine released"),
            Event::Warning { message } => format!("warning: {message}"),
            Event::Interrupted { signal } => {
                format!("interrupted ({signal}): stopping the running tests")
            }
            Event::Stopped { why } => format!("error: stopping: {why}"),
        })
    }
}

/// A test running, in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The test's name.
    pub test: String,
    /// Its attempt (0 for the first run).
    pub attempt: u32,
    /// The machine it runs on.
    pub machine: String,
    /// When it was given to the machine.
    pub started: Instant,
    /// How long it is expected to take.
    pub expected: Duration,
    /// `expected` was measured in earlier runs; otherwise it is the
    /// test's `duration`, a limit.
    pub measured: bool,
}

impl Running {
    /// It runs past its measured expected duration (before its
    /// `duration` stops it).
    pub fn slow(&self) -> bool {
        self.measured && !self.expected.is_zero() && self.started.elapsed() > self.expected
    }
}

/// Tests whose final attempt ended, by verdict, in a [`Snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Done {
    /// Passed (flaky ones included).
    pub passed: usize,
    /// Failed (fail, error, warn, no status).
    pub failed: usize,
    /// Ended infra.
    pub infra: usize,
    /// Failed first and passed on a rerun.
    pub flaky: usize,
}

impl Done {
    /// How many tests are done.
    pub fn total(&self) -> usize {
        self.passed + self.failed + self.infra
    }
}

/// Machines by state, in a [`Snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Machines {
    /// Asked for and not reserved yet.
    pub reserving: usize,
    /// Reserved, being connected to.
    pub setting_up: usize,
    /// Running a test.
    pub busy: usize,
    /// Set up and running nothing (between two tests, or a spare).
    pub idle: usize,
    /// Destroyed or done, being closed and released.
    pub closing: usize,
}

/// The queue and the pool at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Tests waiting for a machine (reruns included).
    pub queued: usize,
    /// Tests running, in the order they started.
    pub running: Vec<Running>,
    /// Tests done, by their final attempt's verdict.
    pub done: Done,
    /// Attempts that ended and were queued again.
    pub reruns: usize,
    /// Machines by state.
    pub machines: Machines,
    /// When the run is expected to end, from now: the expected durations
    /// of the tests waiting and the rest of the running ones', shared
    /// among the machines set up or being set up. `None` while there is
    /// no machine.
    pub eta: Option<Duration>,
    /// Some test's expected duration is only its `duration` limit (no
    /// earlier run measured it): the ETA is then an upper bound.
    pub eta_bound: bool,
}

/// `1h02m`, `3m05s`, `42s`: a duration for people, to the second.
pub fn human(duration: Duration) -> String {
    let s = duration.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// The status line: `12 queued, 3 running, 5 done (4 passed, 1 failed,
/// 0 infra, 1 flaky); machines: 1 reserving, 0 setting up, 3 busy, 0 idle`.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.done;
        let m = &self.machines;
        write!(
            f,
            "{} queued, {} running, {} done ({} passed, {} failed, {} infra, {} flaky); \
             machines: {} reserving, {} setting up, {} busy, {} idle",
            self.queued,
            self.running.len(),
            d.total(),
            d.passed,
            d.failed,
            d.infra,
            d.flaky,
            m.reserving,
            m.setting_up,
            m.busy,
            m.idle,
        )?;
        if m.closing > 0 {
            write!(f, ", {} closing", m.closing)?;
        }
        if let Some(eta) = self.eta {
            let bound = if self.eta_bound { "at most " } else { "" };
            write!(f, "; ETA {bound}{}", human(eta))?;
        }
        Ok(())
    }
}

/// A machine's state, as the monitor follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MachineState {
    SettingUp,
    Busy,
    Idle,
    Closing,
}

/// What the monitor keeps.
#[derive(Debug, Default)]
struct State {
    queued: usize,
    /// The expected durations of the tests not started yet.
    work: Duration,
    /// How many of those are `duration` limits, not measured.
    unmeasured: usize,
    /// Running tests by machine.
    running: IndexMap<String, Running>,
    done: Done,
    reruns: usize,
    /// Reservations outstanding, per spec.
    reserving: Vec<usize>,
    machines: HashMap<String, MachineState>,
    /// Tests with an attempt that did not pass (flaky if they pass later).
    failed_before: HashSet<(usize, String)>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
}

impl State {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::MachinesRequested { spec, count } => *self.reserving_mut(*spec) += count,
            Event::ReservationFailed { spec, .. } => {
                let n = self.reserving_mut(*spec);
                *n = n.saturating_sub(1);
            }
            Event::ReservationsCancelled { spec, count } => {
                let n = self.reserving_mut(*spec);
                *n = n.saturating_sub(*count);
            }
            Event::MachineReserved { spec, machine } => {
                let n = self.reserving_mut(*spec);
                *n = n.saturating_sub(1);
                self.machines
                    .insert(machine.clone(), MachineState::SettingUp);
            }
            Event::MachineReady { machine, .. } => {
                self.machines.insert(machine.clone(), MachineState::Idle);
            }
            Event::SetupFailed { machine, .. } | Event::MachineDestroyed { machine, .. } => {
                self.machines.insert(machine.clone(), MachineState::Closing);
            }
            Event::MachineReleased { machine, .. } => {
                self.machines.remove(machine);
            }
            Event::TestStarted {
                machine,
                test,
                attempt,
                expected,
                measured,
            } => {
                self.queued = self.queued.saturating_sub(1);
                self.work = self.work.saturating_sub(*expected);
                if !measured {
                    self.unmeasured = self.unmeasured.saturating_sub(1);
                }
                self.machines.insert(machine.clone(), MachineState::Busy);
                self.running.insert(
                    machine.clone(),
                    Running {
                        test: test.clone(),
                        attempt: *attempt,
                        machine: machine.clone(),
                        started: Instant::now(),
                        expected: *expected,
                        measured: *measured,
                    },
                );
            }
            Event::TestEnded {
                machine,
                group,
                test,
                verdict,
                rerun,
                ..
            } => {
                self.running.shift_remove(machine);
                if let Some(state) = self.machines.get_mut(machine)
                    && *state == MachineState::Busy
                {
                    *state = MachineState::Idle;
                }
                match verdict {
                    None => {}
                    Some(Verdict::Pass) if *rerun => {}
                    Some(_) if *rerun => {
                        self.failed_before.insert((*group, test.clone()));
                    }
                    Some(Verdict::Pass) => {
                        self.done.passed += 1;
                        if self.failed_before.contains(&(*group, test.clone())) {
                            self.done.flaky += 1;
                        }
                    }
                    Some(Verdict::Fail) => self.done.failed += 1,
                    Some(Verdict::Infra) => self.done.infra += 1,
                }
            }
            Event::RerunQueued {
                expected, measured, ..
            } => {
                self.queued += 1;
                self.work += *expected;
                if !measured {
                    self.unmeasured += 1;
                }
                self.reruns += 1;
            }
            Event::Warning { .. } | Event::Interrupted { .. } | Event::Stopped { .. } => {}
        }
    }

    fn reserving_mut(&mut self, spec: usize) -> &mut usize {
        if self.reserving.len() <= spec {
            self.reserving.resize(spec + 1, 0);
        }
        &mut self.reserving[spec]
    }

    fn snapshot(&self) -> Snapshot {
        let mut machines = Machines {
            reserving: self.reserving.iter().sum(),
            ..Machines::default()
        };
        for state in self.machines.values() {
            match state {
                MachineState::SettingUp => machines.setting_up += 1,
                MachineState::Busy => machines.busy += 1,
                MachineState::Idle => machines.idle += 1,
                MachineState::Closing => machines.closing += 1,
            }
        }
        let working = machines.setting_up + machines.busy + machines.idle;
        let eta = (working > 0).then(|| {
            let running: Duration = self
                .running
                .values()
                .map(|r| r.expected.saturating_sub(r.started.elapsed()))
                .sum();
            (self.work + running) / u32::try_from(working).unwrap_or(u32::MAX)
        });
        Snapshot {
            queued: self.queued,
            running: self.running.values().cloned().collect(),
            done: self.done,
            reruns: self.reruns,
            machines,
            eta,
            eta_bound: self.unmeasured > 0 || self.running.values().any(|r| !r.measured),
        }
    }
}

/// The handle to watch a run: subscribe to its [`Event`]s, ask for a
/// [`Snapshot`]. Clones share the same run; give one to
/// [`RunConfig::monitor`](crate::run::RunConfig::monitor) and keep another.
///
/// ```
/// let monitor = atex_orchestrate::events::Monitor::new();
/// let mut events = monitor.subscribe();
/// // ... run with a clone of `monitor` in its RunConfig, while a task
/// // reads `events.recv().await` and calls `monitor.snapshot()` ...
/// assert_eq!(monitor.snapshot().queued, 0);
/// # drop(events.try_recv());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Monitor {
    state: Arc<Mutex<State>>,
}

impl Monitor {
    /// A monitor with no run yet.
    pub fn new() -> Monitor {
        Monitor::default()
    }

    /// Every event from now on, in order, until the run ends (then the
    /// receiver gives `None`). Nothing is dropped: a subscriber that does
    /// not read holds the events in memory.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().subscribers.push(tx);
        rx
    }

    /// The queue and the pool now.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot()
    }

    /// A run starts with `queued` tests, expected to take `work` in all,
    /// `unmeasured` of them only known by their `duration` limit: the
    /// counts start again.
    pub(crate) fn start(&self, queued: usize, work: Duration, unmeasured: usize) {
        let mut state = self.lock();
        let subscribers = std::mem::take(&mut state.subscribers);
        *state = State {
            queued,
            work,
            unmeasured,
            subscribers,
            ..State::default()
        };
    }

    /// Record `event` and hand it to every subscriber.
    pub(crate) fn emit(&self, event: Event) {
        let mut state = self.lock();
        state.apply(&event);
        state
            .subscribers
            .retain(|subscriber| subscriber.send(event.clone()).is_ok());
    }

    /// The run ended: every subscription ends.
    pub(crate) fn finish(&self) {
        self.lock().subscribers.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    fn ended(machine: &str, test: &str, verdict: Verdict, rerun: bool) -> Event {
        Event::TestEnded {
            machine: machine.into(),
            group: 0,
            test: test.into(),
            attempt: 0,
            status: None,
            note: None,
            verdict: Some(verdict),
            duration: Duration::ZERO,
            rerun,
        }
    }

    fn started(machine: &str, test: &str) -> Event {
        Event::TestStarted {
            machine: machine.into(),
            test: test.into(),
            attempt: 0,
            expected: Duration::from_secs(10),
            measured: true,
        }
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human(Duration::from_millis(42_900)), "42s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn the_snapshot_follows_the_events() {
        let monitor = Monitor::new();
        monitor.start(2, Duration::from_secs(20), 0);
        let mut events = monitor.subscribe();
        monitor.emit(Event::MachinesRequested { spec: 0, count: 2 });
        monitor.emit(Event::MachineReserved {
            spec: 0,
            machine: "m1".into(),
        });
        let s = monitor.snapshot();
        assert_eq!((s.machines.reserving, s.machines.setting_up), (1, 1));
        monitor.emit(Event::MachineReady {
            spec: 0,
            machine: "m1".into(),
        });
        monitor.emit(started("m1", "/a"));
        let s = monitor.snapshot();
        assert_eq!((s.queued, s.running.len(), s.machines.busy), (1, 1, 1));
        // /b's 10 s waiting and what is left of /a's 10 s, on one machine.
        let eta = s.eta.unwrap();
        assert!(
            eta > Duration::from_secs(19) && eta <= Duration::from_secs(20),
            "{eta:?}"
        );
        assert!(s.to_string().ends_with("; ETA 19s") || s.to_string().ends_with("; ETA 20s"));
        monitor.emit(ended("m1", "/a", Verdict::Fail, true));
        monitor.emit(Event::RerunQueued {
            test: "/a".into(),
            attempt: 1,
            expected: Duration::from_secs(10),
            measured: true,
        });
        monitor.emit(started("m1", "/b"));
        monitor.emit(ended("m1", "/b", Verdict::Infra, false));
        monitor.emit(Event::MachineDestroyed {
            machine: "m1".into(),
            why: "x".into(),
        });
        let s = monitor.snapshot();
        assert_eq!((s.queued, s.machines.closing, s.machines.idle), (1, 1, 0));
        monitor.emit(Event::MachineReleased {
            spec: 0,
            machine: "m1".into(),
        });
        monitor.emit(Event::ReservationsCancelled { spec: 0, count: 1 });
        monitor.emit(started("m2", "/a"));
        monitor.emit(ended("m2", "/a", Verdict::Pass, false));
        monitor.emit(Event::MachineReleased {
            spec: 0,
            machine: "m2".into(),
        });
        let s = monitor.snapshot();
        assert_eq!(
            s.done,
            Done {
                passed: 1,
                failed: 0,
                infra: 1,
                flaky: 1
            }
        );
        assert_eq!((s.queued, s.reruns), (0, 1));
        assert_eq!(s.machines, Machines::default());
        assert_eq!(
            s.to_string(),
            "0 queued, 0 running, 2 done (1 passed, 0 failed, 1 infra, 1 flaky); \
             machines: 0 reserving, 0 setting up, 0 busy, 0 idle"
        );
        monitor.finish();
        let mut seen = 0;
        while events.try_recv().is_ok() {
            seen += 1;
        }
        assert_eq!(seen, 14);
        assert!(matches!(
            events.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
