//! SIGINT and SIGTERM on the real `atex-discover tests`: one line on
//! stderr saying how many test records were written, exit 130 or 143, and
//! never half a record on stdout. The phases are made certain, not timed:
//! a plan whose `environment-file` is a FIFO holds the discovery until
//! the test writes to it, and a stdout pipe nobody reads holds the writing.
#![expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_atex-discover");

/// A tree of `count` tests (`/t/NNNNN`) with a plan `/plan`, plus `extra`
/// plan lines.
fn tree(count: usize, extra: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".fmf")).unwrap();
    std::fs::write(dir.path().join(".fmf/version"), "1\n").unwrap();
    let mut text =
        format!("/plan:\n    discover: {{how: fmf}}\n    execute: {{how: tmt}}\n{extra}/t:\n");
    for i in 0..count {
        text.push_str(&format!(
            "    /{i:05}:\n        test: ./run.sh\n        summary: a test with a summary long enough to fill pipes\n"
        ));
    }
    std::fs::write(dir.path().join("main.fmf"), text).unwrap();
    dir
}

fn spawn(dir: &Path) -> Child {
    Command::new(BIN)
        .args(["tests", "--plan", "/plan"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The number in "interrupted (SIG...), N test records written".
fn reported(stderr: &str, signal: &str) -> usize {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr}");
    let rest = lines[0]
        .strip_prefix(&format!("atex-discover: interrupted ({signal}), "))
        .unwrap_or_else(|| panic!("stderr: {stderr}"));
    let count = rest.trim_start_matches("stdout blocked: at most ");
    count
        .strip_suffix(" test records written")
        .or_else(|| count.strip_suffix(" test record written"))
        .unwrap_or_else(|| panic!("stderr: {stderr}"))
        .parse()
        .unwrap()
}

/// Wait until the child's main thread sleeps writing to a full pipe, as
/// its kernel wait channel says (`pipe_write`, `anon_pipe_write`).
fn wait_blocked_in_pipe_write(child: &Child) {
    let wchan = format!("/proc/{}/wchan", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = std::fs::read_to_string(&wchan).unwrap_or_default();
        if now.contains("pipe_write") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "atex-discover never blocked writing to its stdout pipe ({wchan}: {now:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn sigint_while_writing_stops_between_records() {
    // About 2 MB of records: far more than a pipe holds.
    let dir = tree(5000, "");
    let mut child = spawn(dir.path());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"name\":\"/t/00000\""), "{first}");
    // Writing has started and the pipe fills up while nobody reads.
    signal(&child, "INT");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    // Every record written is whole, and the report counts them.
    let records = 1 + rest.lines().count();
    assert!(rest.is_empty() || rest.ends_with('\n'));
    for line in rest.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    assert_eq!(reported(&stderr, "SIGINT"), records);
}

#[test]
fn sigterm_with_stdout_never_read_ends_after_the_grace() {
    let dir = tree(5000, "");
    let mut child = spawn(dir.path());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // Nothing more is read: once the pipe is full, the main thread sleeps
    // in write() and cannot get to its check.
    wait_blocked_in_pipe_write(&child);
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(143), "stderr: {stderr}");
    assert!(stderr.contains("stdout blocked"), "{stderr}");
    assert!(reported(&stderr, "SIGTERM") < 5000, "{stderr}");
}

#[test]
fn sigint_before_any_record() {
    let dir = tree(3, "    environment-file: [vars.env]\n");
    let fifo = dir.path().join("vars.env");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut child = spawn(dir.path());
    // Opening the FIFO for writing returns once the discovery opened it
    // to read: it is computing, and stays so while nothing is written.
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    signal(&child, "INT");
    let output = {
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (child.wait().unwrap().code(), stdout, stderr)
    };
    drop(writer);
    assert_eq!(
        output,
        (
            Some(130),
            String::new(),
            "atex-discover: interrupted (SIGINT), no test records written\n".to_owned()
        )
    );
}

#[test]
fn a_finished_run_is_not_affected() {
    let dir = tree(3, "");
    let output = Command::new(BIN)
        .args(["tests", "--plan", "/plan"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(output.stdout.lines().count(), 3);
    assert!(output.stderr.is_empty());
}
