//! A library user's own [`Policy`] drives the pool: here, last input first
//! and no machine reuse, on the real `local` provisioner.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)

use std::sync::Arc;

use atex_exec::session::TestOutcome;
use atex_orchestrate::events::Event;
use atex_orchestrate::queue::{Policy, Queued};
use atex_orchestrate::run::{Output, RunConfig, run};
use atex_orchestrate::spec::Spec;
use atex_shared::records::Test;

#[derive(Debug)]
struct LastFirst;

impl Policy for LastFirst {
    fn pick(&self, waiting: &[Queued], _machine: &str) -> Option<usize> {
        waiting
            .iter()
            .enumerate()
            .max_by_key(|(_, q)| q.index())
            .map(|(at, _)| at)
    }
    fn destroys(&self, _test: &Test, _outcome: &TestOutcome) -> Option<String> {
        Some("one test per machine".to_owned())
    }
    fn rerun(&self, _queued: &Queued, _outcome: &TestOutcome, _passed: bool) -> bool {
        false
    }
}

#[derive(Default)]
struct Collect {
    results: Vec<serde_json::Value>,
}

impl Output for Collect {
    fn result(&mut self, line: &[u8]) {
        self.results.push(serde_json::from_slice(line).unwrap());
    }
}

#[test]
fn a_custom_policy_orders_and_destroys() {
    let dir = tempfile::tempdir().unwrap();
    let tests: Vec<Test> = (1..=3)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "name": format!("/t{i}"), "root": dir.path(), "path": "", "test": "true",
            }))
            .unwrap()
        })
        .collect();
    let config = RunConfig::new(
        vec![Spec::parse("local").unwrap()],
        dir.path().join("artifacts"),
        Arc::new(LastFirst),
    );
    let mut events = config.monitor.subscribe();
    let mut out = Collect::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let totals = runtime.block_on(run(config, tests, &mut out));
    let events: Vec<Event> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert_eq!(totals.exit_code(), 0, "{events:?}");
    let order: Vec<&str> = out
        .results
        .iter()
        .map(|r| r["test"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["/t3", "/t2", "/t1"]);
    let mut machines: Vec<&str> = out
        .results
        .iter()
        .map(|r| r["machine"].as_str().unwrap())
        .collect();
    machines.dedup();
    assert_eq!(machines.len(), 3, "every test on a fresh machine");
    let destroyed = events.iter().filter(
        |e| matches!(e, Event::MachineDestroyed { why, .. } if why == "one test per machine"),
    );
    assert_eq!(destroyed.count(), 3, "{events:?}");
}
