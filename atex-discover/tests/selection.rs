//! What `atex-discover tests` says when its selection is empty or a plan
//! is malformed: exit 4 (or `--no-tests`) naming what selected nothing,
//! exit 2 with FILE:LINE:COL for a `when` rule or filter that does not
//! parse, the tree's plans when none is asked for, and a suggestion for a
//! plan that does not exist. Each test runs the real binary on a tree
//! written to a temporary directory.
#![expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]

use std::path::Path;
use std::process::Command;

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
        .unwrap();
    Output {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A tree made of `(path, content)` files, with `.fmf/version`.
fn tree(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut files = files.to_vec();
    files.push((".fmf/version", "1\n"));
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// Three tests and two plans, one of which selects nothing.
fn sample() -> TempDir {
    tree(&[
        ("tests/a.fmf", "test: ./a.sh\ntag: [fast]\n"),
        ("tests/b.fmf", "test: ./b.sh\ntag: [slow]\n"),
        ("tests/c.fmf", "test: ./c.sh\n"),
        (
            "plans/ci.fmf",
            "discover: {how: fmf}\nexecute: {how: tmt}\ncontext: {distro: fedora-41}\n",
        ),
        (
            "plans/none.fmf",
            "discover:\n    how: fmf\n    filter: 'tag: nosuchtag'\nexecute: {how: tmt}\n",
        ),
    ])
}

/// A run that selected nothing and failed for it: exit 4, no records, one
/// error line (after the note on plans, if any) holding every `part`.
fn assert_no_tests(output: &Output, parts: &[&str]) {
    assert_eq!(output.code, Some(4), "stderr: {}", output.stderr);
    assert_eq!(output.stdout, "");
    let error = output
        .stderr
        .lines()
        .find(|line| line.starts_with("atex-discover: error: "))
        .unwrap_or_else(|| panic!("no error line: {}", output.stderr));
    assert!(error.contains("no test selected"), "{error}");
    assert!(error.contains("--no-tests=pass"), "{error}");
    for part in parts {
        assert!(error.contains(part), "{part:?} not in: {error}");
    }
}

/// A run that rejected its input: exit 2, no records, one error line
/// starting with `FILE:LINE:COL:` for the file ending with `file`.
fn assert_invalid_at(output: &Output, file: &str, line: usize, column: usize) {
    assert_eq!(output.code, Some(2), "stderr: {}", output.stderr);
    assert_eq!(output.stdout, "");
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {}", output.stderr);
    let message = lines[0].strip_prefix("atex-discover: error: ").unwrap();
    let (path, rest) = message.split_once(':').unwrap();
    assert!(path.ends_with(file), "{message}");
    assert!(rest.starts_with(&format!("{line}:{column}:")), "{message}");
}

#[test]
fn a_test_name_that_selects_nothing_is_exit_4() {
    let dir = sample();
    let output = run(
        dir.path(),
        &["tests", "--plan", "/plans/ci", "--test", "nosuchtest"],
    );
    assert_no_tests(
        &output,
        &[
            "plan '/plans/ci'",
            "--test 'nosuchtest'",
            "context distro=fedora-41",
            "3 enabled tests",
        ],
    );
    // A selection that is not empty is still exit 0.
    let output = run(dir.path(), &["tests", "--plan", "/plans/ci", "--test", "a"]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(output.stdout.lines().count(), 1);
    assert_eq!(output.stderr, "");
}

#[test]
fn no_tests_option_chooses() {
    let dir = sample();
    let args = ["tests", "--plan", "/plans/ci", "--test", "nosuchtest"];
    let with = |choice: &str| {
        let mut all = args.to_vec();
        all.push(choice);
        run(dir.path(), &all)
    };
    let warn = with("--no-tests=warn");
    assert_eq!(warn.code, Some(0), "{}", warn.stderr);
    assert_eq!(warn.stdout, "");
    assert!(
        warn.stderr
            .starts_with("atex-discover: warning: no test selected"),
        "{}",
        warn.stderr
    );
    let pass = with("--no-tests=pass");
    assert_eq!((pass.code, pass.stdout.as_str()), (Some(0), ""));
    assert_eq!(pass.stderr, "");
    assert_no_tests(&with("--no-tests=fail"), &["--test 'nosuchtest'"]);
    let bad = with("--no-tests=maybe");
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
}

#[test]
fn a_plan_or_filter_that_selects_nothing_is_exit_4() {
    let dir = sample();
    assert_no_tests(
        &run(dir.path(), &["tests", "--plan", "/plans/none"]),
        &["plan '/plans/none'", "filter 'tag: nosuchtag'"],
    );
    assert_no_tests(
        &run(
            dir.path(),
            &["tests", "--plan", "/plans/ci", "--filter", "tag: nope"],
        ),
        &["--filter 'tag: nope'"],
    );
    assert_no_tests(
        &run(
            dir.path(),
            &["tests", "--plan", "/plans/ci", "--exclude", "/tests/"],
        ),
        &["--exclude '/tests/'"],
    );
}

#[test]
fn an_unknown_filter_key_is_named() {
    let dir = sample();
    let output = run(
        dir.path(),
        &["tests", "--plan", "/plans/ci", "--filter", "nosuchkey: x"],
    );
    assert_no_tests(
        &output,
        &["--filter 'nosuchkey: x'", "no test has key 'nosuchkey'"],
    );
    // A literal without `:` is a name search tmt filters cannot do.
    let output = run(
        dir.path(),
        &["tests", "--plan", "/plans/ci", "--filter", "tag fast"],
    );
    assert_no_tests(&output, &["--filter 'tag fast'", "use --test"]);
    // python fmf's semantics stay: a missing key fails the whole filter,
    // even with another clause true; missing in some tests only, it
    // deselects those.
    let output = run(
        dir.path(),
        &[
            "tests",
            "--plan",
            "/plans/ci",
            "--filter",
            "nosuchkey: 1 | tag: fast",
        ],
    );
    assert_no_tests(&output, &["no test has key 'nosuchkey'"]);
    let dir = tree(&[("a.fmf", "test: x\ncustom: yes\n"), ("b.fmf", "test: y\n")]);
    let output = run(dir.path(), &["tests", "--filter", "custom: yes"]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(output.stdout.lines().count(), 1);
}

#[test]
fn an_empty_tree_is_exit_4() {
    let dir = tree(&[("main.fmf", "summary: nothing to run\n")]);
    assert_no_tests(
        &run(dir.path(), &["tests"]),
        &["the tree has no enabled test"],
    );
    let dir = tree(&[
        ("t.fmf", "test: x\nenabled: false\n"),
        (
            "p.fmf",
            "/plans/never:\n    discover: {how: fmf, when: distro == rhel}\n    execute: {how: tmt}\n",
        ),
    ]);
    assert_no_tests(&run(dir.path(), &["tests"]), &["no enabled test"]);
    assert_no_tests(
        &run(dir.path(), &["tests", "--plan", "/plans/never"]),
        &["'how: fmf'"],
    );
}

#[test]
fn broken_when_rules_are_located() {
    let plan = "\
summary: x
discover: {how: fmf}
execute: {how: tmt}
adjust:
  - when: distro == fedora
    environment: {A: 1}
prepare:
  - how: shell
    script: echo
    when: distro ==
";
    let dir = tree(&[("tests/a.fmf", "test: x\n"), ("plans/p.fmf", plan)]);
    // The prepare rule, not the first `when:` of the file.
    assert_invalid_at(
        &run(dir.path(), &["tests", "--plan", "/plans/p"]),
        "plans/p.fmf",
        10,
        5,
    );
    // An adjust rule of a plan.
    let plan = "discover: {how: fmf}\nexecute: {how: tmt}\nadjust:\n  - when: distro ==\n    environment: {A: 1}\n";
    let dir = tree(&[("tests/a.fmf", "test: x\n"), ("plans/p.fmf", plan)]);
    let output = run(
        dir.path(),
        &["tests", "--plan", "/plans/p", "-c", "distro=fedora"],
    );
    assert_invalid_at(&output, "plans/p.fmf", 4, 5);
    assert!(
        output
            .stderr
            .contains("Cannot parse expression 'distro =='"),
        "{}",
        output.stderr
    );
    // An adjust rule of a test, inherited from its directory's main.fmf.
    let dir = tree(&[
        (
            "tests/main.fmf",
            "summary: all\n\nadjust:\n  when: arch =\n  enabled: false\n",
        ),
        ("tests/a.fmf", "test: x\n"),
    ]);
    assert_invalid_at(
        &run(dir.path(), &["tests", "-c", "arch=x86_64"]),
        "tests/main.fmf",
        4,
        3,
    );
    // An adjust-tests rule of a discover section.
    let plan = "discover:\n    how: fmf\n    adjust-tests:\n      - when: arch ==\n        duration: 1m\nexecute: {how: tmt}\n";
    let dir = tree(&[("tests/a.fmf", "test: x\n"), ("plans/p.fmf", plan)]);
    assert_invalid_at(
        &run(dir.path(), &["tests", "--plan", "/plans/p"]),
        "plans/p.fmf",
        4,
        9,
    );
}

#[test]
fn broken_filter_regexes_are_located() {
    let plan = "execute: {how: tmt}\ndiscover:\n    how: fmf\n    filter: 'tag: ('\n";
    // Test `b` has no tags: no data item ever reaches the regex, and the
    // filter is still an error.
    let dir = tree(&[("tests/b.fmf", "test: y\n"), ("plans/p.fmf", plan)]);
    let output = run(dir.path(), &["tests", "--plan", "/plans/p"]);
    assert_invalid_at(&output, "plans/p.fmf", 4, 5);
    assert!(output.stderr.contains("'tag: ('"), "{}", output.stderr);
    let plan = "execute: {how: tmt}\ndiscover:\n    how: fmf\n    filter:\n      - 'tag: fast'\n      - 'tier: ['\n";
    let dir = tree(&[("tests/b.fmf", "test: y\n"), ("plans/p.fmf", plan)]);
    assert_invalid_at(
        &run(dir.path(), &["tests", "--plan", "/plans/p"]),
        "plans/p.fmf",
        4,
        5,
    );
    // A --filter has no file: it is named as the option.
    let output = run(dir.path(), &["tests", "--filter", "tag: ("]);
    assert_eq!((output.code, output.stdout.as_str()), (Some(2), ""));
    assert!(
        output.stderr.contains("invalid --filter 'tag: ('"),
        "{}",
        output.stderr
    );
}

#[test]
fn without_a_plan_the_tree_plans_are_listed() {
    let dir = sample();
    let output = run(dir.path(), &["tests"]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(output.stdout.lines().count(), 3);
    assert_eq!(
        output.stderr,
        "atex-discover: note: no --plan given, using the default plan; this tree has plans: /plans/ci, /plans/none (their environment and filters are not applied)\n"
    );
    // With --plan, or without plans in the tree, nothing is said.
    let output = run(dir.path(), &["tests", "--plan", "/plans/ci"]);
    assert_eq!(output.stderr, "");
    let dir = tree(&[("a.fmf", "test: x\n")]);
    assert_eq!(run(dir.path(), &["tests"]).stderr, "");
    // Long lists are cut.
    let mut plans = String::new();
    for i in 0..13 {
        plans.push_str(&format!(
            "/p{i:02}:\n    discover: {{how: fmf}}\n    execute: {{how: tmt}}\n"
        ));
    }
    let dir = tree(&[("a.fmf", "test: x\n"), ("plans.fmf", &plans)]);
    let output = run(dir.path(), &["tests"]);
    assert!(
        output
            .stderr
            .contains("/plans/p08, /plans/p09 and 3 more (their"),
        "{}",
        output.stderr
    );
}

#[test]
fn an_unknown_plan_lists_the_plans() {
    let dir = sample();
    let output = run(dir.path(), &["tests", "--plan", "/plans/cii"]);
    assert_eq!((output.code, output.stdout.as_str()), (Some(2), ""));
    assert_eq!(
        output.stderr,
        "atex-discover: error: plan '/plans/cii' not found; did you mean '/plans/ci'? The tree's plans: /plans/ci, /plans/none\n"
    );
    let output = run(dir.path(), &["tests", "--plan", "nightly"]);
    assert_eq!(output.code, Some(2));
    assert!(
        output
            .stderr
            .ends_with("plan 'nightly' not found; the tree's plans: /plans/ci, /plans/none\n"),
        "{}",
        output.stderr
    );
    let dir = tree(&[("a.fmf", "test: x\n")]);
    let output = run(dir.path(), &["tests", "--plan", "/plans/ci"]);
    assert_eq!(output.code, Some(2));
    assert!(
        output.stderr.contains("the tree has no plans"),
        "{}",
        output.stderr
    );
}
