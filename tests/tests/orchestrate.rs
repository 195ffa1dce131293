//! atex-orchestrate on real machines: loopback sshd hosts through
//! `--provision 'ssh ...'` and podman containers, checked from the result
//! records, the store, and the run's timeline (which session of which
//! machine ran each attempt, from when to when: the stamped event lines of
//! [`atex_tests::timeline`], and the marks the test scripts print with
//! `date +%s.%N`, the same clock on a loopback machine).

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use atex_shared::records::{Connection, TestResult};
use atex_tests::procs::{adopt_orphans, assert_no_leftover_processes, descendants, own_processes};
use atex_tests::sshd::{SshdPool, TEST_USER};
use atex_tests::timeline::{Finished, Orchestrate, mark, marks};
use atex_tests::{Fixture, run};
use serde_json::{Value, json};

/// How long a run may take before the test fails.
const WAIT: Duration = Duration::from_secs(120);

/// The most a machine may stay idle between two tests while tests wait:
/// the end of one test's script to the start of the next one's on the
/// same machine (result, artifacts, the next test's wrapper over ssh).
/// Measured at about 0.15 s alone and under 0.3 s with the other tests of
/// this file running at once on 2 cores.
const DISPATCH: f64 = 0.5;

/// How far a test's own clock may run ahead of its events: an event is
/// stamped when this harness reads the orchestrator's line, and a test the
/// runner spawns at once (decision 40) can write its first mark before
/// that read.
const STAMP_LAG: f64 = 0.05;

/// One Test record line: `/NAME` in the tree at `root` running `script`,
/// with the keys of `extra` added.
fn record(root: &Path, name: &str, script: &str, extra: Value) -> String {
    let mut record = json!({ "name": name, "root": root, "path": "", "test": script });
    if let (Value::Object(record), Value::Object(extra)) = (&mut record, extra) {
        record.extend(extra);
    }
    format!("{record}\n")
}

/// Test records for a tree at `root`: `/t1` … `/tN` running `script`.
fn tests(root: &Path, n: usize, script: &str) -> String {
    (1..=n)
        .map(|i| record(root, &format!("/t{i}"), script, json!({})))
        .collect()
}

/// The `--provision` spec for the servers of `pool`, `extra` appended.
fn spec(pool: &SshdPool, extra: &str) -> String {
    let mut spec = "ssh".to_owned();
    for machine in pool.machines() {
        if let Connection::Ssh { port, .. } = machine.connection {
            spec.push_str(&format!(" {TEST_USER}@127.0.0.1:{port}"));
        }
    }
    spec.push_str(&format!(" -i '{}' {extra}", pool.client_key().display()));
    spec
}

/// Run atex-orchestrate on `input` with `args` and `--artifacts` in
/// `work`, to its end.
fn orchestrate(work: &Fixture, args: &[&str], input: &str) -> Result<Finished> {
    let artifacts = work.path().join("artifacts");
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend(["--artifacts".as_ref(), artifacts.as_os_str()]);
    Orchestrate::start(&all, &[], input.as_bytes())?.finish(WAIT)
}

/// The result of `test`'s attempt `attempt`.
fn result<'a>(results: &'a [TestResult], test: &str, attempt: u32) -> Result<&'a TestResult> {
    results
        .iter()
        .find(|r| r.test == test && r.attempt == attempt)
        .with_context(|| format!("no result of {test}, attempt {attempt}"))
}

#[test]
fn tests_spread_over_two_ssh_hosts() -> Result<()> {
    let pool = SshdPool::start(2)?;
    let work = Fixture::new()?;
    let input = tests(&work.path(), 4, "echo on $(hostname)");
    let artifacts = work.path().join("artifacts");
    let out = run(
        "atex-orchestrate",
        [
            "--provision".as_ref(),
            spec(&pool, "").as_ref(),
            "--artifacts".as_ref(),
            artifacts.as_os_str(),
        ],
        Some(input.as_bytes()),
    )?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let results: Vec<TestResult> = out.records()?;
    let mut names: Vec<&str> = results.iter().map(|r| r.test.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["/t1", "/t2", "/t3", "/t4"], "{}", out.stderr);
    let mut machines: Vec<&str> = results.iter().map(|r| r.machine.as_str()).collect();
    machines.sort_unstable();
    machines.dedup();
    assert_eq!(machines.len(), 2, "{}", out.stderr);
    Ok(())
}

