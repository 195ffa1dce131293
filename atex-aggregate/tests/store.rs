//! The atex-aggregate binary end to end: each output of a store (exact
//! ATEX lines, moved and renamed files, compression and excludes, `(1)`
//! duplicates, JUnit parsed back, the HTML page), `--append`, `summary`,
//! `convert` and bad input.

#![expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn aggregate(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atex-aggregate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start atex-aggregate");
    // A refused store ends the process before it reads: a broken pipe
    // then is its business, not the test's.
    if let Err(e) = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
    {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "feed: {e}");
    }
    child.wait_with_output().expect("wait")
}

/// An atex-exec-like artifacts directory for `/tests/basic`: output.txt
/// for the test, a log and a binary for subtest `sub/a`.
fn artifacts(root: &Path) -> PathBuf {
    let a = root.join("artifacts/tests/basic");
    fs::create_dir_all(a.join("files/sub/a")).unwrap();
    fs::write(a.join("files/output.txt"), "hello\nworld\n").unwrap();
    fs::write(a.join("files/sub/a/log.txt"), "log\n").unwrap();
    fs::write(a.join("files/sub/a/core.bin"), "core").unwrap();
    a
}

fn result(
    a: &Path,
    name: Option<&str>,
    status: &str,
    files: &[&str],
    note: Option<&str>,
    started: &str,
) -> String {
    serde_json::json!({
        "test": "/tests/basic", "name": name, "status": status, "note": note, "files": files,
        "platform": "f41@x86_64", "machine": "local", "artifacts": a, "exit_code": 0,
        "started": started, "duration": 1.25, "attempt": 0, "custom": {"k": [1]}
    })
    .to_string()
        + "\n"
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn store_lines_files_junit_and_html() {
    let tmp = tempfile::tempdir().unwrap();
    let a = artifacts(tmp.path());
    let out = tmp.path().join("store");
    let input = result(
        &a,
        Some("sub/a"),
        "fail",
        &["log.txt", "core.bin"],
        Some("bad \"x\" é"),
        "T1",
    ) + &result(&a, None, "pass", &["output.txt"], None, "T1");
    let o = aggregate(&["--output", out.to_str().unwrap()], &input);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty());
    assert_eq!(
        read(&out.join("results.jsonl")),
        "[\"f41@x86_64\", \"fail\", \"/tests/basic\", \"sub/a\", [\"log.txt\", \"core.bin\"], \"bad \\\"x\\\" \\u00e9\"]\n\
         [\"f41@x86_64\", \"pass\", \"/tests/basic\", null, [\"output.txt\"], null]\n"
    );
    assert_eq!(
        read(&out.join("files/f41@x86_64/tests/basic/output.txt")),
        "hello\nworld\n"
    );
    assert_eq!(
        read(&out.join("files/f41@x86_64/tests/basic/sub/a/log.txt")),
        "log\n"
    );
    assert!(!a.join("files/output.txt").exists(), "moved, not copied");

    // JUnit parsed back: one suite, two cases, one failure with the note.
    let junit = read(&out.join("junit.xml"));
    let mut reader = quick_xml::Reader::from_str(&junit);
    let (mut suites, mut cases, mut failures) = (Vec::new(), 0, Vec::new());
    loop {
        match reader.read_event().expect("junit.xml is well-formed XML") {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                let attr = |name: &str| {
                    e.try_get_attribute(name)
                        .unwrap()
                        .map(|a| a.unescape_value().unwrap().into_owned())
                };
                match e.name().as_ref() {
                    b"testsuite" => suites.push((
                        attr("name").unwrap(),
                        attr("tests").unwrap(),
                        attr("failures").unwrap(),
                    )),
                    b"testcase" => cases += 1,
                    b"failure" => failures.push(attr("message").unwrap()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        suites,
        [("f41@x86_64".to_owned(), "2".to_owned(), "1".to_owned())]
    );
    assert_eq!((cases, failures), (2, vec!["bad \"x\" é".to_owned()]));

    // The page has the rows and the totals and loads nothing.
    let html = read(&out.join("index.html"));
    assert!(
        html.contains("\"sub/a\", [\"log.txt\", \"core.bin\"]"),
        "{html}"
    );
    assert!(!html.contains("http://") && !html.contains("https://"));

    let s = aggregate(&["summary", out.to_str().unwrap()], "");
    assert_eq!(s.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&s.stdout).contains("f41@x86_64: 2 results: 1 fail, 1 pass"));
}

#[test]
fn compression_excludes_duplicates_and_append() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("store");
    let o = out.to_str().unwrap();
    let a = artifacts(tmp.path());
    let first = result(
        &a,
        Some("sub/a"),
        "pass",
        &["log.txt", "core.bin"],
        None,
        "T1",
    );
    let args = [
        "--output",
        o,
        "--compress",
        "gz",
        "--compress-files",
        "xz",
        "--compress-files-exclude",
        "core.bin",
        "--format",
        "records",
    ];
    let r = aggregate(&args, &first);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // A second run of the same test (another start): "(1)", in the lines
    // and in the files directory; with --append.
    let a = artifacts(tmp.path());
    let second = result(&a, None, "infra", &["output.txt"], Some("lost"), "T2");
    assert_eq!(
        aggregate(&args, &second).status.code(),
        Some(2),
        "a store exists: --append needed"
    );
    let mut append = args.to_vec();
    append.push("--append");
    let r = aggregate(&append, &second);
    assert_eq!(
        r.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let conv = Command::new(env!("CARGO_BIN_EXE_atex-aggregate"))
        .args(["convert", "--from", "records", "--to", "atex"])
        .arg(out.join("results.jsonl.gz"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(conv.stdout).unwrap(),
        "[\"f41@x86_64\", \"pass\", \"/tests/basic\", \"sub/a\", [\"log.txt.xz\", \"core.bin\"], null]\n\
         [\"f41@x86_64\", \"infra\", \"/tests/basic (1)\", null, [\"output.txt.xz\"], \"lost\"]\n"
    );
    let base = out.join("files/f41@x86_64/tests");
    assert!(base.join("basic/sub/a/log.txt.xz").is_file());
    assert_eq!(read(&base.join("basic/sub/a/core.bin")), "core");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut lzma_like_decode(&base.join("basic (1)/output.txt.xz")),
        &mut text,
    )
    .unwrap();
    assert_eq!(text, "hello\nworld\n");
    // Records keep custom keys, and say where the files are now.
    let conv = Command::new(env!("CARGO_BIN_EXE_atex-aggregate"))
        .args(["convert", "--from", "records", "--to", "records"])
        .arg(out.join("results.jsonl.gz"))
        .output()
        .unwrap();
    let last: serde_json::Value = serde_json::from_str(
        String::from_utf8(conv.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["custom"], serde_json::json!({"k": [1]}));
    assert!(
        last["artifacts"]
            .as_str()
            .unwrap()
            .ends_with("files/f41@x86_64/tests/basic (1)")
    );
    // JUnit counts both runs.
    assert!(read(&out.join("junit.xml")).contains("tests=\"2\" failures=\"0\" errors=\"1\""));
}

fn lzma_like_decode(path: &Path) -> impl std::io::Read {
    atex_aggregate::store::Compression::Xz.decoder(std::io::Cursor::new(fs::read(path).unwrap()))
}

#[test]
fn bad_input_keeps_what_came_before() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("store");
    let input = "{\"test\": \"/a\", \"status\": \"pass\", \"platform\": \"p\"}\n\n{\"status\": \"pass\"}\n{\"test\": \"/c\", \"status\": \"pass\"}\n";
    let o = aggregate(&["--output", out.to_str().unwrap()], input);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("atex-aggregate: error: <stdin>:3:"),
        "{err}"
    );
    assert!(err.contains("missing field `test`"), "{err}");
    assert_eq!(
        read(&out.join("results.jsonl")),
        "[\"p\", \"pass\", \"/a\", null, [], null]\n"
    );
    assert!(out.join("index.html").is_file());
}

#[test]
fn results_of_one_run_share_a_name_and_reruns_count_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("store");
    let line = |name: &str, attempt: u32| {
        format!(
            "{{\"test\": \"/t\", \"name\": {name}, \"status\": \"pass\", \"platform\": \"p\", \"started\": \"S\", \"attempt\": {attempt}}}\n"
        )
    };
    let input = line("\"a\"", 0)
        + &line("null", 0)
        + &line("\"a\"", 1)
        + &line("null", 1)
        + &line("null", 2);
    let o = aggregate(&["--output", out.to_str().unwrap()], &input);
    assert_eq!(o.status.code(), Some(0));
    let tests: Vec<String> = read(&out.join("results.jsonl"))
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[2]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(tests, ["/t", "/t", "/t (1)", "/t (1)", "/t (2)"]);
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A result without a status (absent or null, as ATEX 1.2 allows) is
/// accepted, stored with a null status in both formats, and counts as not
/// passed.
#[test]
fn a_result_without_status_is_stored_as_null() {
    let tmp = tempfile::tempdir().unwrap();
    let input = "{\"test\": \"/a\", \"platform\": \"p\", \"started\": \"S\"}\n\
                 {\"test\": \"/b\", \"status\": null, \"note\": \"n\", \"platform\": \"p\", \"started\": \"S\"}\n\
                 {\"test\": \"/c\", \"status\": \"pass\", \"platform\": \"p\", \"started\": \"S\"}\n";
    let atex = tmp.path().join("atex");
    let o = aggregate(&["--output", atex.to_str().unwrap()], input);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        read(&atex.join("results.jsonl")),
        "[\"p\", null, \"/a\", null, [], null]\n\
         [\"p\", null, \"/b\", null, [], \"n\"]\n\
         [\"p\", \"pass\", \"/c\", null, [], null]\n"
    );
    let records = tmp.path().join("records");
    let o = aggregate(
        &["--output", records.to_str().unwrap(), "--format", "records"],
        input,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let statuses: Vec<serde_json::Value> = read(&records.join("results.jsonl"))
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [
            serde_json::Value::Null,
            serde_json::Value::Null,
            "pass".into()
        ]
    );
    assert!(read(&records.join("results.jsonl")).contains("\"status\":null"));
    // Not passed: a JUnit failure, and listed by summary.
    assert!(read(&atex.join("junit.xml")).contains("tests=\"3\" failures=\"2\""));
    let s = aggregate(&["summary", atex.to_str().unwrap()], "");
    assert_eq!(s.status.code(), Some(1));
    assert_eq!(
        stdout(&s),
        "p: 3 results: 2 (no status), 1 pass\n\
         did not pass (2):\n\
         \x20 (no status)  /a\n\
         \x20 (no status)  /b: n\n\
         verdict: some failed (exit 1)\n"
    );
    // --append reads the null back.
    let o = aggregate(&["--output", atex.to_str().unwrap(), "--append"], "");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

/// `summary` names the results that did not pass (status, test/subtest,
/// note), at most 50, not only totals.
#[test]
fn summary_lists_what_did_not_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("store");
    let mut input = String::new();
    for i in 0..120 {
        let (status, note) = match i % 2 {
            0 => ("pass", "null".to_owned()),
            _ => ("fail", format!("\"bad {i}\\nsecond line\"")),
        };
        input.push_str(&format!(
            "{{\"test\": \"/t/{i}\", \"name\": \"sub\", \"status\": \"{status}\", \"note\": {note}, \"platform\": \"p\", \"started\": \"S\"}}\n"
        ));
    }
    input.push_str("{\"test\": \"/skipped\", \"status\": \"skip\", \"platform\": \"p\"}\n");
    input.push_str("{\"test\": \"/lost\", \"status\": \"infra\", \"note\": \"Interrupted(SIGINT)\", \"platform\": \"q\"}\n");
    let o = aggregate(&["--output", out.to_str().unwrap()], &input);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let s = aggregate(&["summary", out.to_str().unwrap()], "");
    assert_eq!(s.status.code(), Some(3));
    let text = stdout(&s);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "p: 121 results: 60 pass, 60 fail, 1 skip",
        "{text}"
    );
    assert_eq!(lines[1], "q: 1 result: 1 infra");
    assert_eq!(lines[3], "did not pass (61):");
    assert_eq!(lines[4], "  fail  /t/1/sub (on p): bad 1 second line");
    assert_eq!(lines[53], "  fail  /t/99/sub (on p): bad 99 second line");
    assert_eq!(
        lines[54],
        "  ... and 11 more (index.html in the store lists them all)"
    );
    assert_eq!(lines[55], "verdict: infrastructure failures (exit 3)");
    assert!(!text.contains("/skipped"), "{text}");
}

