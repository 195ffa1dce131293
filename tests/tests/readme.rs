//! The commands a newcomer copies first, run exactly as written: the
//! README's `discover | exec | aggregate` pipeline and `make demo`'s
//! recipe (atex-orchestrate on the default local machine), many times
//! each, on the bundled examples/ tree. Every run must store a result for
//! every discovered test and exit 0: an earlier `atex-provision local`
//! read the pipeline's stdin and silently ate Test records in about a
//! third of the runs (issue 9, item 1).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use atex_shared::records::{Test, TestResult};
use atex_tests::{bin_path, parse_records, project_root};

/// Runs of each command. Issue 9 asks for 50; the old bug lost records in
/// 6 to 8 of 20 runs, so 50 clean runs leave it no place to hide.
const RUNS: usize = 50;

/// Runs going on at once: the examples take about 2 s each (one test
/// sleeps), so parallel runs keep the test's wall time near 30 s, and the
/// extra load only widens the timing window the old bug needed.
const PARALLEL: usize = 5;

/// The directory holding the built tools, so a shell finds them by name
/// as a user who installed them would.
fn bin_dir() -> Result<PathBuf> {
    for tool in [
        "atex-discover",
        "atex-exec",
        "atex-aggregate",
        "atex-orchestrate",
    ] {
        bin_path(tool)?;
    }
    let path = bin_path("atex-provision")?;
    Ok(path
        .parent()
        .context("the binary has no directory")?
        .to_path_buf())
}

/// The shell command of README.md that ends in `atex-aggregate --output
/// results/`: the lines of the ```sh block after the comment naming
/// atex-aggregate, up to the next blank line.
fn readme_pipeline() -> Result<String> {
    let readme = std::fs::read_to_string(project_root().join("README.md"))
        .context("failed to read README.md")?;
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("# atex-aggregate: results store"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty());
    let command: Vec<&str> = lines.by_ref().collect();
    ensure!(
        command.len() >= 3 && command.join("\n").contains("atex-provision local"),
        "README.md no longer has the discover | exec | aggregate pipeline after \
         '# atex-aggregate: results store'; update this test with it: {command:?}"
    );
    Ok(command.join("\n"))
}

/// The `demo:` recipe of the Makefile as a bash script, without its build
/// line, with the release binaries replaced by `bin` and make's `$$` by `$`.
fn demo_script(bin: &Path) -> Result<String> {
    let makefile = std::fs::read_to_string(project_root().join("Makefile"))
        .context("failed to read the Makefile")?;
    let recipe: Vec<String> = makefile
        .lines()
        .skip_while(|l| *l != "demo:")
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .filter(|l| !l.contains("$(CARGO)"))
        .map(|l| {
            l.trim_start_matches('\t')
                .replace("./target/release/", &format!("{}/", bin.display()))
                .replace("$$", "$")
        })
        .collect();
    ensure!(
        recipe
            .iter()
            .any(|l| l.contains("atex-orchestrate") && l.contains("--output target/demo-store")),
        "the Makefile's demo recipe no longer runs atex-orchestrate into target/demo-store; \
         update this test: {recipe:?}"
    );
    // A recipe line that ends with `\` continues on the next one; the
    // others are separate commands, each of which must succeed (as make
    // runs them).
    Ok(format!("set -e\n{}\n", recipe.join("\n")))
}

/// A copy of examples/ in a fresh directory, as a user's checkout.
fn examples_copy() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("atex-readme-")
        .tempdir()
        .context("failed to create a temp dir")?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(project_root().join("examples/."))
        .arg(dir.path())
        .status()
        .context("failed to run cp")?;
    ensure!(status.success(), "cp of examples/ failed: {status}");
    Ok(dir)
}

/// Run `script` with bash in `cwd`, the tools first on PATH, stdin closed
/// as in CI (the pipeline's own pipes are what the bug was about).
fn bash(script: &str, cwd: &Path, bin: &Path) -> Result<std::process::Output> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env("PATH", std::env::join_paths(paths)?)
        .stdin(Stdio::null())
        .output()
        .context("failed to run bash")
}

/// The stdout and stderr of a run that must exit 0; else an error
/// showing both.
fn exited_0(out: &std::process::Output) -> Result<(String, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.code() == Some(0),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    Ok((stdout, stderr))
}

