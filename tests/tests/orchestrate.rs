//! atex-orchestrate on real loopback sshd machines through
//! `--provision 'ssh ...'`: tests spread over the hosts, and a rerun on a
//! single host (given again after its release) still ends.

use anyhow::Result;
use atex_shared::records::TestResult;
use atex_tests::sshd::{SshdPool, TEST_USER};
use atex_tests::{Fixture, run};

/// Test records for a tree at `root`: `/t1` … `/tN` running `script`.
fn tests(root: &std::path::Path, n: usize, script: &str) -> String {
    (1..=n)
        .map(|i| {
            let record = serde_json::json!({
                "name": format!("/t{i}"), "root": root, "path": "", "test": script,
            });
            format!("{record}\n")
        })
        .collect()
}

/// The `--provision` spec for the servers of `pool`.
fn spec(pool: &SshdPool) -> String {
    let mut spec = "ssh".to_owned();
    for machine in pool.machines() {
        if let atex_shared::records::Connection::Ssh { port, .. } = machine.connection {
            spec.push_str(&format!(" {TEST_USER}@127.0.0.1:{port}"));
        }
    }
    spec.push_str(&format!(" -i '{}'", pool.client_key().display()));
    spec
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
            spec(&pool).as_ref(),
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
            spec(&pool).as_ref(),
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
