//! The tmt helpers (`tmt-report-result`, `tmt-file-submit`, `tmt-abort` and
//! their aliases) used by real tests run through `atex-discover tests |
//! atex-exec`, on a loopback sshd machine (non-root login) and on the local
//! machine.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use atex_shared::records::TestResult;
use atex_tests::Fixture;
use atex_tests::pipe;
use atex_tests::sshd::SshdPool;

/// Every process here is bounded by this.
const DEADLINE: Duration = Duration::from_secs(120);

const LOCAL_MACHINE: &str = r#"{"id":"local","provisioner":"local","connection":{"kind":"local"}}"#;

/// Tests that use each helper.
fn fixture_tree() -> Result<Fixture> {
    Fixture::fmf_tree(&[
        (
            "tests/report/main.fmf",
            concat!(
                "test: |\n",
                "  tmt-report-result /sub PASS\n",
                "  echo sub2 log > log.txt\n",
                "  tmt-report-result -o log.txt -t 'it \"broke\"' sub2 FAIL\n",
                "  rstrnt-report-result alias: WARN 3\n",
                "  echo reported\n",
            ),
        ),
        (
            "tests/submit/main.fmf",
            concat!(
                "test: |\n",
                "  printf 'one\\ntwo\\n' > data.log\n",
                "  tmt-file-submit -l data.log\n",
                "  rhts-submit-log extra.log\n",
            ),
        ),
        ("tests/submit/extra.log", "extra\n"),
        (
            "tests/parallel/main.fmf",
            concat!(
                "test: |\n",
                "  for i in $(seq 1 20); do\n",
                "    echo \"log $i\" > \"l$i\"\n",
                // Large enough that unlocked writes would interleave.
                "    head -c 65536 /dev/zero | tr '\\0' x >> \"l$i\"\n",
                "    tmt-report-result -o \"l$i\" \"p/$i\" pass &\n",
                "  done\n",
                "  wait\n",
            ),
        ),
        (
            "tests/abort/main.fmf",
            concat!(
                "test: |\n",
                "  echo before\n",
                "  sleep 60 &\n",
                "  tmt-abort\n",
                "  echo after\n",
            ),
        ),
        (
            "tests/outside/main.fmf",
            concat!(
                "test: |\n",
                "  out=$(env -u ATEX_TEST_CONTROL tmt-report-result x PASS 2>&1) && exit 3\n",
                "  [[ $? == 1 ]] || exit 4\n",
                "  echo \"$out\"\n",
                "  [[ $out == 'tmt-report-result: not running inside an atex test' ]]\n",
            ),
        ),
    ])
}

fn check(code: Option<i32>, results: &[TestResult], stderr: &str) -> Result<()> {
    let of =
        |test: &str| -> Vec<&TestResult> { results.iter().filter(|r| r.test == test).collect() };
    let summary = |test: &str| -> Vec<(Option<&str>, &str)> {
        of(test)
            .iter()
            .map(|r| (r.name.as_deref(), r.status.as_deref().unwrap_or("")))
            .collect()
    };
    // Failing subresults and the abort make the run fail, not break it.
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(
        !results.iter().any(|r| r.status.as_deref() == Some("infra")),
        "no protocol error: {results:?}\nstderr: {stderr}"
    );

    assert_eq!(
        summary("/tests/report"),
        [
            (Some("sub"), "pass"),
            (Some("sub2"), "fail"),
            (Some("alias"), "warn"),
            (None, "pass"),
        ],
        "stderr: {stderr}"
    );
    let report = of("/tests/report");
    assert_eq!(report[1].note.as_deref(), Some("it \"broke\""));
    assert_eq!(report[1].files, ["log.txt"]);
    let log = report[1].artifacts.join("files/sub2/log.txt");
    assert_eq!(std::fs::read_to_string(&log)?, "sub2 log\n");
    assert_eq!(report[2].extra.get("score"), Some(&serde_json::json!(3)));
    let output = std::fs::read_to_string(report[3].artifacts.join("files/output.txt"))?;
    assert_eq!(output, "reported\n");

    let submit = of("/tests/submit");
    assert_eq!(summary("/tests/submit"), [(None, "pass")]);
    assert_eq!(submit[0].files, ["output.txt", "data.log", "extra.log"]);
    let files = submit[0].artifacts.join("files");
    assert_eq!(
        std::fs::read_to_string(files.join("data.log"))?,
        "one\ntwo\n"
    );
    assert_eq!(std::fs::read_to_string(files.join("extra.log"))?, "extra\n");

    let parallel = of("/tests/parallel");
    assert_eq!(parallel.len(), 21, "{parallel:?}");
    let names: BTreeSet<String> = parallel.iter().filter_map(|r| r.name.clone()).collect();
    let expected: BTreeSet<String> = (1..=20).map(|i| format!("p/{i}")).collect();
    assert_eq!(names, expected);
    for r in &parallel[..20] {
        let name = r.name.as_deref().context("named")?;
        let i = name.trim_start_matches("p/");
        assert_eq!(r.status.as_deref(), Some("pass"));
        let log = r.artifacts.join(format!("files/{name}/l{i}.txt"));
        let expected = format!("log {i}\n{}", "x".repeat(65536));
        assert!(
            std::fs::read_to_string(&log)? == expected,
            "{}",
            log.display()
        );
    }
    assert_eq!(parallel[20].status.as_deref(), Some("pass"));

    let abort = of("/tests/abort");
    assert_eq!(summary("/tests/abort"), [(None, "error")]);
    assert_eq!(abort[0].note.as_deref(), Some("aborted by tmt-abort"));
    assert_eq!(abort[0].exit_code, Some(143));
    let output = std::fs::read_to_string(abort[0].artifacts.join("files/output.txt"))?;
    assert_eq!(output, "before\n");

    assert_eq!(summary("/tests/outside"), [(None, "pass")]);
    Ok(())
}

/// Run the fixture tree on `machine` (a Machine record) and check it.
fn run_helpers(machine: &str) -> Result<()> {
    let tree = fixture_tree()?;
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let out = pipe::tests_on(&tree.path(), &[], machine, &artifacts, DEADLINE)?;
    assert_eq!(out.discover, Some(0));
    check(out.code, &out.results()?, &out.stderr)
}

#[test]
fn helpers_on_loopback_sshd() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let machine = pool.machines().remove(0);
    run_helpers(&serde_json::to_string(&machine)?)
}

#[test]
fn helpers_on_the_local_machine() -> Result<()> {
    run_helpers(LOCAL_MACHINE)
}
