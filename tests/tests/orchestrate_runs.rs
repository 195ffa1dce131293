//! atex-orchestrate beyond one run of one platform (issue 12), on real
//! loopback sshd machines: a run killed with SIGKILL and continued with
//! `--resume` gives the store a clean run gives; two platforms in one run,
//! each discovering the tree with its own context; `--rerun-failed` runs
//! exactly the tests that did not pass; `--max-fail` stops starting tests.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use atex_shared::records::Connection;
use atex_tests::procs::{adopt_orphans, descendants};
use atex_tests::sshd::{SshdPool, TEST_USER};
use atex_tests::timeline::Orchestrate;
use atex_tests::{Fixture, run};
use serde_json::{Value, json};

/// How long a run may take before the test fails.
const WAIT: Duration = Duration::from_secs(120);

/// The `--provision` spec of the servers of `pool` (`hosts`: which
/// ones), `extra` appended.
fn spec(pool: &SshdPool, hosts: std::ops::Range<usize>, extra: &str) -> String {
    let mut spec = "ssh".to_owned();
    for machine in &pool.machines()[hosts] {
        if let Connection::Ssh { port, .. } = machine.connection {
            spec.push_str(&format!(" {TEST_USER}@127.0.0.1:{port}"));
        }
    }
    spec.push_str(&format!(" -i '{}' {extra}", pool.client_key().display()));
    spec
}

/// Test records `/t1` … `/tN` in an empty tree under `dir` (apart from
/// the artifacts, which the tree upload must not see being written),
/// each sleeping `sleep` seconds; the ones in `failing` exit 1.
fn tests(dir: &Path, n: usize, sleep: f64, failing: &[usize]) -> Result<String> {
    let root = dir.join("tree");
    std::fs::create_dir_all(&root)?;
    Ok((1..=n)
        .map(|i| {
            let exit = if failing.contains(&i) { 1 } else { 0 };
            let record = json!({
                "name": format!("/t{i}"), "root": root, "path": "",
                "test": format!("sleep {sleep}; echo t{i}; exit {exit}"),
            });
            format!("{record}\n")
        })
        .collect())
}

/// Run atex-orchestrate with `args` on `input`, to its end.
fn orchestrate<S: AsRef<OsStr>>(args: &[S], input: &str) -> Result<atex_tests::Output> {
    run("atex-orchestrate", args, Some(input.as_bytes()))
}

/// The arguments of a run on the machines of `provision`, its files in
/// `artifacts`, its store in `output` (if any), `extra` added.
fn args<'a>(
    provision: &'a str,
    output: Option<&'a Path>,
    artifacts: &'a Path,
    extra: &[&'a OsStr],
) -> Vec<&'a OsStr> {
    let mut args: Vec<&OsStr> = vec!["--provision".as_ref(), provision.as_ref()];
    if let Some(output) = output {
        args.extend(["--output".as_ref(), output.as_os_str()]);
    }
    args.extend(["--artifacts".as_ref(), artifacts.as_os_str()]);
    args.extend(extra);
    args
}