#[test]
fn a_rerun_on_a_single_ssh_host_ends() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let work = Fixture::new()?;
    // Fails on its first run: the rerun cannot go to another host, so it
    // runs on the same one, given again in a new session.
    let input = tests(&work.path(), 1, "exit $((1 - ATEX_ATTEMPT))");
    let artifacts = work.path().join("artifacts");
    let out = run(
        "atex-orchestrate",
        [
            "--provision".as_ref(),
            spec(&pool, "").as_ref(),
            "--reruns".as_ref(),
            "1".as_ref(),
            "--artifacts".as_ref(),
            artifacts.as_os_str(),
        ],
        Some(input.as_bytes()),
    )?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let results: Vec<TestResult> = out.records()?;
    let rows: Vec<(Option<&str>, u32)> = results
        .iter()
        .map(|r| (r.status.as_deref(), r.attempt))
        .collect();
    assert_eq!(
        rows,
        [(Some("fail"), 0), (Some("pass"), 1)],
        "{}",
        out.stderr
    );
    assert_eq!(results[0].machine, results[1].machine);
    Ok(())
}

/// 12 tests of 0.2 to 2 s on 3 machines: every test runs once and passes,
/// each machine runs its tests one after the other, and none is idle
/// while a test waits: from its setup to its first test, between two of
/// its tests, and from its last test's end to the last test's start
/// anywhere, at most [`DISPATCH`].
#[test]
fn three_machines_stay_busy_while_tests_wait() -> Result<()> {
    let pool = SshdPool::start(3)?;
    let work = Fixture::new()?;
    let sleeps = [0.6, 2.0, 0.2, 1.2, 0.4, 1.5, 0.3, 1.8, 0.5, 1.0, 0.2, 0.8];
    let input: String = sleeps
        .iter()
        .enumerate()
        .map(|(i, sleep)| {
            let script = format!("{}; sleep {sleep}; {}", mark("start"), mark("end"));
            record(&work.path(), &format!("/t{i:02}"), &script, json!({}))
        })
        .collect();
    let done = orchestrate(&work, &["--provision", &spec(&pool, "")], &input)?;
    let err = done.stderr();
    ensure!(done.code == Some(0), "exit {:?}: {err}", done.code);
    let results = done.results()?;
    ensure!(results.len() == 12, "{} results: {err}", results.len());
    let timeline = done.timeline();
    ensure!(timeline.sessions.len() == 3, "3 sessions: {timeline:#?}");
    let mut hosts: Vec<&str> = timeline
        .sessions
        .iter()
        .map(|s| s.machine.as_str())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    ensure!(hosts.len() == 3, "3 machines: {timeline:#?}");
    // Per session, the scripts' (start, end), checked against the events.
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); 3];
    for (i, _) in sleeps.iter().enumerate() {
        let name = format!("/t{i:02}");
        let r = result(&results, &name, 0)?;
        ensure!(r.status.as_deref() == Some("pass"), "{r:?}");
        let attempt = timeline
            .attempt(&name, 0)
            .with_context(|| format!("{name} is not in the timeline: {err}"))?;
        ensure!(attempt.machine == r.machine, "{attempt:?} vs {r:?}");
        let got = marks(r)?;
        let (Some(start), Some(end)) = (
            got.iter().find(|m| m.0 == "start"),
            got.iter().find(|m| m.0 == "end"),
        ) else {
            anyhow::bail!("{name}: marks {got:?}");
        };
        let ended = attempt.ended.as_ref().map_or(f64::MAX, |e| e.0);
        ensure!(
            attempt.started - STAMP_LAG <= start.1 && end.1 <= ended,
            "{name}'s script ran from {} to {} outside its events {attempt:?}",
            start.1,
            end.1
        );
        runs[attempt.session].push((start.1, end.1));
    }
    let last_start = runs
        .iter()
        .flatten()
        .map(|run| run.0)
        .fold(f64::MIN, f64::max);
    let mut worst = 0.0f64;
    for (session, mut ran) in runs.into_iter().enumerate() {
        ran.sort_by(|a, b| a.0.total_cmp(&b.0));
        ensure!(!ran.is_empty(), "session {session} ran nothing: {err}");
        let ready = timeline.sessions[session].ready;
        let mut idle = vec![ran[0].0 - ready];
        for pair in ran.windows(2) {
            ensure!(
                pair[1].0 >= pair[0].1,
                "two tests at once in session {session}: {ran:?}"
            );
            idle.push(pair[1].0 - pair[0].1);
        }
        let free = ran.last().map_or(0.0, |last| last.1);
        idle.push((last_start - free).max(0.0));
        let most = idle.iter().copied().fold(0.0, f64::max);
        worst = worst.max(most);
        ensure!(
            most <= DISPATCH,
            "session {session} idle {most:.3} s while tests waited ({idle:?}): {err}"
        );
    }
    eprintln!("most idle time of a machine while tests waited: {worst:.3} s");
    Ok(())
}

