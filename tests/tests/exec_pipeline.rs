//! `atex-discover tests | atex-exec` as real processes in a pipe, against a
//! loopback sshd machine (the harness's `atex-test` login) and the local
//! machine, plus atex-exec's refusal of bad input, its exit code without
//! tests, its refusal of a used artifacts directory, what it says on stderr
//! (progress, an unreachable machine, an interrupt), the `--machine`
//! shorthands and results without a status.

use std::ffi::OsStr;
use std::io::Write;
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

/// The three tests' results, the exit code, the artifacts and the progress
/// lines; `platform` is what the results must carry.
fn check_three_tests(
    out: &PipeOutput,
    artifacts: &Path,
    machine_id: &str,
    platform: &str,
) -> Result<()> {
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
        assert_eq!(r.platform, platform);
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

    // For people: one line as each test starts, one as it ends.
    let lines: Vec<&str> = out.stderr.lines().collect();
    let progress: Vec<String> = lines
        .iter()
        .map(|l| match l.find(" (") {
            Some(i) if !l.ends_with("started") => l[..i].to_owned(),
            _ => (*l).to_owned(),
        })
        .collect();
    assert_eq!(
        progress,
        [
            "atex-exec: [1/3] /tests/fail started",
            "atex-exec: /tests/fail: fail",
            "atex-exec: [2/3] /tests/pass started",
            "atex-exec: /tests/pass: pass",
            "atex-exec: [3/3] /tests/sub started",
            "atex-exec: /tests/sub: pass",
        ],
        "stderr: {}",
        out.stderr
    );
    assert!(lines[5].ends_with(" s, 2 results)"), "{}", lines[5]);
    Ok(())
}

/// Run the fixture tree on `machine` (`--machine`'s value) and check it.
fn run_three_tests(machine: &str, machine_id: &str, platform: &str) -> Result<()> {
    let tree = fixture_tree()?;
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let out = pipe::tests_on(&tree.path(), &[], machine, &artifacts, DEADLINE)?;
    check_three_tests(&out, &artifacts, machine_id, platform)
}

#[test]
fn discover_piped_into_exec_on_loopback_sshd() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let machine = pool.machines().remove(0);
    run_three_tests(&serde_json::to_string(&machine)?, &machine.id, "loopback")
}

/// The Machine record has no platform: results name the provisioner, never
/// `""` (issue 9, item 9).
#[test]
fn discover_piped_into_exec_on_the_local_machine() -> Result<()> {
    run_three_tests(LOCAL_MACHINE, "local", "local")
}

/// `--machine local` and `--machine @FILE` (one record, as a line of
/// atex-provision's output) are shorthands; anything else that is not JSON
/// says what is expected.
#[test]
fn machine_shorthands() -> Result<()> {
    run_three_tests("local", "local", "local")?;

    let work = Fixture::new()?;
    let file = work.write(
        "machine.jsonl",
        r#"{"id":"mine","provisioner":"local","connection":{"kind":"local"},"platform":"p1"}
"#,
    )?;
    let at_file = format!("@{}", file.display());
    run_three_tests(&at_file, "mine", "p1")?;

    let two = work.write(
        "machines.jsonl",
        &format!("{LOCAL_MACHINE}\n{LOCAL_MACHINE}\n"),
    )?;
    let test = br#"{"name": "/t", "root": "/nonexistent", "path": "", "test": "true"}"#;
    let artifacts = work.path().join("artifacts");
    let dir = artifacts.to_str().context("path")?;
    let at_two = format!("@{}", two.display());
    let (code, stdout, stderr) = exec_bounded(&["--machine", &at_two, "--artifacts", dir], test)?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("machines.jsonl:2:1: more than one Machine record"),
        "{stderr}"
    );
    for bad in ["lcoal", ""] {
        let (code, stdout, stderr) = exec_bounded(&["--machine", bad, "--artifacts", dir], test)?;
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.starts_with("atex-exec: error: --machine ")
                && stderr.contains("a Machine record (JSON) is expected, or `local`")
                && stderr.contains("@FILE"),
            "{stderr}"
        );
    }
    assert!(!artifacts.exists(), "nothing may be started on bad input");
    Ok(())
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

