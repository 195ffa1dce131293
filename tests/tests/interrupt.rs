//! Ctrl-C on a whole `atex-discover | atex-exec | atex-aggregate` pipeline,
//! as a terminal sends it: SIGINT to every process of the pipeline's
//! process group at once. The interrupted test must still reach the store
//! (as `infra`), every finished test too, none twice, and each tool says on
//! stderr what it did (issue 9, item 5).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use atex_tests::{Fixture, bin_path};
use rustix::process::{Pid, Signal, kill_process_group};

/// A tree with a quick test and one that runs until it is stopped; the
/// slow one touches `marker` when it has started.
fn tree(marker: &Path) -> Result<Fixture> {
    Fixture::fmf_tree(&[
        ("main.fmf", "test: ./test.sh\n"),
        ("a-quick/main.fmf", "summary: quick\n"),
        ("a-quick/test.sh", "#!/bin/bash\necho quick\n"),
        (
            "b-slow/main.fmf",
            &format!("environment:\n  MARKER: {}\n", marker.display()),
        ),
        (
            "b-slow/test.sh",
            "#!/bin/bash\necho slow\ntouch \"$MARKER\"\nsleep 60\n",
        ),
        ("c-never/main.fmf", "summary: never started\n"),
        ("c-never/test.sh", "#!/bin/bash\necho never\n"),
    ])
}

/// The test names and statuses of a store's results.jsonl.
fn stored(store: &Path) -> Result<Vec<(String, Option<String>)>> {
    let text = std::fs::read_to_string(store.join("results.jsonl"))
        .with_context(|| format!("no results.jsonl in {}", store.display()))?;
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)?;
            Ok((
                v[2].as_str().context("no test name")?.to_owned(),
                v[1].as_str().map(str::to_owned),
            ))
        })
        .collect()
}

/// A stage of the pipeline: `bin args`, in process group `group` (0: a new
/// group led by this process), stderr collected.
fn stage(bin: &Path, args: &[&std::ffi::OsStr], stdin: Stdio, group: i32) -> Result<Child> {
    Command::new(bin)
        .args(args)
        .process_group(group)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {}", bin.display()))
}

fn interrupt_pipeline(signal: Signal, code: i32) -> Result<()> {
    let work = Fixture::new()?;
    let marker = work.path().join("started");
    let tree = tree(&marker)?;
    let (out, store) = (work.path().join("out"), work.path().join("store"));
    let machine = r#"{"id":"local","provisioner":"local","connection":{"kind":"local"}}"#;
    // One process group for the three, as a shell makes for a job: the
    // signal goes to the group, the way a terminal delivers Ctrl-C.
    let mut discover = stage(
        &bin_path("atex-discover")?,
        &["tests".as_ref(), "--root".as_ref(), tree.path().as_os_str()],
        Stdio::null(),
        0,
    )?;
    let group = Pid::from_child(&discover);
    let records = discover.stdout.take().context("discover stdout")?;
    let mut exec = stage(
        &bin_path("atex-exec")?,
        &[
            "--machine".as_ref(),
            machine.as_ref(),
            "--artifacts".as_ref(),
            out.as_os_str(),
        ],
        Stdio::from(records),
        group.as_raw_nonzero().get(),
    )?;
    let results = exec.stdout.take().context("exec stdout")?;
    let mut aggregate = stage(
        &bin_path("atex-aggregate")?,
        &["--output".as_ref(), store.as_os_str()],
        Stdio::from(results),
        group.as_raw_nonzero().get(),
    )?;
    let kill_all = || {
        let _ = kill_process_group(group, Signal::KILL);
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        if Instant::now() > deadline || exec.try_wait()?.is_some() {
            kill_all();
            bail!("the slow test never started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_process_group(group, signal).context("failed to signal the pipeline")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut codes = Vec::new();
    let mut stderr = String::new();
    for (name, child) in [
        ("atex-discover", &mut discover),
        ("atex-exec", &mut exec),
        ("atex-aggregate", &mut aggregate),
    ] {
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                kill_all();
                bail!("{name} did not end within 30 s of {signal:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        codes.push(status.code());
        if let Some(mut err) = child.stderr.take() {
            std::io::Read::read_to_string(&mut err, &mut stderr)?;
        }
    }
    // discover may have finished before the signal came.
    ensure!(
        matches!(codes[0], Some(0)) || codes[0] == Some(code),
        "discover: {codes:?}\n{stderr}"
    );
    ensure!(
        codes[1..] == [Some(code), Some(code)],
        "exec and aggregate must exit {code}: {codes:?}\n{stderr}"
    );
    for tool in ["atex-exec", "atex-aggregate"] {
        let lines = stderr
            .lines()
            .filter(|l| l.starts_with(tool) && l.contains("interrupted"))
            .count();
        ensure!(
            lines == 1,
            "{tool} must say once that it was interrupted:\n{stderr}"
        );
    }
    let results = stored(&store)?;
    ensure!(
        results
            == [
                ("/a-quick".to_owned(), Some("pass".to_owned())),
                ("/b-slow".to_owned(), Some("infra".to_owned())),
            ],
        "the finished and the interrupted test, once each: {results:?}\n{stderr}"
    );
    Ok(())
}

#[test]
fn ctrl_c_on_the_pipeline_stores_the_interrupted_test() -> Result<()> {
    interrupt_pipeline(Signal::INT, 130)
}

#[test]
fn sigterm_on_the_pipeline_stores_the_interrupted_test() -> Result<()> {
    interrupt_pipeline(Signal::TERM, 143)
}
