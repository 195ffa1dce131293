//! `-c DIM=VALUE` on atex-provision (issue 12): the machines' fmf context
//! goes into every Machine record, every kind takes it, a bad one is exit
//! 2 before anything is reserved, and atex-exec takes such a record.

use anyhow::{Result, ensure};
use atex_shared::records::{Machine, TestResult};
use atex_tests::{Fixture, run};

#[test]
fn the_context_is_in_the_records_and_atex_exec_takes_them() -> Result<()> {
    let out = run(
        "atex-provision",
        [
            "local",
            "--count",
            "2",
            "-c",
            "distro=fedora-41",
            "--context",
            "arch=x86_64,aarch64",
        ],
        None,
    )?;
    ensure!(out.code == Some(0), "{}", out.stderr);
    let machines: Vec<Machine> = out.records()?;
    ensure!(machines.len() == 2, "{machines:?}");
    for machine in &machines {
        ensure!(
            machine.context["distro"] == ["fedora-41"]
                && machine.context["arch"] == ["x86_64", "aarch64"],
            "{machine:?}"
        );
    }

    let work = Fixture::new()?;
    let record = serde_json::to_string(&machines[0])?;
    let test = serde_json::json!({"name": "/t", "root": work.path(), "path": "", "test": "true"});
    let artifacts = work.path().join("artifacts");
    let exec = run(
        "atex-exec",
        [
            "--machine".as_ref(),
            record.as_ref(),
            "--artifacts".as_ref(),
            artifacts.as_os_str(),
        ],
        Some(format!("{test}\n").as_bytes()),
    )?;
    ensure!(exec.code == Some(0), "{}", exec.stderr);
    let results: Vec<TestResult> = exec.records()?;
    ensure!(
        results.len() == 1 && results[0].status.as_deref() == Some("pass"),
        "{results:?}"
    );
    Ok(())
}

#[test]
fn a_context_without_a_value_is_bad_input_and_nothing_is_reserved() -> Result<()> {
    let out = run("atex-provision", ["local", "-c", "distro"], None)?;
    ensure!(out.code == Some(2), "exit {:?}: {}", out.code, out.stderr);
    ensure!(out.stdout.is_empty(), "a machine was printed");
    ensure!(
        out.stderr.contains("invalid context 'distro'") && !out.stderr.contains("reserving"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn every_kind_takes_a_context() -> Result<()> {
    for kind in ["local", "ssh", "podman", "testing-farm"] {
        let out = run("atex-provision", [kind, "--help"], None)?;
        ensure!(
            out.code == Some(0) && out.stdout_text().contains("--context <DIM=VAL>"),
            "{kind}: {}",
            out.stdout_text()
        );
    }
    Ok(())
}
