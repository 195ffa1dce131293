//! Integration tests of the `atex-discover` binary: fmf trees written to
//! temporary directories, the real binary run on them, its stdout parsed
//! into atex-shared records.
#![expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]

use std::path::{Path, PathBuf};
use std::process::Command;

use atex_shared::records::Test;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_atex-discover");

/// What one run of the binary gave.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run atex-discover");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of `tests/fixtures/tree` in a temporary directory.
fn fixture() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tree"),
        dir.path(),
    );
    dir
}

/// A tree made of `(path, content)` files, with `.fmf/version` unless
/// `files` says otherwise.
fn tree(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut files = files.to_vec();
    if !files.iter().any(|(path, _)| path.starts_with(".fmf")) {
        files.push((".fmf/version", "1\n"));
    }
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// The records of a successful run.
fn tests(output: &Output) -> Vec<Test> {
    assert_eq!(output.code, Some(0), "stderr: {}", output.stderr);
    output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a Test record"))
        .collect()
}

fn names(tests: &[Test]) -> Vec<&str> {
    tests.iter().map(|t| t.name.as_str()).collect()
}

fn by_name<'t>(tests: &'t [Test], name: &str) -> &'t Test {
    tests
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no test {name}"))
}

/// A run that rejected its input: exit 2, no records, one error line that
/// starts with `FILE:LINE:` for the file ending `file`.
fn assert_invalid(output: &Output, file: &str, line: usize) {
    assert_eq!(
        output.code,
        Some(2),
        "stdout: {} stderr: {}",
        output.stdout,
        output.stderr
    );
    assert_eq!(output.stdout, "");
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {}", output.stderr);
    let message = lines[0]
        .strip_prefix("atex-discover: error: ")
        .expect("error prefix");
    let (path, rest) = message.split_once(':').expect("FILE:");
    assert!(path.ends_with(file), "{message}");
    assert!(rest.starts_with(&format!("{line}:")), "{message}");
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap()
}

#[test]
fn dummy_plan_selects_tests_in_order() {
    let dir = fixture();
    let got = tests(&run(dir.path(), &["tests"]));
    assert_eq!(names(&got), ["/tests/first", "/tests/basic", "/tests/slow"]);
    let basic = by_name(&got, "/tests/basic");
    assert_eq!(canonical(&basic.root), canonical(dir.path()));
    assert_eq!(basic.path, "tests/basic");
    assert_eq!(basic.test, "./runtest.sh");
    assert_eq!(basic.duration, 300);
    assert_eq!(basic.require, [serde_json::json!("make")]);
    assert_eq!(
        basic.recommend,
        [serde_json::json!({"type": "library", "name": "/x"})]
    );
    assert_eq!(basic.tag, ["fast"]);
    assert!(!basic.tty);
    let env: Vec<(&str, &str)> = basic
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [("FROM", "test"), ("TEST_ONLY", "1"), ("BOOL", "True")]
    );
    assert_eq!(basic.data["summary"], "The basic test");
    assert_eq!(
        basic.data["custom-key"],
        serde_json::json!({"nested": [1, 2.5]})
    );
    assert_eq!(basic.data["contact"], "someone@example.com");
    assert_eq!(basic.plan.name, "/default/plan");
    assert!(basic.plan.prepare.is_empty() && basic.plan.environment.is_empty());
    let first = by_name(&got, "/tests/first");
    assert!(first.tty);
    assert!(!first.environment.contains_key("DISTRO"));
}

#[test]
fn root_option_and_durations() {
    let dir = fixture();
    let elsewhere = tempfile::tempdir().unwrap();
    let root = dir.path().join("tests");
    let got = tests(&run(
        elsewhere.path(),
        &["tests", "--root", root.to_str().unwrap()],
    ));
    assert_eq!(canonical(&got[0].root), canonical(dir.path()));
    assert_eq!(by_name(&got, "/tests/slow").duration, 3630);
    // adjust with the CLI context, case-insensitively (`Fedora` in the rule).
    let got = tests(&run(dir.path(), &["tests", "-c", "distro=fedora-41"]));
    let first = by_name(&got, "/tests/first");
    assert_eq!(first.duration, 600);
    assert_eq!(first.environment["DISTRO"], "fedora");
    assert_eq!(first.plan.context["distro"], ["fedora-41"]);
}

