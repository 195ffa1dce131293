//! `atex-discover tests | atex-exec` as real processes in a pipe, against a
//! loopback sshd machine (the harness's `atex-test` login) and the local
//! machine, plus atex-exec's refusal of bad input.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atex_shared::records::TestResult;
use atex_tests::pipe::{self, Collector, PipeOutput, spawn_exec, stop, wait_bounded};
use atex_tests::sshd::SshdPool;
use atex_tests::{Fixture, bin_path, parse_records};

/// Every process here is bounded by this.
const DEADLINE: Duration = Duration::from_secs(120);

const LOCAL_MACHINE: &str = r#"{"id":"local","provisioner":"local","connection":{"kind":"local"}}"#;

/// A tree with a passing test, a failing test, and a test that reports a
/// subresult with a file over the control channel.
fn fixture_tree() -> Result<Fixture> {
    Fixture::fmf_tree(&[
        ("tests/pass/main.fmf", "test: echo passing\n"),
        ("tests/fail/main.fmf", "test: echo failing; exit 1\n"),
        ("tests/sub/main.fmf", "test: bash report.sh\n"),
        (
            "tests/sub/report.sh",
            concat!(
                "json='{\"status\": \"pass\", \"name\": \"sub\", ",
                "\"files\": [{\"name\": \"log.txt\", \"length\": 6}]}'\n",
                "printf 'result %d\\n%s%s' \"${#json}\" \"$json\" $'hello\\n' >&\"$ATEX_TEST_CONTROL\"\n",
                "echo reported\n",
            ),
        ),
    ])
}

/// The three tests' results, the exit code and the artifacts.
fn check_three_tests(out: &PipeOutput, artifacts: &Path, machine_id: &str) -> Result<()> {
    assert_eq!(out.discover, Some(0));
    assert_eq!(out.code, Some(1), "one test fails; stderr: {}", out.stderr);
    let results = out.results()?;
    let summary: Vec<(&str, Option<&str>, &str)> = results
        .iter()
        .map(|r| {
            (
                r.test.as_str(),
                r.name.as_deref(),
                r.status.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("/tests/fail", None, "fail"),
            ("/tests/pass", None, "pass"),
            ("/tests/sub", Some("sub"), "pass"),
            ("/tests/sub", None, "pass"),
        ],
        "stderr: {}",
        out.stderr
    );
    let artifacts = artifacts.canonicalize()?;
    for r in &results {
        assert_eq!(r.machine, machine_id);
        assert!(
            r.artifacts.starts_with(&artifacts),
            "{}",
            r.artifacts.display()
        );
        assert!(!r.started.is_empty());
    }
    assert_eq!(results[0].exit_code, Some(1));
    assert_eq!(results[1].exit_code, Some(0));
    assert_eq!(results[2].files, ["log.txt"]);

    let fail_out = results[0].artifacts.join("files/output.txt");
    assert_eq!(std::fs::read_to_string(&fail_out)?, "failing\n");
    let pass_out = results[1].artifacts.join("files/output.txt");
    assert_eq!(std::fs::read_to_string(&pass_out)?, "passing\n");
    let log = results[2].artifacts.join("files/sub/log.txt");
    assert_eq!(std::fs::read_to_string(&log)?, "hello\n");
    let sub_out = results[3].artifacts.join("files/output.txt");
    assert_eq!(std::fs::read_to_string(&sub_out)?, "reported\n");
    Ok(())
}

/// Run the fixture tree on `machine` (a Machine record) and check it.
fn run_three_tests(machine: &str, machine_id: &str) -> Result<()> {
    let tree = fixture_tree()?;
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let out = pipe::tests_on(&tree.path(), &[], machine, &artifacts, DEADLINE)?;
    check_three_tests(&out, &artifacts, machine_id)
}

#[test]
fn discover_piped_into_exec_on_loopback_sshd() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let machine = pool.machines().remove(0);
    run_three_tests(&serde_json::to_string(&machine)?, &machine.id)
}