/// No Test record on stdin is not a pass (issue 9, item 2): exit 4 with a
/// message by default, `--no-tests=warn|pass` accept it; nothing is
/// started either way.
#[test]
fn no_test_records_is_exit_4_unless_accepted() -> Result<()> {
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let dir = artifacts.to_str().context("path")?;
    // Unreachable: connecting would make an infra result and exit 3.
    let machine = r#"{"id":"vm","provisioner":"ssh","connection":{"kind":"ssh","host":"127.0.0.1","port":1,"user":"nobody"}}"#;
    let base = ["--machine", machine, "--artifacts", dir];

    let (code, stdout, stderr) = exec_bounded(&base, b"")?;
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("atex-exec: error: no test records on stdin"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let (code, stdout, stderr) = exec_bounded(&[&base[..], &["--no-tests=warn"]].concat(), b"\n")?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("atex-exec: warning: no test records on stdin"),
        "{stderr}"
    );

    let (code, stdout, stderr) = exec_bounded(&[&base[..], &["--no-tests", "pass"]].concat(), b"")?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.is_empty() && stderr.is_empty(), "{stderr}");
    assert!(!artifacts.exists(), "nothing may be started without tests");
    Ok(())
}

/// A second run into the same `--artifacts` is refused before anything
/// starts (issue 9, item 4): the first run's files stay as they were. An
/// empty directory is fine.
#[test]
fn a_used_artifacts_directory_is_refused() -> Result<()> {
    let tree = Fixture::fmf_tree(&[("tests/once/main.fmf", "test: echo first\n")])?;
    let work = Fixture::new()?;
    let artifacts = work.path().join("out");
    std::fs::create_dir(&artifacts)?;
    let out = pipe::tests_on(&tree.path(), &[], "local", &artifacts, DEADLINE)?;
    assert_eq!(
        out.code,
        Some(0),
        "an empty directory is fine: {}",
        out.stderr
    );
    let output = artifacts.join("tests/once/files/output.txt");
    assert_eq!(std::fs::read_to_string(&output)?, "first\n");

    tree.write("tests/once/main.fmf", "test: echo second\n")?;
    let out = pipe::tests_on(&tree.path(), &[], "local", &artifacts, DEADLINE)?;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert_eq!(
        out.stderr,
        format!(
            "atex-exec: error: artifacts directory '{}' is not empty (an earlier run?); \
             remove it or choose another\n",
            artifacts.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&output)?, "first\n");
    let files: Vec<_> = std::fs::read_dir(artifacts.join("tests/once/files"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(files, ["output.txt"]);
    Ok(())
}

/// The machine does not answer: besides the results' notes, one error line
/// names it on stderr; `--quiet` drops the progress lines only.
#[test]
fn an_unreachable_machine_is_named_on_stderr() -> Result<()> {
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let dir = artifacts.to_str().context("path")?;
    let machine = r#"{"id":"vm1","provisioner":"ssh","connection":{"kind":"ssh","host":"127.0.0.1","port":1,"user":"nobody"}}"#;
    let root = work.path();
    let root = root.to_str().context("path")?;
    let tests = format!(
        "{{\"name\": \"/a\", \"root\": \"{root}\", \"path\": \"\", \"test\": \"true\"}}\n\
         {{\"name\": \"/b\", \"root\": \"{root}\", \"path\": \"\", \"test\": \"true\"}}\n"
    );
    let (code, stdout, stderr) = exec_bounded(
        &["--machine", machine, "--artifacts", dir, "-q"],
        tests.as_bytes(),
    )?;
    assert_eq!(code, Some(3), "{stderr}");
    let results: Vec<TestResult> = parse_records(&stdout, "atex-exec stdout")?;
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.status.as_deref() == Some("infra")));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("atex-exec: error: machine 'vm1' is unreachable (")
            && lines[0].ends_with("): 2 tests recorded as infra without running"),
        "{stderr}"
    );
    Ok(())
}