#[test]
fn plan_environment_context_and_phases() {
    let dir = fixture();
    let got = tests(&run(dir.path(), &["tests", "--plan", "/plans/ci"]));
    assert_eq!(names(&got), ["/tests/first", "/tests/basic", "/tests/slow"]);
    let basic = by_name(&got, "/tests/basic");
    let plan = &basic.plan;
    assert_eq!(plan.name, "/plans/ci");
    let env: Vec<(&str, &str)> = plan
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("FROM", "plan"),
            ("FILE_ONLY", "from the file"),
            ("PLAN_ONLY", "yes")
        ]
    );
    // The plan's environment overrides the test's in the record.
    assert_eq!(basic.environment["FROM"], "plan");
    assert_eq!(basic.environment["TEST_ONLY"], "1");
    assert_eq!(plan.context["distro"], ["centos-9"]);
    let prepare: Vec<&str> = plan
        .prepare
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(prepare, ["install", "late"]);
    assert_eq!(plan.prepare[0]["package"], serde_json::json!(["make"]));
    assert_eq!(
        plan.finish,
        [serde_json::json!({"name": "default-0", "how": "shell", "script": "echo bye"})]
    );

    // The CLI context wins over the plan's, and `when` follows it.
    let got = tests(&run(
        dir.path(),
        &["tests", "--plan", "/plans/ci", "-c", "distro=fedora-41"],
    ));
    let plan = &got[0].plan;
    assert_eq!(plan.context["distro"], ["fedora-41"]);
    let prepare: Vec<&str> = plan
        .prepare
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(prepare, ["install", "fedora-only", "late"]);
}

#[test]
fn plan_by_regex_and_ambiguity() {
    let dir = fixture();
    let got = tests(&run(dir.path(), &["tests", "--plan", "ci$"]));
    assert_eq!(got[0].plan.name, "/plans/ci");
    let output = run(dir.path(), &["tests", "--plan", "plans"]);
    assert_eq!(output.code, Some(2));
    assert_eq!(output.stdout, "");
    assert!(output.stderr.contains("ambiguous"), "{}", output.stderr);
    let output = run(dir.path(), &["tests", "--plan", "/plans/nope"]);
    assert_eq!(output.code, Some(2));
    assert_eq!(output.stdout, "");
    assert_eq!(output.stderr.lines().count(), 1);
    assert!(output.stderr.contains("/plans/nope"), "{}", output.stderr);
}

#[test]
fn named_sections_and_when() {
    let dir = fixture();
    let got = tests(&run(dir.path(), &["tests", "--plan", "/plans/sections"]));
    // Patterns concatenate in their order; the `rest` section is skipped
    // (its `when` cannot be decided without `distro`).
    assert_eq!(names(&got), ["/quick/tests/first", "/quick/tests/basic"]);
    // Paths stay relative to the real root.
    assert_eq!(got[1].path, "tests/basic");
    assert_eq!(got[1].data["summary"], "The basic test");
    let got = tests(&run(
        dir.path(),
        &["tests", "--plan", "/plans/sections", "-c", "distro=fedora"],
    ));
    assert_eq!(
        names(&got),
        [
            "/quick/tests/first",
            "/quick/tests/basic",
            "/rest/tests/slow"
        ]
    );
}

#[test]
fn adjust_tests_and_section_filter() {
    let dir = fixture();
    let got = tests(&run(dir.path(), &["tests", "--plan", "/plans/adjusted"]));
    assert_eq!(names(&got), ["/tests/basic"]);
    assert_eq!(got[0].duration, 120);
}

