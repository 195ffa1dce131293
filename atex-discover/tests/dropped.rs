//! Tests that must never vanish without a word (issue 10 item 10): a
//! directory the walk cannot read (no permission, a path longer than
//! PATH_MAX) is skipped with a warning naming it and the OS reason, and a
//! plan whose discover method atex does not implement is exit 2. Also the
//! position of an unterminated quoted string or last line (item 16). Each
//! test runs the real binary on a tree written to a temporary directory.
#![expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]

use std::os::unix::fs::PermissionsExt as _;
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

impl From<std::process::Output> for Output {
    fn from(output: std::process::Output) -> Self {
        Output {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
        .into()
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

/// Whether this process runs as root, for whom no mode bit hides a
/// directory.
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .unwrap();
    uid.split_whitespace().nth(1) == Some("0")
}

/// Run the binary as a user the mode bits apply to: as `nobody` (through
/// util-linux's setpriv) when the tests run as root, else as ourselves.
fn run_unprivileged(cwd: &Path, args: &[&str]) -> Output {
    let mut command = if is_root() {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            BIN,
        ]);
        command
    } else {
        Command::new(BIN)
    };
    command
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run setpriv (util-linux) to drop root")
        .into()
}

/// The warning lines of a run.
fn warnings(output: &Output) -> Vec<&str> {
    output
        .stderr
        .lines()
        .filter(|line| line.starts_with("atex-discover: warning: "))
        .collect()
}

#[test]
fn an_unreadable_directory_is_skipped_with_a_warning() {
    let dir = tree(&[
        ("tests/ok/main.fmf", "test: ./ok.sh\n"),
        ("tests/locked/deeper/main.fmf", "test: ./deeper.sh\n"),
    ]);
    // nobody must reach the tree; only `tests/locked` is closed.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("tests/locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let expected = format!(
        "atex-discover: warning: skipped {}: Permission denied (os error 13)",
        locked.display()
    );
    let outputs = [
        (vec!["ls", "."], "/tests/ok\n".to_owned()),
        (vec!["show", "."], String::new()),
        (vec!["tree", ".", "--no-sources"], String::new()),
        (vec!["plans"], String::new()),
        (vec!["tests"], String::new()),
    ];
    for (args, stdout) in outputs {
        let output = run_unprivileged(dir.path(), &args);
        assert_eq!(output.code, Some(0), "{args:?}: {}", output.stderr);
        // one warning, whatever the command
        assert_eq!(warnings(&output), [expected.as_str()], "{args:?}");
        if !stdout.is_empty() {
            assert_eq!(output.stdout, stdout, "{args:?}");
        }
        assert!(!output.stdout.contains("locked"), "{args:?}");
    }
    // The tests below it are the ones missing; the others stay.
    let output = run_unprivileged(dir.path(), &["tests"]);
    let names: Vec<String> = output
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["name"].to_string())
        .collect();
    assert_eq!(names, ["\"/tests/ok\""]);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Readable again: no warning, every test.
    let output = run_unprivileged(dir.path(), &["ls", "."]);
    assert_eq!(output.stderr, "");
    assert_eq!(output.stdout, "/tests/locked/deeper\n/tests/ok\n");
}

#[test]
fn a_directory_beyond_path_max_is_skipped_with_a_warning() {
    let dir = tree(&[("top.fmf", "test: ./top.sh\n")]);
    // 17 directories of 250 bytes: the deepest path exceeds PATH_MAX
    // (4096), which no system call takes, so the chain is built from the
    // bottom up, each level renamed into a new parent by short paths.
    let name = "d".repeat(250);
    let mut holder = dir.path().join("h0");
    std::fs::create_dir_all(holder.join(&name)).unwrap();
    std::fs::write(holder.join(&name).join("main.fmf"), "test: ./deep.sh\n").unwrap();
    for level in 1..17 {
        let parent = dir.path().join(format!("h{level}"));
        std::fs::create_dir_all(parent.join(&name)).unwrap();
        std::fs::rename(holder.join(&name), parent.join(&name).join(&name)).unwrap();
        std::fs::remove_dir(&holder).unwrap();
        holder = parent;
    }
    std::fs::rename(holder.join(&name), dir.path().join(&name)).unwrap();
    std::fs::remove_dir(&holder).unwrap();
    for args in [&["ls", "."][..], &["tests"]] {
        let output = run(dir.path(), args);
        assert_eq!(output.code, Some(0), "{args:?}: {}", output.stderr);
        let warnings = warnings(&output);
        assert_eq!(warnings.len(), 1, "{args:?}: {}", output.stderr);
        let warning = warnings[0]
            .strip_prefix("atex-discover: warning: skipped ")
            .unwrap();
        let (path, reason) = warning.rsplit_once(": ").unwrap();
        assert!(
            path.starts_with(&dir.path().join(&name).display().to_string()),
            "{path}"
        );
        assert!(path.len() > 4096, "{}", path.len());
        assert_eq!(reason, "File name too long (os error 36)");
        assert!(!output.stdout.contains("deep"), "{args:?}");
    }
    assert_eq!(run(dir.path(), &["ls", "."]).stdout, "/top\n");
}

