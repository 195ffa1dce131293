//! No test and no Test record can take atex-exec down or touch what is not
//! its own (issue 10): memory caps under `ulimit -v`, symbolic links planted
//! in the artifacts, a full artifacts filesystem, Test records checked
//! before anything runs. Each case runs the real binary on this machine
//! (`--machine local`), with hand-written Test records.
#![expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use atex_shared::records::TestResult;
use serde_json::json;
use tempfile::TempDir;

/// Address space for atex-exec: far above what it needs (tens of MB), far
/// below what an unbounded buffer reaches (the endless `result` below).
const ULIMIT_KB: u64 = 1_500_000;

/// A tree with one test directory (`t/`) and a work dir for artifacts.
struct Work {
    tmp: TempDir,
}

impl Work {
    fn new() -> Work {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("tree/.fmf")).unwrap();
        std::fs::write(tmp.path().join("tree/.fmf/version"), "1\n").unwrap();
        std::fs::create_dir_all(tmp.path().join("tree/t")).unwrap();
        Work { tmp }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.tmp.path().join(relative)
    }

    fn root(&self) -> PathBuf {
        self.path("tree")
    }

    /// A Test record line: `name` runs `script` in `t/`.
    fn record(&self, name: &str, script: &str, duration: u64) -> String {
        self.record_at(name, "t", script, duration)
    }

    fn record_at(&self, name: &str, path: &str, script: &str, duration: u64) -> String {
        json!({
            "name": name,
            "root": self.root(),
            "path": path,
            "test": script,
            "duration": duration,
        })
        .to_string()
    }
}