#[test]
fn cli_selection() {
    let dir = fixture();
    let select = |args: &[&str]| {
        let mut all = vec!["tests"];
        all.extend_from_slice(args);
        let got = tests(&run(dir.path(), &all));
        names(&got)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(select(&["--filter", "tag: fast"]), ["/tests/basic"]);
    assert_eq!(select(&["--filter", "tier: 1"]), ["/tests/slow"]);
    assert_eq!(
        select(&["--filter", "enabled: true", "--filter", "order: 50"]),
        ["/tests/basic"]
    );
    assert_eq!(
        select(&["--filter", "tty: True | tag: fast"]),
        ["/tests/first", "/tests/basic"]
    );
    assert_eq!(
        select(&["--test", "s"]),
        ["/tests/first", "/tests/basic", "/tests/slow"]
    );
    assert_eq!(
        select(&["--test", "slow", "--test", "first"]),
        ["/tests/first", "/tests/slow"]
    );
    assert_eq!(
        select(&["--exclude", "first", "--exclude", "slow"]),
        ["/tests/basic"]
    );
}

#[test]
fn bad_yaml() {
    let dir = tree(&[
        ("main.fmf", "test: x\n"),
        ("broken/main.fmf", "summary: a\ntest: [x\n"),
    ]);
    let output = run(dir.path(), &["tests"]);
    assert_eq!(output.code, Some(2));
    assert_eq!(output.stdout, "");
    assert!(
        output.stderr.contains("broken/main.fmf:"),
        "{}",
        output.stderr
    );
}

#[test]
fn duplicate_keys() {
    let dir = tree(&[("t.fmf", "test: x\nsummary: a\ntest: y\n")]);
    assert_invalid(&run(dir.path(), &["tests"]), "t.fmf", 3);
}

#[test]
fn unclosed_flow_sequence() {
    let dir = tree(&[("t.fmf", "test: x\nenvironment: [1\n")]);
    let output = run(dir.path(), &["tests"]);
    assert_eq!(output.code, Some(2));
    assert_eq!(output.stdout, "");
    assert!(output.stderr.contains("t.fmf:"), "{}", output.stderr);
}

#[test]
fn wrong_types_are_located() {
    let dir = tree(&[
        ("tests/a.fmf", "test: x\n"),
        (
            "plans/bad.fmf",
            "summary: bad\n\ndiscover: 5\nexecute: {how: tmt}\n",
        ),
        (
            "plans/env.fmf",
            "discover: {how: fmf}\nexecute: {how: tmt}\nenvironment: 3\n",
        ),
    ]);
    assert_invalid(
        &run(dir.path(), &["tests", "--plan", "/plans/bad"]),
        "plans/bad.fmf",
        3,
    );
    assert_invalid(
        &run(dir.path(), &["tests", "--plan", "/plans/env"]),
        "plans/env.fmf",
        3,
    );
    let output = run(dir.path(), &["plans"]);
    assert_invalid(&output, "plans/bad.fmf", 3);
    let dir = tree(&[("main.fmf", "/a:\n    test: x\n    environment: 3\n")]);
    assert_invalid(&run(dir.path(), &["tests"]), "main.fmf", 3);
}

#[test]
fn invalid_duration_is_located() {
    let dir = tree(&[
        ("tests/main.fmf", "duration: 5m\n"),
        ("tests/a/main.fmf", "test: x\n\nduration: 1.5h\n"),
        ("tests/b/main.fmf", "test: y\n"),
    ]);
    let output = run(dir.path(), &["tests"]);
    assert_invalid(&output, "tests/a/main.fmf", 3);
    assert!(output.stderr.contains("1.5h"), "{}", output.stderr);
}

#[test]
fn missing_version() {
    let dir = tree(&[(".fmf/config", ""), ("t.fmf", "test: x\n")]);
    let output = run(dir.path(), &["tests"]);
    assert_eq!(output.code, Some(2), "{}", output.stderr);
    assert_eq!(output.stdout, "");
    assert_eq!(output.stderr.lines().count(), 1, "{}", output.stderr);
    assert!(output.stderr.contains("version"), "{}", output.stderr);
}

#[test]
fn not_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["tests"]);
    assert_eq!(output.code, Some(2));
    assert_eq!(output.stdout, "");
    assert_eq!(output.stderr.lines().count(), 1, "{}", output.stderr);
}