/// The test names `discover_args` select in `cwd`.
fn discovered(cwd: &Path, bin: &Path, discover_args: &str) -> Result<BTreeSet<String>> {
    let out = bash(&format!("atex-discover tests {discover_args}"), cwd, bin)?;
    ensure!(
        out.status.success(),
        "discover failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tests: Vec<Test> = parse_records(&out.stdout, "atex-discover")?;
    ensure!(!tests.is_empty(), "the examples select no test");
    Ok(tests.into_iter().map(|t| t.name).collect())
}

/// The test names of a store's results.jsonl (ATEX's line format:
/// `[platform, status, test, subtest, files, note]`) with their statuses.
fn stored(store: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(store.join("results.jsonl"))
        .with_context(|| format!("no results.jsonl in {}", store.display()))?;
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("bad results.jsonl line {line:?}"))?;
            let test = v[2].as_str().context("no test name")?.to_owned();
            let status = v[1].as_str().unwrap_or("null").to_owned();
            Ok((test, status))
        })
        .collect()
}

/// Run `one` RUNS times, PARALLEL at once, and fail with every run that
/// failed.
fn repeat(one: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|w| {
                let one = &one;
                scope.spawn(move || {
                    (w..RUNS)
                        .step_by(PARALLEL)
                        .filter_map(|run| one(run).err().map(|e| format!("run {run}: {e:#}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|_| vec!["a run panicked".into()]))
            .collect()
    });
    if !failures.is_empty() {
        bail!(
            "{} of {RUNS} runs lost results or failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

#[test]
fn readme_pipeline_stores_every_result_in_50_runs() -> Result<()> {
    let bin = bin_dir()?;
    let command = readme_pipeline()?;
    let probe = examples_copy()?;
    let expected = discovered(
        probe.path(),
        &bin,
        "--root . --plan /plans/ci -c distro=fedora-41",
    )?;
    repeat(|_| {
        let cwd = examples_copy()?;
        let (_, stderr) = exited_0(&bash(&command, cwd.path(), &bin)?)?;
        let results = stored(&cwd.path().join("results"))?;
        let names: BTreeSet<String> = results.iter().map(|(t, _)| t.clone()).collect();
        ensure!(
            names == expected && results.len() == expected.len(),
            "stored {results:?}, discovered {expected:?}\nstderr: {stderr}"
        );
        ensure!(
            results.iter().all(|(_, s)| s == "pass"),
            "{results:?}\nstderr: {stderr}"
        );
        Ok(())
    })
}

#[test]
fn make_demo_stores_every_result_in_50_runs() -> Result<()> {
    let bin = bin_dir()?;
    let script = demo_script(&bin)?;
    // The demo runs from the project root on `examples`; a copy of that
    // layout keeps the runs apart.
    let probe = tempfile::tempdir()?;
    let layout = |dir: &Path| -> Result<()> {
        let status = Command::new("cp")
            .arg("-a")
            .arg(project_root().join("examples"))
            .arg(dir)
            .status()?;
        ensure!(status.success(), "cp of examples/ failed");
        std::fs::create_dir_all(dir.join("target"))?;
        Ok(())
    };
    layout(probe.path())?;
    // Every test of the tree, whatever the recipe selects: a recipe that
    // loses a test (a plan, a filter, a lost record) fails here.
    let expected = discovered(probe.path(), &bin, "--root examples")?;
    repeat(|_| {
        let cwd = tempfile::tempdir()?;
        layout(cwd.path())?;
        let (stdout, stderr) = exited_0(&bash(&script, cwd.path(), &bin)?)?;
        let context = || format!("stdout: {stdout}\nstderr: {stderr}");
        // stdout is not a terminal here: atex-orchestrate prints its
        // records there, then the summary's text follows.
        let records: Vec<&str> = stdout.lines().filter(|l| l.starts_with('{')).collect();
        let printed: Vec<TestResult> =
            parse_records(records.join("\n").as_bytes(), "atex-orchestrate")?;
        let names: BTreeSet<String> = printed.iter().map(|r| r.test.clone()).collect();
        ensure!(
            names == expected && printed.len() == expected.len(),
            "printed {names:?}, discovered {expected:?}\n{}",
            context()
        );
        let store = cwd.path().join("target/demo-store");
        let results = stored(&store)?;
        let names: BTreeSet<String> = results.iter().map(|(t, _)| t.clone()).collect();
        ensure!(
            names == expected && results.len() == expected.len(),
            "stored {results:?}, discovered {expected:?}\n{}",
            context()
        );
        ensure!(
            results.iter().all(|(_, s)| s == "pass"),
            "{results:?}\n{}",
            context()
        );
        for test in &expected {
            let output = store.join(format!("files/local{test}/output.txt"));
            ensure!(output.is_file(), "no {}\n{}", output.display(), context());
        }
        for report in ["junit.xml", "index.html"] {
            ensure!(store.join(report).is_file(), "no {report}\n{}", context());
        }
        ensure!(
            !cwd.path().join("target/demo-artifacts").exists(),
            "the store did not take the test files\n{}",
            context()
        );
        Ok(())
    })
}

/// The example `name` of atex-orchestrate, beside the tools (in their
/// `examples/`); built when missing, as [`bin_path`] builds the tools.
fn example_path(name: &str) -> Result<PathBuf> {
    let path = bin_path("atex-orchestrate")?
        .parent()
        .context("the binary has no directory")?
        .join("examples")
        .join(name);
    if !path.exists() || std::env::var_os("ATEX_TESTS_BUILD").is_some() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "atex-orchestrate",
                "--example",
                name,
            ])
            .current_dir(project_root());
        if path.ancestors().any(|dir| dir.ends_with("release")) {
            build.arg("--release");
        }
        let status = build.status().context("failed to run cargo build")?;
        ensure!(
            status.success(),
            "cargo build --example {name} failed: {status}"
        );
    }
    ensure!(
        path.exists(),
        "{} not found after building it",
        path.display()
    );
    Ok(path)
}

/// atex-orchestrate/examples/custom_runner.rs, the README's custom runner:
/// on the examples/ tree with its longest and shortest tests tagged
/// `snapshot`, one machine runs the shortest right after the longest
/// (the default order puts every other test between them), two machines
/// run every test too, and every machine used is released.
#[test]
fn the_custom_runner_example_keeps_snapshot_tests_together() -> Result<()> {
    let bin = bin_dir()?;
    let runner = example_path("custom_runner")?;
    let cwd = examples_copy()?;
    let out = bash("atex-discover tests --root .", cwd.path(), &bin)?;
    ensure!(out.status.success(), "discover failed: {out:?}");
    let mut tests: Vec<Test> = parse_records(&out.stdout, "atex-discover")?;
    ensure!(
        tests.len() >= 3,
        "the examples have fewer than 3 tests: {tests:?}"
    );
    // The default order: longest first, input order on ties (no test of
    // the examples has an extra-priority).
    tests.sort_by_key(|t| std::cmp::Reverse(t.duration));
    let last = tests.len() - 1;
    for at in [0, last] {
        tests[at].tag.push("snapshot".to_owned());
    }
    let mut expected: Vec<String> = tests.iter().map(|t| t.name.clone()).collect();
    let shortest = expected.remove(last);
    expected.insert(1, shortest);
    let records: Vec<String> = tests
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    std::fs::write(cwd.path().join("tests.jsonl"), records.join("\n") + "\n")?;
    for machines in [1, 2] {
        let command = format!(
            "'{}' artifacts-{machines} {machines} < tests.jsonl",
            runner.display()
        );
        let (stdout, stderr) = exited_0(&bash(&command, cwd.path(), &bin)?)
            .with_context(|| format!("{machines} machines"))?;
        let results: Vec<TestResult> = parse_records(stdout.as_bytes(), "custom_runner")?;
        let mut order: Vec<String> = results.iter().map(|r| r.test.clone()).collect();
        ensure!(
            results.iter().all(|r| r.status.as_deref() == Some("pass")),
            "{machines} machines: {results:?}\nstderr: {stderr}"
        );
        if machines == 1 {
            ensure!(order == expected, "ran {order:?}, expected {expected:?}");
        }
        order.sort();
        let mut all = expected.clone();
        all.sort();
        ensure!(
            order == all,
            "{machines} machines: ran {order:?}, expected {all:?}"
        );
        let used: BTreeSet<&str> = results.iter().map(|r| r.machine.as_str()).collect();
        let released: BTreeSet<&str> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("custom_runner: released "))
            .collect();
        ensure!(
            used.is_subset(&released) && released.len() <= machines,
            "{machines} machines: used {used:?}, released {released:?}\nstderr: {stderr}"
        );
    }
    Ok(())
}
