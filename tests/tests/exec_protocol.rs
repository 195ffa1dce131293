//! The test-control protocol, result merging, the fallback result, file
//! confinement, duration limits, the test environment and process cleanup,
//! checked end to end: one `atex-discover tests | atex-exec` run of many
//! small tests against one loopback sshd machine.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use atex_shared::records::TestResult;
use atex_tests::Fixture;
use atex_tests::pipe;
use atex_tests::sshd::SshdPool;

/// The whole pipeline is bounded by this.
const DEADLINE: Duration = Duration::from_secs(90);

/// The spec's bash helper (`LC_ALL=C` makes `${#what}` a byte count).
const REPORT: &str = "export LC_ALL=C\n\
    C=$ATEX_TEST_CONTROL\n\
    report() { local what=$1; printf 'result %d\\n%s' \"${#what}\" \"$what\" >&$C; }\n\
    blob() { printf '%b' \"$(for i in {0..255}; do printf '\\\\x%02x' $i; done)\"; }\n";

/// A file `/abs` names is stored under the test's files, never at this
/// absolute path (atex-exec may run as root).
const ABS: &str = "/tmp/atex-exec-protocol-abs-check";

/// What one test's results must be.
enum Expect {
    /// One nameless `infra` result with exactly this note and `output.txt`.
    Infra(&'static str),
    /// One nameless `infra` result whose note starts with this.
    InfraPrefix(&'static str),
    /// `(name, status, note, files)` of every result, in order.
    Results(&'static [Row]),
}

/// `(name, status, note, files)` of one result.
type Row = (
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
);

/// One test of the tree: its name under `/tests/`, extra fmf keys, its
/// bash script (after [`REPORT`]) and the expected results.
struct Case {
    name: &'static str,
    fmf: &'static str,
    script: &'static str,
    expect: Expect,
}

/// [`Row`] of a result as received.
type Got<'a> = (Option<&'a str>, &'a str, Option<&'a str>, Vec<&'a str>);

const OUT: &[&str] = &["output.txt"];

const CASES: &[Case] = &[
    // Control words.
    Case {
        name: "noop",
        fmf: "",
        script: "echo noop >&$C; echo 'noop with args' >&$C; echo done",
        expect: Expect::Results(&[(None, "pass", None, OUT)]),
    },
    Case {
        name: "exitcode",
        fmf: "",
        script: "echo failing; exit 7",
        expect: Expect::Results(&[(None, "fail", None, OUT)]),
    },
    Case {
        name: "result-files",
        fmf: "",
        script: concat!(
            "json='{\"status\": \"pass\", \"name\": \"sub/a\", \"note\": \"n\", ",
            "\"files\": [{\"name\": \"log\", \"length\": 6}, {\"name\": \"d/e\", \"length\": 2}]}'\n",
            "printf 'result %d\\n%s%s' \"${#json}\" \"$json\" $'hello\\nde' >&$C\n",
            "report '{\"status\": \"info\", \"name\": \"empty\", \"files\": [{\"name\": \"zero\", \"length\": 0}]}'\n",
        ),
        expect: Expect::Results(&[
            (Some("sub/a"), "pass", Some("n"), &["d/e", "log"]),
            (Some("empty"), "info", None, &["zero"]),
            (None, "pass", None, OUT),
        ]),
    },
    Case {
        name: "duration-absolute",
        fmf: "duration: 1s\n",
        script: "echo 'duration 5' >&$C; sleep 2; echo survived",
        expect: Expect::Results(&[(None, "pass", None, OUT)]),
    },
    Case {
        name: "duration-extend",
        fmf: "duration: 2s\n",
        script: "echo 'duration +5' >&$C; sleep 3; echo survived",
        expect: Expect::Results(&[(None, "pass", None, OUT)]),
    },
    Case {
        name: "duration-shorten",
        fmf: "duration: 1m\n",
        script: "echo 'duration -59' >&$C; echo started; sleep 30",
        expect: Expect::Infra("TestAbortedError(test duration timeout reached)"),
    },
    Case {
        name: "duration-save-restore",
        fmf: "duration: 1s\n",
        script: "echo 'duration save' >&$C; echo 'duration 10' >&$C; sleep 1.5; \
                 echo 'duration restore' >&$C; echo restored; sleep 30",
        expect: Expect::Infra("TestAbortedError(test duration timeout reached)"),
    },
    Case {
        name: "timeout",
        fmf: "duration: 2s\n",
        script: "echo started; sleep 60",
        expect: Expect::Infra("TestAbortedError(test duration timeout reached)"),
    },
    // Framing failures (section 2): each is fatal and infra.
    Case {
        name: "bad-long-line",
        fmf: "",
        script: "printf 'noop %s\\n' \"$(head -c 5000 /dev/zero | tr '\\0' x)\" >&$C; sleep 20",
        expect: Expect::Infra("BadControlError(line buffer reached 4096 bytes)"),
    },
    Case {
        name: "bad-empty-line",
        fmf: "",
        script: "echo >&$C; sleep 20",
        expect: Expect::Infra(r"BadControlError(empty control line (just '\n'))"),
    },
    Case {
        name: "bad-unknown-word",
        fmf: "",
        script: "echo bogus >&$C; sleep 20",
        expect: Expect::Infra("BadControlError(unknown control word: bogus)"),
    },
    Case {
        name: "bad-result-length",
        fmf: "",
        script: "printf 'result abc\\n{}' >&$C; sleep 20",
        expect: Expect::Infra(
            "BadControlError(reading json length: invalid literal for int() with base 10: 'abc')",
        ),
    },
    Case {
        name: "bad-eof-in-json",
        fmf: "",
        // The wrapper's `exitcode` line becomes JSON bytes; then EOF.
        script: "printf 'result 100\\n{}' >&$C",
        expect: Expect::InfraPrefix("BadControlError(EOF when reading data, got so far: "),
    },
    Case {
        name: "bad-json-not-object",
        fmf: "",
        script: "report '[1]'; sleep 20",
        expect: Expect::Infra("BadReportJSONError(JSON decode: not a JSON object caused by: [1])"),
    },
    Case {
        name: "bad-json-syntax",
        fmf: "",
        script: "report '{\"a\": }'; sleep 20",
        expect: Expect::InfraPrefix("BadReportJSONError(JSON decode: "),
    },
    Case {
        name: "bad-file-no-name",
        fmf: "",
        script: "report '{\"files\": [{\"length\": 1}]}'; printf x >&$C; sleep 20",
        expect: Expect::Infra(
            r#"BadReportJSONError(file entry missing 'name' or 'length': {"length":1})"#,
        ),
    },
    Case {
        name: "bad-file-no-length",
        fmf: "",
        script: "report '{\"files\": [{\"name\": \"a\"}]}'; sleep 20",
        expect: Expect::Infra(
            r#"BadReportJSONError(file entry missing 'name' or 'length': {"name":"a"})"#,
        ),
    },
    Case {
        name: "bad-eof-in-file",
        fmf: "",
        script: "report '{\"files\": [{\"name\": \"x\", \"length\": 100}]}'; printf ab >&$C",
        expect: Expect::InfraPrefix("BadControlError(EOF when reading data"),
    },
    Case {
        name: "bad-utf8",
        fmf: "",
        script: "printf 'noop \\xff\\xfe\\n' >&$C; sleep 20",
        expect: Expect::InfraPrefix("BadControlError(control line is not valid UTF-8"),
    },
    Case {
        name: "bad-duration",
        fmf: "",
        script: "echo 'duration 1x' >&$C; sleep 20",
        expect: Expect::Infra("BadControlError(invalid fmf duration format: 1x)"),
    },
    Case {
        name: "bad-exitcode-empty",
        fmf: "",
        script: "echo exitcode >&$C; sleep 20",
        expect: Expect::Infra("BadControlError(exitcode argument empty)"),
    },
    Case {
        name: "bad-exitcode-word",
        fmf: "",
        script: "echo 'exitcode x1' >&$C; sleep 20",
        expect: Expect::Infra("BadControlError('x1' is not an integer exit code)"),
    },
    Case {
        name: "bad-duration-empty",
        fmf: "",
        script: "echo 'duration ' >&$C; sleep 20",
        expect: Expect::Infra("BadControlError(duration argument empty)"),
    },
    // Merge rules (section 3).
    Case {
        name: "merge",
        fmf: "",
        script: concat!(
            "json='{\"status\": \"fail\", \"name\": \"sub\", \"partial\": true, \"note\": \"n1\", ",
            "\"list\": [1], \"keep\": {\"a\": 1}, \"files\": [{\"name\": \"f\", \"length\": 1}]}'\n",
            "printf 'result %d\\n%s%s' \"${#json}\" \"$json\" a >&$C\n",
            "json='{\"status\": \"warn\", \"partial\": true, \"note\": \"self\", \"list\": [\"x\"], ",
            "\"files\": [{\"name\": \"g\", \"length\": 1}]}'\n",
            "printf 'result %d\\n%s%s' \"${#json}\" \"$json\" c >&$C\n",
            "json='{\"name\": \"sub\", \"note\": null, \"list\": [2], \"keep\": {\"b\": 2}, ",
            "\"custom\": 3, \"files\": [{\"name\": \"f\", \"length\": 1}]}'\n",
            "printf 'result %d\\n%s%s' \"${#json}\" \"$json\" b >&$C\n",
            "json='{\"list\": [\"y\"], \"note\": null, \"files\": [{\"name\": \"g\", \"length\": 1}]}'\n",
            "printf 'result %d\\n%s%s' \"${#json}\" \"$json\" d >&$C\n",
            "echo unseen\n",
        ),
        expect: Expect::Results(&[
            (Some("sub"), "fail", None, &["f"]),
            (None, "warn", None, &["g"]),
        ]),
    },
    // The fallback result.
    Case {
        name: "fallback-partial-status",
        fmf: "",
        script: "report '{\"status\": \"warn\", \"partial\": true, \"note\": \"kept\"}'; exit 1",
        expect: Expect::Results(&[(None, "warn", Some("kept"), OUT)]),
    },
    Case {
        name: "fallback-partial-fail",
        fmf: "",
        script: "report '{\"status\": \"fail\", \"partial\": true}'; exit 0",
        expect: Expect::Results(&[(None, "fail", None, OUT)]),
    },
    // Files and confinement.
    // As ATEX: a name climbing out is kept inside, and the result stands.
    Case {
        name: "file-escape",
        fmf: "",
        script: concat!(
            "report '{\"files\": [{\"name\": \"../../x\", \"length\": 1}], \"partial\": true}'\n",
            "printf x >&$C\n",
            "report '{\"name\": \"../../../n\", \"status\": \"info\", ",
            "\"files\": [{\"name\": \"a/../../../y\", \"length\": 1}]}'\n",
            "printf y >&$C\n",
        ),
        expect: Expect::Results(&[
            (Some("../../../n"), "info", None, &["y"]),
            (None, "pass", None, &["output.txt", "x"]),
        ]),
    },
    Case {
        name: "file-nul",
        fmf: "",
        script: "report '{\"files\": [{\"name\": \"a\\u0000b\", \"length\": 1}]}'; printf x >&$C; sleep 20",
        expect: Expect::InfraPrefix("BadReportJSONError("),
    },
    Case {
        name: "file-absolute",
        fmf: "",
        script: concat!(
            "report '{\"files\": [{\"name\": \"/tmp/atex-exec-protocol-abs-check\", \"length\": 3}], ",
            "\"partial\": true}'\n",
            "printf abs >&$C\n",
        ),
        expect: Expect::Results(&[(
            None,
            "pass",
            None,
            &["output.txt", "tmp/atex-exec-protocol-abs-check"],
        )]),
    },
    Case {
        name: "file-append",
        fmf: "",
        script: concat!(
            "report '{\"name\": \"s\", \"partial\": true, ",
            "\"files\": [{\"name\": \"r\", \"length\": 2}, {\"name\": \"r\", \"length\": 2}]}'\n",
            "printf abcd >&$C\n",
            "report '{\"name\": \"s\", \"status\": \"pass\", \"files\": [{\"name\": \"r\", \"length\": 2}]}'\n",
            "printf ef >&$C\n",
        ),
        expect: Expect::Results(&[(Some("s"), "pass", None, &["r"]), (None, "pass", None, OUT)]),
    },
    // The environment.
    Case {
        name: "env",
        fmf: "environment:\n    SHARED: from-test\n    ONLY_TEST: t\n",
        script: concat!(
            "printf 'SHARED=[%s]\\nONLY_TEST=[%s]\\nODD=[%s]\\n' \"$SHARED\" \"$ONLY_TEST\" \"$ODD\"\n",
            "printf 'NAME=[%s]\\nREBOOT=[%s]\\n' \"$TMT_TEST_NAME\" \"$TMT_REBOOT_COUNT\"\n",
            "test -d \"$TMT_TREE\" && test -f \"$TMT_TREE/.fmf/version\" && echo tree-ok\n",
            "test -f \"$TMT_PLAN_ENVIRONMENT_FILE\" && echo envfile-ok\n",
        ),
        expect: Expect::Results(&[(None, "pass", None, OUT)]),
    },
    // A background process left behind.
    Case {
        name: "background",
        fmf: "",
        script: "sleep 300 & echo \"pid=$!\"",
        expect: Expect::Results(&[(None, "pass", None, OUT)]),
    },
    // Binary output and files.
    Case {
        name: "binary",
        fmf: "",
        script: concat!(
            "blob\n",
            "report '{\"partial\": true, \"files\": [{\"name\": \"blob\", \"length\": 256}]}'\n",
            "blob >&$C\n",
        ),
        expect: Expect::Results(&[(None, "pass", None, &["output.txt", "blob"])]),
    },
];

/// The tree: a plan with environment, one test per [`Case`].
fn tree() -> Result<Fixture> {
    let tree = Fixture::fmf_tree(&[(
        "plans/main.fmf",
        concat!(
            "discover:\n    how: fmf\nexecute:\n    how: tmt\n",
            "environment:\n    SHARED: from-plan\n",
            "    ODD: \"line1\\nline2 %s %% 100%\"\n",
        ),
    )])?;
    for case in CASES {
        tree.write(
            &format!("tests/{}/main.fmf", case.name),
            &format!("test: bash t.sh\n{}", case.fmf),
        )?;
        tree.write(
            &format!("tests/{}/t.sh", case.name),
            &format!("{REPORT}{}\n", case.script),
        )?;
    }
    Ok(tree)
}

/// Every result of the test `name`, in order.
fn of<'a>(by_test: &'a HashMap<String, Vec<TestResult>>, name: &str) -> &'a [TestResult] {
    by_test
        .get(&format!("/tests/{name}"))
        .map_or(&[], Vec::as_slice)
}

fn artifact(result: &TestResult, rel: &str) -> Vec<u8> {
    std::fs::read(result.artifacts.join(rel))
        .unwrap_or_else(|e| panic!("{}/{rel}: {e}", result.artifacts.display()))
}

/// `true` while `pid` is a `sleep 300` (not a reused pid).
fn sleeping(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x00300\x00")
}

#[test]
fn control_protocol_results_and_limits_over_loopback_sshd() -> Result<()> {
    let _ = std::fs::remove_file(ABS);
    let pool = SshdPool::start(1)?;
    let machine = pool.machines().remove(0);
    let tree = tree()?;
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let start = Instant::now();
    let out = pipe::tests_on(
        &tree.path(),
        &["--plan".as_ref(), "/plans".as_ref()],
        &serde_json::to_string(&machine)?,
        &artifacts,
        DEADLINE,
    )?;
    let took = start.elapsed();
    assert_eq!(out.discover, Some(0), "atex-discover failed");
    let (code, stderr) = (out.code, &out.stderr);
    let results = out.results()?;
    let mut by_test: HashMap<String, Vec<TestResult>> = HashMap::new();
    for r in results {
        by_test.entry(r.test.clone()).or_default().push(r);
    }
    assert_eq!(code, Some(3), "infra results are present; stderr: {stderr}");
    assert_eq!(by_test.len(), CASES.len(), "stderr: {stderr}");

    for case in CASES {
        let got = of(&by_test, case.name);
        let rows: Vec<Got<'_>> = got
            .iter()
            .map(|r| {
                (
                    r.name.as_deref(),
                    r.status.as_deref().unwrap_or(""),
                    r.note.as_deref(),
                    r.files.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        match &case.expect {
            Expect::Infra(note) => assert_eq!(
                rows,
                [(None, "infra", Some(*note), vec!["output.txt"])],
                "{}",
                case.name
            ),
            Expect::InfraPrefix(prefix) => {
                assert_eq!(rows.len(), 1, "{}: {rows:?}", case.name);
                let (name, status, note, _) = &rows[0];
                assert_eq!((*name, *status), (None, "infra"), "{}", case.name);
                let note = note.unwrap_or_default();
                assert!(note.starts_with(prefix), "{}: {note}", case.name);
            }
            Expect::Results(want) => {
                let want: Vec<_> = want
                    .iter()
                    .map(|(n, s, note, f)| (*n, *s, *note, f.to_vec()))
                    .collect();
                assert_eq!(rows, want, "{}", case.name);
            }
        }
        // A protocol error ends the test at once, not after its `sleep 20`.
        if case.name.starts_with("bad-") || case.name == "file-nul" {
            let last = got.last().map_or(0.0, |r| r.duration);
            assert!(last < 10.0, "{}: took {last} s", case.name);
        }
    }

    // exitcode travels through the wrapper.
    assert_eq!(of(&by_test, "exitcode")[0].exit_code, Some(7));
    assert_eq!(
        artifact(&of(&by_test, "exitcode")[0], "files/output.txt"),
        b"failing\n"
    );
    assert_eq!(of(&by_test, "noop")[0].exit_code, Some(0));

    // Uploaded files land under files/<result name>/.
    let sub = &of(&by_test, "result-files")[0];
    assert_eq!(artifact(sub, "files/sub/a/log"), b"hello\n");
    assert_eq!(artifact(sub, "files/sub/a/d/e"), b"de");
    assert_eq!(artifact(sub, "files/empty/zero"), b"");

    // Timeouts are quick; extensions outlive the initial duration.
    let timeout = &of(&by_test, "timeout")[0];
    assert!(timeout.duration < 6.0, "{}", timeout.duration);
    assert_eq!(artifact(timeout, "files/output.txt"), b"started\n");
    for name in ["duration-absolute", "duration-extend"] {
        let r = &of(&by_test, name)[0];
        assert_eq!(artifact(r, "files/output.txt"), b"survived\n", "{name}");
    }
    let shorten = &of(&by_test, "duration-shorten")[0];
    assert!(shorten.duration < 6.0, "{}", shorten.duration);
    let restored = &of(&by_test, "duration-save-restore")[0];
    assert_eq!(artifact(restored, "files/output.txt"), b"restored\n");
    assert!(restored.duration < 8.0, "{}", restored.duration);

    // Merge rules: null deletes, lists extend, dicts merge, files dedup,
    // custom keys kept; a final nameless result means no fallback.
    let merge = of(&by_test, "merge");
    assert_eq!(merge[0].extra["list"], serde_json::json!([1, 2]));
    assert_eq!(merge[0].extra["keep"], serde_json::json!({"a": 1, "b": 2}));
    assert_eq!(merge[0].extra["custom"], serde_json::json!(3));
    assert_eq!(merge[1].extra["list"], serde_json::json!(["x", "y"]));
    assert_eq!(artifact(&merge[0], "files/sub/f"), b"ab");
    assert_eq!(artifact(&merge[1], "files/g"), b"cd");
    assert!(!merge[1].artifacts.join("files/output.txt").exists());

    // The fallback from the exit code.
    assert_eq!(
        of(&by_test, "fallback-partial-status")[0].exit_code,
        Some(1)
    );

    // Confinement: nothing escapes the artifacts directory; what climbed
    // out is stored inside, with a warning.
    let escape = &of(&by_test, "file-escape")[1];
    assert_eq!(artifact(escape, "files/x"), b"x");
    assert_eq!(artifact(escape, "files/n/y"), b"y");
    for dir in [
        work.path(),
        artifacts.clone(),
        artifacts.join("tests"),
        escape.artifacts.clone(),
    ] {
        for name in ["x", "y", "n"] {
            assert!(!dir.join(name).exists(), "{}/{name}", dir.display());
        }
    }
    for name in ["'../../x'", "'../../../n'", "'a/../../../y'"] {
        assert!(
            stderr.lines().any(
                |l| l.starts_with("atex-exec: warning: result /tests/file-escape")
                    && l.contains(name)
                    && l.contains("kept inside")
            ),
            "{name}: {stderr}"
        );
    }
    let absolute = &of(&by_test, "file-absolute")[0];
    assert_eq!(
        artifact(absolute, "files/tmp/atex-exec-protocol-abs-check"),
        b"abs"
    );
    assert!(!Path::new(ABS).exists());
    let append = of(&by_test, "file-append");
    assert_eq!(artifact(&append[0], "files/s/r"), b"abcdef");

    // The environment: plan over test, odd values intact, TMT_* present.
    let env = String::from_utf8(artifact(&of(&by_test, "env")[0], "files/output.txt"))?;
    assert_eq!(
        env,
        "SHARED=[from-plan]\nONLY_TEST=[t]\nODD=[line1\nline2 %s %% 100%]\n\
         NAME=[/tests/env]\nREBOOT=[0]\ntree-ok\nenvfile-ok\n"
    );

    // A background process does not outlive its test.
    let out = String::from_utf8(artifact(&of(&by_test, "background")[0], "files/output.txt"))?;
    let pid: u32 = out
        .trim()
        .strip_prefix("pid=")
        .context("pid line")?
        .parse()?;
    let gone = Instant::now() + Duration::from_secs(3);
    while sleeping(pid) && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = sleeping(pid);
    if left {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    assert!(!left, "the test's background sleep {pid} survived");

    // Binary output and files, byte-exact.
    let all: Vec<u8> = (0..=255u8).collect();
    let binary = &of(&by_test, "binary")[0];
    assert!(artifact(binary, "files/output.txt") == all);
    assert!(artifact(binary, "files/blob") == all);

    assert!(took < Duration::from_secs(60), "took {took:?}");
    Ok(())
}
