//! A second SIGINT stops waiting for releases and hands back the records
//! of the machines left. Alone in its binary: the signals go to this
//! whole process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atex_orchestrate::queue::DefaultPolicy;
use atex_orchestrate::run::{Output, RunConfig, run};
use atex_orchestrate::spec::Spec;
use atex_provision::{BoxFuture, CancellationToken, ProvisionError, Provisioner};
use atex_shared::records::{Connection, Machine, Test};

/// Local machines whose release never ends.
struct Sticky;

impl Provisioner for Sticky {
    fn kind(&self) -> &str {
        "sticky"
    }
    fn reserve(
        &self,
        _cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        Box::pin(async {
            Ok(Machine {
                context: Default::default(),
                id: "sticky/0".into(),
                provisioner: "sticky".into(),
                connection: Connection::Local,
                platform: "here".into(),
                release: serde_json::json!({"what": "to release"}),
            })
        })
    }
    fn release(&self, _machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        Box::pin(std::future::pending())
    }
}

struct Discard;

impl Output for Discard {
    fn result(&mut self, _line: &[u8]) {}
}

fn sigint() {
    let pid = std::process::id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn a_second_sigint_returns_the_machines_left() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("started");
    let test: Test = serde_json::from_value(serde_json::json!({
        "name": "/sleeps", "root": dir.path(), "path": "",
        "test": format!("touch {}; sleep 60", mark.display()),
    }))
    .unwrap();
    let config = RunConfig::new(
        vec![Spec::new(Arc::new(Sticky), 1)],
        dir.path().join("artifacts"),
        Arc::new(DefaultPolicy::default()),
    );
    let monitor = config.monitor.clone();
    let signaller = std::thread::spawn(move || {
        let since = Instant::now();
        while !mark.exists() {
            assert!(since.elapsed().as_secs() < 30, "the test did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        sigint();
        // The first one stops the test; its machine's release then hangs.
        while monitor.snapshot().machines.closing + monitor.snapshot().machines.idle > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        sigint();
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let totals = runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(60),
                run(config, vec![test], &mut Discard),
            )
            .await
        })
        .expect("the second signal ends the run");
    signaller.join().unwrap();
    runtime.shutdown_background();
    assert_eq!(totals.interrupted, Some("SIGINT"));
    assert_eq!(totals.exit_code(), 130);
    assert_eq!(totals.infra, 1, "{totals:?}");
    let left: Vec<&str> = totals.left.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(left, ["sticky/0"]);
    assert_eq!(totals.left[0].release["what"], "to release");
    assert!(started.elapsed() < Duration::from_secs(30));
}