/// A store's results as `(platform, status, test, subtest)`, sorted.
fn stored(store: &Path) -> Result<Vec<(String, String, String, String)>> {
    let path = store.join("results.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let mut lines = Vec::new();
    for line in text.lines() {
        let v: Vec<Value> = serde_json::from_str(line).with_context(|| line.to_owned())?;
        let field = |i: usize| v.get(i).and_then(Value::as_str).unwrap_or("").to_owned();
        lines.push((field(0), field(1), field(2), field(3)));
    }
    lines.sort();
    Ok(lines)
}

/// The test directories under a store's `files/<platform>/`.
fn stored_dirs(store: &Path) -> Result<BTreeSet<String>> {
    let mut dirs = BTreeSet::new();
    for platform in std::fs::read_dir(store.join("files"))? {
        let platform = platform?;
        for test in std::fs::read_dir(platform.path())? {
            dirs.insert(format!(
                "{}/{}",
                platform.file_name().to_string_lossy(),
                test?.file_name().to_string_lossy()
            ));
        }
    }
    Ok(dirs)
}

/// A run killed with SIGKILL while its tests run, then continued with
/// `--resume` on the same `--output`, leaves the store a clean run leaves:
/// the same tests with the same statuses, each once (no ` (2)` of a test
/// stored twice), each test's files once.
#[test]
fn resume_after_kill_9_gives_the_store_of_a_clean_run() -> Result<()> {
    // The killed run's ssh masters (daemonized) come back to this process.
    adopt_orphans()?;
    let pool = SshdPool::start(2)?;
    let work = Fixture::new()?;
    let input = tests(&work.path(), 12, 0.5, &[5, 11])?;
    let provision = spec(&pool, 0..2, "");
    let clean = work.path().join("clean");
    let a1 = work.path().join("a1");
    let out = orchestrate(&args(&provision, Some(&clean), &a1, &[]), &input)?;
    ensure!(out.code == Some(1), "clean run: {}", out.stderr);

    let store = work.path().join("store");
    let artifacts = work.path().join("a2");
    let ours = descendants(std::process::id());
    let killed = Orchestrate::start(
        &args(&provision, Some(&store), &artifacts, &[]),
        &[],
        input.as_bytes(),
    )?;
    let results = store.join("results.jsonl");
    let until = Instant::now() + WAIT;
    loop {
        let lines = std::fs::read_to_string(&results)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 5 {
            break;
        }
        ensure!(Instant::now() < until, "the run never stored 5 results");
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.signal(rustix::process::Signal::KILL)?;
    let done = killed.finish(WAIT)?;
    // What it left (its ssh masters) is stopped by pid. A master that was
    // connecting daemonizes a moment after the kill: sweep until two
    // sweeps in a row find nothing.
    let mut quiet = 0;
    while quiet < 2 {
        let left: Vec<u32> = descendants(std::process::id())
            .into_iter()
            .filter(|pid| !ours.contains(pid))
            .collect();
        quiet = if left.is_empty() { quiet + 1 } else { 0 };
        for pid in left {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    ensure!(done.code.is_none(), "SIGKILL ended it: {:?}", done.code);
    let before = stored(&store)?.len();
    ensure!(
        before < 12,
        "the kill came too late: {before} results stored"
    );

    let resume = args(&provision, Some(&store), &artifacts, &["--resume".as_ref()]);
    let out = orchestrate(&resume, &input)?;
    ensure!(out.code == Some(1), "resumed run: {}", out.stderr);
    ensure!(
        out.stderr
            .contains(&format!("tests ended there, {} left to run", 12 - before))
            || out
                .stderr
                .contains("was running: its results so far are taken out"),
        "{}",
        out.stderr
    );
    ensure!(
        out.stderr.contains("10 passed, 2 failed, 0 infra"),
        "the totals count the whole run: {}",
        out.stderr
    );
    let want = stored(&clean)?;
    let got = stored(&store)?;
    ensure!(got == want, "resumed store {got:#?}\nclean store {want:#?}");
    let names: Vec<&str> = got.iter().map(|l| l.2.as_str()).collect();
    ensure!(names.iter().all(|n| !n.contains(" (")), "{names:?}");
    ensure!(
        stored_dirs(&store)? == stored_dirs(&clean)?,
        "files: {:?} vs {:?}",
        stored_dirs(&store)?,
        stored_dirs(&clean)?
    );
    let junit = std::fs::read_to_string(store.join("junit.xml"))?;
    ensure!(
        junit.matches("<testcase ").count() == 12,
        "junit.xml has every test once: {junit}"
    );
    // Resuming a finished run runs nothing and says how it ended.
    let out = orchestrate(&resume, &input)?;
    ensure!(out.code == Some(1), "{}", out.stderr);
    ensure!(
        out.stderr.contains("12 tests ended there, 0 left to run"),
        "{}",
        out.stderr
    );
    ensure!(stored(&store)? == want, "nothing was added");
    Ok(())
}

/// The fmf tree of the two-platform test: `/b` is disabled where
/// `distro == two`.
fn write_tree(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root.join(".fmf"))?;
    std::fs::write(root.join(".fmf/version"), "1\n")?;
    std::fs::write(
        root.join("main.fmf"),
        "/a:\n    test: echo a\n\
         /b:\n    test: echo b\n    adjust:\n      - when: distro == two\n        enabled: false\n\
         /c:\n    test: echo c; exit 1\n",
    )?;
    Ok(())
}

/// Two specs with their own `--platform` and `-c` context, a loopback
/// sshd machine and podman containers of `localhost/sut` (`make
/// sut-image`): every test runs once on each platform, the tree
/// discovered with each context (a test that adjust disables on one does
/// not run there); the store keeps the platforms apart (its files, its
/// JUnit suites, its summary); no container is left.
#[test]
fn two_platforms_each_run_every_test_they_enable() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let podman = atex_tests::podman::Labeled::new("platforms")?;
    let work = Fixture::new()?;
    let tree = work.path().join("tree");
    write_tree(&tree)?;
    let store = work.path().join("store");
    let one = spec(&pool, 0..1, "--platform one -c distro=one");
    let two = format!(
        "podman --image localhost/sut --max 2 --platform two -c distro=two '--run-option=--label={}'",
        podman.label()
    );
    let conf = podman.conf();
    let platforms = |second: &str, output: &[&OsStr]| {
        let mut args: Vec<&OsStr> = ["--root".as_ref(), tree.as_os_str()].to_vec();
        for spec in [one.as_str(), second] {
            args.extend(["--provision".as_ref(), OsStr::new(spec)]);
        }
        args.extend(output);
        let envs = [("CONTAINERS_CONF", conf.as_os_str())];
        let done = Orchestrate::start(&args, &envs, b"")?.finish(WAIT)?;
        Ok::<_, anyhow::Error>((done.code, done.stderr(), done.results()?))
    };
    let artifacts = work.path().join("artifacts");
    let (code, err, results) = platforms(
        &two,
        &[
            "--output".as_ref(),
            store.as_os_str(),
            "--artifacts".as_ref(),
            artifacts.as_os_str(),
        ],
    )?;
    ensure!(code == Some(1), "{err}");
    ensure!(
        err.contains("platform one: 3 tests") && err.contains("platform two: 2 tests"),
        "{err}"
    );
    let got: Vec<(String, String, String)> = stored(&store)?
        .into_iter()
        .map(|(p, s, t, _)| (p, s, t))
        .collect();
    let want: Vec<(String, String, String)> = [
        ("one", "fail", "/c"),
        ("one", "pass", "/a"),
        ("one", "pass", "/b"),
        ("two", "fail", "/c"),
        ("two", "pass", "/a"),
    ]
    .iter()
    .map(|(p, s, t)| ((*p).to_owned(), (*s).to_owned(), (*t).to_owned()))
    .collect();
    ensure!(got == want, "{got:#?}\n{err}");
    // Each platform's machines ran its own tests.
    let Connection::Ssh { port, .. } = &pool.machines()[0].connection else {
        anyhow::bail!("not an ssh machine");
    };
    for r in &results {
        let on_ssh = r.machine.ends_with(&format!(":{port}"));
        ensure!(on_ssh == (r.platform == "one"), "{r:?}");
    }
    ensure!(podman.containers()?.is_empty(), "containers left");
    let dirs = stored_dirs(&store)?;
    ensure!(
        dirs.contains("one/b") && !dirs.contains("two/b") && dirs.contains("two/a"),
        "{dirs:?}"
    );
    let junit = std::fs::read_to_string(store.join("junit.xml"))?;
    ensure!(
        junit.contains("<testsuite name=\"one\"") && junit.contains("<testsuite name=\"two\""),
        "{junit}"
    );
    let text = run(
        "atex-aggregate",
        ["summary".as_ref(), store.as_os_str()],
        None,
    )?
    .stdout_text();
    ensure!(
        text.contains("one:") && text.contains("two:"),
        "the summary per platform: {text}"
    );
    // One platform name with two contexts is refused before anything runs.
    let clash = spec(&pool, 0..1, "--platform one -c distro=two");
    let (code, err, _) = platforms(&clash, &[])?;
    ensure!(
        code == Some(2) && err.contains("one --platform with two contexts"),
        "{err}"
    );
    Ok(())
}

/// `--rerun-failed STORE` runs exactly the tests whose results there did
/// not all pass, into a new store.
#[test]
fn rerun_failed_runs_exactly_the_tests_that_did_not_pass() -> Result<()> {
    let pool = SshdPool::start(2)?;
    let work = Fixture::new()?;
    let input = tests(&work.path(), 6, 0.1, &[2, 5])?;
    let provision = spec(&pool, 0..2, "");
    let (first, a1) = (work.path().join("first"), work.path().join("a1"));
    let out = orchestrate(&args(&provision, Some(&first), &a1, &[]), &input)?;
    ensure!(out.code == Some(1), "{}", out.stderr);
    let (second, a2) = (work.path().join("second"), work.path().join("a2"));
    let rerun = ["--rerun-failed".as_ref(), first.as_os_str()];
    let out = orchestrate(&args(&provision, Some(&second), &a2, &rerun), &input)?;
    ensure!(out.code == Some(1), "{}", out.stderr);
    ensure!(
        out.stderr.contains("2 of the 6 tests did not pass there"),
        "{}",
        out.stderr
    );
    let names: Vec<String> = stored(&second)?.into_iter().map(|l| l.2).collect();
    ensure!(names == ["/t2", "/t5"], "{names:?}");
    Ok(())
}

/// `--max-fail 2` on two machines: after the second failure no test
/// starts, the running ones finish, the rest are counted as not run, and
/// the run is exit 1 (failures, not infrastructure).
#[test]
fn max_fail_stops_starting_tests_on_ssh_machines() -> Result<()> {
    let pool = SshdPool::start(2)?;
    let work = Fixture::new()?;
    let input = tests(&work.path(), 10, 0.3, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])?;
    let provision = spec(&pool, 0..2, "");
    let artifacts = work.path().join("artifacts");
    let limits = ["--max-fail", "2", "--order", "input"].map(OsStr::new);
    let out = orchestrate(&args(&provision, None, &artifacts, &limits), &input)?;
    ensure!(out.code == Some(1), "{}", out.stderr);
    let results: Vec<atex_shared::records::TestResult> = out.records()?;
    ensure!(
        (2..=3).contains(&results.len()),
        "{} tests ran: {}",
        results.len(),
        out.stderr
    );
    ensure!(
        out.stderr
            .contains(&format!("{} not run", 10 - results.len()))
            && out.stderr.contains("--max-fail 2"),
        "{}",
        out.stderr
    );
    Ok(())
}
