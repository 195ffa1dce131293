//! Integration tests of `atex_exec::remote` (the work dir, the uploaded
//! tree, per-test setup and launch, prepare/finish phases, cleanup) on real
//! loopback sshd machines (non-root login) and on the local machine.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atex_exec::control::{ControlError, Decoder, Event};
use atex_exec::remote::{RemoteError, RemoteLayout};
use atex_shared::connection::{Connection, Input};
use atex_shared::records::{self, Test};
use atex_tests::Fixture;
use atex_tests::sshd::SshdPool;
use tokio::io::AsyncReadExt;

async fn ssh_connection(pool: &SshdPool) -> Result<Connection> {
    let machine = pool.machines().remove(0);
    let mut conn = Connection::new(&machine.connection).with_timeout(Duration::from_secs(20));
    conn.connect().await.context("connect")?;
    Ok(conn)
}

/// A small fmf tree with a `.git` directory that must not be uploaded.
fn tree() -> Result<Fixture> {
    Fixture::fmf_tree(&[
        ("tests/basic/main.fmf", "test: ./run.sh\n"),
        ("tests/basic/run.sh", "#!/bin/bash\necho basic\n"),
        (".git/HEAD", "ref: refs/heads/main\n"),
        ("tests/basic/.git/config", "x\n"),
    ])
}

fn test_record(root: &std::path::Path, snippet: &str) -> Result<Test> {
    let mut test: Test = serde_json::from_value(serde_json::json!({
        "name": "/tests/basic",
        "root": root,
        "path": "tests/basic",
        "test": snippet,
        "environment": {"NL": "line one\nline two", "PCT": "100% %d %s %%", "FROM": "test"},
        "plan": {"name": "/plans/p", "environment": {"PLANVAR": "plan value", "FROM": "plan"}},
        "data": {"summary": "basic", "custom": [1, 2]},
    }))?;
    test.plan.prepare = vec![serde_json::json!({
        "how": "shell",
        "script": [
            "pwd > prepare.txt; printf '%s\\n' \"$PLANVAR\" \"$TMT_TREE\" >> prepare.txt",
            "echo FROM_PREPARE=yes >> \"$TMT_PLAN_ENVIRONMENT_FILE\"",
        ],
    })];
    Ok(test)
}

