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
            attempt.started <= start.1 && end.1 <= ended,
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
