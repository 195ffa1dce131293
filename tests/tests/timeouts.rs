//! A test stopped at the end of its `duration` keeps ATEX's `infra`
//! status and note, and `atex-aggregate summary` names it a timeout
//! (issue 15): real atex-exec on the local machine, piped into real
//! atex-aggregate.

use anyhow::{Result, ensure};
use atex_tests::{Fixture, bin_path, exec_into_store};

#[test]
fn summary_names_a_timeout_as_one() -> Result<()> {
    let work = Fixture::new()?;
    let tests = [
        serde_json::json!({"name": "/slow", "root": work.path(), "path": "", "test": "sleep 30", "duration": 1}),
        serde_json::json!({"name": "/lost", "root": work.path(), "path": "", "test": "true"}),
    ];
    let lines: String = tests.iter().map(|t| format!("{t}\n")).collect();
    work.write("tests.jsonl", &lines)?;
    let code = exec_into_store(&work.path())?;
    ensure!(code == Some(3), "pipeline: exit {code:?}");
    let summary = std::process::Command::new(bin_path("atex-aggregate")?)
        .args(["summary", "store"])
        .current_dir(work.path())
        .output()?;
    let text = String::from_utf8_lossy(&summary.stdout);
    ensure!(summary.status.code() == Some(3), "{text}");
    ensure!(
        text.contains("2 results: 1 infra (1 timed out), 1 pass"),
        "{text}"
    );
    ensure!(
        text.contains("timeout  /slow: TestAbortedError(test duration timeout reached)"),
        "{text}"
    );
    let stored = std::fs::read_to_string(work.path().join("store/results.jsonl"))?;
    ensure!(
        stored.contains("\"infra\""),
        "the status stays infra: {stored}"
    );
    Ok(())
}
