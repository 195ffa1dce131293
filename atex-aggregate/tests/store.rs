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
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("feed");
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
    let input = "{\"test\": \"/a\", \"status\": \"pass\", \"platform\": \"p\"}\n\n{\"test\": \"/b\"}\n{\"test\": \"/c\", \"status\": \"pass\"}\n";
    let o = aggregate(&["--output", out.to_str().unwrap()], input);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("atex-aggregate: error: <stdin>:3:"),
        "{err}"
    );
    assert!(err.contains("missing field `status`"), "{err}");
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