/// After `--append`, JUnit's `<testsuite time>` counts the whole store,
/// not only the newest batch (ATEX's lines carry no duration).
#[test]
fn append_keeps_the_junit_time_of_the_whole_store() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("store");
    let line = |test: &str, duration: f64| {
        format!(
            "{{\"test\": \"{test}\", \"status\": \"pass\", \"platform\": \"p\", \"started\": \"S\", \"duration\": {duration}}}\n"
        )
    };
    let o = aggregate(
        &["--output", out.to_str().unwrap()],
        &(line("/a", 1.25) + &line("/b", 1.25)),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        read(&out.join("junit.xml"))
            .contains("tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"2.500\"")
    );
    let o = aggregate(
        &["--output", out.to_str().unwrap(), "--append"],
        &line("/c", 2.5),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let junit = read(&out.join("junit.xml"));
    assert!(
        junit.contains("<testsuites name=\"atex\" tests=\"3\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"5.000\">"),
        "{junit}"
    );
    assert!(
        junit.contains("<testsuite name=\"p\" id=\"0\" tests=\"3\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"5.000\">"),
        "{junit}"
    );
}

/// No Result record on stdin is not a pass: exit 4 and a message, unless
/// --no-tests says otherwise; the empty store is written all the same,
/// and `summary` of it follows the same rule.
#[test]
fn no_results_is_not_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("store");
    let dir = out.to_str().unwrap();
    let o = aggregate(&["--output", dir], "\n");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "atex-aggregate: error: no Result record on stdin; {dir} is an empty store (exit 4; --no-tests=pass or --no-tests=warn accepts it)\n"
        )
    );
    assert_eq!(read(&out.join("results.jsonl")), "");
    assert!(read(&out.join("junit.xml")).contains("tests=\"0\""));
    assert!(out.join("index.html").is_file());

    let s = aggregate(&["summary", dir], "");
    assert_eq!(s.status.code(), Some(4));
    assert_eq!(
        stdout(&s),
        "all: 0 results: none\nverdict: no results (exit 4)\n"
    );
    assert!(
        stderr(&s).contains("holds no results (exit 4;"),
        "{}",
        stderr(&s)
    );
    let s = aggregate(&["summary", "--no-tests=warn", dir], "");
    assert_eq!(s.status.code(), Some(0));
    assert!(stderr(&s).starts_with("atex-aggregate: warning: the store in "));
    assert_eq!(
        stdout(&s),
        "all: 0 results: none\nverdict: no results (exit 0)\n"
    );
    let s = aggregate(&["summary", "--no-tests=pass", dir], "");
    assert_eq!((s.status.code(), stderr(&s)), (Some(0), String::new()));

    // The choice, and a store that has earlier results: its verdict.
    let o = aggregate(&["--output", dir, "--append", "--no-tests=pass"], "");
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()));
    let failed = "{\"test\": \"/f\", \"status\": \"fail\", \"platform\": \"p\"}\n";
    assert_eq!(
        aggregate(&["--output", dir, "--append"], failed)
            .status
            .code(),
        Some(1)
    );
    let o = aggregate(&["--output", dir, "--append"], "");
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("the store in ") && stderr(&o).contains(" keeps its 1 result (exit 4;"),
        "{}",
        stderr(&o)
    );
    let o = aggregate(&["--output", dir, "--append", "--no-tests=warn"], "");
    assert_eq!(o.status.code(), Some(1), "the store's verdict");
    assert!(stderr(&o).starts_with("atex-aggregate: warning: no Result record on stdin"));
}