#[test]
fn discover_piped_into_exec_on_the_local_machine() -> Result<()> {
    run_three_tests(LOCAL_MACHINE, "local")
}

/// Run atex-exec with `args` and `stdin`, bounded.
fn exec_bounded(args: &[&str], stdin: &[u8]) -> Result<(Option<i32>, Vec<u8>, String)> {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let mut child = spawn_exec(&args, Stdio::piped())?;
    let mut input = child.stdin.take().context("stdin")?;
    // Refusals may come before the input is read.
    let _ = input.write_all(stdin);
    drop(input);
    let collector = Collector::start(&mut child)?;
    let code = wait_bounded(&mut child, Instant::now() + DEADLINE, "atex-exec")?;
    let (stdout, stderr) = collector.finish();
    Ok((code, stdout, stderr))
}

#[test]
fn bad_input_exits_2_with_nothing_started() -> Result<()> {
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let dir = artifacts.to_str().context("path")?;
    let test = br#"{"name": "/t", "root": "/nonexistent", "path": "", "test": "true"}"#;

    let (code, stdout, stderr) =
        exec_bounded(&["--machine", "{\"id\": ", "--artifacts", dir], test)?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("atex-exec: error: --machine:1:"),
        "{stderr}"
    );

    let mut input = test.to_vec();
    input.extend_from_slice(b"\n{\"name\": 3}\n");
    let (code, stdout, stderr) =
        exec_bounded(&["--machine", LOCAL_MACHINE, "--artifacts", dir], &input)?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("atex-exec: error: <stdin>:2:"),
        "{stderr}"
    );
    assert!(!artifacts.exists(), "nothing may be started on bad input");

    let (code, stdout, _) = exec_bounded(&["--help"], b"")?;
    assert_eq!(code, Some(0));
    assert!(String::from_utf8_lossy(&stdout).contains("Usage: atex-exec"));
    Ok(())
}

#[test]
fn sigterm_kills_the_running_test_and_exits_143() -> Result<()> {
    let tree = Fixture::fmf_tree(&[(
        "tests/sleep/main.fmf",
        "test: echo started; touch \"$MARKER\"; sleep 60; touch \"$MARKER.after\"\n",
    )])?;
    let work = Fixture::new()?;
    let marker = work.path().join("marker");
    let discover = Command::new(bin_path("atex-discover")?)
        .arg("tests")
        .arg("--root")
        .arg(tree.path())
        .output()?;
    assert_eq!(discover.status.code(), Some(0));
    // The environment reaches the test through its record.
    let mut test: serde_json::Value = serde_json::from_slice(&discover.stdout)?;
    test["environment"]["MARKER"] = marker.to_str().context("path")?.into();
    let artifacts = work.path().join("artifacts");
    let mut exec = Command::new(bin_path("atex-exec")?)
        .arg("--machine")
        .arg(LOCAL_MACHINE)
        .arg("--artifacts")
        .arg(&artifacts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = exec.stdin.take().context("stdin")?;
    writeln!(stdin, "{test}")?;
    drop(stdin);
    let deadline = Instant::now() + DEADLINE;
    while !marker.exists() {
        if Instant::now() > deadline || exec.try_wait()?.is_some() {
            stop(&mut exec);
            bail!("the test did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &exec.id().to_string()])
        .status()?;
    let mut out = exec.stdout.take().context("stdout")?;
    let code = wait_bounded(&mut exec, deadline, "atex-exec")?;
    let mut stdout = Vec::new();
    out.read_to_end(&mut stdout)?;
    assert_eq!(code, Some(143));
    let results: Vec<TestResult> = parse_records(&stdout, "atex-exec stdout")?;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].status.as_deref(), Some("infra"));
    assert_eq!(results[0].note.as_deref(), Some("Interrupted(SIGTERM)"));
    assert_eq!(results[0].files, ["output.txt"]);
    let output = std::fs::read_to_string(results[0].artifacts.join("files/output.txt"))?;
    assert_eq!(output, "started\n");
    // The wrapper stopped the test's session: the sleep never finished.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!work.path().join("marker.after").exists());
    Ok(())
}