/// A test that fails once, `--reruns 1`, on a pool of 2 hosts: the
/// failure (exit 1) destroys its machine, and the rerun runs on the other
/// host in a session set up after the failure, as its first test.
#[test]
fn a_rerun_lands_on_a_fresh_machine() -> Result<()> {
    let pool = SshdPool::start(2)?;
    let work = Fixture::new()?;
    let input = record(
        &work.path(),
        "/flaky",
        "exit $((1 - ATEX_ATTEMPT))",
        json!({}),
    );
    let args = ["--provision", &spec(&pool, ""), "--reruns", "1"];
    let done = orchestrate(&work, &args, &input)?;
    let err = done.stderr();
    ensure!(done.code == Some(0), "exit {:?}: {err}", done.code);
    let results = done.results()?;
    let rows: Vec<(&str, Option<&str>, u32)> = results
        .iter()
        .map(|r| (r.test.as_str(), r.status.as_deref(), r.attempt))
        .collect();
    ensure!(
        rows == [("/flaky", Some("fail"), 0), ("/flaky", Some("pass"), 1)],
        "{rows:?}: {err}"
    );
    ensure!(results[0].machine != results[1].machine, "{err}");
    let timeline = done.timeline();
    let (Some(failed), Some(rerun)) =
        (timeline.attempt("/flaky", 0), timeline.attempt("/flaky", 1))
    else {
        anyhow::bail!("attempts missing: {timeline:#?}");
    };
    ensure!(failed.session != rerun.session, "{timeline:#?}");
    let old = &timeline.sessions[failed.session];
    let fresh = &timeline.sessions[rerun.session];
    ensure!(
        old.destroyed
            .as_deref()
            .is_some_and(|why| why.contains("exited 1")),
        "{timeline:#?}"
    );
    let failed_at = failed.ended.as_ref().map_or(f64::MAX, |e| e.0);
    ensure!(
        fresh.ready > failed_at,
        "set up after the failure: {timeline:#?}"
    );
    ensure!(
        timeline.in_session(rerun.session).len() == 1,
        "{timeline:#?}"
    );
    ensure!(
        err.contains("1 passed, 0 failed, 0 infra, 1 flaky"),
        "{err}"
    );
    Ok(())
}