/// `n` failing records of tests `/t<from>`.. on platform `p`.
fn failing(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("{{\"test\": \"/t{i}\", \"status\": \"fail\", \"platform\": \"p\"}}\n"))
        .collect()
}

/// The tests of a store as `summary` counts them.
fn summary_count(dir: &str) -> String {
    let s = aggregate(&["summary", "--no-tests=pass", dir], "");
    stdout(&s).lines().next().unwrap_or_default().to_owned()
}

/// Issue 10 item 4: `--append` to an empty compressed results file (what
/// `--no-tests=pass` with no input writes, and what a kill -9 before the
/// first flush leaves) kept the file 0 bytes: the damage repair renamed a
/// rewritten copy over the file the writer already had open, so every
/// appended result went to an unlinked inode. Now they are all stored.
#[test]
fn append_to_an_empty_compressed_store_keeps_every_result() {
    for how in ["gz", "xz"] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("store");
        let dir = out.to_str().unwrap();
        let o = aggregate(&["--output", dir, "--compress", how, "--no-tests=pass"], "");
        assert_eq!(o.status.code(), Some(0), "{how}: {}", stderr(&o));
        let results = out.join(format!("results.jsonl.{how}"));
        assert_eq!(fs::metadata(&results).unwrap().len(), 0, "{how}");
        let o = aggregate(&["--output", dir, "--append"], &failing(0, 1));
        assert_eq!(o.status.code(), Some(1), "{how}: {}", stderr(&o));
        // An empty file is no damage: nothing to warn about.
        assert_eq!(stderr(&o), "", "{how}");
        assert_eq!(summary_count(dir), "p: 1 result: 1 fail", "{how}");
        assert!(fs::metadata(&results).unwrap().len() > 0, "{how}");

        // A kill -9 before the first flush: the file exists, 0 bytes.
        let out = tmp.path().join("killed");
        fs::create_dir_all(&out).unwrap();
        fs::write(out.join(format!("results.jsonl.{how}")), "").unwrap();
        let dir = out.to_str().unwrap();
        let o = aggregate(&["--output", dir, "--append"], &failing(0, 20_000));
        assert_eq!(o.status.code(), Some(1), "{how}: {}", stderr(&o));
        assert_eq!(summary_count(dir), "p: 20000 results: 20000 fail", "{how}");
    }
}

