//! Cross-tool tests: the real binaries on fixture trees, their stdout parsed
//! into the atex-shared record types.

use anyhow::Result;
use atex_shared::records::Test;
use atex_tests::{Fixture, run};

/// A tree with two automated tests, one disabled and one manual test, with
/// inheritance, a duration default and an adjust-free environment.
fn fixture_tree() -> Result<Fixture> {
    Fixture::fmf_tree(&[
        ("main.fmf", "environment:\n  ROOT_VAR: root\ntag: [all]\n"),
        (
            "tests/main.fmf",
            "test: ./test.sh\ntag+: [tests]\nrequire: [bash]\n",
        ),
        (
            "tests/first/main.fmf",
            "summary: first\nduration: 1m 30s\nenvironment+:\n  GREETING: hello\ncustom-key: 7\n",
        ),
        ("tests/first/test.sh", "#!/bin/bash\necho first\n"),
        (
            "tests/second/main.fmf",
            "summary: second\ntag+: [slow]\ntty: true\n",
        ),
        ("tests/second/test.sh", "#!/bin/bash\necho second\n"),
        ("tests/off/main.fmf", "enabled: false\n"),
        ("tests/by-hand/main.fmf", "manual: true\ntest: steps.md\n"),
    ])
}

#[test]
fn discover_prints_one_test_record_per_selected_test() -> Result<()> {
    let tree = fixture_tree()?;
    let root = tree.path();
    let out = run(
        "atex-discover",
        ["tests".as_ref(), "--root".as_ref(), root.as_os_str()],
        None,
    )?;
    assert_eq!(
        out.code,
        Some(0),
        "`atex-discover tests --root TREE` failed; until the discover engine \
         lands this is expected.\nstderr: {}\nstdout: {}",
        out.stderr,
        out.stdout_text()
    );
    let tests: Vec<Test> = out.records()?;
    let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["/tests/first", "/tests/second"],
        "disabled and manual tests are not selected"
    );

    let first = &tests[0];
    assert_eq!(first.root.canonicalize()?, root);
    assert_eq!(first.path, "tests/first");
    assert_eq!(first.test, "./test.sh");
    assert_eq!(first.duration, 90);
    assert_eq!(
        first.environment.get("GREETING").map(String::as_str),
        Some("hello")
    );
    assert_eq!(
        first.environment.get("ROOT_VAR").map(String::as_str),
        Some("root")
    );
    assert_eq!(first.require, [serde_json::json!("bash")]);
    assert_eq!(first.tag, ["all", "tests"]);
    assert!(!first.tty);
    assert_eq!(first.data["custom-key"], 7);

    let second = &tests[1];
    assert_eq!(second.duration, 300, "the tmt default duration is 5m");
    assert_eq!(second.tag, ["all", "tests", "slow"]);
    assert!(second.tty);
    Ok(())
}

#[test]
fn discover_rejects_a_missing_tree_with_exit_2_and_no_records() -> Result<()> {
    let dir = Fixture::new()?;
    let missing = dir.path().join("no-such-tree");
    let out = run(
        "atex-discover",
        ["tests".as_ref(), "--root".as_ref(), missing.as_os_str()],
        None,
    )?;
    assert_eq!(out.code, Some(2), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout_text());
    assert!(
        out.stderr.starts_with("atex-discover: error: "),
        "{}",
        out.stderr
    );
    Ok(())
}

/// Every tool answers `--help` (with its usage) and `--version`.
#[test]
fn every_tool_answers_help_and_version() -> Result<()> {
    for tool in [
        "atex-discover",
        "atex-exec",
        "atex-provision",
        "atex-aggregate",
        "atex-orchestrate",
    ] {
        let help = run(tool, ["--help"], None)?;
        assert_eq!(help.code, Some(0), "{tool} --help: {}", help.stderr);
        assert!(help.stdout_text().contains(&format!("Usage: {tool}")));

        let version = run(tool, ["--version"], None)?;
        assert_eq!(version.code, Some(0), "{tool} --version");
        assert!(version.stdout_text().starts_with(&format!("{tool} ")));
    }
    Ok(())
}

/// atex-orchestrate given a record that is not a test on stdin is bad input:
/// exit 2, the error located at `<stdin>:LINE:COL`, nothing on stdout and no
/// machine provisioned.
#[test]
fn orchestrate_refuses_a_record_that_is_not_a_test() -> Result<()> {
    let out = run("atex-orchestrate", ["--provision", "local"], Some(b"{}\n"))?;
    assert_eq!(out.code, Some(2), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout_text());
    assert!(
        out.stderr
            .starts_with("atex-orchestrate: error: <stdin>:1:"),
        "{}",
        out.stderr
    );
    Ok(())
}
