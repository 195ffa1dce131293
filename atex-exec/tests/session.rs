//! [`atex_exec::session::Session`] driven directly, one test at a time, on
//! the local machine, as an orchestrator would: from a task spawned on a
//! multi-threaded runtime (so the session and its futures are `Send`),
//! two plans whose tests are interleaved, each plan's prepare phases once,
//! their finish phases on close.
#![expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]

use std::path::Path;

use atex_exec::session::{Interrupt, Session, SessionConfig};
use atex_shared::records::{Connection, Machine, Plan, Test, TestResult};
use serde_json::json;

/// A plan whose prepare and finish phases append a line to `log`.
fn plan(name: &str, log: &Path) -> Plan {
    let log = log.display();
    Plan {
        name: name.to_owned(),
        prepare: vec![json!({"how": "shell", "script": format!("echo 'prepare {name}' >> {log}")})],
        finish: vec![json!({"how": "shell", "script": format!("echo 'finish {name}' >> {log}")})],
        ..Plan::default()
    }
}

fn test(name: &str, root: &Path, plan: &Plan, script: &str) -> Test {
    serde_json::from_value(json!({
        "name": name,
        "root": root,
        "path": "",
        "test": script,
        "plan": plan,
    }))
    .unwrap()
}

#[test]
fn session_runs_tests_one_at_a_time_with_each_plan_prepared_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    let log = tmp.path().join("phases.log");
    let artifacts = tmp.path().join("artifacts");
    let (a, b) = (plan("/plans/a", &log), plan("/plans/b", &log));
    let tests = vec![
        test(
            "/t/one",
            &root,
            &a,
            &format!("echo 'test one' >> {}", log.display()),
        ),
        test(
            "/t/two",
            &root,
            &b,
            &format!("echo 'test two' >> {}", log.display()),
        ),
        test("/t/three", &root, &a, "exit 1"),
    ];
    let machine = Machine {
        context: Default::default(),
        id: "local/0".into(),
        provisioner: "local".into(),
        connection: Connection::Local,
        platform: String::new(),
        release: serde_json::Value::Null,
    };
    let config = SessionConfig::new(machine, "here", &artifacts);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Spawned: this only compiles when the session's futures are Send.
    let phases = log.clone();
    let task = runtime.spawn(async move {
        let mut interrupt: Interrupt<'static> = Box::pin(std::future::pending());
        let mut results: Vec<TestResult> = Vec::new();
        let mut session = Session::open(config, &mut interrupt).await.unwrap();
        let mut outcomes = Vec::new();
        for (attempt, test) in (0..).zip(&tests) {
            outcomes.push(
                session
                    .run_test(test, attempt, &mut results, &mut interrupt)
                    .await,
            );
        }
        let before_close = std::fs::read_to_string(&phases).unwrap();
        let closed = session.close(&mut results, &mut interrupt).await;
        (results, outcomes, before_close, closed)
    });
    let (results, outcomes, before_close, closed) = runtime.block_on(task).unwrap();

    // Each plan prepared once, right before its first test; none finished
    // before close, both finished by it, in the order they were prepared.
    assert_eq!(
        before_close,
        "prepare /plans/a\ntest one\nprepare /plans/b\ntest two\n"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{before_close}finish /plans/a\nfinish /plans/b\n")
    );
    assert_eq!(closed.interrupted, None);

    let got: Vec<_> = results
        .iter()
        .map(|r| (r.test.as_str(), r.status.as_deref(), r.attempt))
        .collect();
    assert_eq!(
        got,
        [
            ("/t/one", Some("pass"), 0),
            ("/t/two", Some("pass"), 1),
            ("/t/three", Some("fail"), 2),
        ]
    );
    for r in &results {
        assert_eq!(
            (r.platform.as_str(), r.machine.as_str()),
            ("here", "local/0")
        );
        assert_eq!(r.artifacts, artifacts.join(r.test.trim_start_matches('/')));
        assert!(r.artifacts.join("files/output.txt").is_file(), "{r:?}");
    }

    let summary: Vec<_> = outcomes
        .iter()
        .map(|o| {
            (
                o.started,
                o.ended,
                o.status.as_deref(),
                o.exit_code,
                o.reusable(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (true, true, Some("pass"), Some(0), true),
            (true, true, Some("pass"), Some(0), true),
            // A failing test leaves the machine usable: it is not infra.
            (true, true, Some("fail"), Some(1), true),
        ]
    );
    assert!(outcomes.iter().all(|o| o.results == 1 && o.lost.is_none()));
}

#[test]
fn a_failed_prepare_is_infra_for_its_plan_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    let log = tmp.path().join("phases.log");
    let mut broken = plan("/plans/broken", &log);
    broken.prepare = vec![json!({"how": "shell", "script": "echo nope >&2; exit 7"})];
    let good = plan("/plans/good", &log);
    let tests = [
        test("/t/one", &root, &broken, "true"),
        test("/t/two", &root, &broken, "true"),
        test("/t/three", &root, &good, "true"),
    ];
    let machine = Machine {
        context: Default::default(),
        id: "local".into(),
        provisioner: "local".into(),
        connection: Connection::Local,
        platform: String::new(),
        release: serde_json::Value::Null,
    };
    let config = SessionConfig::new(machine, "local", tmp.path().join("artifacts"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut interrupt: Interrupt<'static> = Box::pin(std::future::pending());
        let mut results: Vec<TestResult> = Vec::new();
        let mut session = Session::open(config, &mut interrupt).await.unwrap();
        let first = session
            .run_test(&tests[0], 0, &mut results, &mut interrupt)
            .await;
        assert!(
            !first.reusable() && !first.started && first.infra,
            "{first:?}"
        );
        let why = first.prepare_failed.as_deref().unwrap_or_default();
        assert!(
            why.starts_with("plan '/plans/broken' could not be set up ("),
            "{why}"
        );
        // Not prepared again: reported with the same note without running.
        let second = session
            .run_test(&tests[1], 0, &mut results, &mut interrupt)
            .await;
        assert!(!second.started && second.infra && second.prepare_failed.is_none());
        let third = session
            .run_test(&tests[2], 0, &mut results, &mut interrupt)
            .await;
        assert!(third.reusable() && third.status.as_deref() == Some("pass"));
        session.close(&mut results, &mut interrupt).await;
        let statuses: Vec<_> = results.iter().map(|r| r.status.as_deref()).collect();
        assert_eq!(statuses, [Some("infra"), Some("infra"), Some("pass")]);
        assert_eq!(results[0].note, results[1].note);
        let note = results[0].note.as_deref().unwrap_or_default();
        assert!(note.starts_with("TestSetupError(failed to "), "{note}");
    });
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "prepare /plans/good\nfinish /plans/good\n"
    );
}