/// Issue 10 item 4, the other states a compressed results file can be in:
/// a truncated last member or stream (a kill -9 in the middle of a
/// flush), garbage after the last member, a damaged member followed by
/// good ones. What can be read is kept, the damage is named in a warning
/// (and the file as it was is kept aside), and the appended results are
/// stored after it.
#[test]
fn append_to_a_damaged_compressed_store_keeps_what_is_readable() {
    use atex_aggregate::store::Compression;
    for c in [Compression::Gz, Compression::Xz] {
        let how = &c.suffix()[1..];
        let member = |from: usize, n: usize| {
            let lines: String = (from..from + n)
                .map(|i| format!("[\"p\", \"pass\", \"/t{i}\", null, [], null]\n"))
                .collect();
            c.compress(lines.as_bytes()).unwrap()
        };
        let (first, second) = (member(0, 100), member(100, 100));
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "truncated",
                [&first[..], &second[..second.len() - 20]].concat(),
                "p: 101 results: 100 pass, 1 fail",
            ),
            (
                "garbage",
                [&first[..], &second[..], b"\x00garbage\xff\n"].concat(),
                "p: 201 results: 200 pass, 1 fail",
            ),
            (
                "middle",
                [&first[..], &first[..first.len() / 2], &second[..]].concat(),
                "p: 201 results: 200 pass, 1 fail",
            ),
        ];
        for (case, bytes, want) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let out = tmp.path().join("store");
            fs::create_dir_all(&out).unwrap();
            let results = out.join(format!("results.jsonl.{how}"));
            fs::write(&results, &bytes).unwrap();
            let dir = out.to_str().unwrap();
            // `summary` counts what it can read and says the rest is not.
            let s = aggregate(&["summary", dir], "");
            assert_eq!(s.status.code(), Some(0), "{how} {case}");
            assert!(
                stderr(&s).starts_with("atex-aggregate: warning: the results file in ")
                    && stderr(&s).contains(" is damaged ("),
                "{how} {case}: {}",
                stderr(&s)
            );
            let o = aggregate(&["--output", dir, "--append"], &failing(1000, 1));
            assert_eq!(o.status.code(), Some(1), "{how} {case}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(
                err.starts_with("atex-aggregate: warning: ") && err.contains("damaged"),
                "{how} {case}: {err}"
            );
            // Everything read back, the damaged part of the middle member
            // aside, and the new result after it.
            let s = summary_count(dir);
            if case == "truncated" {
                // The cut member gives back its complete lines, at most 100.
                assert!(s.starts_with("p: "), "{how} {case}: {s}");
                let n: usize = s[3..].split(' ').next().unwrap().parse().unwrap();
                assert!((101..=201).contains(&n), "{how} {case}: {s}");
            } else {
                assert_eq!(s, want, "{how} {case}");
            }
            assert!(summary_count(dir).contains("1 fail"), "{how} {case}");
            // The file as it was is kept for whoever wants the rest.
            let kept: Vec<_> = fs::read_dir(out.join(".atex-aggregate"))
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("damaged-"))
                .collect();
            assert_eq!(kept.len(), 1, "{how} {case}");
            assert_eq!(fs::read(kept[0].path()).unwrap(), bytes, "{how} {case}");
            // A second append finds a whole file: no warning.
            let o = aggregate(&["--output", dir, "--append"], &failing(2000, 1));
            assert_eq!(
                (o.status.code(), stderr(&o)),
                (Some(1), String::new()),
                "{how} {case}"
            );
            assert!(summary_count(dir).contains("2 fail"), "{how} {case}");
        }
    }
}