/// As ATEX 1.2: a result reported without a status keeps `"status": null`
/// (not `""`), and such a result is not a pass: exit 1.
#[test]
fn a_result_without_status_stays_null_and_is_not_a_pass() -> Result<()> {
    let tree = Fixture::fmf_tree(&[
        ("tests/ok/main.fmf", "test: exit 0\n"),
        (
            "tests/nostatus/main.fmf",
            concat!(
                "test: |\n",
                "  printf 'result 15\\n{\"name\": \"sub\"}' >&$ATEX_TEST_CONTROL\n",
                "  printf 'result 2\\n{}' >&$ATEX_TEST_CONTROL\n",
            ),
        ),
    ])?;
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let out = pipe::tests_on(&tree.path(), &[], LOCAL_MACHINE, &artifacts, DEADLINE)?;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let lines: Vec<serde_json::Value> = parse_records(&out.stdout, "atex-exec stdout")?;
    let rows: Vec<(&str, &serde_json::Value, &serde_json::Value)> = lines
        .iter()
        .map(|l| (l["test"].as_str().unwrap_or(""), &l["name"], &l["status"]))
        .collect();
    let null = serde_json::Value::Null;
    let (sub, pass) = (serde_json::json!("sub"), serde_json::json!("pass"));
    assert_eq!(
        rows,
        [
            ("/tests/nostatus", &sub, &null),
            ("/tests/nostatus", &null, &null),
            ("/tests/ok", &null, &pass),
        ],
        "{}",
        out.stderr
    );
    for line in &lines[..2] {
        assert!(line.as_object().is_some_and(|o| o.contains_key("status")));
    }
    assert!(
        out.stderr
            .contains("atex-exec: /tests/nostatus: no status ("),
        "{}",
        out.stderr
    );
    Ok(())
}