#[test]
fn plans_listing() {
    let dir = fixture();
    let output = run(dir.path(), &["plans"]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let plans: Vec<serde_json::Value> = output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let names: Vec<&str> = plans.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["/plans/adjusted", "/plans/ci", "/plans/sections"]);
    assert_eq!(plans[1]["summary"], "The CI plan");
    assert_eq!(
        plans[1]["discover"],
        serde_json::json!([{"name": "default-0", "how": "fmf"}])
    );
    let sections: Vec<&str> = plans[2]["discover"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(sections, ["quick"]);
    let output = run(dir.path(), &["plans", "-c", "distro=fedora"]);
    let plans: Vec<serde_json::Value> = output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let sections: Vec<&str> = plans[2]["discover"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(sections, ["quick", "rest"]);
}

#[test]
fn help_texts() {
    let dir = tempfile::tempdir().unwrap();
    let tests_help = run(dir.path(), &["tests", "--help"]);
    assert_eq!(tests_help.code, Some(0));
    insta::assert_snapshot!("tests_help", tests_help.stdout);
    let plans_help = run(dir.path(), &["plans", "--help"]);
    assert_eq!(plans_help.code, Some(0));
    insta::assert_snapshot!("plans_help", plans_help.stdout);
}

#[test]
fn plan_adjust_uses_the_cli_context_only() {
    let dir = tree(&[
        (
            "plans/p.fmf",
            "context: {distro: fedora}\ndiscover: {how: fmf}\nexecute: {how: tmt}\nenvironment: {A: base}\nadjust:\n  - when: distro == fedora\n    environment: {A: adjusted}\n",
        ),
        (
            "tests/t.fmf",
            "test: x\nadjust:\n  - when: distro == fedora\n    environment: {T: fedora}\n",
        ),
    ]);
    let got = tests(&run(dir.path(), &["tests", "--plan", "/plans/p"]));
    assert_eq!(got[0].plan.environment["A"], "base");
    assert_eq!(got[0].environment["T"], "fedora");
    let got = tests(&run(
        dir.path(),
        &["tests", "--plan", "/plans/p", "-c", "distro=fedora"],
    ));
    assert_eq!(got[0].plan.environment["A"], "adjusted");
}

#[test]
fn invalid_plan_details() {
    let dir = tree(&[
        ("tests/t.fmf", "test: x\n"),
        (
            "plans/when.fmf",
            "execute: {how: tmt}\nprepare:\n  - script: x\n    when: distro ==\n",
        ),
        (
            "plans/file.fmf",
            "execute: {how: tmt}\nenvironment-file: [missing.env]\n",
        ),
        (
            "plans/url.fmf",
            "execute: {how: tmt}\ndiscover:\n    how: fmf\n    url: https://example.com/x.git\n",
        ),
    ]);
    assert_invalid(
        &run(dir.path(), &["tests", "--plan", "/plans/when"]),
        "plans/when.fmf",
        4,
    );
    let output = run(dir.path(), &["tests", "--plan", "/plans/file"]);
    assert_invalid(&output, "plans/file.fmf", 2);
    assert!(output.stderr.contains("missing.env"), "{}", output.stderr);
    assert_invalid(
        &run(dir.path(), &["tests", "--plan", "/plans/url"]),
        "plans/url.fmf",
        4,
    );
    let output = run(dir.path(), &["tests", "--filter", "test: ("]);
    assert_eq!((output.code, output.stdout.as_str()), (Some(2), ""));
}