/// Issue 10 item 16: bad YAML given to `convert --from tmt` is one line
/// with its file:line:col (it was ruamel's multi-line text after `:0:`).
#[test]
fn convert_bad_tmt_yaml_is_one_line_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("results.yaml");
    fs::write(&file, "- name: /a\n  result: [pass\n").unwrap();
    let path = file.to_str().unwrap();
    let o = aggregate(&["convert", "--from", "tmt", "--to", "atex", path], "");
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("atex-aggregate: error: {path}:3:1: ")),
        "{err}"
    );
    assert!(!err.contains(":0:"), "{err}");
    // A document that is not a list has no line to name.
    fs::write(&file, "a: 1\n").unwrap();
    let o = aggregate(&["convert", "--from", "tmt", "--to", "atex", path], "");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("atex-aggregate: error: {path}: not a list of results\n")
    );
}

/// Issue 10 item 16: `--output` naming a file (or a path under one) is a
/// usage error, exit 2, said plainly (it was exit 3, "File exists").
#[test]
fn output_that_is_a_file_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, "x").unwrap();
    for out in [file.clone(), file.join("sub")] {
        let dir = out.to_str().unwrap();
        let o = aggregate(&["--output", dir], &failing(0, 1));
        assert_eq!(o.status.code(), Some(2), "{dir}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with(&format!("atex-aggregate: error: --output {dir}: ")),
            "{}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    }
    assert_eq!(read(&file), "x");
}

/// Issue 10 item 11: a line over `--max-line-size` is bad input for that
/// line (exit 2, `<stdin>:LINE:COL`), what came before is stored; a line
/// of exactly the cap is taken, wherever it falls in the reads.
#[test]
fn a_line_over_the_cap_is_bad_input_for_that_line() {
    let tmp = tempfile::tempdir().unwrap();
    let record = |note_len: usize| {
        let head = "{\"test\": \"/long\", \"status\": \"pass\", \"platform\": \"p\", \"note\": \"";
        format!("{head}{}\"}}\n", "n".repeat(note_len))
    };
    let cap = 300_000;
    let exactly = record(cap - record(0).len() + 1);
    assert_eq!(exactly.len(), cap + 1);
    for (i, (long, code)) in [(exactly.clone(), 0), (record(cap), 2)]
        .into_iter()
        .enumerate()
    {
        let out = tmp.path().join(format!("store{i}"));
        let dir = out.to_str().unwrap();
        let input = failing(0, 1) + &long + &failing(1, 1);
        let o = aggregate(
            &["--output", dir, "--max-line-size", &cap.to_string()],
            &input,
        );
        let err = stderr(&o);
        if code == 0 {
            assert_eq!(o.status.code(), Some(1), "{err}");
            assert_eq!(summary_count(dir), "p: 3 results: 2 fail, 1 pass");
        } else {
            assert_eq!(o.status.code(), Some(2), "{err}");
            assert_eq!(
                err,
                format!(
                    "atex-aggregate: error: <stdin>:2:{}: the line is longer than {cap} bytes (--max-line-size)\n",
                    cap + 1
                )
            );
            assert_eq!(summary_count(dir), "p: 1 result: 1 fail");
        }
    }
    // The line still being read when it passes the cap (no newline yet).
    let out = tmp.path().join("endless");
    let dir = out.to_str().unwrap();
    let input = failing(0, 1) + &"x".repeat(5 * cap);
    let o = aggregate(
        &["--output", dir, "--max-line-size", &cap.to_string()],
        &input,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("<stdin>:2:300001: the line is longer"),
        "{}",
        stderr(&o)
    );
    assert_eq!(summary_count(dir), "p: 1 result: 1 fail");
}

/// One attempt's Result record of `test` (atex-exec's layout: its own
/// artifacts directory, `output` as its `output.txt` when given).
fn attempt(
    root: &Path,
    test: &str,
    status: &str,
    note: Option<&str>,
    attempt: u32,
    output: Option<&str>,
) -> String {
    let a = root.join(format!("artifacts{test}/{attempt}"));
    fs::create_dir_all(a.join("files")).unwrap();
    let mut files = Vec::new();
    if let Some(text) = output {
        fs::write(a.join("files/output.txt"), text).unwrap();
        files.push("output.txt");
    }
    serde_json::json!({
        "test": test, "status": status, "note": note, "files": files,
        "platform": "f41", "machine": format!("m{attempt}"), "artifacts": a,
        "started": format!("S{attempt}"), "duration": 1.0, "attempt": attempt
    })
    .to_string()
        + "\n"
}

/// Earlier attempts as atex-orchestrate leaves them in `attempts/`:
/// /t/flaky failed once, /t/err errored once, /t/broken ended infra, then
/// failed; /t/steady ran once.
fn earlier_attempts(root: &Path) -> String {
    attempt(
        root,
        "/t/flaky",
        "fail",
        Some("first <try>"),
        0,
        Some("out 1\n"),
    ) + &attempt(root, "/t/broken", "infra", Some("lost"), 0, None)
        + &attempt(root, "/t/err", "error", None, 0, Some("trace\n"))
        + &attempt(
            root,
            "/t/broken",
            "fail",
            Some("again"),
            1,
            Some("out b1\n"),
        )
}

/// The final attempts of the tests of [`earlier_attempts`].
fn final_attempts(root: &Path) -> String {
    attempt(root, "/t/flaky", "pass", None, 1, Some("ok\n"))
        + &attempt(
            root,
            "/t/broken",
            "fail",
            Some("still"),
            2,
            Some("out b2\n"),
        )
        + &attempt(root, "/t/steady", "pass", None, 0, None)
        + &attempt(root, "/t/err", "pass", None, 1, None)
}

/// Each testcase of a JUnit file: (classname, [(element, type, message,
/// text)]) of its children, text including a `<stackTrace>`'s.
type Case = (String, Vec<(String, String, String, String)>);

fn junit_cases(junit: &str) -> Vec<Case> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(junit);
    let mut cases: Vec<Case> = Vec::new();
    // Inside one of a testcase's result elements: its text counts.
    let mut inside = false;
    loop {
        let event = reader.read_event().expect("junit.xml is well-formed XML");
        let start = matches!(event, Event::Start(_));
        match event {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &str| {
                    e.try_get_attribute(name)
                        .unwrap()
                        .map(|a| a.unescape_value().unwrap().into_owned())
                        .unwrap_or_default()
                };
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                const RESULTS: [&str; 7] = [
                    "failure",
                    "error",
                    "skipped",
                    "flakyFailure",
                    "flakyError",
                    "rerunFailure",
                    "rerunError",
                ];
                if name == "testcase" {
                    cases.push((attr("classname"), Vec::new()));
                } else if RESULTS.contains(&name.as_str())
                    && let Some((_, children)) = cases.last_mut()
                {
                    children.push((name, attr("type"), attr("message"), String::new()));
                    inside = start;
                }
            }
            Event::End(e) if e.name().as_ref() != b"stackTrace" => inside = false,
            // Character references come as events of their own.
            Event::Text(t) if inside => {
                if let Some(child) = cases.last_mut().and_then(|c| c.1.last_mut()) {
                    child
                        .3
                        .push_str(&quick_xml::escape::unescape(&t.decode().unwrap()).unwrap());
                }
            }
            Event::GeneralRef(r) if inside => {
                if let Some(child) = cases.last_mut().and_then(|c| c.1.last_mut()) {
                    let name = r.decode().unwrap();
                    child
                        .3
                        .push_str(&quick_xml::escape::unescape(&format!("&{name};")).unwrap());
                }
            }
            _ => {}
        }
    }
    cases
}