/// What an interrupted atex-exec leaves: its exit code, its stdout and its
/// stderr, for a run of two tests on `machine` whose first sleeps until
/// `signal` comes. With `group`, atex-exec runs in a process group of its
/// own and the signal goes to the whole group, as a terminal's Ctrl-C
/// does (the ssh clients it started get it too).
fn interrupted_run(
    machine: &str,
    signal: &str,
    group: bool,
) -> Result<(Option<i32>, Vec<TestResult>, String, Fixture)> {
    let tree = Fixture::fmf_tree(&[
        (
            "tests/sleep/main.fmf",
            "test: echo started; touch \"$MARKER\" 2>/dev/null || :; sleep 60; touch \"$MARKER.after\"\n",
        ),
        ("tests/later/main.fmf", "test: echo later\n"),
    ])?;
    let work = Fixture::new()?;
    let marker = work.path().join("marker");
    let discover = Command::new(bin_path("atex-discover")?)
        .arg("tests")
        .arg("--root")
        .arg(tree.path())
        .output()?;
    assert_eq!(discover.status.code(), Some(0));
    // The environment reaches the test through its record; the sleeping
    // test first.
    let mut records: Vec<serde_json::Value> = parse_records(&discover.stdout, "discover")?;
    records.sort_by_key(|r| r["name"] != "/tests/sleep");
    let artifacts = work.path().join("artifacts");
    let mut command = Command::new(bin_path("atex-exec")?);
    command
        .arg("--machine")
        .arg(machine)
        .arg("--artifacts")
        .arg(&artifacts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if group {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    let mut exec = command.spawn()?;
    let mut stdin = exec.stdin.take().context("stdin")?;
    for mut test in records {
        test["environment"]["MARKER"] = marker.to_str().context("path")?.into();
        writeln!(stdin, "{test}")?;
    }
    drop(stdin);
    let collector = Collector::start(&mut exec)?;
    let deadline = Instant::now() + DEADLINE;
    // The test's output so far (the marker needs a machine that can write
    // here; the output works on any).
    let testout = artifacts.join("tests/sleep/testout.temp");
    while std::fs::read_to_string(&testout).unwrap_or_default() != "started\n" {
        if Instant::now() > deadline || exec.try_wait()?.is_some() {
            stop(&mut exec);
            let (stdout, stderr) = collector.finish();
            let stdout = String::from_utf8_lossy(&stdout);
            bail!("the test did not start: {stdout}{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let target = if group {
        format!("-{}", exec.id())
    } else {
        exec.id().to_string()
    };
    Command::new("kill")
        .args([&format!("-{signal}"), "--", &target])
        .status()?;
    let code = wait_bounded(&mut exec, deadline, "atex-exec")?;
    let (stdout, stderr) = collector.finish();
    let results: Vec<TestResult> = parse_records(&stdout, "atex-exec stdout")?;
    Ok((code, results, stderr, work))
}

/// The stopped test's `infra` record is on stdout, and stderr ends with
/// one line saying what was done (issue 9, item 5).
fn check_interrupted(signal: &str, code: i32) -> Result<()> {
    let (got, results, stderr, work) = interrupted_run(LOCAL_MACHINE, signal, false)?;
    assert_eq!(got, Some(code), "{stderr}");
    assert_eq!(results.len(), 1, "{stderr}");
    assert_eq!(results[0].test, "/tests/sleep");
    assert_eq!(results[0].status.as_deref(), Some("infra"));
    let note = format!("Interrupted(SIG{signal})");
    assert_eq!(results[0].note.as_deref(), Some(note.as_str()));
    assert_eq!(results[0].files, ["output.txt"]);
    let output = std::fs::read_to_string(results[0].artifacts.join("files/output.txt"))?;
    assert_eq!(output, "started\n");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("atex-exec: interrupted"))
        .collect();
    assert_eq!(
        said,
        [format!(
            "atex-exec: interrupted (SIG{signal}): test /tests/sleep stopped and recorded \
             as infra, 1 test not run; cleaned up"
        )],
        "{stderr}"
    );
    assert_eq!(stderr.lines().last(), Some(said[0]), "{stderr}");
    assert!(!stderr.contains("/tests/later"), "{stderr}");
    // The wrapper stopped the test's session: the sleep never finished.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!work.path().join("marker.after").exists());
    Ok(())
}

#[test]
fn sigterm_kills_the_running_test_and_exits_143() -> Result<()> {
    check_interrupted("TERM", 143)
}

#[test]
fn sigint_kills_the_running_test_and_exits_130() -> Result<()> {
    check_interrupted("INT", 130)
}

/// Ctrl-C reaches atex-exec and the ssh clients it started at once: the
/// test may end through its lost connection before atex-exec sees the
/// signal, and still the run stops there, the test recorded as infra, the
/// next test not started.
#[test]
fn ctrl_c_to_the_whole_group_on_loopback_sshd() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let machine = serde_json::to_string(&pool.machines().remove(0))?;
    for _ in 0..3 {
        let (got, results, stderr, _work) = interrupted_run(&machine, "INT", true)?;
        assert_eq!(got, Some(130), "{stderr}");
        let rows: Vec<(&str, Option<&str>)> = results
            .iter()
            .map(|r| (r.test.as_str(), r.status.as_deref()))
            .collect();
        assert_eq!(rows, [("/tests/sleep", Some("infra"))], "{stderr}");
        assert_eq!(
            stderr.lines().last(),
            Some(
                "atex-exec: interrupted (SIGINT): test /tests/sleep stopped and recorded \
                 as infra, 1 test not run; cleaned up"
            ),
            "{stderr}"
        );
        assert!(!stderr.contains("/tests/later"), "{stderr}");
    }
    Ok(())
}

/// Unmounts a tmpfs when dropped.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Issue 10 item 7 over ssh: the artifacts are on a full filesystem (a
/// 1 MB tmpfs). The test writing 2 MB of output was stuck until its
/// duration ran out (ssh stopped reading the channel once its stderr
/// writes failed), then `infra` "duration timeout"; the next test passed
/// with an empty output.txt. Now each is `infra` at once with the OS
/// reason in its note and on stderr.
#[test]
fn a_full_artifacts_filesystem_over_ssh_is_infra_at_once() -> Result<()> {
    let tree = Fixture::fmf_tree(&[
        (
            "tests/flood/main.fmf",
            "test: head -c 2000000 /dev/zero; sleep 100\nduration: 100s\n",
        ),
        ("tests/next/main.fmf", "test: echo hello\nduration: 100s\n"),
    ])?;
    let work = Fixture::new()?;
    let disk = work.path().join("disk");
    std::fs::create_dir_all(&disk)?;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&disk)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        bail!(
            "this test needs a full filesystem: it mounts a 1 MB tmpfs \
             (`mount -t tmpfs -o size=1m tmpfs DIR`), which needs root or CAP_SYS_ADMIN"
        );
    }
    let _tmpfs = Tmpfs(disk.clone());
    let pool = SshdPool::start(1)?;
    let machine = serde_json::to_string(&pool.machines().remove(0))?;
    let artifacts = disk.join("out");
    let out = pipe::tests_on(&tree.path(), &[], &machine, &artifacts, DEADLINE)?;
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    let results = out.results()?;
    for test in ["/tests/flood", "/tests/next"] {
        let r = results
            .iter()
            .rev()
            .find(|r| r.test == test && r.name.is_none())
            .with_context(|| format!("no result of {test}: {}", out.stderr))?;
        let note = r.note.as_deref().unwrap_or_default();
        assert_eq!(r.status.as_deref(), Some("infra"), "{test}: {note}");
        assert!(
            note.starts_with("OSError(") && note.contains("No space left on device"),
            "{test}: {note}"
        );
        assert!(r.duration < 30.0, "{test}: {} s", r.duration);
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with(&format!("atex-exec: warning: {test}: "))
                    && l.contains("No space left on device")),
            "{test}: {}",
            out.stderr
        );
    }
    Ok(())
}