/// Run a script on the machine and return its stdout (must succeed).
async fn sh(conn: &Connection, script: &str) -> Result<String> {
    let out = conn.run_script(script.as_bytes()).await?;
    if !out.success() {
        bail!(
            "script failed ({:?}): {}",
            out.code,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Launch the test with `files.argv`; return (the exit codes the control
/// channel reported, the wrapper's exit code, the test output).
async fn launch(conn: &Connection, argv: &[String]) -> Result<(Vec<i32>, Option<i32>, Vec<u8>)> {
    let dir = tempfile::tempdir()?;
    let out_path = dir.path().join("output.txt");
    let out_file = std::fs::File::create(&out_path)?;
    let mut process = conn.spawn(argv, Input::Null, out_file).await?;
    let mut control = Vec::new();
    process
        .take_stdout()
        .context("stdout")?
        .read_to_end(&mut control)
        .await?;
    let code = tokio::time::timeout(Duration::from_secs(30), process.wait()).await??;
    let mut decoder = Decoder::new();
    let mut codes = Vec::new();
    decoder.feed(&control, |event| {
        if let Event::ExitCode(c) = event {
            codes.push(c);
        }
        Ok::<(), ControlError>(())
    })?;
    decoder.finish()?;
    Ok((codes, code, std::fs::read(&out_path)?))
}

/// The whole cycle: prepare, prepare phases, two tests, cleanup.
async fn full_cycle(conn: &Connection, expect_var: bool) -> Result<()> {
    let fixture = tree()?;
    let root = fixture.path();
    let layout = RemoteLayout::prepare(conn, &root).await?;
    let w = layout.work_dir().to_owned();
    if expect_var {
        assert!(w.starts_with("/var/atex-"), "{w}");
    } else {
        assert!(
            !w.starts_with("/var/"),
            "a non-root login cannot write /var: {w}"
        );
    }
    // Writable, uploaded without .git, the wrapper executable.
    let listing = sh(
        conn,
        &format!(
            "cd '{w}' && touch probe && find tests -print | sort && stat -c %a wrapper.py && \
             test -d bin && test -f plan_env && ! test -s plan_env && echo ok"
        ),
    )
    .await?;
    assert!(listing.contains("tests/tests/basic/run.sh\n"), "{listing}");
    assert!(listing.contains("tests/.fmf/version\n"), "{listing}");
    assert!(!listing.contains(".git"), "{listing}");
    assert!(listing.ends_with("755\nok\n"), "{listing}");
    assert!(layout.python().starts_with('/'));

    let snippet = "printf '%s\\0' \"$NL\" \"$PCT\" \"$PWD\" \"$TMT_TEST_NAME\" \"$FROM\" \
                   \"$PLANVAR\" \"${FROM_PREPARE-unset}\" \"${FROM_TEST-unset}\" \"$TMT_REBOOT_COUNT\" \
                   \"${TMT_TEST_DATA-unset}\"; echo FROM_TEST=1 >> \"$TMT_PLAN_ENVIRONMENT_FILE\"; \
                   cat \"$TMT_TEST_METADATA\"";
    let test = test_record(&root, snippet)?;

    let outputs = layout.run_prepare(conn, &test.plan).await?;
    assert_eq!(outputs.len(), 2);
    let prepared = sh(conn, &format!("cat '{w}/tests/prepare.txt'")).await?;
    assert_eq!(prepared, format!("{w}/tests\nplan value\n{w}/tests\n"));

    for round in 0..2 {
        let files = layout.setup_test(conn, &test, &[], 0, 0).await?;
        assert_eq!(files.workdir, format!("{w}/tests/tests/basic"));
        let (codes, code, output) = launch(conn, &files.argv).await?;
        assert_eq!(
            (codes.as_slice(), code),
            (&[0][..], Some(0)),
            "round {round}"
        );
        let text = String::from_utf8(output)?;
        let fields: Vec<&str> = text.split('\0').collect();
        assert_eq!(
            &fields[..10],
            [
                "line one\nline two",
                "100% %d %s %%",
                &format!("{w}/tests/tests/basic"),
                "/tests/basic",
                "test",
                "plan value",
                "yes",
                // What the previous test appended does not leak (round 1).
                "unset",
                "0",
                "unset",
            ],
            "round {round}"
        );
        let metadata: serde_json::Value = serde_json::from_str(fields[10].trim())?;
        assert_eq!(metadata, test.data);
    }

    // A failing test still reports through the control channel.
    let failing = test_record(&root, "exit 7")?;
    let files = layout.setup_test(conn, &failing, &[], 0, 0).await?;
    let (codes, code, _) = launch(conn, &files.argv).await?;
    assert_eq!((codes, code), (vec![7], Some(0)));

    // finish phases; unknown `how` is a typed error naming it.
    let finish = [serde_json::json!({"how": "ansible", "playbook": "x.yml"})];
    let err = layout
        .run_plan_phases(conn, "finish", &finish, &[])
        .await
        .expect_err("unknown how");
    assert!(matches!(&err, RemoteError::UnknownHow { how, .. } if how == "ansible"));
    assert!(err.to_string().contains("'how: ansible'"), "{err}");
    let failing_phase = [serde_json::json!({"script": "false"})];
    let err = layout
        .run_plan_phases(conn, "finish", &failing_phase, &[])
        .await
        .expect_err("failing phase");
    assert!(
        matches!(err, RemoteError::PhaseFailed { code: Some(1), .. }),
        "{err}"
    );

    layout.cleanup(conn).await?;
    let gone = sh(conn, &format!("test -e '{w}' && echo present || echo gone")).await?;
    assert_eq!(gone, "gone\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_non_root_layout_runs_tests_through_the_wrapper() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let conn = ssh_connection(&pool).await?;
    full_cycle(&conn, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_work_dir_falls_back_to_the_state_dir_of_the_login() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let conn = ssh_connection(&pool).await?;
    let fixture = tree()?;
    let layout = RemoteLayout::prepare(&conn, &fixture.path()).await?;
    let home = sh(&conn, "printf %s \"${XDG_STATE_HOME:-$HOME/.local/state}\"").await?;
    let w = layout.work_dir();
    assert!(w.starts_with(&format!("{home}/atex-")), "{w} under {home}");
    layout.cleanup(&conn).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_layout_runs_tests_through_the_wrapper() -> Result<()> {
    let conn = Connection::new(&records::Connection::Local);
    // Root can write /var (ATEX's place); anyone else gets a fallback.
    let root = sh(&conn, "id -u").await? == "0\n";
    full_cycle(&conn, root).await
}

/// atex-exec as a process, for interrupts and frozen machines: its stdout
/// lines are timestamped as they come, stderr is collected.
mod exec {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result, bail};
    use atex_shared::records::TestResult;
    use atex_tests::{Fixture, bin_path};

    /// One atex-exec run.
    pub struct Exec {
        child: Child,
        lines: Receiver<(Instant, String)>,
        stderr: Option<std::thread::JoinHandle<String>>,
        /// Records read so far, with when each came.
        pub records: Vec<(Instant, TestResult)>,
        /// Directories of this run: the tree, the artifacts, the place
        /// every login can write.
        pub work: Fixture,
    }

    impl Exec {
        /// A directory the test's login (the harness's unprivileged
        /// user) can write, for the test to say where its work dir is.
        pub fn shared(&self) -> PathBuf {
            self.work.path().join("shared")
        }

        /// Start atex-exec on `machine` (a JSON Machine record) with the
        /// `records` (Test records; `SHARED` is added to their
        /// environments and to their plan's) and `--quiet`.
        pub fn start(machine: &str, work: Fixture, records: &[serde_json::Value]) -> Result<Exec> {
            let shared = work.path().join("shared");
            std::fs::create_dir(&shared)?;
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777))?;
            std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
            let mut child = Command::new(bin_path("atex-exec")?)
                .arg("--quiet")
                .arg("--machine")
                .arg(machine)
                .arg("--artifacts")
                .arg(work.path().join("artifacts"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("start atex-exec")?;
            let mut stdin = child.stdin.take().context("stdin")?;
            for record in records {
                let mut record = record.clone();
                let dir = shared.to_str().context("path")?;
                record["environment"]["SHARED"] = dir.into();
                record["plan"]["environment"]["SHARED"] = dir.into();
                writeln!(stdin, "{record}")?;
            }
            drop(stdin);
            let stdout = child.stdout.take().context("stdout")?;
            let (send, lines) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if send.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            });
            let mut err = child.stderr.take().context("stderr")?;
            let stderr = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                text
            });
            Ok(Exec {
                child,
                lines,
                stderr: Some(stderr),
                records: Vec::new(),
                work,
            })
        }

        /// Wait until `path` exists (the test got there).
        pub fn wait_for(&mut self, path: &Path, within: Duration) -> Result<()> {
            let until = Instant::now() + within;
            while !path.exists() {
                if let Some(status) = self.child.try_wait()? {
                    bail!(
                        "atex-exec ended ({status}) before {} existed",
                        path.display()
                    );
                }
                if Instant::now() > until {
                    bail!("{} did not appear within {within:?}", path.display());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        }

        /// Wait for the next record on stdout, at most `within`.
        pub fn next_record(&mut self, within: Duration) -> Result<Option<(Instant, TestResult)>> {
            match self.lines.recv_timeout(within) {
                Ok((at, line)) => {
                    let record: TestResult = serde_json::from_str(&line)
                        .with_context(|| format!("not a Result record: {line}"))?;
                    self.records.push((at, record.clone()));
                    Ok(Some((at, record)))
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => Ok(None),
            }
        }

        /// Send `signal` (e.g. `INT`) to atex-exec.
        pub fn signal(&self, signal: &str) -> Result<()> {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &self.child.id().to_string()])
                .status()?;
            if !status.success() {
                bail!("kill -{signal} failed");
            }
            Ok(())
        }

        /// Wait for atex-exec to end, at most `within` (killed after that):
        /// its exit code, the rest of its records, its stderr.
        pub fn finish(
            mut self,
            within: Duration,
        ) -> Result<(Option<i32>, Vec<TestResult>, String)> {
            let until = Instant::now() + within;
            let code = loop {
                if let Some(status) = self.child.try_wait()? {
                    break status.code();
                }
                if Instant::now() > until {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default());
                    bail!(
                        "atex-exec did not end within {within:?}; stderr: {}",
                        stderr.unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            while self.next_record(Duration::from_secs(5))?.is_some() {}
            let stderr = self
                .stderr
                .take()
                .map(|t| t.join().unwrap_or_default())
                .unwrap_or_default();
            let records = self.records.drain(..).map(|(_, r)| r).collect();
            Ok((code, records, stderr))
        }
    }

    impl Drop for Exec {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    /// The Test records of `tree` (atex-discover's output).
    pub fn discover(tree: &Path) -> Result<Vec<serde_json::Value>> {
        let out = atex_tests::run(
            "atex-discover",
            ["tests", "--root", tree.to_str().context("path")?],
            None,
        )?;
        if out.code != Some(0) {
            bail!("atex-discover failed: {}", out.stderr);
        }
        atex_tests::parse_records(&out.stdout, "atex-discover")
    }
}

/// Processes of a loopback sshd stopped with SIGSTOP, as a frozen machine:
/// the listener and everything under it (the per-connection sshd
/// processes hold the open connections; the sessions too, as a frozen
/// machine runs nothing). SIGCONT on drop.
struct Frozen(Vec<u32>);

impl Frozen {
    fn freeze(listener: u32) -> Result<Frozen> {
        let mut pids = vec![listener];
        // Parents before children, so nothing forks past the freeze.
        let mut i = 0;
        while i < pids.len() {
            let parent = pids[i];
            for (pid, ppid) in processes()? {
                if ppid == parent && !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
            i += 1;
        }
        let frozen = Frozen(pids);
        for pid in &frozen.0 {
            signal(*pid, "STOP");
        }
        // Children forked just before their parent stopped.
        for (pid, ppid) in processes()? {
            if frozen.0.contains(&ppid) && !frozen.0.contains(&pid) {
                signal(pid, "STOP");
            }
        }
        Ok(frozen)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.0 {
            signal(*pid, "CONT");
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Every process as (pid, parent pid).
fn processes() -> Result<Vec<(u32, u32)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parens.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            found.push((pid, ppid));
        }
    }
    Ok(found)
}

/// The sshd machine as JSON, with extra ssh `options`.
fn machine_json(pool: &SshdPool, options: &[(&str, &str)]) -> Result<String> {
    let mut machine = pool.machines().remove(0);
    if let records::Connection::Ssh { options: o, .. } = &mut machine.connection {
        for (k, v) in options {
            o.insert((*k).into(), (*v).into());
        }
    }
    Ok(serde_json::to_string(&machine)?)
}

/// A tree whose only test says where its work dir is, then sleeps; with
/// `in_prepare`, its plan's prepare phase does that instead (the run is
/// then interrupted while the plan is being set up).
fn sleeper(in_prepare: bool) -> Result<(Fixture, Vec<serde_json::Value>)> {
    let tree = Fixture::fmf_tree(&[(
        "tests/sleep/main.fmf",
        // Renamed into place: the marker is never seen half written.
        "test: dirname \"$TMT_TREE\" > \"$SHARED/w\"; mv \"$SHARED/w\" \"$SHARED/workdir\"; \
         echo started; sleep 30\n",
    )])?;
    let mut records = exec::discover(&tree.path())?;
    if in_prepare {
        records[0]["plan"]["prepare"] = serde_json::json!([{
            "how": "shell",
            "script": "dirname \"$TMT_PLAN_ENVIRONMENT_FILE\" > \"$SHARED/w\"; \
                       mv \"$SHARED/w\" \"$SHARED/workdir\"; sleep 30",
        }]);
    }
    Ok((tree, records))
}

/// An interrupt over ssh, during a test or during the plan's setup: the
/// work dir of that run is removed, each started test has one record,
/// stderr has the one line that says what happened (issue 10 item 9).
fn interrupt_over_ssh(signal: &str, code: i32, in_prepare: bool) -> Result<()> {
    let pool = SshdPool::start(1)?;
    let machine = machine_json(&pool, &[])?;
    let (_tree, records) = sleeper(in_prepare)?;
    let mut exec = exec::Exec::start(&machine, Fixture::new()?, &records)?;
    let marker = exec.shared().join("workdir");
    exec.wait_for(&marker, Duration::from_secs(60))?;
    let work_dir = std::fs::read_to_string(&marker)?.trim().to_owned();
    assert!(work_dir.contains("/atex-"), "{work_dir}");
    assert!(std::path::Path::new(&work_dir).is_dir(), "{work_dir}");
    // The test or the phase is past writing the marker: in its sleep.
    std::thread::sleep(Duration::from_millis(300));
    exec.signal(signal)?;
    let (got, results, stderr) = exec.finish(Duration::from_secs(30))?;
    assert_eq!(got, Some(code), "{stderr}");
    assert!(
        !std::path::Path::new(&work_dir).exists(),
        "the work dir {work_dir} is left; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    if in_prepare {
        assert!(results.is_empty(), "no test started: {results:?}");
        assert_eq!(
            lines,
            [format!(
                "atex-exec: interrupted (SIG{signal}): no test was running, 1 test not run; \
                 cleaned up"
            )],
        );
    } else {
        assert_eq!(results.len(), 1, "{results:?}");
        assert_eq!(results[0].status.as_deref(), Some("infra"));
        let note = format!("Interrupted(SIG{signal})");
        assert_eq!(results[0].note.as_deref(), Some(note.as_str()));
        assert_eq!(
            lines,
            [format!(
                "atex-exec: interrupted (SIG{signal}): test /tests/sleep stopped and recorded \
                 as infra, 0 tests not run; cleaned up"
            )],
        );
    }
    Ok(())
}

#[test]
fn sigint_during_a_test_over_ssh_removes_the_work_dir() -> Result<()> {
    interrupt_over_ssh("INT", 130, false)
}

#[test]
fn sigterm_during_a_test_over_ssh_removes_the_work_dir() -> Result<()> {
    interrupt_over_ssh("TERM", 143, false)
}

#[test]
fn sigint_during_the_plan_setup_over_ssh_removes_the_work_dir() -> Result<()> {
    interrupt_over_ssh("INT", 130, true)
}

#[test]
fn sigterm_during_the_plan_setup_over_ssh_removes_the_work_dir() -> Result<()> {
    interrupt_over_ssh("TERM", 143, true)
}

/// A machine that freezes during a test (its sshd stopped with SIGSTOP)
/// is noticed within the record's keepalive bound: the test becomes
/// `infra` naming the lost connection (issue 10 item 15). A SIGINT while
/// atex-exec then tries to reconnect to the frozen machine ends it at once.
#[test]
fn a_frozen_machine_is_noticed_within_the_keepalive_bound() -> Result<()> {
    let mut pool = SshdPool::start(1)?;
    // 1 s x (2 + 1) = 3 s.
    let options = [("ServerAliveInterval", "1"), ("ServerAliveCountMax", "2")];
    let machine = machine_json(&pool, &options)?;
    let (_tree, records) = sleeper(false)?;
    let mut exec = exec::Exec::start(&machine, Fixture::new()?, &records)?;
    exec.wait_for(&exec.shared().join("workdir"), Duration::from_secs(60))?;
    let listener = pool.servers_mut()[0].pid().context("sshd pid")?;
    let frozen = Frozen::freeze(listener)?;
    let at = Instant::now();
    let record = exec.next_record(Duration::from_secs(30))?;
    let (when, result) = record.context("no record within 30 s of the freeze")?;
    let noticed = when - at;
    assert!(
        noticed < Duration::from_secs(10),
        "noticed after {noticed:?}"
    );
    assert_eq!(result.status.as_deref(), Some("infra"), "{result:?}");
    let note = result.note.unwrap_or_default();
    eprintln!("noticed after {noticed:?}: {note}");
    assert!(note.contains("connection"), "{note}");
    assert!(
        note.contains("lost") || note.contains("not responding"),
        "{note}"
    );
    // atex-exec now waits for the frozen machine to reconnect.
    std::thread::sleep(Duration::from_secs(1));
    exec.signal("INT")?;
    let at = Instant::now();
    let (code, _, stderr) = exec.finish(Duration::from_secs(30))?;
    let took = at.elapsed();
    drop(frozen);
    eprintln!("SIGINT took {took:?}: {stderr}");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "SIGINT took {took:?}: {stderr}"
    );
    Ok(())
}

/// SIGINT while the machine is frozen (default keepalives: not noticed
/// yet) ends atex-exec within a few seconds with exit 130, the test
/// recorded as interrupted; a `second` signal soon after ends the wait for
/// the machine at once (issue 10 item 15).
fn interrupt_with_a_frozen_machine(second: Option<&str>) -> Result<Duration> {
    let mut pool = SshdPool::start(1)?;
    let machine = machine_json(&pool, &[])?;
    let (_tree, records) = sleeper(false)?;
    let mut exec = exec::Exec::start(&machine, Fixture::new()?, &records)?;
    exec.wait_for(&exec.shared().join("workdir"), Duration::from_secs(60))?;
    let listener = pool.servers_mut()[0].pid().context("sshd pid")?;
    let frozen = Frozen::freeze(listener)?;
    std::thread::sleep(Duration::from_secs(1));
    exec.signal("INT")?;
    let at = Instant::now();
    if let Some(second) = second {
        std::thread::sleep(Duration::from_millis(300));
        exec.signal(second)?;
    }
    let (code, results, stderr) = exec.finish(Duration::from_secs(60))?;
    let took = at.elapsed();
    drop(frozen);
    eprintln!("SIGINT took {took:?}: {stderr}");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "SIGINT took {took:?}: {stderr}"
    );
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].note.as_deref(), Some("Interrupted(SIGINT)"));
    assert_eq!(
        stderr.lines().last(),
        Some(
            "atex-exec: interrupted (SIGINT): test /tests/sleep stopped and recorded as infra, \
             0 tests not run"
        ),
        "{stderr}"
    );
    let skipped = match second {
        None => "the machine did not answer within 5 s".to_owned(),
        Some(second) => format!("a second signal (SIG{second}) came"),
    };
    assert!(stderr.contains(&skipped), "{stderr}");
    Ok(took)
}

#[test]
fn sigint_with_a_frozen_machine_ends_within_seconds() -> Result<()> {
    interrupt_with_a_frozen_machine(None)?;
    Ok(())
}

#[test]
fn a_second_signal_with_a_frozen_machine_ends_at_once() -> Result<()> {
    let took = interrupt_with_a_frozen_machine(Some("TERM"))?;
    // Without it the wait for the machine lasts 5 s.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    Ok(())
}