/// A result element: (element, type, message, text).
type Child<'a> = (&'a str, &'a str, &'a str, &'a str);

/// The result elements of the named testcases in the JUnit file at `junit`
/// are the wanted ones, in order.
fn assert_children(junit: &Path, want: &[(&str, &[Child<'_>])]) {
    let cases = junit_cases(&read(junit));
    for (test, children) in want {
        let got = &cases
            .iter()
            .find(|(c, _)| c == test)
            .unwrap_or_else(|| panic!("no testcase {test}"))
            .1;
        let want: Vec<_> = children
            .iter()
            .map(|(e, t, m, x)| (e.to_string(), t.to_string(), m.to_string(), x.to_string()))
            .collect();
        assert_eq!(got, &want, "{test}");
    }
}

#[test]
fn earlier_attempts_mark_flaky_and_rerun_results() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("store");
    let o = out.to_str().unwrap();
    // The attempts sub-store first, as atex-orchestrate writes it.
    let attempts = out.join("attempts");
    let r = aggregate(
        &["--output", attempts.to_str().unwrap()],
        &earlier_attempts(tmp.path()),
    );
    assert_eq!(r.status.code(), Some(3), "{}", stderr(&r));
    let finals = final_attempts(tmp.path());
    let r = aggregate(&["--output", o], &finals);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));

    // JUnit: Surefire's elements, in its schema's order.
    assert_children(
        &out.join("junit.xml"),
        &[
            (
                "/t/flaky",
                &[(
                    "flakyFailure",
                    "fail",
                    "first <try>",
                    "first <try>\n\nout 1\n",
                )],
            ),
            ("/t/err", &[("flakyError", "error", "error", "trace\n")]),
            (
                "/t/broken",
                &[
                    ("failure", "fail", "still", "still\n\nout b2\n"),
                    ("rerunFailure", "fail", "again", "again\n\nout b1\n"),
                    ("rerunError", "infra", "lost", "lost"),
                ],
            ),
            ("/t/steady", &[]),
        ],
    );
    // The suite counts final results only: one failure, no error.
    let junit = read(&out.join("junit.xml"));
    assert!(
        junit.contains("tests=\"4\" failures=\"1\" errors=\"0\""),
        "{junit}"
    );

    // The page's data: attempts, the flaky mark and the earlier statuses
    // on rerun tests' rows only; the flaky total and its filter.
    let html = read(&out.join("index.html"));
    assert!(
        html.contains(
            "\"/t/flaky\", null, [\"output.txt\"], null, \"files/f41/t/flaky\", 1, {\"attempts\": 2, \"flaky\": true, \"earlier\": [\"fail\"]}],"
        ),
        "{html}"
    );
    assert!(
        html.contains("{\"attempts\": 3, \"flaky\": false, \"earlier\": [\"infra\", \"fail\"]}],"),
        "{html}"
    );
    assert!(
        html.contains("\"/t/steady\", null, [], null, null, 1],"),
        "{html}"
    );
    assert!(html.contains("<th class=\"flaky\">flaky</th>"), "{html}");
    assert!(
        html.contains("id=\"flaky-only\"> flaky only (2)</label>"),
        "{html}"
    );

    // summary counts the flaky tests.
    let s = aggregate(&["summary", o], "");
    assert_eq!(s.status.code(), Some(1));
    assert!(
        stdout(&s).contains(
            "flaky (2): failed, then passed on a rerun\n  /t/flaky: 2 attempts\n  /t/err: 2 attempts\n"
        ),
        "{}",
        stdout(&s)
    );

    // The same results without attempts/ (their files already moved):
    // the results file is the same, and nothing is marked.
    let plain = tmp.path().join("plain");
    let r = aggregate(&["--output", plain.to_str().unwrap()], &finals);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert_eq!(
        read(&plain.join("results.jsonl")),
        read(&out.join("results.jsonl"))
    );
    let junit = read(&plain.join("junit.xml"));
    assert!(
        !junit.contains("<flaky") && !junit.contains("<rerun"),
        "{junit}"
    );
    let html = read(&plain.join("index.html"));
    assert!(!html.contains("\"attempts\": ") && !html.contains("flaky only"));
    assert!(!stdout(&aggregate(&["summary", plain.to_str().unwrap()], "")).contains("flaky ("));
}

