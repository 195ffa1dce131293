//! The library's events and snapshot on real `local` machines: what a
//! subscriber sees of a run, what a snapshot says mid-run, reservations
//! cancelled once no test is left, and the setup-failure limit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use atex_orchestrate::events::{Done, Event, Verdict};
use atex_orchestrate::queue::DefaultPolicy;
use atex_orchestrate::run::{Output, RunConfig, Totals, run};
use atex_orchestrate::spec::Spec;
use atex_provision::{BoxFuture, CancellationToken, ProvisionError, Provisioner};
use atex_shared::records::{Connection, Machine, Test};

/// Results as JSON values.
#[derive(Default)]
struct Collect(Vec<serde_json::Value>);

impl Output for Collect {
    fn result(&mut self, line: &[u8]) {
        self.0.push(serde_json::from_slice(line).unwrap());
    }
}

fn test(root: &Path, name: &str, script: &str) -> Test {
    serde_json::from_value(serde_json::json!({
        "name": name, "root": root, "path": "", "test": script,
    }))
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Run `tests` with `config`, returning the totals, the results and every
/// event the run sent.
fn run_all(config: RunConfig, tests: Vec<Test>) -> (Totals, Collect, Vec<Event>) {
    let mut events = config.monitor.subscribe();
    let mut out = Collect::default();
    let totals = runtime().block_on(run(config, tests, &mut out));
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    (totals, out, seen)
}

#[test]
fn a_subscriber_sees_the_run_and_a_snapshot_shows_it_mid_run() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    // /slow waits for the file `go`, which the test makes once the
    // snapshot shows /slow running alone, the two others done.
    let slow = format!(
        "for i in $(seq 300); do [ -e {} ] && exit 0; sleep 0.1; done; exit 1",
        go.display()
    );
    let tests = vec![
        test(dir.path(), "/slow", &slow),
        test(dir.path(), "/flaky", "exit $((1 - ATEX_ATTEMPT))"),
        test(dir.path(), "/ok", "true"),
    ];
    let mut config = RunConfig::new(
        vec![Spec::parse("local --max 2").unwrap()],
        dir.path().join("artifacts"),
        Arc::new(DefaultPolicy {
            reruns: 1,
            ..DefaultPolicy::default()
        }),
    );
    config.max_spares = 0;
    let monitor = config.monitor.clone();
    let mut events = monitor.subscribe();
    let mut out = Collect::default();
    let runtime = runtime();
    let watcher = {
        let monitor = monitor.clone();
        let go = go.clone();
        runtime.spawn(async move {
            let since = Instant::now();
            loop {
                let snapshot = monitor.snapshot();
                if snapshot.done.total() == 2 && snapshot.machines.idle == 0 {
                    std::fs::write(&go, "").unwrap();
                    return snapshot;
                }
                assert!(since.elapsed().as_secs() < 30, "{snapshot:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let totals = runtime.block_on(run(config, tests, &mut out));
    let mid = runtime.block_on(watcher).unwrap();
    // Mid-run: /slow runs on its machine, the other machine is released
    // (no test waits, no spare is kept), /flaky passed on its rerun.
    assert_eq!(mid.queued, 0, "{mid:?}");
    assert_eq!(mid.running.len(), 1, "{mid:?}");
    assert_eq!(mid.running[0].test, "/slow");
    assert!(mid.running[0].machine.starts_with("local/"), "{mid:?}");
    assert_eq!(
        (mid.machines.busy, mid.machines.reserving),
        (1, 0),
        "{mid:?}"
    );
    assert_eq!(
        mid.done,
        Done {
            passed: 2,
            failed: 0,
            infra: 0,
            flaky: 1
        }
    );
    assert_eq!(mid.reruns, 1);
    assert_eq!(
        (totals.passed, totals.flaky, totals.exit_code()),
        (3, 1, 0),
        "{totals:?}"
    );
    assert_eq!(out.0.len(), 4, "every attempt's result");

    // The events, in order: every test started on a machine before it
    // ended there; the rerun queued after its first attempt ended.
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    let mut running = std::collections::HashMap::new();
    let mut ended = Vec::new();
    for event in &seen {
        match event {
            Event::TestStarted { machine, test, .. } => {
                assert!(running.insert(machine.clone(), test.clone()).is_none());
            }
            Event::TestEnded {
                machine,
                test,
                attempt,
                verdict,
                rerun,
                ..
            } => {
                assert_eq!(running.remove(machine).as_ref(), Some(test), "{seen:?}");
                ended.push((test.as_str(), *attempt, verdict.unwrap(), *rerun));
            }
            _ => {}
        }
    }
    ended.sort();
    assert_eq!(
        ended,
        [
            ("/flaky", 0, Verdict::Fail, true),
            ("/flaky", 1, Verdict::Pass, false),
            ("/ok", 0, Verdict::Pass, false),
            ("/slow", 0, Verdict::Pass, false),
        ]
    );
    let at = |wanted: &dyn Fn(&Event) -> bool| seen.iter().position(wanted).unwrap();
    let first_end = at(&|e| matches!(e, Event::TestEnded { test, .. } if test == "/flaky"));
    let queued =
        at(&|e| matches!(e, Event::RerunQueued { test, attempt: 1, .. } if test == "/flaky"));
    assert!(first_end < queued, "{seen:?}");
    // Every machine that was ready was released, and before /slow ended
    // for the one that did not run it.
    let ready: Vec<&String> = seen
        .iter()
        .filter_map(|e| match e {
            Event::MachineReady { machine, .. } => Some(machine),
            _ => None,
        })
        .collect();
    for machine in &ready {
        assert!(
            seen.iter()
                .any(|e| matches!(e, Event::MachineReleased { machine: m, .. } if m == *machine)),
            "{machine} not released: {seen:?}"
        );
    }
    let slow_end = at(&|e| matches!(e, Event::TestEnded { test, .. } if test == "/slow"));
    let releases_before = seen[..slow_end]
        .iter()
        .filter(|e| matches!(e, Event::MachineReleased { .. }))
        .count();
    assert!(releases_before >= 1, "{seen:?}");
    let end = monitor.snapshot();
    assert_eq!((end.queued, end.running.len()), (0, 0));
    assert_eq!(end.machines, Default::default(), "{end:?}");
}

/// Hands out one `local` machine at once; every later reservation waits
/// until it is cancelled (counted), or fails its connection when `broken`
/// says so.
#[derive(Default)]
struct Slow {
    reserved: AtomicUsize,
    cancelled: AtomicUsize,
    /// How many machines (the first ones) cannot be connected to.
    broken: usize,
    /// The reservations after the first wait (until cancelled).
    wait: bool,
}

impl Provisioner for Slow {
    fn kind(&self) -> &str {
        "slow"
    }
    fn reserve(&self, cancel: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        Box::pin(async move {
            let n = self.reserved.fetch_add(1, Ordering::SeqCst);
            if n > 0 && self.wait {
                cancel.cancelled().await;
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                return Err(ProvisionError::Cancelled);
            }
            let connection = if n < self.broken {
                // Nothing listens on port 1: the session cannot open.
                Connection::Ssh {
                    host: "127.0.0.1".into(),
                    port: 1,
                    user: "nobody".into(),
                    identity_file: None,
                    options: Default::default(),
                }
            } else {
                Connection::Local
            };
            Ok(Machine {
                context: Default::default(),
                id: format!("slow/{n}"),
                provisioner: "slow".into(),
                connection,
                platform: "here".into(),
                release: serde_json::Value::Null,
            })
        })
    }
    fn release(&self, _machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        Box::pin(async { Ok(()) })
    }
}

#[test]
fn reservations_are_cancelled_once_no_test_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(Slow {
        wait: true,
        ..Slow::default()
    });
    let tests = (1..=3)
        .map(|i| test(dir.path(), &format!("/t{i}"), "true"))
        .collect();
    let config = RunConfig::new(
        vec![Spec::new(slow.clone(), 3)],
        dir.path().join("artifacts"),
        Arc::new(DefaultPolicy::default()),
    );
    let started = Instant::now();
    let (totals, out, seen) = run_all(config, tests);
    assert_eq!((totals.passed, totals.exit_code()), (3, 0), "{seen:?}");
    assert_eq!(out.0.len(), 3);
    // The first machine ran all three; the two others, still being
    // reserved, were cancelled when the last test was taken.
    assert!(
        seen.contains(&Event::ReservationsCancelled { spec: 0, count: 2 }),
        "{seen:?}"
    );
    assert_eq!(slow.cancelled.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn failed_setups_are_replaced_until_the_limit_stops_the_run() {
    let run_with = |broken: usize, max_failed_setups: usize| {
        let dir = tempfile::tempdir().unwrap();
        let slow = Arc::new(Slow {
            broken,
            ..Slow::default()
        });
        let tests = (1..=2)
            .map(|i| test(dir.path(), &format!("/t{i}"), "true"))
            .collect();
        let mut config = RunConfig::new(
            vec![Spec::new(slow, 1)],
            dir.path().join("artifacts"),
            Arc::new(DefaultPolicy::default()),
        );
        config.max_failed_setups = max_failed_setups;
        run_all(config, tests)
    };
    let failed = |seen: &[Event]| {
        seen.iter()
            .filter_map(|e| match e {
                Event::SetupFailed { machine, .. } => Some(machine.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let released = |seen: &[Event], id: &str| {
        seen.iter()
            .any(|e| matches!(e, Event::MachineReleased { machine, .. } if machine == id))
    };

    // Two machines cannot be connected to: each is released and replaced,
    // the third runs the tests.
    let (totals, out, seen) = run_with(2, 2);
    assert_eq!((totals.passed, totals.exit_code()), (2, 0), "{seen:?}");
    assert_eq!(failed(&seen), ["slow/0", "slow/1"]);
    assert!(
        released(&seen, "slow/0") && released(&seen, "slow/1"),
        "{seen:?}"
    );
    assert!(out.0.iter().all(|r| r["machine"] == "slow/2"));

    // None can: the third failure is one too many.
    let (totals, out, seen) = run_with(usize::MAX, 2);
    let why = "setup failed 3 times: broken infrastructure?";
    assert_eq!(totals.broken.as_deref(), Some(why), "{seen:?}");
    assert_eq!((totals.not_run, totals.exit_code()), (2, 3));
    assert!(out.0.is_empty());
    assert_eq!(failed(&seen).len(), 3);
    assert!(
        seen.contains(&Event::Stopped { why: why.into() }),
        "{seen:?}"
    );
    let line = Event::Stopped { why: why.into() }.line().unwrap();
    assert_eq!(line, format!("error: stopping: {why}"));
}

/// ATEX's order, but no machine of the `slow` provisioner takes a test.
#[derive(Debug)]
struct NotOnSlow(DefaultPolicy);

impl atex_orchestrate::queue::Policy for NotOnSlow {
    fn pick(&self, waiting: &[atex_orchestrate::queue::Queued], machine: &str) -> Option<usize> {
        if machine.contains(" slow/") {
            return None;
        }
        self.0.pick(waiting, machine)
    }
    fn destroys(&self, test: &Test, outcome: &atex_exec::session::TestOutcome) -> Option<String> {
        self.0.destroys(test, outcome)
    }
    fn rerun(
        &self,
        queued: &atex_orchestrate::queue::Queued,
        outcome: &atex_exec::session::TestOutcome,
        passed: bool,
    ) -> bool {
        self.0.rerun(queued, outcome, passed)
    }
}

#[test]
fn a_spec_no_test_fits_stops_reserving_while_the_others_run() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Arc::new(Slow {
        wait: true,
        ..Slow::default()
    });
    let tests = vec![
        test(dir.path(), "/long", "sleep 1"),
        test(dir.path(), "/b", "true"),
        test(dir.path(), "/c", "true"),
    ];
    let config = RunConfig::new(
        vec![Spec::parse("local").unwrap(), Spec::new(slow.clone(), 2)],
        dir.path().join("artifacts"),
        Arc::new(NotOnSlow(DefaultPolicy::default())),
    );
    let (totals, out, seen) = run_all(config, tests);
    assert_eq!((totals.passed, totals.exit_code()), (3, 0), "{seen:?}");
    assert!(out.0.iter().all(|r| r["machine"] != "slow/0"));
    // slow/0 took nothing: it went at once, and the spec's other
    // reservation was cancelled while /long still ran; none was asked
    // for again.
    let at = |wanted: &dyn Fn(&Event) -> bool| seen.iter().position(wanted).unwrap();
    let released =
        at(&|e| matches!(e, Event::MachineReleased { machine, .. } if machine == "slow/0"));
    let cancelled = at(&|e| *e == Event::ReservationsCancelled { spec: 1, count: 1 });
    let long_end = at(&|e| matches!(e, Event::TestEnded { test, .. } if test == "/long"));
    assert!(released < long_end && cancelled < long_end, "{seen:?}");
    assert_eq!(slow.cancelled.load(Ordering::SeqCst), 1);
    assert_eq!(
        slow.reserved.load(Ordering::SeqCst),
        2,
        "no reservation after"
    );
}
