//! The real `atex-orchestrate` binary on `local` machines: tests spread
//! over a pool and run at once, every test reported once, reruns on
//! another machine, the queue order, empty input and bad specs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (STYLE.md)

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// Run the binary in `dir` with `args`, `input` on stdin.
fn orchestrate(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atex-orchestrate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atex-orchestrate");
    // A bad spec exits before reading stdin: a broken pipe is expected.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// One Test record line.
fn test(root: &Path, name: &str, script: &str, extra: Value) -> String {
    let mut record = json!({
        "name": name, "root": root, "path": "", "test": script, "duration": 60,
    });
    if let (Value::Object(record), Value::Object(extra)) = (&mut record, extra) {
        record.extend(extra);
    }
    format!("{record}\n")
}

fn results(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON result"))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn six_tests_run_at_once_on_three_machines() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    // Each test waits (up to 30 s) until three tests have started: the
    // run passes only when three machines run tests at the same time.
    let script = format!(
        "touch {m}/$$; for i in $(seq 300); do \
         [ $(ls {m} | wc -l) -ge 3 ] && exit 0; sleep 0.1; done; exit 1",
        m = marks.display()
    );
    let input: String = (1..=6)
        .map(|i| test(dir.path(), &format!("/t{i}"), &script, json!({})))
        .collect();
    let output = orchestrate(dir.path(), &["--provision", "local --max 3"], &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let results = results(&output);
    let mut names: Vec<&str> = results
        .iter()
        .map(|r| r["test"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["/t1", "/t2", "/t3", "/t4", "/t5", "/t6"], "{err}");
    assert!(results.iter().all(|r| r["status"] == "pass"), "{results:?}");
    let mut machines: Vec<&str> = results
        .iter()
        .map(|r| r["machine"].as_str().unwrap())
        .collect();
    machines.sort_unstable();
    machines.dedup();
    assert_eq!(machines.len(), 3, "{machines:?}");
    // The timeline: three tests started on three machines before any ended.
    let mut started_on = Vec::new();
    for line in err.lines() {
        if line.contains(" ended: ") {
            break;
        }
        if line.ends_with(" started") {
            started_on.push(line.split(": ").nth(1).unwrap().to_owned());
        }
    }
    started_on.sort_unstable();
    started_on.dedup();
    assert_eq!(started_on.len(), 3, "{err}");
    assert!(err.contains("6 passed, 0 failed, 0 infra"), "{err}");
}

#[test]
fn queue_order_is_priority_then_longest_first() {
    let dir = tempfile::tempdir().unwrap();
    let input = [
        test(dir.path(), "/short", "true", json!({"duration": 10})),
        test(dir.path(), "/long", "true", json!({"duration": 100})),
        test(
            dir.path(),
            "/last",
            "true",
            json!({"data": {"extra-priority": -1}}),
        ),
        test(
            dir.path(),
            "/first",
            "true",
            json!({"duration": 1, "data": {"extra-priority": 5}}),
        ),
    ]
    .concat();
    let output = orchestrate(dir.path(), &[], &input);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let order: Vec<String> = results(&output)
        .iter()
        .map(|r| r["test"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["/first", "/long", "/short", "/last"]);
}

#[test]
fn a_failed_test_is_rerun_on_another_machine() {
    let dir = tempfile::tempdir().unwrap();
    // Fails on its first run, passes on its second (ATEX_ATTEMPT says which).
    let script = "exit $((1 - ATEX_ATTEMPT))";
    let input = test(dir.path(), "/flaky", script, json!({}));
    let output = orchestrate(dir.path(), &["--reruns", "1"], &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let results = results(&output);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(
        (&results[0]["status"], &results[0]["attempt"]),
        (&json!("fail"), &json!(0))
    );
    assert_eq!(
        (&results[1]["status"], &results[1]["attempt"]),
        (&json!("pass"), &json!(1))
    );
    assert_ne!(results[0]["machine"], results[1]["machine"]);
    assert!(err.contains("1 flaky"), "{err}");

    // Without reruns the failure stands: exit 1.
    let dir = tempfile::tempdir().unwrap();
    let input = test(dir.path(), "/fails", "exit 1", json!({}));
    let output = orchestrate(dir.path(), &[], &input);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(results_len(&output), 1);
}

fn results_len(output: &Output) -> usize {
    results(output).len()
}

#[test]
fn empty_input_is_exit_4_and_bad_specs_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = orchestrate(dir.path(), &[], "");
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    let output = orchestrate(dir.path(), &["--no-tests", "pass"], "");
    assert_eq!(output.status.code(), Some(0));

    let input = test(dir.path(), "/t", "true", json!({}));
    for spec in ["nope", "local --max", "local 'x", "podman"] {
        let output = orchestrate(dir.path(), &["--provision", spec], &input);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{spec}: {err}");
        assert!(
            err.starts_with("atex-orchestrate: error: --provision"),
            "{err}"
        );
        assert!(output.stdout.is_empty());
    }
    // Nothing was run: no artifacts.
    assert!(!dir.path().join("atex-artifacts").exists());
}

#[test]
fn an_infra_test_destroys_its_machine_and_a_replacement_runs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    // Killing the test's wrapper makes the test end infra.
    let input = [
        test(
            dir.path(),
            "/boom",
            "kill -9 $PPID",
            json!({"duration": 100}),
        ),
        test(dir.path(), "/ok", "true", json!({"duration": 10})),
    ]
    .concat();
    let output = orchestrate(dir.path(), &[], &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    let results = results(&output);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(
        (&results[0]["test"], &results[0]["status"]),
        (&json!("/boom"), &json!("infra"))
    );
    assert_eq!(
        (&results[1]["test"], &results[1]["status"]),
        (&json!("/ok"), &json!("pass"))
    );
    // One machine at a time (the default `local`): the second is the
    // replacement of the destroyed first.
    assert_ne!(results[0]["machine"], results[1]["machine"]);
    let destroyed = format!(
        "{}: machine destroyed",
        results[0]["machine"].as_str().unwrap()
    );
    assert!(err.contains(&destroyed), "{err}");
    assert!(err.contains("1 passed, 0 failed, 1 infra"), "{err}");
}

#[test]
fn output_writes_the_results_store() {
    let dir = tempfile::tempdir().unwrap();
    let input = [
        test(dir.path(), "/a", "echo a", json!({})),
        test(dir.path(), "/b", "exit 1", json!({})),
    ]
    .concat();
    let args = ["--provision", "local --max 2", "--output", "store"];
    let output = orchestrate(dir.path(), &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    // Not a terminal: the records are on stdout too.
    assert_eq!(results(&output).len(), 2);
    let store = dir.path().join("store");
    let lines = std::fs::read_to_string(store.join("results.jsonl")).unwrap();
    let mut rows: Vec<Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    rows.sort_by_key(|row| row[2].as_str().unwrap().to_owned());
    assert_eq!(rows.len(), 2, "{lines}");
    assert_eq!((&rows[0][1], &rows[0][2]), (&json!("pass"), &json!("/a")));
    assert_eq!((&rows[1][1], &rows[1][2]), (&json!("fail"), &json!("/b")));
    let copied = std::fs::read_to_string(store.join("files/local/a/output.txt")).unwrap();
    assert_eq!(copied, "a\n");
    assert!(store.join("junit.xml").is_file());
    assert!(store.join("index.html").is_file());

    // The store is not overwritten: bad usage, nothing run.
    let again = tempfile::tempdir().unwrap();
    let args = ["--output", store.to_str().unwrap()];
    let output = orchestrate(again.path(), &args, &input);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    assert!(!again.path().join("atex-artifacts").exists());
}

/// The machine each result ran on, by test name.
fn machines(output: &Output) -> std::collections::HashMap<String, String> {
    results(output)
        .iter()
        .map(|r| {
            let name = r["test"].as_str().unwrap().to_owned();
            (name, r["machine"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn exit_codes_and_destructive_tests_decide_machine_reuse() {
    let run = |input: &str, args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let input = input.replace("ROOT", dir.path().to_str().unwrap());
        let output = orchestrate(dir.path(), args, &input);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{err}");
        (machines(&output), err)
    };
    let root = Path::new("ROOT");
    // First the test exiting 2 (the longer), then one that passes.
    let input = [
        test(root, "/two", "exit 2", json!({"duration": 100})),
        test(root, "/ok", "true", json!({"duration": 10})),
    ]
    .concat();
    let (m, err) = run(&input, &[]);
    assert_ne!(m["/two"], m["/ok"], "exit 2 destroys by default: {err}");
    assert!(
        err.contains("machine destroyed (the test exited 2"),
        "{err}"
    );
    let (m, err) = run(&input, &["--reuse-on-exit", "0,2"]);
    assert_eq!(m["/two"], m["/ok"], "exit 2 is reused when asked: {err}");

    // A destructive test that passes destroys its machine too.
    let input = [
        test(
            root,
            "/destroys",
            "true",
            json!({"duration": 100, "tag": ["destructive"]}),
        ),
        test(root, "/fails", "exit 1", json!({"duration": 10})),
    ]
    .concat();
    let (m, err) = run(&input, &[]);
    assert_ne!(m["/destroys"], m["/fails"], "{err}");
    assert!(
        err.contains("machine destroyed (the test is destructive)"),
        "{err}"
    );
}

#[test]
fn sigint_stops_the_running_tests_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let script = format!("touch {}/$$; sleep 60", marks.display());
    let input: String = (1..=4)
        .map(|i| test(dir.path(), &format!("/s{i}"), &script, json!({})))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_atex-orchestrate"))
        .args(["--provision", "local --max 2"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    // Interrupt once both machines run a test.
    let started = std::time::Instant::now();
    while std::fs::read_dir(&marks).unwrap().count() < 2 {
        assert!(started.elapsed().as_secs() < 30, "the tests did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    let results = results(&output);
    assert_eq!(results.len(), 2, "{results:?}");
    for r in &results {
        assert_eq!(r["status"], "infra", "{r}");
        assert_eq!(r["note"], "Interrupted(SIGINT)", "{r}");
    }
    assert!(err.contains("2 infra, 2 not run"), "{err}");
}

#[test]
fn the_store_keeps_final_attempts_and_earlier_ones_apart() {
    let dir = tempfile::tempdir().unwrap();
    let input = [
        test(
            dir.path(),
            "/flaky",
            "exit $((1 - ATEX_ATTEMPT))",
            json!({}),
        ),
        test(dir.path(), "/ok", "true", json!({})),
    ]
    .concat();
    let args = ["--reruns", "1", "--output", "store"];
    let output = orchestrate(dir.path(), &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    // stdout has every attempt.
    assert_eq!(results(&output).len(), 3, "{err}");
    let rows = |path: &Path| -> Vec<(String, String)> {
        let mut rows: Vec<(String, String)> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                let row: Value = serde_json::from_str(line).unwrap();
                (
                    row[2].as_str().unwrap().into(),
                    row[1].as_str().unwrap().into(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let store = dir.path().join("store");
    assert_eq!(
        rows(&store.join("results.jsonl")),
        [
            ("/flaky".into(), "pass".into()),
            ("/ok".into(), "pass".into())
        ]
    );
    assert_eq!(
        rows(&store.join("attempts/results.jsonl")),
        [("/flaky".into(), "fail".into())]
    );
    // The store's reports mark the flaky test from its attempts/: JUnit's
    // Surefire element, and summary's flaky list.
    let junit = std::fs::read_to_string(store.join("junit.xml")).unwrap();
    assert!(
        junit.contains("<flakyFailure") && junit.matches("<flakyFailure").count() == 1,
        "{junit}"
    );
    let summary = atex_aggregate::summary::read(&store).unwrap();
    let flaky: Vec<(&str, u32)> = summary
        .flaky
        .iter()
        .map(|f| (f.test.as_str(), f.attempts))
        .collect();
    assert_eq!(flaky, [("/flaky", 2)]);
}

#[test]
fn no_machine_at_all_is_exit_3_with_the_tests_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = test(dir.path(), "/t", "true", json!({}));
    // Nothing listens on port 1: every reservation fails.
    let args = ["--provision", "ssh root@127.0.0.1:1 --retries 0"];
    let output = orchestrate(dir.path(), &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(output.stdout.is_empty());
    assert!(err.contains("no machine: "), "{err}");
    assert!(
        err.contains("1 not run (stopped: no machine could be provisioned)"),
        "{err}"
    );
}

#[test]
fn it_discovers_the_tests_itself_with_root() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join(".fmf")).unwrap();
    std::fs::write(tree.join(".fmf/version"), "1\n").unwrap();
    std::fs::write(tree.join("a.fmf"), "test: echo a\n").unwrap();
    std::fs::write(tree.join("b.fmf"), "test: echo b\ntag: [slow]\n").unwrap();
    let names = |output: &Output| {
        let mut names: Vec<String> = results(output)
            .iter()
            .map(|r| r["test"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    // stdin is not read when discovering.
    let run = |args: &[&str]| orchestrate(dir.path(), args, "not a record\n");
    let output = run(&["--root", "tree", "--provision", "local --max 2"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(names(&output), ["/a", "/b"]);

    let output = run(&[
        "--root",
        "tree",
        "--filter",
        "tag: slow",
        "--artifacts",
        "a2",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(names(&output), ["/b"]);

    let output = run(&[
        "--root",
        "tree",
        "--test",
        "nothing-matches",
        "--artifacts",
        "a3",
    ]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let output = run(&["--filter", "tag: slow"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let output = run(&["--root", "tree", "--plan", "/no/such/plan"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
}

#[test]
fn a_status_line_comes_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let input = test(dir.path(), "/sleeps", "sleep 1.5", json!({}));
    let output = orchestrate(dir.path(), &["--status-interval", "0.3"], &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let running = "atex-orchestrate: status: 0 queued, 1 running, 0 done \
                   (0 passed, 0 failed, 0 infra, 0 flaky); \
                   machines: 0 reserving, 0 setting up, 1 busy, 0 idle; ETA ";
    // The ETA: what is left of the test's `duration` (no history).
    let lines = err
        .lines()
        .filter(|line| line.starts_with(running) && line.ends_with('s'))
        .count();
    assert!(lines >= 2, "{err}");
    // The default is 30 s: none in a short run.
    let output = orchestrate(dir.path(), &["--artifacts", "a2"], &input);
    assert!(!stderr(&output).contains("status:"), "{}", stderr(&output));
    let output = orchestrate(dir.path(), &["--status-interval", "-1"], &input);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// Where in `err` the first line containing `text` is.
fn line_of(err: &str, text: &str) -> usize {
    err.lines()
        .position(|line| line.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} in {err}"))
}

#[test]
fn an_idle_machine_is_released_at_once_unless_kept_as_a_spare() {
    let run = |script: &str, args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let input = [
            test(dir.path(), "/long", script, json!({"duration": 100})),
            test(dir.path(), "/short", "true", json!({"duration": 1})),
        ]
        .concat();
        let mut all = vec!["--provision", "local --max 2"];
        all.extend(args);
        let output = orchestrate(dir.path(), &all, &input);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{err}");
        let attempts: Vec<(String, u64, String)> = results(&output)
            .iter()
            .map(|r| {
                (
                    r["test"].as_str().unwrap().to_owned(),
                    r["attempt"].as_u64().unwrap(),
                    r["machine"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (attempts, err)
    };
    let machine_of = |attempts: &[(String, u64, String)], test: &str, attempt: u64| {
        attempts
            .iter()
            .find(|(t, a, _)| t == test && *a == attempt)
            .map(|(_, _, m)| m.clone())
            .unwrap()
    };

    // No spare: /short's machine goes while /long still runs.
    let (attempts, err) = run("sleep 2", &[]);
    let short = machine_of(&attempts, "/short", 0);
    assert!(
        line_of(&err, &format!("{short}: machine released")) < line_of(&err, "/long ended"),
        "{err}"
    );

    // /long fails once, then passes: its rerun needs a machine.
    let flaky = "sleep 1.5; exit $((1 - ATEX_ATTEMPT))";
    // Without a spare, a third machine is asked for.
    let (attempts, err) = run(flaky, &["--reruns", "1"]);
    let rerun_on = machine_of(&attempts, "/long", 1);
    assert_ne!(rerun_on, machine_of(&attempts, "/short", 0), "{err}");
    assert_ne!(rerun_on, machine_of(&attempts, "/long", 0), "{err}");
    // With one, /short's machine waits for it and runs it.
    let (attempts, err) = run(flaky, &["--reruns", "1", "--max-spares", "1"]);
    let short = machine_of(&attempts, "/short", 0);
    assert_eq!(machine_of(&attempts, "/long", 1), short, "{err}");
    assert!(
        line_of(&err, "/long ended") < line_of(&err, &format!("{short}: machine released")),
        "{err}"
    );
}

#[test]
fn output_takes_each_test_s_files_as_it_ends_and_the_artifacts_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let quick_file = store.join("files/local/quick/output.txt");
    // /slow ends only once /quick's output is in the store: its files
    // are moved there as it ends, not at the end of the run.
    let slow = format!(
        "for i in $(seq 300); do [ -e {} ] && exit 0; sleep 0.1; done; exit 1",
        quick_file.display()
    );
    let input = [
        test(dir.path(), "/slow", &slow, json!({"duration": 100})),
        test(dir.path(), "/quick", "echo quick", json!({"duration": 1})),
        test(
            dir.path(),
            "/flaky",
            "echo $ATEX_ATTEMPT; exit $((1 - ATEX_ATTEMPT))",
            json!({"duration": 1}),
        ),
    ]
    .concat();
    let args = [
        "--provision",
        "local --max 2",
        "--reruns",
        "1",
        "--output",
        "store",
    ];
    let output = orchestrate(dir.path(), &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert_eq!(std::fs::read_to_string(&quick_file).unwrap(), "quick\n");
    let flaky = |store: &Path| std::fs::read_to_string(store.join("files/local/flaky/output.txt"));
    assert_eq!(flaky(&store).unwrap(), "1\n");
    assert_eq!(flaky(&store.join("attempts")).unwrap(), "0\n");
    // Every file was moved: the emptied artifacts directory is gone.
    assert!(!dir.path().join("atex-artifacts").exists(), "{err}");

    // From another file system (tmpfs): copied, then removed.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let artifacts = shm.path().join("artifacts");
    let input = test(dir.path(), "/across", "echo across", json!({}));
    let args = [
        "--output",
        "store2",
        "--artifacts",
        artifacts.to_str().unwrap(),
    ];
    let output = orchestrate(dir.path(), &args, &input);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let copied = dir.path().join("store2/files/local/across/output.txt");
    assert_eq!(std::fs::read_to_string(copied).unwrap(), "across\n");
    assert!(!artifacts.exists());

    // Without --output the artifacts are the only copy: they stay.
    let output = orchestrate(dir.path(), &["--artifacts", "kept"], &input);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let kept = dir.path().join("kept/0/across/files/output.txt");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "across\n");
}

/// `--max-fail 2` with one machine: after the second failed test no test
/// starts; the others are not run, named on stderr; exit 1.
#[test]
fn max_fail_stops_starting_tests() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = test(dir.path(), "/a", "exit 1", json!({}));
    input += &test(dir.path(), "/b", "exit 1", json!({}));
    for name in ["/c", "/d", "/e"] {
        input += &test(dir.path(), name, "true", json!({}));
    }
    let args = ["--provision", "local --max 1", "--max-fail", "2"];
    let output = orchestrate(dir.path(), &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let ran: Vec<(String, String)> = results(&output)
        .iter()
        .map(|r| (r["test"].to_string(), r["status"].to_string()))
        .collect();
    assert_eq!(
        ran,
        [
            ("\"/a\"".to_owned(), "\"fail\"".to_owned()),
            ("\"/b\"".to_owned(), "\"fail\"".to_owned())
        ],
        "{err}"
    );
    assert!(
        err.contains("error: stopping: 2 tests failed (--max-fail 2)"),
        "{err}"
    );
    assert!(
        err.contains(
            "0 passed, 2 failed, 0 infra, 3 not run (stopped: 2 tests failed (--max-fail 2))"
        ),
        "{err}"
    );
}

/// `--max-fail 1` with two machines: the test running when another fails
/// runs to its end and is recorded; no other test starts.
#[test]
fn max_fail_lets_running_tests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = test(dir.path(), "/slow", "sleep 1", json!({"extra-priority": 1}));
    input += &test(dir.path(), "/fails", "exit 1", json!({}));
    for name in ["/c", "/d", "/e", "/f"] {
        input += &test(dir.path(), name, "true", json!({}));
    }
    let args = ["--provision", "local --max 2", "--max-fail", "1"];
    let output = orchestrate(dir.path(), &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    let mut ran: Vec<String> = results(&output)
        .iter()
        .map(|r| format!("{} {}", r["test"], r["status"]))
        .collect();
    ran.sort();
    assert_eq!(ran, ["\"/fails\" \"fail\"", "\"/slow\" \"pass\""], "{err}");
    assert!(
        err.contains("1 passed, 1 failed, 0 infra, 4 not run"),
        "{err}"
    );
}

/// A test that fails and then passes on its rerun has not failed: with
/// `--max-fail 1` every test still runs.
#[test]
fn max_fail_counts_final_attempts_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = test(
        dir.path(),
        "/flaky",
        "exit $((1 - ATEX_ATTEMPT))",
        json!({}),
    );
    input += &test(dir.path(), "/next", "true", json!({}));
    let args = [
        "--provision",
        "local --max 1",
        "--reruns",
        "1",
        "--max-fail",
        "1",
    ];
    let output = orchestrate(dir.path(), &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert_eq!(results(&output).len(), 3, "{err}");
    assert!(
        err.contains("2 passed, 0 failed, 0 infra, 1 flaky"),
        "{err}"
    );
}

/// `--rerun-failed STORE`: a second run of the same input runs only the
/// tests whose results in the first run's store did not all pass (a fail
/// and a timeout, infra), not the passed ones nor a test the store does
/// not have; into a new store.
#[test]
fn rerun_failed_runs_only_what_did_not_pass() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut first = test(root, "/a", "true", json!({}));
    first += &test(root, "/b", "exit 1", json!({}));
    first += &test(root, "/c", "true", json!({}));
    first += &test(root, "/d", "sleep 30", json!({"duration": 1}));
    let args = [
        "--provision",
        "local --max 2",
        "--output",
        "store1",
        "--artifacts",
        "a1",
    ];
    let output = orchestrate(root, &args, &first);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));

    let second = first.clone() + &test(root, "/new", "true", json!({}));
    let args = [
        "--provision",
        "local --max 2",
        "--rerun-failed",
        "store1",
        "--output",
        "store2",
        "--artifacts",
        "a2",
    ];
    let output = orchestrate(root, &args, &second);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    let mut ran: Vec<String> = results(&output)
        .iter()
        .map(|r| r["test"].as_str().unwrap().to_owned())
        .collect();
    ran.sort();
    assert_eq!(ran, ["/b", "/d"], "{err}");
    assert!(
        err.contains("--rerun-failed store1: 2 of the 5 tests did not pass there"),
        "{err}"
    );
    assert!(root.join("store2/junit.xml").is_file(), "{err}");
}

/// Nothing to rerun is exit 4 naming the store (`--no-tests=warn` accepts
/// it); a missing store and an `--output` that is the store are exit 2,
/// nothing run.
#[test]
fn rerun_failed_refuses_what_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let input = test(root, "/a", "true", json!({}));
    let args = ["--output", "store", "--artifacts", "a1"];
    assert_eq!(orchestrate(root, &args, &input).status.code(), Some(0));

    let args = ["--rerun-failed", "store", "--artifacts", "a2"];
    let output = orchestrate(root, &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{err}");
    assert!(
        err.contains("--rerun-failed store: no test of the input failed there"),
        "{err}"
    );
    let args = [
        "--rerun-failed",
        "store",
        "--artifacts",
        "a3",
        "--no-tests=warn",
    ];
    assert_eq!(orchestrate(root, &args, &input).status.code(), Some(0));

    let args = ["--rerun-failed", "nowhere", "--artifacts", "a4"];
    let output = orchestrate(root, &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--rerun-failed nowhere: nowhere holds no results store"),
        "{err}"
    );

    let args = [
        "--rerun-failed",
        "store",
        "--output",
        "store",
        "--artifacts",
        "a5",
    ];
    let output = orchestrate(root, &args, &input);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("is the --rerun-failed store"), "{err}");
    assert!(results(&output).is_empty());
}

/// Run `input` on one local machine with `extra` options and new
/// `artifacts`; the names of the tests in the order they ran.
fn run_order(root: &Path, input: &str, extra: &[&str], artifacts: &str) -> Vec<String> {
    let mut args = vec!["--provision", "local --max 1", "--artifacts", artifacts];
    args.extend_from_slice(extra);
    let output = orchestrate(root, &args, input);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    results(&output)
        .iter()
        .map(|r| r["test"].as_str().unwrap().to_owned())
        .collect()
}

/// `--group-by-tag` and `--order` on one machine: the order the tests ran
/// in, from the result records.
#[test]
fn group_by_tag_and_order_choose_the_next_test() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tagged = |name: &str, duration: u64, tags: &[&str]| {
        test(
            root,
            name,
            "true",
            json!({"duration": duration, "tag": tags}),
        )
    };
    let input = [
        tagged("/x", 50, &[]),
        tagged("/snap2", 10, &["snapshot"]),
        tagged("/long", 100, &[]),
        tagged("/snap1", 60, &["snapshot"]),
    ]
    .concat();
    let order = |extra: &[&str], artifacts: &str| run_order(root, &input, extra, artifacts);
    assert_eq!(order(&[], "a1"), ["/long", "/snap1", "/x", "/snap2"]);
    assert_eq!(
        order(&["--group-by-tag", "snapshot"], "a2"),
        ["/long", "/snap1", "/snap2", "/x"]
    );
    assert_eq!(
        order(&["--order", "input"], "a3"),
        ["/x", "/snap2", "/long", "/snap1"]
    );
}

/// `--output` keeps each attempt's duration in the store
/// (`durations.jsonl`); `--history` of that store orders the next run by
/// them: the test that took longest first, though both say `duration: 60`.
#[test]
fn history_orders_by_expected_durations() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let input = [
        test(root, "/short", "sleep 0.1", json!({})),
        test(root, "/long", "sleep 0.8", json!({})),
    ]
    .concat();
    let order = |extra: &[&str], artifacts: &str| run_order(root, &input, extra, artifacts);
    assert_eq!(order(&["--output", "s1"], "a1"), ["/short", "/long"]);
    let kept = std::fs::read_to_string(root.join("s1/durations.jsonl")).unwrap();
    assert_eq!(kept.lines().count(), 2, "{kept}");
    assert_eq!(order(&["--history", "s1"], "a2"), ["/long", "/short"]);

    let output = orchestrate(root, &["--history", "nowhere", "--artifacts", "a3"], &input);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--history: nowhere: no such store directory"));
}