/// The library path atex-orchestrate drives: the store opened first, its
/// `attempts/` store opened at the first rerun, each attempt's results
/// ingested and flushed as the attempt ends (earlier ones there, the
/// final one in the store); the marks come through the same calls.
#[test]
fn attempts_written_during_the_run_reach_the_final_results() {
    use atex_aggregate::ingest::{Aggregator, Config};
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("store");
    let mut store = Aggregator::open(&Config::new(&out)).unwrap();
    let mut attempts: Option<Aggregator> = None;
    let root = tmp.path();
    // (record, is a rerun), in the order the attempts end.
    let ended = [
        (attempt(root, "/t/steady", "pass", None, 0, None), false),
        (
            attempt(root, "/t/flaky", "fail", Some("first"), 0, Some("o1\n")),
            true,
        ),
        (
            attempt(root, "/t/broken", "infra", Some("lost"), 0, None),
            true,
        ),
        (attempt(root, "/t/flaky", "pass", None, 1, None), false),
        (
            attempt(root, "/t/broken", "fail", Some("again"), 1, None),
            false,
        ),
    ];
    for (n, (line, rerun)) in ended.iter().enumerate() {
        let target = if *rerun {
            attempts.get_or_insert_with(|| {
                Aggregator::open(&Config::new(out.join("attempts"))).unwrap()
            })
        } else {
            &mut store
        };
        target
            .ingest_line(line.trim_end().as_bytes(), "test", n + 1)
            .unwrap();
        target.flush().unwrap();
    }
    store.render().unwrap();
    attempts.unwrap().render().unwrap();

    let flaky: &[Child<'_>] = &[("flakyFailure", "fail", "first", "first\n\no1\n")];
    let broken: &[Child<'_>] = &[
        ("failure", "fail", "again", "again"),
        ("rerunError", "infra", "lost", "lost"),
    ];
    let junit = out.join("junit.xml");
    assert_children(
        &junit,
        &[
            ("/t/flaky", flaky),
            ("/t/broken", broken),
            ("/t/steady", &[]),
        ],
    );
    let html = read(&out.join("index.html"));
    assert!(
        html.contains("{\"attempts\": 2, \"flaky\": true, \"earlier\": [\"fail\"]}],"),
        "{html}"
    );

    // --append (a resumed run) rebuilds lost report lines with the marks.
    fs::remove_file(out.join(".atex-aggregate/junit-0.xml")).unwrap();
    let o = out.to_str().unwrap();
    let r = aggregate(&["--output", o, "--append", "--no-tests=pass"], "");
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert_children(&junit, &[("/t/flaky", flaky)]);
    let html = read(&out.join("index.html"));
    assert!(html.contains("flaky only (1)"), "{html}");
}