/// A `destructive` test on a pool of 2 hosts used one at a time
/// (`--count 1`): it passes, yet its machine is destroyed and released,
/// and the next test runs on the other host, set up after the release.
#[test]
fn a_destructive_test_s_machine_is_replaced() -> Result<()> {
    let pool = SshdPool::start(2)?;
    let work = Fixture::new()?;
    let input = [
        record(
            &work.path(),
            "/destroys",
            "true",
            json!({"duration": 600, "tag": ["destructive"]}),
        ),
        record(&work.path(), "/next", "true", json!({})),
    ]
    .concat();
    let done = orchestrate(&work, &["--provision", &spec(&pool, "--count 1")], &input)?;
    let err = done.stderr();
    ensure!(done.code == Some(0), "exit {:?}: {err}", done.code);
    let results = done.results()?;
    ensure!(
        results.iter().all(|r| r.status.as_deref() == Some("pass")) && results.len() == 2,
        "{results:?}"
    );
    ensure!(
        result(&results, "/destroys", 0)?.machine != result(&results, "/next", 0)?.machine,
        "{err}"
    );
    let timeline = done.timeline();
    let (Some(destroys), Some(next)) = (
        timeline.attempt("/destroys", 0),
        timeline.attempt("/next", 0),
    ) else {
        anyhow::bail!("attempts missing: {timeline:#?}");
    };
    let old = &timeline.sessions[destroys.session];
    let new = &timeline.sessions[next.session];
    ensure!(
        old.destroyed.as_deref() == Some("the test is destructive"),
        "{timeline:#?}"
    );
    let released = old.released.context("the destroyed machine was released")?;
    ensure!(
        new.ready > released,
        "replaced after the release: {timeline:#?}"
    );
    ensure!(
        timeline.in_session(destroys.session).len() == 1,
        "{timeline:#?}"
    );
    Ok(())
}

/// A directory any user may write to: the test scripts run as
/// [`TEST_USER`] on the loopback machines and leave marks there.
fn shared_dir() -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("atex-orchestrate-")
        .tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
    Ok(dir)
}