#[test]
fn an_unsupported_discover_method_is_exit_2() {
    let shell = "\
summary: shell tests
discover:
    how: shell
    tests:
      - name: /a
        test: echo a
execute:
    how: tmt
";
    let mixed = "\
discover:
  - name: fmf
    how: fmf
  - name: scripts
    how: shell
    tests: [{name: /b, test: echo b}]
execute: {how: tmt}
";
    let dir = tree(&[
        ("tests/a.fmf", "test: ./a.sh\n"),
        ("plans/shell.fmf", shell),
        ("plans/mixed.fmf", mixed),
    ]);
    for (plan, phase, line, column) in [
        ("/plans/shell", "default-0", 3, 5),
        ("/plans/mixed", "scripts", 5, 5),
        // a regex naming the plan takes the other path through discovery
        ("shell$", "default-0", 3, 5),
    ] {
        let output = run(dir.path(), &["tests", "--plan", plan]);
        assert_eq!(output.code, Some(2), "{plan}: {}", output.stderr);
        assert_eq!(output.stdout, "", "{plan}");
        let lines: Vec<&str> = output.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{plan}: {}", output.stderr);
        let file = if phase == "scripts" { "mixed" } else { "shell" };
        let location = format!(
            "{}:{line}:{column}: ",
            dir.path().join(format!("plans/{file}.fmf")).display()
        );
        let message = lines[0]
            .strip_prefix("atex-discover: error: ")
            .and_then(|m| m.strip_prefix(&location))
            .unwrap_or_else(|| panic!("{location} not in: {}", lines[0]));
        assert!(
            message.ends_with(&format!(
                ": discover phase '{phase}': method 'how: shell' is not supported (supported: fmf)"
            )),
            "{message}"
        );
    }
    // A phase whose `when` does not apply is no phase of the run.
    let dir = tree(&[
        ("tests/a.fmf", "test: ./a.sh\n"),
        (
            "plans/p.fmf",
            "discover:\n  - {name: a, how: fmf}\n  - {name: b, how: shell, when: distro == rhel}\nexecute: {how: tmt}\n",
        ),
    ]);
    let output = run(dir.path(), &["tests", "--plan", "/plans/p"]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert_eq!(output.stdout.lines().count(), 1);
    // `plans` lists such plans as they are.
    let output = run(dir.path(), &["plans", "-c", "distro=rhel"]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert!(
        output.stdout.contains(r#""how":"shell""#),
        "{}",
        output.stdout
    );
}

#[test]
fn unterminated_strings_and_lines_are_reported_where_they_are() {
    for (text, line, column) in [
        ("x: 1\ny: 2\nz: \"abc\n", 3, 4),
        ("x: 1\ny: 2\nz: 'abc", 3, 4),
        ("x: 1\nl:\n  - a\n  - \"b\n", 4, 5),
        ("x: 1\r\ny: \"abc\r\n", 2, 4),
        // A last line without a line break: the end of the file is right
        // after its last character (it was put on a line after it, N+1:1).
        ("a: [b", 1, 6),
        ("x: 1\nkey: root\nli", 3, 3),
        ("x: 1\ny: {a: 1", 2, 9),
    ] {
        let dir = tree(&[("t.fmf", text)]);
        let output = run(dir.path(), &["ls", "."]);
        assert_eq!(output.code, Some(2), "{text:?}");
        let location = format!("{}:{line}:{column}: ", dir.path().join("t.fmf").display());
        assert!(
            output
                .stderr
                .starts_with(&format!("atex-discover: error: {location}")),
            "{text:?}: {}",
            output.stderr
        );
    }
}
