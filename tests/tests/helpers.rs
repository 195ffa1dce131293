//! The tmt helpers (`tmt-report-result`, `tmt-file-submit`, `tmt-abort` and
//! their aliases) used by real tests run through `atex-discover tests |
//! atex-exec`, on a loopback sshd machine (non-root login) and on the local
//! machine.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atex_shared::records::TestResult;
use atex_tests::sshd::SshdPool;
use atex_tests::{Fixture, bin_path, parse_records};

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

/// Kill `child` by its pid and reap it.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

/// Wait for `child` at most until `deadline`; kill it (by pid) after that.
fn wait_bounded(child: &mut Child, deadline: Instant, what: &str) -> Result<Option<i32>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            stop(child);
            bail!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `atex-discover tests --root TREE | atex-exec --machine MACHINE
/// --artifacts DIR`: exit code, results, stderr.
fn pipeline(
    tree: &Path,
    machine: &str,
    artifacts: &Path,
) -> Result<(Option<i32>, Vec<TestResult>, String)> {
    let deadline = Instant::now() + DEADLINE;
    let mut discover = Command::new(bin_path("atex-discover")?)
        .arg("tests")
        .arg("--root")
        .arg(tree)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("start atex-discover")?;
    let records = discover.stdout.take().context("discover stdout")?;
    let exec = Command::new(bin_path("atex-exec")?)
        .arg("--machine")
        .arg(machine)
        .arg("--artifacts")
        .arg(artifacts)
        .stdin(Stdio::from(records))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut exec = match exec {
        Ok(exec) => exec,
        Err(e) => {
            stop(&mut discover);
            return Err(e).context("start atex-exec");
        }
    };
    let mut out = exec.stdout.take().context("exec stdout")?;
    let mut err = exec.stderr.take().context("exec stderr")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = err.read_to_string(&mut buf);
        buf
    });
    let discover_code = wait_bounded(&mut discover, deadline, "atex-discover")?;
    assert_eq!(discover_code, Some(0));
    let code = wait_bounded(&mut exec, deadline, "atex-exec")?;
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok((code, parse_records(&stdout, "atex-exec stdout")?, stderr))
}

fn check(code: Option<i32>, results: &[TestResult], stderr: &str) -> Result<()> {
    let of =
        |test: &str| -> Vec<&TestResult> { results.iter().filter(|r| r.test == test).collect() };
    let summary = |test: &str| -> Vec<(Option<&str>, &str)> {
        of(test)
            .iter()
            .map(|r| (r.name.as_deref(), r.status.as_str()))
            .collect()
    };
    // Failing subresults and the abort make the run fail, not break it.
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert!(
        !results.iter().any(|r| r.status == "infra"),
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
        assert_eq!(r.status, "pass");
        let log = r.artifacts.join(format!("files/{name}/l{i}.txt"));
        let expected = format!("log {i}\n{}", "x".repeat(65536));
        assert!(
            std::fs::read_to_string(&log)? == expected,
            "{}",
            log.display()
        );
    }
    assert_eq!(parallel[20].status, "pass");

    let abort = of("/tests/abort");
    assert_eq!(summary("/tests/abort"), [(None, "error")]);
    assert_eq!(abort[0].note.as_deref(), Some("aborted by tmt-abort"));
    assert_eq!(abort[0].exit_code, Some(143));
    let output = std::fs::read_to_string(abort[0].artifacts.join("files/output.txt"))?;
    assert_eq!(output, "before\n");

    assert_eq!(summary("/tests/outside"), [(None, "pass")]);
    Ok(())
}

#[test]
fn helpers_on_loopback_sshd() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let machine = pool.machines().remove(0);
    let tree = fixture_tree()?;
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let (code, results, stderr) =
        pipeline(&tree.path(), &serde_json::to_string(&machine)?, &artifacts)?;
    check(code, &results, &stderr)
}

#[test]
fn helpers_on_the_local_machine() -> Result<()> {
    let tree = fixture_tree()?;
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let (code, results, stderr) = pipeline(&tree.path(), LOCAL_MACHINE, &artifacts)?;
    check(code, &results, &stderr)
}