/// Run atex-exec (under `ulimit -v KB` when given) with `args`, the
/// records on stdin, bounded by `timeout`.
fn exec(args: &[&str], records: &[String], ulimit_kb: Option<u64>) -> Output {
    let limit = ulimit_kb.map_or(String::new(), |kb| format!("ulimit -v {kb} && "));
    let mut child = Command::new("timeout")
        .args(["-s", "KILL", "150", "bash", "-c"])
        .arg(format!("{limit}exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_atex-exec"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = records.join("\n");
    input.push('\n');
    let mut stdin = child.stdin.take().unwrap();
    // Refusals may come before the input is read.
    let _ = std::io::Write::write_all(&mut stdin, input.as_bytes());
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn results(out: &Output) -> Vec<TestResult> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The last result of `test` (its verdict).
fn last<'a>(results: &'a [TestResult], test: &str) -> &'a TestResult {
    results
        .iter()
        .rev()
        .find(|r| r.test == test && r.name.is_none())
        .unwrap_or_else(|| panic!("no result of {test}: {results:?}"))
}

fn note(result: &TestResult) -> &str {
    result.note.as_deref().unwrap_or_default()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The spec's bash helper.
const REPORT: &str = "export LC_ALL=C; report() { local what=$1; printf 'result %d\\n%s' \"${#what}\" \"$what\" >&$ATEX_TEST_CONTROL; }; ";

/// Issue 10 item 1: `result 3000000000` with endless data, and endless
/// partial results that grow one list, under a 1.5 GB address space. The
/// old code buffered both until the allocation failed (abort, exit 134, no
/// record); now each test is stopped as soon as a cap is passed, `infra`,
/// and the run goes on to the next test.
#[test]
fn announced_lengths_are_capped_under_a_memory_limit() {
    let work = Work::new();
    let artifacts = work.path("out");
    let endless_json = "printf 'result 3000000000\\n' >&$ATEX_TEST_CONTROL; \
                        exec head -c 4000000000 /dev/zero >&$ATEX_TEST_CONTROL";
    // 1 MB results, each one more partial list of a million numbers (16
    // bytes of memory per 2 bytes of JSON), forever.
    let endless_partials = "exec python3 -c \"import os\n\
        fd = int(os.environ['ATEX_TEST_CONTROL'])\n\
        j = b'{\\\"partial\\\": true, \\\"l\\\": [' + b'1,' * 500000 + b'1]}'\n\
        m = b'result %d\\\\n' % len(j) + j\n\
        while True: os.write(fd, m)\"";
    let records = [
        work.record("/huge-json", endless_json, 120),
        work.record("/endless-partials", endless_partials, 120),
        work.record("/fine", "echo fine", 120),
    ];
    let out = exec(
        &[
            "--machine",
            "local",
            "--artifacts",
            artifacts.to_str().unwrap(),
        ],
        &records,
        Some(ULIMIT_KB),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let results = results(&out);
    let huge = last(&results, "/huge-json");
    assert_eq!(huge.status.as_deref(), Some("infra"));
    assert_eq!(
        note(huge),
        "BadControlError(result JSON of 3000000000 bytes is over the limit of 4194304 bytes \
         (--max-result-json))"
    );
    let partials = last(&results, "/endless-partials");
    assert_eq!(partials.status.as_deref(), Some("infra"));
    assert!(
        note(partials).starts_with("BadReportJSONError(partial results held take about ")
            && note(partials).ends_with(" (--max-held-partial))"),
        "{}",
        note(partials)
    );
    // Stopped at once, not at the end of their duration.
    for r in [huge, partials] {
        assert!(r.duration < 60.0, "{}: {} s", r.test, r.duration);
    }
    let fine = last(&results, "/fine");
    assert_eq!(fine.status.as_deref(), Some("pass"), "{err}");
}

/// Issue 10 item 1: the caps are options; a file or a JSON announced over
/// them is refused before its data is read, and nothing of it is stored.
#[test]
fn caps_are_configurable() {
    let work = Work::new();
    let artifacts = work.path("out");
    let big_file = format!(
        "{REPORT}report '{{\"files\": [{{\"name\": \"f\", \"length\": 2000}}]}}'; \
         head -c 2000 /dev/zero >&$ATEX_TEST_CONTROL; sleep 60"
    );
    let big_json = format!(
        "{REPORT}report '{{\"note\": \"{}\"}}'; sleep 60",
        "x".repeat(200)
    );
    let records = [
        work.record("/big-file", &big_file, 120),
        work.record("/big-json", &big_json, 120),
    ];
    let out = exec(
        &[
            "--machine",
            "local",
            "--artifacts",
            artifacts.to_str().unwrap(),
            "--max-file-size",
            "1000",
            "--max-result-json=100",
        ],
        &records,
        Some(ULIMIT_KB),
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let results = results(&out);
    let file = last(&results, "/big-file");
    assert_eq!(
        note(file),
        "BadControlError(file f of 2000 bytes is over the limit of 1000 bytes (--max-file-size))"
    );
    assert!(!artifacts.join("big-file/files/f").exists());
    let json = last(&results, "/big-json");
    assert_eq!(
        note(json),
        "BadControlError(result JSON of 212 bytes is over the limit of 100 bytes \
         (--max-result-json))"
    );
    for r in [file, json] {
        assert!(r.duration < 30.0, "{}: {} s", r.test, r.duration);
    }
}

/// Issue 10 item 5: symbolic links planted in a test's own artifacts (the
/// test runs on this machine and knows where they are) are not followed
/// when it uploads files: not as the file, not as a directory on the way,
/// not as a result's directory, not as another test's directory. The
/// target outside stays as it was and the test gets a note naming the link.
#[test]
fn planted_symbolic_links_are_never_written_through() {
    let work = Work::new();
    let artifacts = work.path("out");
    let outside = work.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("file");
    std::fs::write(&victim, "original\n").unwrap();
    let (a, o) = (artifacts.to_str().unwrap(), outside.to_str().unwrap());
    let upload = |result_name: &str, file: &str| {
        format!(
            "{REPORT}report '{{\"name\": {result_name}, \"files\": [{{\"name\": \"{file}\", \"length\": 6}}]}}'; \
             printf hacked >&$ATEX_TEST_CONTROL; sleep 60"
        )
    };
    let records = [
        work.record(
            "/link-file",
            &format!(
                "mkdir -p {a}/link-file/files && ln -s {o}/file {a}/link-file/files/x; {}",
                upload("null", "x")
            ),
            120,
        ),
        work.record(
            "/link-dir",
            &format!(
                "mkdir -p {a}/link-dir/files && ln -s {o} {a}/link-dir/files/d; {}",
                upload("null", "d/file")
            ),
            120,
        ),
        work.record(
            "/link-result",
            &format!(
                "mkdir -p {a}/link-result/files && ln -s {o} {a}/link-result/files/sub; {}",
                upload("\"sub\"", "file")
            ),
            120,
        ),
        // The next test's own directory, planted by this one.
        work.record("/plant", &format!("ln -s {o} {a}/victim"), 120),
        work.record("/victim", &upload("null", "file"), 120),
    ];
    let out = exec(&["--machine", "local", "--artifacts", a], &records, None);
    let err = stderr(&out);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original\n");
    assert_eq!(out.status.code(), Some(3), "{err}");
    let entries: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert_eq!(entries.len(), 1, "nothing new outside: {entries:?}");
    let results = results(&out);
    for (test, link) in [
        ("/link-file", "link-file/files/x"),
        ("/link-dir", "link-dir/files/d"),
        ("/link-result", "link-result/files/sub"),
        ("/victim", "victim"),
    ] {
        let r = last(&results, test);
        assert_eq!(r.status.as_deref(), Some("infra"), "{test}: {err}");
        let link = artifacts.join(link);
        assert!(
            note(r).contains(&format!(
                "{}: it is a symbolic link, which is not followed",
                link.display()
            )),
            "{test}: {}",
            note(r)
        );
        assert!(r.duration < 30.0, "{test}: {} s", r.duration);
    }
}

/// Unmounts the tmpfs on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A 1 MB tmpfs at `dir`, or a failure saying what this test needs.
fn small_filesystem(dir: &Path) -> Mount {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir)
        .output();
    match out {
        Ok(out) if out.status.success() => Mount(dir.to_path_buf()),
        other => panic!(
            "this test needs a full filesystem: it mounts a 1 MB tmpfs \
             (`mount -t tmpfs -o size=1m tmpfs DIR`), which needs root or CAP_SYS_ADMIN: {other:?}"
        ),
    }
}

/// Issue 10 item 7: a full artifacts filesystem. An upload, the test's
/// output and the next test's output each fail at once, `infra` with "No
/// space left on device" in the note and on stderr; nothing waits for the
/// duration and no test passes with an empty output.
#[test]
fn a_full_artifacts_filesystem_is_infra_at_once() {
    let work = Work::new();
    let disk = work.path("disk");
    let _mount = small_filesystem(&disk);
    let artifacts = disk.join("out");
    let upload = format!(
        "{REPORT}report '{{\"files\": [{{\"name\": \"big\", \"length\": 2000000}}]}}'; \
         head -c 2000000 /dev/zero >&$ATEX_TEST_CONTROL; sleep 100"
    );
    let records = [
        work.record("/upload", &upload, 120),
        work.record("/output", "head -c 2000000 /dev/zero; sleep 100", 120),
        work.record("/next", "echo hello", 120),
    ];
    let out = exec(
        &[
            "--machine",
            "local",
            "--artifacts",
            artifacts.to_str().unwrap(),
        ],
        &records,
        None,
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let results = results(&out);
    for test in ["/upload", "/output", "/next"] {
        let r = last(&results, test);
        assert_eq!(r.status.as_deref(), Some("infra"), "{test}: {err}");
        assert!(note(r).starts_with("OSError("), "{test}: {}", note(r));
        assert!(
            note(r).contains("No space left on device"),
            "{test}: {}",
            note(r)
        );
        assert!(r.duration < 30.0, "{test}: {} s", r.duration);
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("atex-exec: warning: {test}: "))
                    && l.contains("No space left on device")),
            "{test}: {err}"
        );
    }
}

/// Issue 10 item 12: Test records are checked before anything runs: exit
/// 2 naming the stdin line, no artifacts directory, the first (valid) test
/// not run. The old code ran what it could (a path of `../../../../etc`
/// ran the test in /etc) and made bad names `infra`, exit 3.
#[test]
fn bad_test_records_are_exit_2_before_anything_runs() {
    let work = Work::new();
    let artifacts = work.path("out");
    let marker = work.path("ran");
    std::os::unix::fs::symlink("/etc", work.path("tree/to-etc")).unwrap();
    let first = work.record("/first", &format!("touch {}", marker.display()), 60);
    let cases: Vec<(String, &str)> = vec![
        (
            work.record("/a\0b", "true", 60),
            "test name \"/a\\0b\" contains a NUL byte",
        ),
        (
            work.record("/../x", "true", 60),
            "has an empty, '.' or '..' part",
        ),
        (
            work.record("/a/./b", "true", 60),
            "has an empty, '.' or '..' part",
        ),
        (
            work.record("", "true", 60),
            "test name \"\" does not start with '/'",
        ),
        (work.record("/", "true", 60), "test name \"/\" has an empty"),
        (work.record("x", "true", 60), "does not start with '/'"),
        (
            work.record_at("/up", "../../../../etc", "pwd", 60),
            "path \"../../../../etc\" leaves the tree",
        ),
        (
            work.record_at("/abs", "/etc", "pwd", 60),
            "path \"/etc\" is absolute",
        ),
        (
            work.record_at("/link", "to-etc", "pwd", 60),
            "path \"to-etc\" leaves the tree",
        ),
        (
            work.record("/first", "true", 60),
            "test /first was given on line 1 already",
        ),
        (
            work.record("/first/files", "true", 60),
            "would be stored in the artifacts directory of test /first",
        ),
    ];
    for (bad, message) in cases {
        let out = exec(
            &[
                "--machine",
                "local",
                "--artifacts",
                artifacts.to_str().unwrap(),
            ],
            &[first.clone(), bad.clone()],
            None,
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(out.stdout.is_empty(), "{bad}");
        assert!(
            err.starts_with("atex-exec: error: <stdin>:2: "),
            "{bad}: {err}"
        );
        assert!(err.contains(message), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!marker.exists(), "{bad}: the first test ran");
        assert!(!artifacts.exists(), "{bad}: artifacts were made");
    }
}