#[test]
fn each_session_keeps_its_own_caps() {
    // Two sessions in one process (as an orchestrator holds them): the
    // caps are each session's, not the process's.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    let plan = Plan {
        name: "/plans/caps".into(),
        ..Plan::default()
    };
    let script = "json='{\"status\": \"pass\", \"name\": \"sub\"}'\n\
                  printf 'result %d\\n%s' \"${#json}\" \"$json\" >&$ATEX_TEST_CONTROL";
    let test = test("/t/report", &root, &plan, script);
    let machine = Machine {
        context: Default::default(),
        id: "local".into(),
        provisioner: "local".into(),
        connection: Connection::Local,
        platform: String::new(),
        release: serde_json::Value::Null,
    };
    let tight = atex_exec::control::Limits {
        result_json: 10,
        ..atex_exec::control::Limits::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let notes = runtime.block_on(async {
        let mut interrupt: Interrupt<'static> = Box::pin(std::future::pending());
        let mut notes = Vec::new();
        let configs = [
            SessionConfig::new(machine.clone(), "local", tmp.path().join("tight"))
                .with_limits(tight),
            SessionConfig::new(machine, "local", tmp.path().join("default")),
        ];
        let mut sessions = Vec::new();
        for config in configs {
            sessions.push(Session::open(config, &mut interrupt).await.unwrap());
        }
        for session in &mut sessions {
            let mut results: Vec<TestResult> = Vec::new();
            session
                .run_test(&test, 0, &mut results, &mut interrupt)
                .await;
            notes.push(
                results
                    .iter()
                    .map(|r| (r.name.clone(), r.status.clone(), r.note.clone()))
                    .collect::<Vec<_>>(),
            );
        }
        for session in sessions {
            session.close(&mut Vec::new(), &mut interrupt).await;
        }
        notes
    });
    assert_eq!(
        notes[0],
        [(
            None,
            Some("infra".to_owned()),
            Some(
                "BadControlError(result JSON of 33 bytes is over the limit of 10 bytes \
                 (--max-result-json))"
                    .to_owned()
            )
        )]
    );
    assert_eq!(
        notes[1],
        [
            (Some("sub".to_owned()), Some("pass".to_owned()), None),
            (None, Some("pass".to_owned()), None)
        ]
    );
}