/// The machine of a test dies mid-test (its sshd stopped by pid, and the
/// sessions it served killed): the test ends `infra`, its machine is
/// destroyed, its rerun passes on another machine, and every other test
/// still runs: all 7 tests end with a passing final attempt.
#[test]
fn a_machine_killed_mid_test_is_replaced_and_its_test_rerun_elsewhere() -> Result<()> {
    let mut pool = SshdPool::start(3)?;
    let work = Fixture::new()?;
    let marks = shared_dir()?;
    let running = marks.path().join("victim");
    let victim = format!(
        "if [ \"$ATEX_ATTEMPT\" = 0 ]; then touch '{}'; sleep 60; fi",
        running.display()
    );
    let mut input = record(&work.path(), "/victim", &victim, json!({"duration": 600}));
    input.push_str(&tests(&work.path(), 6, "sleep 0.5"));
    let artifacts = work.path().join("artifacts");
    let provision = spec(&pool, "");
    let args: [&OsStr; 6] = [
        "--provision".as_ref(),
        provision.as_ref(),
        "--reruns".as_ref(),
        "1".as_ref(),
        "--artifacts".as_ref(),
        artifacts.as_os_str(),
    ];
    let orchestrate = Orchestrate::start(&args, &[], input.as_bytes())?;
    let started = orchestrate.wait_for("/victim started", 1, WAIT)?;
    let machine = started[0]
        .text
        .split(": ")
        .nth(1)
        .context("the machine of the started line")?
        .to_owned();
    let port: u16 = machine
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("the port of {machine}"))?;
    let until = std::time::Instant::now() + WAIT;
    while !running.exists() {
        ensure!(std::time::Instant::now() < until, "/victim never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = pool
        .servers_mut()
        .iter_mut()
        .find(|s| s.port() == port)
        .with_context(|| format!("no server on port {port}"))?;
    let sessions = descendants(server.pid().context("the sshd's pid")?);
    ensure!(!sessions.is_empty(), "the sshd serves no session");
    // No new connection first, then the open ones go, as when the
    // machine dies.
    server.stop();
    for pid in sessions {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let done = orchestrate.finish(WAIT)?;
    let err = done.stderr();
    ensure!(done.code == Some(0), "exit {:?}: {err}", done.code);
    let results = done.results()?;
    let killed = result(&results, "/victim", 0)?;
    ensure!(
        killed.status.as_deref() == Some("infra") && killed.machine == machine,
        "{killed:?}"
    );
    let rerun = result(&results, "/victim", 1)?;
    ensure!(
        rerun.status.as_deref() == Some("pass") && rerun.machine != machine,
        "{rerun:?}: {err}"
    );
    for i in 1..=6 {
        let r = result(&results, &format!("/t{i}"), 0)?;
        ensure!(r.status.as_deref() == Some("pass"), "{r:?}: {err}");
    }
    ensure!(results.len() == 8, "{} results: {err}", results.len());
    let timeline = done.timeline();
    let lost = timeline
        .attempt("/victim", 0)
        .context("the killed attempt in the timeline")?;
    let session = &timeline.sessions[lost.session];
    ensure!(
        session.destroyed.is_some() && session.released.is_some(),
        "the dead machine is destroyed and released: {timeline:#?}"
    );
    ensure!(
        timeline.sessions.iter().all(|s| s.released.is_some()),
        "every machine released: {timeline:#?}"
    );
    ensure!(
        err.contains("7 passed, 0 failed, 0 infra, 1 flaky"),
        "{err}"
    );
    Ok(())
}

/// A ProxyCommand for the hosts (`-o 'ProxyCommand=PROXY %p'`) that
/// counts the connections made through it in `<dir>/count` and refuses
/// the odd ones up to the number in `<dir>/refuse`. The orchestrator hands
/// a host out the first time unchecked, its session's connection being
/// the check (1: refused, a failed setup); given again, the host's
/// reachability check (even) gets through and the session (odd) then
/// cannot connect, as when a host goes away between the two. The others
/// are relayed to 127.0.0.1:%p.
const PROXY: &str = r#"#!/bin/bash
dir=$(dirname "$0")
n=$(( $(cat "$dir/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$dir/count"
if [ $((n % 2)) = 1 ] && [ "$n" -le "$(cat "$dir/refuse")" ]; then
  echo "proxy: connection $n refused" >&2
  exit 1
fi
exec 3<>"/dev/tcp/127.0.0.1/$1"
cat <&3 &
cat >&3
kill "$!" 2>/dev/null
"#;

/// Run 2 tests on one host whose sessions cannot connect up to the
/// `refuse`-th connection (see [`PROXY`]), with `--max-failed-setups 1`.
fn with_failing_setups(refuse: u32) -> Result<Finished> {
    let pool = SshdPool::start(1)?;
    let work = Fixture::new()?;
    let proxy = work.write("proxy/proxy.sh", PROXY)?;
    work.write("proxy/refuse", &refuse.to_string())?;
    let provision = spec(
        &pool,
        &format!("-o 'ProxyCommand={} %p' --retries 0", proxy.display()),
    );
    let input = tests(&work.path(), 2, "true");
    let args = ["--provision", &provision, "--max-failed-setups", "1"];
    orchestrate(&work, &args, &input)
}

/// A machine whose setup fails is released and replaced (the replacement
/// runs the tests); when the replacement's setup fails too, that is one
/// failure past `--max-failed-setups 1`: the run stops, exit 3, "setup
/// failed 2 times", the tests not run.
#[test]
fn a_failed_setup_is_replaced_until_the_limit_stops_the_run() -> Result<()> {
    adopt_orphans()?;
    let own = own_processes()?;
    let done = with_failing_setups(1)?;
    let err = done.stderr();
    ensure!(done.code == Some(0), "exit {:?}: {err}", done.code);
    let timeline = done.timeline();
    ensure!(timeline.setup_failed.len() == 1, "{err}");
    ensure!(
        timeline.sessions.len() == 1 && timeline.in_session(0).len() == 2,
        "the replacement runs both tests: {timeline:#?}"
    );
    ensure!(err.contains("2 passed, 0 failed, 0 infra"), "{err}");

    let done = with_failing_setups(u32::MAX)?;
    let err = done.stderr();
    ensure!(done.code == Some(3), "exit {:?}: {err}", done.code);
    ensure!(done.stdout.is_empty(), "no test ran: {err}");
    let timeline = done.timeline();
    ensure!(
        timeline.setup_failed.len() == 2 && timeline.sessions.is_empty(),
        "{timeline:#?}"
    );
    let released = err.matches(": machine released").count();
    ensure!(released == 2, "each failed machine released: {err}");
    ensure!(
        err.contains("error: stopping: setup failed 2 times: broken infrastructure?"),
        "{err}"
    );
    ensure!(
        err.contains("2 not run (stopped: setup failed 2 times: broken infrastructure?)"),
        "{err}"
    );
    // Nor do the relays of the proxy stay.
    assert_no_leftover_processes(&own)
}

/// SIGTERM while 3 podman containers (reached over ssh, `--ssh`) run 3 of
/// 6 tests: exit 143; the 3 running tests end `infra`, printed and stored;
/// the other 3 are counted not run; 0 containers with the test's label,
/// no ssh master and no other process left; `atex-aggregate summary`
/// reads the store.
#[test]
fn sigterm_on_a_podman_pool_leaves_nothing_and_a_readable_store() -> Result<()> {
    adopt_orphans()?;
    let podman = atex_tests::podman::Labeled::new("orchestrate")?;
    let own = own_processes()?;
    let work = Fixture::new()?;
    // The scripts mark their start in a directory mounted from the host.
    let marks = shared_dir()?;
    let script = "touch \"/marks/${TMT_TEST_NAME#/}\"; sleep 60";
    let input = (1..=6)
        .map(|i| {
            record(
                &work.path(),
                &format!("/t{i}"),
                script,
                json!({"duration": 600}),
            )
        })
        .collect::<String>();
    let provision = format!(
        "podman --rootfs /:O --ssh --max 3 '--run-option=--label={}' '--run-option=--volume={}:/marks'",
        podman.label(),
        marks.path().display()
    );
    let artifacts = work.path().join("artifacts");
    let store = work.path().join("store");
    let args: [&OsStr; 6] = [
        "--provision".as_ref(),
        provision.as_ref(),
        "--artifacts".as_ref(),
        artifacts.as_os_str(),
        "--output".as_ref(),
        store.as_os_str(),
    ];
    let conf = podman.conf();
    let orchestrate = Orchestrate::start(
        &args,
        &[("CONTAINERS_CONF", conf.as_os_str())],
        input.as_bytes(),
    )?;
    let until = std::time::Instant::now() + WAIT;
    while std::fs::read_dir(marks.path())?.count() < 3 {
        ensure!(std::time::Instant::now() < until, "3 tests never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    ensure!(
        podman.containers()?.len() == 3,
        "3 containers while running"
    );
    orchestrate.signal(rustix::process::Signal::TERM)?;
    let done = orchestrate.finish(WAIT)?;
    let err = done.stderr();
    ensure!(done.code == Some(143), "exit {:?}: {err}", done.code);
    let results = done.results()?;
    ensure!(
        results.len() == 3 && results.iter().all(|r| r.status.as_deref() == Some("infra")),
        "{results:?}: {err}"
    );
    ensure!(err.contains("3 not run"), "{err}");
    let left = podman.containers()?;
    ensure!(left.is_empty(), "containers left: {left:?}");
    assert_no_leftover_processes(&own)?;

    let summary = run(
        "atex-aggregate",
        ["summary".as_ref(), store.as_os_str()],
        None,
    )?;
    ensure!(summary.code == Some(3), "summary: {summary:?}");
    let text = summary.stdout_text();
    ensure!(text.contains("infra"), "summary: {text}");
    ensure!(summary.stderr.is_empty(), "summary warned: {summary:?}");
    Ok(())
}
